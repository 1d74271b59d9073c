//! Evaluating a parsed rule against credentials and a target (pure).
//!
//! The target is the "policy dict" Keystone builds: path arguments such as
//! `user_id` at the top level, the object acted on under `target`
//! (`{"target": {"user": {"id": .., "domain_id": ..}}}`), in nested or
//! Keystone's flattened form (`{"target.user.id": ..}`) or any mix: a
//! `%(target.user.domain_id)s` lookup tries the longest flat key first at each
//! level. A missing key fails the check, as in oslo.policy.
//!
//! Values compare as Python's `str()` writes them (`null` is `None`, `true`
//! is `True`), because rules such as `None:%(target.role.domain_id)s` and
//! `domain_id:None` depend on it. Evaluation does not allocate unless a
//! template mixes text with substitutions.

use super::parser::{Check, CredField, Part, Rule, Template};
use super::Credentials;
use serde_json::Value;

/// A scalar as Python's `str()` would write it, borrowed where possible.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    None,
    Json(&'a Value),
}

impl Scalar<'_> {
    fn eq_str(&self, s: &str) -> bool {
        match self {
            Scalar::Str(v) => *v == s,
            Scalar::Bool(true) => s == "True",
            Scalar::Bool(false) => s == "False",
            Scalar::None => s == "None",
            Scalar::Json(v) => json_eq_str(v, s),
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Scalar::Str(v) => out.push_str(v),
            Scalar::Bool(true) => out.push_str("True"),
            Scalar::Bool(false) => out.push_str("False"),
            Scalar::None => out.push_str("None"),
            Scalar::Json(v) => out.push_str(&python_str(v)),
        }
    }
}

fn json_eq_str(v: &Value, s: &str) -> bool {
    match v {
        Value::String(t) => t == s,
        Value::Null => s == "None",
        Value::Bool(b) => s == if *b { "True" } else { "False" },
        _ => python_str(v) == s,
    }
}

/// Python's `str()` of a JSON value (close enough for ids, names and flags).
pub(crate) fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Looks `path` up in the target, accepting nested and flattened keys.
///
/// The nested reading wins over a flat key of the same name: the code builds
/// `{"target": {...}}` itself, while top-level keys may come from a request
/// (path arguments, filters), and a request must not be able to shadow the
/// target with a key such as `"target.user.id"`.
pub(crate) fn lookup<'v>(target: &'v Value, path: &str) -> Option<&'v Value> {
    let obj = target.as_object()?;
    // Try every split point, shortest first key first: "a.b.c" -> "a" + "b.c", "a.b" + "c".
    let mut from = 0;
    while let Some(i) = path[from..].find('.') {
        let cut = from + i;
        if let Some(child) = obj.get(&path[..cut]) {
            if let Some(v) = lookup(child, &path[cut + 1..]) {
                return Some(v);
            }
        }
        from = cut + 1;
    }
    obj.get(path)
}

/// What a credential field holds for these credentials. `Err(())` = no such key.
fn cred<'c>(creds: &'c Credentials, field: &CredField) -> Result<CredValue<'c>, ()> {
    fn opt(v: &Option<String>) -> Scalar<'_> {
        v.as_deref().map_or(Scalar::None, Scalar::Str)
    }
    // The `token.*` paths read Keystone's rendered token, which simply has no
    // `domain` key on a project-scoped token: a missing key, not `None`.
    fn present(v: &Option<String>) -> Result<CredValue<'_>, ()> {
        v.as_deref()
            .map(|s| CredValue::One(Scalar::Str(s)))
            .ok_or(())
    }
    Ok(match field {
        CredField::UserId => CredValue::One(Scalar::Str(&creds.user_id)),
        CredField::UserDomainId => CredValue::One(opt(&creds.user_domain_id)),
        CredField::ProjectId => CredValue::One(opt(&creds.project_id)),
        CredField::ProjectDomainId => CredValue::One(opt(&creds.project_domain_id)),
        CredField::DomainId => CredValue::One(opt(&creds.domain_id)),
        CredField::SystemScope => CredValue::One(opt(&creds.system_scope)),
        CredField::IsAdminProject => CredValue::One(Scalar::Bool(creds.is_admin_project)),
        // Keystone's legacy shared-admin-token flag; weft has no such token.
        CredField::IsAdmin => CredValue::One(Scalar::Bool(false)),
        CredField::Roles => CredValue::Many(&creds.roles),
        CredField::TokenUserId => CredValue::One(Scalar::Str(&creds.user_id)),
        CredField::TokenUserDomainId => return present(&creds.user_domain_id),
        CredField::TokenProjectId => return present(&creds.project_id),
        CredField::TokenProjectDomainId => {
            if creds.project_id.is_none() {
                return Err(());
            }
            return present(&creds.project_domain_id);
        }
        CredField::TokenDomainId => return present(&creds.domain_id),
        CredField::Unknown(_) => return Err(()),
    })
}

