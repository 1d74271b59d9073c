//! Two hosts (namespaces each running `weft switch`) joined by a veth wire with IP addresses,
//! carrying a VXLAN tenant network (VNI 1001) between them over UDP 4789: VMs ping and move
//! megabytes of TCP across hosts (GSO frames from the taps are segmented before encap), the
//! capture on the wire is VXLAN with VNI 1001, a VM on VNI 1002 in the same subnet is cut off,
//! spoofed frames are still dropped, and bad datagrams (unknown VNI, no I flag, unknown peer)
//! are counted and dropped at the endpoint. Needs root. Kernel objects are named `wvx…`.

mod switch_util;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use switch_util::*;

/// `wvx` + pid + counter + role, at most 15 characters.
fn wvx(role: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("wvx{:x}{:x}{}", std::process::id() & 0xfffff, n, role);
    assert!(name.len() <= 15, "interface name too long: {name}");
    name
}

/// A namespace named `wvx…` (deleted on drop by [`Netns`]).
fn netns(role: &str) -> Netns {
    let name = wvx(role);
    sh("ip", &["netns", "add", &name]);
    let ns = Netns { name };
    ns.ip(&["link", "set", "lo", "up"]);
    ns
}

fn host_config(local: &str, peer: &str, p1001: &str, p1002: &str, idx: u8, order: bool) -> String {
    let n1 = "[[network]]\nname = \"vx1001\"\ntype = \"vxlan\"\nsegmentation_id = 1001\n";
    let n2 = "[[network]]\nname = \"vx1002\"\ntype = \"vxlan\"\nsegmentation_id = 1002\n";
    let nets = if order {
        format!("{n1}\n{n2}")
    } else {
        format!("{n2}\n{n1}")
    };
    format!(
        r#"
[tunnel]
local_ip = "{local}"

[[tunnel_peer]]
ip = "{peer}"

[[network]]
name = "unused"
type = "local"

{nets}
[[port]]
name = "{p1001}"
network = "vx1001"
mac = "fa:16:3e:7a:00:0{idx}"
fixed_ips = ["10.80.0.{idx}"]
mtu = 1450

[[port]]
name = "{p1002}"
network = "vx1002"
mac = "fa:16:3e:7b:00:0{idx}"
fixed_ips = ["10.80.0.1{idx}"]
mtu = 1450
"#
    )
}

/// `tcpdump -nn -e -l udp port 4789` on `ifname` in `ns`.
struct Capture {
    child: std::process::Child,
}

impl Capture {
    fn start(ns: &Netns, ifname: &str) -> Capture {
        let mut child = ns
            .command("tcpdump")
            .args(["-nn", "-e", "-l", "-i", ifname, "udp", "port", "4789"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/install-deps.sh installs it)");
        let err = child.stderr.take().expect("stderr");
        let mut r = BufReader::new(err);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.contains("listening on") {
                break;
            }
            line.clear();
        }
        Capture { child }
    }

