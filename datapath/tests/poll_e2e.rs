//! The workers' adaptive spin on a running switch: real taps moved into network namespaces
//! (named `lt…`) as VMs, real pings. With `busy_poll_us` set, a worker that forwarded a ping
//! finds the reply by polling instead of sleeping (the switch's spin-hit counter says so), and
//! once the traffic stops it sleeps: its threads take (almost) no CPU. With `busy_poll_us = 0`
//! the workers never spin. Needs root.

mod lab;

use std::time::Duration;

use lab::Netns;
use weft_datapath::daemon::{Switch, SwitchHandle};
use weft_datapath::SwitchConfig;

fn uniq(role: &str) -> String {
    lab::uniq("lt", role)
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
    let (a, b) = (Netns::new("lt"), Netns::new("lt"));
    a.plug(&ta, "fa:16:3e:91:00:01", Some("10.91.0.1/24"), false);
    b.plug(&tb, "fa:16:3e:91:00:02", Some("10.91.0.2/24"), false);
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
