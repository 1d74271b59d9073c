//! Tap I/O over both backends (`[switch] io = "epoll"` and `"uring"`) on a running switch: real
//! taps moved into network namespaces (named `ur…`) as VMs, real ping, iperf3 TCP (64 KiB GSO
//! frames whose vnet header must cross the switch intact) and a 64-byte UDP burst. Each
//! backend must deliver the same: every ping answered, the TCP stream's bytes, no read or
//! write errors, and the switch must say which backend ran. Needs root and iperf3.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use weft_datapath::daemon::{PortState, Switch, SwitchHandle};
use weft_datapath::SwitchConfig;

fn uniq(role: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("ur{:x}{:x}{role}", std::process::id() & 0xfffff, n)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = uniq("n");
        sh("ip", &["netns", "add", &name]);
        Netns(name)
    }

    /// Moves the switch's tap `ifname` in, as a VM's NIC with `mac` and `cidr`.
    fn plug(&self, ifname: &str, mac: &str, cidr: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        while !Command::new("ip")
            .args(["link", "show", ifname])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(Instant::now() < end, "tap {ifname} never appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
        sh("ip", &["link", "set", ifname, "netns", &self.0]);
        for a in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", ifname, "address", mac],
            &["addr", "add", cidr, "dev", ifname],
            &["link", "set", ifname, "up"],
        ] {
            let mut v = vec!["-n", self.0.as_str()];
            v.extend_from_slice(a);
            sh("ip", &v);
        }
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    /// Pings `ip` `count` times every `interval` seconds; the replies received.
    fn ping(&self, ip: &str, count: u32, interval: &str) -> u32 {
        let n = count.to_string();
        let o = self
            .exec(&["ping", "-q", "-W", "1", "-i", interval, "-c", &n, ip])
            .output()
            .expect("ping");
        let out = String::from_utf8_lossy(&o.stdout);
        out.split(',')
            .find_map(|p| p.trim().strip_suffix(" received"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// A one-off iperf3 server on `port`.
    fn iperf_server(&self, port: u16) -> Child {
        let p = port.to_string();
        let c = self
            .exec(&["iperf3", "-s", "-1", "-p", &p])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s");
        std::thread::sleep(Duration::from_millis(300));
        c
    }

    /// Runs an iperf3 client with `extra` arguments; its JSON report.
    fn iperf(&self, ip: &str, port: u16, extra: &[&str]) -> serde_json::Value {
        let p = port.to_string();
        let mut args = vec!["iperf3", "-J", "-c", ip, "-p", &p, "-t", "1"];
        args.extend_from_slice(extra);
        let o = self.exec(&args).output().expect("iperf3 -c");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("iperf3 JSON");
        assert!(v.get("error").is_none(), "iperf3 {extra:?}: {}", v["error"]);
        v
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Two VMs on one local network, on `workers` workers, taps through `io`.
fn start(io: &str, workers: usize) -> (SwitchHandle, Netns, Netns, [String; 2]) {
    let (ta, tb) = (uniq("a"), uniq("b"));
    let text = format!(
        "[switch]\nworkers = {workers}\nworker_nice = 0\nio = \"{io}\"\n\
         [[network]]\nname = \"n\"\ntype = \"local\"\n\n\
         [[port]]\nname = \"{ta}\"\nnetwork = \"n\"\nmac = \"fa:16:3e:92:00:01\"\n\
         fixed_ips = [\"10.92.0.1\"]\n\n\
         [[port]]\nname = \"{tb}\"\nnetwork = \"n\"\nmac = \"fa:16:3e:92:00:02\"\n\
         fixed_ips = [\"10.92.0.2\"]\n"
    );
    let cfg = SwitchConfig::from_toml(&text, "ur.toml").expect("test config parses");
    let h = Switch::start(cfg).expect("switch starts");
    let (a, b) = (Netns::new(), Netns::new());
    a.plug(&ta, "fa:16:3e:92:00:01", "10.92.0.1/24");
    b.plug(&tb, "fa:16:3e:92:00:02", "10.92.0.2/24");
    // ARP and the MAC table settle.
    assert!(
        b.ping("10.92.0.1", 3, "0.2") >= 1,
        "no connectivity over {io}: {:?} {:?}",
        h.port_states(),
        h.poll_counts()
    );
    (h, a, b, [ta, tb])
}

fn port<'a>(states: &'a [PortState], name: &str) -> &'a PortState {
    states.iter().find(|p| p.name == name).expect("port listed")
}

/// Ping, a TCP stream and a small-frame UDP burst from b to a; returns the switch's counters.
fn traffic(io: &str, workers: usize, port_no: u16) -> weft_datapath::daemon::PollCounts {
    let (h, a, b, [ta, tb]) = start(io, workers);
    // Writes to a tap fail while it is down in its new namespace: count from here.
    let s0 = h.port_states();
    let errs0: Vec<(u64, u64)> = [&ta, &tb]
        .iter()
        .map(|n| (port(&s0, n).rx_errors, port(&s0, n).tx_dropped))
        .collect();
    let got = b.ping("10.92.0.1", 50, "0.01");
    assert!(got >= 49, "{io}: {got} of 50 pings answered");

    let mut srv = a.iperf_server(port_no);
    let tcp = b.iperf("10.92.0.1", port_no, &[]);
    let _ = srv.wait();
    let sent = tcp["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    let recvd = tcp["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    // Even a loaded 2-core machine moves well over 10 MB/s between two namespaces.
    assert!(recvd >= 10 << 20, "{io}: TCP moved {recvd} bytes in 1 s");
    assert!(sent >= recvd, "{io}: received {recvd} > sent {sent}");
    let s = h.port_states();
    let (pa, pb) = (port(&s, &ta), port(&s, &tb));
    // The sender's kernel hands the tap 64 KiB TSO frames (offloads announced), which cross
    // the switch whole with their vnet header: far fewer frames than MTU-sized segments.
    assert!(
        pb.rx_bytes / pb.rx_frames.max(1) > 3000,
        "{io}: frames from the sender average {} bytes: {pb:?}",
        pb.rx_bytes / pb.rx_frames.max(1)
    );
    assert!(pa.tx_bytes >= recvd, "{io}: {pa:?}");

    let mut srv = a.iperf_server(port_no + 1);
    let udp = b.iperf("10.92.0.1", port_no + 1, &["-u", "-l", "64", "-b", "20M"]);
    let _ = srv.wait();
    let packets = udp["end"]["sum"]["packets"].as_u64().unwrap_or(0);
    let lost = udp["end"]["sum"]["lost_packets"].as_u64().unwrap_or(0);
    assert!(
        packets > 1000 && lost < packets,
        "{io}: UDP {packets} packets, {lost} lost"
    );

    let s = h.port_states();
    for (p, e0) in [port(&s, &ta), port(&s, &tb)].into_iter().zip(errs0) {
        assert_eq!((p.rx_errors, p.tx_dropped), e0, "{io}: {p:?}");
    }
    // Both directions were forwarded in full: what one tap read, the other was written.
    let (pa, pb) = (port(&s, &ta), port(&s, &tb));
    assert!(pa.tx_frames + 10 >= pb.rx_frames, "{io}: {pa:?} {pb:?}");
    assert!(pb.tx_frames + 10 >= pa.rx_frames, "{io}: {pa:?} {pb:?}");
    // Enter counts are added when a worker next blocks.
    std::thread::sleep(Duration::from_millis(400));
    let c = h.poll_counts();
    h.shutdown();
    c
}

#[test]
fn taps_over_epoll_move_ping_tcp_and_udp() {
    let c = traffic("epoll", 1, 19550);
    assert_eq!((c.io, c.uring_enters), ("epoll", 0), "{c:?}");
}

#[test]
fn taps_over_uring_move_ping_tcp_and_udp() {
    let c = traffic("uring", 1, 19552);
    assert_eq!(c.io, "uring", "{c:?}");
    // Every round enters the ring (the frames went through it, not through read/writev).
    assert!(c.uring_enters >= 100, "{c:?}");
}

#[test]
fn taps_over_uring_on_two_workers_write_each_others_taps() {
    let c = traffic("uring", 2, 19554);
    assert_eq!(c.io, "uring", "{c:?}");
    assert!(c.uring_enters >= 100, "{c:?}");
}
