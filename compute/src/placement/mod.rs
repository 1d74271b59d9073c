//! Placement: the OpenStack Placement API (microversions 1.0 to 1.39).
//!
//! ```text
//!  HTTP (axum, api/) ─► microversion (OpenStack-API-Version) ─► caller (AuthContext)
//!        │                                                     ─► policy (policy.rs)
//!        ▼  (spawn_blocking: database I/O never runs on an async worker)
//!  pure fn(&State, &mut Env, &Ctx, Req) -> (T, Vec<Change>)
//!        providers / inventories / traits / classes / aggregates / allocations
//!        │
//!        ▼
//!  Replica<State>::write ── weft-store commit on the revision read
//!        │                  (a conflict: catch up, rerun the pure fn, which
//!        │                   then sees the newer generations and answers 409)
//!        ▼
//!  ArcSwap snapshot ─► readers, and allocation candidates (candidates.rs,
//!                      a pure function over one snapshot)
//! ```
//!
//! Generations are what make concurrent schedulers safe: a writer sends the
//! provider (or consumer) generation it read, and the write is checked on
//! the very state it commits on, so a stale one is a 409
//! `placement.concurrent_update` and capacity is never double-booked.

pub mod aggregates;
pub mod allocations;
pub mod api;
pub mod candidates;
#[cfg(test)]
mod candidates_tests;
pub mod catalog;
pub mod classes;
pub mod error;
pub mod inventories;
pub mod microversion;
pub mod model;
pub mod policy;
pub mod providers;
pub mod query;
pub mod reshaper;
pub mod schema;
pub mod service;
pub mod state;
pub mod traits;

pub use api::{router, MOUNT};
pub use error::{PlacementError, PlacementResult};
pub use state::State;

use service::{Ctx, Env, Write};
use std::path::Path;
use std::sync::Arc;
use weft_identity::policy::{Credentials, Enforcer, Mode};
use weft_identity::Identity;
use weft_store::{Replica, Store};

/// Validates `X-Auth-Token`s when the server's auth layer has not (the
/// router used on its own); `weft serve` passes the identity service.
pub trait Authenticator: Send + Sync {
    /// The caller behind `token`, if it is valid.
    fn validate(&self, token: &str) -> Option<Credentials>;
}

impl Authenticator for Identity {
    fn validate(&self, token: &str) -> Option<Credentials> {
        self.validate_token(token).ok().map(|a| a.credentials())
    }
}

/// Placement's `noauth2` strategy, for test deployments only (Placement's
/// own gabbi suite authenticates this way): the `X-Auth-Token` value names
/// the caller, `user[:project]`, and `admin` is the admin. Nothing is
/// validated, so it is off unless `weft serve --placement-noauth2` asks.
pub struct NoAuth2;

impl Authenticator for NoAuth2 {
    fn validate(&self, token: &str) -> Option<Credentials> {
        let (user, project) = token.split_once(':').unwrap_or((token, token));
        let roles = if user == "admin" {
            vec!["admin".to_string()]
        } else {
            Vec::new()
        };
        Some(Credentials {
            user_id: user.to_string(),
            roles,
            project_id: Some(project.to_string()),
            ..Default::default()
        })
    }
}

/// The running placement service: its replica of the state, policy and auth.
pub struct Placement {
    replica: Arc<Replica<State>>,
    enforcer: Enforcer,
    auth: Option<Arc<dyn Authenticator>>,
    /// `noauth2`: tokens are names, never validated (see [`NoAuth2`]).
    noauth2: bool,
}

fn now_string() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Placement {
    /// Opens placement on `store` with Placement's default policy
    /// (overridable by `policy_file`); `auth` validates tokens when the
    /// server's auth layer has not (the router used on its own).
    pub fn open(
        store: Arc<dyn Store>,
        state_dir: Option<&Path>,
        policy_file: Option<&Path>,
        mode: Mode,
        auth: Option<Arc<dyn Authenticator>>,
    ) -> Result<Arc<Placement>, String> {
        let enforcer = Enforcer::new(
            policy::DEFAULTS,
            policy_file,
            mode,
            state_dir.map(weft_identity::policy::records_path),
        )
        .map_err(|e| e.to_string())?;
        let replica = Replica::open(state::SERVICE, store).map_err(|e| e.to_string())?;
        Ok(Arc::new(Placement {
            replica: Arc::new(replica),
            enforcer,
            auth,
            noauth2: false,
        }))
    }

    /// Placement in `noauth2` mode (test deployments only): every
    /// `X-Auth-Token` is taken as a name, see [`NoAuth2`].
    pub fn open_noauth2(
        store: Arc<dyn Store>,
        state_dir: Option<&Path>,
    ) -> Result<Arc<Placement>, String> {
        let pl = Placement::open(
            store,
            state_dir,
            None,
            Mode::Enforce,
            Some(Arc::new(NoAuth2)),
        )?;
        let mut pl = Arc::into_inner(pl).ok_or("placement opened twice")?;
        pl.noauth2 = true;
        Ok(Arc::new(pl))
    }

    /// Whether tokens are names (`noauth2`) rather than identity's tokens.
    pub fn noauth2(&self) -> bool {
        self.noauth2
    }

    /// This service's replica, for the follower that keeps it current with
    /// other replicas' commits.
    pub fn replica(&self) -> Arc<dyn weft_store::Follow> {
        self.replica.clone()
    }

    /// The current state, kept as long as the caller holds it.
    pub fn snapshot(&self) -> Arc<State> {
        self.replica.snapshot()
    }

    /// Checks policy `action` for `creds` (`project_id`: the target's).
    pub fn authorize(
        &self,
        creds: &Credentials,
        action: &str,
        project_id: Option<&str>,
    ) -> PlacementResult<()> {
        policy::authorize(&self.enforcer, creds, action, project_id)
    }

    /// The caller behind a token, when the server's auth layer did not run.
    pub fn validate(&self, token: &str) -> Option<Credentials> {
        self.auth.as_ref().and_then(|a| a.validate(token))
    }

    /// Runs a pure write on the current state and commits what it returns
    /// on the revision it read; on a conflict with another replica the
    /// function reruns on the caught-up state (so a generation another
    /// replica moved is seen, and answered 409). A refusal is only given on
    /// current state: if other replicas committed since this snapshot, it
    /// catches up and reruns once. Blocking.
    pub fn write<T>(
        &self,
        ctx: Ctx,
        mut f: impl FnMut(&State, &mut Env, &Ctx) -> Write<T>,
    ) -> PlacementResult<T> {
        self.replica.write_fresh(
            |st| {
                let mut ids = || uuid::Uuid::new_v4().hyphenated().to_string();
                let mut env = Env {
                    now: now_string(),
                    new_uuid: &mut ids,
                };
                let (out, changes) = f(st, &mut env, &ctx)?;
                Ok::<_, PlacementError>((out, state::to_store(&changes)?))
            },
            |e: &PlacementError| e.is_refusal(),
        )
    }

    /// [`Placement::write`] on a blocking thread, for async handlers.
    pub async fn write_async<T: Send + 'static>(
        self: &Arc<Self>,
        ctx: Ctx,
        f: impl FnMut(&State, &mut Env, &Ctx) -> Write<T> + Send + 'static,
    ) -> PlacementResult<T> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.write(ctx, f)).await {
            Ok(r) => r,
            Err(e) => Err(PlacementError::Internal(format!("writer task failed: {e}"))),
        }
    }
}
