//! The uplink between two hosts (namespaces each running `weft switch`, joined by a veth
//! wire): a frame crossing it is handed to the far switch at once (no ring block or poll
//! timer holds it), and TCP crosses it as GSO frames, whole on the wire, and arrives intact:
//! - over a VLAN physnet (AF_PACKET with PACKET_VNET_HDR);
//! - over VXLAN (the endpoint's UDP socket with UDP_SEGMENT).
//!
//! Needs root. Kernel objects are named `upns…` (namespaces) and `up…` (links); the TCP
//! check listens on port 19150.

mod switch_util;
use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use switch_util::*;

/// `up` + `kind` + pid + counter + role, at most 15 characters.
fn up(kind: &str, role: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("up{kind}{:x}{:x}{role}", std::process::id() & 0xfffff, n);
    assert!(name.len() <= 15, "interface name too long: {name}");
    name
}

fn netns(role: &str) -> Netns {
    let name = up("ns", role);
    sh("ip", &["netns", "add", &name]);
    let ns = Netns { name };
    ns.ip(&["link", "set", "lo", "up"]);
    ns
}

/// Two host namespaces joined by a veth wire (MTU 1600), the wire's ends named `wa`, `wb`;
/// with `ips`, 192.0.2.1 and .2 on them (a VXLAN underlay).
struct Hosts {
    a: Netns,
    b: Netns,
    wa: String,
    wb: String,
    _guard: RootLink,
}

fn hosts(ips: bool) -> Hosts {
    let (a, b) = (netns("h"), netns("h"));
    let (wa, wb) = (up("w", ""), up("w", ""));
    sh(
        "ip",
        &["link", "add", &wa, "type", "veth", "peer", "name", &wb],
    );
    let guard = RootLink { name: wa.clone() };
    sh("ip", &["link", "set", &wa, "netns", &a.name]);
    sh("ip", &["link", "set", &wb, "netns", &b.name]);
    for (ns, w, ip) in [(&a, &wa, "192.0.2.1/24"), (&b, &wb, "192.0.2.2/24")] {
        ns.ip(&["link", "set", w, "mtu", "1600"]);
        if ips {
            ns.ip(&["addr", "add", ip, "dev", w]);
        }
        ns.ip(&["link", "set", w, "up"]);
    }
    Hosts {
        a,
        b,
        wa,
        wb,
        _guard: guard,
    }
}

fn vlan_config(wire: &str, port: &str, idx: u8) -> String {
    format!(
        r#"
[[physnet]]
name = "physnet"
interface = "{wire}"

[[network]]
name = "net-vlan100"
type = "vlan"
physnet = "physnet"
segmentation_id = 100

[[port]]
name = "{port}"
kind = "tap"
network = "net-vlan100"
mac = "fa:16:3e:75:00:0{idx}"
fixed_ips = ["10.75.0.{idx}"]
"#
    )
}

fn vxlan_config(local: &str, peer: &str, port: &str, idx: u8) -> String {
    format!(
        r#"
[tunnel]
local_ip = "{local}"

[[tunnel_peer]]
ip = "{peer}"

[[network]]
name = "vx"
type = "vxlan"
segmentation_id = 1001

[[port]]
name = "{port}"
network = "vx"
mac = "fa:16:3e:76:00:0{idx}"
fixed_ips = ["10.76.0.{idx}"]
mtu = 1500
"#
    )
}

/// Median RTT in ms of `count` pings at 20 ms intervals.
fn ping_median_ms(vm: &Netns, ip: &str, count: u32) -> f64 {
    let out = vm.exec(
        "ping",
        &["-c", &count.to_string(), "-i", "0.02", "-W", "1", ip],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        rtts.len() as u32 >= count * 9 / 10,
        "pings lost across the uplink:\n{text}"
    );
    rtts.sort_by(f64::total_cmp);
    rtts[rtts.len() / 2]
}

