//! Images: an OpenStack Image service API v2 (Glance) compatible service.
//!
//! ```text
//!  HTTP (axum: api.rs, api_members.rs, data.rs) ─► Caller ─► Ctx (token validated by ctrl's layer)
//!        │
//!        ▼  (spawn_blocking: database I/O never runs on an async worker)
//!  service.rs / members.rs / upload.rs: pure fn(&State, &mut Env, &Ctx, req) -> (T, Vec<Change>)
//!        │                                (policy: Glance's defaults, policy.rs)
//!        ▼
//!  Replica<State>::write ── weft-store, service "image", on the revision read
//!
//!  data: body ─► pipeline.rs (writer + md5 + sha512 threads) ─► ImageStore (store.rs: files)
//! ```
//!
//! Non-goals for now: the import API (`/v2/info/import` says no method is
//! enabled), multiple stores, image locations, the cache API, tasks.
//!
//! Several replicas on PostgreSQL share the records. Each replica has an id
//! (kept in its state directory): an upload under way names the replica
//! receiving it, so a replica that starts resets only its own cut-off
//! uploads. Data is shared when the replicas are given one `--image-dir`
//! (NFS, as Glance's file store needs across API nodes); without it each
//! keeps its own files, and a replica asked for data another one holds
//! answers 503 saying so.

pub mod api;
pub mod api_members;
pub mod body;
pub mod data;
pub mod discovery;
pub mod error;
mod mapped;
pub mod members;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod query;
pub mod range;
pub mod service;
pub mod state;
pub mod store;
pub mod upload;
pub mod zerocopy;

pub use api::{router, MOUNT};
pub use error::{ImageError, ImageResult};
pub use service::{Ctx, Limits};

use service::{Env, Ids, RandomIds};
use state::State;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use store::ImageStore;
use weft_identity::policy::{Credentials, Enforcer, Mode};
use weft_store::{Replica, Store};

/// Validates `X-Auth-Token`s when the server's auth layer has not (this
/// router used on its own); `weft serve` implements it with identity.
pub trait Tokens: Send + Sync {
    /// The token holder's credentials, or `None` for a bad token.
    fn validate(&self, token: &str) -> Option<Credentials>;
}

impl Tokens for weft_identity::Identity {
    fn validate(&self, token: &str) -> Option<Credentials> {
        self.validate_token(token).ok().map(|a| a.credentials())
    }
}

/// How the image service runs.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    /// Size cap and per-project quota.
    pub limits: Limits,
    /// Where image files live; `None` is `STATE_DIR/images`. Replicas that
    /// share one (NFS) serve each other's images.
    pub image_dir: Option<PathBuf>,
}

/// The file in the state directory that keeps this replica's id.
const REPLICA_ID_FILE: &str = "image-replica-id";

