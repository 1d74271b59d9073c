//! Port wrappers on a running switch: a fault injector damages what one tap receives, and the
//! switch counts every damaged frame (truncated ones as pipeline drops), forwards the rest
//! intact and keeps going; a pcap capture configured on the same port (`capture = "..."`)
//! records what the switch saw, readable by `tcpdump -r`. The test's own frames go in and out
//! through AF_PACKET sockets on the taps' kernel side, driven through the same `Port` trait.
//! Needs root (creates taps named `pt…`, removed by Drop guards).

mod lab;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::Link;
use weft_datapath::build::FrameBuilder;
use weft_datapath::daemon::{Switch, SwitchHandle, SwitchOptions};
use weft_datapath::io::{
    FaultConfig, FaultCounts, FaultInjector, IoCounters, PacketConfig, PacketPort, Port, PortCtx,
    RxBatch, TxFrame, TxScratch,
};
use weft_datapath::{EgressEdit, MacAddr, PortNo, Snapshot, SwitchConfig};

fn uniq(role: &str) -> String {
    lab::uniq("pt", role)
}

fn run(cmd: &str, args: &[&str]) {
    lab::sh(cmd, args);
}

/// A tap made before the switch attaches to it, with IPv6 off, so that the kernel sends
/// nothing of its own through it (no DAD, MLD or router solicitations): every frame the
/// switch reads from it is one of the test's.
fn quiet_tap(name: &str) -> Link {
    run("ip", &["tuntap", "add", "name", name, "mode", "tap"]);
    let g = Link(name.to_string());
    run(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{name}.disable_ipv6=1")],
    );
    g
}

const MA: &str = "fa:16:3e:70:00:01";
const MB: &str = "fa:16:3e:70:00:02";

fn config(a: &str, b: &str, capture: Option<&str>) -> SwitchConfig {
    let capture = capture
        .map(|c| format!("capture = \"{c}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[switch]
workers = 1

[[network]]
name = "n1"
type = "local"

[[port]]
name = "{a}"
kind = "tap"
network = "n1"
mac = "{MA}"
fixed_ips = ["10.70.0.1"]
{capture}
[[port]]
name = "{b}"
kind = "tap"
network = "n1"
mac = "{MB}"
fixed_ips = ["10.70.0.2"]
"#
    );
    SwitchConfig::from_toml(&text, "ports.toml").expect("test config parses")
}

/// Frame `n` (1-based) of the burst: UDP from a's VM to b's, numbered in its source port.
fn frame(n: u16) -> Vec<u8> {
    FrameBuilder::udp4(
        MA.parse::<MacAddr>().unwrap(),
        MB.parse::<MacAddr>().unwrap(),
        "10.70.0.1".parse().unwrap(),
        "10.70.0.2".parse().unwrap(),
        10000 + n,
        7,
    )
    .payload(64)
    .build()
}

#[test]
fn switch_counts_injected_faults_keeps_forwarding_and_captures_the_port() {
    let (a, b) = (uniq("a"), uniq("b"));
    let _guards = [quiet_tap(&a), quiet_tap(&b)];
    let pcap = std::env::temp_dir().join(format!("{a}.pcap"));
    let (h, counts) = faulty_switch(&a, &b, &pcap);

    // The VMs' side of the taps.
    let vm_a = PacketPort::open(&a, PacketConfig::default()).expect("open a");
    let vm_b = PacketPort::open(&b, PacketConfig::default()).expect("open b");
    let snap = Snapshot::compile(&SwitchConfig::from_toml("", "t").unwrap(), None).unwrap();
    let (ca, cb) = (IoCounters::default(), IoCounters::default());
    let ctx = |c| PortCtx {
        snap: &snap,
        now_ns: 0,
        counters: c,
    };

    const N: u16 = 100;
    let sent: Vec<Vec<u8>> = (1..=N).map(frame).collect();
    let mut tx = TxScratch::new();
    send_in_chunks(&vm_a, &ctx(&ca), &sent, &mut tx);
    assert_eq!(ca.tx_frames.load(Ordering::Relaxed), u64::from(N));

    let got = receive_until_quiet(&vm_b, &ctx(&cb));

    // The injector saw exactly the burst (the taps are quiet) and hit what its config picks:
    // dropped 10, 20..100; truncated the other multiples of 7; corrupted the multiples of 9
    // that are neither.
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(load(&counts.seen), u64::from(N));
    assert_eq!(load(&counts.dropped), 10);
    assert_eq!(load(&counts.truncated), 13);
    assert_eq!(load(&counts.corrupted), 9);

    // The switch counted what reached it, and every frame of it is either dropped and counted
    // by reason, or sent to b.
    let st = h.port_states();
    let (pa, pb) = (
        st.iter().find(|p| p.name == a).unwrap(),
        st.iter().find(|p| p.name == b).unwrap(),
    );
    assert_eq!(pa.rx_frames, 90, "{pa:?}");
    assert_eq!(pa.drops + pb.tx_frames, 90, "{pa:?} {pb:?}");
    let counters = h.handle_request(&serde_json::json!({"cmd": "counters"}), None);
    let port_a = counters["counters"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == a.as_str())
        .unwrap()
        .clone();
    assert!(
        port_a["drops"]["truncated"].as_u64().unwrap_or(0) >= 13,
        "truncated frames are pipeline drops: {port_a}"
    );
    assert_eq!(pb.tx_frames as usize, got.len());

    b_got_the_clean_frames_in_order(&sent, &got, N);

    the_capture_holds_what_the_switch_read(&pcap);

    // A reload without `capture` stops it: nothing more is written.
    let before = std::fs::metadata(&pcap).unwrap().len();
    let rep = h.apply(config(&a, &b, None)).expect("reload");
    assert_eq!(rep.updated, vec![a.clone()]);
    vm_a.send(
        &ctx(&ca),
        &{
            let mut bt = RxBatch::new();
            bt.push(&[], &frame(1));
            bt
        },
        &[TxFrame {
            port: PortNo(0),
            index: 0,
            edit: EgressEdit::Keep,
        }],
        &mut tx,
    );
    let rx_before = pa.rx_frames;
    let grew = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        h.port_states()
            .iter()
            .any(|p| p.name == a && p.rx_frames > rx_before)
    });
    assert!(grew, "the switch still reads a");
    assert_eq!(std::fs::metadata(&pcap).unwrap().len(), before);
    let _ = std::fs::remove_file(&pcap);
    h.shutdown();
}

