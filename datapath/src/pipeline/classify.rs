//! Stage `classify` (br-int table 0): which local VLAN a frame belongs to.
//!
//! - VM port: the port's network's local VLAN; a VM may not send tagged frames.
//! - Uplink: untagged (or priority-tagged, VID 0) -> the physnet's flat network; 802.1Q VID ->
//!   the vlan network with that segmentation_id; VLAN 4095 (reserved), other TPIDs, inner tags
//!   and unknown segments are dropped.
//! - Any port: a group (multicast) source MAC is dropped.

use super::{FlowKey, Tracer};
use crate::frame::TPID_8021Q;
use crate::snapshot::{PortInfo, PortRole, Snapshot, UplinkRt};
use crate::verdict::{DropReason, Stage};

/// A classified frame: its ingress port and local VLAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ingress<'s> {
    /// The ingress port.
    pub port: &'s PortInfo,
    /// Local VLAN the frame now belongs to.
    pub vlan: u16,
    /// The frame came in tagged (from a VLAN uplink): egress edits depend on it.
    pub tagged: bool,
}

/// Classifies the frame of `k`, or says why it is dropped.
#[inline]
pub(crate) fn classify<'s, T: Tracer>(
    snap: &'s Snapshot,
    k: &FlowKey,
    t: &mut T,
) -> Result<Ingress<'s>, DropReason> {
    let in_port = k.in_port();
    let Some(port) = snap.port(in_port) else {
        trace!(
            t,
            Stage::Classify,
            "in_port {} is not a port of this switch: drop",
            k.in_port()
        );
        return Err(DropReason::UnknownPort);
    };
    let src = k.src();
    if src.is_multicast() {
        trace!(t, Stage::Classify, "source {src} is a group address: drop");
        return Err(DropReason::MulticastSource);
    }
    let (vlan, tagged) = match port.role {
        PortRole::Vm => (vm_port(port, k, t)?, false),
        PortRole::Uplink => {
            let Some(up) = snap.uplink(in_port) else {
                return Err(DropReason::UnknownSegment);
            };
            if k.tag_count() == 0 {
                (untagged_uplink(port, up, t)?, false)
            } else {
                (tagged_uplink(port, up, k, t)?, true)
            }
        }
    };
    Ok(Ingress { port, vlan, tagged })
}

/// A VM port: untagged frames only, into the port's network's local VLAN.
#[inline]
fn vm_port<T: Tracer>(port: &PortInfo, k: &FlowKey, t: &mut T) -> Result<u16, DropReason> {
    if k.tag_count() > 0 {
        trace!(
            t,
            Stage::Classify,
            "{} is a VM port and the frame carries {} VLAN tag(s) (outer vid {}): drop",
            port.name,
            k.tag_count(),
            k.outer_vid()
        );
        return Err(DropReason::TaggedOnVmPort);
    }
    trace!(
        t,
        Stage::Classify,
        "in_port {} ({}) -> network {:?}, local VLAN {}",
        port.name,
        k.in_port(),
        port.network.as_deref().unwrap_or(""),
        port.local_vlan
    );
    Ok(port.local_vlan)
}

/// An untagged frame from an uplink: the physnet's flat network, if it has one.
#[inline]
fn untagged_uplink<T: Tracer>(
    port: &PortInfo,
    up: &UplinkRt,
    t: &mut T,
) -> Result<u16, DropReason> {
    match up.flat_vlan {
        Some(v) => {
            trace!(
                t,
                Stage::Classify,
                "uplink {}: untagged -> flat network, local VLAN {v}",
                port.name
            );
            Ok(v)
        }
        None => {
            trace!(
                t,
                Stage::Classify,
                "uplink {}: untagged and physnet {:?} has no flat network: drop",
                port.name,
                port.physnet.as_deref().unwrap_or("")
            );
            Err(DropReason::UnknownSegment)
        }
    }
}

