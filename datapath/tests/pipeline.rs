//! Stage-by-stage behaviour of the pipeline, driven through a Worker (so the flow cache is in the
//! path of every test).

mod common;

use common::*;
use weft_datapath::build::{FrameBuilder, SpecL3, SpecL4};
use weft_datapath::frame::{
    ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_ROUTER_ADVERT, TPID_8021AD, TPID_8021Q,
};
use weft_datapath::{DropReason, MacAddr, Snapshot, Stage, SwitchConfig, Verdict};

fn drop(r: DropReason) -> Verdict {
    Verdict::Drop { reason: r }
}

const BCAST: MacAddr = MacAddr::BROADCAST;

// ---------------- classify / local VLAN ----------------

#[test]
fn vm_ports_never_accept_tagged_frames() {
    let mut h = Host::new();
    let single = udp(vm_mac(1), BCAST, "10.0.0.1", "10.0.0.255")
        .dot1q(100)
        .build();
    assert_eq!(
        h.send("vm1", &single, 0).0,
        drop(DropReason::TaggedOnVmPort)
    );
    let double = udp(vm_mac(1), BCAST, "10.0.0.1", "10.0.0.255")
        .vlan(TPID_8021AD, 100)
        .dot1q(200)
        .build();
    assert_eq!(
        h.send("vm1", &double, 0).0,
        drop(DropReason::TaggedOnVmPort)
    );
    let reserved = udp(vm_mac(1), BCAST, "10.0.0.1", "10.0.0.255")
        .dot1q(4095)
        .build();
    assert_eq!(
        h.send("vm1", &reserved, 0).0,
        drop(DropReason::TaggedOnVmPort)
    );
    // Even without port security.
    let spoof_tag = udp(vm_mac(7), BCAST, "1.2.3.4", "10.0.0.255")
        .dot1q(200)
        .build();
    assert_eq!(
        h.send("open1", &spoof_tag, 0).0,
        drop(DropReason::TaggedOnVmPort)
    );
    let c = h.dp.counters();
    assert_eq!(
        c.port_by_name("vm1")
            .unwrap()
            .drop_count(DropReason::TaggedOnVmPort),
        3
    );
    assert_eq!(
        c.port_by_name("open1")
            .unwrap()
            .drop_count(DropReason::TaggedOnVmPort),
        1
    );
}

#[test]
fn uplink_segments_map_to_local_vlans() {
    let mut h = Host::new();
    let remote = mac("52:54:00:00:00:01");
    let f100 = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .dot1q(100)
        .build();
    let (v, o) = h.send("eth1", &f100, 0);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(
        o,
        outs(&[
            ("open1", "strip_vlan"),
            ("vm1", "strip_vlan"),
            ("vm2", "strip_vlan")
        ])
    );

    let f200 = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .dot1q(200)
        .build();
    assert_eq!(h.send("eth1", &f200, 0).1, outs(&[("vm3", "strip_vlan")]));

    let flat = udp(remote, BCAST, "10.0.0.50", "10.0.0.255").build();
    assert_eq!(h.send("eth1", &flat, 0).1, outs(&[("vm4", "keep")]));

    // Priority-tagged (VID 0) frames belong to the flat segment.
    let prio = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .dot1q(0)
        .build();
    assert_eq!(h.send("eth1", &prio, 0).1, outs(&[("vm4", "strip_vlan")]));

    let unknown = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .dot1q(300)
        .build();
    assert_eq!(
        h.send("eth1", &unknown, 0).0,
        drop(DropReason::UnknownSegment)
    );
    let reserved = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .dot1q(4095)
        .build();
    assert_eq!(
        h.send("eth1", &reserved, 0).0,
        drop(DropReason::ReservedVlan)
    );
    let qinq = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .dot1q(100)
        .dot1q(200)
        .build();
    assert_eq!(h.send("eth1", &qinq, 0).0, drop(DropReason::DoubleTagged));
    let stag = udp(remote, BCAST, "10.0.0.50", "10.0.0.255")
        .vlan(TPID_8021AD, 100)
        .build();
    assert_eq!(h.send("eth1", &stag, 0).0, drop(DropReason::UnknownSegment));
}

#[test]
fn physnet_without_flat_network_drops_untagged() {
    let text = HOST.replace(
        "[[network]]\nname = \"flat\"\ntype = \"flat\"\nphysnet = \"physnet\"\n",
        "",
    );
    let text = text.replace("network = \"flat\"", "network = \"local\"");
    let mut h = Host::from_toml(&text);
    let f = udp(mac("52:54:00:00:00:01"), BCAST, "10.0.0.50", "10.0.0.255").build();
    assert_eq!(h.send("eth1", &f, 0).0, drop(DropReason::UnknownSegment));
}

