//! Persistence behind a trait: SQLite (embedded, the default) now, room for
//! PostgreSQL when several API replicas share one database.

use crate::state::Change;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[error("identity storage: {0}")]
pub struct StorageError(pub String);

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError(e.to_string())
    }
}

/// Keyed records, written in transactions that also record the revision.
pub trait Storage: Send + Sync {
    /// Every stored (kind, id, body) row and the last committed revision.
    fn load(&self) -> Result<(u64, Vec<(String, String, String)>), StorageError>;
    /// Apply `changes` and set the revision, all or nothing.
    fn commit(&self, revision: u64, changes: &[Change]) -> Result<(), StorageError>;
}

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];

/// SQLite in WAL mode: a commit survives the process being killed (-9).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StorageError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (v, sql) in MIGRATIONS {
            if *v > version {
                conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {v}; COMMIT;"))?;
            }
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }
}

impl Storage for SqliteStore {
    fn load(&self) -> Result<(u64, Vec<(String, String, String)>), StorageError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| StorageError("lock poisoned".into()))?;
        let rev: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                r.get(0)
            })?;
        let mut stmt = conn.prepare("SELECT kind, id, body FROM records")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rev.parse().unwrap_or(0), rows))
    }

    fn commit(&self, revision: u64, changes: &[Change]) -> Result<(), StorageError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StorageError("lock poisoned".into()))?;
        let tx = conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO records (kind, id, body) VALUES (?1, ?2, ?3)",
            )?;
            let mut del = tx.prepare_cached("DELETE FROM records WHERE kind = ?1 AND id = ?2")?;
            for c in changes {
                match c {
                    Change::Put { kind, id, body } => {
                        put.execute(params![kind, id, body])?;
                    }
                    Change::Delete { kind, id } => {
                        del.execute(params![kind, id])?;
                    }
                }
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'revision'",
                params![revision.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
