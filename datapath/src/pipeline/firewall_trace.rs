//! The firewall's part of `weft trace`: which rule admitted the frame, on which port and in
//! which direction, or why it was dropped; read-only (the connection table is probed, not
//! advanced).

use super::{port_name, TraceStep};
use crate::frame::FrameView;
use crate::secgroup::{probe, Allow, CompiledFirewall, ConnTable, Deny, Direction, Packet};
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Stage};

fn describe(fw: &CompiledFirewall, r: Result<Allow, Deny>) -> String {
    let id = |i: u32| fw.fw.rules.id(i).to_string();
    match r {
        Ok(Allow::Implicit(why)) => format!("allowed (implicit rule: {why})"),
        Ok(Allow::Rule(i)) if fw.fw.stateful => {
            format!("allowed by rule {} (new connection)", id(i))
        }
        Ok(Allow::Rule(i)) => format!("allowed by rule {} (stateless)", id(i)),
        Ok(Allow::Established { rule, reply }) => format!(
            "allowed: {} of a connection admitted by rule {}",
            if reply { "reply" } else { "packet" },
            id(rule)
        ),
        Ok(Allow::Related { rule }) => format!(
            "allowed: ICMP error related to a connection admitted by rule {}",
            id(rule)
        ),
        Err(Deny::NoRule) => "no rule admits it: drop (security_group)".into(),
        Err(Deny::Invalid) => "invalid in its connection's state: drop (conntrack_invalid)".into(),
        Err(Deny::TableFull) => "connection table full: drop (conntrack_full)".into(),
    }
}

/// Adds the firewall's steps for a frame from `in_port` going to `outs`; removes the outputs
/// whose ingress rules deny it. Returns the drop reason when nothing is left.
#[allow(clippy::too_many_arguments)]
pub(crate) fn trace(
    snap: &Snapshot,
    ct: &ConnTable,
    in_port: PortNo,
    frame: &[u8],
    view: &FrameView,
    now: u64,
    outs: &mut Vec<Output>,
    steps: &mut Vec<TraceStep>,
) -> Option<DropReason> {
    let Some(p) = Packet::parse(frame, view) else {
        steps.push(TraceStep {
            stage: Stage::Firewall,
            decision: "not IP: allowed (as Neutron's firewall lets ARP pass)".into(),
        });
        return None;
    };
    let zone = |no: PortNo| snap.port(no).map_or(0, |i| i.local_vlan);
    let mut step = |no: PortNo, dir: Direction, fw: &CompiledFirewall| {
        let r = probe(ct, &fw.fw, zone(no), no, dir, &p, now);
        steps.push(TraceStep {
            stage: Stage::Firewall,
            decision: format!("{dir} {}: {}", port_name(snap, no), describe(fw, r)),
        });
        r.err().map(crate::secgroup::drop_reason)
    };
    if let Some(fw) = snap.firewall(in_port) {
        if let Some(r) = step(in_port, Direction::Egress, fw) {
            outs.clear();
            return Some(r);
        }
    }
    let mut last = None;
    outs.retain(|o| match snap.firewall(o.port) {
        Some(fw) => match step(o.port, Direction::Ingress, fw) {
            Some(r) => {
                last = Some(r);
                false
            }
            None => true,
        },
        None => true,
    });
    if outs.is_empty() {
        last
    } else {
        None
    }
}