// ---------------- flooding scope and uplink translation ----------------

#[test]
fn broadcast_floods_within_the_local_vlan_only() {
    let mut h = Host::new();
    let f = FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2")).build();
    let (v, o) = h.send("vm1", &f, 0);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(
        o,
        outs(&[
            ("eth1", "push_vlan:100"),
            ("open1", "keep"),
            ("vm2", "keep")
        ])
    );

    let f3 = FrameBuilder::arp(vm_mac(3), 1, v4("10.0.0.3"), v4("10.0.0.2")).build();
    assert_eq!(h.send("vm3", &f3, 0).1, outs(&[("eth1", "push_vlan:200")]));

    let f4 = FrameBuilder::arp(vm_mac(4), 1, v4("10.0.0.4"), v4("10.0.0.2")).build();
    assert_eq!(h.send("vm4", &f4, 0).1, outs(&[("eth1", "keep")]));

    // Local networks never reach an uplink.
    let f5 = FrameBuilder::arp(vm_mac(5), 1, v4("10.0.0.5"), v4("10.0.0.6")).build();
    assert_eq!(h.send("vm5", &f5, 0).1, outs(&[("vm6", "keep")]));
}

#[test]
fn alone_in_a_vlan_has_no_destination() {
    let text = r#"
[[network]]
name = "solo"
type = "local"
[[port]]
name = "vm1"
network = "solo"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1"]
"#;
    let mut h = Host::from_toml(text);
    let f = FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2")).build();
    assert_eq!(h.send("vm1", &f, 0).0, drop(DropReason::NoDestination));
}

#[test]
fn unicast_to_configured_port_mac_never_floods() {
    let mut h = Host::new();
    let f = udp(vm_mac(1), vm_mac(2), "10.0.0.1", "10.0.0.2").build();
    assert_eq!(h.send("vm1", &f, 0).1, outs(&[("vm2", "keep")]));
    // vm3's MAC is in another network: unknown in net100, so it floods within net100 only.
    let f = udp(vm_mac(1), vm_mac(3), "10.0.0.1", "10.0.0.3").build();
    assert_eq!(
        h.send("vm1", &f, 0).1,
        outs(&[
            ("eth1", "push_vlan:100"),
            ("open1", "keep"),
            ("vm2", "keep")
        ])
    );
}

// ---------------- learning and aging ----------------

#[test]
fn learns_from_uplink_and_ages_out() {
    let mut h = Host::new();
    let remote = mac("52:54:00:00:00:09");
    // Before learning: unknown unicast floods.
    let to_remote = udp(vm_mac(1), remote, "10.0.0.1", "10.0.0.50").build();
    assert_eq!(h.send("vm1", &to_remote, 0).1.len(), 3);
    // Remote speaks on VLAN 100 at t=1s.
    let from_remote = udp(remote, vm_mac(1), "10.0.0.50", "10.0.0.1")
        .dot1q(100)
        .build();
    assert_eq!(
        h.send("eth1", &from_remote, SEC).1,
        outs(&[("vm1", "strip_vlan")])
    );
    // Now vm1 -> remote is unicast with the global VLAN pushed.
    assert_eq!(
        h.send("vm1", &to_remote, 2 * SEC).1,
        outs(&[("eth1", "push_vlan:100")])
    );
    // Cached now; still correct just before aging.
    assert_eq!(
        h.send("vm1", &to_remote, 300 * SEC).1,
        outs(&[("eth1", "push_vlan:100")])
    );
    // Aged out (last seen at 1s, aging 300s): floods again, even though the flow is cached.
    assert_eq!(h.send("vm1", &to_remote, 302 * SEC).1.len(), 3);
    let c = h.dp.counters();
    assert!(c.flow_cache_hits >= 1, "{c:?}");
}

#[test]
fn cache_hits_keep_learned_sources_alive() {
    let mut h = Host::new();
    let remote = mac("52:54:00:00:00:09");
    let from_remote = udp(remote, vm_mac(1), "10.0.0.50", "10.0.0.1")
        .dot1q(100)
        .build();
    // The remote keeps talking every 100 s; mostly cache hits.
    for t in 0..10 {
        h.send("eth1", &from_remote, t * 100 * SEC);
    }
    let entries = h.dp.mac_table(900 * SEC);
    let e = entries.iter().find(|e| e.mac == remote).expect("learned");
    assert_eq!(e.age_ns, 0);
    assert_eq!(h.name(e.port), "eth1");
    assert!(!e.is_static);
    let to_remote = udp(vm_mac(1), remote, "10.0.0.1", "10.0.0.50").build();
    assert_eq!(
        h.send("vm1", &to_remote, 1000 * SEC).1,
        outs(&[("eth1", "push_vlan:100")])
    );
}

