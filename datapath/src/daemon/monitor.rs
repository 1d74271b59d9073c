//! The monitor thread: ages MACs and connections every second, and every [`PENDING_POLL`]
//! attaches `system` ports whose netdev appeared and reopens ports whose netdev vanished.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ports::{open_port, LivePort, PortTable};
use super::{now_ns, Shared, PENDING_POLL};
use crate::PortKind;

/// Needs the monitor: a pending netdev that appeared, or a dead one.
fn needs_attention(p: &LivePort, probe: &crate::io::NetdevProbe) -> bool {
    p.dead.load(Ordering::Acquire)
        || (p.io.is_none() && p.info.kind == PortKind::System && probe.exists(&p.info.name))
}

/// Runs until the switch stops (its `stop` flag), under the apply lock when it changes ports.
pub(super) fn monitor(shared: Arc<Shared>) {
    let mut last_age = now_ns();
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::sleep(PENDING_POLL);
        let now = now_ns();
        if now - last_age > 1_000_000_000 {
            shared.dp.age_macs(now);
            let mut ct = shared.dp.conntrack();
            ct.expire(now);
            // Refusals since the last line, once the flood that caused them has stopped too.
            crate::datapath::report_refusals(&mut ct, now);
            drop(ct);
            last_age = now;
        }
        let probe = match crate::io::NetdevProbe::new() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("pending-port monitor: {e}");
                continue;
            }
        };
        if !shared
            .ports
            .load()
            .iter()
            .any(|p| needs_attention(p, &probe))
        {
            continue;
        }
        let _g = shared.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let table = shared.ports.load();
        let mut changed = false;
        let mut next = Vec::new();
        for p in table.iter() {
            if !needs_attention(p, &probe) {
                next.push(p.clone());
                continue;
            }
            // Re-create a tap we own; attach (or leave pending) a system netdev.
            match open_port(&p.info, &shared.opts, Some(p)) {
                Ok(lp) => {
                    tracing::info!(port = %p.info.name, attached = lp.io.is_some(), "port (re)attached");
                    changed = true;
                    next.push(Arc::new(lp));
                }
                Err(e) => {
                    tracing::warn!(port = %p.info.name, "attach failed: {e}");
                    next.push(p.clone());
                }
            }
        }
        if changed {
            shared.publish(PortTable::from_ports(next));
        }
    }
}
