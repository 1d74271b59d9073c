//! The compute side of a remote host's agent (`weft agent --compute-driver`),
//! served under `/compute/agent/v1/hosts/{host}` (wire types in
//! `weft_proto::compute`). ctrl keeps every decision: the host registers
//! its provider and heartbeats, reads the builds and teardowns the build
//! loop left for it, asks for a step token per step (minted by the compute
//! service user, bound to one service, through the server's trust when the
//! step is the user's: the same tokens the in-process host acts with), and
//! says how each ended.
//!
//! Only callers holding `admin` or `service` (a host's service credentials)
//! may speak it; a step token is only minted for a server on the caller's
//! host while it is being built or torn down there.

pub mod actions;
mod reconcile;

use crate::compute_host::HostServices;
use crate::networking::Networking;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_compute::compute::build::claims::Claims;
use weft_compute::compute::build::host::ComputeHost;
use weft_compute::compute::build::trusts::Delegation;
use weft_compute::compute::build::{self, Spawned};
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_compute::compute::servers::record::Server;
use weft_compute::compute::Compute;
use weft_compute::placement::model::Inventory;
use weft_identity::token::Audience;
use weft_identity::AuthContext;
use weft_proto::compute::{
    BuildOrder, ComputeHostRegistration, ComputeWork, DeleteOrder, NicOrder, SpawnReport,
    StepToken, StepTokenRequest,
};
use weft_proto::compute_actions::{ActionReport, ConsoleReport, InterfaceReport};

/// What the endpoints act on.
pub struct AgentApi {
    /// The compute service.
    pub compute: Arc<Compute>,
    /// Placement, with the compute service's token.
    pub claims: Arc<dyn Claims>,
    /// The control-plane halves of a host's steps (port release).
    pub services: HostServices,
    /// Networking (addresses of the ports a build made).
    pub net: Arc<Networking>,
    /// The compute service user's step tokens.
    pub delegation: Arc<dyn Delegation>,
}

type S = State<Arc<AgentApi>>;
pub(crate) type Caller = Option<Extension<AuthContext>>;

/// The routes, relative to the compute mount.
pub fn router(api: Arc<AgentApi>) -> Router {
    Router::new()
        .route("/agent/v1/hosts/{host}", put(register_h))
        .route("/agent/v1/hosts/{host}/heartbeat", post(heartbeat_h))
        .route("/agent/v1/hosts/{host}/work", get(work_h))
        .route(
            "/agent/v1/hosts/{host}/reconcile",
            post(reconcile::reconcile_h),
        )
        .route("/agent/v1/hosts/{host}/servers/{id}/token", post(token_h))
        .route(
            "/agent/v1/hosts/{host}/servers/{id}/spawned",
            post(spawned_h),
        )
        .route(
            "/agent/v1/hosts/{host}/servers/{id}/destroyed",
            post(destroyed_h),
        )
        .route("/agent/v1/hosts/{host}/servers/{id}/acted", post(acted_h))
        .route("/agent/v1/hosts/{host}/consoles/{request}", post(console_h))
        .route(
            "/agent/v1/hosts/{host}/interfaces/{request}",
            post(interface_h),
        )
        .with_state(api)
}

/// A host agent's caller: `admin` or `service`, else 401/403.
pub(crate) fn agent_only(caller: &Caller) -> ComputeResult<()> {
    let Some(Extension(c)) = caller else {
        return Err(ComputeError::Unauthenticated);
    };
    if c.roles.iter().any(|r| r == "admin" || r == "service") {
        Ok(())
    } else {
        Err(ComputeError::Forbidden(
            "Policy doesn't allow compute_agent to be performed: it needs role admin or service."
                .into(),
        ))
    }
}

/// Runs blocking service work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ComputeResult<T> + Send + 'static,
) -> ComputeResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ComputeError::Internal(e.to_string()))?
}

fn inventory(r: &ComputeHostRegistration) -> BTreeMap<String, Inventory> {
    let inv = |total: u64, reserved: u64, ratio: f64| Inventory {
        reserved: reserved.min(total),
        allocation_ratio: ratio,
        max_unit: total,
        ..Inventory::with_total(total)
    };
    [
        ("VCPU".to_string(), inv(r.vcpus, 0, r.cpu_allocation_ratio)),
        (
            "MEMORY_MB".to_string(),
            inv(
                r.memory_mb,
                r.reserved_host_memory_mb,
                r.ram_allocation_ratio,
            ),
        ),
        (
            "DISK_GB".to_string(),
            inv(r.disk_gb, 0, r.disk_allocation_ratio),
        ),
    ]
    .into()
}

