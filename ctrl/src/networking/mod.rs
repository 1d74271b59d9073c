//! Networking: a Neutron-v2.0-compatible service.
//!
//! ```text
//!  HTTP (axum, api.rs) ──► auth (X-Auth-Token ─► TokenValidator) ─► Ctx
//!        │
//!        ▼  (spawn_blocking: database I/O never runs on an async worker)
//!  service.rs: pure fn(&State, Env, Ctx, body) -> (result, Vec<Change>)
//!        │                           (policy via the identity crate's Enforcer)
//!        ▼
//!  Replica<State>::write ── weft-store commit on the revision read
//!        │                  (a conflict: catch up, rerun the pure fn)
//!        ▼
//!  ArcSwap snapshot ─► readers; revision watch ─► agents: host_state(host) since revision
//!        ▲
//!  follower (PostgreSQL): other replicas' commits
//! ```
//!
//! Non-goals: routers/L3, DHCP agents, subnet pools, QoS, trunk ports.

pub(crate) mod agents;
pub(crate) mod api;
pub mod body;
pub mod config;
pub mod error;
pub(crate) mod ipam;
pub mod model;
pub mod policy;
pub(crate) mod query;
pub(crate) mod revision;
pub mod service;
pub mod state;
pub(crate) mod sync;

pub use api::{router, MOUNT};
pub use config::NetConfig;
pub use error::{NetError, NetResult};
pub use service::Ctx;
pub use sync::HostState;

use config::Segments;
use service::{Authz, Env, Ids, RandomIds};
use state::State;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_identity::policy::{Credentials, Enforcer, Mode};
use weft_store::{Replica, Store, StoreError};

/// Validates `X-Auth-Token`s; `weft serve` implements it with the identity service.
pub trait TokenValidator: Send + Sync {
    /// The caller's credentials, or None when the token does not validate.
    fn validate(&self, token: &str) -> Option<Credentials>;
}

impl TokenValidator for weft_identity::Identity {
    fn validate(&self, token: &str) -> Option<Credentials> {
        self.validate_token(token).ok().map(|a| a.credentials())
    }
}

/// Where the metadata service's instance data comes from beyond the port:
/// compute's server records (name, key, user data, metadata), set by the
/// composition when compute runs in this process.
pub trait InstanceInfo: Send + Sync {
    /// The instance a port with `device_id` belongs to, if it is a server.
    fn instance(&self, device_id: &str) -> Option<weft_proto::HostInstance>;
}

/// The running networking service: its replica of the state, policy, and auth.
pub struct Networking {
    replica: Arc<Replica<State>>,
    /// Servers' instance data for the metadata service (compute's, when mounted).
    instances: std::sync::OnceLock<Arc<dyn InstanceInfo>>,
    /// Drawn from on every attempt of a write (a rerun after a conflict gets fresh ids).
    ids: Mutex<Box<dyn Ids + Send>>,
    segs: Segments,
    authz: Box<dyn Authz + Send + Sync>,
    auth: Arc<dyn TokenValidator>,
}

/// Now, as Neutron writes timestamps (`2024-01-02T03:04:05Z`).
pub fn now_string() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The file networking kept its state in before weft-store.
pub const LEGACY_DB: &str = "networking.db";

/// Imports `<state_dir>/networking.db` (tables `meta(key, value)` with the
/// revision and `resources(kind, id, body)`) into `store` at its revision, if
/// the store has never seen networking. Keeping the revision means agents
/// long-polling from before the upgrade are not stranded. Returns whether
/// anything was imported.
pub fn import_legacy(store: &dyn Store, state_dir: &Path) -> Result<bool, StoreError> {
    let path = state_dir.join(LEGACY_DB);
    if !path.exists() {
        return Ok(false);
    }
    let loaded = store.load(state::SERVICE)?;
    if loaded.revision != 0 || !loaded.rows.is_empty() {
        return Ok(false);
    }
    let (revision, rows) = weft_store::read_legacy(&path, "resources")?;
    if revision == 0 && rows.is_empty() {
        return Ok(false);
    }
    // Decode before writing: a file this binary cannot read is not imported.
    <State as weft_store::Model>::from_rows(revision, rows.clone())?;
    let done = store.import(state::SERVICE, revision, &rows)?;
    if done {
        tracing::info!(file = %path.display(), revision, records = rows.len(), "networking: imported the legacy state file");
    }
    Ok(done)
}

