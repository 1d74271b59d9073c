//! Pipeline throughput: 64-byte frames through classify + port security + forward + uplink
//! translation, on a host with 1000 VM ports in 10 VLAN networks and 10 000 MACs learned from the
//! uplink. Reports frames per second for one worker (one core).
//!
//! Run: `cargo bench --bench pipeline`. Results and the machine they came from: benches/RESULTS.md.
//!
//! Instructions per frame (repeatable on a busy machine, unlike time): with
//! `WEFT_PIPELINE_PASSES=N` (and optionally `WEFT_PIPELINE_CASE=<scenario name>`) the binary skips
//! criterion and runs N passes of each scenario after its warm-up pass, e.g.
//! `WEFT_PIPELINE_PASSES=5 valgrind --tool=callgrind --toggle-collect='*run_pass*'
//! target/release/deps/pipeline-<hash>`; (Ir with N=5 - Ir with N=0) / (5 * 32 000) is the cost
//! of one frame, the ring copy included.
//!
//! `WEFT_PIPELINE_PER_FRAME=1` runs every scenario with one `Worker::process` call per frame
//! instead of one `Worker::process_batch` call per batch, to compare the two paths the switch's
//! workers could take (benches/RESULTS.md, "Worker batch path").

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use std::fmt::Write as _;
use std::sync::Arc;
use weft_datapath::build::{FrameBuilder, SpecL4};
use weft_datapath::{Datapath, MacAddr, PortNo, Snapshot, SwitchConfig, Verdict};

const NETWORKS: usize = 10;
const PORTS: usize = 1000;
const REMOTE_MACS: usize = 10_000;
const BATCH: usize = 32;
const SEC: u64 = 1_000_000_000;

fn vm_mac(i: usize) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0, (i >> 8) as u8, i as u8])
}

