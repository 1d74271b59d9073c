//! Stage `forward` (Neutron tables 60 and 94, action NORMAL): learn the source MAC per local
//! VLAN, look the destination up, and send to that one port, or flood within the local VLAN
//! (never back out of the ingress port).

use super::classify::Ingress;
use super::{port_name, Decision, FlowKey, Fwd, Tracer};
use crate::mac_table::MacTable;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Stage};

/// Learns the source, then forwards to the destination's port or floods the local VLAN.
/// `learn` is false for trace (read-only: the table is not written).
#[inline]
pub(crate) fn forward<T: Tracer>(
    snap: &Snapshot,
    macs: &MacTable,
    k: &FlowKey,
    ingress: &Ingress<'_>,
    now: u64,
    learn: bool,
    t: &mut T,
) -> Decision {
    let in_port = k.in_port();
    let vlan = ingress.vlan;
    let learn_slot = learn_source(snap, macs, k, vlan, now, learn, t);
    let (fwd, valid_until) = match lookup(snap, macs, k, ingress, now, t) {
        Ok(found) => found,
        Err(r) => {
            return Decision {
                learn_slot,
                vlan,
                ..Decision::drop(r)
            }
        }
    };
    if let Fwd::Flood { .. } = fwd {
        if let Err(r) = flood(snap, vlan, in_port, t) {
            return Decision {
                learn_slot,
                vlan,
                ..Decision::drop(r)
            };
        }
    }
    Decision {
        drop: None,
        fwd,
        learn_slot,
        valid_until,
        firewall: false,
        vlan,
    }
}

/// Learns the source MAC on the ingress port (not a configured port MAC: those are static).
/// Returns the MAC table slot to refresh on flow cache hits.
#[inline]
fn learn_source<T: Tracer>(
    snap: &Snapshot,
    macs: &MacTable,
    k: &FlowKey,
    vlan: u16,
    now: u64,
    learn: bool,
    t: &mut T,
) -> Option<u32> {
    let src = k.src();
    let in_port = k.in_port();
    if snap.static_mac(vlan, src).is_some() {
        trace!(
            t,
            Stage::Forward,
            "source {src} is a configured port MAC (static)"
        );
        None
    } else if learn {
        macs.learn(vlan, src, in_port, now)
    } else {
        if T::ON {
            t.step(
                Stage::Forward,
                format!("learn {src} on local VLAN {vlan} port {in_port}"),
            );
        }
        None
    }
}

/// Where the destination MAC is: one port (with the time the answer holds until), or flood.
/// A destination on the ingress port is a hairpin drop.
#[inline]
fn lookup<T: Tracer>(
    snap: &Snapshot,
    macs: &MacTable,
    k: &FlowKey,
    ingress: &Ingress<'_>,
    now: u64,
    t: &mut T,
) -> Result<(Fwd, u64), DropReason> {
    let in_port = k.in_port();
    let vlan = ingress.vlan;
    let flood = Fwd::Flood {
        vlan,
        tagged_ingress: ingress.tagged,
    };
    let dst = k.dst();
    if dst.is_multicast() {
        trace!(
            t,
            Stage::Forward,
            "destination {dst} is broadcast/multicast: flood"
        );
        return Ok((flood, u64::MAX));
    }
    let aging = snap.mac_aging_ns();
    let found = match snap.static_mac(vlan, dst) {
        Some(p) => Some((p, u64::MAX)),
        None => macs
            .lookup(vlan, dst, now, aging)
            .map(|f| (f.port, f.last_seen.saturating_add(aging))),
    };
    match found {
        Some((p, _)) if p == in_port => {
            trace!(
                t,
                Stage::Forward,
                "destination {dst} is on the ingress port: drop"
            );
            Err(DropReason::Hairpin)
        }
        Some((p, until)) => match snap.member(vlan, p) {
            Some(m) => {
                trace!(
                    t,
                    Stage::Forward,
                    "destination {dst} learned on port {} in local VLAN {vlan}: unicast",
                    port_name(snap, p)
                );
                let out = Output {
                    port: p,
                    edit: m.edit(ingress.tagged),
                };
                Ok((Fwd::Unicast(out), until))
            }
            None => {
                trace!(t, Stage::Forward, "destination {dst}: stale entry, flood");
                Ok((flood, u64::MAX))
            }
        },
        None => {
            trace!(
                t,
                Stage::Forward,
                "destination {dst} unknown in local VLAN {vlan}: flood"
            );
            Ok((flood, u64::MAX))
        }
    }
}