impl Networking {
    /// Opens the service on `store` with the default Neutron policy
    /// (overridable by `policy_file`). `state_dir` holds the policy denial
    /// log and, from older versions, `networking.db` (imported once).
    pub fn open(
        store: Arc<dyn Store>,
        state_dir: &Path,
        cfg: &NetConfig,
        policy_file: Option<&Path>,
        mode: Mode,
        auth: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Networking>, String> {
        import_legacy(store.as_ref(), state_dir).map_err(|e| e.to_string())?;
        let enforcer = Enforcer::new(
            policy::DEFAULTS,
            policy_file,
            mode,
            // The one records file of the state directory: `weft policy
            // workplan` plans networking's denials with identity's.
            Some(weft_identity::policy::records_path(state_dir)),
        )
        .map_err(|e| e.to_string())?;
        Networking::new(
            store,
            cfg,
            Box::new(policy::NetPolicy { enforcer }),
            Box::new(RandomIds),
            auth,
        )
    }

    /// Loads the service's state from the store, with its policy, id source and token validator.
    pub fn new(
        store: Arc<dyn Store>,
        cfg: &NetConfig,
        authz: Box<dyn Authz + Send + Sync>,
        ids: Box<dyn Ids + Send>,
        auth: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Networking>, String> {
        let segs = Segments::from_config(cfg)?;
        let replica = Replica::open(state::SERVICE, store).map_err(|e| e.to_string())?;
        Ok(Arc::new(Networking {
            replica: Arc::new(replica),
            instances: std::sync::OnceLock::new(),
            ids: Mutex::new(ids),
            segs,
            authz,
            auth,
        }))
    }

    /// This service's replica, for the follower that keeps it current with
    /// other replicas' commits (`Server::follow`).
    pub fn replica(&self) -> Arc<dyn weft_store::Follow> {
        self.replica.clone()
    }

    /// Replays other replicas' commits now (the follower does it on notice).
    pub fn catch_up(&self) -> NetResult<bool> {
        Ok(self.replica.catch_up()?)
    }

    /// The caller of a request from its `X-Auth-Token`; 401 when missing or invalid.
    pub fn authenticate(&self, token: Option<&str>) -> NetResult<Ctx> {
        let token = token.ok_or(NetError::Unauthenticated)?;
        self.auth
            .validate(token)
            .map(Ctx::new)
            .ok_or(NetError::Unauthenticated)
    }

    /// The policy checks.
    pub fn authz(&self) -> &dyn Authz {
        self.authz.as_ref()
    }

    /// Runs a pure service function on the current state and commits what it
    /// returns on the revision it read. On a conflict with another replica the
    /// function reruns on the caught-up state, with a fresh clock and ids.
    /// A refusal (404, 409, 400...) is only answered on current state: if
    /// other replicas committed since this one's snapshot, it catches up and
    /// reruns once, so a resource created through another replica a moment
    /// ago is never "not found" here. Blocking (database I/O): async callers
    /// use [`Networking::write_async`].
    pub fn write<T>(
        &self,
        mut f: impl FnMut(&State, &mut Env) -> service::Write<T>,
    ) -> NetResult<T> {
        self.replica.write_fresh(
            |st| {
                let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                let mut env = Env {
                    now: now_string(),
                    ids: ids.as_mut(),
                    authz: self.authz.as_ref(),
                    segs: &self.segs,
                };
                let (out, changes) = f(st, &mut env)?;
                Ok((out, state::to_store(&changes)?))
            },
            |e: &NetError| !matches!(e, NetError::Store(_) | NetError::Internal(_)),
        )
    }

    /// [`Networking::write`] on a blocking thread, for async handlers.
    pub async fn write_async<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnMut(&State, &mut Env) -> service::Write<T> + Send + 'static,
    ) -> NetResult<T> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.write(f)).await {
            Ok(r) => r,
            Err(e) => Err(NetError::Internal(format!("writer task failed: {e}"))),
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

    /// The revision of the state readers see now.
    pub fn revision(&self) -> u64 {
        self.replica.revision()
    }

    /// What `host` must wire at the current revision.
    pub fn host_state(&self, host: &str) -> HostState {
        let mut hs = self.read(|st| sync::host_state(st, host));
        self.fill_instances(&mut hs);
        hs
    }

    /// Sets where servers' instance data comes from (once).
    pub fn set_instance_info(&self, i: Arc<dyn InstanceInfo>) {
        let _ = self.instances.set(i);
    }

    /// Ports of servers get their server's instance data.
    fn fill_instances(&self, hs: &mut HostState) {
        let Some(info) = self.instances.get() else {
            return;
        };
        for p in &mut hs.ports {
            if let Some(i) = p.instance.as_ref().and_then(|i| info.instance(&i.uuid)) {
                p.instance = Some(i);
            }
        }
    }

    /// Long-poll: returns at once if the revision is past `since`, else when
    /// it changes (by this replica's write or one the follower replayed) or
    /// `timeout` passes (then with the unchanged state).
    pub async fn wait_host_state(&self, host: &str, since: u64, timeout: Duration) -> HostState {
        let mut rx = self.replica.subscribe();
        if *rx.borrow_and_update() <= since {
            let _ = tokio::time::timeout(timeout, rx.wait_for(|r| *r > since)).await;
        }
        self.host_state(host)
    }

    /// The agent of `host` registers, or heartbeats: its tunnel endpoint (None: it has
    /// none) and the time, which `GET /v2.0/agents` judges `alive` by. A write
    /// (revision bump), so every other agent learns a new peer on its long-poll.
    /// Blocking: see [`Networking::write`].
    pub fn register_tunnel(&self, host: &str, tunnel_ip: Option<&str>) -> NetResult<()> {
        let ip = match tunnel_ip {
            None => None,
            Some(s) => {
                let ip: std::net::IpAddr = s.parse().map_err(|_| {
                    NetError::invalid("tunnel_ip", format!("'{s}' is not an IP address"))
                })?;
                if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                    return Err(NetError::invalid(
                        "tunnel_ip",
                        format!("'{s}' is not a usable tunnel endpoint"),
                    ));
                }
                Some(ip.to_string())
            }
        };
        if host.is_empty() {
            return Err(NetError::invalid("host", "must not be empty"));
        }
        self.write(|st, env| Ok(((), vec![agents::heartbeat(st, env, host, ip.clone())])))
    }