    fn finish(mut self) -> Vec<String> {
        let _ = run("kill", &["-INT", &self.child.id().to_string()]);
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        let _ = self.child.wait();
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one UDP datagram (hex payload) from `src` to `dst`:4789 inside `ns`.
fn send_udp(ns: &Netns, src: &str, dst: &str, payload: &[u8]) {
    let script = format!(
        "import socket,binascii\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('{src}',0))\n\
         s.sendto(binascii.unhexlify('{}'),('{dst}',4789))\n",
        hex(payload)
    );
    let o = ns.exec("python3", &["-c", &script]);
    assert!(
        o.status.success(),
        "send_udp: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn port_json(sw: &SwitchProc, name: &str) -> serde_json::Value {
    sw.ctl_json(&["ports"])["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no port {name}"))
}

#[test]
fn vxlan_network_spans_hosts_over_udp_4789() {
    let (ha, hb) = (netns("h"), netns("h"));
    let (wa, wb) = (wvx("w"), wvx("w"));
    sh(
        "ip",
        &["link", "add", &wa, "type", "veth", "peer", "name", &wb],
    );
    let _guard = RootLink { name: wa.clone() };
    sh("ip", &["link", "set", &wa, "netns", &ha.name]);
    sh("ip", &["link", "set", &wb, "netns", &hb.name]);
    ha.ip(&["addr", "add", "192.0.2.1/24", "dev", &wa]);
    hb.ip(&["addr", "add", "192.0.2.2/24", "dev", &wb]);
    // A third address on host B's wire that is not a configured peer of A.
    hb.ip(&["addr", "add", "192.0.2.9/24", "dev", &wb]);
    ha.ip(&["link", "set", &wa, "up"]);
    hb.ip(&["link", "set", &wb, "up"]);

    let (a1, a2, b1, b2) = (wvx("a"), wvx("a"), wvx("b"), wvx("b"));
    let swa = SwitchProc::start(
        Some(&ha),
        "vxa",
        &host_config("192.0.2.1", "192.0.2.2", &a1, &a2, 1, true),
    );
    let swb = SwitchProc::start(
        Some(&hb),
        "vxb",
        &host_config("192.0.2.2", "192.0.2.1", &b1, &b2, 2, false),
    );
    let (va1, va2, vb1, vb2) = (netns("v"), netns("v"), netns("v"), netns("v"));
    plug(Some(&ha), &a1, &va1, "fa:16:3e:7a:00:01", "10.80.0.1/24");
    plug(Some(&ha), &a2, &va2, "fa:16:3e:7b:00:01", "10.80.0.11/24");
    plug(Some(&hb), &b1, &vb1, "fa:16:3e:7a:00:02", "10.80.0.2/24");
    plug(Some(&hb), &b2, &vb2, "fa:16:3e:7b:00:02", "10.80.0.12/24");
    // The switch created the taps with the tenant MTU of a vxlan network on a 1500-byte wire
    // (what Neutron reports), and it moved with them into the VMs.
    for (vm, ifname) in [(&va1, &a1), (&va2, &a2), (&vb1, &b1), (&vb2, &b2)] {
        let show = vm.ip(&["link", "show", ifname]);
        assert!(show.contains("mtu 1450 "), "{show}");
    }

    let tun = port_json(&swa, "vxlan-4789");
    assert_eq!(tun["kind"], "vxlan");
    assert_eq!(tun["attached"], true);
    // The hosts chose different local VLANs for VNI 1001; the wire only shows the VNI.
    let lva = port_json(&swa, &a1)["local_vlan"].as_u64().unwrap();
    let lvb = port_json(&swb, &b1)["local_vlan"].as_u64().unwrap();
    assert_ne!(lva, lvb, "test wants different local VLANs per host");

    assert!(
        va1.ping_ok("10.80.0.2", 15),
        "VMs on VNI 1001 cannot reach each other across hosts:\nA: {}\nB: {}",
        swa.log(),
        swb.log()
    );
    the_wire_shows_vni_1001_and_no_local_vlan(&ha, &wa, &va1, [lva, lvb]);

    // TCP across hosts: GSO frames from the tap are segmented before encapsulation.
    let got = tcp_bytes(&vb1, &va1, "10.80.0.2", 16);
    assert_eq!(got, 16 * 1024 * 1024, "cross-host TCP transfer incomplete");

    // VNI 1002 is another network: same subnet, no reach. Its own VMs do reach each other.
    assert!(!va2.ping_ok("10.80.0.2", 2));
    assert!(!va1.ping_ok("10.80.0.12", 2));
    assert!(
        va2.ping_ok("10.80.0.12", 10),
        "VNI 1002 VMs cannot reach each other"
    );

    spoofed_frames_stop_before_the_tunnel(&swa, (&va1, &a1), (&vb1, &b1));

    a_peer_removed_by_a_reload_is_cut_off(&swa, &a1, &a2, &va1);

    bad_datagrams_are_counted_and_dropped(&swa, &hb, &va1, &a1);
}

/// Pings from va1 to vb1 as A's wire shows them: VXLAN with VNI 1001 and the I flag, both
/// ways, and neither host's local VLAN (they differ: `local_vlans`) anywhere.
fn the_wire_shows_vni_1001_and_no_local_vlan(
    ha: &Netns,
    wa: &str,
    va1: &Netns,
    local_vlans: [u64; 2],
) {
    let [lva, lvb] = local_vlans;
    let cap = Capture::start(ha, wa);
    assert!(va1
        .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "10.80.0.2"])
        .status
        .success());
    let lines = cap.finish();
    let text = lines.join("\n");
    // tcpdump prints the outer headers and the decoded inner frame on two lines: join them.
    let vx: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("VXLAN"))
        .map(|(i, l)| format!("{l} {}", lines.get(i + 1).map(String::as_str).unwrap_or("")))
        .collect();
    assert!(
        vx.iter()
            .any(|l| l.contains("192.0.2.1.4789 > 192.0.2.2.4789")
                && l.contains("vni 1001")
                && l.contains("10.80.0.1 > 10.80.0.2: ICMP echo request")),
        "no VXLAN VNI 1001 echo request A -> B on the wire:\n{text}"
    );
    assert!(
        vx.iter()
            .any(|l| l.contains("192.0.2.2.4789 > 192.0.2.1.4789")
                && l.contains("vni 1001")
                && l.contains("10.80.0.2 > 10.80.0.1: ICMP echo reply")),
        "no VXLAN VNI 1001 echo reply B -> A on the wire:\n{text}"
    );
    for l in &vx {
        assert!(l.contains("flags [I]"), "VXLAN without the I flag: {l}");
        for id in [lva, lvb] {
            assert!(
                !l.contains(&format!("vlan {id},")),
                "local VLAN {id} on the wire: {l}"
            );
        }
    }
}

