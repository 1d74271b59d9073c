//! The Compute API v2.1 (Nova) service: flavors, key pairs, servers, the
//! compute hosts, and the build loop (filter scheduler over placement,
//! claims, the hosts' drivers) in [`build`].
//!
//! ```text
//!  HTTP (axum: api/*.rs) ─► Caller ─► Ctx (token validated by ctrl's layer)
//!        │   microversion from OpenStack-API-Version: compute 2.N (2.1-2.80)
//!        ▼  (spawn_blocking: database I/O never runs on an async worker)
//!  flavors.rs / keypairs.rs: pure fn(&State, &mut Env, &Ctx, req) -> (T, Vec<Change>)
//!        │                   (policy: Nova's defaults, policy.rs)
//!        ▼
//!  Replica<State>::write ── weft-store, service "compute", on the revision read
//! ```

pub mod admit;
pub mod aggregates;
pub mod api;
pub mod body;
pub mod build;
pub mod error;
pub mod flavors;
pub mod groups;
pub mod host_placement;
pub mod instance_actions;
pub mod keypairs;
pub mod microversion;
pub mod migrations;
pub mod model;
pub mod os_services;
pub mod policy;
pub mod quotas;
pub mod servers;
pub mod service;
pub mod state;
pub mod usage;

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

/// What server create looks up in the other services (images, networking)
/// as the caller may see them; `weft serve` implements it over its
/// in-process services.
pub trait Lookups: Send + Sync {
    /// The facts about `req`'s image, networks, ports and groups for `ctx`.
    fn facts(&self, ctx: &Ctx, req: &servers::request::CreateServer) -> servers::Facts;
    /// Image `id` as `ctx` may see it (rebuild's new image).
    fn image(&self, ctx: &Ctx, id: &str) -> Option<servers::ImageFacts> {
        let _ = (ctx, id);
        None
    }
    /// The server's interfaces: the ports bound to it, as networking has them.
    fn interfaces(&self, server: &servers::record::Server) -> Vec<servers::interfaces::Vif> {
        let _ = server;
        Vec::new()
    }
    /// A queued image for a snapshot of `server`, owned by `ctx`'s project,
    /// with these properties; its id.
    fn create_snapshot_image(
        &self,
        ctx: &Ctx,
        server: &servers::record::Server,
        name: &str,
        properties: std::collections::BTreeMap<String, String>,
    ) -> ComputeResult<String> {
        let _ = (ctx, name, properties);
        Err(ComputeError::Conflict(format!(
            "Cannot 'createImage' instance {}: no image service",
            server.id
        )))
    }
    /// Removes an image a snapshot that failed left behind.
    fn delete_image(&self, id: &str) {
        let _ = id;
    }
    /// os-interface attach's checks of the port or network asked for
    /// (Nova's 404/409), before a remote host is asked to attach it.
    fn check_attach(
        &self,
        server: &servers::record::Server,
        req: &servers::interfaces::Attach,
    ) -> ComputeResult<()> {
        let _ = (server, req);
        Ok(())
    }
}

