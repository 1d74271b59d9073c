//! The firewall core: rule matching against a reference evaluator (property test), the TCP
//! tracker's states and window check, timeouts, related ICMP errors, the table bound, and
//! re-checking connections when rules change.

use super::packet::{Inner, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::rules::{has_ports, is_icmp, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::*;
use ipnet::IpNet;
use proptest::prelude::*;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const S: u64 = 1_000_000_000;
const PORT: PortNo = PortNo(1);
const ZONE: u16 = 1;

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))
}

fn v6(d: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, d))
}

fn rule(id: &str, dir: Direction, proto: Option<u8>, min: Option<u16>, max: Option<u16>) -> Rule {
    Rule {
        id: id.into(),
        direction: dir,
        family: Family::V4,
        protocol: proto,
        port_min: min,
        port_max: max,
        remote: Remote::Any,
    }
}

fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8, seq: u32, ack: u32) -> Packet {
    Packet {
        src,
        dst,
        proto: PROTO_TCP,
        transport: Transport::Tcp {
            sport,
            dport,
            flags,
            seq,
            ack,
            len: 0,
        },
    }
}

fn data(p: Packet, n: u32) -> Packet {
    match p.transport {
        Transport::Tcp {
            sport,
            dport,
            flags,
            seq,
            ack,
            ..
        } => Packet {
            transport: Transport::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
                len: n,
            },
            ..p
        },
        _ => p,
    }
}

fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Packet {
    Packet {
        src,
        dst,
        proto: PROTO_UDP,
        transport: Transport::Ports { sport, dport },
    }
}

/// A firewall admitting TCP 22 in (rule 0) and anything out (rule 1).
fn ssh_only() -> PortFirewall {
    PortFirewall {
        rules: RuleSet::compile(&[
            rule(
                "ssh",
                Direction::Ingress,
                Some(PROTO_TCP),
                Some(22),
                Some(22),
            ),
            rule("out", Direction::Egress, None, None, None),
        ]),
        stateful: true,
    }
}

fn chk(
    ct: &mut ConnTable,
    fw: &PortFirewall,
    dir: Direction,
    p: &Packet,
    now: u64,
) -> Result<Allow, Deny> {
    check(ct, fw, ZONE, PORT, dir, p, now)
}

/// The guest (10.0.0.1, on PORT) is the server; 10.0.0.2 the client.
const VM: u8 = 1;
const PEER: u8 = 2;

#[test]
fn a_tcp_handshake_data_and_close_pass_and_replies_need_no_rule() {
    let fw = ssh_only();
    let mut ct = ConnTable::new(16);
    let (i, e) = (Direction::Ingress, Direction::Egress);
    let c = |f, s, a| tcp(v4(PEER), 40000, v4(VM), 22, f, s, a);
    let r = |f, s, a| tcp(v4(VM), 22, v4(PEER), 40000, f, s, a);
    assert_eq!(
        chk(&mut ct, &fw, i, &c(TCP_SYN, 100, 0), 0),
        Ok(Allow::Rule(0))
    );
    // The SYN-ACK goes out through egress: the connection, not the egress rule, lets it.
    let fw_no_egress = PortFirewall {
        rules: RuleSet::compile(&[rule("ssh", i, Some(PROTO_TCP), Some(22), Some(22))]),
        stateful: true,
    };
    assert_eq!(
        chk(
            &mut ct,
            &fw_no_egress,
            e,
            &r(TCP_SYN | TCP_ACK, 5000, 101),
            S
        ),
        Ok(Allow::Established {
            rule: 0,
            reply: true
        })
    );
    assert_eq!(
        chk(&mut ct, &fw_no_egress, i, &c(TCP_ACK, 101, 5001), S),
        Ok(Allow::Established {
            rule: 0,
            reply: false
        })
    );
    assert_eq!(ct.entries()[0].state, ConnState::Established);
    assert!(chk(
        &mut ct,
        &fw_no_egress,
        i,
        &data(c(TCP_ACK, 101, 5001), 1000),
        S
    )
    .is_ok());
    assert!(chk(
        &mut ct,
        &fw_no_egress,
        e,
        &data(r(TCP_ACK, 5001, 1101), 10),
        S
    )
    .is_ok());
    assert!(chk(
        &mut ct,
        &fw_no_egress,
        i,
        &c(TCP_ACK | TCP_FIN, 1101, 5011),
        S
    )
    .is_ok());
    assert_eq!(ct.entries()[0].state, ConnState::FinWait);
    assert!(chk(
        &mut ct,
        &fw_no_egress,
        e,
        &r(TCP_ACK | TCP_FIN, 5011, 1102),
        S
    )
    .is_ok());
    assert_eq!(ct.entries()[0].state, ConnState::TimeWait);
    assert_eq!(ct.stats().invalid, 0);
}

