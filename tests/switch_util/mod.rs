//! Shared helpers for the switch end-to-end tests: namespaces, veths, a
//! running `weft switch`, and small frame injectors. Every kernel object is
//! named `wsw…` (≤ 15 chars) and removed by a Drop guard, also on failure.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The weft binary under test.
pub fn weft() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

/// A name unique to this process and call: `wsw` + pid + counter + `role`,
/// at most 15 characters.
pub fn uniq(role: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("wsw{:x}{:x}{}", std::process::id() & 0xfffff, n, role);
    assert!(name.len() <= 15, "interface name too long: {name}");
    name
}

/// Runs a command, returning its output (never panics on failure status).
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command and panics with its stderr if it fails.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` every 50 ms until it returns true or `secs` elapse. This is a
/// readiness wait (kernel objects appearing), not a timing assertion.
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

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let name = uniq(role);
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// `ip netns exec NS cmd args...` output.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", self.name.as_str(), cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// A Command running inside the namespace.
    pub fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, cmd]);
        c
    }

    /// One ping with a 1 s deadline; true when answered.
    pub fn ping_once(&self, ip: &str) -> bool {
        self.exec("ping", &["-c", "1", "-W", "1", "-q", ip])
            .status
            .success()
    }

    /// Pings until one answer (up to `tries` attempts; ARP learning and
    /// link-up make the first ones miss).
    pub fn ping_ok(&self, ip: &str, tries: u32) -> bool {
        (0..tries).any(|_| self.ping_once(ip))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A link in the root namespace (or wherever it ends up), deleted on drop if
/// still present in the root namespace.
pub struct RootLink {
    pub name: String,
}

impl Drop for RootLink {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.name]);
    }
}

/// Moves interface `ifname` (in namespace `from`, or the root one) into `vm`,
/// gives it `mac` and `cidr`, and brings it up.
pub fn plug(from: Option<&Netns>, ifname: &str, vm: &Netns, mac: &str, cidr: &str) {
    assert!(
        wait_until(10, || link_exists(from, ifname)),
        "interface {ifname} never appeared"
    );
    match from {
        Some(ns) => ns.ip(&["link", "set", ifname, "netns", &vm.name]),
        None => sh("ip", &["link", "set", ifname, "netns", &vm.name]),
    };
    vm.ip(&["link", "set", ifname, "address", mac]);
    vm.ip(&["addr", "add", cidr, "dev", ifname]);
    vm.ip(&["link", "set", ifname, "up"]);
    // No IPv6 autoconf noise (router solicitations, DAD) in our counters.
    let _ = vm.exec(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{ifname}.disable_ipv6=1")],
    );
}

/// Whether `ifname` exists in `ns` (or the root namespace).
pub fn link_exists(ns: Option<&Netns>, ifname: &str) -> bool {
    match ns {
        Some(ns) => ns.exec("ip", &["link", "show", ifname]).status.success(),
        None => run("ip", &["link", "show", ifname]).status.success(),
    }
}

/// A running `weft switch` (optionally inside a namespace), killed on drop.
pub struct SwitchProc {
    pub child: Child,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub dir: PathBuf,
    stderr_log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// A per-test scratch directory under the target dir, removed on drop.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-{}-{}", tag, uniq("d")));
    std::fs::create_dir_all(&d).expect("mkdir scratch");
    d
}

impl SwitchProc {
    /// Writes `config` (with a `[switch]` control_socket line prepended) and
    /// starts the switch; waits until its control socket answers.
    pub fn start(ns: Option<&Netns>, tag: &str, config_body: &str) -> SwitchProc {
        let dir = scratch_dir(tag);
        let socket = dir.join("switch.sock");
        let config = dir.join("switch.toml");
        std::fs::write(&config, with_socket(config_body, &socket)).expect("write config");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, weft()]);
                c
            }
            None => Command::new(weft()),
        };
        cmd.args(["switch", "--config"]).arg(&config);
        cmd.env("WEFT_LOG", "info");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn weft switch");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(&mut err);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                log2.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut sw = SwitchProc {
            child,
            socket,
            config,
            dir,
            stderr_log: log,
        };
        let ok = wait_until(20, || {
            if let Ok(Some(_)) = sw.child.try_wait() {
                return true;
            }
            sw.ctl_try(&["ports"]).is_some()
        });
        if let Ok(Some(st)) = sw.child.try_wait() {
            panic!("weft switch exited early ({st}): {}", sw.log());
        }
        assert!(
            ok,
            "weft switch control socket never answered: {}",
            sw.log()
        );
        sw
    }

    /// What the switch logged so far.
    pub fn log(&self) -> String {
        self.stderr_log.lock().unwrap().clone()
    }

    /// Runs `weft ctl ARGS --socket S`; None when it fails.
    pub fn ctl_try(&self, args: &[&str]) -> Option<String> {
        let mut a = vec!["ctl"];
        a.extend_from_slice(args);
        let sock = self.socket.to_string_lossy().into_owned();
        a.extend_from_slice(&["--socket", &sock]);
        let o = run(weft(), &a);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `weft ctl ARGS`, panicking on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let mut a = vec!["ctl"];
        a.extend_from_slice(args);
        let sock = self.socket.to_string_lossy().into_owned();
        a.extend_from_slice(&["--socket", &sock]);
        sh(weft(), &a)
    }

    /// `weft ctl ARGS --json` parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ctl(&a)).expect("ctl --json output is JSON")
    }

    /// Drops of `reason` counted on port `port`.
    pub fn drops(&self, port: &str, reason: &str) -> u64 {
        let c = self.ctl_json(&["counters"]);
        c["counters"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port)
            .and_then(|p| p["drops"][reason].as_u64())
            .unwrap_or(0)
    }

    /// Frames received on `port` per the shell counters.
    pub fn rx(&self, port: &str) -> u64 {
        let c = self.ctl_json(&["ports"]);
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port)
            .and_then(|p| p["rx_frames"].as_u64())
            .unwrap_or(0)
    }

    /// Rewrites the config file (keeping our control socket).
    pub fn rewrite_config(&self, body: &str) {
        std::fs::write(&self.config, with_socket(body, &self.socket)).expect("write config");
    }
}

fn with_socket(body: &str, socket: &Path) -> String {
    format!(
        "[switch]\ncontrol_socket = \"{}\"\nworkers = 2\n\n{body}",
        socket.display()
    )
}

impl Drop for SwitchProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends raw Ethernet frames (hex strings) out of `ifname` inside `ns` with
/// an AF_PACKET socket (python3), `count` times each.
pub fn inject(ns: &Netns, ifname: &str, frames_hex: &[String], count: u32) {
    let script = format!(
        "import socket,binascii\n\
         s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
         s.bind(('{ifname}',0))\n\
         for f in {frames:?}:\n\
         \x20   b=binascii.unhexlify(f)\n\
         \x20   for _ in range({count}): s.send(b)\n",
        frames = frames_hex
    );
    let o = ns.exec("python3", &["-c", &script]);
    assert!(
        o.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An AF_PACKET listener (python3) inside a namespace that records, as hex,
/// every received frame containing a marker. Killed on drop.
pub struct FrameCapture {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FrameCapture {
    /// Starts listening on `ifname` in `ns`; returns once the socket is bound.
    pub fn start(ns: &Netns, ifname: &str, marker: &[u8]) -> FrameCapture {
        let script = format!(
            "import socket,sys,binascii\n\
             s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(3))\n\
             s.bind(('{ifname}',0))\n\
             print('ready',flush=True)\n\
             m=binascii.unhexlify('{m}')\n\
             while True:\n\
             \x20   b=s.recv(65536)\n\
             \x20   if m in b: print(binascii.hexlify(b).decode(),flush=True)\n",
            m = hex(marker)
        );
        let mut child = ns
            .command("python3")
            .args(["-u", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn capture");
        let out = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line.trim() == "ready" {
                    let _ = tx.send(());
                } else {
                    l2.lock().unwrap().push(line.trim().to_string());
                }
                line.clear();
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("capture ready");
        FrameCapture { child, lines }
    }

    /// Frames seen so far (hex).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Whether a frame containing `needle` (bytes) was seen.
    pub fn saw(&self, needle: &[u8]) -> bool {
        let h = hex(needle);
        self.lines().iter().any(|l| l.contains(&h))
    }
}

impl Drop for FrameCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses `aa:bb:..` into bytes.
pub fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// A minimal IPv4/UDP frame (checksums left 0; the switch does not check
/// them, and the receiver is an AF_PACKET reader). `tags` are 802.1Q VIDs.
pub fn udp_frame(
    src: &str,
    dst: &str,
    tags: &[u16],
    sip: [u8; 4],
    dip: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&mac(dst));
    f.extend_from_slice(&mac(src));
    for t in tags {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&t.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&sip);
    ip.extend_from_slice(&dip);
    let sum = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let ulen = (8 + payload.len()) as u16;
    f.extend_from_slice(&[0x30, 0x39, 0x30, 0x39]);
    f.extend_from_slice(&ulen.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An ARP request frame (Ethernet source `src`, sender `sha`/`spa`).
pub fn arp_frame(src: &str, sha: &str, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac(sha));
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// Sends `mb` MiB over TCP from `client` to `server` (a python3 socket pair,
/// so the byte count is exact) and returns the byte count the server got.
pub fn tcp_bytes(server: &Netns, client: &Netns, server_ip: &str, mb: usize) -> u64 {
    let mut srv = server
        .command("python3")
        .args([
            "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('0.0.0.0',5201))\ns.listen(1)\nc,_=s.accept()\nn=0\nwhile True:\n b=c.recv(65536)\n if not b: break\n n+=len(b)\nprint(n)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python server");
    assert!(wait_until(10, || server
        .exec("ss", &["-ltn", "sport = :5201"])
        .stdout
        .windows(4)
        .any(|w| w == b"5201")));
    let script = format!(
        "import socket\ns=socket.create_connection(('{server_ip}',5201),timeout=30)\nb=b'x'*65536\nfor _ in range({}): s.sendall(b)\ns.close()",
        mb * 16
    );
    let c = client.exec("python3", &["-c", &script]);
    if !c.status.success() {
        let _ = srv.kill();
        let _ = srv.wait();
        panic!("TCP client failed: {}", String::from_utf8_lossy(&c.stderr));
    }
    let out = srv.wait_with_output().expect("python server");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}
