//! The oslo.policy rule language, parsed into a small tree (pure, no I/O).
//!
//! ```text
//! rule    := "" | or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | atom
//! atom    := "(" or ")" | "@" | "!" | "True" | "False" | kind ":" match
//! ```
//!
//! As in oslo.policy, the text is split on whitespace, so a check such as
//! `'member':%(target.role.name)s` is one token; parentheses may be glued to
//! the start or end of a check (`(role:admin`, `system_scope:all)`), and the
//! keywords are case-insensitive. Where oslo.policy logs a broken rule and
//! quietly treats it as "never", this parser returns an error with the column,
//! so a typo in a policy file is found when the file is loaded, not when an
//! operator wonders why everything is denied.
//!
//! Extension over oslo.policy: a bare `True` / `False` is the constant
//! (oslo.policy would fail such a check closed).

use std::fmt;

/// A parsed rule. `RuleRef` holds the referenced rule's name until the
/// enforcer links it to an index (see [`crate::policy::Enforcer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `@`, `True` or the empty rule.
    Always,
    /// `!` or `False`.
    Never,
    /// Every one must hold.
    And(Vec<Rule>),
    /// One must hold.
    Or(Vec<Rule>),
    /// Must not hold.
    Not(Box<Rule>),
    /// One check (`role:admin`, `rule:owner`, `project_id:%(target.project_id)s`).
    Check(Check),
}

/// One `kind:match` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `role:X`: the caller holds role X (case-insensitive; X may be a template).
    Role(Template),
    /// `rule:name`: another rule; `Link` is filled in once all rules are known.
    Rule { name: String, link: Option<usize> },
    /// `'lit':%(x)s`, `True:%(x)s`, `None:%(x)s`, `1:%(x)s`: the match, with the
    /// target substituted, equals the literal (written as Python's `str()` would).
    Literal { literal: String, matcher: Template },
    /// `field:match`: the credential at `field` equals the match.
    Field { field: CredField, matcher: Template },
}

/// The credential a generic check reads. Parsed once, so evaluation is a
/// `match`, not a string lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredField {
    UserId,
    UserDomainId,
    ProjectId,
    ProjectDomainId,
    DomainId,
    SystemScope,
    IsAdminProject,
    IsAdmin,
    Roles,
    /// `token.user.id`
    TokenUserId,
    /// `token.user.domain.id`
    TokenUserDomainId,
    /// `token.project.id`
    TokenProjectId,
    /// `token.project.domain.id`
    TokenProjectDomainId,
    /// `token.domain.id`
    TokenDomainId,
    /// Any other path: no such credential, so the check is false (as in
    /// oslo.policy, where a missing key fails the check).
    Unknown(String),
}

impl CredField {
    fn from_path(path: &str) -> CredField {
        match path {
            "user_id" | "token.user_id" => CredField::UserId,
            "user_domain_id" => CredField::UserDomainId,
            "project_id" | "tenant_id" | "tenant" => CredField::ProjectId,
            "project_domain_id" => CredField::ProjectDomainId,
            "domain_id" => CredField::DomainId,
            "system_scope" => CredField::SystemScope,
            "is_admin_project" => CredField::IsAdminProject,
            "is_admin" => CredField::IsAdmin,
            "roles" => CredField::Roles,
            "token.user.id" => CredField::TokenUserId,
            "token.user.domain.id" => CredField::TokenUserDomainId,
            "token.project.id" => CredField::TokenProjectId,
            "token.project.domain.id" => CredField::TokenProjectDomainId,
            "token.domain.id" => CredField::TokenDomainId,
            other => CredField::Unknown(other.to_string()),
        }
    }

