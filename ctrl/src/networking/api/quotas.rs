//! Neutron's quotas API, read-only: `GET /v2.0/quotas/{project}`, with
//! `/default` and `/details.json` (openstacksdk asks for `/details`).
//! weft's networking enforces no quotas, so every limit is -1 (unlimited),
//! which is the truth a client should see; the details report what the
//! project uses. `openstack quota show` reads these beside Nova's quota
//! set. Setting networking quotas is refused, not ignored.

use super::Caller;
use crate::networking::error::{NetError, NetResult};
use crate::networking::state::State;
use crate::networking::Networking;
use axum::extract::{Path, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;

type S = AxState<Arc<Networking>>;

/// Neutron's quota resources (the core ones and L3's).
const RESOURCES: &[&str] = &[
    "network",
    "subnet",
    "port",
    "router",
    "floatingip",
    "security_group",
    "security_group_rule",
    "rbac_policy",
    "subnetpool",
];

fn used(st: &State, project: &str, resource: &str) -> usize {
    match resource {
        "network" => st
            .networks
            .values()
            .filter(|n| n.project_id == project)
            .count(),
        "subnet" => st
            .subnets
            .values()
            .filter(|n| n.project_id == project)
            .count(),
        "port" => st
            .ports
            .values()
            .filter(|n| n.project_id == project)
            .count(),
        "security_group" => st
            .security_groups
            .values()
            .filter(|n| n.project_id == project)
            .count(),
        "security_group_rule" => st
            .rules
            .values()
            .filter(|n| n.project_id == project)
            .count(),
        _ => 0,
    }
}

fn allowed(net: &Networking, caller: &Caller, project: &str) -> NetResult<()> {
    let ctx = caller.ctx(net)?;
    net.authz()
        .check(&ctx, "get_quota", &json!({"project_id": project}))
}

fn limits() -> Value {
    let m: Map<String, Value> = RESOURCES
        .iter()
        .map(|r| (r.to_string(), json!(-1)))
        .collect();
    json!({ "quota": m })
}

/// `GET /v2.0/quotas/{project}` and `.../default`: all unlimited.
pub async fn show_h(
    AxState(net): S,
    caller: Caller,
    Path(project): Path<String>,
) -> NetResult<Response> {
    allowed(&net, &caller, &project)?;
    Ok(Json(limits()).into_response())
}

/// `GET /v2.0/quotas/{project}/default`.
pub async fn default_h(
    AxState(net): S,
    caller: Caller,
    Path(project): Path<String>,
) -> NetResult<Response> {
    allowed(&net, &caller, &project)?;
    Ok(Json(limits()).into_response())
}

/// `GET /v2.0/quotas/{project}/details[.json]`: limits with usage.
pub async fn details_h(
    AxState(net): S,
    caller: Caller,
    Path(project): Path<String>,
) -> NetResult<Response> {
    allowed(&net, &caller, &project)?;
    let m: Map<String, Value> = net.read(|st| {
        RESOURCES
            .iter()
            .map(|r| {
                let v = json!({"limit": -1, "used": used(st, &project, r), "reserved": 0});
                (r.to_string(), v)
            })
            .collect()
    });
    Ok(Json(json!({ "quota": m })).into_response())
}

/// `PUT`/`DELETE /v2.0/quotas/{project}`: weft's networking has no quotas to set.
pub async fn update_h(
    AxState(net): S,
    caller: Caller,
    Path(project): Path<String>,
) -> NetResult<Response> {
    allowed(&net, &caller, &project)?;
    Err(NetError::bad(
        "HTTPBadRequest",
        "Networking quotas are not enforced by this cloud: every limit is unlimited (-1) and cannot be set",
    ))
}