#[test]
fn mac_moves_and_learning_is_per_vlan() {
    let mut h = Host::new();
    let m = mac("52:54:00:00:00:42");
    // Learned on the uplink in VLAN 100 (local VLAN of net100).
    h.send(
        "eth1",
        &udp(m, BCAST, "10.0.0.50", "10.0.0.255").dot1q(100).build(),
        0,
    );
    assert_eq!(
        h.send(
            "vm1",
            &udp(vm_mac(1), m, "10.0.0.1", "10.0.0.50").build(),
            SEC
        )
        .1,
        outs(&[("eth1", "push_vlan:100")])
    );
    // The same MAC appears behind open1 (no port security): it moves.
    h.send(
        "open1",
        &udp(m, BCAST, "10.0.0.50", "10.0.0.255").build(),
        2 * SEC,
    );
    assert_eq!(
        h.send(
            "vm1",
            &udp(vm_mac(1), m, "10.0.0.1", "10.0.0.50").build(),
            3 * SEC
        )
        .1,
        outs(&[("open1", "keep")])
    );
    // In net200 the MAC is still unknown.
    assert_eq!(
        h.send(
            "vm3",
            &udp(vm_mac(3), m, "10.0.0.3", "10.0.0.50").build(),
            3 * SEC
        )
        .1,
        outs(&[("eth1", "push_vlan:200")])
    );
    let table = h.dp.mac_table(3 * SEC);
    assert_eq!(table.iter().filter(|e| e.mac == m).count(), 1);
}

#[test]
fn configured_macs_cannot_be_hijacked_from_the_uplink() {
    let mut h = Host::new();
    // A remote host uses vm2's MAC on VLAN 100.
    h.send(
        "eth1",
        &udp(vm_mac(2), BCAST, "10.0.0.2", "10.0.0.255")
            .dot1q(100)
            .build(),
        0,
    );
    assert_eq!(
        h.send(
            "vm1",
            &udp(vm_mac(1), vm_mac(2), "10.0.0.1", "10.0.0.2").build(),
            SEC
        )
        .1,
        outs(&[("vm2", "keep")])
    );
}

#[test]
fn hairpin_is_dropped() {
    let mut h = Host::new();
    let m = mac("52:54:00:00:00:43");
    h.send(
        "eth1",
        &udp(m, BCAST, "10.0.0.50", "10.0.0.255").dot1q(100).build(),
        0,
    );
    let back = udp(mac("52:54:00:00:00:44"), m, "10.0.0.51", "10.0.0.50")
        .dot1q(100)
        .build();
    assert_eq!(h.send("eth1", &back, 0).0, drop(DropReason::Hairpin));
}

#[test]
fn aging_sweep_removes_entries() {
    let mut h = Host::new();
    let m = mac("52:54:00:00:00:45");
    h.send(
        "eth1",
        &udp(m, BCAST, "10.0.0.50", "10.0.0.255").dot1q(100).build(),
        0,
    );
    assert_eq!(h.dp.learned_mac_count(), 1);
    assert_eq!(h.dp.age_macs(100 * SEC), 0);
    assert_eq!(h.dp.age_macs(301 * SEC), 1);
    assert_eq!(h.dp.learned_mac_count(), 0);
}

// ---------------- port security ----------------

#[test]
fn mac_spoofing_is_dropped() {
    let mut h = Host::new();
    let f = udp(mac("fa:16:3e:00:00:99"), BCAST, "10.0.0.1", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &f, 0).0, drop(DropReason::MacSpoof));
    // vm2's MAC from vm1 is spoofing too.
    let f = udp(vm_mac(2), BCAST, "10.0.0.2", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &f, 0).0, drop(DropReason::MacSpoof));
    // The pair MAC with its own IP is allowed.
    let f = udp(mac("fa:16:3e:00:00:a1"), BCAST, "10.0.0.101", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &f, 0).0, Verdict::Forward);
    // ...but not with the port's fixed IP (pairs bind MAC and IP).
    let f = udp(mac("fa:16:3e:00:00:a1"), BCAST, "10.0.0.1", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &f, 0).0, drop(DropReason::IpSpoof));
    let c = h.dp.counters();
    let vm1 = c.port_by_name("vm1").unwrap();
    assert_eq!(vm1.drop_count(DropReason::MacSpoof), 2);
    assert_eq!(vm1.drop_count(DropReason::IpSpoof), 1);
    assert_eq!(c.stage_drops[Stage::MacSpoof as usize], 2);
}

