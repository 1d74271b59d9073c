#![forbid(unsafe_code)]
#![deny(missing_docs)]
//! weft-store: the one store behind every weft service (identity,
//! networking, and the images, placement and compute services to come).
//!
//! ```text
//!  service logic: fn(&State, ..) -> (T, Vec<Change>)      (pure, no I/O)
//!        │
//!        ▼
//!  Replica<M>::write ── Store::commit(service, expected_revision, changes)
//!        │                 one transaction: records + revision + change log
//!        │                 (a stale expected revision is StoreError::Conflict:
//!        │                  the writer catches up and reruns, never overwrites)
//!        ▼
//!  ArcSwap<M> snapshot ◄── followers: LISTEN weft_store / poll, then
//!        │                 Store::changes_since(service, revision)
//!        ▼
//!  readers (HTTP handlers, token validation, agents) never wait for a write
//! ```
//!
//! Records are JSON documents keyed by (service, kind, id): the relational
//! work of each service happens on its in-memory state, so the store needs
//! only keyed puts and deletes, a revision per service, and a log of commits
//! that other replicas replay.
//!
//! Backends: SQLite (embedded, one file, the default) and PostgreSQL (several
//! `weft serve` replicas on one database). Both share the schema in
//! `migrations/<backend>/*.sql`, applied and checked at open.
//!
//! Non-goals: queries over record fields, cross-service transactions, a
//! schema per resource.

mod migrate;
mod postgres;
mod replica;
mod sqlite;
pub mod testing;

pub use postgres::PgStore;
pub use replica::{follow, Follow, Model, Replica, FOLLOW_POLL, MAX_ATTEMPTS};
pub use sqlite::{read_legacy, SqliteStore};

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One stored record, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The record kind (`port`, `user`, ...).
    pub kind: String,
    /// The record's id within its kind.
    pub id: String,
    /// The record, as JSON.
    pub body: String,
}

/// One change of a commit: a record written whole, or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Write `body` as record (kind, id), replacing any there.
    Put {
        /// The record kind.
        kind: String,
        /// The record's id.
        id: String,
        /// The record, as JSON.
        body: String,
    },
    /// Remove record (kind, id); nothing if absent.
    Delete {
        /// The record kind.
        kind: String,
        /// The record's id.
        id: String,
    },
}

impl Change {
    /// A put of `body` as record (`kind`, `id`).
    pub fn put(kind: impl Into<String>, id: impl Into<String>, body: impl Into<String>) -> Change {
        Change::Put {
            kind: kind.into(),
            id: id.into(),
            body: body.into(),
        }
    }

    /// A delete of record (`kind`, `id`).
    pub fn delete(kind: impl Into<String>, id: impl Into<String>) -> Change {
        Change::Delete {
            kind: kind.into(),
            id: id.into(),
        }
    }

    /// A put of `value` serialized as JSON.
    pub fn put_json<T: Serialize>(
        kind: impl Into<String>,
        id: impl Into<String>,
        value: &T,
    ) -> Result<Change, StoreError> {
        let body = serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        Ok(Change::put(kind, id, body))
    }

    /// The kind of the record changed.
    pub fn kind(&self) -> &str {
        match self {
            Change::Put { kind, .. } | Change::Delete { kind, .. } => kind,
        }
    }

    /// The id of the record changed.
    pub fn id(&self) -> &str {
        match self {
            Change::Put { id, .. } | Change::Delete { id, .. } => id,
        }
    }
}

/// A service's records and the revision they are at.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The revision of the service these rows are at (0: never committed).
    pub revision: u64,
    /// Every record of the service.
    pub rows: Vec<Row>,
}

/// One commit from the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The revision this commit made.
    pub revision: u64,
    /// What it changed, in order.
    pub changes: Vec<Change>,
}

/// What a store operation fails with. Knows nothing of HTTP: each API maps
/// `Conflict` to its own 409 and the rest to its own 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The writer read `expected`, but another writer committed since
    /// (the service is at `actual`). Nothing was written.
    #[error("revision conflict on {service}: expected {expected}, store is at {actual}")]
    Conflict {
        /// The service written.
        service: String,
        /// The revision the writer read.
        expected: u64,
        /// The revision the store is at.
        actual: u64,
    },
    /// The change log no longer holds the commits after `after`: reload.
    #[error("change log of {service} is truncated before revision {after}")]
    LogTruncated {
        /// The service followed.
        service: String,
        /// The revision the follower is at.
        after: u64,
    },
    /// The database's schema is newer than this binary, or a migration failed.
    #[error("schema migration: {0}")]
    Migration(String),
    /// A record could not be encoded or a stored one decoded.
    #[error("record encoding: {0}")]
    Encode(String),
    /// `--database` names something this build cannot open.
    #[error("database URL: {0}")]
    Url(String),
    /// The database failed (I/O, connection lost, constraint).
    #[error("database: {0}")]
    Backend(String),
}