/// A switch over taps `a` and `b` whose port `a` wears a fault injector (drop every 10th frame,
/// truncate every 7th, corrupt every 9th) and is captured to `pcap`; with the injector's counts.
fn faulty_switch(a: &str, b: &str, pcap: &std::path::Path) -> (SwitchHandle, Arc<FaultCounts>) {
    let faults = FaultConfig {
        drop_every: 10,
        truncate_every: 7,
        corrupt_every: 9,
        seed: 0x5eed,
    };
    let counts: Arc<Mutex<Option<Arc<FaultCounts>>>> = Arc::default();
    let (name_a, slot) = (a.to_string(), counts.clone());
    let opts = SwitchOptions {
        workers: Some(1),
        wrap_port: Some(Arc::new(move |info, port| {
            if info.name != name_a {
                return port;
            }
            let f = FaultInjector::new(port, faults);
            *slot.lock().unwrap() = Some(f.counts());
            Arc::new(f)
        })),
        ..Default::default()
    };
    let h = Switch::start_with(config(a, b, pcap.to_str()), opts).expect("start");
    let counts = counts.lock().unwrap().clone().expect("a is wrapped");
    (h, counts)
}

/// Sends `sent` out of a VM's side of a tap, 20 frames a batch, 5 ms apart.
fn send_in_chunks(vm_a: &PacketPort, ctx: &PortCtx, sent: &[Vec<u8>], tx: &mut TxScratch) {
    for chunk in sent.chunks(20) {
        let mut batch = RxBatch::new();
        for f in chunk {
            assert!(batch.push(&[], f));
        }
        let frames: Vec<TxFrame> = (0..chunk.len())
            .map(|index| TxFrame {
                port: PortNo(0),
                index,
                edit: EgressEdit::Keep,
            })
            .collect();
        vm_a.send(ctx, &batch, &frames, tx);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a VM's side of a tap receives, until nothing more comes for half a second (10 s at most).
fn receive_until_quiet(vm_b: &PacketPort, ctx: &PortCtx) -> Vec<Vec<u8>> {
    // What b's VM gets, until nothing more comes for half a second.
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut last = Instant::now();
    let end = Instant::now() + Duration::from_secs(10);
    while last.elapsed() < Duration::from_millis(500) && Instant::now() < end {
        let mut batch = RxBatch::new();
        vm_b.recv(ctx, &mut batch).unwrap();
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        last = Instant::now();
        got.extend((0..batch.len()).map(|i| batch.frame(i).1.to_vec()));
    }
    got
}

/// b got every frame of the `n` sent that the injector left alone, intact and in order, plus
/// at most the corrupted ones the pipeline let through; the last clean frame (97) came after all
/// the damage, so the switch kept forwarding.
fn b_got_the_clean_frames_in_order(sent: &[Vec<u8>], got: &[Vec<u8>], n: u16) {
    let clean: Vec<&Vec<u8>> = (1..=n)
        .filter(|n| n % 10 != 0 && n % 7 != 0 && n % 9 != 0)
        .map(|n| &sent[usize::from(n) - 1])
        .collect();
    let got_set: HashSet<&Vec<u8>> = got.iter().collect();
    for (i, f) in clean.iter().enumerate() {
        assert!(
            got_set.contains(f),
            "clean frame #{i} of {} lost",
            clean.len()
        );
    }
    let intact: Vec<&Vec<u8>> = got.iter().filter(|g| sent.contains(*g)).collect();
    assert_eq!(intact, clean, "clean frames out of order");
    assert!(
        got.len() - clean.len() <= 9,
        "{} extra frames",
        got.len() - clean.len()
    );
    assert_eq!(got.last().map(|g| &g[..]), Some(&frame(97)[..]));
}

/// The capture holds what the switch read from a (after the faults): tcpdump reads it.
fn the_capture_holds_what_the_switch_read(pcap: &std::path::Path) {
    let out = Command::new("tcpdump")
        .args(["-nn", "-e", "-r"])
        .arg(pcap)
        .output()
        .expect("run tcpdump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // One line per record, each starting with its time (frames with an unknown ethertype are
    // followed by a hex dump, whose lines start with a tab), except a frame cut to 0 bytes,
    // which tcpdump reports as an invalid header (and reads on).
    let records = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) || l.starts_with("[Invalid header"))
        .count();
    assert_eq!(records, 90, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("10.70.0.1.10001 > 10.70.0.2.7"))
            .count(),
        1,
        "{text}"
    );
}
