//! Policy: an oslo.policy-compatible rule language and enforcer.
//!
//! ```text
//!  defaults (code) ──┐
//!                    ├─ merge ─ parse ─ link rule: refs ─► Enforcer (immutable rule table)
//!  policy.yaml/json ─┘                                        │
//!                          authorize(action, target, creds) ──┤
//!                                  allowed ──────────────────► Ok(())
//!                                  denied, Enforce ──────────► Err(PolicyDenied)
//!                                  denied, Permissive ───────► Ok(()) + Record
//!                                                               (memory + JSON lines)
//!  read_records(file) ─► workplan(records) ─► grants and trusts an operator would need
//! ```
//!
//! The contract other crates call: [`Enforcer::new`], [`Enforcer::authorize`],
//! [`Enforcer::mode`], [`identity_defaults`]; permissive mode adds
//! [`Enforcer::records`], [`read_records`] and [`workplan`].
//!
//! The **target** passed to `authorize` is Keystone's policy dict: path
//! arguments at the top level (`{"user_id": ...}` for `/users/{user_id}/...`)
//! and the object acted on under `target`, nested (`{"target": {"user":
//! {"id": .., "domain_id": ..}}}`) or flattened (`{"target.user.id": ..}`).
//! Keystone's rules read e.g. `%(target.user.domain_id)s`,
//! `%(target.project.domain_id)s`, `%(target.domain_id)s` (list filters),
//! `%(target.trust.trustor_user_id)s`, `%(target.token.user_id)s`,
//! `%(target.role.name)s`/`%(target.role.domain_id)s` (grants).
//!
//! Non-goals: oslo.policy's `http:` external checks and plug-in check kinds;
//! scope_types enforcement (Keystone's rules already name the scope they need).

mod defaults;
mod eval;
mod parser;
mod record;
mod workplan;

pub use parser::{parse_rule, ParseError, Rule};
pub(crate) use record::Recorder;
pub use record::{read_records, records_path, Record, Scope, RECORDS_FILE};
pub use workplan::{workplan, Grant, TrustSuggestion, Unsatisfied, Workplan};

use parser::Check;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Who is asking: what a validated token says about its holder and scope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// The user's id (`user_id:%(...)s` rules).
    pub user_id: String,
    /// The user's domain (`domain_id:%(target.user.domain_id)s`-style rules).
    pub user_domain_id: Option<String>,
    /// Effective role names for the token's scope (implied roles expanded).
    pub roles: Vec<String>,
    /// Set for a project-scoped token (owner checks: `project_id:%(target.project_id)s`).
    pub project_id: Option<String>,
    /// The domain of the token's project.
    pub project_domain_id: Option<String>,
    /// Set for a domain-scoped token.
    pub domain_id: Option<String>,
    /// `Some("all")` for a system-scoped token.
    pub system_scope: Option<String>,
    /// Scoped to the admin project (Keystone's `is_admin_project`).
    pub is_admin_project: bool,
}

/// Enforce denies; Permissive allows everything but records what would have been denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    /// A denied action is refused (403).
    Enforce,
    /// A denied action is allowed and recorded, for `weft policy workplan`.
    Permissive,
}

/// A denial: the action and the rule that refused it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy does not allow {action} to be performed")]
pub struct PolicyDenied {
    /// The action (`identity:create_user`).
    pub action: String,
    /// The rule text that refused it.
    pub rule: String,
}

/// Bad policy file or rule text.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file does not read or parse.
    #[error("policy file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A rule's text does not parse.
    #[error("rule for {action}: {message}")]
    Rule {
        /// The action the rule is for.
        action: String,
        /// What is wrong with its text.
        message: String,
    },
}

/// The role implications weft bootstraps (`admin` implies `member` implies
/// `reader`), used when asking "would this role have been enough?".
pub const DEFAULT_IMPLICATIONS: &[(&str, &str)] = &[("admin", "member"), ("member", "reader")];