/// A tagged frame from an uplink: global VID -> local VLAN (VID 0: the flat network).
#[inline]
fn tagged_uplink<T: Tracer>(
    port: &PortInfo,
    up: &UplinkRt,
    k: &FlowKey,
    t: &mut T,
) -> Result<u16, DropReason> {
    let vid = k.outer_vid();
    if vid == 4095 {
        trace!(
            t,
            Stage::Classify,
            "uplink {}: VLAN 4095 is reserved: drop",
            port.name
        );
        return Err(DropReason::ReservedVlan);
    }
    if k.outer_tpid() != TPID_8021Q {
        trace!(
            t,
            Stage::Classify,
            "uplink {}: outer TPID {:#06x} is not 802.1Q: drop",
            port.name,
            k.outer_tpid()
        );
        return Err(DropReason::UnknownSegment);
    }
    if k.tag_count() > 1 {
        trace!(
            t,
            Stage::Classify,
            "uplink {}: VLAN {vid} carries an inner tag: drop",
            port.name
        );
        return Err(DropReason::DoubleTagged);
    }
    let local = if vid == 0 {
        up.flat_vlan // priority-tagged: the untagged (flat) segment
    } else {
        up.segments.get(&vid).copied()
    };
    match local {
        Some(v) => {
            trace!(
                t,
                Stage::Classify,
                "uplink {}: global VLAN {vid} -> local VLAN {v}",
                port.name
            );
            Ok(v)
        }
        None => {
            trace!(
                t,
                Stage::Classify,
                "uplink {}: no network for VLAN {vid} on physnet {:?}: drop",
                port.name,
                port.physnet.as_deref().unwrap_or("")
            );
            Err(DropReason::UnknownSegment)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use crate::frame::TPID_8021AD;
    use crate::mac::MacAddr;
    use crate::pipeline::fixture::*;
    use crate::pipeline::{NoTrace, Recorder};
    use crate::verdict::PortNo;

    fn bcast(src: MacAddr) -> FrameBuilder {
        FrameBuilder::udp4(
            src,
            MacAddr::BROADCAST,
            [10, 0, 0, 50].into(),
            [10, 0, 0, 255].into(),
            1,
            2,
        )
    }

    fn run(s: &Snapshot, port: &str, f: &FrameBuilder) -> Result<(String, u16, bool), DropReason> {
        classify(s, &key(s, port, &f.build()), &mut NoTrace)
            .map(|i| (i.port.name.clone(), i.vlan, i.tagged))
    }

    fn local_vlan(s: &Snapshot, net: &str) -> u16 {
        s.network(net).expect("network").local_vlan
    }

    #[test]
    fn a_vm_port_puts_frames_in_its_networks_local_vlan() {
        let s = snap();
        let v = local_vlan(&s, "net100");
        assert_eq!(
            run(&s, "vm1", &bcast(vm_mac(1))),
            Ok(("vm1".into(), v, false))
        );
        // Classify does not check addresses: that is port security's job.
        assert_eq!(
            run(&s, "vm1", &bcast(vm_mac(9))),
            Ok(("vm1".into(), v, false))
        );
        assert_eq!(
            run(&s, "solo", &bcast(vm_mac(5))),
            Ok(("solo".into(), local_vlan(&s, "local"), false))
        );
    }

    #[test]
    fn a_vm_port_drops_tagged_frames_even_vlan_4095() {
        let s = snap();
        for vid in [0, 100, 4095] {
            assert_eq!(
                run(&s, "vm1", &bcast(vm_mac(1)).dot1q(vid)),
                Err(DropReason::TaggedOnVmPort)
            );
        }
        assert_eq!(
            run(&s, "open1", &bcast(vm_mac(7)).dot1q(100)),
            Err(DropReason::TaggedOnVmPort)
        );
    }

    #[test]
    fn group_source_macs_and_unknown_ports_are_dropped() {
        let s = snap();
        assert_eq!(
            run(&s, "vm1", &bcast(MacAddr([0x01, 0, 0x5e, 0, 0, 1]))),
            Err(DropReason::MulticastSource)
        );
        assert_eq!(
            run(&s, "eth1", &bcast(MacAddr::BROADCAST)),
            Err(DropReason::MulticastSource)
        );
        let f = bcast(vm_mac(1)).build();
        let k = FlowKey::extract(PortNo(999), &f).expect("parses");
        assert_eq!(
            classify(&s, &k, &mut NoTrace).map(|i| i.vlan),
            Err(DropReason::UnknownPort)
        );
    }

    #[test]
    fn uplink_segments_map_to_local_vlans() {
        let s = snap();
        let (v100, flat) = (local_vlan(&s, "net100"), local_vlan(&s, "flat"));
        assert_ne!(v100, flat);
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE).dot1q(100)),
            Ok(("eth1".into(), v100, true))
        );
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE)),
            Ok(("eth1".into(), flat, false))
        );
        // Priority-tagged: the flat segment, but it came in tagged.
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE).dot1q(0)),
            Ok(("eth1".into(), flat, true))
        );
    }

    #[test]
    fn uplink_drops_reserved_unknown_foreign_and_double_tags() {
        let s = snap();
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE).dot1q(4095)),
            Err(DropReason::ReservedVlan)
        );
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE).dot1q(300)),
            Err(DropReason::UnknownSegment)
        );
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE).vlan(TPID_8021AD, 100)),
            Err(DropReason::UnknownSegment)
        );
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE).dot1q(100).dot1q(200)),
            Err(DropReason::DoubleTagged)
        );
    }

    #[test]
    fn an_uplink_without_a_flat_network_drops_untagged_frames() {
        let cfg = crate::SwitchConfig::from_toml(
            "[[physnet]]\nname = \"p\"\ninterface = \"eth1\"\n[[network]]\nname = \"n\"\ntype = \"vlan\"\nphysnet = \"p\"\nsegmentation_id = 7\n",
            "t.toml",
        )
        .expect("config");
        let s = Snapshot::compile(&cfg, None).expect("snapshot");
        assert_eq!(
            run(&s, "eth1", &bcast(REMOTE)),
            Err(DropReason::UnknownSegment)
        );
        assert!(run(&s, "eth1", &bcast(REMOTE).dot1q(7)).is_ok());
    }

    #[test]
    fn trace_says_why_in_one_classify_step() {
        let s = snap();
        let mut r = Recorder(Vec::new());
        let f = bcast(REMOTE).dot1q(4095).build();
        assert!(classify(&s, &key(&s, "eth1", &f), &mut r).is_err());
        assert_eq!(r.0.len(), 1);
        assert_eq!(r.0[0].stage, Stage::Classify);
        assert_eq!(r.0[0].decision, "uplink eth1: VLAN 4095 is reserved: drop");
    }
}