#[test]
fn a_closed_port_and_a_connection_from_the_wrong_side_are_refused() {
    let fw = ssh_only();
    let mut ct = ConnTable::new(16);
    let syn23 = tcp(v4(PEER), 40000, v4(VM), 23, TCP_SYN, 1, 0);
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &syn23, 0),
        Err(Deny::NoRule)
    );
    assert!(ct.is_empty());
    // Mid-stream segments with no connection are invalid, not new.
    let ack22 = tcp(v4(PEER), 40000, v4(VM), 22, TCP_ACK, 1, 1);
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &ack22, 0),
        Err(Deny::Invalid)
    );
    let synack = tcp(v4(PEER), 40000, v4(VM), 22, TCP_SYN | TCP_ACK, 1, 1);
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &synack, 0),
        Err(Deny::Invalid)
    );
    assert_eq!(ct.stats().invalid, 2);
}

#[test]
fn out_of_window_and_bad_acks_are_invalid_and_counted() {
    let fw = ssh_only();
    let mut ct = ConnTable::new(16);
    let i = Direction::Ingress;
    let e = Direction::Egress;
    let c = |f, s, a| tcp(v4(PEER), 40000, v4(VM), 22, f, s, a);
    let r = |f, s, a| tcp(v4(VM), 22, v4(PEER), 40000, f, s, a);
    chk(&mut ct, &fw, i, &c(TCP_SYN, 100, 0), 0).unwrap();
    // A SYN-ACK acknowledging another ISN.
    assert_eq!(
        chk(&mut ct, &fw, e, &r(TCP_SYN | TCP_ACK, 5000, 999), 0),
        Err(Deny::Invalid)
    );
    // Data before the handshake completes.
    assert_eq!(
        chk(&mut ct, &fw, i, &c(TCP_ACK, 101, 5001), 0),
        Err(Deny::Invalid)
    );
    chk(&mut ct, &fw, e, &r(TCP_SYN | TCP_ACK, 5000, 101), 0).unwrap();
    chk(&mut ct, &fw, i, &c(TCP_ACK, 101, 5001), 0).unwrap();
    // Far outside the window.
    let far = 101u32.wrapping_add(MAX_WINDOW_PLUS);
    assert_eq!(
        chk(&mut ct, &fw, i, &c(TCP_ACK, far, 5001), 0),
        Err(Deny::Invalid)
    );
    // Acknowledging data the server never sent.
    assert_eq!(
        chk(&mut ct, &fw, i, &c(TCP_ACK, 101, 9000), 0),
        Err(Deny::Invalid)
    );
    // A blind RST out of window.
    assert_eq!(
        chk(&mut ct, &fw, i, &c(TCP_RST, far, 0), 0),
        Err(Deny::Invalid)
    );
    assert_eq!(ct.stats().invalid, 5);
    assert_eq!(ct.entries()[0].state, ConnState::Established);
    // An in-window RST closes it; after it nothing but a new SYN passes.
    chk(&mut ct, &fw, i, &c(TCP_RST, 101, 0), 0).unwrap();
    assert_eq!(ct.entries()[0].state, ConnState::Close);
    assert_eq!(
        chk(&mut ct, &fw, e, &r(TCP_ACK, 5001, 101), 0),
        Err(Deny::Invalid)
    );
    assert_eq!(
        chk(&mut ct, &fw, i, &c(TCP_SYN, 7000, 0), S),
        Ok(Allow::Rule(0))
    );
    assert_eq!(ct.entries()[0].state, ConnState::SynSent);
}