#[test]
fn ip_spoofing_is_dropped_and_pairs_allowed() {
    let mut h = Host::new();
    let spoof = udp(vm_mac(1), BCAST, "10.0.0.2", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &spoof, 0).0, drop(DropReason::IpSpoof));
    let ok = udp(vm_mac(1), BCAST, "10.0.0.1", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &ok, 0).0, Verdict::Forward);
    let cidr = udp(vm_mac(1), BCAST, "10.9.0.77", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &cidr, 0).0, Verdict::Forward);
    let outside = udp(vm_mac(1), BCAST, "10.9.1.77", "10.0.0.255").build();
    assert_eq!(h.send("vm1", &outside, 0).0, drop(DropReason::IpSpoof));
    let v6 = udp(vm_mac(1), BCAST, "2001:db8::1", "ff02::1").build();
    assert_eq!(h.send("vm1", &v6, 0).0, Verdict::Forward);
    let v6bad = udp(vm_mac(1), BCAST, "2001:db8::2", "ff02::1").build();
    assert_eq!(h.send("vm1", &v6bad, 0).0, drop(DropReason::IpSpoof));
    // EUI-64 link-local of the port MAC is allowed, another link-local is not.
    let ll = udp(
        vm_mac(1),
        BCAST,
        &vm_mac(1).ipv6_link_local().to_string(),
        "ff02::1",
    )
    .build();
    assert_eq!(h.send("vm1", &ll, 0).0, Verdict::Forward);
    let ll2 = udp(
        vm_mac(1),
        BCAST,
        &vm_mac(2).ipv6_link_local().to_string(),
        "ff02::1",
    )
    .build();
    assert_eq!(h.send("vm1", &ll2, 0).0, drop(DropReason::IpSpoof));
}

#[test]
fn arp_spoofing_is_dropped() {
    let mut h = Host::new();
    let ok = FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2")).build();
    assert_eq!(h.send("vm1", &ok, 0).0, Verdict::Forward);
    let probe = FrameBuilder::arp(vm_mac(1), 1, v4("0.0.0.0"), v4("10.0.0.1")).build();
    assert_eq!(
        h.send("vm1", &probe, 0).0,
        Verdict::Forward,
        "RFC 5227 probe"
    );
    let bad_spa = FrameBuilder::arp(vm_mac(1), 2, v4("10.0.0.2"), v4("10.0.0.3")).build();
    assert_eq!(h.send("vm1", &bad_spa, 0).0, drop(DropReason::ArpSpoof));
    // Ethernet source is the port's but the ARP sender MAC is not.
    let mut b = FrameBuilder::arp(vm_mac(1), 2, v4("10.0.0.1"), v4("10.0.0.3"));
    if let SpecL3::Arp { sha, .. } = &mut b.l3 {
        *sha = vm_mac(2);
    }
    assert_eq!(h.send("vm1", &b.build(), 0).0, drop(DropReason::ArpSpoof));
    // Non-Ethernet/IPv4 ARP.
    let mut weird = ok.clone();
    weird[15] = 6; // htype 6 (IEEE 802)
    assert_eq!(h.send("vm1", &weird, 0).0, drop(DropReason::ArpMalformed));
    let c = h.dp.counters();
    assert_eq!(
        c.port_by_name("vm1")
            .unwrap()
            .drop_count(DropReason::ArpSpoof),
        2
    );
}

#[test]
fn dhcp_guard() {
    let mut h = Host::new();
    let discover = FrameBuilder::ip(
        vm_mac(1),
        BCAST,
        ip("0.0.0.0"),
        ip("255.255.255.255"),
        SpecL4::Udp {
            sport: 68,
            dport: 67,
        },
    )
    .build();
    assert_eq!(h.send("vm1", &discover, 0).0, Verdict::Forward);
    let offer = FrameBuilder::ip(
        vm_mac(1),
        BCAST,
        ip("10.0.0.1"),
        ip("255.255.255.255"),
        SpecL4::Udp {
            sport: 67,
            dport: 68,
        },
    )
    .build();
    assert_eq!(
        h.send("vm1", &offer, 0).0,
        drop(DropReason::DhcpServerSpoof)
    );
    let from_zero_other = FrameBuilder::ip(
        vm_mac(1),
        BCAST,
        ip("0.0.0.0"),
        ip("255.255.255.255"),
        SpecL4::Udp {
            sport: 5000,
            dport: 67,
        },
    )
    .build();
    assert_eq!(
        h.send("vm1", &from_zero_other, 0).0,
        drop(DropReason::IpSpoof)
    );
    let adv6 = FrameBuilder::ip(
        vm_mac(1),
        mac("33:33:00:01:00:02"),
        ip("2001:db8::1"),
        ip("ff02::1:2"),
        SpecL4::Udp {
            sport: 547,
            dport: 546,
        },
    )
    .build();
    assert_eq!(h.send("vm1", &adv6, 0).0, drop(DropReason::DhcpServerSpoof));
    let sol6 = FrameBuilder::ip(
        vm_mac(1),
        mac("33:33:00:01:00:02"),
        IpAddrLL::of(1),
        ip("ff02::1:2"),
        SpecL4::Udp {
            sport: 546,
            dport: 547,
        },
    )
    .build();
    assert_eq!(h.send("vm1", &sol6, 0).0, Verdict::Forward);
    // Without port security a VM may run a DHCP server.
    let offer_open = FrameBuilder::ip(
        vm_mac(7),
        BCAST,
        ip("10.0.0.7"),
        ip("255.255.255.255"),
        SpecL4::Udp {
            sport: 67,
            dport: 68,
        },
    )
    .build();
    assert_eq!(h.send("open1", &offer_open, 0).0, Verdict::Forward);
}

