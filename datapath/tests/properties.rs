//! Property tests: arbitrary bytes never panic and never leak across networks; reloads keep
//! port numbers and local VLANs; offload and edit functions never panic.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use weft_datapath::build::FrameBuilder;
use weft_datapath::frame::{FrameView, TPID_8021AD, TPID_8021Q};
use weft_datapath::offload::{Segments, VirtioNetHdr};
use weft_datapath::snapshot::PortRole;
use weft_datapath::{
    apply_edit, complete_checksum, gso_segment, parse_description, EgressEdit, Output, PortNo,
    Snapshot, SwitchConfig, Verdict,
};

/// Ports a frame entering `in_port` may legitimately reach.
fn allowed_outputs(snap: &Snapshot, in_port: PortNo, frame: &[u8]) -> BTreeSet<PortNo> {
    let p = snap.port(in_port).unwrap();
    let vlans: Vec<u16> = match p.role {
        PortRole::Vm => vec![p.local_vlan],
        PortRole::Uplink => {
            // Only the network the outer tag (or its absence) names.
            let v = FrameView::parse(frame).unwrap();
            let phys = p.physnet.clone();
            snap.networks()
                .iter()
                .filter(|n| n.physnet == phys)
                .filter(|n| match (n.network_type, v.outer_tag()) {
                    (weft_datapath::NetworkType::Flat, None) => true,
                    (weft_datapath::NetworkType::Flat, Some(t)) => t.vid() == 0,
                    (weft_datapath::NetworkType::Vlan { segmentation_id }, Some(t)) => {
                        t.vid() == segmentation_id
                    }
                    _ => false,
                })
                .map(|n| n.local_vlan)
                .collect()
        }
    };
    let mut set = BTreeSet::new();
    for q in snap.ports() {
        if q.no == in_port {
            continue;
        }
        let ok = match q.role {
            PortRole::Vm => vlans.contains(&q.local_vlan),
            PortRole::Uplink => snap
                .networks()
                .iter()
                .any(|n| n.uplink == Some(q.no) && vlans.contains(&n.local_vlan)),
        };
        if ok {
            set.insert(q.no);
        }
    }
    set
}

