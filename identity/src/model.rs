//! The identity records as plain data. Each record is stored whole (as JSON)
//! by the storage layer and indexed in memory by [`crate::state::State`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Microseconds since the Unix epoch: the one time unit inside the service.
pub type Micros = i64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Domain {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub enabled: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    /// The parent project; `None` for a top-level project (whose API
    /// `parent_id` is its domain, as Keystone shows it).
    pub parent_id: Option<String>,
    #[serde(default)]
    pub description: String,
    pub enabled: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub enabled: bool,
    /// bcrypt hash; never leaves the service.
    pub password_hash: Option<String>,
    pub password_created_at: Option<Micros>,
    pub password_expires_at: Option<Micros>,
    pub default_project_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub options: Map<String, Value>,
    /// Free-form attributes (email, ...), returned as given.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Role {
    pub id: String,
    pub name: String,
    /// `Some` for a domain-specific role.
    pub domain_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub options: Map<String, Value>,
}

/// Who holds an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Actor {
    User(String),
    Group(String),
}

/// Where an assignment applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Target {
    Project(String),
    Domain(String),
    /// The whole deployment (`system: all`).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Assignment {
    pub actor: Actor,
    pub target: Target,
    pub role_id: String,
    /// OS-INHERIT: applies to the projects below the target, not the target.
    pub inherited: bool,
}

impl Assignment {
    /// Stable storage key.
    pub fn key(&self) -> String {
        let (ak, a) = match &self.actor {
            Actor::User(u) => ("u", u.as_str()),
            Actor::Group(g) => ("g", g.as_str()),
        };
        let (tk, t) = match &self.target {
            Target::Project(p) => ("p", p.as_str()),
            Target::Domain(d) => ("d", d.as_str()),
            Target::System => ("s", "all"),
        };
        format!(
            "{ak}:{a}|{tk}:{t}|{}|{}",
            self.role_id,
            u8::from(self.inherited)
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Region {
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub parent_region_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub id: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub service_id: String,
    /// public, internal or admin.
    pub interface: String,
    pub url: String,
    pub region_id: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppCred {
    pub id: String,
    pub user_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// SHA-256 of the secret (the secret is 64 random bytes, so a slow hash adds nothing).
    pub secret_hash: String,
    pub project_id: String,
    pub role_ids: Vec<String>,
    pub expires_at: Option<Micros>,
    pub unrestricted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trust {
    pub id: String,
    pub trustor_user_id: String,
    pub trustee_user_id: String,
    pub project_id: Option<String>,
    pub role_ids: Vec<String>,
    pub impersonation: bool,
    pub expires_at: Option<Micros>,
    pub remaining_uses: Option<u64>,
    pub allow_redelegation: bool,
    pub redelegation_count: u32,
    pub redelegated_trust_id: Option<String>,
}

/// Tokens issued at or before `issued_before` that match every set field are revoked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RevocationEvent {
    pub id: String,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub audit_id: Option<String>,
    pub trust_id: Option<String>,
    pub issued_before: Micros,
}