struct IpAddrLL;
impl IpAddrLL {
    fn of(i: u8) -> std::net::IpAddr {
        std::net::IpAddr::V6(vm_mac(i).ipv6_link_local())
    }
}

#[test]
fn neighbor_discovery_checks() {
    let mut h = Host::new();
    let m = vm_mac(1);
    let na_ok = FrameBuilder::nd(
        m,
        ND_NEIGHBOR_ADVERT,
        "2001:db8::1".parse().unwrap(),
        Some(m),
    )
    .build();
    assert_eq!(h.send("vm1", &na_ok, 0).0, Verdict::Forward);
    let na_ll = FrameBuilder::nd(m, ND_NEIGHBOR_ADVERT, m.ipv6_link_local(), Some(m)).build();
    assert_eq!(h.send("vm1", &na_ll, 0).0, Verdict::Forward);
    let na_bad_target = FrameBuilder::nd(
        m,
        ND_NEIGHBOR_ADVERT,
        "2001:db8::2".parse().unwrap(),
        Some(m),
    )
    .build();
    assert_eq!(
        h.send("vm1", &na_bad_target, 0).0,
        drop(DropReason::NdSpoof)
    );
    let na_bad_ll = FrameBuilder::nd(
        m,
        ND_NEIGHBOR_ADVERT,
        "2001:db8::1".parse().unwrap(),
        Some(vm_mac(2)),
    )
    .build();
    assert_eq!(h.send("vm1", &na_bad_ll, 0).0, drop(DropReason::NdSpoof));
    // NS for anyone is fine; its source link-layer option must be ours.
    let ns = FrameBuilder::nd(
        m,
        ND_NEIGHBOR_SOLICIT,
        "2001:db8::2".parse().unwrap(),
        Some(m),
    )
    .build();
    assert_eq!(h.send("vm1", &ns, 0).0, Verdict::Forward);
    let ns_bad = FrameBuilder::nd(
        m,
        ND_NEIGHBOR_SOLICIT,
        "2001:db8::2".parse().unwrap(),
        Some(vm_mac(2)),
    )
    .build();
    assert_eq!(h.send("vm1", &ns_bad, 0).0, drop(DropReason::NdSpoof));
    // DAD: NS from ::
    let mut dad = FrameBuilder::nd(m, ND_NEIGHBOR_SOLICIT, "2001:db8::1".parse().unwrap(), None);
    if let SpecL3::Ip { src, .. } = &mut dad.l3 {
        *src = ip("::");
    }
    assert_eq!(h.send("vm1", &dad.build(), 0).0, Verdict::Forward);
    // Plain UDP from :: is not allowed.
    let zero = udp(m, BCAST, "::", "ff02::1").build();
    assert_eq!(h.send("vm1", &zero, 0).0, drop(DropReason::IpSpoof));
    // Router advertisements from VMs are dropped.
    let ra = FrameBuilder::ip(
        m,
        mac("33:33:00:00:00:01"),
        std::net::IpAddr::V6(m.ipv6_link_local()),
        ip("ff02::1"),
        SpecL4::Icmpv6 {
            ty: ND_ROUTER_ADVERT,
            code: 0,
            nd_target: None,
            ll: None,
        },
    )
    .build();
    assert_eq!(h.send("vm1", &ra, 0).0, drop(DropReason::RouterAdvertSpoof));
}

#[test]
fn other_ethertypes_need_port_security_off() {
    let mut h = Host::new();
    let b = FrameBuilder {
        dst: BCAST,
        src: vm_mac(1),
        tags: vec![],
        l3: SpecL3::Raw(0x88cc), // LLDP
        payload_len: 30,
    };
    assert_eq!(
        h.send("vm1", &b.build(), 0).0,
        drop(DropReason::EthertypeNotAllowed)
    );
    let mut open = b.clone();
    open.src = vm_mac(7);
    assert_eq!(h.send("open1", &open.build(), 0).0, Verdict::Forward);
}