fn remote_mac(i: usize) -> MacAddr {
    MacAddr([0x52, 0x54, 0x00, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn vm_ip(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(
        10,
        (i / NETWORKS / 250) as u8,
        (i / NETWORKS % 250) as u8 + 1,
        (i % NETWORKS) as u8 + 1,
    )
}

fn config() -> SwitchConfig {
    let mut t = String::from(
        "[switch]\nmac_table_size = 65536\n[[physnet]]\nname = \"physnet\"\ninterface = \"eth1\"\n",
    );
    for n in 0..NETWORKS {
        let _ = write!(
            t,
            "[[network]]\nname = \"net{n}\"\ntype = \"vlan\"\nphysnet = \"physnet\"\nsegmentation_id = {}\n",
            100 + n
        );
    }
    for i in 0..PORTS {
        let _ = write!(
            t,
            "[[port]]\nname = \"tap{i}\"\nnetwork = \"net{}\"\nmac = \"{}\"\nfixed_ips = [\"{}\"]\n",
            i % NETWORKS,
            vm_mac(i),
            vm_ip(i)
        );
    }
    SwitchConfig::from_toml(&t, "bench.toml").expect("bench config")
}

struct Setup {
    dp: Arc<Datapath>,
    /// (in_port, frames of one RX batch)
    batches: Vec<(PortNo, Vec<Vec<u8>>)>,
}

/// `flows_per_port` distinct destinations per port, cycled within each batch of 32 frames.
fn setup(flows_per_port: usize) -> Setup {
    let snap = Snapshot::compile(&config(), None).expect("compile");
    let dp = Arc::new(Datapath::new(snap));
    let snap = dp.snapshot();
    let uplink = snap.port_by_name("eth1").expect("uplink").no;
    // Learn 10k remote MACs from the uplink, 1000 per VLAN.
    let mut w = dp.worker();
    let mut out = Vec::new();
    for r in 0..REMOTE_MACS {
        let net = r % NETWORKS;
        let f = FrameBuilder::udp4(
            remote_mac(r),
            MacAddr::BROADCAST,
            "10.200.0.1".parse().unwrap(),
            "10.200.0.2".parse().unwrap(),
            1,
            2,
        )
        .dot1q(100 + net as u16)
        .build();
        out.clear();
        w.process(uplink, &f, SEC, &mut out);
    }
    assert_eq!(dp.learned_mac_count(), REMOTE_MACS);
    let mut batches = Vec::new();
    for i in 0..PORTS {
        let net = i % NETWORKS;
        let no = snap.port_by_name(&format!("tap{i}")).expect("port").no;
        let frames: Vec<Vec<u8>> = (0..BATCH)
            .map(|k| {
                // A remote MAC in the same network (remote r is in network r % NETWORKS).
                let slot =
                    (i / NETWORKS * flows_per_port + k % flows_per_port) % (REMOTE_MACS / NETWORKS);
                let r = slot * NETWORKS + net;
                let f = FrameBuilder::ip(
                    vm_mac(i),
                    remote_mac(r),
                    vm_ip(i).into(),
                    "10.200.0.9".parse().unwrap(),
                    SpecL4::Udp {
                        sport: 4000,
                        dport: 5000,
                    },
                )
                .payload(18) // 14 + 20 + 8 + 18 = 60 bytes + FCS = 64 on the wire
                .build();
                assert_eq!(f.len(), 60);
                f
            })
            .collect();
        batches.push((no, frames));
    }
    Setup { dp, batches }
}

/// An RX ring of BATCH slots: with `ring`, each batch is first copied into it (as the kernel
/// copies into a PACKET_MMAP ring or a tap read buffer just before the switch looks at it), so
/// frame bytes are cache-hot; without it, frames are read from 1000 x 32 separate buffers
/// (~2.5 MB), cold in L1/L2.
struct Rx {
    ring: Vec<u8>,
    lens: [usize; BATCH],
    use_ring: bool,
    /// One `process` call per frame instead of `process_batch` (`WEFT_PIPELINE_PER_FRAME=1`).
    per_frame: bool,
}

const SLOT: usize = 128;

#[inline(never)]
fn run_pass(
    w: &mut weft_datapath::Worker,
    s: &Setup,
    rx: &mut Rx,
    out: &mut Vec<weft_datapath::Output>,
    res: &mut Vec<weft_datapath::FrameResult>,
) -> usize {
    let mut fwd = 0;
    for (port, frames) in &s.batches {
        out.clear();
        res.clear();
        if rx.per_frame {
            // As the switch's workers did before they used the batch path: one call per frame.
            for (i, f) in frames.iter().enumerate() {
                let frame: &[u8] = if rx.use_ring {
                    let src: &[u8; 60] = f[..60].try_into().expect("60-byte frame");
                    let dst: &mut [u8; 60] = (&mut rx.ring[i * SLOT..i * SLOT + 60])
                        .try_into()
                        .expect("slot");
                    *dst = *src;
                    &rx.ring[i * SLOT..i * SLOT + 60]
                } else {
                    f
                };
                if w.process(*port, frame, 2 * SEC, out) == Verdict::Forward {
                    fwd += 1;
                }
            }
            continue;
        }
        if rx.use_ring {
            for (i, f) in frames.iter().enumerate() {
                // Fixed-size copy (the frames are 60 bytes): what a kernel copy into the ring
                // costs, without a libc call per frame.
                let src: &[u8; 60] = f[..60].try_into().expect("60-byte frame");
                let dst: &mut [u8; 60] = (&mut rx.ring[i * SLOT..i * SLOT + 60])
                    .try_into()
                    .expect("slot");
                *dst = *src;
                rx.lens[i] = f.len();
            }
            let ring = &rx.ring;
            let lens = &rx.lens;
            w.process_batch(
                *port,
                (0..frames.len()).map(|i| &ring[i * SLOT..i * SLOT + lens[i]]),
                2 * SEC,
                out,
                res,
            );
        } else {
            w.process_batch(
                *port,
                frames.iter().map(|f| f.as_slice()),
                2 * SEC,
                out,
                res,
            );
        }
        fwd += res.iter().filter(|r| r.verdict == Verdict::Forward).count();
    }
    fwd
}

fn rx(use_ring: bool) -> Rx {
    Rx {
        ring: vec![0u8; BATCH * SLOT],
        lens: [0; BATCH],
        use_ring,
        per_frame: std::env::var("WEFT_PIPELINE_PER_FRAME").as_deref() == Ok("1"),
    }
}

/// Thread CPU time, so that a figure per core can be given on a machine shared with other jobs.
mod cpu {
    pub fn thread_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec we own and pass by valid pointer.
        let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(r, 0, "clock_gettime");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// Frames per second of thread CPU time over at least `min_cpu_ns`.
fn per_core_rate(w: &mut weft_datapath::Worker, s: &Setup, use_ring: bool, min_cpu_ns: u64) -> f64 {
    let mut out = Vec::with_capacity(BATCH * 4);
    let mut res = Vec::with_capacity(BATCH);
    let mut r = rx(use_ring);
    let t0 = cpu::thread_ns();
    let mut frames = 0usize;
    while cpu::thread_ns() - t0 < min_cpu_ns {
        run_pass(w, s, &mut r, &mut out, &mut res);
        frames += PORTS * BATCH;
    }
    frames as f64 / ((cpu::thread_ns() - t0) as f64 / 1e9)
}

const SCENARIOS: [(&str, usize, bool); 3] = [
    ("cached_2k_flows", 2, true),
    ("cached_2k_flows_cold_frames", 2, false),
    ("cache_thrash_10k_flows", 10, true),
];

/// `WEFT_PIPELINE_PASSES=N`: N passes of each scenario (or of `WEFT_PIPELINE_CASE`) without
/// criterion, for instruction counting. The warm-up pass of each scenario is run first.
fn passes_only(n: usize) {
    let only = std::env::var("WEFT_PIPELINE_CASE").ok();
    for (name, flows, use_ring) in SCENARIOS {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let s = setup(flows);
        let mut r = rx(use_ring);
        let mut w = s.dp.worker();
        let mut out = Vec::with_capacity(BATCH * 4);
        let mut res = Vec::with_capacity(BATCH);
        assert_eq!(
            run_pass(&mut w, &s, &mut r, &mut out, &mut res),
            PORTS * BATCH
        );
        let mut fwd = 0;
        for _ in 0..n {
            fwd += run_pass(&mut w, &s, &mut r, &mut out, &mut res);
        }
        assert_eq!(fwd, n * PORTS * BATCH);
        eprintln!("{name}: {n} passes of {} frames", PORTS * BATCH);
    }
}

fn bench(c: &mut Criterion) {
    let total = PORTS * BATCH;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(total as u64));
    g.sample_size(30);
    for (name, flows, use_ring) in SCENARIOS {
        let s = setup(flows);
        let mut r = rx(use_ring);
        let mut w = s.dp.worker();
        let mut out = Vec::with_capacity(BATCH * 4);
        let mut res = Vec::with_capacity(BATCH);
        // Warm the flow cache and check every frame goes out the uplink with its VLAN pushed.
        assert_eq!(run_pass(&mut w, &s, &mut r, &mut out, &mut res), total);
        let snap = s.dp.snapshot();
        for o in &out {
            assert_eq!(snap.port(o.port).unwrap().name, "eth1");
        }
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || (),
                |_| run_pass(&mut w, &s, &mut r, &mut out, &mut res),
                BatchSize::PerIteration,
            )
        });
        let rate = per_core_rate(&mut w, &s, use_ring, 3_000_000_000);
        eprintln!(
            "{name}: {:.2} Mpps per core (frames / thread CPU time)",
            rate / 1e6
        );
        let c = s.dp.counters();
        eprintln!(
            "{name}: flow cache hits {} misses {} ({:.1}% hit)",
            c.flow_cache_hits,
            c.flow_cache_misses,
            100.0 * c.flow_cache_hits as f64
                / (c.flow_cache_hits + c.flow_cache_misses).max(1) as f64
        );
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("WEFT_PIPELINE_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        passes_only(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