/// Evaluates rules for actions. Cheap to share (`Send + Sync`); the rule
/// table is immutable after `new`, only permissive-mode records change.
#[derive(Debug)]
pub struct Enforcer {
    mode: Mode,
    /// Linked rules; `rule:` references are indices into this table.
    rules: Vec<Rule>,
    /// The text of each rule as written (for denials and records).
    texts: Vec<String>,
    index: HashMap<String, usize>,
    /// Roles named anywhere in the rules, plus the bootstrap roles.
    known_roles: Vec<String>,
    /// prior role -> roles it implies directly.
    implications: BTreeMap<String, Vec<String>>,
    recorder: Option<record::Recorder>,
}

/// Where a rule came from, for error messages.
#[derive(Clone, Copy)]
enum Origin<'a> {
    Code,
    File(&'a Path),
}

impl Origin<'_> {
    fn error(self, action: &str, message: String) -> PolicyError {
        match self {
            Origin::Code => PolicyError::Rule {
                action: action.to_string(),
                message,
            },
            Origin::File(path) => PolicyError::File {
                path: path.to_path_buf(),
                message: format!("rule for {action}: {message}"),
            },
        }
    }
}

impl Enforcer {
    /// `defaults`: (action, rule) pairs in code; `overrides_file`: YAML/JSON policy file
    /// whose rules replace the defaults of the same name (and may add new ones);
    /// `record_path`: where permissive-mode denials are appended (JSON lines).
    ///
    /// Every rule is parsed and every `rule:` reference resolved here, so a bad
    /// rule, an unknown reference or a reference cycle is an error now, naming
    /// the file and action, rather than a silent "deny" later.
    pub fn new(
        defaults: &[(&str, &str)],
        overrides_file: Option<&Path>,
        mode: Mode,
        record_path: Option<PathBuf>,
    ) -> Result<Self, PolicyError> {
        let mut merged: Vec<(String, String, Origin<'_>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut put = |name: &str, text: String, origin| match index.get(name) {
            Some(&i) => merged[i] = (name.to_string(), text, origin),
            None => {
                index.insert(name.to_string(), merged.len());
                merged.push((name.to_string(), text, origin));
            }
        };
        for (name, text) in defaults {
            put(name, text.to_string(), Origin::Code);
        }
        if let Some(path) = overrides_file {
            for (name, text) in load_policy_file(path)? {
                put(&name, text, Origin::File(path));
            }
        }

        let mut rules = Vec::with_capacity(merged.len());
        for (name, text, origin) in &merged {
            let rule = parse_rule(text).map_err(|e| origin.error(name, e.to_string()))?;
            rules.push(rule);
        }
        // Link `rule:` references to indices.
        for (i, rule) in rules.iter_mut().enumerate() {
            let mut missing = None;
            rule.visit_checks_mut(&mut |c| {
                if let Check::Rule { name, link } = c {
                    match index.get(name.as_str()) {
                        Some(&j) => *link = Some(j),
                        None => missing = Some(name.clone()),
                    }
                }
            });
            if let Some(name) = missing {
                let (action, _, origin) = &merged[i];
                return Err(origin.error(action, format!("rule:{name} is not defined")));
            }
        }
        if let Some(cycle) = find_cycle(&rules) {
            let names: Vec<&str> = cycle.iter().map(|&i| merged[i].0.as_str()).collect();
            let (action, _, origin) = &merged[cycle[0]];
            return Err(origin.error(
                action,
                format!("rule references form a cycle: {}", names.join(" -> ")),
            ));
        }

        let mut known: Vec<String> = ["reader", "member", "admin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for rule in &rules {
            rule.visit_checks(&mut |c| {
                if let Check::Role(t) = c {
                    if let Some(name) = t.as_text() {
                        let name = name.to_ascii_lowercase();
                        if !known.contains(&name) {
                            known.push(name);
                        }
                    }
                }
            });
        }
        let mut implications: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (prior, implied) in DEFAULT_IMPLICATIONS {
            implications
                .entry(prior.to_string())
                .or_default()
                .push(implied.to_string());
        }

        let recorder = (mode == Mode::Permissive).then(|| record::Recorder::new(record_path));
        let mut enforcer = Enforcer {
            mode,
            rules,
            texts: merged.into_iter().map(|(_, t, _)| t).collect(),
            index,
            known_roles: known,
            implications,
            recorder,
        };
        enforcer.sort_known_roles();
        Ok(enforcer)
    }