#[test]
fn port_security_false_lets_spoofed_traffic_through() {
    let mut h = Host::new();
    let spoofed = udp(mac("fa:16:3e:00:00:99"), BCAST, "192.168.1.1", "10.0.0.255").build();
    assert_eq!(h.send("open1", &spoofed, 0).0, Verdict::Forward);
    let arp =
        FrameBuilder::arp(mac("fa:16:3e:00:00:98"), 2, v4("10.0.0.1"), v4("10.0.0.2")).build();
    assert_eq!(h.send("open1", &arp, 0).0, Verdict::Forward);
}

#[test]
fn multicast_source_and_unknown_port() {
    let mut h = Host::new();
    let f = udp(mac("01:00:5e:00:00:01"), BCAST, "10.0.0.7", "10.0.0.255").build();
    assert_eq!(h.send("open1", &f, 0).0, drop(DropReason::MulticastSource));
    let mut out = Vec::new();
    let v = h.w.process(weft_datapath::PortNo(999), &f, 0, &mut out);
    assert_eq!(v, drop(DropReason::UnknownPort));
    assert!(out.is_empty());
}

#[test]
fn malformed_frames_are_counted() {
    let mut h = Host::new();
    assert_eq!(h.send("vm1", &[0u8; 10], 0).0, drop(DropReason::Truncated));
    let mut f = udp(vm_mac(1), BCAST, "10.0.0.1", "10.0.0.255").build();
    f[14] = 0x44; // IHL 4
    assert_eq!(h.send("vm1", &f, 0).0, drop(DropReason::Malformed));
    let big = vec![0u8; 70_000];
    assert_eq!(h.send("vm1", &big, 0).0, drop(DropReason::Oversized));
    let c = h.dp.counters();
    let p = c.port_by_name("vm1").unwrap();
    assert_eq!(p.rx, 3);
    assert_eq!(p.drops_total(), 3);
    assert_eq!(c.stage_drops[Stage::Parse as usize], 3);
}

// ---------------- counters, batches ----------------

#[test]
fn batch_results_and_counters() {
    let mut h = Host::new();
    let p1 = h.port("vm1");
    let good = udp(vm_mac(1), vm_mac(2), "10.0.0.1", "10.0.0.2").build();
    let bcast = FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2")).build();
    let bad = udp(vm_mac(1), vm_mac(2), "10.0.0.9", "10.0.0.2").build();
    let frames: Vec<&[u8]> = vec![&good, &bcast, &bad, &good];
    let mut out = Vec::new();
    let mut res = Vec::new();
    h.w.process_batch(p1, frames, 0, &mut out, &mut res);
    assert_eq!(res.len(), 4);
    assert_eq!(res[0].outputs, 0..1);
    assert_eq!(res[1].outputs, 1..4);
    assert_eq!(res[2].verdict, drop(DropReason::IpSpoof));
    assert_eq!(res[2].outputs, 4..4);
    assert_eq!(res[3].outputs, 4..5);
    let c = h.dp.counters();
    assert_eq!(c.processed, 4);
    assert_eq!(c.port_by_name("vm1").unwrap().rx, 4);
    assert_eq!(c.port_by_name("vm2").unwrap().tx, 3);
    assert_eq!(c.port_by_name("eth1").unwrap().tx, 1);
    assert_eq!(c.flow_cache_hits, 1);
    let stages = c.stages();
    assert_eq!(stages[0].entered, 4);
    let ip = stages.iter().find(|s| s.stage == Stage::IpSpoof).unwrap();
    assert_eq!(ip.dropped, 1);
}

#[test]
fn counters_are_summed_over_workers() {
    let h = Host::new();
    let mut w2 = h.dp.worker();
    let mut w3 = h.dp.worker();
    let f = udp(vm_mac(1), vm_mac(2), "10.0.0.1", "10.0.0.2").build();
    let p = h.port("vm1");
    let mut out = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut o = Vec::new();
            for _ in 0..100 {
                w2.process(p, &f, 0, &mut o);
            }
        });
        s.spawn(|| {
            let mut o = Vec::new();
            for _ in 0..50 {
                w3.process(p, &f, 0, &mut o);
            }
        });
    });
    let mut w = h.dp.worker();
    w.process(p, &f, 0, &mut out);
    assert_eq!(h.dp.counters().port_by_name("vm1").unwrap().rx, 151);
}

// ---------------- reload ----------------

