//! The control socket's requests ([`super::control`]): `ports`, `macs`, `counters`,
//! `metrics`, `conntrack`, `apply`, `reload`, `trace`, answered by a [`SwitchHandle`] as JSON.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{conntrack, control, now_ns, ApplyReport, SwitchHandle};
use crate::{PortNo, SwitchConfig};

impl SwitchHandle {
    /// Answers one control-socket request (see [`control`]). `reload` is
    /// called for `{"cmd":"reload"}`; without it reload is refused.
    pub fn handle_request(
        &self,
        req: &Value,
        reload: Option<&dyn Fn() -> Result<ApplyReport, String>>,
    ) -> Value {
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
        match cmd {
            "ports" => json!({"ok": true, "ports": self.port_states()}),
            "macs" => json!({"ok": true, "macs": self.mac_table_json()}),
            "counters" => json!({"ok": true, "counters": self.counters_json()}),
            "metrics" => json!({"ok": true, "metrics": crate::metrics::render(&self.metrics())}),
            "conntrack" => conntrack::request(&self.shared.dp, req, now_ns()),
            "apply" => self.apply_request(req),
            "reload" => match reload {
                Some(f) => match f() {
                    Ok(r) => json!({"ok": true, "report": r}),
                    Err(e) => control::error_reply(&e),
                },
                None => control::error_reply("reload is not available on this switch"),
            },
            "trace" => {
                let desc = req.get("frame").and_then(Value::as_str).unwrap_or("");
                match self.trace_json(desc) {
                    Ok(v) => json!({"ok": true, "trace": v}),
                    Err(e) => control::error_reply(&e),
                }
            }
            other => control::error_reply(&format!(
                "unknown command {other:?} (ports, macs, counters, metrics, conntrack, reload, \
                 apply, trace, handover)"
            )),
        }
    }

    /// `{"cmd":"apply","config":{...}}`: a whole config from an agent in another process,
    /// validated like a file's, then applied as [`SwitchHandle::apply`] does.
    fn apply_request(&self, req: &Value) -> Value {
        let cfg = match serde_json::from_value::<SwitchConfig>(req["config"].clone()) {
            Ok(c) => c,
            Err(e) => return control::error_reply(&format!("apply: bad config: {e}")),
        };
        let cfg = match cfg.validated("apply request") {
            Ok(c) => c,
            Err(e) => return control::error_reply(&e.to_string()),
        };
        match self.apply(cfg) {
            Ok(r) => json!({"ok": true, "report": r}),
            Err(e) => control::error_reply(&e.to_string()),
        }
    }

    /// [`SwitchHandle::serve_control`] for a standalone `weft switch`: also answers
    /// `{"cmd":"handover"}` (a new process takes the ports over, see [`super::handover`]), and serves
    /// `listener` when given (the one a previous process handed over) instead of binding.
    pub fn serve_control_upgradable(
        self: &Arc<Self>,
        path: &std::path::Path,
        listener: Option<std::os::unix::net::UnixListener>,
        reload: Option<Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync>>,
    ) -> std::io::Result<control::ControlServer> {
        let handler = self.control_handler(reload);
        let me = Arc::downgrade(self);
        let hook: Arc<control::HandoverHook> = Arc::new(
            move |rd: &mut dyn std::io::BufRead,
                  stream: &std::os::unix::net::UnixStream,
                  lfd: std::os::fd::RawFd| {
                me.upgrade().is_some_and(|h| h.hand_over(rd, stream, lfd))
            },
        );
        match listener {
            Some(l) => control::ControlServer::serve(l, path, handler, Some(hook)),
            None => control::ControlServer::bind_with(path, handler, Some(hook)),
        }
    }

