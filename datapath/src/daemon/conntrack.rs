//! The `conntrack` control command: lists the firewall's connections, filtered by port name
//! and zone (local VLAN), or flushes the ones the filter selects.

use super::control::error_reply;
use crate::Datapath;
use serde_json::{json, Value};

/// Answers `{"cmd":"conntrack", "port"?: NAME, "zone"?: N, "flush"?: bool}`.
pub(super) fn request(dp: &Datapath, req: &Value, now: u64) -> Value {
    let snap = dp.snapshot();
    let port = match req.get("port").and_then(Value::as_str) {
        None => None,
        Some(name) => match snap.port_by_name(name) {
            Some(p) => Some(p.no),
            None => return error_reply(&format!("no port named {name:?}")),
        },
    };
    let zone = match req.get("zone") {
        None | Some(Value::Null) => None,
        Some(z) => match z.as_u64().and_then(|z| u16::try_from(z).ok()) {
            Some(z) if z <= 4094 => Some(z),
            _ => return error_reply("zone must be a local VLAN, 0..=4094"),
        },
    };
    let flush = req.get("flush").and_then(Value::as_bool).unwrap_or(false);
    let selected = |c: &crate::secgroup::conntrack::Conn| {
        port.is_none_or(|p| c.key.port == p) && zone.is_none_or(|z| c.key.zone == z)
    };
    let mut ct = dp.conntrack();
    if flush {
        let n = ct.retain(|c| !selected(c));
        return json!({"ok": true, "flushed": n});
    }
    let entries: Vec<Value> = ct
        .entries()
        .iter()
        .filter(|c| selected(c))
        .map(|c| {
            let fw = snap.firewall(c.key.port);
            json!({
                "zone": c.key.zone,
                "port": crate::pipeline::port_name(&snap, c.key.port),
                "proto": c.key.proto,
                "origin": c.origin.to_string(),
                "responder": c.responder().to_string(),
                "direction": c.direction.name(),
                "state": c.state.name(),
                "rule": fw.map_or_else(|| c.rule.to_string(), |f| f.fw.rules.id(c.rule).to_string()),
                "expires_in_secs": c.expires.saturating_sub(now) / 1_000_000_000,
            })
        })
        .collect();
    let st = ct.stats();
    json!({
        "ok": true,
        "entries": entries,
        "count": ct.len(),
        "capacity": ct.capacity(),
        "created": st.created,
        "invalid": st.invalid,
        "refused_full": st.refused_full,
    })
}
