//! A remote compute host: `weft agent --compute-driver` joins ctrl's compute
//! service over HTTP (the protocol in `weft_proto::compute`). ctrl schedules
//! and claims; this host registers its provider, heartbeats, and carries out
//! the builds and teardowns placed on it with its own driver, each step with
//! a step token ctrl mints for one service:
//!
//! ```text
//!  work ─► build: image token ─► GET image file ─► host cache
//!                 user's network token ─► POST/PUT port (device) ─► service token ─► PUT binding:host_id
//!                 ─► HostCompute::spawn (disk, domain on the port's tap, wired by this host's switch)
//!                 ─► spawned {fault | created ports}
//!       ─► delete: HostCompute::destroy ─► destroyed (ctrl releases ports, claims, trust)
//! ```
//!
//! Each build runs on a blocking thread (the driver and qemu-img block) and
//! reaches ctrl through the runtime's handle.

pub(crate) mod image_fetch;
mod reconcile;

use crate::client::{AgentError, HttpCtrl};
use crate::compute::{Build, HostCompute, Nic};
use hyper::Method;
use image_fetch::HttpImages;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::watch;
pub use weft_proto::compute::ComputeHostRegistration;
use weft_proto::compute::{
    BuildOrder, ComputeWork, NicOrder, SpawnReport, StepToken, StepTokenRequest,
};

/// How often the host asks for work, and beats its heart.
const POLL: Duration = Duration::from_secs(1);
const HEARTBEAT: Duration = Duration::from_secs(10);

/// A remote compute host's agent.
pub struct RemoteCompute {
    pub(crate) ctrl: Arc<HttpCtrl>,
    pub(crate) compute: Arc<HostCompute>,
    registration: ComputeHostRegistration,
    /// Servers with a build, teardown or action running here, and console
    /// and interface requests being answered (not asked twice).
    busy: Mutex<BTreeSet<String>>,
    /// Actions reported lately, by server and task state: a work list read
    /// before the report may still carry one (see `compute_remote_actions`).
    pub(crate) reported: Mutex<std::collections::BTreeMap<String, std::time::Instant>>,
}

fn bad(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::BadAnswer {
        what: what.into(),
        message: e.to_string(),
    }
}

