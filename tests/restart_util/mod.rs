//! Helpers for the restart tests: namespaces holding the kernel side of the switch's taps
//! (named `rsns…`/`rstap…`, removed on drop), `weft switch` processes, and a UDP flow with
//! sequence numbers whose receiver counts what arrived, so that a restart's loss is counted
//! frame by frame. The flow's sockets are made in threads moved into the namespaces
//! (setns), so no helper binary is needed.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::switch_util::{run, sh, wait_until, weft};

/// `n` VM-like namespaces, each holding the kernel side of one tap of a running switch,
/// on one `local` network 10.152.T.0/24 (T = `tag`). Everything is removed on drop.
pub struct Lab {
    pub tag: u8,
    pub nss: Vec<String>,
    pub taps: Vec<String>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub switches: Vec<Child>,
}

impl Lab {
    /// Names and config for `n` ports; nothing started yet.
    pub fn new(tag: u8, n: usize) -> Lab {
        let id = std::process::id() & 0xffff;
        let nss = (0..n).map(|i| format!("rsns{id:x}{tag}{i}")).collect();
        let taps: Vec<String> = (0..n).map(|i| format!("rstap{id:x}{tag}{i}")).collect();
        let dir = std::env::temp_dir().join(format!("weft-rs-{id:x}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("switch.sock");
        let config = dir.join("switch.toml");
        let mut body = format!(
            "[switch]\ncontrol_socket = \"{}\"\nworkers = 2\n\n[[network]]\nname = \"net-rs\"\ntype = \"local\"\n",
            socket.display()
        );
        for (i, t) in taps.iter().enumerate() {
            body.push_str(&format!(
                "\n[[port]]\nname = \"{t}\"\nkind = \"tap\"\nnetwork = \"net-rs\"\nmac = \"{}\"\nfixed_ips = [\"{}\"]\n",
                Lab::mac(i),
                Lab::ip_of(tag, i)
            ));
        }
        std::fs::write(&config, body).unwrap();
        Lab {
            tag,
            nss,
            taps,
            dir,
            socket,
            config,
            switches: Vec::new(),
        }
    }

    pub fn mac(i: usize) -> String {
        format!("fa:16:3e:52:00:{:02x}", i + 1)
    }

    pub fn ip_of(tag: u8, i: usize) -> String {
        format!("10.152.{tag}.{}", i + 1)
    }

    pub fn ip(&self, i: usize) -> String {
        Lab::ip_of(self.tag, i)
    }

    /// Starts `weft switch` (with `extra` flags) logging to `log`; returns its index.
    pub fn spawn_switch(&mut self, extra: &[&str], log: &str) -> usize {
        let err = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new(weft())
            .args(["switch", "--config"])
            .arg(&self.config)
            .args(extra)
            .env("WEFT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn weft switch");
        self.switches.push(child);
        self.switches.len() - 1
    }

    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(log)).unwrap_or_default()
    }

