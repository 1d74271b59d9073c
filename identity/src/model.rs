//! The identity records as plain data. Each record is stored whole (as JSON)
//! by the storage layer and indexed in memory by [`crate::state::State`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Microseconds since the Unix epoch: the one time unit inside the service.
pub type Micros = i64;

/// An identity domain: the namespace of users, groups and projects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Domain {
    /// Random id (`default` for the bootstrap domain).
    pub id: String,
    /// Unique across domains.
    pub name: String,
    #[serde(default)]
    /// Free text.
    pub description: String,
    /// A disabled domain's users and projects cannot get tokens.
    pub enabled: bool,
    #[serde(default)]
    /// Keystone's tags, returned and filtered on as given.
    pub tags: Vec<String>,
    #[serde(default)]
    /// Attributes Keystone keeps but weft does not interpret, returned as given.
    pub extra: Map<String, Value>,
}

/// A project: what tokens are scoped to and roles are assigned on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    /// Random id.
    pub id: String,
    /// Unique among the projects of its domain.
    pub name: String,
    /// Its domain (for a top-level project, also its parent).
    pub domain_id: String,
    /// The parent project; `None` for a top-level project (whose API
    /// `parent_id` is its domain, as Keystone shows it).
    pub parent_id: Option<String>,
    #[serde(default)]
    /// Free text.
    pub description: String,
    /// A disabled project gets no scoped token, and its tokens stop validating.
    pub enabled: bool,
    #[serde(default)]
    /// Keystone's tags, returned and filtered on as given.
    pub tags: Vec<String>,
    #[serde(default)]
    /// Attributes Keystone keeps but weft does not interpret, returned as given.
    pub extra: Map<String, Value>,
}

/// A user: who authenticates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// Random id.
    pub id: String,
    /// Unique among the users of its domain.
    pub name: String,
    /// Its domain: a name means nothing without it.
    pub domain_id: String,
    /// A disabled user cannot authenticate, and its tokens stop validating.
    pub enabled: bool,
    /// bcrypt hash; never leaves the service.
    pub password_hash: Option<String>,
    /// When the password was set (micros).
    pub password_created_at: Option<Micros>,
    /// After this the password no longer authenticates (micros); None: never.
    pub password_expires_at: Option<Micros>,
    /// The project a token is scoped to when the request names none.
    pub default_project_id: Option<String>,
    #[serde(default)]
    /// Free text.
    pub description: Option<String>,
    #[serde(default)]
    /// Keystone's per-user options (`ignore_password_expiry`, ...), kept as given.
    pub options: Map<String, Value>,
    /// Free-form attributes (email, ...), returned as given.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// A group of users: roles assigned to it reach its members.
pub struct Group {
    /// Random id.
    pub id: String,
    /// Unique among the groups of its domain.
    pub name: String,
    /// Its domain.
    pub domain_id: String,
    #[serde(default)]
    /// Free text.
    pub description: String,
    #[serde(default)]
    /// Attributes Keystone keeps but weft does not interpret, returned as given.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// A role: what policy rules ask for (`role:admin`).
pub struct Role {
    /// Random id.
    pub id: String,
    /// Unique among global roles (or within its domain): rules name roles by name.
    pub name: String,
    /// `Some` for a domain-specific role.
    pub domain_id: Option<String>,
    #[serde(default)]
    /// Free text.
    pub description: Option<String>,
    #[serde(default)]
    /// Keystone's role options (`immutable`), kept as given.
    pub options: Map<String, Value>,
}

/// Who holds an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Actor {
    /// A user, by id.
    User(String),
    /// A group (its members hold the role), by id.
    Group(String),
}

/// Where an assignment applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "lowercase")]
pub enum Target {
    /// A project, by id.
    Project(String),
    /// A domain, by id.
    Domain(String),
    /// The whole deployment (`system: all`).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
/// A role held by an actor on a target.
pub struct Assignment {
    /// Who holds the role.
    pub actor: Actor,
    /// Where it applies.
    pub target: Target,
    /// The role.
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
/// A catalog region.
pub struct Region {
    /// Chosen by the creator (`RegionOne`).
    pub id: String,
    #[serde(default)]
    /// Free text.
    pub description: String,
    /// Regions nest; a parent cannot be deleted while it has children.
    pub parent_region_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// A catalog service (`identity`, `network`): endpoints belong to it.
pub struct Service {
    /// Random id.
    pub id: String,
    #[serde(rename = "type")]
    /// What clients look it up by (`network`).
    pub service_type: String,
    /// Display name (`neutron`).
    pub name: Option<String>,
    #[serde(default)]
    /// Free text.
    pub description: Option<String>,
    /// A disabled service is left out of token catalogs.
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// A catalog endpoint: a URL of a service.
pub struct Endpoint {
    /// Random id.
    pub id: String,
    /// The service it serves.
    pub service_id: String,
    /// public, internal or admin.
    pub interface: String,
    /// Base URL clients call.
    pub url: String,
    /// Its region, if any.
    pub region_id: Option<String>,
    /// A disabled endpoint is left out of token catalogs.
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// An application credential: a secret a user gives to a program, limited to a project and roles.
pub struct AppCred {
    /// Random id.
    pub id: String,
    /// The user it acts as.
    pub user_id: String,
    /// Unique among the user's credentials.
    pub name: String,
    #[serde(default)]
    /// Free text.
    pub description: Option<String>,
    /// SHA-256 of the secret (the secret is 64 random bytes, so a slow hash adds nothing).
    pub secret_hash: String,
    /// The project its tokens are scoped to.
    pub project_id: String,
    /// The roles it carries (a subset of the user's when it was made).
    pub role_ids: Vec<String>,
    /// After this it no longer authenticates (micros); None: never.
    pub expires_at: Option<Micros>,
    /// False: it may not create credentials or trusts (Keystone's default).
    pub unrestricted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// A trust: a trustor delegates roles on a project to a trustee.
pub struct Trust {
    /// Random id.
    pub id: String,
    /// Who delegates.
    pub trustor_user_id: String,
    /// Who acts.
    pub trustee_user_id: String,
    /// The project the roles are delegated on; None: no project scope.
    pub project_id: Option<String>,
    /// The delegated roles (the trustor must hold them).
    pub role_ids: Vec<String>,
    /// True: tokens show the trustor as the user.
    pub impersonation: bool,
    /// After this the trust is void (micros); None: never.
    pub expires_at: Option<Micros>,
    /// Tokens it may still issue; None: unlimited.
    pub remaining_uses: Option<u64>,
    /// Whether the trustee may delegate it further.
    pub allow_redelegation: bool,
    /// How many more times it may be redelegated.
    pub redelegation_count: u32,
    /// The trust this one was redelegated from.
    pub redelegated_trust_id: Option<String>,
}

/// Tokens issued at or before `issued_before` that match every set field are revoked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RevocationEvent {
    /// Random id.
    pub id: String,
    /// Tokens of this user.
    pub user_id: Option<String>,
    /// Tokens scoped to this project.
    pub project_id: Option<String>,
    /// Tokens scoped to this domain.
    pub domain_id: Option<String>,
    /// The token with this audit id (and the tokens made from it).
    pub audit_id: Option<String>,
    /// Tokens issued under this trust.
    pub trust_id: Option<String>,
    /// Only tokens issued at or before this (micros) are revoked.
    pub issued_before: Micros,
}

/// A new random id, in Keystone's form (32 hex digits).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
