//! A real `weft agent --compute-driver ...` joining a test's `weft serve`
//! as a remote compute host, and the helpers the remote-host tests share.
#![allow(dead_code)]

use crate::serve_util::Serve;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A remote agent process, killed (SIGKILL) on drop.
pub struct Agent {
    pub child: Child,
    pub host: String,
}

impl Agent {
    /// kill -9, as a crash: nothing of the agent runs its shutdown.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ctrl's base URL (what `--ctrl` takes) from the admin's auth URL.
pub fn ctrl_url(s: &Serve) -> String {
    s.env["OS_AUTH_URL"]
        .trim_end_matches('/')
        .trim_end_matches("/v3")
        .trim_end_matches("/identity")
        .to_string()
}

/// Starts `weft agent --host HOST --compute-driver DRIVER` with its own
/// switch (control socket in the test's directory), its state under
/// `s.dir/HOST`, `extra` flags, and its log appended to `s.dir/HOST.log`
/// (a restarted agent keeps one log).
pub fn start_agent(s: &Serve, host: &str, driver: &str, extra: &[&str]) -> Agent {
    let cfg = s.dir.join(format!("{host}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[switch]\ncontrol_socket = \"{}\"\n",
            s.dir.join(format!("{host}-sw.sock")).display()
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.dir.join(format!("{host}.log")))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["agent", "--ctrl", &ctrl_url(s), "--host", host, "--config"])
        .arg(&cfg)
        .args(["--compute-driver", driver, "--compute-state-dir"])
        .arg(s.dir.join(host))
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&s.env)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start weft agent");
    Agent {
        child,
        host: host.to_string(),
    }
}

/// The agent's log so far.
pub fn agent_log(s: &Serve, host: &str) -> String {
    std::fs::read_to_string(s.dir.join(format!("{host}.log"))).unwrap_or_default()
}

/// The `State` of host `host`'s nova-compute in `compute service list`.
pub fn state_of(s: &Serve, host: &str) -> Option<String> {
    s.json(&["compute", "service", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Host"] == host)
        .map(|r| r["State"].as_str().unwrap_or("").to_string())
}

pub fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `key` (VmRSS, VmHWM) of process `pid`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}