fn check_registration(host: &str, r: &ComputeHostRegistration) -> ComputeResult<()> {
    let bad = |m: String| Err(ComputeError::BadRequest(m));
    if host.is_empty() || host.len() > 255 {
        return bad(format!("Invalid host name {host:?}."));
    }
    if r.vcpus == 0 || r.memory_mb == 0 {
        return bad("vcpus and memory_mb must be positive.".into());
    }
    for (k, v) in [
        ("cpu_allocation_ratio", r.cpu_allocation_ratio),
        ("ram_allocation_ratio", r.ram_allocation_ratio),
        ("disk_allocation_ratio", r.disk_allocation_ratio),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return bad(format!("{k} must be a positive number, not {v}."));
        }
    }
    Ok(())
}

/// `PUT /agent/v1/hosts/{host}`: the host's record and provider, found or
/// made; an operator's disable outlives it.
async fn register_h(
    State(api): S,
    caller: Caller,
    Path(host): Path<String>,
    Json(r): Json<ComputeHostRegistration>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    check_registration(&host, &r)?;
    let record = ComputeHost {
        name: host.clone(),
        provider: String::new(),
        availability_zone: r.availability_zone.clone(),
        enabled: true,
        disabled_reason: None,
        forced_down: false,
        driver: r.driver.clone(),
        hypervisor_type: r.hypervisor_type.clone(),
        arch: r.arch.clone(),
        vcpus: r.vcpus,
        memory_mb: r.memory_mb,
        disk_gb: r.disk_gb,
        host_ip: r.host_ip.clone(),
        heartbeat: String::new(),
        seq: 0,
    };
    let inv = inventory(&r);
    blocking(move || {
        if api.compute.builds().spawner(&host).is_some() {
            return Err(ComputeError::Conflict(format!(
                "Compute host {host} is run by the controller itself."
            )));
        }
        api.compute.record_host(api.claims.as_ref(), record, &inv)?;
        api.compute.builds().kick();
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../heartbeat`: 404 for a host never registered (the agent
/// registers again).
async fn heartbeat_h(
    State(api): S,
    caller: Caller,
    Path(host): Path<String>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    blocking(move || {
        if !api.compute.snapshot().hosts.contains_key(&host) {
            return Err(ComputeError::NotFound(format!(
                "Compute host {host} could not be found."
            )));
        }
        api.compute.heartbeat(&host)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a build on the host asks for, with the NICs resolved.
fn order(services: &HostServices, s: &Server) -> Result<BuildOrder, String> {
    let mut nics = s.nics.clone();
    if s.auto_network && nics.is_empty() {
        nics.push(weft_compute::compute::servers::record::NicRequest {
            network: Some(services.auto_network(s)?),
            port: None,
            fixed_ip: None,
        });
    }
    let groups = services.group_ids(s)?;
    Ok(BuildOrder {
        server_id: s.id.clone(),
        hostname: s.hostname.clone(),
        project_id: s.project_id.clone(),
        image_id: s.image_ref.clone(),
        vcpus: s.flavor.vcpus,
        memory_mb: s.flavor.ram,
        root_gb: s.flavor.disk,
        ephemeral_gb: s.flavor.ephemeral,
        swap_mb: s.flavor.swap,
        nics: nics
            .iter()
            .filter(|n| n.port.is_some() || n.network.is_some())
            .map(|n| NicOrder {
                port_id: n.port.clone(),
                network_id: n.network.clone(),
                fixed_ip: n.fixed_ip.clone(),
                security_groups: groups.clone(),
            })
            .collect(),
        metadata: [
            ("project_id".to_string(), s.project_id.clone()),
            ("flavor".to_string(), s.flavor.name.clone()),
        ]
        .into(),
    })
}

/// `GET .../work`: the host's servers being built and torn down. A build
/// whose NICs cannot be resolved fails here, with the reason.
async fn work_h(
    State(api): S,
    caller: Caller,
    Path(host): Path<String>,
) -> ComputeResult<Json<ComputeWork>> {
    agent_only(&caller)?;
    blocking(move || {
        let st = api.compute.snapshot();
        let mut work = ComputeWork::default();
        for s in st
            .servers
            .values()
            .filter(|s| s.host.as_deref() == Some(&host))
        {
            match s.task_state.as_deref() {
                Some("spawning") => match order(&api.services, s) {
                    Ok(o) => work.builds.push(o),
                    Err(why) => build::finish_build(&api.compute, &s.id, Err(why)),
                },
                Some("deleting") => work.deletes.push(DeleteOrder {
                    server_id: s.id.clone(),
                }),
                _ => {}
            }
        }
        actions::add_work(&api, &host, &mut work);
        Ok(Json(work))
    })
    .await
}

/// The server `id` on `host` in task state `task` (one of), or 404/409.
pub(crate) fn on_host(
    api: &AgentApi,
    host: &str,
    id: &str,
    tasks: &[&str],
) -> ComputeResult<Server> {
    let s = api
        .compute
        .snapshot()
        .servers
        .get(id)
        .filter(|s| s.host.as_deref() == Some(host))
        .cloned()
        .ok_or_else(|| {
            ComputeError::NotFound(format!("Instance {id} could not be found on host {host}."))
        })?;
    if !tasks.contains(&s.task_state.as_deref().unwrap_or("")) {
        return Err(ComputeError::Conflict(format!(
            "Instance {id} is in task_state {:?}, not one of {tasks:?}.",
            s.task_state
        )));
    }
    Ok(s)
}

/// `POST .../servers/{id}/token`: a step token for one service.
async fn token_h(
    State(api): S,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    Json(req): Json<StepTokenRequest>,
) -> ComputeResult<Json<StepToken>> {
    agent_only(&caller)?;
    let audience = match req.audience.as_str() {
        "image" => Audience::Image,
        "network" => Audience::Network,
        other => {
            return Err(ComputeError::BadRequest(format!(
                "audience must be image or network, not {other:?}."
            )))
        }
    };
    blocking(move || {
        let s = actions::token_server(&api, &host, &id)?;
        let trust = if req.for_user {
            Some(s.trust_id.clone().ok_or_else(|| {
                ComputeError::Conflict(format!("Instance {id} has no trust to build with."))
            })?)
        } else {
            None
        };
        let token = api
            .delegation
            .token(trust.as_deref(), audience)
            .map_err(ComputeError::Forbidden)?;
        Ok(Json(StepToken { token }))
    })
    .await
}

/// `POST .../servers/{id}/spawned`: the build's end. Its addresses are read
/// from the ports bound to it.
async fn spawned_h(
    State(api): S,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    Json(r): Json<SpawnReport>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    blocking(move || {
        let s = on_host(&api, &host, &id, &["spawning"])?;
        let outcome = match r.fault {
            Some(why) => {
                // What the failed build made goes, as in-process.
                let mut undo = s;
                undo.created_ports = r.created_ports;
                if let Err(e) = api.services.unplug(&undo) {
                    tracing::warn!(server = %id, error = %e, "ports of a failed build not released");
                }
                Err(why)
            }
            None => {
                let mut addresses: BTreeMap<String, Vec<(String, u8, String)>> = BTreeMap::new();
                for v in crate::compute_host::vifs(&api.net, &id) {
                    let list = addresses.entry(v.network_name.clone()).or_default();
                    for (ip, _) in &v.fixed_ips {
                        let ver = if ip.contains(':') { 6 } else { 4 };
                        list.push((ip.clone(), ver, v.mac_addr.clone()));
                    }
                }
                Ok(Spawned {
                    addresses,
                    created_ports: r.created_ports,
                })
            }
        };
        build::finish_build(&api.compute, &id, outcome);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../servers/{id}/destroyed`: the host let the server go; its
/// ports, allocations, record and trust go too.
async fn destroyed_h(
    State(api): S,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    blocking(move || {
        let s = on_host(&api, &host, &id, &["deleting"])?;
        api.services.unplug(&s).map_err(ComputeError::Internal)?;
        build::finish_teardown(&api.compute, api.claims.as_ref(), &s);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../servers/{id}/acted`: the host's part of an action ended.
async fn acted_h(
    State(api): S,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    Json(r): Json<ActionReport>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    blocking(move || actions::acted(&api, &host, &id, r)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../consoles/{request}`: the answer to a console request.
async fn console_h(
    State(api): S,
    caller: Caller,
    Path((host, request)): Path<(String, String)>,
    Json(r): Json<ConsoleReport>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    blocking(move || actions::console_answered(&api, &host, &request, r)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../interfaces/{request}`: the answer to an os-interface request.
async fn interface_h(
    State(api): S,
    caller: Caller,
    Path((host, request)): Path<(String, String)>,
    Json(r): Json<InterfaceReport>,
) -> ComputeResult<Response> {
    agent_only(&caller)?;
    blocking(move || actions::interface_answered(&api, &host, &request, r)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