/// Frames from a VM with another MAC, another IP or a VLAN tag are dropped (and counted) at
/// A's port, never reaching B's VM through the tunnel.
fn spoofed_frames_stop_before_the_tunnel(
    swa: &SwitchProc,
    (va1, a1): (&Netns, &str),
    (vb1, b1): (&Netns, &str),
) {
    let spoof = udp_frame(
        "fa:16:3e:7a:00:99",
        "fa:16:3e:7a:00:02",
        &[],
        [10, 80, 0, 1],
        [10, 80, 0, 2],
        b"wvx-spoof",
    );
    let ipspoof = udp_frame(
        "fa:16:3e:7a:00:01",
        "fa:16:3e:7a:00:02",
        &[],
        [10, 80, 0, 77],
        [10, 80, 0, 2],
        b"wvx-spoof",
    );
    let tagged = udp_frame(
        "fa:16:3e:7a:00:01",
        "fa:16:3e:7a:00:02",
        &[1001],
        [10, 80, 0, 1],
        [10, 80, 0, 2],
        b"wvx-spoof",
    );
    let seen = FrameCapture::start(vb1, b1, b"wvx-spoof");
    inject(va1, a1, &[hex(&spoof), hex(&ipspoof), hex(&tagged)], 3);
    assert!(wait_until(5, || swa.drops(a1, "mac_spoof") >= 3
        && swa.drops(a1, "ip_spoof") >= 3
        && swa.drops(a1, "tagged_on_vm_port") >= 3));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !seen.saw(b"wvx-spoof"),
        "a spoofed frame crossed the tunnel"
    );
}