    /// `weft ctl ARGS --json` on the lab's socket; None when it fails.
    pub fn ctl(&self, args: &[&str]) -> Option<serde_json::Value> {
        let sock = self.socket.to_string_lossy().into_owned();
        let mut a = vec!["ctl"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--json", "--socket", &sock]);
        let o = run(weft(), &a);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }

    /// Moves every tap into its namespace with its MAC and address (after the switch made them).
    pub fn plug_all(&self) {
        for (i, (ns, tap)) in self.nss.iter().zip(&self.taps).enumerate() {
            let _ = run("ip", &["netns", "del", ns]);
            sh("ip", &["netns", "add", ns]);
            assert!(
                wait_until(10, || run("ip", &["link", "show", tap]).status.success()),
                "tap {tap} never appeared"
            );
            sh("ip", &["link", "set", tap, "netns", ns]);
            let ipn = |a: &[&str]| {
                let mut v = vec!["-n", ns.as_str()];
                v.extend_from_slice(a);
                sh("ip", &v)
            };
            ipn(&["link", "set", "lo", "up"]);
            ipn(&["link", "set", tap, "address", &Lab::mac(i)]);
            ipn(&["addr", "add", &format!("{}/24", self.ip(i)), "dev", tap]);
            ipn(&["link", "set", tap, "up"]);
            let _ = run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{tap}.disable_ipv6=1"),
                ],
            );
        }
    }

    /// The ifindex of each tap inside its namespace (a re-created tap gets a new one).
    pub fn ifindexes(&self) -> Vec<Option<u32>> {
        self.nss
            .iter()
            .zip(&self.taps)
            .map(|(ns, tap)| {
                let o = run("ip", &["-n", ns, "-o", "link", "show", tap]);
                let s = String::from_utf8_lossy(&o.stdout);
                s.split(':').next().and_then(|n| n.trim().parse().ok())
            })
            .collect()
    }

    /// One ping from port `a` to port `b` (up to `tries` attempts).
    pub fn ping(&self, a: usize, b: usize, tries: u32) -> bool {
        (0..tries).any(|_| {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.nss[a],
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "1",
                    "-q",
                    &self.ip(b),
                ],
            )
            .status
            .success()
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.switches {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.nss {
            let _ = run("ip", &["netns", "del", ns]);
        }
        for t in &self.taps {
            let _ = run("ip", &["link", "del", t]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd; it affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// What a flow's receiver counted.
#[derive(Debug, Clone, Copy)]
pub struct FlowResult {
    pub sent: u64,
    pub received: u64,
    pub duplicates: u64,
}

impl FlowResult {
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// A UDP flow of `pps` datagrams per second for `secs` from namespace `from` to `to_ip:port`
/// in namespace `to`, each carrying its sequence number.
pub struct Flow {
    sender: std::thread::JoinHandle<u64>,
    receiver: std::thread::JoinHandle<(u64, u64)>,
    stop: Arc<AtomicBool>,
}

impl Flow {
    pub fn start(from: &str, to: &str, to_ip: &str, port: u16, pps: u64, secs: u64) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (to, s2) = (to.to_string(), stop.clone());
        let dst: SocketAddr = format!("{to_ip}:{port}").parse().unwrap();
        let receiver = std::thread::spawn(move || {
            enter(&to);
            let sock = UdpSocket::bind(dst).expect("bind receiver");
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut seen = HashSet::new();
            let mut dups = 0u64;
            let mut buf = [0u8; 2048];
            while !s2.load(Ordering::Acquire) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if n >= 8 && !seen.insert(u64::from_be_bytes(buf[..8].try_into().unwrap())) {
                        dups += 1;
                    }
                }
            }
            (seen.len() as u64, dups)
        });
        ready_rx.recv().expect("receiver ready");
        let from = from.to_string();
        let sender = std::thread::spawn(move || {
            enter(&from);
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            // Never block: a datagram that cannot be queued while no switch reads is lost.
            sock.set_nonblocking(true).unwrap();
            let total = pps * secs;
            let start = Instant::now();
            let mut sent = 0u64;
            let mut payload = [0u8; 64];
            while sent < total {
                // Paced per millisecond: the datagrams due by now.
                let due = (start.elapsed().as_micros() as u64 * pps / 1_000_000).min(total);
                while sent < due {
                    payload[..8].copy_from_slice(&sent.to_be_bytes());
                    // A refused send (no ARP answer yet) still counts as sent: it is lost.
                    let _ = sock.send_to(&payload, dst);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        });
        Flow {
            sender,
            receiver,
            stop,
        }
    }

    /// Waits for the sender, lets the last datagrams arrive, and counts.
    pub fn finish(self) -> FlowResult {
        let sent = self.sender.join().expect("sender");
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Release);
        let (received, duplicates) = self.receiver.join().expect("receiver");
        FlowResult {
            sent,
            received,
            duplicates,
        }
    }
}

/// Waits up to `secs` for `child` to exit; its status when it did.
pub fn wait_exit(child: &mut Child, secs: u64) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
