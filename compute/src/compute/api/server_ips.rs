//! `/v2.1/servers/{id}/ips[/{network_label}]`: a server's addresses by
//! network, as Nova's Servers IPs API shows them (address and IP version).

use super::{Caller, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::model::server::Server;
use crate::compute::servers;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

fn addrs(list: &[(String, u8, String)]) -> Value {
    list.iter()
        .map(|(addr, version, _)| json!({"addr": addr, "version": version}))
        .collect()
}

/// The server `ctx` may read under `rule` (a server of another project is
/// a 404, as everywhere).
fn readable(
    c: &crate::compute::Compute,
    caller: &Caller,
    id: &str,
    rule: &str,
) -> ComputeResult<Server> {
    let ctx = caller.ctx(c)?;
    c.read_env(|st, env| {
        let s = servers::get(st, &ctx, id)?;
        env.authz
            .check(&ctx, rule, &json!({"project_id": s.project_id}))?;
        Ok(s.clone())
    })
}

/// `GET /servers/{id}/ips`.
pub async fn index_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let s = readable(&c, &caller, &id, "os_compute_api:ips:index")?;
    let m: Map<String, Value> = s
        .addresses
        .iter()
        .map(|(net, list)| (net.clone(), addrs(list)))
        .collect();
    Ok(Json(json!({ "addresses": m })).into_response())
}

/// `GET /servers/{id}/ips/{network_label}`: 404 when the server has no
/// address on that network.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Path((id, label)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let s = readable(&c, &caller, &id, "os_compute_api:ips:show")?;
    let list = s.addresses.get(&label).ok_or_else(|| {
        ComputeError::NotFound("Instance is not a member of specified network".into())
    })?;
    let mut m = Map::new();
    m.insert(label, addrs(list));
    Ok(Json(Value::Object(m)).into_response())
}
