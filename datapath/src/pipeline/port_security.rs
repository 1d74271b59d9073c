//! Stage `port_security` (Neutron tables 24, 25 and part of 71), for ports with
//! `port_security = true` (never uplinks):
//!
//! - `arp_spoof` (24): an ARP sender must be one of the port's (MAC, IP) pairs;
//! - `mac_spoof` (25): the source MAC must be the port's MAC or an allowed address pair's;
//! - `ip_spoof` + DHCP guard (71): the source IP must be one of the port's fixed IPs / pairs for
//!   that MAC; no DHCP(v6) server replies or router advertisements from a VM; ND targets and
//!   link-layer options must be the port's; other ethertypes are dropped.

use super::{FlowKey, Tracer};
use crate::flow_key::{DHCP6_SERVER, DHCP_CLIENT, DHCP_SERVER, L3_ARP, L4_ICMP6, L4_UDP};
use crate::frame::{
    ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_ROUTER_ADVERT,
};
use crate::snapshot::{PortInfo, PortRole, PortSecurity, Snapshot};
use crate::verdict::{DropReason, Stage};

/// Runs arp_spoof, mac_spoof and ip_spoof for a frame from `port`.
#[inline]
pub(crate) fn port_security<T: Tracer>(
    snap: &Snapshot,
    port: &PortInfo,
    k: &FlowKey,
    t: &mut T,
) -> Result<(), DropReason> {
    let Some(sec) = snap.security(k.in_port()) else {
        if T::ON {
            let why = if port.role == PortRole::Uplink {
                "uplink"
            } else {
                "port_security=false"
            };
            t.step(Stage::ArpSpoof, format!("{why}: skip"));
            t.step(Stage::MacSpoof, format!("{why}: skip"));
            t.step(Stage::IpSpoof, format!("{why}: skip"));
        }
        return Ok(());
    };
    arp_spoof(sec, k, t)?;
    mac_spoof(sec, k, t)?;
    ip_spoof(sec, k, t)
}

/// Table 24: ARP must carry one of the port's (MAC, IP) pairs (or a 0.0.0.0 probe).
#[inline]
pub(crate) fn arp_spoof<T: Tracer>(
    sec: &PortSecurity,
    k: &FlowKey,
    t: &mut T,
) -> Result<(), DropReason> {
    if k.ethertype() != ETH_P_ARP {
        trace!(t, Stage::ArpSpoof, "not ARP: skip");
        return Ok(());
    }
    if k.l3_kind() != L3_ARP {
        trace!(t, Stage::ArpSpoof, "ARP that is not Ethernet/IPv4: drop");
        return Err(DropReason::ArpMalformed);
    }
    let sha = k.l2addr();
    let spa = k.ip4();
    let ok = sec.mac_ok(sha) && (spa.is_unspecified() || sec.v4_ok(sha, spa));
    if !ok {
        trace!(
            t,
            Stage::ArpSpoof,
            "ARP sha {sha} spa {spa} is not one of the port's addresses: drop"
        );
        return Err(DropReason::ArpSpoof);
    }
    trace!(t, Stage::ArpSpoof, "ARP sha {sha} spa {spa}: allowed");
    Ok(())
}

/// Table 25: the source MAC must be the port's or an allowed address pair's.
#[inline]
pub(crate) fn mac_spoof<T: Tracer>(
    sec: &PortSecurity,
    k: &FlowKey,
    t: &mut T,
) -> Result<(), DropReason> {
    let src = k.src();
    if !sec.mac_ok(src) {
        trace!(
            t,
            Stage::MacSpoof,
            "source MAC {src} is not the port's: drop"
        );
        return Err(DropReason::MacSpoof);
    }
    trace!(t, Stage::MacSpoof, "source MAC {src}: allowed");
    Ok(())
}

/// Table 71 (part): source IP, DHCP guard, ND; only ARP, IPv4 and IPv6 pass.
#[inline]
pub(crate) fn ip_spoof<T: Tracer>(
    sec: &PortSecurity,
    k: &FlowKey,
    t: &mut T,
) -> Result<(), DropReason> {
    match k.ethertype() {
        ETH_P_ARP => {
            trace!(t, Stage::IpSpoof, "ARP: checked by arp_spoof");
            Ok(())
        }
        ETH_P_IPV4 => ip_spoof_v4(sec, k, t),
        ETH_P_IPV6 => ip_spoof_v6(sec, k, t),
        other => {
            trace!(
                t,
                Stage::IpSpoof,
                "ethertype {other:#06x} is not ARP/IPv4/IPv6: drop (port security)"
            );
            Err(DropReason::EthertypeNotAllowed)
        }
    }
}