    fn path(&self) -> &str {
        match self {
            CredField::UserId => "user_id",
            CredField::UserDomainId => "user_domain_id",
            CredField::ProjectId => "project_id",
            CredField::ProjectDomainId => "project_domain_id",
            CredField::DomainId => "domain_id",
            CredField::SystemScope => "system_scope",
            CredField::IsAdminProject => "is_admin_project",
            CredField::IsAdmin => "is_admin",
            CredField::Roles => "roles",
            CredField::TokenUserId => "token.user.id",
            CredField::TokenUserDomainId => "token.user.domain.id",
            CredField::TokenProjectId => "token.project.id",
            CredField::TokenProjectDomainId => "token.project.domain.id",
            CredField::TokenDomainId => "token.domain.id",
            CredField::Unknown(p) => p,
        }
    }
}

/// The right-hand side of a check: literal text with `%(path)s` substitutions
/// from the target (Python %-formatting, the only conversion used being `s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// A target path such as `target.project.id`.
    Var(String),
}

impl Template {
    /// Parses `match` text. `%%` is a literal percent sign.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                lit.push('%');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('(') {
                let close = inner
                    .find(')')
                    .ok_or_else(|| format!("unclosed '%(' in {text:?}"))?;
                let name = &inner[..close];
                if name.is_empty() {
                    return Err(format!("empty '%()s' substitution in {text:?}"));
                }
                let tail = inner[close + 1..]
                    .strip_prefix('s')
                    .ok_or_else(|| format!("substitution %({name}) must end in 's' in {text:?}"))?;
                if !lit.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(name.to_string()));
                rest = tail;
            } else {
                return Err(format!("a lone '%' in {text:?} (write '%%')"));
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template { parts })
    }

    /// The text if the template has no substitutions.
    pub fn as_text(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => write!(f, "{}", t.replace('%', "%%"))?,
                Part::Var(v) => write!(f, "%({v})s")?,
            }
        }
        Ok(())
    }
}

/// A rule that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ParseError {
    /// 1-based character column in the rule text.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Word(&'a str),
}

