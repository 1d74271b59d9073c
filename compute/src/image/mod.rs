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
//! With several replicas on PostgreSQL, records are shared but each
//! replica's file store is its own: run images on one replica until an
//! object-store backend of [`store::ImageStore`] exists.

pub mod api;
pub mod api_members;
pub mod body;
pub mod data;
pub mod discovery;
pub mod error;
pub mod members;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod query;
pub mod service;
pub mod state;
pub mod store;
pub mod upload;

pub use api::{router, MOUNT};
pub use error::{ImageError, ImageResult};
pub use service::{Ctx, Limits};

use service::{Env, Ids, RandomIds};
use state::State;
use std::path::Path;
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
}

/// RFC 3339 UTC with seconds, as Glance shows times.
pub fn now_string() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Images {
    /// Opens the service on `store` with Glance's default policy
    /// (overridable by `policy_file`), image files under `STATE_DIR/images`.
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
        let files = store::FileStore::open(state_dir.join("images"))
            .map_err(|e| format!("{}: {e}", state_dir.join("images").display()))?;
        Images::new(
            store,
            Arc::new(files),
            cfg,
            Box::new(policy::ImagePolicy { enforcer }),
            Box::new(RandomIds),
            tokens,
        )
    }

    /// The service over any record store, data store, policy and ids.
    /// Recovers from a previous run: uploads that were under way go back
    /// to queued, and data no active image owns is removed.
    pub fn new(
        store: Arc<dyn Store>,
        data: Arc<dyn ImageStore>,
        cfg: &ImageConfig,
        authz: Box<dyn policy::Authz>,
        ids: Box<dyn Ids>,
        tokens: Arc<dyn Tokens>,
    ) -> Result<Arc<Images>, String> {
        let replica = Replica::open(state::SERVICE, store).map_err(|e| e.to_string())?;
        let images = Arc::new(Images {
            replica: Arc::new(replica),
            ids: Mutex::new(ids),
            authz,
            tokens,
            store: data,
            limits: cfg.limits,
        });
        let reset = images
            .write(upload::recover)
            .map_err(|e| format!("image recovery: {e}"))?;
        if !reset.is_empty() {
            tracing::warn!(images = ?reset, "uploads cut off by the last stop: back to queued");
        }
        let snap = images.snapshot();
        let keep = |id: &str| snap.images.get(id).is_some_and(|i| i.data.is_some());
        let removed = images
            .store
            .sweep(&keep)
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
        let attempt = |f: &mut dyn FnMut(&State, &mut Env) -> service::Write<T>| {
            self.replica.write(|st| {
                let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                let mut env = Env {
                    now: now_string(),
                    ids: ids.as_mut(),
                    authz: self.authz.as_ref(),
                    limits: self.limits,
                };
                let (out, changes) = f(st, &mut env)?;
                Ok((out, state::to_store(&changes)?))
            })
        };
        match attempt(&mut f) {
            Err(e) if !matches!(e, ImageError::Store(_) | ImageError::Internal(_)) => {
                if self.replica.catch_up()? {
                    attempt(&mut f)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
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
        };
        self.replica.read(|st| f(st, &env))
    }
}
