//! SQLite backend: one file in WAL mode, the embedded default. A commit
//! survives kill -9 (WAL, synchronous=NORMAL: the last commits may be lost
//! only on power loss, never half-applied).

use crate::migrate;
use crate::{
    decode_changes, encode_changes, resolve, Change, Committed, Listener, Loaded, LogEntry, Row,
    Store, StoreError, CHANGELOG_KEEP,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The embedded store. One connection: SQLite serialises writers anyway, and
/// every caller is a blocking thread.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it and its directory, owner-only) the database file at `path`, migrating it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
            }
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        // The file holds password hashes and the token keys: owner only.
        // SQLite gives its -wal and -shm files the database file's mode.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private in-memory database (tests, benches).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
        )?;
        let applied: Vec<i64> = {
            let mut st = tx.prepare("SELECT version FROM schema_migrations")?;
            let v = st
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            v
        };
        for m in migrate::pending(migrate::SQLITE, &applied)? {
            tx.execute_batch(m.sql)
                .map_err(|e| StoreError::Migration(format!("{}: {e}", m.name)))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                params![m.version, m.name],
            )?;
        }
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic mid-transaction rolls the transaction back on drop, so the
        // connection behind a poisoned lock is still consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn revision_of(conn: &Connection, service: &str) -> Result<u64, StoreError> {
    let r: Option<i64> = conn
        .query_row(
            "SELECT revision FROM services WHERE name = ?1",
            [service],
            |r| r.get(0),
        )
        .optional()?;
    Ok(r.unwrap_or(0) as u64)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn load(&self, service: &str) -> Result<Loaded, StoreError> {
        let mut conn = self.conn();
        // One read transaction: the rows and the revision agree.
        let tx = conn.transaction()?;
        let revision = revision_of(&tx, service)?;
        let rows = {
            let mut st = tx.prepare("SELECT kind, id, body FROM records WHERE service = ?1")?;
            let v = st
                .query_map([service], |r| {
                    Ok(Row {
                        kind: r.get(0)?,
                        id: r.get(1)?,
                        body: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            v
        };
        tx.commit()?;
        Ok(Loaded { revision, rows })
    }

    fn commit(&self, service: &str, expected: u64, changes: &[Change]) -> Result<u64, StoreError> {
        let log = encode_changes(changes)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let actual = revision_of(&tx, service)?;
        if actual != expected {
            return Err(StoreError::Conflict {
                service: service.to_string(),
                expected,
                actual,
            });
        }
        let next = expected + 1;
        tx.execute(
            "INSERT INTO services (name, revision) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET revision = excluded.revision",
            params![service, next as i64],
        )?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO records (service, kind, id, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (service, kind, id) DO UPDATE SET body = excluded.body",
            )?;
            let mut del = tx.prepare_cached(
                "DELETE FROM records WHERE service = ?1 AND kind = ?2 AND id = ?3",
            )?;
            for c in changes {
                match c {
                    Change::Put { kind, id, body } => {
                        put.execute(params![service, kind, id, body])?;
                    }
                    Change::Delete { kind, id } => {
                        del.execute(params![service, kind, id])?;
                    }
                }
            }
        }
        tx.execute(
            "INSERT INTO changelog (service, revision, changes) VALUES (?1, ?2, ?3)",
            params![service, next as i64, log],
        )?;
        if next > CHANGELOG_KEEP && next.is_multiple_of(100) {
            tx.execute(
                "DELETE FROM changelog WHERE service = ?1 AND revision <= ?2",
                params![service, (next - CHANGELOG_KEEP) as i64],
            )?;
        }
        tx.commit()?;
        Ok(next)
    }

    fn changes_since(&self, service: &str, after: u64) -> Result<Vec<Committed>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let out = {
            let mut st = tx.prepare(
                "SELECT revision, changes FROM changelog
                 WHERE service = ?1 AND revision > ?2 ORDER BY revision",
            )?;
            let rows = st
                .query_map(params![service, after as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        let current = revision_of(&tx, service)?;
        let log = collect_log(service, after, current, out)?;
        let resolved = {
            let mut get = tx.prepare_cached(
                "SELECT body FROM records WHERE service = ?1 AND kind = ?2 AND id = ?3",
            )?;
            resolve(log, |kind, id| {
                Ok(get
                    .query_row(params![service, kind, id], |r| r.get(0))
                    .optional()?)
            })?
        };
        tx.commit()?;
        Ok(resolved)
    }

    fn import(&self, service: &str, revision: u64, rows: &[Row]) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT revision FROM services WHERE name = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO services (name, revision) VALUES (?1, ?2)",
            params![service, revision as i64],
        )?;
        {
            let mut put = tx.prepare(
                "INSERT OR REPLACE INTO records (service, kind, id, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in rows {
                put.execute(params![service, r.kind, r.id, r.body])?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        Ok(Some(Box::new(Poll)))
    }
}

/// SQLite has no notifications: another process on the same file (`weft
/// identity rotate-keys` beside a running `weft serve`) is seen by the
/// follower's catch-up every [`crate::FOLLOW_POLL`].
struct Poll;

impl Listener for Poll {
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<crate::Notice>, StoreError> {
        std::thread::sleep(timeout);
        Ok(Vec::new())
    }
}

/// Reads a state file from before the store (one SQLite file per service: a
/// `meta(key, value)` table holding `revision`, and `table` of (kind, id,
/// body) rows), read-only, for a service's one-time import with
/// [`Store::import`]. The revision may be stored as text or as an integer.
pub fn read_legacy(path: &Path, table: &str) -> Result<(u64, Vec<Row>), StoreError> {
    let err = |e: rusqlite::Error| StoreError::Backend(format!("{}: {e}", path.display()));
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    let revision: i64 = conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'revision'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    // `table` is one of the callers' own constants, never input.
    let mut stmt = conn
        .prepare(&format!("SELECT kind, id, body FROM {table}"))
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Row {
                kind: r.get(0)?,
                id: r.get(1)?,
                body: r.get(2)?,
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok((revision.max(0) as u64, rows))
}

/// Checks that the log rows read are exactly revisions `after+1..=current`.
pub(crate) fn collect_log(
    service: &str,
    after: u64,
    current: u64,
    rows: Vec<(i64, String)>,
) -> Result<Vec<(u64, Vec<LogEntry>)>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    let mut want = after + 1;
    for (rev, text) in rows {
        let rev = rev as u64;
        if rev > current {
            break; // committed after `current` was read: the next catch-up takes it
        }
        if rev != want {
            return Err(StoreError::LogTruncated {
                service: service.to_string(),
                after,
            });
        }
        out.push((rev, decode_changes(&text)?));
        want += 1;
    }
    if want <= current {
        return Err(StoreError::LogTruncated {
            service: service.to_string(),
            after,
        });
    }
    Ok(out)
}
