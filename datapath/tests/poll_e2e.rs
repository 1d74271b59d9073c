//! The workers' adaptive spin on a running switch: real taps moved into network namespaces
//! (named `lt…`) as VMs, real pings. With `busy_poll_us` set, a worker that forwarded a ping
//! finds the reply by polling instead of sleeping (the switch's spin-hit counter says so), and
//! once the traffic stops it sleeps: its threads take (almost) no CPU. With `busy_poll_us = 0`
//! the workers never spin. Needs root.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use weft_datapath::daemon::{Switch, SwitchHandle};
use weft_datapath::SwitchConfig;

fn uniq(role: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("lt{:x}{:x}{role}", std::process::id() & 0xfffff, n)
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
        let ip = |a: &[&str]| {
            let mut v = vec!["-n", self.0.as_str()];
            v.extend_from_slice(a);
            sh("ip", &v);
        };
        ip(&["link", "set", "lo", "up"]);
        ip(&["link", "set", ifname, "address", mac]);
        ip(&["addr", "add", cidr, "dev", ifname]);
        ip(&["link", "set", ifname, "up"]);
    }

    /// Pings `ip` `count` times every `interval` seconds; the replies received.
    fn ping(&self, ip: &str, count: u32, interval: &str) -> u32 {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.0, "ping", "-q", "-W", "1", "-i"])
            .args([interval, "-c", &count.to_string(), ip])
            .output()
            .expect("ping");
        let out = String::from_utf8_lossy(&o.stdout);
        out.split(',')
            .find_map(|p| p.trim().strip_suffix(" received"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Two VMs on one local network, both taps on one worker (so a ping's request and reply are
/// read by the same thread), spinning at most `busy_poll_us`.
fn start(busy_poll_us: u64) -> (SwitchHandle, Netns, Netns) {
    let (ta, tb) = (uniq("a"), uniq("b"));
    let text = format!(
        "[switch]\nworkers = 1\nworker_nice = 0\nbusy_poll_us = {busy_poll_us}\n\
         [[network]]\nname = \"n\"\ntype = \"local\"\n\n\
         [[port]]\nname = \"{ta}\"\nnetwork = \"n\"\nmac = \"fa:16:3e:91:00:01\"\n\
         fixed_ips = [\"10.91.0.1\"]\n\n\
         [[port]]\nname = \"{tb}\"\nnetwork = \"n\"\nmac = \"fa:16:3e:91:00:02\"\n\
         fixed_ips = [\"10.91.0.2\"]\n"
    );
    let cfg = SwitchConfig::from_toml(&text, "lt.toml").expect("test config parses");
    let h = Switch::start(cfg).expect("switch starts");
    let (a, b) = (Netns::new(), Netns::new());
    a.plug(&ta, "fa:16:3e:91:00:01", "10.91.0.1/24");
    b.plug(&tb, "fa:16:3e:91:00:02", "10.91.0.2/24");
    // ARP and the MAC table settle.
    assert!(b.ping("10.91.0.1", 3, "0.2") >= 1, "no connectivity");
    (h, a, b)
}

/// CPU ticks (user + system) of this process's packet worker threads.
fn worker_ticks() -> u64 {
    let mut sum = 0;
    for t in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("weft-worker") {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|(_, s)| s).unwrap_or("");
        let f: Vec<u64> = after.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
        // After "pid (comm) ": state is field 0, utime 11, stime 12.
        sum += f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    }
    sum
}

#[test]
fn spinning_worker_catches_replies_and_costs_nothing_once_idle() {
    let (h, _a, b) = start(500);
    let before = h.poll_counts();
    let got = b.ping("10.91.0.1", 200, "0.001");
    assert!(got >= 190, "{got} of 200 pings answered");
    // Outcomes are added up when a worker next blocks: let the last window close.
    std::thread::sleep(Duration::from_millis(100));
    let c = h.poll_counts();
    // Idle: no window opens, the workers block (allow 2 of 100 ticks a second for noise).
    std::thread::sleep(Duration::from_millis(300));
    let t0 = worker_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let idle = worker_ticks() - t0;
    assert!(idle <= 4, "idle workers used {idle} ticks in 2 s");
    // Each request opens a window in which the reply (tens of µs later) is found by polling:
    // expect most replies to be hits, even on a loaded machine.
    let hits = c.spin_hits - before.spin_hits;
    assert!(hits >= 100, "spin found {hits} of 200 replies: {c:?}");
    h.shutdown();
}

#[test]
fn busy_poll_off_never_spins() {
    let (h, _a, b) = start(0);
    let got = b.ping("10.91.0.1", 50, "0.002");
    assert!(got >= 45, "{got} of 50 pings answered");
    let c = h.poll_counts();
    assert_eq!((c.spin_hits, c.spin_misses), (0, 0), "{c:?}");
    // One blocking wait per request and per reply at least.
    assert!(c.sleeps >= 100, "{c:?}");
    h.shutdown();
}
