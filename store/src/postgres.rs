//! PostgreSQL backend: several `weft serve` replicas on one database.
//!
//! A commit is one READ COMMITTED transaction that first moves the service's
//! revision with `UPDATE .. WHERE revision = expected`: two replicas racing
//! from the same revision serialise on that row lock, and the loser sees
//! zero rows updated, so it gets a `Conflict` and writes nothing. The same
//! transaction appends to the change log and `pg_notify`s channel
//! `weft_store` with "service revision", delivered to listeners at commit.

use crate::migrate;
use crate::sqlite::collect_log;
use crate::{
    encode_changes, resolve, Change, Committed, Listener, Loaded, Notice, Row, Store, StoreError,
    CHANGELOG_KEEP,
};
use postgres::{Client, IsolationLevel, NoTls};
use std::sync::Mutex;
use std::time::Duration;

/// The channel commits are announced on.
pub const CHANNEL: &str = "weft_store";

/// How many connections writers and readers share at most.
const POOL_MAX: usize = 8;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// A PostgreSQL-backed store: a small pool of blocking connections.
pub struct PgStore {
    url: String,
    idle: Mutex<Vec<Client>>,
}

impl PgStore {
    /// Connects, applies pending migrations (under an advisory lock, so
    /// replicas starting together migrate once) and checks the schema.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore {
            url: url.to_string(),
            idle: Mutex::new(Vec::new()),
        };
        let mut c = store.client()?;
        let mut tx = c.transaction()?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7365746);
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let applied: Vec<i64> = tx
            .query("SELECT version FROM schema_migrations", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for m in migrate::pending(migrate::POSTGRES, &applied)? {
            tx.batch_execute(m.sql)
                .map_err(|e| StoreError::Migration(format!("{}: {e}", m.name)))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )?;
        }
        tx.commit()?;
        store.put_back(c);
        Ok(store)
    }

    fn connect_one(&self) -> Result<Client, StoreError> {
        Client::connect(&self.url, NoTls).map_err(|e| {
            StoreError::Backend(format!("connecting to {}: {e}", crate::redact(&self.url)))
        })
    }

    fn client(&self) -> Result<Client, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect_one(),
        }
    }

    fn put_back(&self, c: Client) {
        if c.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_MAX {
            idle.push(c);
        }
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = self.client()?;
        let out = f(&mut c);
        if !matches!(out, Err(StoreError::Backend(_))) {
            self.put_back(c);
        }
        out
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // A postgres::Client closes by blocking on its own runtime, which
        // panics on an async worker thread; the last handle on a store is
        // often dropped there (a router, a service, the server at shutdown).
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        if idle.is_empty() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

fn revision_of(tx: &mut postgres::Transaction<'_>, service: &str) -> Result<u64, StoreError> {
    let row = tx.query_opt("SELECT revision FROM services WHERE name = $1", &[&service])?;
    Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgresql"
    }

    fn load(&self, service: &str) -> Result<Loaded, StoreError> {
        self.with(|c| {
            // REPEATABLE READ: the rows and the revision come from one snapshot.
            let mut tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let revision = revision_of(&mut tx, service)?;
            let rows = tx
                .query(
                    "SELECT kind, id, body FROM records WHERE service = $1",
                    &[&service],
                )?
                .iter()
                .map(|r| Row {
                    kind: r.get(0),
                    id: r.get(1),
                    body: r.get(2),
                })
                .collect();
            tx.commit()?;
            Ok(Loaded { revision, rows })
        })
    }

    fn commit(&self, service: &str, expected: u64, changes: &[Change]) -> Result<u64, StoreError> {
        let log = encode_changes(changes)?;
        self.with(|c| {
            let mut tx = c.transaction()?;
            let exp = expected as i64;
            let mut moved = tx.execute(
                "UPDATE services SET revision = revision + 1 WHERE name = $1 AND revision = $2",
                &[&service, &exp],
            )?;
            if moved == 0 && expected == 0 {
                moved = tx.execute(
                    "INSERT INTO services (name, revision) VALUES ($1, 1) ON CONFLICT DO NOTHING",
                    &[&service],
                )?;
            }
            if moved == 0 {
                let actual = revision_of(&mut tx, service)?;
                tx.rollback()?;
                return Err(StoreError::Conflict {
                    service: service.to_string(),
                    expected,
                    actual,
                });
            }
            let next = exp + 1;
            let put = tx.prepare(
                "INSERT INTO records (service, kind, id, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (service, kind, id) DO UPDATE SET body = excluded.body",
            )?;
            let del =
                tx.prepare("DELETE FROM records WHERE service = $1 AND kind = $2 AND id = $3")?;
            for ch in changes {
                match ch {
                    Change::Put { kind, id, body } => {
                        tx.execute(&put, &[&service, kind, id, body])?;
                    }
                    Change::Delete { kind, id } => {
                        tx.execute(&del, &[&service, kind, id])?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO changelog (service, revision, changes) VALUES ($1, $2, $3)",
                &[&service, &next, &log],
            )?;
            if next as u64 > CHANGELOG_KEEP && next % 100 == 0 {
                tx.execute(
                    "DELETE FROM changelog WHERE service = $1 AND revision <= $2",
                    &[&service, &(next - CHANGELOG_KEEP as i64)],
                )?;
            }
            let payload = format!("{service} {next}");
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])?;
            tx.commit()?;
            Ok(next as u64)
        })
    }

    fn changes_since(&self, service: &str, after: u64) -> Result<Vec<Committed>, StoreError> {
        self.with(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let current = revision_of(&mut tx, service)?;
            let rows: Vec<(i64, String)> = tx
                .query(
                    "SELECT revision, changes FROM changelog
                     WHERE service = $1 AND revision > $2 ORDER BY revision",
                    &[&service, &(after as i64)],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let log = collect_log(service, after, current, rows)?;
            let get = tx
                .prepare("SELECT body FROM records WHERE service = $1 AND kind = $2 AND id = $3")?;
            let resolved = resolve(log, |kind, id| {
                Ok(tx
                    .query_opt(&get, &[&service, &kind, &id])?
                    .map(|r| r.get::<_, String>(0)))
            })?;
            tx.commit()?;
            Ok(resolved)
        })
    }

    fn import(&self, service: &str, revision: u64, rows: &[Row]) -> Result<bool, StoreError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "INSERT INTO services (name, revision) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&service, &(revision as i64)],
            )?;
            if n == 0 {
                tx.rollback()?;
                return Ok(false);
            }
            let put = tx.prepare(
                "INSERT INTO records (service, kind, id, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (service, kind, id) DO UPDATE SET body = excluded.body",
            )?;
            for r in rows {
                tx.execute(&put, &[&service, &r.kind, &r.id, &r.body])?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        let mut client = self.connect_one()?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(Some(Box::new(PgListener { client })))
    }
}

struct PgListener {
    client: Client,
}

fn parse_notice(payload: &str) -> Option<Notice> {
    let (service, rev) = payload.rsplit_once(' ')?;
    Some(Notice {
        service: service.to_string(),
        revision: rev.parse().ok()?,
    })
}

impl Listener for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Notice>, StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut out = Vec::new();
        let first = self.client.notifications().timeout_iter(timeout).next()?;
        if let Some(first) = first {
            out.extend(parse_notice(first.payload()));
            // Whatever else already arrived, without waiting again.
            let mut n = self.client.notifications();
            let mut more = n.iter();
            while let Some(m) = more.next()? {
                out.extend(parse_notice(m.payload()));
            }
        }
        if self.client.is_closed() {
            return Err(StoreError::Backend("listener connection closed".into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn notice_payload_round_trips() {
        let n = super::parse_notice("networking 42").unwrap();
        assert_eq!((n.service.as_str(), n.revision), ("networking", 42));
        assert!(super::parse_notice("garbage").is_none());
    }
}
