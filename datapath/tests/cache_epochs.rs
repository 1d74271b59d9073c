//! Rule and membership changes take effect without a flow-cache flush wider than the ports
//! concerned (issue 14): which cached decisions a reload keeps, seen through the worker's
//! flow-cache hit and miss counters, and that what it keeps is still right.

use std::sync::Arc;
use weft_datapath::build::FrameBuilder;
use weft_datapath::{Datapath, DropReason, MacAddr, PortNo, Snapshot, SwitchConfig, Verdict};

fn mac(i: u8) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0, 0, i])
}

/// Ports a (10.0.0.1), b (.2), c (.3) and d (.4) on one network, b and c in an open group, d
/// without a firewall; a in
/// `a_groups` (a TOML value, or None: no firewall) with an IP of `a_ip`; group sg-a has
/// `a_rules` (TOML `[[security_group.rule]]` blocks).
fn config(a_groups: Option<&str>, a_ip: &str, a_rules: &str, aging: u64) -> SwitchConfig {
    let a_sg = a_groups
        .map(|g| format!("security_groups = {g}\n"))
        .unwrap_or_default();
    let t = format!(
        r#"
[switch]
mac_aging_secs = {aging}

[[network]]
name = "n"
type = "local"

[[port]]
name = "a"
network = "n"
mac = "{ma}"
fixed_ips = ["{a_ip}"]
port_security = true
{a_sg}
[[port]]
name = "b"
network = "n"
mac = "{mb}"
fixed_ips = ["10.0.0.2"]
port_security = true
security_groups = ["sg-open"]

[[port]]
name = "c"
network = "n"
mac = "{mc}"
fixed_ips = ["10.0.0.3"]
port_security = true
security_groups = ["sg-open"]

[[port]]
name = "d"
network = "n"
mac = "{md}"
fixed_ips = ["10.0.0.4"]
port_security = true

[[security_group]]
id = "sg-open"
members = ["10.0.0.2", "10.0.0.3"]
[[security_group.rule]]
id = "open-in"
direction = "ingress"
ethertype = "IPv4"
[[security_group.rule]]
id = "open-out"
direction = "egress"
ethertype = "IPv4"

[[security_group]]
id = "sg-a"
[[security_group.rule]]
id = "a-out"
direction = "egress"
ethertype = "IPv4"
{a_rules}
"#,
        ma = mac(1),
        mb = mac(2),
        mc = mac(3),
        md = mac(4),
    );
    SwitchConfig::from_toml(&t, "t.toml").expect("config")
}

const ALLOW_9999: &str = r#"
[[security_group.rule]]
id = "a-in-9999"
direction = "ingress"
ethertype = "IPv4"
protocol = "udp"
port_range_min = 9999
port_range_max = 9999
"#;

struct Host {
    dp: Arc<Datapath>,
    w: weft_datapath::Worker,
    a: PortNo,
    b: PortNo,
    c: PortNo,
    d: PortNo,
}

impl Host {
    fn new(cfg: &SwitchConfig) -> Host {
        let dp = Arc::new(Datapath::new(
            Snapshot::compile(cfg, None).expect("compile"),
        ));
        let s = dp.snapshot();
        let no = |n: &str| s.port_by_name(n).expect("port").no;
        let (a, b, c, d) = (no("a"), no("b"), no("c"), no("d"));
        let w = dp.worker();
        Host { dp, w, a, b, c, d }
    }

    fn reload(&self, cfg: &SwitchConfig) {
        let old = self.dp.snapshot();
        self.dp
            .swap_snapshot(Snapshot::compile(cfg, Some(&old)).expect("recompile"));
    }

    /// A UDP frame between two of the ports (by last address byte), sent from its source.
    fn send(&mut self, from: u8, to: u8, dport: u16, now: u64) -> Verdict {
        let port = [self.a, self.b, self.c, self.d][usize::from(from - 1)];
        let f = FrameBuilder::udp4(
            mac(from),
            mac(to),
            [10, 0, 0, from].into(),
            [10, 0, 0, to].into(),
            4000 + u16::from(from),
            dport,
        )
        .build();
        let mut out = Vec::new();
        self.w.process(port, &f, now, &mut out)
    }