#[test]
fn reload_keeps_port_numbers_and_local_vlans() {
    let cfg = SwitchConfig::from_toml(HOST, "host.toml").unwrap();
    let s1 = Snapshot::compile(&cfg, None).unwrap();
    // Remove net100 and its ports, add a new network and port.
    let text2 = HOST
        .replace(
            "[[network]]\nname = \"net100\"\ntype = \"vlan\"\nphysnet = \"physnet\"\nsegmentation_id = 100\n",
            "[[network]]\nname = \"net300\"\ntype = \"vlan\"\nphysnet = \"physnet\"\nsegmentation_id = 300\n",
        )
        .replace("network = \"net100\"", "network = \"net300\"")
        + "\n[[port]]\nname = \"vm9\"\nnetwork = \"net200\"\nmac = \"fa:16:3e:00:00:09\"\n";
    let cfg2 = SwitchConfig::from_toml(&text2, "host.toml").unwrap();
    let s2 = Snapshot::compile(&cfg2, Some(&s1)).unwrap();
    for name in ["net200", "flat", "local"] {
        assert_eq!(
            s1.network(name).unwrap().local_vlan,
            s2.network(name).unwrap().local_vlan,
            "{name}"
        );
    }
    assert_ne!(
        s2.network("net300").unwrap().local_vlan,
        s2.network("net200").unwrap().local_vlan
    );
    for p in s1.ports() {
        assert_eq!(s2.port_by_name(&p.name).unwrap().no, p.no, "{}", p.name);
    }
    let vm9 = s2.port_by_name("vm9").unwrap();
    assert!(s1.ports().all(|p| p.no != vm9.no));
    let d = s2.diff(&s1);
    assert_eq!(
        d.added.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["vm9"]
    );
    assert!(d.removed.is_empty());
    assert!(s2.generation() != s1.generation());
}

#[test]
fn reload_flushes_macs_of_moved_ports_and_swaps_live() {
    let mut h = Host::new();
    let m = mac("52:54:00:00:00:77");
    // Learn m behind open1 (net100).
    h.send(
        "open1",
        &udp(m, BCAST, "10.0.0.77", "10.0.0.255").build(),
        0,
    );
    assert_eq!(
        h.send(
            "vm1",
            &udp(vm_mac(1), m, "10.0.0.1", "10.0.0.77").build(),
            0
        )
        .1,
        outs(&[("open1", "keep")])
    );
    // Move open1 to net200; remove vm2.
    let text = HOST
        .replace("name = \"open1\"\nnetwork = \"net100\"", "name = \"open1\"\nnetwork = \"net200\"")
        .replace(
            "[[port]]\nname = \"vm2\"\nnetwork = \"net100\"\nmac = \"fa:16:3e:00:00:02\"\nfixed_ips = [\"10.0.0.2\"]\n",
            "",
        );
    let cfg = SwitchConfig::from_toml(&text, "host.toml").unwrap();
    let old = h.dp.snapshot();
    let new = Snapshot::compile(&cfg, Some(&old)).unwrap();
    let d = new.diff(&old);
    assert_eq!(
        d.removed
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec!["vm2"]
    );
    h.dp.swap_snapshot(new);
    // vm1's cached flow to m must not follow open1 into net200: m is unknown in net100 now.
    let (_, o) = h.send(
        "vm1",
        &udp(vm_mac(1), m, "10.0.0.1", "10.0.0.77").build(),
        SEC,
    );
    assert_eq!(o, outs(&[("eth1", "push_vlan:100")]));
    // open1 now floods in net200.
    let (_, o) = h.send(
        "open1",
        &udp(m, BCAST, "10.0.0.77", "10.0.0.255").build(),
        SEC,
    );
    assert_eq!(o, outs(&[("eth1", "push_vlan:200"), ("vm3", "keep")]));
}

// ---------------- trace ----------------

#[test]
fn trace_explains_each_stage() {
    let h = Host::new();
    let steps = h
        .dp
        .trace_description(
            "in_port=vm1 dl_dst=fa:16:3e:00:00:02 udp nw_src=10.0.0.1 nw_dst=10.0.0.2 tp_src=1000 tp_dst=2000",
            0,
        )
        .unwrap();
    let text: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    let all = text.join("\n");
    assert!(all.contains("classify"), "{all}");
    assert!(all.contains("local VLAN"), "{all}");
    assert!(
        all.contains("source MAC fa:16:3e:00:00:01: allowed"),
        "{all}"
    );
    assert!(all.contains("source IP 10.0.0.1: allowed"), "{all}");
    assert!(all.contains("unicast"), "{all}");
    assert!(
        all.ends_with("Datapath actions: output to vm2(keep)"),
        "{all}"
    );

    let spoof =
        h.dp.trace_description("in_port=vm1 udp nw_src=10.0.0.2", 0)
            .unwrap();
    let last = spoof.last().unwrap();
    assert_eq!(last.decision, "Datapath actions: drop (ip_spoof)");
    assert!(spoof
        .iter()
        .any(|s| s.stage == Stage::IpSpoof && s.decision.contains("not the port's")));

    let uplink = h
        .dp
        .trace_description("in_port=eth1 dl_vlan=200 dl_src=52:54:00:00:00:01 arp arp_spa=10.0.0.50 arp_tpa=10.0.0.3", 0)
        .unwrap();
    let all = uplink
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("global VLAN 200 -> local VLAN"), "{all}");
    assert!(all.ends_with("output to vm3(strip_vlan)"), "{all}");

    let to_uplink =
        h.dp.trace_description("in_port=vm3 arp arp_tpa=10.0.0.9", 0)
            .unwrap();
    let all = to_uplink
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("uplink eth1: push global VLAN 200"), "{all}");

    // Trace learns nothing and counts nothing.
    assert_eq!(h.dp.learned_mac_count(), 0);
    assert_eq!(h.dp.counters().processed, 0);

    assert!(h
        .dp
        .trace_description("dl_src=00:00:00:00:00:01", 0)
        .is_err());
    assert!(h.dp.trace_description("in_port=nope", 0).is_err());
    assert!(h.dp.trace_description("in_port=vm1 dl_src=zz", 0).is_err());
    assert!(h.dp.trace_description("in_port=vm1 frobnicate", 0).is_err());
    let tr = h.dp.trace(h.port("vm1"), &[1, 2, 3], 0);
    assert_eq!(tr.len(), 1);
    assert!(tr[0].decision.contains("drop (truncated)"), "{:?}", tr);
}

