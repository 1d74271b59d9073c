//! Deleted servers' tombstones. Nova soft-deletes: a deleted server still
//! shows, status DELETED, in `GET /servers?changes-since=` (and
//! `changes-before`), which is how clients that poll for changes learn of
//! a delete, and to admins listing with `deleted=true`. weft removes the
//! server's record when its teardown is done and keeps a trimmed copy
//! (no user data, no public key, no ports) as the tombstone, stored as the
//! compute service's `deleted_server` records (same table in SQLite and
//! PostgreSQL as every other record). `GET /servers/{id}` never shows one.
//!
//! Growth is bounded: each delete also purges the tombstones older than
//! [`KEEP_DAYS`] (Nova keeps its soft-deleted rows until an operator
//! archives them; a poller that has not looked for a week resyncs whole).

use super::record::{vm_state, Server};
use crate::compute::state::{Change, State};

/// How long a tombstone is kept after its server's delete.
pub const KEEP_DAYS: i64 = 7;

/// The changes that remove server `s` at `now`: its record goes, its
/// tombstone comes, and tombstones older than [`KEEP_DAYS`] are purged.
pub fn remove(st: &State, s: &Server, now: &str) -> Vec<Change> {
    let mut t = s.clone();
    t.vm_state = vm_state::DELETED.into();
    t.task_state = None;
    t.power_state = 0;
    t.updated = now.to_string();
    t.user_data = None;
    t.public_key = None;
    t.ports.clear();
    t.created_ports.clear();
    t.nics.clear();
    let mut out = vec![
        Change::DeleteServer(s.id.clone()),
        Change::Tombstone(Box::new(t)),
    ];
    out.extend(expired(st, now).map(Change::DeleteTombstone));
    out
}

/// Ids of tombstones deleted more than [`KEEP_DAYS`] before `now`.
fn expired<'a>(st: &'a State, now: &str) -> impl Iterator<Item = String> + 'a {
    let cutoff = super::filters::instant(now).map(|n| n - chrono::Duration::days(KEEP_DAYS));
    st.deleted
        .values()
        .filter(move |t| {
            matches!(
                (cutoff, super::filters::instant(&t.updated)),
                (Some(c), Some(u)) if u < c
            )
        })
        .map(|t| t.id.clone())
}
