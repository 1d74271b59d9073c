//! The pipeline stages, as pure functions over a [`FlowKey`] (the decision-relevant headers of a
//! frame), the snapshot and the MAC table. Because the stages read only the key, caching the
//! result per key is exact: the flow cache cannot change a decision.
//!
//! The stages, in order, one module each, named after the Neutron OVS agent tables they replace
//! (so that operators recognise them in `weft trace`):
//!
//! | module              | Neutron table       | job                                                |
//! |---------------------|---------------------|----------------------------------------------------|
//! | [`classify`]        | br-int 0            | in_port / uplink segment -> local VLAN             |
//! | [`port_security`]   | 24, 25, 71 (part)   | arp_spoof, mac_spoof, ip_spoof + DHCP guard        |
//! | [`dhcp`]            | (the DHCP agent)    | DHCPv4 requests answered by the switch             |
//! | [`metadata`]        | (the metadata agent)| TCP to / ARP for 169.254.169.254, answered here    |
//! | firewall            | 71-73, 81-82        | security groups + conntrack ([`crate::secgroup`])  |
//! | [`forward`]         | 60, 94 NORMAL       | MAC learning per local VLAN, unicast / flood       |
//! | [`uplink`]          | br-phys 0/2, br-tun | local VLAN -> wire, as each output's egress edit   |
//!
//! The firewall stage is the one stage that is not a function of the key: connection tracking
//! reads each frame's TCP flags and sequence numbers and changes state. So [`decide`] only
//! records, in the cacheable [`Decision`], whether the frame touches a firewalled port (the
//! sending port, the unicast destination, or a member of the flooded VLAN): a fact of the key
//! and the snapshot. The worker then runs [`crate::secgroup`] per frame for those decisions
//! only: egress rules of the sending port, ingress rules of each destination. Ports without
//! security groups (and port_security = false) never reach it: their cached decisions keep the
//! one-push unicast path.
//!
//! Each stage returns `Err(DropReason)` (or a dropping [`Decision`]) to stop the frame; with a
//! [`Tracer`] that is `ON` it also says why, stage by stage, for `weft trace`.

pub(crate) use crate::flow_key::FlowKey;
use crate::mac_table::MacTable;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Stage};

/// Where a frame goes after the forward stage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fwd {
    /// One port.
    Unicast(Output),
    /// All members of `vlan` but the ingress port.
    Flood { vlan: u16, tagged_ingress: bool },
    /// Nowhere: the switch's DHCP server answers it ([`dhcp`]).
    Dhcp,
    /// Nowhere: the switch's metadata service answers it ([`metadata`]).
    Metadata,
}

/// A pipeline decision (cacheable).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Decision {
    pub drop: Option<DropReason>,
    pub fwd: Fwd,
    /// MAC table slot of the learned source (refresh it on cache hits).
    pub learn_slot: Option<u32>,
    /// The decision holds until this time (a learned destination may age out).
    pub valid_until: u64,
    /// The frame crosses a firewalled port: run the firewall stage per frame.
    pub firewall: bool,
    /// The local VLAN the frame was classified into (0: dropped before): the decision holds
    /// while that VLAN's members are unchanged ([`crate::snapshot::epochs`]).
    pub vlan: u16,
}

impl Decision {
    /// Placeholder for empty cache entries.
    pub const EMPTY: Decision = Decision {
        drop: Some(DropReason::UnknownPort),
        fwd: Fwd::Flood {
            vlan: 0,
            tagged_ingress: false,
        },
        learn_slot: None,
        valid_until: 0,
        firewall: false,
        vlan: 0,
    };

    pub(crate) fn drop(r: DropReason) -> Decision {
        Decision {
            drop: Some(r),
            fwd: Fwd::Flood {
                vlan: 0,
                tagged_ingress: false,
            },
            learn_slot: None,
            valid_until: u64::MAX,
            firewall: false,
            vlan: 0,
        }
    }
}

/// Receives each stage's decision text (for `trace`); the no-op version compiles away.
pub(crate) trait Tracer {
    const ON: bool;
    fn step(&mut self, stage: Stage, text: String);
}

pub(crate) struct NoTrace;
impl Tracer for NoTrace {
    const ON: bool = false;
    #[inline]
    fn step(&mut self, _: Stage, _: String) {}
}

/// One stage's decision, as `weft trace` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    /// Stage.
    pub stage: Stage,
    /// What it decided and why.
    pub decision: String,
}

impl std::fmt::Display for TraceStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<10} {}", self.stage.name(), self.decision)
    }
}

pub(crate) struct Recorder(pub Vec<TraceStep>);
impl Tracer for Recorder {
    const ON: bool = true;
    fn step(&mut self, stage: Stage, decision: String) {
        self.0.push(TraceStep { stage, decision });
    }
}

macro_rules! trace {
    ($t:expr, $stage:expr, $($arg:tt)*) => {
        if T::ON {
            $t.step($stage, format!($($arg)*));
        }
    };
}

pub(crate) mod classify;
pub(crate) mod dhcp;
pub(crate) mod firewall_trace;
pub(crate) mod forward;
pub(crate) mod metadata;
pub(crate) mod port_security;
pub(crate) mod uplink;

pub(crate) use uplink::expand;