#[test]
fn tpid_constants_are_wired() {
    assert_eq!(TPID_8021Q, 0x8100);
}

// ---------------- issue 12: mutations the suite used to miss ----------------

/// IPv6 anti-spoofing checks an allowed address pair's MAC as well as its
/// address: the pair's address is allowed from the pair's MAC only, and the
/// port's fixed IPv6 address from the port's own MAC only.
#[test]
fn ipv6_pairs_are_bound_to_their_mac() {
    let text = HOST.replace(
        r#"{ mac = "fa:16:3e:00:00:a1", ip_address = "10.0.0.101" }]"#,
        r#"{ mac = "fa:16:3e:00:00:a1", ip_address = "10.0.0.101" }, { mac = "fa:16:3e:00:00:a2", ip_address = "2001:db8::a2" }]"#,
    );
    assert_ne!(text, HOST, "the fixture's pair line moved");
    let mut h = Host::from_toml(&text);
    let pair_mac = mac("fa:16:3e:00:00:a2");
    let ok = udp(pair_mac, BCAST, "2001:db8::a2", "ff02::1").build();
    assert_eq!(h.send("vm1", &ok, 0).0, Verdict::Forward);
    let wrong_mac = udp(vm_mac(1), BCAST, "2001:db8::a2", "ff02::1").build();
    assert_eq!(h.send("vm1", &wrong_mac, 0).0, drop(DropReason::IpSpoof));
    let fixed_from_pair_mac = udp(pair_mac, BCAST, "2001:db8::1", "ff02::1").build();
    assert_eq!(
        h.send("vm1", &fixed_from_pair_mac, 0).0,
        drop(DropReason::IpSpoof)
    );
    let v4_pair_from_v6_pair_mac = udp(pair_mac, BCAST, "10.0.0.101", "10.0.0.255").build();
    assert_eq!(
        h.send("vm1", &v4_pair_from_v6_pair_mac, 0).0,
        drop(DropReason::IpSpoof)
    );
}

/// A reload that turns port security on drops a spoofed flow that the flow
/// cache already held as allowed.
#[test]
fn reload_enabling_port_security_drops_a_cached_spoofed_flow() {
    let mut h = Host::new();
    let spoofed = udp(mac("fa:16:3e:00:00:07"), BCAST, "10.0.0.99", "10.0.0.255").build();
    assert_eq!(h.send("open1", &spoofed, 0).0, Verdict::Forward);
    assert_eq!(h.send("open1", &spoofed, 0).0, Verdict::Forward);
    let text = HOST.replace(
        "name = \"open1\"\nnetwork = \"net100\"\nmac = \"fa:16:3e:00:00:07\"\nport_security = false\n",
        "name = \"open1\"\nnetwork = \"net100\"\nmac = \"fa:16:3e:00:00:07\"\nfixed_ips = [\"10.0.0.7\"]\n",
    );
    assert_ne!(text, HOST, "the fixture's open1 section moved");
    let cfg = SwitchConfig::from_toml(&text, "host.toml").unwrap();
    let old = h.dp.snapshot();
    h.dp.swap_snapshot(Snapshot::compile(&cfg, Some(&old)).unwrap());
    assert_eq!(h.send("open1", &spoofed, SEC).0, drop(DropReason::IpSpoof));
    let honest = udp(mac("fa:16:3e:00:00:07"), BCAST, "10.0.0.7", "10.0.0.255").build();
    assert_eq!(h.send("open1", &honest, SEC).0, Verdict::Forward);
}
