//! One service shape for every service: a single writer, readers on an
//! immutable snapshot, commits conditional on the revision the writer read,
//! and followers that replay other replicas' commits from the change log.
//!
//! The published state is an `Arc<M>` behind an `ArcSwap`: readers take it
//! without a lock and never wait for a write. The writer keeps a second,
//! private copy of the state (double buffering): after a commit it applies
//! the commit to that copy, publishes it, and takes the old published copy
//! back as its next private copy once no reader holds it, applying the same
//! commit to it. So a write costs the size of its changes, not a clone of
//! the whole state; a clone happens only when a reader still holds the old
//! snapshot at the next write.

use crate::{Change, Committed, Listener, Row, Store, StoreError};
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// A service's in-memory state, rebuilt from rows and moved by commits.
/// `apply` must be deterministic: every replica replays the same commits.
pub trait Model: Clone + Send + Sync + 'static {
    /// A commit's changes decoded from their records (typed values), so a
    /// commit is decoded once and applied to both copies of the state.
    type Decoded: Send;
    /// The state from every stored record of the service, at `revision`.
    fn from_rows(revision: u64, rows: Vec<Row>) -> Result<Self, StoreError>;
    /// Decodes one commit; a record that does not decode fails it whole.
    fn decode(changes: &[Change]) -> Result<Self::Decoded, StoreError>;
    /// Applies one decoded commit (this replica's or another's) and sets `revision`.
    fn apply_decoded(&mut self, revision: u64, commit: &Self::Decoded);
    /// The revision this state is at.
    fn revision(&self) -> u64;
    /// Decodes and applies one commit.
    fn apply(&mut self, revision: u64, changes: &[Change]) -> Result<(), StoreError> {
        let d = Self::decode(changes)?;
        self.apply_decoded(revision, &d);
        Ok(())
    }
}

/// The writer's second copy of the state. After a publish the previous
/// snapshot is *retired*: readers may still hold it, so it is reclaimed only
/// at the next write (by then they are done), brought forward by the commits
/// it missed (`pending`, kept decoded), and written into. A clone of the
/// whole state happens only when a reader still holds it at that point.
pub struct Spare<M: Model> {
    retired: Option<Arc<M>>,
    pending: Vec<(u64, M::Decoded)>,
}

impl<M: Model> Default for Spare<M> {
    fn default() -> Self {
        Spare {
            retired: None,
            pending: Vec::new(),
        }
    }
}

/// How many times a write is rerun on fresh state after a conflict before
/// the conflict reaches the client (as a 409). Replicas writing one service
/// flat out conflict often; with the backoff below, 16 attempts still let a
/// few hundred of ten thousand port creates through as 409s (benches/RESULTS.md).
pub const MAX_ATTEMPTS: usize = 64;