/// The running compute API service: its replica of the records, policy and auth.
pub struct Compute {
    replica: Arc<Replica<State>>,
    ids: Mutex<Box<dyn Ids>>,
    authz: Box<dyn policy::Authz>,
    tokens: Arc<dyn Tokens>,
    lookups: std::sync::OnceLock<Arc<dyn Lookups>>,
    delegation: std::sync::OnceLock<Arc<dyn build::trusts::Delegation>>,
    placement: std::sync::OnceLock<Arc<dyn build::claims::Claims>>,
    builds: build::Builds,
    weights: std::sync::Mutex<build::scheduler::Weights>,
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
            &[policy::DEFAULTS, servers::ops::POLICY].concat(),
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
            lookups: std::sync::OnceLock::new(),
            delegation: std::sync::OnceLock::new(),
            placement: std::sync::OnceLock::new(),
            builds: build::Builds::default(),
            weights: std::sync::Mutex::new(build::scheduler::Weights::default()),
        }))
    }

    /// Sets where server create looks up images and networks (once).
    pub fn set_lookups(&self, l: Arc<dyn Lookups>) {
        let _ = self.lookups.set(l);
    }

    /// Sets how builds act for their users (once): through trusts.
    pub fn set_delegation(&self, d: Arc<dyn build::trusts::Delegation>) {
        let _ = self.delegation.set(d);
    }

    /// Sets the placement the API itself writes to (once): a deleted
    /// service's provider, aggregate membership ([`host_placement`]).
    pub fn set_placement(&self, p: Arc<dyn build::claims::Claims>) {
        let _ = self.placement.set(p);
    }

    /// The placement of [`Compute::set_placement`], if set.
    pub fn placement(&self) -> Option<Arc<dyn build::claims::Claims>> {
        self.placement.get().cloned()
    }

    /// The delegation builds act through, if this process has one.
    pub fn delegation(&self) -> Option<Arc<dyn build::trusts::Delegation>> {
        self.delegation.get().cloned()
    }

    /// The other services, when set.
    pub fn lookups(&self) -> Option<&Arc<dyn Lookups>> {
        self.lookups.get()
    }

    /// The facts for a create; without lookups nothing is found.
    pub fn facts(&self, ctx: &Ctx, req: &servers::request::CreateServer) -> servers::Facts {
        match self.lookups.get() {
            Some(l) => l.facts(ctx, req),
            None => servers::Facts::default(),
        }
    }

    /// The build loop's registry of drivers and work in flight.
    pub fn builds(&self) -> &build::Builds {
        &self.builds
    }

    /// Wakes the build loop.
    pub fn kick_builds(&self) {
        self.builds.kick();
    }

    /// The weigher multipliers.
    pub fn weights(&self) -> build::scheduler::Weights {
        *self.weights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the weigher multipliers (`weft serve --ram-weight-multiplier`...).
    pub fn set_weights(&self, w: build::scheduler::Weights) {
        *self.weights.lock().unwrap_or_else(|e| e.into_inner()) = w;
    }

    /// The current records.
    pub fn snapshot(&self) -> Arc<State> {
        self.replica.snapshot()
    }

    /// Applies other replicas' commits now.
    pub fn catch_up(&self) -> ComputeResult<bool> {
        Ok(self.replica.catch_up()?)
    }

    /// Registers (or refreshes) a compute host this process runs: its
    /// provider and inventory in placement, its record with a heartbeat,
    /// and its driver for the build loop.
    pub fn register_host(
        &self,
        claims: &dyn build::claims::Claims,
        host: build::host::ComputeHost,
        inventory: &std::collections::BTreeMap<String, crate::placement::model::Inventory>,
        spawner: Arc<dyn build::Spawner>,
    ) -> ComputeResult<()> {
        self.record_host(claims, host.clone(), inventory)?;
        // Before this host takes builds: records and domains agree again.
        match spawner.observe() {
            Ok(seen) => {
                for orphan in build::reconcile::reconcile(self, &host.name, &seen) {
                    tracing::warn!(server = %orphan, host = %host.name, "destroying a domain no server owns");
                    if let Err(e) = spawner.destroy_orphan(&orphan) {
                        tracing::warn!(server = %orphan, error = %e, "orphan domain not destroyed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(host = %host.name, error = %e, "reconcile: driver list failed")
            }
        }
        self.builds.add_spawner(&host.name, spawner);
        Ok(())
    }

    /// Records compute host `host` (its provider registered in placement
    /// with `inventory`, found or made) and beats its heart; a host another
    /// process runs (`weft agent`) is registered this way alone.
    pub fn record_host(
        &self,
        claims: &dyn build::claims::Claims,
        mut host: build::host::ComputeHost,
        inventory: &std::collections::BTreeMap<String, crate::placement::model::Inventory>,
    ) -> ComputeResult<()> {
        host.provider = claims
            .register(&host.name, inventory)
            .map_err(ComputeError::Internal)?;
        self.write(|st, env| {
            let mut h = host.clone();
            h.heartbeat = env.now.clone();
            if let Some(old) = st.hosts.get(&h.name) {
                // An operator's enable/disable and forced_down outlive restarts.
                h.enabled = old.enabled;
                h.disabled_reason = old.disabled_reason.clone();
                h.forced_down = old.forced_down;
                h.seq = old.seq;
            } else {
                h.seq = st.hosts.values().map(|x| x.seq).max().unwrap_or(0) + 1;
            }
            Ok(((), vec![state::Change::Host(h)]))
        })?;
        host_placement::sync_aggregates(self, claims, &host.name);
        Ok(())
    }

    /// A host's heartbeat.
    pub fn heartbeat(&self, host: &str) -> ComputeResult<()> {
        self.heartbeat_all(&[host.to_string()])
    }

    /// The heartbeats of several hosts of one process in one commit (a
    /// process that runs many fake hosts beats for all of them at once).
    pub fn heartbeat_all(&self, hosts: &[String]) -> ComputeResult<()> {
        self.write(move |st, env| {
            let changes = hosts
                .iter()
                .filter_map(|name| st.hosts.get(name))
                .map(|h| {
                    let mut h = h.clone();
                    h.heartbeat = env.now.clone();
                    state::Change::Host(h)
                })
                .collect();
            Ok(((), changes))
        })
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
        self.replica.write_fresh(
            |st| {
                let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                let mut env = Env {
                    now: now_string(),
                    ids: ids.as_mut(),
                    authz: self.authz.as_ref(),
                };
                let (out, mut changes) = f(st, &mut env)?;
                // Whatever moved a resize, its migration record moves with it.
                let records = migrations::follow(st, &changes, &env.now);
                changes.extend(records);
                Ok((out, state::to_store(&changes)?))
            },
            |e: &ComputeError| !matches!(e, ComputeError::Store(_) | ComputeError::Internal(_)),
        )
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