/// Splits on whitespace, peels parentheses off both ends of each word.
fn tokenize(text: &str) -> Vec<(usize, Tok<'_>)> {
    fn push_word<'t>(text: &'t str, from: usize, to: usize, out: &mut Vec<(usize, Tok<'t>)>) {
        let word = &text[from..to];
        let lead = word.len() - word.trim_start_matches('(').len();
        for i in 0..lead {
            out.push((from + i, Tok::LParen));
        }
        let inner = &word[lead..];
        let core = inner.trim_end_matches(')');
        let trail = inner.len() - core.len();
        if !core.is_empty() {
            let tok = if core.eq_ignore_ascii_case("and") {
                Tok::And
            } else if core.eq_ignore_ascii_case("or") {
                Tok::Or
            } else if core.eq_ignore_ascii_case("not") {
                Tok::Not
            } else {
                Tok::Word(core)
            };
            out.push((from + lead, tok));
        }
        for i in 0..trail {
            out.push((from + lead + core.len() + i, Tok::RParen));
        }
    }
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                push_word(text, s, i, &mut out);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        push_word(text, s, text.len(), &mut out);
    }
    out
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<(usize, Tok<'a>)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn column(&self, byte: usize) -> usize {
        self.text[..byte].chars().count() + 1
    }

    fn err_here(&self, message: impl Into<String>) -> ParseError {
        let byte = self
            .toks
            .get(self.pos)
            .map(|(b, _)| *b)
            .unwrap_or(self.text.len());
        ParseError {
            column: self.column(byte),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn parse_or(&mut self) -> Result<Rule, ParseError> {
        let mut items = vec![self.parse_and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Rule::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Rule, ParseError> {
        let mut items = vec![self.parse_not()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.parse_not()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Rule::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Rule, ParseError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Rule::Not(Box::new(self.parse_not()?)));
        }
        self.parse_atom()
    }

    fn parse_atom(&mut self) -> Result<Rule, ParseError> {
        let Some((at, tok)) = self.toks.get(self.pos).cloned() else {
            let what = match self.pos.checked_sub(1).and_then(|p| self.toks.get(p)) {
                Some((_, Tok::And)) => "expected a check after 'and'",
                Some((_, Tok::Or)) => "expected a check after 'or'",
                Some((_, Tok::Not)) => "expected a check after 'not'",
                Some((_, Tok::LParen)) => "expected a check after '('",
                _ => "expected a check",
            };
            return Err(self.err_here(what));
        };
        match tok {
            Tok::LParen => {
                self.pos += 1;
                if self.peek() == Some(&Tok::RParen) {
                    return Err(self.err_here("empty parentheses"));
                }
                let inner = self.parse_or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(ParseError {
                        column: self.column(at),
                        message: "'(' is never closed".to_string(),
                    });
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::RParen => Err(self.err_here("unexpected ')'")),
            Tok::And | Tok::Or => Err(self.err_here(format!(
                "expected a check, found '{}'",
                if tok == Tok::And { "and" } else { "or" }
            ))),
            Tok::Not => unreachable!("handled by parse_not"),
            Tok::Word(word) => {
                let rule = parse_check(word).map_err(|message| ParseError {
                    column: self.column(at),
                    message,
                })?;
                self.pos += 1;
                Ok(rule)
            }
        }
    }
}

/// Parses one `kind:match` word (or `@`, `!`, `True`, `False`).
fn parse_check(word: &str) -> Result<Rule, String> {
    match word {
        "@" | "True" | "true" => return Ok(Rule::Always),
        "!" | "False" | "false" => return Ok(Rule::Never),
        _ => {}
    }
    let Some((kind, matcher)) = split_kind(word) else {
        return Err(format!(
            "{word:?} is not a check (expected kind:match, '@' or '!')"
        ));
    };
    if kind.is_empty() {
        return Err(format!("{word:?} has an empty kind before ':'"));
    }
    match kind {
        "rule" => {
            if matcher.is_empty() {
                return Err("'rule:' needs a rule name".to_string());
            }
            Ok(Rule::Check(Check::Rule {
                name: matcher.to_string(),
                link: None,
            }))
        }
        "role" => {
            if matcher.is_empty() {
                return Err("'role:' needs a role name".to_string());
            }
            Ok(Rule::Check(Check::Role(Template::parse(matcher)?)))
        }
        _ => {
            let matcher = Template::parse(matcher)?;
            if let Some(literal) = python_literal(kind)? {
                Ok(Rule::Check(Check::Literal { literal, matcher }))
            } else {
                Ok(Rule::Check(Check::Field {
                    field: CredField::from_path(kind),
                    matcher,
                }))
            }
        }
    }
}

/// Splits at the first ':' outside a quoted literal kind (`'a:b':%(x)s`).
fn split_kind(word: &str) -> Option<(&str, &str)> {
    let first = word.chars().next()?;
    if first == '\'' || first == '"' {
        let close = word[1..].find(first)? + 1;
        let rest = &word[close + 1..];
        let matcher = rest.strip_prefix(':')?;
        return Some((&word[..=close], matcher));
    }
    word.split_once(':')
}

/// The kind as Python's `ast.literal_eval` would read it, turned into its
/// `str()`; `None` when the kind is a credential path, not a literal.
fn python_literal(kind: &str) -> Result<Option<String>, String> {
    let first = kind.chars().next().unwrap_or(' ');
    if first == '\'' || first == '"' {
        if kind.len() >= 2 && kind.ends_with(first) {
            return Ok(Some(kind[1..kind.len() - 1].to_string()));
        }
        return Err(format!("unterminated quoted literal {kind}"));
    }
    match kind {
        "True" | "False" | "None" => return Ok(Some(kind.to_string())),
        _ => {}
    }
    if let Ok(i) = kind.parse::<i64>() {
        return Ok(Some(i.to_string()));
    }
    if first.is_ascii_digit() || first == '-' {
        if let Ok(f) = kind.parse::<f64>() {
            return Ok(Some(python_float(f)));
        }
    }
    Ok(None)
}

fn python_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Parses rule text. The empty (or all-whitespace) rule always passes.
pub fn parse_rule(text: &str) -> Result<Rule, ParseError> {
    let toks = tokenize(text);
    if toks.is_empty() {
        return Ok(Rule::Always);
    }
    let mut p = Parser { text, toks, pos: 0 };
    let rule = p.parse_or()?;
    if p.pos < p.toks.len() {
        let msg = match p.peek() {
            Some(Tok::RParen) => "unexpected ')' (no matching '(')".to_string(),
            Some(Tok::Word(w)) => format!("expected 'and' or 'or' before {w:?}"),
            Some(Tok::LParen) => "expected 'and' or 'or' before '('".to_string(),
            Some(Tok::Not) => "expected 'and' or 'or' before 'not'".to_string(),
            _ => "unexpected text".to_string(),
        };
        return Err(p.err_here(msg));
    }
    Ok(rule)
}

impl fmt::Display for Rule {
    /// Writes the rule back in the policy language (parenthesised so that it
    /// parses to the same tree).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join(f: &mut fmt::Formatter<'_>, items: &[Rule], op: &str) -> fmt::Result {
            write!(f, "(")?;
            for (i, r) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{r}")?;
            }
            write!(f, ")")
        }
        match self {
            Rule::Always => write!(f, "@"),
            Rule::Never => write!(f, "!"),
            Rule::And(items) => join(f, items, "and"),
            Rule::Or(items) => join(f, items, "or"),
            Rule::Not(inner) => write!(f, "not {inner}"),
            Rule::Check(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Role(t) => write!(f, "role:{t}"),
            Check::Rule { name, .. } => write!(f, "rule:{name}"),
            Check::Literal { literal, matcher } => {
                if matches!(literal.as_str(), "True" | "False" | "None")
                    || literal.parse::<f64>().is_ok()
                {
                    write!(f, "{literal}:{matcher}")
                } else {
                    write!(f, "'{literal}':{matcher}")
                }
            }
            Check::Field { field, matcher } => write!(f, "{}:{matcher}", field.path()),
        }
    }
}

impl Rule {
    /// Calls `f` for every check in the tree.
    pub fn visit_checks<'s>(&'s self, f: &mut impl FnMut(&'s Check)) {
        match self {
            Rule::Always | Rule::Never => {}
            Rule::And(items) | Rule::Or(items) => items.iter().for_each(|r| r.visit_checks(f)),
            Rule::Not(inner) => inner.visit_checks(f),
            Rule::Check(c) => f(c),
        }
    }

    /// Mutable variant of [`Rule::visit_checks`], used to link `rule:` references.
    pub fn visit_checks_mut(&mut self, f: &mut impl FnMut(&mut Check)) {
        match self {
            Rule::Always | Rule::Never => {}
            Rule::And(items) | Rule::Or(items) => {
                items.iter_mut().for_each(|r| r.visit_checks_mut(f))
            }
            Rule::Not(inner) => inner.visit_checks_mut(f),
            Rule::Check(c) => f(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> Rule {
        Rule::Check(Check::Role(Template::parse(name).unwrap()))
    }
    fn rref(name: &str) -> Rule {
        Rule::Check(Check::Rule {
            name: name.into(),
            link: None,
        })
    }
    fn p(text: &str) -> Rule {
        parse_rule(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn constants_and_empty() {
        assert_eq!(p(""), Rule::Always);
        assert_eq!(p("   \t"), Rule::Always);
        assert_eq!(p("@"), Rule::Always);
        assert_eq!(p("!"), Rule::Never);
        assert_eq!(p("True"), Rule::Always);
        assert_eq!(p("False"), Rule::Never);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            p("role:a or role:b and role:c"),
            Rule::Or(vec![role("a"), Rule::And(vec![role("b"), role("c")])])
        );
        assert_eq!(
            p("role:a and role:b or role:c"),
            Rule::Or(vec![Rule::And(vec![role("a"), role("b")]), role("c")])
        );
        assert_eq!(
            p("role:a or role:b or role:c"),
            Rule::Or(vec![role("a"), role("b"), role("c")])
        );
        assert_eq!(
            p("role:a and role:b and role:c"),
            Rule::And(vec![role("a"), role("b"), role("c")])
        );
    }

    #[test]
    fn not_binds_tightest() {
        assert_eq!(
            p("not role:a and role:b"),
            Rule::And(vec![Rule::Not(Box::new(role("a"))), role("b")])
        );
        assert_eq!(
            p("not (role:a or role:b)"),
            Rule::Not(Box::new(Rule::Or(vec![role("a"), role("b")])))
        );
        assert_eq!(
            p("not not role:a"),
            Rule::Not(Box::new(Rule::Not(Box::new(role("a")))))
        );
    }

    #[test]
    fn parentheses_glued_and_nested() {
        assert_eq!(
            p("(role:a or role:b) and role:c"),
            Rule::And(vec![Rule::Or(vec![role("a"), role("b")]), role("c")])
        );
        assert_eq!(
            p("((role:a and (role:b or rule:x)))"),
            Rule::And(vec![role("a"), Rule::Or(vec![role("b"), rref("x")])])
        );
        assert_eq!(p("( role:a )"), role("a"));
    }

    #[test]
    fn keywords_case_insensitive() {
        assert_eq!(p("role:a AND role:b"), p("role:a and role:b"));
        assert_eq!(p("NOT role:a Or role:b"), p("not role:a or role:b"));
    }

    #[test]
    fn generic_and_literal_checks() {
        assert_eq!(
            p("project_id:%(target.project.id)s"),
            Rule::Check(Check::Field {
                field: CredField::ProjectId,
                matcher: Template {
                    parts: vec![Part::Var("target.project.id".into())]
                }
            })
        );
        assert_eq!(
            p("'member':%(target.role.name)s"),
            Rule::Check(Check::Literal {
                literal: "member".into(),
                matcher: Template {
                    parts: vec![Part::Var("target.role.name".into())]
                }
            })
        );
        assert_eq!(
            p("None:%(target.role.domain_id)s"),
            Rule::Check(Check::Literal {
                literal: "None".into(),
                matcher: Template {
                    parts: vec![Part::Var("target.role.domain_id".into())]
                }
            })
        );
        assert_eq!(
            p("is_admin:1"),
            Rule::Check(Check::Field {
                field: CredField::IsAdmin,
                matcher: Template::parse("1").unwrap()
            })
        );
        assert!(matches!(
            p("token.domain.id:%(target.user.domain_id)s"),
            Rule::Check(Check::Field {
                field: CredField::TokenDomainId,
                ..
            })
        ));
        // A value with a colon keeps everything after the first one.
        assert_eq!(
            p("role:compute:admin"),
            Rule::Check(Check::Role(Template::parse("compute:admin").unwrap()))
        );
        // A quoted literal containing a colon.
        assert!(matches!(
            p("'a:b':%(x)s"),
            Rule::Check(Check::Literal { ref literal, .. }) if literal == "a:b"
        ));
    }

    #[test]
    fn template_parts() {
        let t = Template::parse("pre-%(a.b)s-%%-%(c)s").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Text("pre-".into()),
                Part::Var("a.b".into()),
                Part::Text("-%-".into()),
                Part::Var("c".into()),
            ]
        );
        assert_eq!(t.to_string(), "pre-%(a.b)s-%%-%(c)s");
        assert_eq!(Template::parse("all").unwrap().as_text(), Some("all"));
        assert_eq!(Template::parse("").unwrap().as_text(), Some(""));
        assert!(Template::parse("%(x)d").is_err());
        assert!(Template::parse("%(x").is_err());
        assert!(Template::parse("50%").is_err());
        assert!(Template::parse("%()s").is_err());
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse_rule("role:a and").unwrap_err();
        assert_eq!(e.message, "expected a check after 'and'");
        assert_eq!(e.column, 11);

        let e = parse_rule("role:a or or role:b").unwrap_err();
        assert_eq!(e.column, 11);
        assert!(e.message.contains("found 'or'"), "{e}");

        let e = parse_rule("(role:a or role:b").unwrap_err();
        assert_eq!(e.column, 1);
        assert!(e.message.contains("never closed"));

        let e = parse_rule("role:a)").unwrap_err();
        assert_eq!(e.column, 7);
        assert!(e.message.contains("unexpected ')'"));

        let e = parse_rule("role:a role:b").unwrap_err();
        assert_eq!(e.column, 8);
        assert!(e.message.contains("expected 'and' or 'or'"));

        let e = parse_rule("role:a and admin").unwrap_err();
        assert_eq!(e.column, 12);
        assert!(e.message.contains("not a check"));

        let e = parse_rule("()").unwrap_err();
        assert!(e.message.contains("empty parentheses"));

        let e = parse_rule("not").unwrap_err();
        assert_eq!(e.message, "expected a check after 'not'");

        assert!(parse_rule("rule:").is_err());
        assert!(parse_rule("role:").is_err());
        assert!(parse_rule(":x").is_err());
        assert!(parse_rule("'open:%(x)s").is_err());
        assert!(parse_rule("user_id:%(x)d").is_err());
        // Multibyte text before the error: columns count characters.
        let e = parse_rule("'é':x and").unwrap_err();
        assert_eq!(e.column, 10);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "role:a or role:b and not role:c",
            "(rule:admin_required) or (role:reader and system_scope:all) or user_id:%(target.user.id)s",
            "'member':%(target.role.name)s and None:%(x)s and True:%(y)s",
            "not (role:a or @) and !",
        ] {
            let rule = p(text);
            assert_eq!(p(&rule.to_string()), rule, "{text} -> {rule}");
        }
    }

    /// A tiny deterministic generator (no extra dependency for a property test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    fn random_rule(g: &mut Lcg, depth: usize) -> Rule {
        let leaf = depth == 0 || g.next(3) == 0;
        if leaf {
            return match g.next(6) {
                0 => Rule::Always,
                1 => Rule::Never,
                2 => role(["admin", "member", "reader"][g.next(3)]),
                3 => rref(["a", "b"][g.next(2)]),
                4 => p("project_id:%(target.project.id)s"),
                _ => p("'member':%(target.role.name)s"),
            };
        }
        match g.next(3) {
            0 => Rule::Not(Box::new(random_rule(g, depth - 1))),
            k => {
                let items = (0..2 + g.next(3))
                    .map(|_| random_rule(g, depth - 1))
                    .collect();
                if k == 1 {
                    Rule::And(items)
                } else {
                    Rule::Or(items)
                }
            }
        }
    }

    #[test]
    fn random_trees_round_trip_through_text() {
        let mut g = Lcg(7);
        for _ in 0..2000 {
            let rule = random_rule(&mut g, 4);
            let text = rule.to_string();
            assert_eq!(parse_rule(&text).as_ref(), Ok(&rule), "{text}");
        }
    }

    #[test]
    fn random_token_soup_never_panics() {
        let words = [
            "(",
            ")",
            "and",
            "or",
            "not",
            "role:a",
            "rule:b",
            "@",
            "!",
            "%(x)s",
            "'q':%(y)s",
            "x:",
            ":",
            "'",
            "(role:c",
            "role:d)",
            "é",
            "%",
            "True",
            "None:%(z)s",
        ];
        let mut g = Lcg(42);
        for _ in 0..5000 {
            let n = g.next(8);
            let text: Vec<&str> = (0..n).map(|_| words[g.next(words.len())]).collect();
            let text = text.join(if g.next(2) == 0 { " " } else { "" });
            if let Err(e) = parse_rule(&text) {
                assert!(
                    e.column >= 1 && e.column <= text.chars().count() + 1,
                    "{text:?}: {e}"
                );
            }
        }
    }
}