    /// Agent status reports for ports on `host`, in one commit. Blocking.
    pub fn report_status(&self, host: &str, statuses: &[(String, String)]) -> NetResult<()> {
        self.write(|st, env| {
            let mut changes = Vec::new();
            for (id, status) in statuses {
                match service::set_port_status(st, &env.now, host, id, status) {
                    Ok(c) => changes.extend(c),
                    // A port deleted or rebound since the agent looked: nothing to report.
                    Err(NetError::NotFound { .. }) | Err(NetError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(((), changes))
        })
    }
}

/// Opens the networking service in `weft serve`'s state directory and mounts
/// it (`/networking`, catalog type `network`).
pub fn mount(
    server: &mut crate::server::Server,
    cfg: &NetConfig,
) -> Result<Arc<Networking>, String> {
    let sc = server.config().clone();
    let mode = if sc.policy_permissive {
        Mode::Permissive
    } else {
        Mode::Enforce
    };
    let net = Networking::open(
        server.store(),
        &sc.state_dir,
        cfg,
        sc.policy_file.as_deref(),
        mode,
        server.identity(),
    )?;
    server
        .mount(crate::server::ServiceMount::new(
            MOUNT,
            "network",
            "neutron",
            router(net.clone()),
        ))
        .map_err(|e| e.to_string())?;
    server.follow(net.replica());
    Ok(net)
}

/// Reads a networking config file (TOML with [`NetConfig`]'s fields).
pub fn read_config(path: &Path) -> Result<NetConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