fn seeds() -> Vec<Vec<u8>> {
    let b = mac("ff:ff:ff:ff:ff:ff");
    vec![
        udp(vm_mac(1), b, "10.0.0.1", "10.0.0.255").build(),
        udp(vm_mac(1), b, "10.0.0.1", "10.0.0.255")
            .dot1q(100)
            .build(),
        udp(vm_mac(3), b, "10.0.0.3", "10.0.0.255")
            .dot1q(200)
            .build(),
        udp(vm_mac(1), b, "10.0.0.1", "10.0.0.255")
            .vlan(TPID_8021AD, 100)
            .dot1q(200)
            .build(),
        FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2")).build(),
        FrameBuilder::arp(vm_mac(1), 1, v4("10.0.0.1"), v4("10.0.0.2"))
            .vlan(TPID_8021Q, 100)
            .build(),
        FrameBuilder::nd(
            vm_mac(1),
            136,
            "2001:db8::1".parse().unwrap(),
            Some(vm_mac(1)),
        )
        .build(),
        udp(vm_mac(1), vm_mac(2), "2001:db8::1", "2001:db8::2").build(),
    ]
}

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Raw bytes of any length (incl. empty and short).
        proptest::collection::vec(any::<u8>(), 0..200),
        // A real frame with random byte flips and a random cut.
        (
            0..8usize,
            proptest::collection::vec((0..120usize, any::<u8>()), 0..8),
            0..130usize
        )
            .prop_map(|(i, flips, cut)| {
                let mut f = seeds()[i].clone();
                for (at, val) in flips {
                    if at < f.len() {
                        f[at] = val;
                    }
                }
                let cut = cut.min(f.len());
                if cut > 0 && cut % 3 == 0 {
                    f.truncate(cut);
                }
                f
            }),
        // A valid Ethernet header + tags followed by random bytes.
        (
            any::<[u8; 12]>(),
            proptest::collection::vec(
                (
                    prop_oneof![Just(0x8100u16), Just(0x88a8u16), Just(0x9100u16)],
                    0u16..4096
                ),
                0..4
            ),
            prop_oneof![
                Just(0x0800u16),
                Just(0x86ddu16),
                Just(0x0806u16),
                any::<u16>()
            ],
            proptest::collection::vec(any::<u8>(), 0..120)
        )
            .prop_map(|(macs, tags, et, rest)| {
                let mut f = macs.to_vec();
                for (tpid, vid) in tags {
                    f.extend_from_slice(&tpid.to_be_bytes());
                    f.extend_from_slice(&vid.to_be_bytes());
                }
                f.extend_from_slice(&et.to_be_bytes());
                f.extend_from_slice(&rest);
                f
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic_or_leak(frames in proptest::collection::vec((0usize..8, frame_strategy()), 1..12)) {
        let mut h = Host::new();
        let snap = h.dp.snapshot();
        let ports: Vec<PortNo> = snap.ports().map(|p| p.no).collect();
        let mut t = 0u64;
        for (pi, f) in &frames {
            let in_port = ports[pi % ports.len()];
            let mut out: Vec<Output> = Vec::new();
            t += SEC;
            let v = h.w.process(in_port, f, t, &mut out);
            // trace must agree and not panic either
            let _ = h.dp.trace(in_port, f, t);
            match v {
                Verdict::Drop { .. } => prop_assert!(out.is_empty()),
                // These hosts have no subnets: the switch answers no DHCP here.
                Verdict::Dhcp => prop_assert!(false, "a DHCP answer without a DHCP subnet"),
                // Taken by the metadata service: only IPv4 to, or ARP for, 169.254.169.254.
                Verdict::Metadata => {
                    prop_assert!(out.is_empty());
                    let meta = weft_datapath::metadata::METADATA_IP;
                    let l3 = FrameView::parse(f).unwrap().l3;
                    prop_assert!(
                        matches!(l3, weft_datapath::frame::L3::Ipv4 { dst, .. } if dst == meta)
                            || matches!(l3, weft_datapath::frame::L3::Arp(a) if a.tpa == meta),
                        "{l3:?}"
                    );
                }
                Verdict::Forward => {
                    prop_assert!(!out.is_empty());
                    let allowed = allowed_outputs(&snap, in_port, f);
                    for o in &out {
                        prop_assert!(allowed.contains(&o.port), "in {in_port} -> {o:?} not in {allowed:?}");
                        prop_assert!(o.port != in_port);
                        // VM ports are never sent a tagged frame; uplinks only get their segment's tag.
                        let dst = snap.port(o.port).unwrap();
                        let tagged_in = FrameView::parse(f).unwrap().tag_count > 0;
                        match dst.role {
                            PortRole::Vm => prop_assert!(
                                (tagged_in && o.edit == EgressEdit::StripTag) || (!tagged_in && o.edit == EgressEdit::Keep),
                                "{o:?}"
                            ),
                            PortRole::Uplink => prop_assert!(
                                matches!(o.edit, EgressEdit::Keep | EgressEdit::PushTag(100) | EgressEdit::PushTag(200)),
                                "{o:?}"
                            ),
                        }
                        let mut buf = Vec::new();
                        prop_assert!(apply_edit(o.edit, f, None, &mut buf).is_ok());
                        let ev = FrameView::parse(&buf);
                        prop_assert!(ev.is_ok());
                        if dst.role == PortRole::Vm {
                            prop_assert_eq!(ev.unwrap().tag_count, 0);
                        }
                    }
                }
            }
        }
        let c = h.dp.counters();
        prop_assert_eq!(c.processed, frames.len() as u64);
    }

    #[test]
    fn parser_total_on_bytes(f in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = FrameView::parse(&f);
    }

    #[test]
    fn offloads_never_panic(
        f in frame_strategy(),
        hdr in any::<[u8; 12]>(),
        edit in 0u8..4,
        vid in 0u16..4096,
    ) {
        let mut h = VirtioNetHdr::parse(&hdr, 12).unwrap();
        // Keep segment counts bounded.
        if h.gso_size < 8 { h.gso_size = 8; }
        let mut seg = Segments::new();
        let _ = gso_segment(&f, &h, &mut seg);
        let mut g = f.clone();
        let _ = complete_checksum(&mut g, &mut h);
        let e = match edit { 0 => EgressEdit::Keep, 1 => EgressEdit::StripTag, 2 => EgressEdit::PushTag(vid), _ => EgressEdit::RewriteVid(vid) };
        let mut out = Vec::new();
        let _ = apply_edit(e, &f, Some(&mut h), &mut out);
    }

    #[test]
    fn descriptions_never_panic(words in proptest::collection::vec(
        prop_oneof![
            Just("in_port=vm1".to_string()), Just("in_port=eth1".to_string()), Just("arp".to_string()),
            Just("udp".to_string()), Just("icmp6".to_string()), Just("tcp6".to_string()),
            "[a-z_]{1,10}=[0-9a-f:.]{0,20}", "dl_vlan=[0-9]{1,5}", "nw_src=[0-9.:a-f]{1,20}",
            "nd_target=[0-9a-f:]{2,20}", "tp_src=[0-9]{1,6}",
        ], 0..8)) {
        let h = Host::new();
        let snap = h.dp.snapshot();
        let desc = words.join(" ");
        if let Ok((p, frame)) = parse_description(&desc, &snap) {
            prop_assert!(snap.port(p).is_some());
            prop_assert!(FrameView::parse(&frame).is_ok(), "{desc}");
        }
    }

    #[test]
    fn reload_keeps_numbers(
        nets in proptest::collection::btree_set(0u8..20, 1..10),
        keep in proptest::collection::vec(any::<bool>(), 20),
        ports_per in 1usize..4,
    ) {
        let mk = |nets: &BTreeSet<u8>| {
            let mut t = String::new();
            for n in nets {
                t.push_str(&format!("[[network]]\nname = \"n{n}\"\ntype = \"local\"\n"));
                for p in 0..ports_per {
                    t.push_str(&format!("[[port]]\nname = \"p{n}-{p}\"\nnetwork = \"n{n}\"\nport_security = false\n"));
                }
            }
            SwitchConfig::from_toml(&t, "gen.toml").unwrap()
        };
        let s1 = Snapshot::compile(&mk(&nets), None).unwrap();
        let mut nets2: BTreeSet<u8> = nets.iter().copied().filter(|n| keep[usize::from(*n)]).collect();
        nets2.insert(19);
        nets2.insert(18);
        let s2 = Snapshot::compile(&mk(&nets2), Some(&s1)).unwrap();
        for n in s2.networks() {
            if let Some(o) = s1.network(&n.name) {
                prop_assert_eq!(o.local_vlan, n.local_vlan);
            }
        }
        let vl: BTreeSet<u16> = s2.networks().iter().map(|n| n.local_vlan).collect();
        prop_assert_eq!(vl.len(), s2.networks().len(), "local VLANs unique");
        prop_assert!(vl.iter().all(|v| (1..=4094).contains(v)));
        for p in s2.ports() {
            if let Some(o) = s1.port_by_name(&p.name) {
                prop_assert_eq!(o.no, p.no);
            }
        }
        let nos: BTreeSet<PortNo> = s2.ports().map(|p| p.no).collect();
        prop_assert_eq!(nos.len(), s2.ports().count(), "port numbers unique");
    }
}
