//! A migration record (Nova's `migrations` table): one per resize, kept
//! after the resize ends so that `GET /os-migrations` shows its history.
//! weft resizes on the server's own host, so source and destination are
//! the same host.

use serde::{Deserialize, Serialize};

/// A migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// Nova's integer id, never reused.
    pub id: u64,
    /// Its uuid (2.59): the placement consumer of the old flavor's
    /// allocation while the resize is open.
    pub uuid: String,
    /// The server's id (`instance_uuid`).
    pub server_id: String,
    /// Its project (2.80).
    pub project_id: String,
    /// Its user (2.80).
    pub user_id: String,
    /// The host it left (`source_compute`; also `source_node`).
    pub source_compute: Option<String>,
    /// The host it went to (`dest_compute`; also `dest_node`).
    pub dest_compute: Option<String>,
    /// The destination host's address (`dest_host`).
    pub dest_host: Option<String>,
    /// The flavor before (`old_instance_type_id`).
    pub old_flavor_id: String,
    /// The flavor after (`new_instance_type_id`).
    pub new_flavor_id: String,
    /// 2.23's `migration_type`: `resize` (Nova's name for a move that
    /// changes the flavor, which a weft resize always does).
    pub migration_type: String,
    /// Nova's status: pre-migrating, migrating, finished, confirming,
    /// confirmed, reverting, reverted, error.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once changed.
    pub updated_at: Option<String>,
}

impl MigrationRecord {
    /// Whether it is over (its status no longer moves).
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "confirmed" | "reverted" | "error")
    }
}
