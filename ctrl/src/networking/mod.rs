//! Networking: a Neutron-v2.0-compatible service.
//!
//! ```text
//!  HTTP (axum, api.rs) ──► auth (X-Auth-Token ─► TokenValidator) ─► Ctx
//!        │
//!        ▼
//!  service.rs: pure fn(&State, Env, Ctx, body) -> (result, Vec<Change>)
//!        │                           (policy via the identity crate's Enforcer)
//!        ▼
//!  Store::commit(changes)  ── one SQLite transaction, revision += 1
//!        │
//!        ▼
//!  State::apply(changes) ─► watch channel ─► agents: host_state(host) since revision
//! ```
//!
//! Non-goals: routers/L3, DHCP agents, subnet pools, QoS, trunk ports, and
//! several ctrl replicas writing at once (the in-memory state assumes one
//! writer per database; PostgreSQL for replicas would move indexes into SQL).

pub mod api;
pub mod body;
pub mod config;
pub mod error;
pub mod ipam;
pub mod model;
pub mod policy;
pub mod query;
pub mod service;
pub mod state;
pub mod store;
pub mod sync;

pub use api::{router, MOUNT};
pub use config::NetConfig;
pub use error::{NetError, NetResult};
pub use service::Ctx;
pub use sync::HostState;

use config::Segments;
use service::{Authz, Env, Ids, RandomIds};
use state::State;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{SqliteStore, Store};
use tokio::sync::watch;
use weft_identity::policy::{Credentials, Enforcer, Mode};

/// Validates `X-Auth-Token`s; `weft serve` implements it with the identity service.
pub trait TokenValidator: Send + Sync {
    fn validate(&self, token: &str) -> Option<Credentials>;
}

impl TokenValidator for weft_identity::Identity {
    fn validate(&self, token: &str) -> Option<Credentials> {
        self.validate_token(token).ok().map(|a| a.credentials())
    }
}

struct Inner {
    state: State,
    store: Box<dyn Store>,
    ids: Box<dyn Ids + Send>,
}

/// The running networking service: state, storage, policy and the revision feed.
pub struct Networking {
    inner: Mutex<Inner>,
    rev_tx: watch::Sender<u64>,
    segs: Segments,
    authz: Box<dyn Authz + Send + Sync>,
    auth: Arc<dyn TokenValidator>,
}

pub fn now_string() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Networking {
    /// Opens `<state_dir>/networking.db` with the default Neutron policy
    /// (overridable by `policy_file`).
    pub fn open(
        state_dir: &Path,
        cfg: &NetConfig,
        policy_file: Option<&Path>,
        mode: Mode,
        auth: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Networking>, String> {
        let store =
            SqliteStore::open(&state_dir.join("networking.db")).map_err(|e| e.to_string())?;
        let enforcer = Enforcer::new(
            policy::DEFAULTS,
            policy_file,
            mode,
            Some(state_dir.join("networking-policy-denials.jsonl")),
        )
        .map_err(|e| e.to_string())?;
        Networking::new(
            Box::new(store),
            cfg,
            Box::new(policy::NetPolicy { enforcer }),
            Box::new(RandomIds),
            auth,
        )
    }

    pub fn new(
        mut store: Box<dyn Store>,
        cfg: &NetConfig,
        authz: Box<dyn Authz + Send + Sync>,
        ids: Box<dyn Ids + Send>,
        auth: Arc<dyn TokenValidator>,
    ) -> Result<Arc<Networking>, String> {
        let segs = Segments::from_config(cfg)?;
        let state = store.load().map_err(|e| e.to_string())?;
        let (rev_tx, _) = watch::channel(state.revision);
        Ok(Arc::new(Networking {
            inner: Mutex::new(Inner { state, store, ids }),
            rev_tx,
            segs,
            authz,
            auth,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-applied:
        // changes are applied only after a successful commit.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn authenticate(&self, token: Option<&str>) -> NetResult<Ctx> {
        let token = token.ok_or(NetError::Unauthenticated)?;
        self.auth
            .validate(token)
            .map(Ctx::new)
            .ok_or(NetError::Unauthenticated)
    }

    pub fn authz(&self) -> &dyn Authz {
        self.authz.as_ref()
    }

    /// Runs a pure service function and commits what it returns.
    pub fn write<T>(&self, f: impl FnOnce(&State, &mut Env) -> service::Write<T>) -> NetResult<T> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut env = Env {
            now: now_string(),
            ids: inner.ids.as_mut(),
            authz: self.authz.as_ref(),
            segs: &self.segs,
        };
        let (out, changes) = f(&inner.state, &mut env)?;
        if !changes.is_empty() {
            let rev = inner.store.commit(&changes)?;
            inner.state.apply(&changes);
            inner.state.revision = rev;
            self.rev_tx.send_replace(rev);
        }
        Ok(out)
    }

    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock().state)
    }

    pub fn revision(&self) -> u64 {
        *self.rev_tx.borrow()
    }

    pub fn host_state(&self, host: &str) -> HostState {
        self.read(|st| sync::host_state(st, host))
    }

    /// Long-poll: returns at once if the revision is past `since`, else when
    /// it changes or `timeout` passes (then with the unchanged state).
    pub async fn wait_host_state(&self, host: &str, since: u64, timeout: Duration) -> HostState {
        let mut rx = self.rev_tx.subscribe();
        if *rx.borrow_and_update() <= since {
            let _ = tokio::time::timeout(timeout, rx.wait_for(|r| *r > since)).await;
        }
        self.host_state(host)
    }

    /// Records the tunnel endpoint `host`'s agent reported (None: it has none). A change is a
    /// write (revision bump), so every other agent learns the new peer on its long-poll.
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
        let same =
            self.read(|st| st.agents.get(host).map(|a| a.tunnel_ip.clone()) == Some(ip.clone()));
        if same {
            return Ok(());
        }
        self.write(|_, env| {
            let rec = model::AgentRecord {
                id: host.to_string(),
                tunnel_ip: ip.clone(),
                updated_at: env.now.clone(),
            };
            Ok(((), vec![state::Change::Agent(rec)]))
        })
    }

    /// Agent status reports for ports on `host`, in one commit.
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
    Ok(net)
}

/// Reads a networking config file (TOML with [`NetConfig`]'s fields).
pub fn read_config(path: &Path) -> Result<NetConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