const MAX_WINDOW_PLUS: u32 = conntrack::MAX_WINDOW + 10;

#[test]
fn udp_flows_time_out_and_replies_extend_them() {
    let fw = ssh_only();
    let mut ct = ConnTable::new(16);
    let out = udp(v4(VM), 5000, v4(PEER), 53);
    let back = udp(v4(PEER), 53, v4(VM), 5000);
    assert_eq!(
        chk(&mut ct, &fw, Direction::Egress, &out, 0),
        Ok(Allow::Rule(1))
    );
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &back, 29 * S),
        Ok(Allow::Established {
            rule: 1,
            reply: true
        })
    );
    assert_eq!(ct.entries()[0].state, ConnState::Replied);
    // Replied flows live 180 s from the last packet.
    assert!(chk(&mut ct, &fw, Direction::Ingress, &back, 200 * S).is_ok());
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &back, 400 * S),
        Err(Deny::NoRule)
    );
    // An unreplied flow lives 30 s.
    let mut ct = ConnTable::new(16);
    chk(&mut ct, &fw, Direction::Egress, &out, 0).unwrap();
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &back, 31 * S),
        Err(Deny::NoRule)
    );
    assert_eq!(ct.stats().expired, 1);
}

#[test]
fn icmp_echo_replies_and_related_errors_pass() {
    let fw = ssh_only();
    let mut ct = ConnTable::new(16);
    let echo = |src, dst, ty| Packet {
        src,
        dst,
        proto: PROTO_ICMP,
        transport: Transport::Icmp {
            ty,
            code: 0,
            id: 77,
            inner: None,
        },
    };
    chk(
        &mut ct,
        &fw,
        Direction::Egress,
        &echo(v4(VM), v4(PEER), 8),
        0,
    )
    .unwrap();
    assert!(chk(
        &mut ct,
        &fw,
        Direction::Ingress,
        &echo(v4(PEER), v4(VM), 0),
        S
    )
    .is_ok());
    // A port-unreachable about the VM's UDP flow is related; about another flow it is not.
    chk(
        &mut ct,
        &fw,
        Direction::Egress,
        &udp(v4(VM), 5000, v4(PEER), 53),
        0,
    )
    .unwrap();
    let unreach = |sport| Packet {
        src: v4(9),
        dst: v4(VM),
        proto: PROTO_ICMP,
        transport: Transport::Icmp {
            ty: 3,
            code: 3,
            id: 0,
            inner: Some(Inner {
                src: v4(VM),
                dst: v4(PEER),
                proto: PROTO_UDP,
                sport,
                dport: 53,
            }),
        },
    };
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &unreach(5000), S),
        Ok(Allow::Related { rule: 1 })
    );
    assert_eq!(
        chk(&mut ct, &fw, Direction::Ingress, &unreach(5001), S),
        Err(Deny::NoRule)
    );
}