#[inline]
fn ip_spoof_v4<T: Tracer>(sec: &PortSecurity, k: &FlowKey, t: &mut T) -> Result<(), DropReason> {
    let src = k.src();
    let ip = k.ip4();
    if k.l4_kind() == L4_UDP && k.sport() == DHCP_SERVER {
        trace!(
            t,
            Stage::IpSpoof,
            "UDP from port 67: a VM may not be a DHCP server: drop"
        );
        return Err(DropReason::DhcpServerSpoof);
    }
    if ip.is_unspecified()
        && k.l4_kind() == L4_UDP
        && k.sport() == DHCP_CLIENT
        && k.dport() == DHCP_SERVER
    {
        trace!(
            t,
            Stage::IpSpoof,
            "DHCP discover/request from 0.0.0.0: allowed"
        );
    } else if sec.v4_ok(src, ip) {
        trace!(t, Stage::IpSpoof, "source IP {ip}: allowed");
    } else {
        trace!(
            t,
            Stage::IpSpoof,
            "source IP {ip} is not the port's (for MAC {src}): drop"
        );
        return Err(DropReason::IpSpoof);
    }
    Ok(())
}

#[inline]
fn ip_spoof_v6<T: Tracer>(sec: &PortSecurity, k: &FlowKey, t: &mut T) -> Result<(), DropReason> {
    let src = k.src();
    let ip = k.ip6();
    if k.l4_kind() == L4_UDP && k.sport() == DHCP6_SERVER {
        trace!(
            t,
            Stage::IpSpoof,
            "UDP from port 547: a VM may not be a DHCPv6 server: drop"
        );
        return Err(DropReason::DhcpServerSpoof);
    }
    let icmp6 = (k.l4_kind() == L4_ICMP6).then_some(k.sub() as u8);
    if icmp6 == Some(ND_ROUTER_ADVERT) {
        trace!(t, Stage::IpSpoof, "router advertisement from a VM: drop");
        return Err(DropReason::RouterAdvertSpoof);
    }
    if ip.is_unspecified() {
        // DAD neighbor solicitations and MLD reports come from ::
        if !matches!(icmp6, Some(ND_NEIGHBOR_SOLICIT | 131 | 132 | 143)) {
            trace!(t, Stage::IpSpoof, "source :: is only for DAD and MLD: drop");
            return Err(DropReason::IpSpoof);
        }
        trace!(t, Stage::IpSpoof, "source :: (DAD/MLD): allowed");
    } else if sec.v6_ok(src, ip) {
        trace!(t, Stage::IpSpoof, "source IP {ip}: allowed");
    } else {
        trace!(
            t,
            Stage::IpSpoof,
            "source IP {ip} is not the port's (for MAC {src}): drop"
        );
        return Err(DropReason::IpSpoof);
    }
    if icmp6 == Some(ND_NEIGHBOR_ADVERT) {
        let target = k.nd_target();
        if !sec.v6_ok(src, target) {
            trace!(
                t,
                Stage::IpSpoof,
                "NA for target {target}, not the port's: drop"
            );
            return Err(DropReason::NdSpoof);
        }
        trace!(t, Stage::IpSpoof, "NA target {target}: allowed");
    }
    if matches!(icmp6, Some(ND_NEIGHBOR_ADVERT | ND_NEIGHBOR_SOLICIT)) && k.has_ll() {
        let ll = k.l2addr();
        if !sec.mac_ok(ll) {
            trace!(
                t,
                Stage::IpSpoof,
                "ND link-layer option {ll} is not the port's: drop"
            );
            return Err(DropReason::NdSpoof);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{FrameBuilder, SpecL3, SpecL4};
    use crate::mac::MacAddr;
    use crate::pipeline::fixture::*;
    use crate::pipeline::{NoTrace, Recorder};
    use std::net::Ipv6Addr;

    /// The whole stage for a frame from `port`.
    fn run(port: &str, f: &FrameBuilder) -> Result<(), DropReason> {
        let s = snap();
        let k = key(&s, port, &f.build());
        let info = s.port(k.in_port()).expect("port");
        port_security(&s, info, &k, &mut NoTrace)
    }

    fn udp4(src: MacAddr, sip: [u8; 4], sport: u16, dport: u16) -> FrameBuilder {
        FrameBuilder::udp4(
            src,
            vm_mac(2),
            sip.into(),
            [10, 0, 0, 2].into(),
            sport,
            dport,
        )
    }

    fn icmp6(src: MacAddr, sip: &str, ty: u8) -> FrameBuilder {
        let l4 = SpecL4::Icmpv6 {
            ty,
            code: 0,
            nd_target: None,
            ll: None,
        };
        let sip: Ipv6Addr = sip.parse().expect("v6");
        FrameBuilder::ip(
            src,
            MacAddr::BROADCAST,
            sip.into(),
            "ff02::1".parse::<Ipv6Addr>().expect("v6").into(),
            l4,
        )
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("v6")
    }

    #[test]
    fn arp_spoof_checks_the_senders_mac_and_ip() {
        let arp = |sha, spa: [u8; 4]| FrameBuilder::arp(sha, 1, spa.into(), [10, 0, 0, 2].into());
        assert_eq!(run("vm1", &arp(vm_mac(1), [10, 0, 0, 1])), Ok(()));
        // A probe (spa 0.0.0.0) and an allowed pair's (MAC, IP).
        assert_eq!(run("vm1", &arp(vm_mac(1), [0, 0, 0, 0])), Ok(()));
        assert_eq!(run("vm1", &arp(vm_mac(0xa1), [10, 0, 0, 101])), Ok(()));
        assert_eq!(
            run("vm1", &arp(vm_mac(1), [10, 0, 0, 2])),
            Err(DropReason::ArpSpoof)
        );
        // The pair's IP only with the pair's MAC.
        assert_eq!(
            run("vm1", &arp(vm_mac(1), [10, 0, 0, 101])),
            Err(DropReason::ArpSpoof)
        );
        // sha spoofed while the Ethernet source is right.
        let mut f = arp(vm_mac(9), [10, 0, 0, 1]);
        f.src = vm_mac(1);
        assert_eq!(run("vm1", &f), Err(DropReason::ArpSpoof));
    }

    #[test]
    fn mac_spoof_allows_the_ports_mac_and_its_pairs() {
        assert_eq!(run("vm1", &udp4(vm_mac(1), [10, 0, 0, 1], 1, 2)), Ok(()));
        assert_eq!(
            run("vm1", &udp4(vm_mac(0xa1), [10, 0, 0, 101], 1, 2)),
            Ok(())
        );
        assert_eq!(
            run("vm1", &udp4(vm_mac(2), [10, 0, 0, 1], 1, 2)),
            Err(DropReason::MacSpoof)
        );
    }

    #[test]
    fn ip_spoof_v4_and_the_dhcp_guard() {
        assert_eq!(
            run("vm1", &udp4(vm_mac(1), [10, 0, 0, 2], 1, 2)),
            Err(DropReason::IpSpoof)
        );
        // The pair's IP belongs to the pair's MAC only.
        assert_eq!(
            run("vm1", &udp4(vm_mac(1), [10, 0, 0, 101], 1, 2)),
            Err(DropReason::IpSpoof)
        );
        assert_eq!(run("vm1", &udp4(vm_mac(1), [0, 0, 0, 0], 68, 67)), Ok(()));
        assert_eq!(
            run("vm1", &udp4(vm_mac(1), [0, 0, 0, 0], 68, 68)),
            Err(DropReason::IpSpoof)
        );
        // A VM may not answer DHCP, even from its own address.
        assert_eq!(
            run("vm1", &udp4(vm_mac(1), [10, 0, 0, 1], 67, 68)),
            Err(DropReason::DhcpServerSpoof)
        );
    }

    #[test]
    fn ip_spoof_v6_ra_dhcp6_and_unspecified_sources() {
        let ok = icmp6(vm_mac(1), "2001:db8::1", 128);
        assert_eq!(run("vm1", &ok), Ok(()));
        let ll = vm_mac(1).ipv6_link_local().to_string();
        assert_eq!(run("vm1", &icmp6(vm_mac(1), &ll, 128)), Ok(()));
        assert_eq!(
            run("vm1", &icmp6(vm_mac(1), "2001:db8::2", 128)),
            Err(DropReason::IpSpoof)
        );
        assert_eq!(
            run("vm1", &icmp6(vm_mac(1), &ll, ND_ROUTER_ADVERT)),
            Err(DropReason::RouterAdvertSpoof)
        );
        // :: is for DAD (NS) and MLD reports only.
        assert_eq!(run("vm1", &icmp6(vm_mac(1), "::", 143)), Ok(()));
        assert_eq!(
            run("vm1", &icmp6(vm_mac(1), "::", 128)),
            Err(DropReason::IpSpoof)
        );
        let dhcp6 = FrameBuilder::ip(
            vm_mac(1),
            MacAddr::BROADCAST,
            v6("2001:db8::1").into(),
            v6("ff02::1:2").into(),
            SpecL4::Udp {
                sport: 547,
                dport: 546,
            },
        );
        assert_eq!(run("vm1", &dhcp6), Err(DropReason::DhcpServerSpoof));
    }

    #[test]
    fn ip_spoof_checks_nd_targets_and_link_layer_options() {
        let own = v6("2001:db8::1");
        assert_eq!(
            run(
                "vm1",
                &FrameBuilder::nd(vm_mac(1), ND_NEIGHBOR_ADVERT, own, Some(vm_mac(1)))
            ),
            Ok(())
        );
        assert_eq!(
            run(
                "vm1",
                &FrameBuilder::nd(vm_mac(1), ND_NEIGHBOR_ADVERT, v6("2001:db8::2"), None)
            ),
            Err(DropReason::NdSpoof)
        );
        assert_eq!(
            run(
                "vm1",
                &FrameBuilder::nd(
                    vm_mac(1),
                    ND_NEIGHBOR_SOLICIT,
                    v6("2001:db8::2"),
                    Some(vm_mac(9))
                )
            ),
            Err(DropReason::NdSpoof)
        );
        assert_eq!(
            run(
                "vm1",
                &FrameBuilder::nd(
                    vm_mac(1),
                    ND_NEIGHBOR_SOLICIT,
                    v6("2001:db8::2"),
                    Some(vm_mac(1))
                )
            ),
            Ok(())
        );
    }

    #[test]
    fn other_ethertypes_are_dropped_on_secured_ports_only() {
        let lldp = FrameBuilder {
            dst: vm_mac(2),
            src: vm_mac(1),
            tags: Vec::new(),
            l3: SpecL3::Raw(0x88cc),
            payload_len: 0,
        };
        assert_eq!(run("vm1", &lldp), Err(DropReason::EthertypeNotAllowed));
        let mut open = lldp.clone();
        open.src = vm_mac(7);
        assert_eq!(run("open1", &open), Ok(()));
    }

    #[test]
    fn unsecured_ports_and_uplinks_skip_all_three_checks() {
        let spoof = udp4(vm_mac(9), [1, 2, 3, 4], 67, 68);
        assert_eq!(run("open1", &spoof), Ok(()));
        assert_eq!(run("eth1", &spoof), Ok(()));
        let s = snap();
        let k = key(&s, "eth1", &spoof.build());
        let mut r = Recorder(Vec::new());
        assert_eq!(
            port_security(&s, s.port(k.in_port()).expect("uplink"), &k, &mut r),
            Ok(())
        );
        let steps: Vec<_> = r.0.iter().map(|t| (t.stage, t.decision.as_str())).collect();
        assert_eq!(
            steps,
            [
                (Stage::ArpSpoof, "uplink: skip"),
                (Stage::MacSpoof, "uplink: skip"),
                (Stage::IpSpoof, "uplink: skip")
            ]
        );
    }

    #[test]
    fn each_check_runs_alone() {
        let s = snap();
        let sec = s.security(port(&s, "vm1")).expect("secured");
        let f = udp4(vm_mac(1), [10, 0, 0, 9], 1, 2).build();
        let k = key(&s, "vm1", &f);
        assert_eq!(arp_spoof(sec, &k, &mut NoTrace), Ok(()));
        assert_eq!(mac_spoof(sec, &k, &mut NoTrace), Ok(()));
        assert_eq!(ip_spoof(sec, &k, &mut NoTrace), Err(DropReason::IpSpoof));
    }
}