enum CredValue<'c> {
    One(Scalar<'c>),
    /// A list: the check passes if any element matches (oslo.policy's `_find_in_dict`).
    Many(&'c [String]),
}

/// The template's value against the target, compared with `pred`, without
/// allocating for the common single-substitution or plain-text case.
/// `None` when a substitution is missing from the target (the check fails).
fn with_match<R>(
    matcher: &Template,
    target: &Value,
    pred: impl FnOnce(MatchStr<'_>) -> R,
) -> Option<R> {
    match matcher.parts.as_slice() {
        [Part::Text(t)] => Some(pred(MatchStr::Plain(t))),
        [Part::Var(v)] => {
            let value = lookup(target, v)?;
            Some(pred(MatchStr::Value(value)))
        }
        parts => {
            let mut s = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => s.push_str(t),
                    Part::Var(v) => Scalar::Json(lookup(target, v)?).write(&mut s),
                }
            }
            Some(pred(MatchStr::Plain(&s)))
        }
    }
}

#[derive(Clone, Copy)]
enum MatchStr<'a> {
    Plain(&'a str),
    Value(&'a Value),
}

impl MatchStr<'_> {
    fn eq_scalar(self, s: Scalar<'_>) -> bool {
        match self {
            MatchStr::Plain(m) => s.eq_str(m),
            MatchStr::Value(Value::String(m)) => s.eq_str(m),
            MatchStr::Value(v) => s.eq_str(&python_str(v)),
        }
    }
    fn eq_str(self, s: &str) -> bool {
        self.eq_scalar(Scalar::Str(s))
    }
    fn eq_ignore_case(self, s: &str) -> bool {
        match self {
            MatchStr::Plain(m) => m.eq_ignore_ascii_case(s),
            MatchStr::Value(Value::String(m)) => m.eq_ignore_ascii_case(s),
            MatchStr::Value(v) => python_str(v).eq_ignore_ascii_case(s),
        }
    }
}

/// Evaluates `rule`. `rules` is the enforcer's linked table that `rule:`
/// references index into; an unlinked or dangling reference fails closed.
pub(crate) fn eval(rule: &Rule, rules: &[Rule], target: &Value, creds: &Credentials) -> bool {
    match rule {
        Rule::Always => true,
        Rule::Never => false,
        Rule::And(items) => items.iter().all(|r| eval(r, rules, target, creds)),
        Rule::Or(items) => items.iter().any(|r| eval(r, rules, target, creds)),
        Rule::Not(inner) => !eval(inner, rules, target, creds),
        Rule::Check(check) => eval_check(check, rules, target, creds),
    }
}