#[test]
fn a_full_table_refuses_new_connections_and_keeps_established_ones() {
    let fw = ssh_only();
    let mut ct = ConnTable::new(4);
    let i = Direction::Ingress;
    let c = |sport, f, s, a| tcp(v4(PEER), sport, v4(VM), 22, f, s, a);
    let r = |sport, f, s, a| tcp(v4(VM), 22, v4(PEER), sport, f, s, a);
    chk(&mut ct, &fw, i, &c(1000, TCP_SYN, 1, 0), 0).unwrap();
    chk(
        &mut ct,
        &fw,
        Direction::Egress,
        &r(1000, TCP_SYN | TCP_ACK, 9, 2),
        0,
    )
    .unwrap();
    chk(&mut ct, &fw, i, &c(1000, TCP_ACK, 2, 10), 0).unwrap();
    // A SYN flood fills the table to its bound and no further.
    let mut refused = 0;
    for sport in 2000..2100 {
        if chk(&mut ct, &fw, i, &c(sport, TCP_SYN, 1, 0), S) == Err(Deny::TableFull) {
            refused += 1;
        }
    }
    assert_eq!(ct.len(), 4);
    assert_eq!(refused, 97);
    assert_eq!(ct.stats().refused_full, 97);
    // The refusals are reported (for the log) once, then not again within the interval.
    assert_eq!(ct.refusal_report(S), Some(97));
    assert_eq!(ct.refusal_report(S), None);
    for sport in 2100..2105 {
        let _ = chk(&mut ct, &fw, i, &c(sport, TCP_SYN, 1, 0), 2 * S);
    }
    assert_eq!(ct.refusal_report(2 * S), None);
    let next = S + super::conntrack::REFUSAL_LOG_INTERVAL;
    assert_eq!(ct.refusal_report(next), Some(5));
    assert_eq!(ct.len(), 4);
    // The established connection still passes, both ways.
    assert!(chk(&mut ct, &fw, i, &c(1000, TCP_ACK, 2, 10), 2 * S).is_ok());
    assert!(chk(
        &mut ct,
        &fw,
        Direction::Egress,
        &r(1000, TCP_ACK, 10, 2),
        2 * S
    )
    .is_ok());
    // Once the half-open entries expire (120 s), new connections fit again.
    assert_eq!(
        chk(&mut ct, &fw, i, &c(3000, TCP_SYN, 1, 0), 200 * S),
        Ok(Allow::Rule(0))
    );
    assert_eq!(ct.len(), 2);
}

#[test]
fn removing_a_rule_cuts_only_the_connections_it_alone_admitted() {
    let i = Direction::Ingress;
    let both = PortFirewall {
        rules: RuleSet::compile(&[
            rule("ssh", i, Some(PROTO_TCP), Some(22), Some(22)),
            rule("web", i, Some(PROTO_TCP), Some(80), Some(80)),
            rule("any-tcp-from-peer", i, Some(PROTO_TCP), None, None),
        ]),
        stateful: true,
    };
    let mut ct = ConnTable::new(16);
    chk(
        &mut ct,
        &both,
        i,
        &tcp(v4(PEER), 1, v4(VM), 22, TCP_SYN, 1, 0),
        0,
    )
    .unwrap();
    chk(
        &mut ct,
        &both,
        i,
        &tcp(v4(PEER), 2, v4(VM), 80, TCP_SYN, 1, 0),
        0,
    )
    .unwrap();
    // Another port's connection is not touched by this port's change.
    check(
        &mut ct,
        &both,
        ZONE,
        PortNo(2),
        i,
        &tcp(v4(PEER), 3, v4(3), 22, TCP_SYN, 1, 0),
        0,
    )
    .unwrap();
    let without_ssh = PortFirewall {
        rules: RuleSet::compile(&[rule("web", i, Some(PROTO_TCP), Some(80), Some(80))]),
        stateful: true,
    };
    assert_eq!(recheck(&mut ct, PORT, &without_ssh), 1);
    let left: Vec<_> = ct
        .entries()
        .iter()
        .map(|c| (c.key.port, c.responder().port, c.rule))
        .collect();
    assert_eq!(left, [(PORT, 80, 0), (PortNo(2), 22, 0)]);
    // With a broader rule remaining the connection is kept, credited to it.
    let mut ct2 = ConnTable::new(16);
    chk(
        &mut ct2,
        &both,
        i,
        &tcp(v4(PEER), 1, v4(VM), 22, TCP_SYN, 1, 0),
        0,
    )
    .unwrap();
    let broad = PortFirewall {
        rules: RuleSet::compile(&[rule("any-tcp", i, Some(PROTO_TCP), None, None)]),
        stateful: true,
    };
    assert_eq!(recheck(&mut ct2, PORT, &broad), 0);
    assert_eq!(ct2.entries()[0].rule, 0);
}

