//! Server groups (os-server-groups): a policy that the scheduler applies
//! to the group's members. Membership is not stored here: a server names
//! its group (`Server::server_group`, from the `group` scheduler hint), so
//! a deleted server leaves the group when its record goes, with no second
//! list to keep in step.

use serde::{Deserialize, Serialize};

/// The four policies Nova offers.
pub const POLICIES: &[&str] = &[
    "affinity",
    "anti-affinity",
    "soft-affinity",
    "soft-anti-affinity",
];

/// A server group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerGroup {
    /// UUID.
    pub id: String,
    /// Display name (not unique).
    pub name: String,
    /// Owner project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// One of [`POLICIES`].
    pub policy: String,
    /// `rules.max_server_per_host` (2.64, anti-affinity only).
    pub max_server_per_host: Option<u32>,
    /// When it was created.
    pub created_at: String,
}