    fn misses(&self) -> u64 {
        self.dp.counters().flow_cache_misses
    }
}

#[test]
fn a_rule_change_on_one_port_keeps_every_cached_decision_and_still_applies() {
    let mut h = Host::new(&config(Some(r#"["sg-a"]"#), "10.0.0.1", "", 300));
    // b -> c (an unrelated pair), a -> b, and b -> a (which a's rules refuse).
    assert_eq!(h.send(2, 3, 5000, 1), Verdict::Forward);
    assert_eq!(h.send(1, 2, 5000, 1), Verdict::Forward);
    let refused = Verdict::Drop {
        reason: DropReason::SecurityGroup,
    };
    assert_eq!(h.send(2, 1, 9999, 1), refused);
    let warm = h.misses();
    assert_eq!(warm, 3);

    // A rule added to a's group, then a group's membership changed: no entry is lost.
    h.reload(&config(Some(r#"["sg-a"]"#), "10.0.0.1", ALLOW_9999, 300));
    assert_eq!(h.send(2, 3, 5000, 2), Verdict::Forward);
    assert_eq!(h.send(1, 2, 5000, 2), Verdict::Forward);
    // The kept decision runs the new rules: b -> a on 9999 now passes.
    assert_eq!(h.send(2, 1, 9999, 2), Verdict::Forward);
    assert_eq!(
        h.misses(),
        warm,
        "a rule change must not empty cache entries"
    );

    h.reload(&config(
        Some(r#"["sg-a", "sg-open"]"#),
        "10.0.0.1",
        ALLOW_9999,
        300,
    ));
    assert_eq!(h.send(2, 3, 5000, 3), Verdict::Forward);
    assert_eq!(h.send(1, 2, 5000, 3), Verdict::Forward);
    assert_eq!(
        h.misses(),
        warm,
        "a membership change must not empty cache entries"
    );
}

#[test]
fn a_ports_own_change_empties_only_the_entries_of_its_frames() {
    let mut h = Host::new(&config(Some(r#"["sg-a"]"#), "10.0.0.1", "", 300));
    assert_eq!(h.send(2, 3, 5000, 1), Verdict::Forward);
    assert_eq!(h.send(1, 2, 5000, 1), Verdict::Forward);
    let warm = h.misses();
    // a's fixed IP moves: its old address is now a spoof, decided afresh.
    h.reload(&config(Some(r#"["sg-a"]"#), "10.0.0.11", "", 300));
    assert_eq!(h.send(2, 3, 5000, 2), Verdict::Forward);
    assert_eq!(h.misses(), warm, "b -> c is not a's business");
    assert_eq!(
        h.send(1, 2, 5000, 2),
        Verdict::Drop {
            reason: DropReason::IpSpoof
        }
    );
    assert_eq!(h.misses(), warm + 1);
}

#[test]
fn a_port_gaining_a_firewall_is_not_reached_through_a_stale_decision() {
    // Neither d nor a has a firewall: d -> a is a plain unicast, cached as such.
    let mut h = Host::new(&config(None, "10.0.0.1", "", 300));
    assert_eq!(h.send(4, 1, 9999, 1), Verdict::Forward);
    assert_eq!(h.send(4, 1, 9999, 1), Verdict::Forward);
    // Now a has a group that admits nothing in: the frame must meet it.
    h.reload(&config(Some(r#"["sg-a"]"#), "10.0.0.1", "", 300));
    assert_eq!(
        h.send(4, 1, 9999, 2),
        Verdict::Drop {
            reason: DropReason::SecurityGroup
        }
    );
}

#[test]
fn a_change_every_port_shares_empties_the_whole_cache() {
    let mut h = Host::new(&config(Some(r#"["sg-a"]"#), "10.0.0.1", "", 300));
    assert_eq!(h.send(2, 3, 5000, 1), Verdict::Forward);
    assert_eq!(h.send(1, 2, 5000, 1), Verdict::Forward);
    let warm = h.misses();
    h.reload(&config(Some(r#"["sg-a"]"#), "10.0.0.1", "", 600));
    assert_eq!(h.send(2, 3, 5000, 2), Verdict::Forward);
    assert_eq!(h.send(1, 2, 5000, 2), Verdict::Forward);
    assert_eq!(h.misses(), warm + 2);
}