/// Runs the stages for one key: classify, port security, (security groups: the next issue),
/// forward, and for traces the uplink translation. `learn` is false for trace (read-only).
#[inline]
pub(crate) fn decide<T: Tracer>(
    snap: &Snapshot,
    macs: &MacTable,
    k: &FlowKey,
    now: u64,
    learn: bool,
    t: &mut T,
) -> Decision {
    let ingress = match classify::classify(snap, k, t) {
        Ok(i) => i,
        Err(r) => return Decision::drop(r),
    };
    let vlan = ingress.vlan;
    if let Err(r) = port_security::port_security(snap, ingress.port, k, t) {
        return Decision {
            vlan,
            ..Decision::drop(r)
        };
    }
    // DHCP requests the switch answers go no further: the guest's DHCP is allowed whatever
    // its security groups say (as Neutron's implicit rules allow it), and never flooded.
    if let Some(d) = dhcp::dhcp(snap, ingress.port.no, k, t) {
        return Decision { vlan, ..d };
    }
    // So is the metadata service (Neutron's openvswitch firewall lets the metadata traffic
    // through whatever the groups say, too).
    if let Some(d) = metadata::metadata(snap, ingress.port.no, k, t) {
        return Decision { vlan, ..d };
    }
    // The firewall (Neutron tables 71-73 / 81-82) runs per frame after this decision, on the
    // frames it marks (see the module doc).
    let mut d = forward::forward(snap, macs, k, &ingress, now, learn, t);
    d.firewall = d.drop.is_none() && firewalled(snap, k.in_port(), d.fwd);
    if T::ON && d.drop.is_none() {
        uplink::trace_uplink(snap, ingress.vlan, k.in_port(), d.fwd, t);
    }
    d
}

/// A port's name for traces (its number if the snapshot does not know it).
pub(crate) fn port_name(snap: &Snapshot, p: PortNo) -> String {
    snap.port(p)
        .map(|i| i.name.clone())
        .unwrap_or_else(|| p.to_string())
}

#[cfg(test)]
pub(crate) mod fixture;

/// Whether a frame decided to go out of `fwd` from `in_port` needs the firewall stage.
#[inline]
pub(crate) fn firewalled(snap: &Snapshot, in_port: PortNo, fwd: Fwd) -> bool {
    snap.firewall(in_port).is_some()
        || match fwd {
            Fwd::Unicast(o) => snap.firewall(o.port).is_some(),
            Fwd::Flood { vlan, .. } => snap.vlan(vlan).is_some_and(|v| v.firewalled),
            // Answered by the switch itself, before the firewall (Neutron's implicit
            // rules let DHCP through; the metadata service is the switch's own).
            Fwd::Dhcp | Fwd::Metadata => false,
        }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use super::*;
    use crate::build::FrameBuilder;

    // The stages compose: a frame stopped by one stage never reaches the next.

    #[test]
    fn a_classify_drop_stops_before_port_security() {
        let s = snap();
        let macs = MacTable::new(64);
        let f = FrameBuilder::udp4(
            vm_mac(9),
            vm_mac(2),
            [1, 2, 3, 4].into(),
            [10, 0, 0, 2].into(),
            1,
            2,
        )
        .dot1q(100)
        .build();
        let mut r = Recorder(Vec::new());
        let d = decide(&s, &macs, &key(&s, "vm1", &f), 0, true, &mut r);
        assert_eq!(d.drop, Some(DropReason::TaggedOnVmPort));
        assert_eq!(stages(&r), [Stage::Classify]);
        assert_eq!(macs.len(), 0);
    }

    #[test]
    fn a_port_security_drop_never_teaches_the_mac_table() {
        let s = snap();
        let macs = MacTable::new(64);
        let f = FrameBuilder::udp4(
            vm_mac(9),
            vm_mac(2),
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            1,
            2,
        )
        .build();
        let mut r = Recorder(Vec::new());
        let d = decide(&s, &macs, &key(&s, "vm1", &f), 0, true, &mut r);
        assert_eq!(d.drop, Some(DropReason::MacSpoof));
        assert_eq!(
            stages(&r),
            [Stage::Classify, Stage::ArpSpoof, Stage::MacSpoof]
        );
        assert_eq!(macs.len(), 0);
    }

    #[test]
    fn an_allowed_frame_runs_every_stage_and_traces_the_uplink() {
        let s = snap();
        let macs = MacTable::new(64);
        let f = FrameBuilder::udp4(
            vm_mac(1),
            REMOTE,
            [10, 0, 0, 1].into(),
            [10, 0, 0, 9].into(),
            1,
            2,
        )
        .build();
        let mut r = Recorder(Vec::new());
        let d = decide(&s, &macs, &key(&s, "vm1", &f), 0, false, &mut r);
        assert_eq!(d.drop, None);
        assert_eq!(
            stages(&r),
            [
                Stage::Classify,
                Stage::ArpSpoof,
                Stage::MacSpoof,
                Stage::IpSpoof,
                Stage::Forward,
                Stage::Forward,
                Stage::Flood,
                Stage::Uplink
            ]
        );
        // Tracing and deciding agree.
        assert_eq!(
            d,
            decide(&s, &macs, &key(&s, "vm1", &f), 0, false, &mut NoTrace)
        );
    }
}
