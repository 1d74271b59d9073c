#![allow(dead_code)]
//! The root tests' lab: unique interface and namespace names, commands that must succeed,
//! links and namespaces removed on drop. Each test file names its own prefix, so files (and
//! other checkouts running tests at the same time) never share a name.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `prefix` + this process's id + a counter + `role`: a name no other test uses. Interface
/// names must stay within 15 bytes, so prefixes are two or three letters and roles short.
pub fn uniq(prefix: &str, role: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n:x}{role}", std::process::id() & 0xfffff);
    assert!(name.len() <= 15, "{name} is too long for an interface name");
    name
}

/// Runs `cmd`, whatever its status.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` every 50 ms for up to `secs` seconds; whether it came true.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Whether a link named `name` exists (in this namespace).
pub fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", name]).status.success()
}

/// A link deleted on drop (also when an assertion fails).
pub struct Link(pub String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.0]);
    }
}

/// A network namespace standing for a VM or a host, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// A new namespace named after `prefix`.
    pub fn new(prefix: &str) -> Netns {
        let name = uniq(prefix, "n");
        sh("ip", &["netns", "add", &name]);
        Netns(name)
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `ip -n NS args...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.0.as_str()];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// `cmd` inside the namespace, whatever its status.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", self.0.as_str(), cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Moves the switch's tap `ifname` in (waiting for the switch to make it) as a VM's NIC
    /// with `mac`, IPv6 autoconfiguration off when `quiet`, and `cidr` if given; brings it up.
    pub fn plug(&self, ifname: &str, mac: &str, cidr: Option<&str>, quiet: bool) {
        assert!(
            wait_until(10, || link_exists(ifname)),
            "tap {ifname} never appeared"
        );
        sh("ip", &["link", "set", ifname, "netns", &self.0]);
        self.ip(&["link", "set", "lo", "up"]);
        self.ip(&["link", "set", ifname, "address", mac]);
        if quiet {
            // No router solicitations, DAD or MLD flooded to the other VMs.
            let _ = self.exec(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{ifname}.disable_ipv6=1")],
            );
        }
        if let Some(cidr) = cidr {
            self.ip(&["addr", "add", cidr, "dev", ifname]);
        }
        self.ip(&["link", "set", ifname, "up"]);
    }

    /// Pings `ip` `count` times every `interval` seconds; the replies received.
    pub fn ping(&self, ip: &str, count: u32, interval: &str) -> u32 {
        let o = self.exec(
            "ping",
            &[
                "-q",
                "-W",
                "1",
                "-i",
                interval,
                "-c",
                &count.to_string(),
                ip,
            ],
        );
        String::from_utf8_lossy(&o.stdout)
            .split(',')
            .find_map(|p| p.trim().strip_suffix(" received"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Whether one of `tries` single pings of `ip` is answered.
    pub fn ping_ok(&self, ip: &str, tries: u32) -> bool {
        (0..tries).any(|_| self.ping(ip, 1, "1") == 1)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}