    /// Whether denials are enforced or only recorded.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Replaces the role implication table (prior role, implied role) used to
    /// work out which roles would have satisfied a denied rule, e.g. from the
    /// identity store's implied roles. Roles named here become known roles.
    pub fn set_role_implications(&mut self, pairs: &[(String, String)]) {
        self.implications.clear();
        for (prior, implied) in pairs {
            let (prior, implied) = (prior.to_ascii_lowercase(), implied.to_ascii_lowercase());
            for r in [&prior, &implied] {
                if !self.known_roles.contains(r) {
                    self.known_roles.push(r.clone());
                }
            }
            self.implications.entry(prior).or_default().push(implied);
        }
        self.sort_known_roles();
    }

    fn sort_known_roles(&mut self) {
        let mut keyed: Vec<_> = self
            .known_roles
            .iter()
            .map(|r| (self.role_rank(r), r.clone()))
            .collect();
        keyed.sort();
        self.known_roles = keyed.into_iter().map(|(_, r)| r).collect();
    }

    /// The roles this role grants, itself included (implications followed).
    pub fn expand_role(&self, role: &str) -> Vec<String> {
        let mut out = vec![role.to_ascii_lowercase()];
        let mut i = 0;
        while i < out.len() {
            if let Some(next) = self.implications.get(&out[i]) {
                for n in next {
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// Weakest first: fewer implied roles, then the bootstrap roles, then by name.
    fn role_rank(&self, role: &str) -> (usize, bool, String) {
        (
            self.expand_role(role).len(),
            !["reader", "member", "admin"].contains(&role),
            role.to_string(),
        )
    }

    /// Role names the rules mention plus the bootstrap roles, weakest first.
    pub fn known_roles(&self) -> &[String] {
        &self.known_roles
    }

    /// The rule text in force for an action (after overrides).
    pub fn rule_text(&self, action: &str) -> Option<&str> {
        self.index.get(action).map(|&i| self.texts[i].as_str())
    }

    /// Evaluates the rule for `action` without recording anything. An action
    /// with no rule falls back to a rule named `default` if there is one, else
    /// is refused (fail closed).
    pub fn check(&self, action: &str, target: &serde_json::Value, creds: &Credentials) -> bool {
        match self.lookup(action) {
            Some(i) => eval::eval(&self.rules[i], &self.rules, target, creds),
            None => false,
        }
    }

    fn lookup(&self, action: &str) -> Option<usize> {
        self.index
            .get(action)
            .or_else(|| self.index.get("default"))
            .copied()
    }

    /// `Ok(())` when the rule allows it, or in permissive mode (where a
    /// would-be denial is recorded); `Err(PolicyDenied)` otherwise.
    pub fn authorize(
        &self,
        action: &str,
        target: &serde_json::Value,
        creds: &Credentials,
    ) -> Result<(), PolicyDenied> {
        if self.check(action, target, creds) {
            return Ok(());
        }
        let rule = self
            .lookup(action)
            .map_or("!", |i| self.texts[i].as_str())
            .to_string();
        match &self.recorder {
            Some(recorder) => {
                recorder.push(self.record(action, rule, target, creds));
                Ok(())
            }
            None => Err(PolicyDenied {
                action: action.to_string(),
                rule,
            }),
        }
    }

    /// Builds the record of a would-be denial: who, what, and which single
    /// role (on the same scope, else on the system) would have allowed it.
    pub fn record(
        &self,
        action: &str,
        rule: String,
        target: &serde_json::Value,
        creds: &Credentials,
    ) -> Record {
        let would_satisfy = self.roles_that_allow(action, target, creds);
        let would_satisfy_system = if would_satisfy.is_empty() {
            let system = Credentials {
                user_id: creds.user_id.clone(),
                user_domain_id: creds.user_domain_id.clone(),
                system_scope: Some("all".into()),
                ..Default::default()
            };
            self.roles_that_allow(action, target, &system)
        } else {
            Vec::new()
        };
        Record {
            action: action.to_string(),
            rule,
            user_id: creds.user_id.clone(),
            user_domain_id: creds.user_domain_id.clone(),
            roles: creds.roles.clone(),
            scope: Scope::of(creds),
            target: record::summarize_target(target),
            would_satisfy,
            would_satisfy_system,
        }
    }

    /// Each known role that, added (with what it implies) to `creds`, makes
    /// the action's rule pass; weakest first.
    pub fn roles_that_allow(
        &self,
        action: &str,
        target: &serde_json::Value,
        creds: &Credentials,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut trial = creds.clone();
        for role in &self.known_roles {
            trial.roles.clone_from(&creds.roles);
            for r in self.expand_role(role) {
                if !trial.roles.iter().any(|x| x.eq_ignore_ascii_case(&r)) {
                    trial.roles.push(r);
                }
            }
            if self.check(action, target, &trial) {
                out.push(role.clone());
            }
        }
        out
    }

    /// Would-be denials recorded so far in permissive mode (oldest first;
    /// memory keeps the first [`record::MEMORY_LIMIT`], the file keeps all).
    pub fn records(&self) -> Vec<Record> {
        self.recorder
            .as_ref()
            .map_or_else(Vec::new, |r| r.snapshot())
    }
}

/// Finds a cycle of `rule:` references, as the list of rule indices on it.
fn find_cycle(rules: &[Rule]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn edges(rule: &Rule) -> Vec<usize> {
        let mut out = Vec::new();
        rule.visit_checks(&mut |c| {
            if let Check::Rule { link: Some(j), .. } = c {
                out.push(*j);
            }
        });
        out
    }
    fn visit(
        i: usize,
        rules: &[Rule],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        path.push(i);
        for j in edges(&rules[i]) {
            match marks[j] {
                Mark::Active => {
                    let start = path.iter().position(|&p| p == j).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, rules, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; rules.len()];
    for i in 0..rules.len() {
        if marks[i] == Mark::New {
            if let Some(c) = visit(i, rules, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Reads a policy file: a YAML or JSON mapping of rule name to rule text (or
/// oslo.policy's old list-of-lists form). `.json` files are read as JSON,
/// anything else as YAML (which also accepts JSON).
fn load_policy_file(path: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let err = |message: String| PolicyError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let map: serde_json::Map<String, serde_json::Value> = if is_json {
        serde_json::from_str(&text).map_err(|e| err(format!("not a JSON object of rules: {e}")))?
    } else {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| err(format!("not valid YAML: {e}")))?;
        if yaml.is_null() {
            return Ok(Vec::new());
        }
        serde_json::to_value(yaml)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
            .ok_or_else(|| err("expected a mapping of rule names to rules".to_string()))?
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(list) => list_rule_to_text(list).ok_or_else(|| {
                err(format!(
                    "rule for {name}: a list rule must hold lists of strings"
                ))
            })?,
            other => {
                return Err(err(format!(
                    "rule for {name}: expected a string, found {other}"
                )))
            }
        };
        out.push((name, text));
    }
    Ok(out)
}

/// oslo.policy's legacy list syntax: the outer list is joined by `or`, each
/// inner list by `and`; `[]` allows, a list of only empty lists denies.
fn list_rule_to_text(list: &[serde_json::Value]) -> Option<String> {
    if list.is_empty() {
        return Some(String::new());
    }
    let mut ors = Vec::new();
    for inner in list {
        let ands: Vec<String> = match inner {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
            _ => return None,
        };
        if !ands.is_empty() {
            ors.push(format!("({})", ands.join(" and ")));
        }
    }
    if ors.is_empty() {
        return Some("!".to_string());
    }
    Some(ors.join(" or "))
}

/// Keystone's default rule for every identity action weft serves, with the
/// base rules (`admin_required`, `service_role`, `service_or_admin`, `owner`,
/// `admin_or_owner`, `token_subject`, ...) they reference.
pub fn identity_defaults() -> &'static [(&'static str, &'static str)] {
    defaults::IDENTITY_DEFAULTS
}

#[cfg(test)]
mod tests;