#[test]
fn stateless_ports_need_a_rule_each_way_and_implicit_rules_hold() {
    let i = Direction::Ingress;
    let fw = PortFirewall {
        rules: RuleSet::compile(&[rule("ssh", i, Some(PROTO_TCP), Some(22), Some(22))]),
        stateful: false,
    };
    let mut ct = ConnTable::new(16);
    let syn = tcp(v4(PEER), 1, v4(VM), 22, TCP_SYN, 1, 0);
    let ack = tcp(v4(PEER), 1, v4(VM), 22, TCP_ACK, 2, 2);
    assert_eq!(chk(&mut ct, &fw, i, &syn, 0), Ok(Allow::Rule(0)));
    assert_eq!(chk(&mut ct, &fw, i, &ack, 0), Ok(Allow::Rule(0)));
    let reply = tcp(v4(VM), 22, v4(PEER), 1, TCP_SYN | TCP_ACK, 1, 2);
    assert_eq!(
        chk(&mut ct, &fw, Direction::Egress, &reply, 0),
        Err(Deny::NoRule)
    );
    assert!(ct.is_empty());
    // DHCP out and in, ND: no rule needed.
    let dhcp = udp(v4(0), 68, IpAddr::V4(Ipv4Addr::BROADCAST), 67);
    assert_eq!(
        chk(&mut ct, &fw, Direction::Egress, &dhcp, 0),
        Ok(Allow::Implicit("dhcp client"))
    );
    let offer = udp(v4(254), 67, v4(VM), 68);
    assert!(chk(&mut ct, &fw, i, &offer, 0).is_ok());
    // A DHCP "reply" sent by the VM is not implicit.
    assert_eq!(
        chk(&mut ct, &fw, Direction::Egress, &offer, 0),
        Err(Deny::NoRule)
    );
    let ns = Packet {
        src: v6(1),
        dst: v6(2),
        proto: PROTO_ICMPV6,
        transport: Transport::Icmp {
            ty: 135,
            code: 0,
            id: 0,
            inner: None,
        },
    };
    assert!(chk(&mut ct, &fw, i, &ns, 0).is_ok());
    assert!(chk(&mut ct, &fw, Direction::Egress, &ns, 0).is_ok());
    let ra = Packet {
        transport: Transport::Icmp {
            ty: 134,
            code: 0,
            id: 0,
            inner: None,
        },
        ..ns
    };
    assert!(chk(&mut ct, &fw, i, &ra, 0).is_ok());
    assert_eq!(
        chk(&mut ct, &fw, Direction::Egress, &ra, 0),
        Err(Deny::NoRule)
    );
}

#[test]
fn packets_parse_from_frames() {
    use crate::build::{FrameBuilder, SpecL4};
    use crate::frame::FrameView;
    use crate::mac::MacAddr;
    let m = MacAddr([2, 0, 0, 0, 0, 1]);
    let mut f = FrameBuilder::ip(
        m,
        m,
        v4(1),
        v4(2),
        SpecL4::Tcp {
            sport: 1234,
            dport: 22,
            flags: TCP_SYN | TCP_ACK,
        },
    )
    .payload(100)
    .build();
    let v = FrameView::parse(&f).unwrap();
    f[v.l4_offset + 4..v.l4_offset + 8].copy_from_slice(&7u32.to_be_bytes());
    f[v.l4_offset + 8..v.l4_offset + 12].copy_from_slice(&9u32.to_be_bytes());
    let p = Packet::parse(&f, &v).unwrap();
    assert_eq!(
        p.transport,
        Transport::Tcp {
            sport: 1234,
            dport: 22,
            flags: TCP_SYN | TCP_ACK,
            seq: 7,
            ack: 9,
            len: 100
        }
    );
    let arp =
        FrameBuilder::arp(m, 1, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)).build();
    assert_eq!(Packet::parse(&arp, &FrameView::parse(&arp).unwrap()), None);
}

