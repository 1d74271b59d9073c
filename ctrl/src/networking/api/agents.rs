//! The handlers of Neutron's agents API; they only move data to and from the
//! pure functions in `networking::agents`.

use super::Caller;
use crate::networking::agents::{find, view, AgentUpdate};
use crate::networking::error::{NetError, NetResult};
use crate::networking::state::{Change, Kind};
use crate::networking::Networking;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    agent: AgentUpdate,
}

/// Only admins see and manage agents (Neutron's `get_agent`, `update_agent`,
/// `delete_agent` are admin_only).
fn admin(net: &Networking, caller: &Caller, action: &str) -> NetResult<()> {
    let c = caller.ctx(net)?;
    net.authz().check(&c, action, &json!({}))
}

type S = AxState<Arc<Networking>>;

/// A list, as Neutron filters every list by the show policy: a caller who may
/// not see agents gets none (an empty list, not a 403).
pub async fn list_h(AxState(net): S, caller: Caller, RawQuery(q): RawQuery) -> NetResult<Response> {
    match admin(&net, &caller, "get_agent") {
        Ok(()) => {}
        Err(NetError::Forbidden { .. }) => return Ok(Json(json!({ "agents": [] })).into_response()),
        Err(e) => return Err(e),
    }
    let now = crate::networking::now_string();
    let filters: Vec<(String, String)> =
        crate::networking::query::parse_pairs(q.as_deref().unwrap_or(""))
            .into_iter()
            .filter(|(k, _)| k != "fields")
            .collect();
    let agents: Vec<Value> = net.read(|st| {
        st.agents
            .values()
            .map(|a| view(a, &now))
            .filter(|v| {
                filters.iter().all(|(k, want)| match v.get(k) {
                    Some(Value::String(s)) => s == want,
                    Some(Value::Bool(b)) => b.to_string() == want.to_ascii_lowercase(),
                    Some(_) | None => false,
                })
            })
            .collect()
    });
    Ok(Json(json!({ "agents": agents })).into_response())
}

pub async fn show_h(
    AxState(net): S,
    caller: Caller,
    Path(id): Path<String>,
) -> NetResult<Response> {
    admin(&net, &caller, "get_agent")?;
    let now = crate::networking::now_string();
    let v = net.read(|st| find(st, &id).map(|a| view(a, &now)))?;
    Ok(Json(json!({ "agent": v })).into_response())
}

pub async fn update_h(
    AxState(net): S,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> NetResult<Response> {
    admin(&net, &caller, "update_agent")?;
    let b: UpdateBody = crate::networking::body::parse(&body)?;
    let upd = b.agent;
    let rec = net
        .write_async(move |st, _env| {
            let mut a = find(st, &id)?.clone();
            if let Some(up) = upd.admin_state_up {
                a.admin_state_up = up;
            }
            if let Some(d) = &upd.description {
                a.description = d.clone();
            }
            Ok((a.clone(), vec![Change::Agent(a)]))
        })
        .await?;
    let now = crate::networking::now_string();
    Ok(Json(json!({ "agent": view(&rec, &now) })).into_response())
}

pub async fn delete_h(
    AxState(net): S,
    caller: Caller,
    Path(id): Path<String>,
) -> NetResult<Response> {
    admin(&net, &caller, "delete_agent")?;
    net.write_async(move |st, _env| {
        let host = find(st, &id)?.id.clone();
        Ok(((), vec![Change::Delete(Kind::Agent, host)]))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