fn eval_check(check: &Check, rules: &[Rule], target: &Value, creds: &Credentials) -> bool {
    match check {
        Check::Rule { link, .. } => match link.and_then(|i| rules.get(i)) {
            Some(r) => eval(r, rules, target, creds),
            None => false,
        },
        Check::Role(matcher) => with_match(matcher, target, |m| {
            creds.roles.iter().any(|r| m.eq_ignore_case(r))
        })
        .unwrap_or(false),
        Check::Literal { literal, matcher } => {
            with_match(matcher, target, |m| m.eq_str(literal)).unwrap_or(false)
        }
        Check::Field { field, matcher } => {
            let Ok(value) = cred(creds, field) else {
                return false;
            };
            with_match(matcher, target, |m| match value {
                CredValue::One(s) => m.eq_scalar(s),
                CredValue::Many(list) => list.iter().any(|r| m.eq_str(r)),
            })
            .unwrap_or(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parser::parse_rule;
    use serde_json::json;

    fn creds_project(user: &str, project: &str, roles: &[&str]) -> Credentials {
        Credentials {
            user_id: user.into(),
            user_domain_id: Some("default".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            project_id: Some(project.into()),
            project_domain_id: Some("default".into()),
            ..Default::default()
        }
    }

    fn check(text: &str, target: &Value, creds: &Credentials) -> bool {
        eval(&parse_rule(text).unwrap(), &[], target, creds)
    }

    #[test]
    fn roles_case_insensitive() {
        let c = creds_project("u", "p", &["Member"]);
        assert!(check("role:member", &json!({}), &c));
        assert!(check("role:MEMBER", &json!({}), &c));
        assert!(!check("role:admin", &json!({}), &c));
        assert!(check("role:%(want)s", &json!({"want": "member"}), &c));
        assert!(!check("role:%(missing)s", &json!({}), &c));
    }

    #[test]
    fn boolean_structure() {
        let c = creds_project("u", "p", &["reader"]);
        let t = json!({});
        assert!(check("role:admin or role:reader", &t, &c));
        assert!(!check("role:admin and role:reader", &t, &c));
        assert!(check("not role:admin", &t, &c));
        assert!(!check("not role:reader", &t, &c));
        assert!(check("@", &t, &c));
        assert!(!check("!", &t, &c));
        assert!(check("", &t, &c));
        assert!(check("role:admin or role:x and ! or role:reader", &t, &c));
        assert!(!check("(role:admin or role:reader) and !", &t, &c));
    }

    #[test]
    fn target_lookup_nested_and_flat() {
        let nested = json!({"target": {"project": {"id": "p1"}}});
        let flat = json!({"target.project.id": "p1"});
        let mixed = json!({"target": {"project.id": "p1"}});
        let c = creds_project("u", "p1", &[]);
        for t in [&nested, &flat, &mixed] {
            assert!(check("project_id:%(target.project.id)s", t, &c), "{t}");
        }
        let other = creds_project("u", "p2", &[]);
        assert!(!check("project_id:%(target.project.id)s", &nested, &other));
        assert!(!check("project_id:%(target.project.id)s", &json!({}), &c));
    }

    #[test]
    fn nested_target_wins_over_a_flat_key() {
        let c = creds_project("u", "mine", &[]);
        let t = json!({"target": {"project": {"id": "theirs"}}, "target.project.id": "mine"});
        assert!(!check("project_id:%(target.project.id)s", &t, &c));
    }

    #[test]
    fn python_str_semantics() {
        let c = creds_project("u", "p", &[]);
        // `None:%(x)s` matches a null target value, and a missing one fails.
        assert!(check(
            "None:%(target.role.domain_id)s",
            &json!({"target": {"role": {"domain_id": null}}}),
            &c
        ));
        assert!(!check(
            "None:%(target.role.domain_id)s",
            &json!({"target": {"role": {"domain_id": "d"}}}),
            &c
        ));
        assert!(!check("None:%(target.role.domain_id)s", &json!({}), &c));
        // A project-scoped token has domain_id None: `domain_id:None` passes.
        assert!(check("domain_id:None", &json!({}), &c));
        let mut d = c.clone();
        d.project_id = None;
        d.domain_id = Some("d1".into());
        assert!(!check("domain_id:None", &json!({}), &d));
        assert!(check(
            "True:%(target.user.enabled)s",
            &json!({"target.user.enabled": true}),
            &c
        ));
        assert!(!check(
            "True:%(target.user.enabled)s",
            &json!({"target.user.enabled": false}),
            &c
        ));
        assert!(check(
            "'member':%(target.role.name)s",
            &json!({"target.role.name": "member"}),
            &c
        ));
        assert!(check("1:%(n)s", &json!({"n": 1}), &c));
        assert!(check(
            "is_admin_project:True",
            &json!({}),
            &Credentials {
                is_admin_project: true,
                ..c.clone()
            }
        ));
        assert!(!check("is_admin_project:True", &json!({}), &c));
        assert!(!check("is_admin:1", &json!({}), &c));
    }

    #[test]
    fn system_scope_and_token_paths() {
        let sys = Credentials {
            user_id: "admin".into(),
            roles: vec!["reader".into()],
            system_scope: Some("all".into()),
            ..Default::default()
        };
        assert!(check("role:reader and system_scope:all", &json!({}), &sys));
        let proj = creds_project("u", "p", &["reader"]);
        assert!(!check(
            "role:reader and system_scope:all",
            &json!({}),
            &proj
        ));

        let dom = Credentials {
            user_id: "u".into(),
            roles: vec!["manager".into()],
            domain_id: Some("d1".into()),
            ..Default::default()
        };
        let t = json!({"target": {"user": {"domain_id": "d1"}}});
        assert!(check("token.domain.id:%(target.user.domain_id)s", &t, &dom));
        // A project-scoped token has no token.domain: the check fails even if
        // the target's domain is literally "None".
        let tnone = json!({"target": {"user": {"domain_id": null}}});
        assert!(!check(
            "token.domain.id:%(target.user.domain_id)s",
            &tnone,
            &proj
        ));
        assert!(check(
            "token.project.domain.id:%(target.domain.id)s",
            &json!({"target.domain.id": "default"}),
            &proj
        ));
        assert!(!check("no.such.field:x", &json!({}), &proj));
        assert!(check("roles:reader", &json!({}), &proj));
    }

    #[test]
    fn mixed_template_allocates_and_matches() {
        let c = creds_project("u", "proj-7", &[]);
        assert!(check("project_id:proj-%(n)s", &json!({"n": 7}), &c));
        assert!(!check("project_id:proj-%(n)s", &json!({"n": 8}), &c));
        assert!(!check("project_id:proj-%(n)s", &json!({}), &c));
    }

    #[test]
    fn dangling_rule_reference_fails_closed() {
        let c = creds_project("u", "p", &["admin"]);
        assert!(!check("rule:nope", &json!({}), &c));
        assert!(check("rule:nope or role:admin", &json!({}), &c));
    }
}