// ---- the property test: compiled rules against a reference evaluator ----

/// Neutron's semantics, written as plainly as possible, over the uncompiled rules.
fn reference(rules: &[Rule], dir: Direction, p: &Packet) -> Option<u32> {
    let fam = match p.src {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    };
    for (i, r) in rules.iter().enumerate() {
        if r.direction != dir || r.family != fam {
            continue;
        }
        if let Some(mut proto) = r.protocol {
            if proto == PROTO_ICMP && fam == Family::V6 {
                proto = PROTO_ICMPV6;
            }
            if proto != p.proto {
                continue;
            }
            if has_ports(proto) {
                let d = match p.transport {
                    Transport::Tcp { dport, .. } | Transport::Ports { dport, .. } => dport,
                    _ => 0,
                };
                if r.port_min.is_some_and(|m| d < m) || r.port_max.is_some_and(|m| d > m) {
                    continue;
                }
            }
            if is_icmp(proto) {
                let Transport::Icmp { ty, code, .. } = p.transport else {
                    continue;
                };
                if r.port_min.is_some_and(|t| u16::from(ty) != t)
                    || r.port_max.is_some_and(|c| u16::from(code) != c)
                {
                    continue;
                }
            }
        }
        let peer = match dir {
            Direction::Ingress => p.src,
            Direction::Egress => p.dst,
        };
        let ok = match &r.remote {
            Remote::Any => true,
            Remote::Prefix(n) => n.contains(&peer),
            Remote::Group { members, .. } => members.nets().iter().any(|n| n.contains(&peer)),
        };
        if ok {
            return Some(i as u32);
        }
    }
    None
}

fn arb_addr(fam: Family) -> impl Strategy<Value = IpAddr> {
    // A few addresses close together (so that prefixes sometimes hold them, sometimes not).
    let v = (0u8..8, 0u8..4);
    v.prop_map(move |(a, b)| match fam {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(10, 0, b, a)),
        Family::V6 => IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            u16::from(b),
            0,
            0,
            0,
            u16::from(a),
        )),
    })
}

fn arb_net(fam: Family) -> impl Strategy<Value = IpNet> {
    let max = if fam == Family::V4 { 32u8 } else { 128 };
    (arb_addr(fam), 0..=max).prop_map(|(a, len)| IpNet::new(a, len).unwrap().trunc())
}

fn arb_family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn arb_dir() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)]
}

