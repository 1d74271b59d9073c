//! Neutron's agents API (`openstack network agent list/show/set/delete`):
//! one row per host whose datapath agent registered, `alive` while its
//! heartbeats keep coming. Pure functions over the state; the handlers at
//! the end only move data.

use super::api::Caller;
use super::error::{NetError, NetResult};
use super::model::AgentRecord;
use super::service::Env;
use super::state::{Change, Kind, State};
use super::Networking;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Neutron's `agent_down_time`: an agent silent this long is not alive.
pub const AGENT_DOWN_SECS: i64 = 75;

/// The registration/heartbeat of `host`'s agent at `env.now`.
pub fn heartbeat(st: &State, env: &mut Env, host: &str, tunnel_ip: Option<String>) -> Change {
    let rec = match st.agents.get(host) {
        Some(a) => AgentRecord {
            tunnel_ip,
            updated_at: env.now.clone(),
            heartbeat_at: env.now.clone(),
            agent_id: if a.agent_id.is_empty() {
                env.ids.uuid()
            } else {
                a.agent_id.clone()
            },
            ..a.clone()
        },
        None => AgentRecord {
            id: host.to_string(),
            tunnel_ip,
            updated_at: env.now.clone(),
            agent_id: env.ids.uuid(),
            heartbeat_at: env.now.clone(),
            created_at: env.now.clone(),
            admin_state_up: true,
            description: String::new(),
        },
    };
    Change::Agent(rec)
}

fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

/// Neutron's timestamp format for agents: `2026-12-04 23:10:00`.
fn neutron_time(s: &str) -> Value {
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => json!(t.format("%Y-%m-%d %H:%M:%S").to_string()),
        Err(_) => Value::Null,
    }
}

/// Whether the agent heartbeated within [`AGENT_DOWN_SECS`] of `now`.
pub fn alive(a: &AgentRecord, now: &str) -> bool {
    match (parse_time(&a.heartbeat_at), parse_time(now)) {
        (Some(h), Some(n)) => n - h <= AGENT_DOWN_SECS,
        _ => false,
    }
}

/// The agent as Neutron shows it.
pub fn view(a: &AgentRecord, now: &str) -> Value {
    let mut conf = json!({"bridge_mappings": {}, "tunnel_types": []});
    if let Some(ip) = &a.tunnel_ip {
        conf = json!({"bridge_mappings": {}, "tunnel_types": ["vxlan"], "tunneling_ip": ip});
    }
    json!({
        "id": a.agent_id,
        "agent_type": "Open vSwitch agent",
        "binary": "weft-agent",
        "host": a.id,
        "topic": "N/A",
        "alive": alive(a, now),
        "admin_state_up": a.admin_state_up,
        "heartbeat_timestamp": neutron_time(&a.heartbeat_at),
        "created_at": neutron_time(&a.created_at),
        "started_at": neutron_time(&a.created_at),
        "configurations": conf,
        "availability_zone": null,
        "description": a.description,
        "resources_synced": null,
    })
}

fn find<'a>(st: &'a State, id: &str) -> NetResult<&'a AgentRecord> {
    st.agents
        .values()
        .find(|a| a.agent_id == id)
        .ok_or_else(|| NetError::not_found("Agent", id))
}

/// `PUT /agents/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    pub admin_state_up: Option<bool>,
    pub description: Option<String>,
}

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
    let now = super::now_string();
    let filters: Vec<(String, String)> = super::query::parse_pairs(q.as_deref().unwrap_or(""))
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
    let now = super::now_string();
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
    let b: UpdateBody = super::body::parse(&body)?;
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
    let now = super::now_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(heartbeat: &str) -> AgentRecord {
        AgentRecord {
            id: "h1".into(),
            tunnel_ip: Some("192.0.2.1".into()),
            updated_at: heartbeat.into(),
            agent_id: "a1".into(),
            heartbeat_at: heartbeat.into(),
            created_at: heartbeat.into(),
            admin_state_up: true,
            description: String::new(),
        }
    }

    #[test]
    fn alive_while_heartbeats_are_recent() {
        let a = rec("2026-12-04T23:00:00Z");
        assert!(alive(&a, "2026-12-04T23:01:15Z"));
        assert!(!alive(&a, "2026-12-04T23:01:16Z"));
        assert!(!alive(&rec(""), "2026-12-04T23:01:16Z"));
        let v = view(&a, "2026-12-04T23:00:30Z");
        assert_eq!(v["alive"], true);
        assert_eq!(v["host"], "h1");
        assert_eq!(v["heartbeat_timestamp"], "2026-12-04 23:00:00");
        assert_eq!(v["configurations"]["tunneling_ip"], "192.0.2.1");
    }
}
