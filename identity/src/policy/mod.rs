//! Policy: an oslo.policy-compatible rule language and enforcer.
//!
//! CONTRACT (the policy branch replaces the body; the signatures below are what
//! the identity service and the networking service call):
//! - `Enforcer::new(defaults, overrides_file, mode, record_path)`
//! - `Enforcer::authorize(action, target, creds)`: `Ok(())` when allowed (or in
//!   permissive mode, where a would-be denial is recorded), `Err(PolicyDenied)` otherwise.
//! - `identity_defaults()`: Keystone's default rules for every identity action.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Who is asking: what a validated token says about its holder and scope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub user_id: String,
    pub user_domain_id: Option<String>,
    /// Effective role names for the token's scope (implied roles expanded).
    pub roles: Vec<String>,
    pub project_id: Option<String>,
    pub project_domain_id: Option<String>,
    /// Set for a domain-scoped token.
    pub domain_id: Option<String>,
    /// `Some("all")` for a system-scoped token.
    pub system_scope: Option<String>,
    pub is_admin_project: bool,
}

/// Enforce denies; Permissive allows everything but records what would have been denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Permissive,
}

/// A denial: the action and the rule that refused it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy does not allow {action} to be performed")]
pub struct PolicyDenied {
    pub action: String,
    pub rule: String,
}

/// Bad policy file or rule text.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("rule for {action}: {message}")]
    Rule { action: String, message: String },
}

/// Evaluates rules for actions. Cheap to share (`Send + Sync`).
#[derive(Debug)]
pub struct Enforcer {
    mode: Mode,
}

impl Enforcer {
    /// `defaults`: (action, rule) pairs in code; `overrides_file`: YAML/JSON policy file;
    /// `record_path`: where permissive-mode denials are appended (JSON lines).
    pub fn new(
        _defaults: &[(&str, &str)],
        _overrides_file: Option<&Path>,
        mode: Mode,
        _record_path: Option<PathBuf>,
    ) -> Result<Self, PolicyError> {
        Ok(Enforcer { mode })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Placeholder until the policy branch lands: admin may do anything, others nothing.
    pub fn authorize(
        &self,
        action: &str,
        _target: &serde_json::Value,
        creds: &Credentials,
    ) -> Result<(), PolicyDenied> {
        if self.mode == Mode::Permissive || creds.roles.iter().any(|r| r == "admin") {
            Ok(())
        } else {
            Err(PolicyDenied {
                action: action.to_string(),
                rule: "role:admin".to_string(),
            })
        }
    }
}

/// Keystone's default rule for every identity action (filled in by the policy branch).
pub fn identity_defaults() -> &'static [(&'static str, &'static str)] {
    &[]
}