const PROTOS: [u8; 7] = [1, 6, 17, 58, 132, 47, 33];

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        arb_family(),
        arb_dir(),
        proptest::option::of(proptest::sample::select(&PROTOS[..])),
    )
        .prop_flat_map(|(fam, dir, proto)| {
            let ports = match proto {
                Some(p) if is_icmp(p) => (
                    proptest::option::of(0u16..12),
                    proptest::option::of(0u16..4),
                )
                    .prop_filter("code needs a type", |(t, c)| t.is_some() || c.is_none())
                    .boxed(),
                Some(p) if has_ports(p) => prop_oneof![
                    Just((None, None)),
                    (20u16..30, 0u16..5).prop_map(|(a, w)| (Some(a), Some(a + w))),
                ]
                .boxed(),
                _ => Just((None, None)).boxed(),
            };
            let remote = prop_oneof![
                Just(Remote::Any),
                arb_net(fam).prop_map(Remote::Prefix),
                proptest::collection::vec(
                    prop_oneof![arb_net(fam), arb_net(Family::V4), arb_net(Family::V6)],
                    0..4
                )
                .prop_map(|members| Remote::Group {
                    id: "g".into(),
                    members: std::sync::Arc::new(rules::Members::new(members)),
                }),
            ];
            (ports, remote).prop_map(move |((port_min, port_max), remote)| Rule {
                id: "r".into(),
                direction: dir,
                family: fam,
                protocol: proto,
                port_min,
                port_max,
                remote,
            })
        })
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    arb_family().prop_flat_map(|fam| {
        let protos: Vec<u8> = PROTOS
            .iter()
            .copied()
            .filter(|&p| match fam {
                Family::V4 => p != PROTO_ICMPV6,
                Family::V6 => p != PROTO_ICMP,
            })
            .collect();
        (
            arb_addr(fam),
            arb_addr(fam),
            proptest::sample::select(protos),
            18u16..32,
            18u16..32,
            0u8..12,
            0u8..4,
        )
            .prop_map(|(src, dst, proto, sport, dport, ty, code)| {
                let transport = match proto {
                    PROTO_TCP => Transport::Tcp {
                        sport,
                        dport,
                        flags: TCP_SYN,
                        seq: 0,
                        ack: 0,
                        len: 0,
                    },
                    p if has_ports(p) => Transport::Ports { sport, dport },
                    p if is_icmp(p) => Transport::Icmp {
                        ty,
                        code,
                        id: 0,
                        inner: None,
                    },
                    _ => Transport::Other,
                };
                Packet {
                    src,
                    dst,
                    proto,
                    transport,
                }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The compiled rule set picks the same first rule as the reference, for every direction.
    #[test]
    fn compiled_rules_agree_with_the_reference(
        rules in proptest::collection::vec(arb_rule(), 0..12),
        packets in proptest::collection::vec(arb_packet(), 1..8),
    ) {
        let set = RuleSet::compile(&rules);
        for p in &packets {
            for dir in [Direction::Ingress, Direction::Egress] {
                prop_assert_eq!(set.first_match(dir, p), reference(&rules, dir, p), "{:?} {:?}", dir, p);
            }
        }
    }

    /// Stateful UDP against a model: a packet passes iff a rule admits it in its own
    /// direction, or it belongs to a flow a rule admitted earlier (either way round), and the
    /// table never holds more than its bound.
    #[test]
    fn stateful_flows_agree_with_a_model(
        rules in proptest::collection::vec(arb_rule(), 0..6),
        steps in proptest::collection::vec((arb_dir(), 0u8..4, 18u16..22, 18u16..22), 1..60),
        cap in 1usize..6,
    ) {
        let fw = PortFirewall { rules: RuleSet::compile(&rules), stateful: true };
        let mut ct = ConnTable::new(cap);
        let mut flows: HashSet<(IpAddr, u16, u16)> = HashSet::new();
        for (dir, peer, vm_port, peer_port) in steps {
            let (vm, peer) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)), v4(peer));
            let p = match dir {
                Direction::Egress => udp(vm, vm_port, peer, peer_port),
                Direction::Ingress => udp(peer, peer_port, vm, vm_port),
            };
            let flow = (peer, vm_port, peer_port);
            let got = check(&mut ct, &fw, ZONE, PORT, dir, &p, 0);
            let want = if flows.contains(&flow) {
                Some(true)
            } else if reference(&rules, dir, &p).is_some() {
                if flows.len() < cap { flows.insert(flow); Some(true) } else { Some(false) }
            } else {
                None
            };
            match want {
                Some(true) => prop_assert!(got.is_ok(), "{:?}", got),
                Some(false) => prop_assert_eq!(got, Err(Deny::TableFull)),
                None => prop_assert_eq!(got, Err(Deny::NoRule)),
            }
            prop_assert!(ct.len() <= cap);
        }
    }
}
