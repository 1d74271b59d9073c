//! Test support: a fresh PostgreSQL database per test, dropped afterwards,
//! so every service's tests can run against both backends.

use crate::StoreError;
use postgres::{Client, NoTls};

/// The server tests use: `WEFT_TEST_POSTGRES` (a URL to an existing
/// database with the right to create others), by default the local
/// cluster that `scripts/postgres.sh` starts, over its Unix socket.
pub fn server_url() -> String {
    std::env::var("WEFT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://root@%2Fvar%2Frun%2Fpostgresql/postgres".to_string())
}

/// A database of its own for one test; dropped (connections closed) on drop.
pub struct TestDatabase {
    /// The database's URL, for `PgStore::connect` or `weft serve --database`.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates `weft_test_<random>`. Fails loudly, never skips: the test
    /// command starts PostgreSQL (scripts/postgres.sh), so a missing server
    /// is a broken set-up, not a reason to pass.
    pub fn create() -> Result<TestDatabase, StoreError> {
        let server = server_url();
        let mut c = Client::connect(&server, NoTls).map_err(|e| {
            StoreError::Backend(format!(
                "test PostgreSQL at {server}: {e} (run scripts/postgres.sh)"
            ))
        })?;
        let name = format!("weft_test_{:016x}", rand_u64());
        c.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let url = match server.rsplit_once('/') {
            Some((base, last)) if !last.contains('@') => {
                let query = last
                    .split_once('?')
                    .map(|(_, q)| format!("?{q}"))
                    .unwrap_or_default();
                format!("{base}/{name}{query}")
            }
            _ => format!("{server}/{name}"),
        };
        Ok(TestDatabase { url, name })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&server_url(), NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}
