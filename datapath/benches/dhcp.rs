//! DHCP leases per second: a full DISCOVER -> OFFER, REQUEST -> ACK exchange per lease,
//! through the switch's own path (the pipeline decides `Verdict::Dhcp` from the flow cache,
//! then `Worker::answer_dhcp` builds the reply from the running snapshot), for clients on
//! 1000 ports of 10 networks; and the pure server function alone.
//!
//! Run: `cargo bench -p weft-datapath --bench dhcp`. Results: benches/RESULTS.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::fmt::Write as _;
use std::sync::Arc;
use weft_datapath::{Datapath, MacAddr, PortNo, Snapshot, SwitchConfig, Verdict};

const NETWORKS: usize = 10;
const PORTS: usize = 1000;

fn mac(i: usize) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0, (i >> 8) as u8, i as u8])
}

/// Port `i`'s fixed IP: network `i % 10` is 10.<n>.0.0/16.
fn ip(i: usize) -> [u8; 4] {
    let k = i / NETWORKS + 10;
    [10, (i % NETWORKS) as u8, (k >> 8) as u8, k as u8]
}

fn config() -> SwitchConfig {
    let mut t = String::new();
    for n in 0..NETWORKS {
        let _ = write!(
            t,
            "[[network]]\nname = \"net{n}\"\ntype = \"local\"\n\
             [[subnet]]\nnetwork = \"net{n}\"\ncidr = \"10.{n}.0.0/16\"\ngateway_ip = \"10.{n}.0.1\"\n\
             dns_nameservers = [\"10.{n}.0.53\"]\n\
             host_routes = [{{ destination = \"192.168.0.0/16\", nexthop = \"10.{n}.0.254\" }}]\n"
        );
    }
    for i in 0..PORTS {
        let [a, b, c, d] = ip(i);
        let _ = write!(
            t,
            "[[port]]\nname = \"p{i}\"\nnetwork = \"net{}\"\nmac = \"{}\"\nfixed_ips = [\"{a}.{b}.{c}.{d}\"]\nmtu = 1450\n",
            i % NETWORKS,
            mac(i)
        );
    }
    SwitchConfig::from_toml(&t, "bench.toml").expect("bench config")
}

/// A client's DHCP frame: Ethernet broadcast, 0.0.0.0 -> 255.255.255.255, UDP 68 -> 67, a
/// BOOTREQUEST with options 53 (and 50, 54 for a REQUEST), as udhcpc sends.
fn client_frame(m: MacAddr, xid: u32, request: Option<([u8; 4], [u8; 4])>) -> Vec<u8> {
    let mut bootp = vec![0u8; 240];
    bootp[0] = 1;
    bootp[1] = 1;
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&xid.to_be_bytes());
    bootp[28..34].copy_from_slice(&m.0);
    bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
    match request {
        None => bootp.extend_from_slice(&[53, 1, 1]),
        Some((want, server)) => {
            bootp.extend_from_slice(&[53, 1, 3, 50, 4]);
            bootp.extend_from_slice(&want);
            bootp.extend_from_slice(&[54, 4]);
            bootp.extend_from_slice(&server);
        }
    }
    bootp.extend_from_slice(&[55, 4, 1, 3, 6, 121, 255]);
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&m.0);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((28 + bootp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
    f.extend_from_slice(&68u16.to_be_bytes());
    f.extend_from_slice(&67u16.to_be_bytes());
    f.extend_from_slice(&((8 + bootp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&bootp);
    f
}

fn leases(c: &mut Criterion) {
    let cfg = config();
    let dp = Arc::new(Datapath::new(Snapshot::compile(&cfg, None).unwrap()));
    let snap = dp.snapshot();
    let ports: Vec<PortNo> = (0..PORTS)
        .map(|i| snap.port_by_name(&format!("p{i}")).unwrap().no)
        .collect();
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = (0..PORTS)
        .map(|i| {
            let server = [169, 254, 169, 254]; // the switch's server id
            (
                client_frame(mac(i), i as u32, None),
                client_frame(mac(i), i as u32, Some((ip(i), server))),
            )
        })
        .collect();
    let mut w = dp.worker();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("dhcp");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("lease through the switch (DISCOVER+REQUEST)", |b| {
        b.iter(|| {
            let k = i % PORTS;
            i += 1;
            let (discover, request) = &exchanges[k];
            for f in [discover, request] {
                out.clear();
                let v = w.process(ports[k], f, 1, &mut out);
                assert_eq!(v, Verdict::Dhcp);
                let reply = w.answer_dhcp(ports[k], f).expect("a reply");
                std::hint::black_box(reply);
            }
        })
    });
    let port = snap.dhcp(ports[0]).unwrap().clone();
    let discover = &exchanges[0].0;
    g.bench_function("answer() alone, one DISCOVER", |b| {
        b.iter(|| std::hint::black_box(weft_datapath::dhcp::answer(discover, &port)))
    });
    g.finish();
    let stats = dp.dhcp_stats();
    assert_eq!(stats.malformed, 0, "{stats:?}");
}

criterion_group!(benches, leases);
criterion_main!(benches);