/// This replica's id: made once, then kept in `STATE_DIR/image-replica-id`
/// so that a restart knows its own uploads again.
pub fn replica_id(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join(REPLICA_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(state_dir)?;
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = state_dir.join(format!(".{REPLICA_ID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// The running image service: its replica of the records, the data store,
/// policy and auth.
pub struct Images {
    replica: Arc<Replica<State>>,
    ids: Mutex<Box<dyn Ids>>,
    authz: Box<dyn policy::Authz>,
    tokens: Arc<dyn Tokens>,
    store: Arc<dyn ImageStore>,
    limits: Limits,
    replica_id: String,
}

/// RFC 3339 UTC with seconds, as Glance shows times.
pub fn now_string() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Images {
    /// Opens the service on `store` with Glance's default policy
    /// (overridable by `policy_file`), image files under `STATE_DIR/images`
    /// or `cfg.image_dir`, as the replica whose id the state directory keeps.
    pub fn open(
        store: Arc<dyn Store>,
        state_dir: &Path,
        cfg: &ImageConfig,
        policy_file: Option<&Path>,
        mode: Mode,
        tokens: Arc<dyn Tokens>,
    ) -> Result<Arc<Images>, String> {
        let enforcer = Enforcer::new(
            policy::DEFAULTS,
            policy_file,
            mode,
            Some(weft_identity::policy::records_path(state_dir)),
        )
        .map_err(|e| e.to_string())?;
        let replica = replica_id(state_dir)
            .map_err(|e| format!("{}: {e}", state_dir.join(REPLICA_ID_FILE).display()))?;
        let dir = cfg
            .image_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("images"));
        let files = store::FileStore::open(&dir, &replica)
            .map_err(|e| format!("image directory {}: {e}", dir.display()))?;
        Images::new(
            store,
            Arc::new(files),
            cfg,
            Box::new(policy::ImagePolicy { enforcer }),
            Box::new(RandomIds),
            tokens,
            replica,
        )
    }

    /// The service over any record store, data store, policy and ids, as
    /// replica `replica_id`. Recovers from its previous run: the uploads it
    /// was receiving go back to queued, and data no image owns is removed
    /// (data of uploads other replicas are receiving is kept).
    pub fn new(
        store: Arc<dyn Store>,
        data: Arc<dyn ImageStore>,
        cfg: &ImageConfig,
        authz: Box<dyn policy::Authz>,
        ids: Box<dyn Ids>,
        tokens: Arc<dyn Tokens>,
        replica_id: String,
    ) -> Result<Arc<Images>, String> {
        let replica = Replica::open(state::SERVICE, store).map_err(|e| e.to_string())?;
        let images = Arc::new(Images {
            replica: Arc::new(replica),
            ids: Mutex::new(ids),
            authz,
            tokens,
            store: data,
            limits: cfg.limits,
            replica_id,
        });
        let reset = images
            .write(upload::recover)
            .map_err(|e| format!("image recovery: {e}"))?;
        if !reset.is_empty() {
            tracing::warn!(images = ?reset, "uploads cut off by the last stop: back to queued");
        }
        // Read the records only once the store has listed its files (on
        // the first question), caught up with the other replicas: a file
        // another replica renamed into place is then on a record.
        let mut snap: Option<Arc<State>> = None;
        let mut keep = |id: &str| {
            let st = snap.get_or_insert_with(|| {
                if let Err(e) = images.replica.catch_up() {
                    tracing::warn!(error = %e, "image store sweep: catch-up failed");
                }
                images.snapshot()
            });
            st.images.get(id).is_some_and(|i| {
                i.data.is_some()
                    || (i.status == model::Status::Saving
                        && !upload::is_own_upload(i, &images.replica_id))
            })
        };
        let removed = images
            .store
            .sweep(&mut keep)
            .map_err(|e| format!("image store sweep: {e}"))?;
        if !removed.is_empty() {
            tracing::info!(files = ?removed, "image store: removed data no image owns");
        }
        Ok(images)
    }

    /// This service's replica, for the follower (`Server::follow`).
    pub fn replica(&self) -> Arc<dyn weft_store::Follow> {
        self.replica.clone()
    }

    /// The data store.
    pub fn data_store(&self) -> Arc<dyn ImageStore> {
        self.store.clone()
    }

    /// This replica's id (which uploads are its own).
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The configured limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Validates a token the server's layer did not.
    pub fn authenticate(&self, token: Option<&str>) -> ImageResult<Ctx> {
        let token = token.ok_or(ImageError::Unauthenticated)?;
        self.tokens
            .validate(token)
            .map(Ctx::new)
            .ok_or(ImageError::Unauthenticated)
    }

    /// The policy.
    pub fn authz(&self) -> &dyn policy::Authz {
        self.authz.as_ref()
    }

    /// Runs a pure write on the current state and commits its changes on the
    /// revision it read (rerun on a conflict, with a fresh clock and ids).
    /// A refusal is answered only on current state: if other replicas
    /// committed since, it catches up and reruns once. Blocking.
    pub fn write<T>(
        &self,
        mut f: impl FnMut(&State, &mut Env) -> service::Write<T>,
    ) -> ImageResult<T> {
        self.replica.write_fresh(
            |st| {
                let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                let mut env = Env {
                    now: now_string(),
                    ids: ids.as_mut(),
                    authz: self.authz.as_ref(),
                    limits: self.limits,
                    replica: &self.replica_id,
                };
                let (out, changes) = f(st, &mut env)?;
                Ok((out, state::to_store(&changes)?))
            },
            |e: &ImageError| !matches!(e, ImageError::Store(_) | ImageError::Internal(_)),
        )
    }

    /// [`Images::write`] on a blocking thread, for async handlers.
    pub async fn write_async<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnMut(&State, &mut Env) -> service::Write<T> + Send + 'static,
    ) -> ImageResult<T> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.write(f)).await {
            Ok(r) => r,
            Err(e) => Err(ImageError::Internal(format!("writer task failed: {e}"))),
        }
    }

    /// Reads the current snapshot; never waits for a write.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.replica.read(f)
    }

    /// The current state, kept as long as the caller holds it.
    pub fn snapshot(&self) -> Arc<State> {
        self.replica.snapshot()
    }

    /// A read that also needs the policy (an `Env` whose clock and ids are unused).
    pub fn read_env<T>(&self, f: impl FnOnce(&State, &Env) -> T) -> T {
        let mut ids = RandomIds;
        let env = Env {
            now: String::new(),
            ids: &mut ids,
            authz: self.authz.as_ref(),
            limits: self.limits,
            replica: &self.replica_id,
        };
        self.replica.read(|st| f(st, &env))
    }
}
