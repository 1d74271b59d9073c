//! The agents' side: the per-host long-poll, registration and port status reports.

use super::{blocking, Caller, S};
use crate::networking::error::{NetError, NetResult};
use crate::networking::query;
use crate::networking::service::{self, Ctx};
use crate::networking::{body, Networking};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::time::Duration;

fn agent_ctx(net: &Networking, caller: &Caller) -> NetResult<Ctx> {
    let c = caller.ctx(net)?;
    if !c.is_admin {
        return Err(NetError::Forbidden {
            message: "(rule:agent_sync) is disallowed by policy".into(),
        });
    }
    Ok(c)
}

/// The long-poll: a pure read. It registers nothing (see `agent_register_h`).
pub(super) async fn agent_state_h(
    State(net): S,
    caller: Caller,
    Path(host): Path<String>,
    RawQuery(q): RawQuery,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let mut since = 0u64;
    let mut timeout = 0u64;
    for (k, v) in query::parse_pairs(q.as_deref().unwrap_or("")) {
        match k.as_str() {
            "since" => {
                since = v
                    .parse()
                    .map_err(|_| NetError::invalid("since", format!("'{v}' is not a revision")))?
            }
            "timeout" => {
                timeout = v
                    .parse()
                    .map_err(|_| NetError::invalid("timeout", format!("'{v}' is not seconds")))?
            }
            _ => {}
        }
    }
    let st = net
        .wait_host_state(&host, since, Duration::from_secs(timeout.min(300)))
        .await;
    Ok(Json(st).into_response())
}

/// `PUT /agent/v1/hosts/{host}` `{"agent": {"tunnel_ip": "192.0.2.1" | null}}`:
/// the host's agent registers (at start, and whenever its tunnel endpoint
/// changes). A write only when the endpoint changed.
pub(super) async fn agent_register_h(
    State(net): S,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let req: body::AgentRegistration = body::parse(&body)?;
    let me = net.clone();
    let tunnel_ip = req.agent.tunnel_ip.clone();
    blocking(move || me.register_tunnel(&host, tunnel_ip.as_deref())).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"ports": {"<port id>": "ACTIVE", ...}}`
pub(super) async fn agent_status_h(
    State(net): S,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let req: body::StatusReport = body::parse(&body)?;
    let list: Vec<(String, String)> = req.ports.into_iter().collect();
    let me = net.clone();
    blocking(move || me.report_status(&host, &list)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn agent_port_status_h(
    State(net): S,
    caller: Caller,
    Path((host, id)): Path<(String, String)>,
    body: Bytes,
) -> NetResult<Response> {
    agent_ctx(&net, &caller)?;
    let req: body::PortStatus = body::parse(&body)?;
    net.write_async(move |st, env| {
        Ok((
            (),
            service::set_port_status(st, &env.now, &host, &id, &req.status)?,
        ))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
