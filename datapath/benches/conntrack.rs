//! The firewall's cost, in three figures (issue 14):
//!
//! - lookups per second: `ConnTable::track` of a data segment of an established TCP
//!   connection, in tables holding 10 000 and 100 000 established connections (the lookup a
//!   frame of a long-lived flow pays on every packet);
//! - inserts per second: `ConnTable::commit` of new connections into a table that grows
//!   (what a SYN a rule admitted costs on top of its lookup);
//! - new connections per second through the switch: SYN, SYN-ACK and ACK between two VM
//!   ports whose security groups hold 1, 10 and 100 rules (the admitting rule last, so that
//!   the opening packet walks all the rules of its direction), through `Worker::process`:
//!   flow-cache miss, pipeline, egress and ingress firewall, conntrack commit and advance.
//!
//! Run: `cargo bench -p weft-datapath --bench conntrack`. Results: benches/RESULTS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use weft_datapath::build::{FrameBuilder, SpecL4};
use weft_datapath::secgroup::{
    packet::{TCP_ACK, TCP_SYN},
    ConnTable, Direction, Packet, Track, Transport,
};
use weft_datapath::{Datapath, MacAddr, PortNo, Snapshot, SwitchConfig, Verdict};

const SEC: u64 = 1_000_000_000;
/// Six days: past the established timeout (five days), so a cycle of the source ports finds
/// its previous connections expired, as they would be on a real host long after.
const EPOCH: u64 = 6 * 86_400 * SEC;

/// Connection `i`'s client address and port: 10.x.y.z:(1024 + i % 50 000).
fn client(i: u32) -> (IpAddr, u16) {
    let host = i / 50_000;
    (
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (host + 1))),
        1024 + (i % 50_000) as u16,
    )
}

fn tcp(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8, seq: u32, ack: u32) -> Packet {
    Packet {
        src: src.0,
        dst: dst.0,
        proto: 6,
        transport: Transport::Tcp {
            sport: src.1,
            dport: dst.1,
            flags,
            seq,
            ack,
            len: 0,
        },
    }
}

const SERVER: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1)), 5201);

/// A table holding `n` established connections (SYN committed, SYN-ACK and ACK tracked).
fn established(n: u32) -> ConnTable {
    let mut ct = ConnTable::new(n as usize + 1);
    for i in 0..n {
        let c = client(i);
        let syn = tcp(c, SERVER, TCP_SYN, 100, 0);
        assert_eq!(ct.track(1, PortNo(1), &syn, 0), Track::New);
        assert!(ct.commit(1, PortNo(1), Direction::Ingress, 0, &syn, 0));
        let synack = tcp(SERVER, c, TCP_SYN | TCP_ACK, 500, 101);
        assert!(matches!(
            ct.track(1, PortNo(1), &synack, 0),
            Track::Established { .. }
        ));
        let ack = tcp(c, SERVER, TCP_ACK, 101, 501);
        assert!(matches!(
            ct.track(1, PortNo(1), &ack, 0),
            Track::Established { .. }
        ));
    }
    ct
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack lookup (established data segment)");
    g.throughput(Throughput::Elements(1));
    for n in [10_000u32, 100_000] {
        let mut ct = established(n);
        // A stride through the table, so that consecutive lookups miss the CPU caches as
        // packets of many flows would.
        let data: Vec<Packet> = (0..n)
            .map(|i| tcp(client(i), SERVER, TCP_ACK, 101, 501))
            .collect();
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % data.len();
                let t = ct.track(1, PortNo(1), &data[i], 1);
                debug_assert!(matches!(t, Track::Established { .. }));
                std::hint::black_box(t)
            })
        });
        assert_eq!(ct.stats().invalid, 0, "{:?}", ct.stats());
    }
    g.finish();
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack insert (new connection committed)");
    g.throughput(Throughput::Elements(1));
    g.bench_function("into a growing table", |b| {
        b.iter_custom(|iters| {
            let n = iters.min(1_000_000) as u32;
            let syns: Vec<Packet> = (0..n)
                .map(|i| tcp(client(i), SERVER, TCP_SYN, 100, 0))
                .collect();
            let mut total = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(u64::from(n)) as usize;
                let mut ct = ConnTable::new(k);
                let t0 = std::time::Instant::now();
                for p in &syns[..k] {
                    std::hint::black_box(ct.commit(1, PortNo(1), Direction::Ingress, 0, p, 0));
                }
                total += t0.elapsed();
                assert_eq!(ct.len(), k);
                left -= k as u64;
            }
            total
        })
    });
    g.finish();
}

fn vm_mac(i: u8) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0, 0, i])
}