/// tcpdump on `ifname` in `ns` for up to `secs`, stopping after `count` frames that match
/// `filter`.
fn capture(ns: &Netns, ifname: &str, filter: &str, count: u32, secs: u32) -> std::process::Child {
    let child = ns
        .command("timeout")
        .arg(secs.to_string())
        .args(["tcpdump", "-nn", "-l", "-i", ifname, "-c"])
        .arg(count.to_string())
        .arg(filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child
}

fn captured(mut child: std::process::Child) -> String {
    let mut out = String::new();
    let _ = child.wait();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    out
}

/// Sends `mb` MiB of seeded pseudo-random bytes over TCP (port 19150) from `client` to
/// `server` in 64 KiB writes; returns (bytes, sha256) as sent and as received.
fn tcp_digest(server: &Netns, client: &Netns, server_ip: &str, mb: usize) -> (String, String) {
    let srv = server
        .command("python3")
        .args([
            "-c",
            "import socket,hashlib\ns=socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',19150))\ns.listen(1)\nc,_=s.accept()\nh=hashlib.sha256()\nn=0\n\
             while True:\n b=c.recv(65536)\n if not b: break\n n+=len(b)\n h.update(b)\n\
             print(n,h.hexdigest())",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python server");
    assert!(wait_until(10, || server
        .exec("ss", &["-ltn", "sport = :19150"])
        .stdout
        .windows(5)
        .any(|w| w == b"19150")));
    let script = format!(
        "import socket,hashlib,random\nd=random.Random(16).randbytes({mb}<<20)\n\
         s=socket.create_connection(('{server_ip}',19150),timeout=30)\n\
         for i in range(0,len(d),65536): s.sendall(d[i:i+65536])\n\
         s.close()\nprint(len(d),hashlib.sha256(d).hexdigest())"
    );
    let c = client.exec("python3", &["-c", &script]);
    let got = srv.wait_with_output().expect("python server");
    assert!(
        c.status.success(),
        "TCP client failed: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    (
        String::from_utf8_lossy(&c.stdout).trim().to_string(),
        String::from_utf8_lossy(&got.stdout).trim().to_string(),
    )
}

/// The far switch reads a frame off its AF_PACKET ring as soon as it lands: the median
/// ping across two switches is far below any block-retire or poll timeout (TPACKET_V3's
/// default block timeout is 8 ms or more; the worker's idle poll is 200 ms). And TCP
/// crosses as GSO frames (PACKET_VNET_HDR both ways), whole on the wire, byte-exact.
#[test]
fn vlan_uplink_hands_frames_over_at_once_and_carries_gso_whole() {
    let h = hosts(false);
    let (pa, pb) = (up("a", ""), up("b", ""));
    let swa = SwitchProc::start(Some(&h.a), "upa", &vlan_config(&h.wa, &pa, 1));
    let swb = SwitchProc::start(Some(&h.b), "upb", &vlan_config(&h.wb, &pb, 2));
    let (va, vb) = (netns("v"), netns("v"));
    plug(Some(&h.a), &pa, &va, "fa:16:3e:75:00:01", "10.75.0.1/24");
    plug(Some(&h.b), &pb, &vb, "fa:16:3e:75:00:02", "10.75.0.2/24");
    assert!(
        va.ping_ok("10.75.0.2", 15),
        "no ping across the VLAN uplink:\nA: {}\nB: {}",
        swa.log(),
        swb.log()
    );
    // 2 ms: a wake-up per hop on a loaded 2-core machine is tens of µs; a frame held for a
    // ring block's retire timer (or the idle poll) would take 8-200 ms.
    let p50 = ping_median_ms(&va, "10.75.0.2", 41);
    assert!(p50 < 2.0, "median ping across the uplink {p50} ms");

    let cap = capture(&h.a, &h.wa, "vlan 100 and greater 3000", 3, 30);
    let (sent, got) = tcp_digest(&vb, &va, "10.75.0.2", 16);
    assert_eq!(got, sent, "TCP across the VLAN uplink arrived altered");
    assert!(sent.starts_with(&format!("{} ", 16 << 20)), "{sent}");
    let wire = captured(cap);
    assert!(
        wire.lines().count() >= 3,
        "no frame above the wire's MTU on the wire: GSO frames were cut by the switch:\n{wire}"
    );
}

/// GSO frames from a tap leave the VXLAN endpoint as UDP_SEGMENT runs: the capture on the
/// sending end of the wire shows datagrams far above the wire's MTU (the veth keeps the run
/// whole; the far end's UDP stack cuts it). The far switch gets every segment: the bytes
/// arrive intact. Pings cross with no timer in the way here either.
#[test]
fn vxlan_uplink_sends_gso_frames_as_udp_segment_runs() {
    let h = hosts(true);
    let (pa, pb) = (up("a", ""), up("b", ""));
    let swa = SwitchProc::start(
        Some(&h.a),
        "upva",
        &vxlan_config("192.0.2.1", "192.0.2.2", &pa, 1),
    );
    let swb = SwitchProc::start(
        Some(&h.b),
        "upvb",
        &vxlan_config("192.0.2.2", "192.0.2.1", &pb, 2),
    );
    let (va, vb) = (netns("v"), netns("v"));
    plug(Some(&h.a), &pa, &va, "fa:16:3e:76:00:01", "10.76.0.1/24");
    plug(Some(&h.b), &pb, &vb, "fa:16:3e:76:00:02", "10.76.0.2/24");
    assert!(
        va.ping_ok("10.76.0.2", 15),
        "no ping across the VXLAN uplink:\nA: {}\nB: {}",
        swa.log(),
        swb.log()
    );
    let p50 = ping_median_ms(&va, "10.76.0.2", 41);
    assert!(p50 < 2.0, "median ping across the tunnel {p50} ms");

    let cap = capture(&h.a, &h.wa, "udp port 4789 and greater 3000", 3, 30);
    let (sent, got) = tcp_digest(&vb, &va, "10.76.0.2", 16);
    assert_eq!(got, sent, "TCP across the VXLAN uplink arrived altered");
    assert!(sent.starts_with(&format!("{} ", 16 << 20)), "{sent}");
    let wire = captured(cap);
    assert!(
        wire.lines().count() >= 3,
        "no UDP_SEGMENT run on the wire (every datagram within the MTU):\n{wire}\nA: {}",
        swa.log()
    );
    assert!(!swa.log().contains("UDP_SEGMENT refused"), "{}", swa.log());
    assert_eq!(swb.drops("vxlan-4789", "vxlan_truncated"), 0);
}