impl RemoteCompute {
    /// The host `ctrl.host`, running servers with `compute`.
    pub fn new(
        ctrl: Arc<HttpCtrl>,
        compute: Arc<HostCompute>,
        registration: ComputeHostRegistration,
    ) -> Arc<RemoteCompute> {
        Arc::new(RemoteCompute {
            ctrl,
            compute,
            registration,
            busy: Mutex::new(BTreeSet::new()),
            reported: Mutex::default(),
        })
    }

    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/compute/agent/v1/hosts/{}{rest}", self.ctrl.host)
    }

    async fn register(&self) -> Result<(), AgentError> {
        let body = serde_json::to_value(&self.registration).map_err(|e| bad("registration", e))?;
        self.ctrl
            .call(
                Method::PUT,
                &self.path(""),
                Some(body),
                "compute host registration",
            )
            .await
            .map(|_| ())
    }

    async fn heartbeat(&self) -> Result<(), AgentError> {
        self.ctrl
            .call(Method::POST, &self.path("/heartbeat"), None, "heartbeat")
            .await
            .map(|_| ())
    }

    async fn work(&self) -> Result<ComputeWork, AgentError> {
        let r = self
            .ctrl
            .call(Method::GET, &self.path("/work"), None, "compute work")
            .await?;
        serde_json::from_slice(&r.body).map_err(|e| bad("compute work", e))
    }

    /// A step token for `audience` on server `id`'s behalf (`for_user`: the
    /// user's, through the trust; else the compute service's own).
    pub(crate) async fn token(
        &self,
        id: &str,
        audience: &str,
        for_user: bool,
    ) -> Result<String, AgentError> {
        let req = StepTokenRequest {
            audience: audience.into(),
            for_user,
        };
        let body = serde_json::to_value(req).map_err(|e| bad("step token", e))?;
        let r = self
            .ctrl
            .call(
                Method::POST,
                &self.path(&format!("/servers/{id}/token")),
                Some(body),
                "step token",
            )
            .await?;
        let t: StepToken = serde_json::from_slice(&r.body).map_err(|e| bad("step token", e))?;
        Ok(t.token)
    }

    pub(crate) async fn report(
        &self,
        id: &str,
        what: &str,
        body: Option<Value>,
    ) -> Result<(), AgentError> {
        self.ctrl
            .call(
                Method::POST,
                &self.path(&format!("/servers/{id}/{what}")),
                body,
                what,
            )
            .await
            .map(|_| ())
    }

    /// Registers (retrying until ctrl answers), reconciles its domains
    /// with ctrl's records once (before any work), then polls for work and
    /// heartbeats until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut registered = false;
        let mut reconciled = false;
        let mut beat = tokio::time::Instant::now();
        while !*stop.borrow() {
            if !registered {
                match self.register().await {
                    Ok(()) => {
                        tracing::info!(host = %self.ctrl.host, "compute host registered");
                        registered = true;
                        beat = tokio::time::Instant::now();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "compute host registration failed; retrying")
                    }
                }
            } else {
                if beat.elapsed() >= HEARTBEAT {
                    match self.heartbeat().await {
                        Ok(()) => beat = tokio::time::Instant::now(),
                        // ctrl lost the host (a new database?): join again.
                        Err(AgentError::Refused { status: 404, .. }) => registered = false,
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
                if !reconciled {
                    match self.reconcile().await {
                        Ok(_) => reconciled = true,
                        Err(e) => tracing::warn!(error = %e, "reconcile failed; retrying"),
                    }
                }
                if reconciled {
                    match self.work().await {
                        Ok(w) => self.start(w),
                        Err(e) => tracing::warn!(error = %e, "compute work not read"),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Starts the work items not already running.
    fn start(self: &Arc<Self>, w: ComputeWork) {
        let rt = Handle::current();
        for b in w.builds {
            if self.take(&b.server_id) {
                let (me, rt2) = (self.clone(), rt.clone());
                rt.spawn_blocking(move || {
                    let id = b.server_id.clone();
                    me.build(&rt2, b);
                    me.release(&id);
                });
            }
        }
        for d in w.deletes {
            if self.take(&d.server_id) {
                let (me, rt2) = (self.clone(), rt.clone());
                rt.spawn_blocking(move || {
                    let id = d.server_id;
                    match me.compute.destroy(&id) {
                        Ok(()) => {
                            if let Err(e) = rt2.block_on(me.report(&id, "destroyed", None)) {
                                tracing::warn!(server = %id, error = %e, "teardown not reported");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(server = %id, error = %e, "teardown failed; retried")
                        }
                    }
                    me.release(&id);
                });
            }
        }
        self.start_actions(w.actions, w.consoles, w.interfaces);
    }

    pub(crate) fn take(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
    }

    pub(crate) fn release(&self, id: &str) {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// One build, blocking: ports, then the driver; the outcome reported.
    fn build(&self, rt: &Handle, b: BuildOrder) {
        let mut created = Vec::new();
        let r = self.build_steps(rt, &b, &mut created);
        if let Err(e) = &r {
            tracing::warn!(server = %b.server_id, error = %e, "build failed");
        }
        let report = SpawnReport {
            fault: r.err(),
            created_ports: created,
        };
        let body = serde_json::to_value(report).ok();
        if let Err(e) = rt.block_on(self.report(&b.server_id, "spawned", body)) {
            // The server stays spawning: the next poll builds it again
            // (the driver refuses a second domain; ports are found by id).
            tracing::warn!(server = %b.server_id, error = %e, "build outcome not reported");
        }
    }

    fn build_steps(
        &self,
        rt: &Handle,
        b: &BuildOrder,
        created: &mut Vec<String>,
    ) -> Result<(), String> {
        let mut nics = Vec::new();
        for n in &b.nics {
            let who = (
                b.server_id.as_str(),
                b.project_id.as_str(),
                b.hostname.as_str(),
            );
            let (nic, made) = rt.block_on(self.plug(who, n)).map_err(|e| e.to_string())?;
            if let Some(p) = made {
                created.push(p);
            }
            nics.push(nic);
        }
        let build = Build {
            server_id: b.server_id.clone(),
            image_id: b.image_id.clone(),
            vcpus: b.vcpus,
            memory_mb: b.memory_mb,
            root_gb: b.root_gb,
            ephemeral_gb: b.ephemeral_gb,
            swap_mb: b.swap_mb,
            nics,
            metadata: b.metadata.clone(),
        };
        let images = HttpImages {
            agent: self,
            rt,
            server: &b.server_id,
        };
        self.compute.spawn(&build, &images)
    }

    /// Takes (or makes) the NIC's port for the server as its user, then binds
    /// it to this host as the compute service, so this host's switch wires
    /// its tap. `Some(id)`: the port was made here. `who`: the server's id,
    /// project and hostname.
    pub(crate) async fn plug(
        &self,
        (sid, project, hostname): (&str, &str, &str),
        n: &NicOrder,
    ) -> Result<(Nic, Option<String>), AgentError> {
        let user = self.token(sid, "network", true).await?;
        let device = json!({"device_id": sid, "device_owner": "compute:nova"});
        let (port, made) = match (&n.port_id, &n.network_id) {
            (Some(p), _) => {
                let r = self
                    .ctrl
                    .call_as(
                        &user,
                        Method::PUT,
                        &format!("/networking/v2.0/ports/{p}"),
                        Some(json!({"port": device})),
                        "port update",
                    )
                    .await?;
                (port_of(&r.body)?, false)
            }
            (None, net) => {
                let mut body = device;
                body["network_id"] = json!(net.clone().unwrap_or_default());
                body["project_id"] = json!(project);
                body["name"] = json!(format!("{hostname}-port"));
                if let Some(ip) = &n.fixed_ip {
                    body["fixed_ips"] = json!([{"ip_address": ip}]);
                }
                if let Some(g) = &n.security_groups {
                    body["security_groups"] = json!(g);
                }
                let r = self
                    .ctrl
                    .call_as(
                        &user,
                        Method::POST,
                        "/networking/v2.0/ports",
                        Some(json!({"port": body})),
                        "port create",
                    )
                    .await?;
                (port_of(&r.body)?, true)
            }
        };
        let id = port["id"].as_str().unwrap_or_default().to_string();
        let own = self.token(sid, "network", false).await?;
        let bound = self
            .ctrl
            .call_as(
                &own,
                Method::PUT,
                &format!("/networking/v2.0/ports/{id}"),
                Some(json!({"port": {"binding:host_id": self.ctrl.host}})),
                "port binding",
            )
            .await;
        let net_id = port["network_id"].as_str().unwrap_or_default();
        let mtu = match bound {
            Ok(_) => self
                .ctrl
                .call_as(
                    &own,
                    Method::GET,
                    &format!("/networking/v2.0/networks/{net_id}"),
                    None,
                    "network",
                )
                .await
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .and_then(|v| v["network"]["mtu"].as_u64())
                .unwrap_or(1500),
            Err(e) => {
                // A port made here goes again (ctrl would not know of it).
                if made {
                    let _ = self
                        .ctrl
                        .call_as(
                            &own,
                            Method::DELETE,
                            &format!("/networking/v2.0/ports/{id}"),
                            None,
                            "port delete",
                        )
                        .await;
                }
                return Err(e);
            }
        };
        let nic = Nic {
            tap: weft_hypervisor::tap_name(&id),
            mac: port["mac_address"].as_str().unwrap_or_default().to_string(),
            mtu: u16::try_from(mtu).unwrap_or(1500),
        };
        Ok((nic, made.then_some(id)))
    }
}

fn port_of(body: &[u8]) -> Result<Value, AgentError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad("port", e))?;
    match &v["port"] {
        p @ Value::Object(_) => Ok(p.clone()),
        _ => Err(bad("port", "no port object in the answer")),
    }
}