/// Two VM ports on one local network, each in group `sg` of `rules` rules per direction: the
/// first `rules - 1` of each direction admit TCP ports that the benchmark's traffic never uses,
/// the last admits it (ingress TCP 5201; egress anything, as Neutron's default group).
fn config(rules: usize) -> SwitchConfig {
    let mut t = String::from("[[network]]\nname = \"n\"\ntype = \"local\"\n");
    for (name, i) in [("vm1", 1), ("vm2", 2)] {
        let _ = write!(
            t,
            "[[port]]\nname = \"{name}\"\nnetwork = \"n\"\nmac = \"{}\"\n\
             fixed_ips = [\"10.0.0.{i}\"]\nport_security = true\nsecurity_groups = [\"sg\"]\n",
            vm_mac(i)
        );
    }
    t.push_str("[[security_group]]\nid = \"sg\"\n");
    for (dir, base) in [("ingress", 10_000), ("egress", 20_000)] {
        for r in 0..rules - 1 {
            let _ = write!(
                t,
                "[[security_group.rule]]\nid = \"{dir}-{r}\"\ndirection = \"{dir}\"\n\
                 ethertype = \"IPv4\"\nprotocol = \"tcp\"\nport_range_min = {p}\n\
                 port_range_max = {p}\nremote_ip_prefix = \"10.0.0.0/24\"\n",
                p = base + r
            );
        }
    }
    t.push_str(
        "[[security_group.rule]]\nid = \"allow-in\"\ndirection = \"ingress\"\n\
         ethertype = \"IPv4\"\nprotocol = \"tcp\"\nport_range_min = 5201\nport_range_max = 5201\n\
         [[security_group.rule]]\nid = \"allow-out\"\ndirection = \"egress\"\nethertype = \"IPv4\"\n",
    );
    SwitchConfig::from_toml(&t, "bench.toml").expect("bench config")
}

/// A TCP frame between the two VMs with the given sequence and acknowledgement numbers
/// (written over the builder's zeros; the switch does not verify TCP checksums).
fn tcp_frame(from: u8, sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let to = 3 - from;
    let mut f = FrameBuilder::ip(
        vm_mac(from),
        vm_mac(to),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, from)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, to)),
        SpecL4::Tcp {
            sport,
            dport,
            flags,
        },
    )
    .build();
    let tcp = 14 + 20;
    f[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    f[tcp + 8..tcp + 12].copy_from_slice(&ack.to_be_bytes());
    f
}

fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("new TCP connections through the firewall (SYN, SYN-ACK, ACK)");
    g.throughput(Throughput::Elements(1));
    for rules in [1usize, 10, 100] {
        let dp = Arc::new(Datapath::new(
            Snapshot::compile(&config(rules), None).expect("compile"),
        ));
        let snap = dp.snapshot();
        let (vm1, vm2) = (
            snap.port_by_name("vm1").expect("vm1").no,
            snap.port_by_name("vm2").expect("vm2").no,
        );
        // One handshake per client port; a full cycle of the ports moves the clock past the
        // established timeout, so the next cycle opens new connections again.
        const PORTS: u16 = 20_000;
        let shakes: Vec<[Vec<u8>; 3]> = (0..PORTS)
            .map(|i| {
                let sport = 30_000 + i;
                [
                    tcp_frame(1, sport, 5201, TCP_SYN, 1000, 0),
                    tcp_frame(2, 5201, sport, TCP_SYN | TCP_ACK, 7000, 1001),
                    tcp_frame(1, sport, 5201, TCP_ACK, 1001, 7001),
                ]
            })
            .collect();
        let mut w = dp.worker();
        let mut out = Vec::new();
        let mut i = 0usize;
        g.bench_with_input(
            BenchmarkId::new("rules per direction", rules),
            &rules,
            |b, _| {
                b.iter(|| {
                    let k = i % shakes.len();
                    let now = 1 + (i / shakes.len()) as u64 * EPOCH;
                    i += 1;
                    for (n, f) in shakes[k].iter().enumerate() {
                        out.clear();
                        let from = if n == 1 { vm2 } else { vm1 };
                        let v = w.process(from, f, now, &mut out);
                        debug_assert_eq!(v, Verdict::Forward, "packet {n} of handshake {k}");
                        std::hint::black_box(v);
                    }
                })
            },
        );
        let ct = dp.conntrack().stats();
        assert_eq!(ct.invalid, 0, "{ct:?}");
        assert_eq!(ct.refused_full, 0, "{ct:?}");
        assert!(ct.created > 0, "{ct:?}");
        let drops = dp.counters();
        assert!(
            drops.ports.iter().all(|p| p.drops_total() == 0),
            "no frame of the handshakes may be dropped: {drops:?}"
        );
    }
    g.finish();
}

criterion_group!(benches, lookup, insert, new_connections);
criterion_main!(benches);
