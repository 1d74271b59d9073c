//! Neutron's agents API (`openstack network agent list/show/set/delete`):
//! one row per host whose datapath agent registered, `alive` while its
//! heartbeats keep coming. Pure functions over the state; the HTTP handlers
//! are in `api::agents`.

use super::error::{NetError, NetResult};
use super::model::AgentRecord;
use super::service::Env;
use super::state::{Change, State};
use serde::Deserialize;
use serde_json::{json, Value};

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

pub(crate) fn find<'a>(st: &'a State, id: &str) -> NetResult<&'a AgentRecord> {
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