/// A random pause after the second conflict in a row, growing with the
/// attempt (up to ~5 ms): two replicas that keep colliding stop doing so in
/// lockstep.
fn backoff(attempt: usize) {
    if attempt < 2 {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(attempt);
    let cap = (attempt as u64 * 200).min(5_000);
    std::thread::sleep(Duration::from_micros(h.finish() % cap));
}

/// A service's state in this process, kept current with the store.
pub struct Replica<M: Model> {
    service: &'static str,
    store: Arc<dyn Store>,
    published: ArcSwap<M>,
    /// The writer's side: the copy it will write next (see [`Spare`]).
    writer: Mutex<Spare<M>>,
    rev_tx: watch::Sender<u64>,
}

impl<M: Model> Replica<M> {
    /// Loads `service` from `store`.
    pub fn open(service: &'static str, store: Arc<dyn Store>) -> Result<Replica<M>, StoreError> {
        let loaded = store.load(service)?;
        let state = M::from_rows(loaded.revision, loaded.rows)?;
        let (rev_tx, _) = watch::channel(state.revision());
        Ok(Replica {
            service,
            store,
            published: ArcSwap::from_pointee(state),
            writer: Mutex::new(Spare::default()),
            rev_tx,
        })
    }

    /// The service's name in the store.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The store it commits to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current state: an immutable snapshot, cheap to take.
    pub fn snapshot(&self) -> Arc<M> {
        self.published.load_full()
    }

    /// Reads the current state without keeping it.
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.published.load())
    }

    /// The revision of the current snapshot.
    pub fn revision(&self) -> u64 {
        self.published.load().revision()
    }

    /// Sees every revision this replica publishes (own writes and followed ones).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rev_tx.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Spare<M>> {
        // The private copy is only replaced whole, so a panic mid-write
        // leaves either the old copy or none: both are safe.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`Replica::write`], and a refusal (`is_refusal`) given on a snapshot
    /// older than the store's is not final: the replica catches up and, if
    /// it is then past the revision `f` ran on (whether this call or the
    /// follower applied the newer commits), `f` runs once more. So a replica
    /// behind another never refuses from stale data.
    pub fn write_fresh<T, E>(
        &self,
        mut f: impl FnMut(&M) -> Result<(T, Vec<Change>), E>,
        is_refusal: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let seen = std::cell::Cell::new(0u64);
        let mut run = |m: &M| {
            seen.set(m.revision());
            f(m)
        };
        match self.write(&mut run) {
            Err(e) if is_refusal(&e) => {
                self.catch_up()?;
                if self.revision() != seen.get() {
                    self.write(&mut run)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }

    /// Runs the pure write `f` on the current state and commits its changes
    /// on the revision it read. On a conflict (another replica committed
    /// first) it catches up and reruns `f` on the new state, so `f` must be
    /// free of side effects. Blocking: call from a blocking thread.
    pub fn write<T, E>(&self, mut f: impl FnMut(&M) -> Result<(T, Vec<Change>), E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut spare = self.lock();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snap = self.published.load_full();
            let (out, changes) = f(&snap)?;
            if changes.is_empty() {
                return Ok(out);
            }
            let read = snap.revision();
            drop(snap);
            match self.store.commit(self.service, read, &changes) {
                Ok(revision) => {
                    self.advance(&mut spare, &[Committed { revision, changes }])?;
                    return Ok(out);
                }
                Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(
                        service = self.service,
                        read,
                        attempt,
                        "write conflict, catching up"
                    );
                    backoff(attempt);
                    self.catch_up_locked(&mut spare)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// [`Replica::write`] on a blocking thread, for async handlers.
    pub async fn write_async<T, E>(
        self: &Arc<Self>,
        f: impl FnMut(&M) -> Result<(T, Vec<Change>), E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.write(f)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Backend(format!("writer task failed: {e}")).into()),
        }
    }

    /// Replays the commits other replicas made since this one's revision.
    /// Returns whether anything changed.
    pub fn catch_up(&self) -> Result<bool, StoreError> {
        let mut spare = self.lock();
        self.catch_up_locked(&mut spare)
    }

    fn catch_up_locked(&self, spare: &mut Spare<M>) -> Result<bool, StoreError> {
        let from = self.revision();
        match self.store.changes_since(self.service, from) {
            Ok(commits) if commits.is_empty() => Ok(false),
            Ok(commits) => {
                self.advance(spare, &commits)?;
                Ok(true)
            }
            Err(StoreError::LogTruncated { .. }) => {
                tracing::info!(
                    service = self.service,
                    from,
                    "change log truncated: reloading"
                );
                let loaded = self.store.load(self.service)?;
                let state = M::from_rows(loaded.revision, loaded.rows)?;
                *spare = Spare::default();
                self.publish(state);
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies `commits` to the writer's copy, publishes it, and retires the
    /// previously published copy for the next write.
    fn advance(&self, spare: &mut Spare<M>, commits: &[Committed]) -> Result<(), StoreError> {
        let decoded = commits
            .iter()
            .map(|c| Ok((c.revision, M::decode(&c.changes)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let current = self.published.load_full();
        let reclaimed = spare
            .retired
            .take()
            .and_then(|old| Arc::try_unwrap(old).ok())
            .map(|mut old| {
                for (rev, d) in &spare.pending {
                    old.apply_decoded(*rev, d);
                }
                old
            })
            .filter(|old| old.revision() == current.revision());
        let mut next = match reclaimed {
            Some(old) => old,
            None => (*current).clone(),
        };
        drop(current);
        for (rev, d) in &decoded {
            next.apply_decoded(*rev, d);
        }
        let old = self.publish(next);
        spare.retired = Some(old);
        spare.pending = decoded;
        Ok(())
    }

    fn publish(&self, state: M) -> Arc<M> {
        let rev = state.revision();
        let old = self.published.swap(Arc::new(state));
        self.rev_tx.send_replace(rev);
        old
    }
}

/// A replica as the follower sees it.
pub trait Follow: Send + Sync {
    /// The service followed.
    fn service(&self) -> &str;
    /// The revision of its current snapshot.
    fn revision(&self) -> u64;
    /// Replays the commits it has not seen; whether anything changed.
    fn catch_up(&self) -> Result<bool, StoreError>;
}

impl<M: Model> Follow for Replica<M> {
    fn service(&self) -> &str {
        self.service
    }
    fn revision(&self) -> u64 {
        Replica::revision(self)
    }
    fn catch_up(&self) -> Result<bool, StoreError> {
        Replica::catch_up(self)
    }
}

/// How often a follower catches up even without a notice: covers a notice
/// lost while the listener reconnected.
pub const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Keeps `replicas` current with commits made by other processes: waits on
/// the store's listener (PostgreSQL LISTEN/NOTIFY) and replays the change
/// log, with a catch-up every [`FOLLOW_POLL`] and after every reconnect.
/// Blocks until the follower listens: call it from a blocking thread.
pub fn follow(
    store: Arc<dyn Store>,
    replicas: Vec<Arc<dyn Follow>>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    // The listener is opened on the follower's own thread (the blocking
    // PostgreSQL client must not connect on an async worker), and `follow`
    // returns once it listens, so no commit after the return goes unheard.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("store-follower".into())
        .spawn(move || {
            let listener = store.listener();
            let _ = ready_tx.send(());
            let listener = match listener {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "store follower: no listener yet; retrying");
                    Box::new(Reconnect)
                }
            };
            // Whatever was committed between the replicas' load and LISTEN.
            catch_up_all(&replicas, |_| true);
            follow_loop(store, listener, replicas)
        })
        .map_err(|e| StoreError::Backend(format!("spawning the follower: {e}")))?;
    let _ = ready_rx.recv_timeout(Duration::from_secs(10));
    Ok(handle)
}

/// A listener that fails at once, so the loop reconnects with backoff.
struct Reconnect;

impl Listener for Reconnect {
    fn wait(&mut self, _: Duration) -> Result<Vec<crate::Notice>, StoreError> {
        Err(StoreError::Backend("not connected".into()))
    }
}

fn follow_loop(store: Arc<dyn Store>, first: Box<dyn Listener>, replicas: Vec<Arc<dyn Follow>>) {
    let mut listener = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(l) = listener.as_mut() else {
            std::thread::sleep(backoff);
            match store.listener() {
                Ok(l) => {
                    listener = l;
                    backoff = Duration::from_millis(100);
                    catch_up_all(&replicas, |_| true);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store follower: reconnecting");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        };
        match l.wait(FOLLOW_POLL) {
            Ok(notices) if notices.is_empty() => catch_up_all(&replicas, |_| true),
            Ok(notices) => catch_up_all(&replicas, |r| {
                notices
                    .iter()
                    .any(|n| n.service == r.service() && n.revision > r.revision())
            }),
            Err(e) => {
                tracing::warn!(error = %e, "store follower: listener lost");
                listener = None;
            }
        }
    }
}

fn catch_up_all(replicas: &[Arc<dyn Follow>], want: impl Fn(&dyn Follow) -> bool) {
    for r in replicas {
        if want(r.as_ref()) {
            if let Err(e) = r.catch_up() {
                tracing::warn!(service = r.service(), error = %e, "store follower: catch-up failed");
            }
        }
    }
}
