//! The Compute API v2.1 (Nova) service: flavors and key pairs so far;
//! servers, the scheduler and the compute agent are built on it.
//!
//! ```text
//!  HTTP (axum: api/*.rs) ─► Caller ─► Ctx (token validated by ctrl's layer)
//!        │   microversion from OpenStack-API-Version: compute 2.N (2.1-2.79)
//!        ▼  (spawn_blocking: database I/O never runs on an async worker)
//!  flavors.rs / keypairs.rs: pure fn(&State, &mut Env, &Ctx, req) -> (T, Vec<Change>)
//!        │                   (policy: Nova's defaults, policy.rs)
//!        ▼
//!  Replica<State>::write ── weft-store, service "compute", on the revision read
//! ```

pub mod api;
pub mod body;
pub mod error;
pub mod flavors;
pub mod keypairs;
pub mod microversion;
pub mod model;
pub mod policy;
pub mod service;
pub mod state;

pub use api::{router, MOUNT};
pub use error::{ComputeError, ComputeResult};
pub use service::Ctx;

use crate::image::Tokens;
use service::{Env, Ids, RandomIds};
use state::State;
use std::path::Path;
use std::sync::{Arc, Mutex};
use weft_identity::policy::{Enforcer, Mode};
use weft_store::{Replica, Store};

/// The running compute API service: its replica of the records, policy and auth.
pub struct Compute {
    replica: Arc<Replica<State>>,
    ids: Mutex<Box<dyn Ids>>,
    authz: Box<dyn policy::Authz>,
    tokens: Arc<dyn Tokens>,
}

/// RFC 3339 UTC with microseconds, as Nova shows times.
pub fn now_string() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

impl Compute {
    /// Opens the service on `store` with Nova's default policy
    /// (overridable by `policy_file`).
    pub fn open(
        store: Arc<dyn Store>,
        state_dir: &Path,
        policy_file: Option<&Path>,
        mode: Mode,
        tokens: Arc<dyn Tokens>,
    ) -> Result<Arc<Compute>, String> {
        let enforcer = Enforcer::new(
            policy::DEFAULTS,
            policy_file,
            mode,
            Some(weft_identity::policy::records_path(state_dir)),
        )
        .map_err(|e| e.to_string())?;
        Compute::new(
            store,
            Box::new(policy::ComputePolicy { enforcer }),
            Box::new(RandomIds),
            tokens,
        )
    }

    /// The service over any store, policy and ids.
    pub fn new(
        store: Arc<dyn Store>,
        authz: Box<dyn policy::Authz>,
        ids: Box<dyn Ids>,
        tokens: Arc<dyn Tokens>,
    ) -> Result<Arc<Compute>, String> {
        let replica = Replica::open(state::SERVICE, store).map_err(|e| e.to_string())?;
        Ok(Arc::new(Compute {
            replica: Arc::new(replica),
            ids: Mutex::new(ids),
            authz,
            tokens,
        }))
    }

    /// The replica, for `weft serve` to follow other replicas' commits.
    pub fn replica(&self) -> Arc<dyn weft_store::Follow> {
        self.replica.clone()
    }

    /// The caller of a token this router validates itself, or 401.
    pub fn authenticate(&self, token: Option<&str>) -> ComputeResult<Ctx> {
        token
            .and_then(|t| self.tokens.validate(t))
            .map(Ctx::new)
            .ok_or(ComputeError::Unauthenticated)
    }

    /// Runs a pure write on the current state and commits its changes;
    /// a refusal is retried once on caught-up state, so that a replica
    /// behind another never answers from stale data.
    pub fn write<T>(
        &self,
        mut f: impl FnMut(&State, &mut Env) -> service::Write<T>,
    ) -> ComputeResult<T> {
        let attempt = |f: &mut dyn FnMut(&State, &mut Env) -> service::Write<T>| {
            self.replica.write(|st| {
                let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                let mut env = Env {
                    now: now_string(),
                    ids: ids.as_mut(),
                    authz: self.authz.as_ref(),
                };
                let (out, changes) = f(st, &mut env)?;
                Ok((out, state::to_store(&changes)?))
            })
        };
        match attempt(&mut f) {
            Err(e) if !matches!(e, ComputeError::Store(_) | ComputeError::Internal(_)) => {
                if self.replica.catch_up()? {
                    attempt(&mut f)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }

    /// [`Compute::write`] on a blocking thread, for async handlers.
    pub async fn write_async<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnMut(&State, &mut Env) -> service::Write<T> + Send + 'static,
    ) -> ComputeResult<T> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.write(f)).await {
            Ok(r) => r,
            Err(e) => Err(ComputeError::Internal(format!("writer task failed: {e}"))),
        }
    }

    /// A read that also needs the policy; never waits for a write.
    pub fn read_env<T>(&self, f: impl FnOnce(&State, &Env) -> T) -> T {
        let mut ids = RandomIds;
        let env = Env {
            now: now_string(),
            ids: &mut ids,
            authz: self.authz.as_ref(),
        };
        self.replica.read(|st| f(st, &env))
    }
}