    /// The control server's handler: holds the switch weakly, so that a server outliving the
    /// switch answers "shutting down" instead of keeping it alive.
    fn control_handler(
        self: &Arc<Self>,
        reload: Option<Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync>>,
    ) -> Arc<control::Handler> {
        let me = Arc::downgrade(self);
        Arc::new(move |req: &Value| match me.upgrade() {
            Some(h) => h.handle_request(
                req,
                reload
                    .as_deref()
                    .map(|f| f as &dyn Fn() -> Result<ApplyReport, String>),
            ),
            None => control::error_reply("switch is shutting down"),
        })
    }

    /// Serves the control socket at `path` (e.g. the config's
    /// `switch.control_socket`) until the returned server is dropped.
    pub fn serve_control(
        self: &Arc<Self>,
        path: &std::path::Path,
        reload: Option<Arc<dyn Fn() -> Result<ApplyReport, String> + Send + Sync>>,
    ) -> std::io::Result<control::ControlServer> {
        control::ControlServer::bind(path, self.control_handler(reload))
    }
    /// `weft ctl macs`: port names instead of numbers, ages in seconds.
    fn mac_table_json(&self) -> Value {
        let snap = self.shared.dp.snapshot();
        let rows: Vec<Value> = self
            .mac_table()
            .into_iter()
            .map(|e| {
                let port = snap
                    .port(e.port)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| e.port.to_string());
                json!({
                    "vlan": e.vlan,
                    "mac": e.mac.to_string(),
                    "port": port,
                    "age_secs": e.age_ns / 1_000_000_000,
                    "static": e.is_static,
                })
            })
            .collect();
        Value::Array(rows)
    }

    /// `weft ctl counters`: per port (with the drops a port counts itself), per drop reason,
    /// per stage, and how the workers waited.
    fn counters_json(&self) -> Value {
        let c = self.shared.dp.counters();
        let states = self.port_states();
        let table = self.shared.ports.load();
        let ports: Vec<Value> = states
            .iter()
            .map(|s| {
                let pc = c.port(PortNo(s.no));
                let mut drops: serde_json::Map<String, Value> = crate::DropReason::ALL
                    .iter()
                    .filter_map(|&r| {
                        let n = pc.map(|p| p.drop_count(r)).unwrap_or(0);
                        (n > 0).then(|| (r.name().to_string(), json!(n)))
                    })
                    .collect();
                // Drops a port counts itself: the tunnel endpoint's refused datagrams
                // (unknown VNI, bad flags...).
                if let Some(io) = table.get(PortNo(s.no)).and_then(|p| p.io.as_deref()) {
                    for (r, n) in io.drop_counts() {
                        drops.insert(r.to_string(), json!(n));
                    }
                }
                json!({
                    "name": s.name,
                    "rx": s.rx_frames,
                    "tx": s.tx_frames,
                    "rx_bytes": s.rx_bytes,
                    "tx_bytes": s.tx_bytes,
                    "rx_errors": s.rx_errors,
                    "rx_ring_drops": s.rx_ring_drops,
                    "tx_dropped": s.tx_dropped,
                    "drops": drops,
                })
            })
            .collect();
        let reasons: serde_json::Map<String, Value> = crate::DropReason::ALL
            .iter()
            .map(|&r| (r.name().to_string(), json!(c.drops(r))))
            .collect();
        let stages: Vec<Value> = c
            .stages()
            .iter()
            .map(|s| json!({"stage": s.stage.name(), "entered": s.entered, "dropped": s.dropped}))
            .collect();
        json!({
            "processed": c.processed,
            "flow_cache_hits": c.flow_cache_hits,
            "flow_cache_misses": c.flow_cache_misses,
            "ports": ports,
            "drop_reasons": reasons,
            "stages": stages,
            "poll": self.poll_counts(),
        })
    }

    /// `weft trace`: the steps as `{stage, decision}` objects.
    fn trace_json(&self, desc: &str) -> Result<Value, String> {
        let steps = self.trace(desc)?;
        Ok(Value::Array(
            steps
                .iter()
                .map(|s| json!({"stage": s.stage.name(), "decision": s.decision}))
                .collect(),
        ))
    }
}
