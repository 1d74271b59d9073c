//! Storage behind a trait; SQLite (one file, `networking.db`) is the default.
//!
//! A commit writes every change of one request and bumps the global revision
//! in a single transaction, so an agent never sees half a request.

use super::error::{NetError, NetResult};
use super::state::{Change, Kind, State};
use rusqlite::{params, Connection};
use std::path::Path;

pub trait Store: Send {
    /// Everything, for the in-memory state at start-up.
    fn load(&mut self) -> NetResult<State>;
    /// Applies `changes` and bumps the revision atomically; returns the new revision.
    fn commit(&mut self, changes: &[Change]) -> NetResult<u64>;
}

const MIGRATIONS: &[&str] = &[include_str!("migrations/001_init.sql")];

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> NetResult<SqliteStore> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn in_memory() -> NetResult<SqliteStore> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> NetResult<SqliteStore> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = conn.transaction()?;
        for (i, m) in MIGRATIONS.iter().enumerate() {
            if (i as i64) >= version {
                tx.execute_batch(m)?;
            }
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(SqliteStore { conn })
    }
}

fn body(c: &Change) -> NetResult<String> {
    let v = match c {
        Change::Network(x) => serde_json::to_string(x),
        Change::Subnet(x) => serde_json::to_string(x),
        Change::Port(x) => serde_json::to_string(x),
        Change::SecurityGroup(x) => serde_json::to_string(x),
        Change::Rule(x) => serde_json::to_string(x),
        Change::Agent(x) => serde_json::to_string(x),
        Change::Delete(..) => Ok(String::new()),
    };
    v.map_err(|e| NetError::Storage(e.to_string()))
}

fn decode(kind: Kind, body: &str) -> Result<Change, serde_json::Error> {
    Ok(match kind {
        Kind::Network => Change::Network(serde_json::from_str(body)?),
        Kind::Subnet => Change::Subnet(serde_json::from_str(body)?),
        Kind::Port => Change::Port(serde_json::from_str(body)?),
        Kind::SecurityGroup => Change::SecurityGroup(serde_json::from_str(body)?),
        Kind::Rule => Change::Rule(serde_json::from_str(body)?),
        Kind::Agent => Change::Agent(serde_json::from_str(body)?),
    })
}

impl Store for SqliteStore {
    fn load(&mut self) -> NetResult<State> {
        let mut st = State::default();
        st.revision =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64;
        let mut stmt = self.conn.prepare("SELECT kind, id, body FROM resources")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut changes = Vec::new();
        for row in rows {
            let (kind, id, body) = row?;
            let k = Kind::parse(&kind)
                .ok_or_else(|| NetError::Storage(format!("unknown kind {kind} for {id}")))?;
            changes.push(
                decode(k, &body).map_err(|e| NetError::Storage(format!("{kind} {id}: {e}")))?,
            );
        }
        st.apply(&changes);
        Ok(st)
    }

    fn commit(&mut self, changes: &[Change]) -> NetResult<u64> {
        let tx = self.conn.transaction()?;
        for c in changes {
            let (kind, id) = c.kind_id();
            match c {
                Change::Delete(..) => {
                    tx.execute(
                        "DELETE FROM resources WHERE kind = ?1 AND id = ?2",
                        params![kind.as_str(), id],
                    )?;
                }
                _ => {
                    tx.execute(
                        "INSERT INTO resources (kind, id, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                        params![kind.as_str(), id, body(c)?],
                    )?;
                }
            }
        }
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
            [],
        )?;
        let rev: i64 = tx.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })?;
        tx.commit()?;
        Ok(rev as u64)
    }
}
