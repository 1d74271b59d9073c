//! The firewall stage through a Worker (flow cache in the path): a port opening only TCP 22,
//! replies, reloads that remove a rule, ports without groups or with port security off, trace
//! and hit counters.

mod common;

use common::*;
use std::sync::Arc;
use weft_datapath::build::{FrameBuilder, SpecL4};
use weft_datapath::{DropReason, MacAddr, Snapshot, SwitchConfig, Verdict};

/// vm1 (10.0.0.1) has security groups: TCP 22 in, anything out. vm2 (10.0.0.2) has none, vm3
/// (10.0.0.3) has port security off.
fn config(ssh_rule: bool) -> String {
    let rule = if ssh_rule {
        r#"
[[security_group.rule]]
id = "ssh-in"
direction = "ingress"
ethertype = "IPv4"
protocol = "tcp"
port_range_min = 22
port_range_max = 22
"#
    } else {
        ""
    };
    format!(
        r#"
[switch]
conntrack_size = 64

[[network]]
name = "n1"
type = "local"

[[port]]
name = "vm1"
network = "n1"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1"]
security_groups = ["sg1"]

[[port]]
name = "vm2"
network = "n1"
mac = "fa:16:3e:00:00:02"
fixed_ips = ["10.0.0.2"]

[[port]]
name = "vm3"
network = "n1"
mac = "fa:16:3e:00:00:03"
port_security = false

[[port]]
name = "vm4"
network = "n1"
mac = "fa:16:3e:00:00:04"
fixed_ips = ["10.0.0.4"]
security_groups = ["peers"]

[[security_group]]
id = "sg1"
members = ["10.0.0.1"]
{rule}
[[security_group.rule]]
id = "all-out"
direction = "egress"
ethertype = "IPv4"

# vm4 takes anything from members of sg1 (vm1), and nothing else.
[[security_group]]
id = "peers"
members = ["10.0.0.4"]
[[security_group.rule]]
id = "from-sg1"
direction = "ingress"
ethertype = "IPv4"
remote_group = "sg1"
"#
    )
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// A TCP segment from vm `a` to vm `b` with these ports, flags, seq and ack.
fn tcp(a: u8, b: u8, sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut f = FrameBuilder::ip(
        vm_mac(a),
        vm_mac(b),
        ip(&format!("10.0.0.{a}")),
        ip(&format!("10.0.0.{b}")),
        SpecL4::Tcp {
            sport,
            dport,
            flags,
        },
    )
    .build();
    // Ethernet 14 + IPv4 20: the TCP header.
    f[34 + 4..34 + 8].copy_from_slice(&seq.to_be_bytes());
    f[34 + 8..34 + 12].copy_from_slice(&ack.to_be_bytes());
    f
}

fn to(port: &str) -> Vec<(String, String)> {
    outs(&[(port, "keep")])
}

/// Teaches the switch where the VMs are (ARP is not the firewall's business).
fn learn(h: &mut Host) {
    for i in 1..=4u8 {
        let arp =
            FrameBuilder::arp(vm_mac(i), 1, v4(&format!("10.0.0.{i}")), v4("10.0.0.9")).build();
        assert_eq!(h.send(&format!("vm{i}"), &arp, 0).0, Verdict::Forward);
    }
}

#[test]
fn only_the_opened_port_connects_and_its_replies_flow() {
    let mut h = Host::from_toml(&config(true));
    learn(&mut h);
    let syn = tcp(2, 1, 40000, 22, SYN, 100, 0);
    assert_eq!(h.send("vm2", &syn, 1), (Verdict::Forward, to("vm1")));
    let synack = tcp(1, 2, 22, 40000, SYN | ACK, 500, 101);
    assert_eq!(h.send("vm1", &synack, 2), (Verdict::Forward, to("vm2")));
    let ack = tcp(2, 1, 40000, 22, ACK, 101, 501);
    for t in 3..10 {
        // Repeated: the flow cache hits, the firewall still runs per frame.
        assert_eq!(h.send("vm2", &ack, t), (Verdict::Forward, to("vm1")));
    }
    // Port 23 is closed; a mid-stream segment with no connection is invalid.
    let syn23 = tcp(2, 1, 40001, 23, SYN, 100, 0);
    let (v, o) = h.send("vm2", &syn23, 11);
    assert_eq!(
        v,
        Verdict::Drop {
            reason: DropReason::SecurityGroup
        }
    );
    assert!(o.is_empty());
    let stray = tcp(2, 1, 40002, 22, ACK, 5, 5);
    assert_eq!(
        h.send("vm2", &stray, 12).0,
        Verdict::Drop {
            reason: DropReason::ConntrackInvalid
        }
    );
    // vm1 may open anything outwards (the egress rule), and vm2's reply comes back.
    let out = tcp(1, 2, 50000, 8080, SYN, 1, 0);
    assert_eq!(h.send("vm1", &out, 13), (Verdict::Forward, to("vm2")));
    let back = tcp(2, 1, 8080, 50000, SYN | ACK, 9, 2);
    assert_eq!(h.send("vm2", &back, 14), (Verdict::Forward, to("vm1")));
    // Drops are counted on vm1, whose rules denied them.
    let c = h.dp.counters();
    let vm1 = c.ports.iter().find(|p| p.name == "vm1").unwrap();
    assert_eq!(vm1.drops[DropReason::SecurityGroup as usize], 1);
    assert_eq!(vm1.drops[DropReason::ConntrackInvalid as usize], 1);
    // Hit counters per rule: the SSH connection's 9 frames, the outbound one's 2.
    let snap = h.dp.snapshot();
    let fw = snap.firewall(h.port("vm1")).unwrap();
    assert_eq!(
        fw.hits(),
        [("ssh-in".to_string(), 9), ("all-out".to_string(), 2)]
    );
}

#[test]
fn ports_without_groups_or_port_security_are_not_filtered() {
    let mut h = Host::from_toml(&config(true));
    learn(&mut h);
    for dport in [22, 23, 9999] {
        let to3 = tcp(2, 3, 1000, dport, SYN, 1, 0);
        assert_eq!(h.send("vm2", &to3, 1), (Verdict::Forward, to("vm3")));
        let to2 = tcp(3, 2, 1000, dport, ACK, 1, 7);
        assert_eq!(h.send("vm3", &to2, 1), (Verdict::Forward, to("vm2")));
    }
    assert!(h.dp.conntrack().is_empty());
    // A broadcast reaches the unfiltered ports even when vm1's rules refuse it.
    let bcast = FrameBuilder::ip(
        vm_mac(2),
        MacAddr::BROADCAST,
        ip("10.0.0.2"),
        ip("10.0.0.255"),
        SpecL4::Udp { sport: 1, dport: 9 },
    )
    .build();
    assert_eq!(h.send("vm2", &bcast, 2), (Verdict::Forward, to("vm3")));
}

#[test]
fn removing_the_rule_cuts_the_established_connection_only() {
    let mut h = Host::from_toml(&config(true));
    learn(&mut h);
    h.send("vm2", &tcp(2, 1, 40000, 22, SYN, 100, 0), 1);
    h.send("vm1", &tcp(1, 2, 22, 40000, SYN | ACK, 500, 101), 2);
    h.send("vm2", &tcp(2, 1, 40000, 22, ACK, 101, 501), 3);
    // And an outbound connection, admitted by the egress rule that stays.
    h.send("vm1", &tcp(1, 2, 50000, 8080, SYN, 1, 0), 3);
    assert_eq!(h.dp.conntrack().len(), 2);
    let cfg = SwitchConfig::from_toml(&config(false), "host.toml").unwrap();
    let new = Snapshot::compile(&cfg, Some(&h.dp.snapshot())).unwrap();
    h.dp.swap_snapshot(new);
    assert_eq!(h.dp.conntrack().len(), 1);
    let ack = tcp(2, 1, 40000, 22, ACK, 101, 501);
    assert_eq!(
        h.send("vm2", &ack, 4).0,
        Verdict::Drop {
            reason: DropReason::ConntrackInvalid
        }
    );
    let back = tcp(2, 1, 8080, 50000, SYN | ACK, 9, 2);
    assert_eq!(h.send("vm2", &back, 5), (Verdict::Forward, to("vm1")));
    // A reload that leaves vm1's rules alone keeps its firewall (and counters) as they are.
    let before = h.dp.snapshot().firewall(h.port("vm1")).cloned().unwrap();
    let again = Snapshot::compile(&cfg, Some(&h.dp.snapshot())).unwrap();
    h.dp.swap_snapshot(again);
    let after = h.dp.snapshot().firewall(h.port("vm1")).cloned().unwrap();
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(h.dp.conntrack().len(), 1);
}

#[test]
fn trace_names_the_rule_or_the_drop_reason() {
    let mut h = Host::from_toml(&config(true));
    learn(&mut h);
    let text = |steps: Vec<weft_datapath::TraceStep>| {
        steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let t = text(h.dp.trace(h.port("vm2"), &tcp(2, 1, 40000, 22, SYN, 100, 0), 1));
    assert!(
        t.contains("firewall   ingress vm1: allowed by rule ssh-in (new connection)"),
        "{t}"
    );
    assert!(t.contains("output to vm1"), "{t}");
    let t = text(h.dp.trace(h.port("vm2"), &tcp(2, 1, 40000, 23, SYN, 100, 0), 1));
    assert!(t.contains("ingress vm1: no rule admits it"), "{t}");
    assert!(t.contains("Datapath actions: drop (security_group)"), "{t}");
    // Tracing changed nothing.
    assert!(h.dp.conntrack().is_empty());
    // A mid-stream segment with no connection.
    let t = text(h.dp.trace(h.port("vm2"), &tcp(2, 1, 40000, 22, ACK, 5, 5), 1));
    assert!(
        t.contains("ingress vm1: invalid in its connection's state"),
        "{t}"
    );
    assert!(
        t.contains("Datapath actions: drop (conntrack_invalid)"),
        "{t}"
    );
    // The reply of an admitted connection names the rule that admitted it.
    h.send("vm2", &tcp(2, 1, 40000, 22, SYN, 100, 0), 2);
    let synack = tcp(1, 2, 22, 40000, SYN | ACK, 500, 101);
    let t = text(h.dp.trace(h.port("vm1"), &synack, 3));
    assert!(
        t.contains("egress vm1: allowed: reply of a connection admitted by rule ssh-in"),
        "{t}"
    );
    assert!(t.contains("output to vm2"), "{t}");
    // A table at its bound (64) refuses the next connection, and the trace says so.
    for sport in 1..64 {
        h.send("vm2", &tcp(2, 1, sport, 22, SYN, 100, 0), 4);
    }
    assert_eq!(h.dp.conntrack().len(), 64);
    let t = text(h.dp.trace(h.port("vm2"), &tcp(2, 1, 41000, 22, SYN, 100, 0), 5));
    assert!(t.contains("ingress vm1: connection table full"), "{t}");
    assert!(t.contains("Datapath actions: drop (conntrack_full)"), "{t}");
    assert_eq!(
        h.send("vm2", &tcp(2, 1, 41000, 22, SYN, 100, 0), 5).0,
        Verdict::Drop {
            reason: DropReason::ConntrackFull
        }
    );
    // The established connection's reply still passes.
    let t = text(h.dp.trace(h.port("vm1"), &synack, 6));
    assert!(t.contains("output to vm2"), "{t}");
}

#[test]
fn a_firewall_needs_port_security_and_rules_are_checked() {
    let bad = |extra: &str| {
        let text = format!(
            "[[network]]\nname = \"n1\"\ntype = \"local\"\n[[port]]\nname = \"p\"\nnetwork = \"n1\"\n\
             mac = \"fa:16:3e:00:00:01\"\n{extra}"
        );
        SwitchConfig::from_toml(&text, "h.toml")
            .unwrap_err()
            .to_string()
    };
    let rule = |body: &str| {
        format!(
            "[[security_group]]\nid = \"g\"\n[[security_group.rule]]\nid = \"r\"\n\
             direction = \"ingress\"\nethertype = \"IPv4\"\n{body}"
        )
    };
    let e = bad("port_security = false\nsecurity_groups = []\n");
    assert!(
        e.contains("security groups need port_security = true"),
        "{e}"
    );
    let e = bad("security_groups = [\"nope\"]\n");
    assert!(e.contains("unknown security group \"nope\""), "{e}");
    let e = bad(&format!(
        "security_groups = [\"g\", \"s\"]\n{}\n[[security_group]]\nid = \"s\"\nstateful = false\n",
        rule("")
    ));
    assert!(e.contains("cannot be mixed"), "{e}");
    let e = bad(&rule("remote_group = \"other\"\n"));
    assert!(
        e.contains("remote_group: unknown security group \"other\""),
        "{e}"
    );
    let e = bad(&rule(
        "protocol = \"tcp\"\nport_range_min = 30\nport_range_max = 20\n",
    ));
    assert!(e.contains("30 is above port_range_max 20"), "{e}");
    let e = bad(&rule("protocol = \"bogus\"\n"));
    assert!(e.contains("unknown protocol \"bogus\""), "{e}");
    let e = bad(&rule("port_range_min = 22\nport_range_max = 22\n"));
    assert!(e.contains("port ranges need a protocol"), "{e}");
    let e = bad(&rule("remote_ip_prefix = \"fd00::/64\"\n"));
    assert!(e.contains("not of the rule's ethertype"), "{e}");
    let e = bad(&rule("protocol = \"icmp\"\nport_range_max = 3\n"));
    assert!(e.contains("needs a type"), "{e}");
    // A config built in code round-trips through the same checks.
    let ok = SwitchConfig::from_toml(&config(true), "h.toml").unwrap();
    assert_eq!(ok.validated("code").unwrap(), ok);
}

#[test]
fn a_remote_group_rule_admits_its_members_and_follows_membership() {
    let mut h = Host::from_toml(&config(true));
    learn(&mut h);
    // vm1 (in sg1) may reach vm4; vm2 (in no group) may not.
    assert_eq!(
        h.send("vm1", &tcp(1, 4, 1000, 5555, SYN, 1, 0), 1),
        (Verdict::Forward, to("vm4"))
    );
    assert_eq!(
        h.send("vm2", &tcp(2, 4, 1000, 5555, SYN, 1, 0), 1).0,
        Verdict::Drop {
            reason: DropReason::SecurityGroup
        }
    );
    // vm2 joins sg1 (its address among the members): now admitted, and vm1's connection to
    // vm4 survives the reload (its rule still admits it).
    let text = config(true).replace(
        "id = \"sg1\"\nmembers = [\"10.0.0.1\"]",
        "id = \"sg1\"\nmembers = [\"10.0.0.1\", \"10.0.0.2\"]",
    );
    let cfg = SwitchConfig::from_toml(&text, "host.toml").unwrap();
    let new = Snapshot::compile(&cfg, Some(&h.dp.snapshot())).unwrap();
    h.dp.swap_snapshot(new);
    assert_eq!(
        h.send("vm2", &tcp(2, 4, 1001, 5555, SYN, 1, 0), 2),
        (Verdict::Forward, to("vm4"))
    );
    // vm1's connection: on vm1 (egress) and on vm4 (ingress); vm2's on vm4 only.
    assert_eq!(h.dp.conntrack().len(), 3);
    // And leaves it again: its connection to vm4 is cut, vm1's is kept.
    let cfg = SwitchConfig::from_toml(&config(true), "host.toml").unwrap();
    let new = Snapshot::compile(&cfg, Some(&h.dp.snapshot())).unwrap();
    h.dp.swap_snapshot(new);
    assert_eq!(h.dp.conntrack().len(), 2);
    assert_eq!(
        h.send("vm4", &tcp(4, 1, 5555, 1000, SYN | ACK, 9, 2), 3),
        (Verdict::Forward, to("vm1"))
    );
}

/// Neutron's openvswitch firewall driver lets a port whose groups have no rules at all take an
/// address by DHCP (and DHCPv6), resolve and be resolved by ARP and neighbour discovery, and
/// hear router advertisements; everything else, both ways, is dropped.
#[test]
fn a_port_with_groups_and_no_rules_still_dhcps_arps_and_does_nd() {
    let mut h = Host::from_toml(
        r#"
[[network]]
name = "n1"
type = "local"

[[port]]
name = "bare"
network = "n1"
mac = "fa:16:3e:00:00:05"
fixed_ips = ["10.0.0.5"]
security_groups = ["empty"]

# The DHCP server, router and peer: no port security.
[[port]]
name = "srv"
network = "n1"
mac = "fa:16:3e:00:00:06"
port_security = false

[[security_group]]
id = "empty"
members = ["10.0.0.5"]
"#,
    );
    let (bare, srv) = (vm_mac(5), vm_mac(6));
    let fwd = Verdict::Forward;
    let drop = Verdict::Drop {
        reason: DropReason::SecurityGroup,
    };
    let udp = |sm, dm, s: &str, d: &str, sport, dport| {
        FrameBuilder::udp4(sm, dm, v4(s), v4(d), sport, dport).build()
    };
    // DHCP: the client's broadcast out, the server's reply in.
    let discover = udp(
        bare,
        MacAddr::BROADCAST,
        "0.0.0.0",
        "255.255.255.255",
        68,
        67,
    );
    assert_eq!(h.send("bare", &discover, 1), (fwd, to("srv")));
    let offer = udp(srv, bare, "10.0.0.6", "10.0.0.5", 67, 68);
    assert_eq!(h.send("srv", &offer, 2), (fwd, to("bare")));
    // ARP both ways.
    let arp = FrameBuilder::arp(bare, 1, v4("10.0.0.5"), v4("10.0.0.6")).build();
    assert_eq!(h.send("bare", &arp, 3), (fwd, to("srv")));
    let arp = FrameBuilder::arp(srv, 1, v4("10.0.0.6"), v4("10.0.0.5")).build();
    assert_eq!(h.send("srv", &arp, 3), (fwd, to("bare")));
    // Neighbour discovery both ways, router solicitation out, router advertisement in.
    let target = bare.ipv6_link_local();
    let ns = FrameBuilder::nd(srv, 135, target, Some(srv)).build();
    assert_eq!(h.send("srv", &ns, 4), (fwd, to("bare")));
    let na = FrameBuilder::nd(bare, 136, target, Some(bare)).build();
    assert_eq!(h.send("bare", &na, 4), (fwd, to("srv")));
    let ra = FrameBuilder::nd(srv, 134, srv.ipv6_link_local(), None).build();
    assert_eq!(h.send("srv", &ra, 5), (fwd, to("bare")));
    let rs = FrameBuilder::nd(bare, 133, srv.ipv6_link_local(), None).build();
    assert_eq!(h.send("bare", &rs, 5), (fwd, to("srv")));
    // Nothing else: not a connection in, not a connection out, not a look-alike of DHCP.
    assert_eq!(h.send("srv", &tcp_between(6, 5, 22), 6).0, drop);
    assert_eq!(h.send("bare", &tcp_between(5, 6, 80), 6).0, drop);
    let echo = FrameBuilder::ip(
        srv,
        bare,
        ip("10.0.0.6"),
        ip("10.0.0.5"),
        SpecL4::Icmp { ty: 8, code: 0 },
    )
    .build();
    assert_eq!(h.send("srv", &echo, 7).0, drop);
    let dns_to_68 = udp(srv, bare, "10.0.0.6", "10.0.0.5", 53, 68);
    assert_eq!(h.send("srv", &dns_to_68, 7).0, drop);
    let client_to_client = udp(srv, bare, "10.0.0.6", "10.0.0.5", 68, 67);
    assert_eq!(h.send("srv", &client_to_client, 7).0, drop);
    assert!(h.dp.conntrack().is_empty());
}

/// A TCP SYN from vm `a` to vm `b`'s `dport`.
fn tcp_between(a: u8, b: u8, dport: u16) -> Vec<u8> {
    tcp(a, b, 40000, dport, SYN, 1, 0)
}