/// Live reload: without B as a peer, A neither sends to nor accepts from it; with B back,
/// traffic resumes (the endpoint's socket and the VMs' taps stay open throughout).
fn a_peer_removed_by_a_reload_is_cut_off(swa: &SwitchProc, a1: &str, a2: &str, va1: &Netns) {
    let a_cfg = host_config("192.0.2.1", "192.0.2.2", a1, a2, 1, true);
    swa.rewrite_config(&a_cfg.replace("[[tunnel_peer]]\nip = \"192.0.2.2\"\n", ""));
    swa.ctl_json(&["reload"]);
    assert!(
        wait_until(10, || !va1.ping_once("10.80.0.2")),
        "traffic still crosses with the peer removed"
    );
    assert!(wait_until(5, || swa
        .drops("vxlan-4789", "vxlan_unknown_peer")
        >= 1));
    swa.rewrite_config(&a_cfg);
    swa.ctl_json(&["reload"]);
    assert!(
        va1.ping_ok("10.80.0.2", 15),
        "traffic did not resume with the peer back"
    );
}

/// Bad datagrams at A's endpoint (unknown VNI, no I flag, truncated, a tagged inner frame, an
/// unknown peer) are counted per reason and dropped; a good one with the same inner frame
/// arrives (so the checks are not vacuous).
fn bad_datagrams_are_counted_and_dropped(swa: &SwitchProc, hb: &Netns, va1: &Netns, a1: &str) {
    let inner = udp_frame(
        "fa:16:3e:7a:00:02",
        "fa:16:3e:7a:00:01",
        &[],
        [10, 80, 0, 2],
        [10, 80, 0, 1],
        b"wvx-bad",
    );
    let vxlan = |flags: u8, vni: u32, inner: &[u8]| {
        let v = vni.to_be_bytes();
        let mut d = vec![flags, 0, 0, 0, v[1], v[2], v[3], 0];
        d.extend_from_slice(inner);
        d
    };
    let inner_tagged = udp_frame(
        "fa:16:3e:7a:00:02",
        "fa:16:3e:7a:00:01",
        &[5],
        [10, 80, 0, 2],
        [10, 80, 0, 1],
        b"wvx-bad",
    );
    let bad_before = port_json(swa, "vxlan-4789")["rx_errors"].as_u64().unwrap();
    let reasons = [
        "vxlan_unknown_vni",
        "vxlan_bad_flags",
        "vxlan_truncated",
        "vxlan_inner_tagged",
        "vxlan_unknown_peer",
    ];
    let before: Vec<u64> = reasons.iter().map(|r| swa.drops("vxlan-4789", r)).collect();
    let got_bad = FrameCapture::start(va1, a1, b"wvx-bad");
    send_udp(hb, "192.0.2.2", "192.0.2.1", &vxlan(0x08, 1003, &inner));
    send_udp(hb, "192.0.2.2", "192.0.2.1", &vxlan(0x00, 1001, &inner));
    send_udp(
        hb,
        "192.0.2.2",
        "192.0.2.1",
        &vxlan(0x08, 1001, &inner[..10]),
    );
    send_udp(
        hb,
        "192.0.2.2",
        "192.0.2.1",
        &vxlan(0x08, 1001, &inner_tagged),
    );
    send_udp(hb, "192.0.2.9", "192.0.2.1", &vxlan(0x08, 1001, &inner));
    assert!(
        wait_until(5, || reasons
            .iter()
            .zip(&before)
            .all(|(r, b)| swa.drops("vxlan-4789", r) > *b)),
        "tunnel drops not counted: {}",
        swa.ctl(&["counters", "--json"])
    );
    let bad_after = port_json(swa, "vxlan-4789")["rx_errors"].as_u64().unwrap();
    assert!(bad_after >= bad_before + 5);
    // A good datagram with the same inner frame does arrive (the checks above are not vacuous).
    send_udp(hb, "192.0.2.2", "192.0.2.1", &vxlan(0x08, 1001, &inner));
    assert!(
        wait_until(5, || got_bad
            .lines()
            .iter()
            .filter(|l| l.starts_with(&hex(&inner[..12])))
            .count()
            == 1),
        "the well-formed datagram did not reach the VM once: {:?} {}",
        got_bad.lines(),
        swa.ctl(&["counters", "--json"])
    );
}
