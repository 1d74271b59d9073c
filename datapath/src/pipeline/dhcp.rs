//! The DHCP stage (what Neutron's DHCP agent does from a namespace, done in the switch): an
//! IPv4 UDP 68 -> 67 frame from a VM port that has DHCP data ([`Snapshot::dhcp`]) stops here
//! as [`Fwd::Dhcp`]; the I/O shell gets the reply from [`crate::Worker::answer_dhcp`] and
//! sends it back out of the same port. Decided on the flow key alone (in_port, IPv4, UDP,
//! ports), so the flow cache holds it like any other decision.

use super::{Decision, FlowKey, Fwd, Tracer};
use crate::flow_key::{DHCP_CLIENT, DHCP_SERVER, L3_V4, L4_UDP};
use crate::snapshot::Snapshot;
use crate::verdict::{PortNo, Stage};

/// `Some(decision)` when the switch answers this frame itself; None: on to the next stage.
#[inline]
pub(crate) fn dhcp<T: Tracer>(
    snap: &Snapshot,
    port: PortNo,
    k: &FlowKey,
    t: &mut T,
) -> Option<Decision> {
    if k.l3_kind() != L3_V4
        || k.l4_kind() != L4_UDP
        || k.sport() != DHCP_CLIENT
        || k.dport() != DHCP_SERVER
    {
        return None;
    }
    let d = snap.dhcp(port)?;
    trace!(
        t,
        Stage::Forward,
        "DHCP request: answered by the switch's DHCP server (server {}, address {}), not forwarded",
        d.server,
        d.address
    );
    Some(Decision {
        drop: None,
        fwd: Fwd::Dhcp,
        learn_slot: None,
        valid_until: u64::MAX,
        firewall: false,
        vlan: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{key, vm_mac, HOST};
    use super::super::{decide, NoTrace, Recorder};
    use super::*;
    use crate::build::FrameBuilder;
    use crate::mac::MacAddr;
    use crate::mac_table::MacTable;
    use crate::verdict::DropReason;
    use crate::SwitchConfig;

    fn snap_with_dhcp(enable: bool) -> Snapshot {
        let cfg = format!(
            "{HOST}\n[[subnet]]\nnetwork = \"net100\"\ncidr = \"10.0.0.0/24\"\ngateway_ip = \"10.0.0.254\"\nenable_dhcp = {enable}\n"
        );
        Snapshot::compile(&SwitchConfig::from_toml(&cfg, "t.toml").unwrap(), None).unwrap()
    }

    fn request(src_mac: MacAddr, sport: u16, dport: u16) -> Vec<u8> {
        FrameBuilder::udp4(
            src_mac,
            MacAddr::BROADCAST,
            [0, 0, 0, 0].into(),
            [255, 255, 255, 255].into(),
            sport,
            dport,
        )
        .build()
    }

    #[test]
    fn a_request_on_a_dhcp_subnet_is_answered_not_flooded() {
        let s = snap_with_dhcp(true);
        let macs = MacTable::new(64);
        let k = key(&s, "vm1", &request(vm_mac(1), 68, 67));
        let mut r = Recorder(Vec::new());
        let d = decide(&s, &macs, &k, 0, true, &mut r);
        assert_eq!((d.drop, d.fwd), (None, Fwd::Dhcp));
        assert!(r
            .0
            .last()
            .unwrap()
            .decision
            .contains("answered by the switch"));
        assert_eq!(macs.len(), 0, "an answered request teaches nothing");
        // A port with port security off is answered too (its fixed IP is still its).
        let open = s.port_by_name("open1").unwrap().no;
        assert!(
            s.dhcp(open).is_none(),
            "open1 has no fixed IP: nothing to hand out"
        );
    }

    #[test]
    fn without_a_dhcp_subnet_the_request_floods_as_before() {
        for s in [snap_with_dhcp(false), super::super::fixture::snap()] {
            let macs = MacTable::new(64);
            let k = key(&s, "vm1", &request(vm_mac(1), 68, 67));
            let d = decide(&s, &macs, &k, 0, true, &mut NoTrace);
            assert!(matches!(d.fwd, Fwd::Flood { .. }), "{d:?}");
        }
    }

    #[test]
    fn other_udp_and_spoofed_requests_are_not_answered() {
        let s = snap_with_dhcp(true);
        let macs = MacTable::new(64);
        let d = decide(
            &s,
            &macs,
            &key(&s, "vm1", &request(vm_mac(1), 1000, 67)),
            0,
            true,
            &mut NoTrace,
        );
        assert_ne!(d.fwd, Fwd::Dhcp);
        // Port security runs first: a request from a MAC that is not the port's is dropped.
        let d = decide(
            &s,
            &macs,
            &key(&s, "vm1", &request(vm_mac(9), 68, 67)),
            0,
            true,
            &mut NoTrace,
        );
        assert_eq!(d.drop, Some(DropReason::MacSpoof));
        // The DHCP guard still holds: a guest's server reply is dropped, not answered.
        let d = decide(
            &s,
            &macs,
            &key(&s, "vm1", &request(vm_mac(1), 67, 68)),
            0,
            true,
            &mut NoTrace,
        );
        assert_eq!(d.drop, Some(DropReason::DhcpServerSpoof));
    }
}