/// Flood within the local VLAN: there must be another member than the ingress port.
#[inline]
fn flood<T: Tracer>(
    snap: &Snapshot,
    vlan: u16,
    in_port: PortNo,
    t: &mut T,
) -> Result<(), DropReason> {
    let members = snap.vlan(vlan).map(|v| v.members.as_slice()).unwrap_or(&[]);
    let n = members.iter().filter(|m| m.port != in_port).count();
    if n == 0 {
        trace!(t, Stage::Flood, "no other port in local VLAN {vlan}: drop");
        return Err(DropReason::NoDestination);
    }
    if T::ON {
        let names: Vec<String> = members
            .iter()
            .filter(|m| m.port != in_port)
            .map(|m| port_name(snap, m.port))
            .collect();
        t.step(
            Stage::Flood,
            format!(
                "local VLAN {vlan}: to {} (not the ingress port)",
                names.join(", ")
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use crate::mac::MacAddr;
    use crate::pipeline::classify::classify;
    use crate::pipeline::fixture::*;
    use crate::pipeline::{NoTrace, Recorder};
    use crate::verdict::EgressEdit;

    const SEC: u64 = 1_000_000_000;

    fn frame(src: MacAddr, dst: MacAddr) -> FrameBuilder {
        FrameBuilder::udp4(src, dst, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2)
    }

    /// Classify, then forward (port security is not this stage's business).
    fn run(
        s: &Snapshot,
        macs: &MacTable,
        port: &str,
        f: &FrameBuilder,
        now: u64,
        learn: bool,
    ) -> Decision {
        let k = key(s, port, &f.build());
        let ingress = classify(s, &k, &mut NoTrace).expect("classified");
        forward(s, macs, &k, &ingress, now, learn, &mut NoTrace)
    }

    #[test]
    fn unknown_destinations_flood_and_the_source_is_learned() {
        let s = snap();
        let macs = MacTable::new(64);
        let vlan = s.network("net100").expect("net").local_vlan;
        let d = run(
            &s,
            &macs,
            "eth1",
            &frame(REMOTE, vm_mac(0x77)).dot1q(100),
            5,
            true,
        );
        assert_eq!(d.drop, None);
        assert_eq!(
            d.fwd,
            Fwd::Flood {
                vlan,
                tagged_ingress: true
            }
        );
        assert_eq!(d.valid_until, u64::MAX);
        assert!(d.learn_slot.is_some());
        assert_eq!(macs.len(), 1);
        // The answer: unicast to the uplink, valid until the entry ages out.
        let d = run(&s, &macs, "vm1", &frame(vm_mac(1), REMOTE), 6 * SEC, true);
        let uplink = port(&s, "eth1");
        assert_eq!(
            d.fwd,
            Fwd::Unicast(Output {
                port: uplink,
                edit: EgressEdit::PushTag(100)
            })
        );
        assert_eq!(d.valid_until, 5 + 300 * SEC);
        // Configured port MACs are static: never learned, never age.
        assert_eq!(d.learn_slot, None);
    }

    #[test]
    fn configured_port_macs_forward_without_learning() {
        let s = snap();
        let macs = MacTable::new(64);
        let d = run(&s, &macs, "vm1", &frame(vm_mac(1), vm_mac(2)), 0, true);
        assert_eq!(
            d.fwd,
            Fwd::Unicast(Output {
                port: port(&s, "vm2"),
                edit: EgressEdit::Keep
            })
        );
        assert_eq!((d.learn_slot, d.valid_until), (None, u64::MAX));
        assert_eq!(macs.len(), 0);
        // A MAC of another network is not known in this one.
        let d = run(&s, &macs, "vm1", &frame(vm_mac(1), vm_mac(4)), 0, true);
        assert!(matches!(d.fwd, Fwd::Flood { .. }));
    }

    #[test]
    fn a_destination_on_the_ingress_port_is_a_hairpin_drop() {
        let s = snap();
        let macs = MacTable::new(64);
        let other = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
        run(
            &s,
            &macs,
            "eth1",
            &frame(other, MacAddr::BROADCAST).dot1q(100),
            0,
            true,
        );
        let d = run(&s, &macs, "eth1", &frame(REMOTE, other).dot1q(100), 1, true);
        assert_eq!(d.drop, Some(DropReason::Hairpin));
        // The source was still learned (and is refreshed on cache hits).
        assert!(d.learn_slot.is_some());
        assert_eq!(macs.len(), 2);
    }

    #[test]
    fn a_flood_with_no_other_member_is_dropped() {
        let s = snap();
        let macs = MacTable::new(64);
        let d = run(
            &s,
            &macs,
            "solo",
            &frame(vm_mac(5), MacAddr::BROADCAST),
            0,
            true,
        );
        assert_eq!(d.drop, Some(DropReason::NoDestination));
    }

    #[test]
    fn trace_does_not_learn() {
        let s = snap();
        let macs = MacTable::new(64);
        let f = frame(REMOTE, MacAddr::BROADCAST).dot1q(100).build();
        let k = key(&s, "eth1", &f);
        let ingress = classify(&s, &k, &mut NoTrace).expect("classified");
        let mut r = Recorder(Vec::new());
        let d = forward(&s, &macs, &k, &ingress, 0, false, &mut r);
        assert_eq!((d.drop, d.learn_slot), (None, None));
        assert_eq!(macs.len(), 0);
        assert_eq!(stages(&r), [Stage::Forward, Stage::Forward, Stage::Flood]);
        assert_eq!(
            r.0[2].decision,
            format!(
                "local VLAN {}: to vm1, vm2, open1 (not the ingress port)",
                ingress.vlan
            )
        );
    }
}