/// A notice that `service` committed `revision` (possibly in another process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The service that committed.
    pub service: String,
    /// The revision it committed.
    pub revision: u64,
}

/// Waits for other processes' commits (PostgreSQL LISTEN/NOTIFY).
pub trait Listener: Send {
    /// Returns the notices that arrived within `timeout` (empty on timeout).
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Notice>, StoreError>;
}

/// The store every service writes through. Blocking: call it from a writer
/// or follower thread (or `spawn_blocking`), never from an async task.
pub trait Store: Send + Sync {
    /// "sqlite" or "postgresql", for logs and metrics.
    fn backend(&self) -> &'static str;
    /// Every record of `service` and its revision (0 for a new service).
    fn load(&self, service: &str) -> Result<Loaded, StoreError>;
    /// Applies `changes` if `service` is still at `expected`; returns the new
    /// revision (`expected + 1`). On a stale `expected` nothing is written and
    /// the error is [`StoreError::Conflict`].
    fn commit(&self, service: &str, expected: u64, changes: &[Change]) -> Result<u64, StoreError>;
    /// The commits of `service` after revision `after`, oldest first.
    fn changes_since(&self, service: &str, after: u64) -> Result<Vec<Committed>, StoreError>;
    /// Writes `rows` as `service`'s records at `revision`, only while the
    /// service has never committed (importing an older state directory).
    fn import(&self, service: &str, revision: u64, rows: &[Row]) -> Result<bool, StoreError>;
    /// A listener for other processes' commits (on SQLite one that only
    /// waits, so followers poll), or `None` where nothing else can write.
    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError>;
}

/// How many commits the change log keeps per service; a follower further
/// behind than this reloads the whole service.
pub const CHANGELOG_KEEP: u64 = 10_000;

/// Opens the store a `--database` value names: `postgresql://...` /
/// `postgres://...`, or `sqlite:PATH` / a plain path. `None` opens
/// `<state_dir>/weft.sqlite`.
pub fn open(url: Option<&str>, state_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        None => Ok(Arc::new(SqliteStore::open(&state_dir.join("weft.sqlite"))?)),
        Some(u) if u.starts_with("postgresql://") || u.starts_with("postgres://") => {
            Ok(Arc::new(PgStore::connect(u)?))
        }
        Some(u) => {
            let path = u
                .strip_prefix("sqlite://")
                .or_else(|| u.strip_prefix("sqlite:"))
                .unwrap_or(u);
            if path.is_empty() || path.contains("://") {
                return Err(StoreError::Url(format!(
                    "'{u}' is neither postgresql://... nor a SQLite path"
                )));
            }
            Ok(Arc::new(SqliteStore::open(Path::new(path))?))
        }
    }
}

/// Hides a password in a database URL for logs.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((cred, host)) = rest.rsplit_once('@') {
            let user = cred.split(':').next().unwrap_or("");
            return format!("{scheme}://{user}:***@{host}");
        }
    }
    url.to_string()
}

/// What the change log keeps of one change: the record it touched, not its
/// body (the body is in `records` already; writing it twice cost a fifth of
/// the port-create rate). A follower reads the bodies of the records its
/// catch-up touched as they are at the revision it catches up to, in the
/// same read transaction, so what it applies is exactly the state at that
/// revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    /// Whether the commit put the record (true) or deleted it.
    put: bool,
    kind: String,
    id: String,
}

pub(crate) fn encode_changes(changes: &[Change]) -> Result<String, StoreError> {
    let refs: Vec<LogEntry> = changes
        .iter()
        .map(|c| LogEntry {
            put: matches!(c, Change::Put { .. }),
            kind: c.kind().to_string(),
            id: c.id().to_string(),
        })
        .collect();
    serde_json::to_string(&refs).map_err(|e| StoreError::Encode(e.to_string()))
}

pub(crate) fn decode_changes(text: &str) -> Result<Vec<LogEntry>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Turns log entries into changes: a put takes the record's body as it is
/// now (`body` looks it up); a record put and later deleted is a delete.
pub(crate) fn resolve(
    log: Vec<(u64, Vec<LogEntry>)>,
    mut body: impl FnMut(&str, &str) -> Result<Option<String>, StoreError>,
) -> Result<Vec<Committed>, StoreError> {
    log.into_iter()
        .map(|(revision, entries)| {
            let changes = entries
                .into_iter()
                .map(|e| {
                    Ok(match (e.put, body(&e.kind, &e.id)?) {
                        (true, Some(b)) => Change::Put {
                            kind: e.kind,
                            id: e.id,
                            body: b,
                        },
                        _ => Change::Delete {
                            kind: e.kind,
                            id: e.id,
                        },
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Committed { revision, changes })
        })
        .collect()
}
