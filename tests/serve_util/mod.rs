//! A `weft serve` for end-to-end tests driven by the real `openstack` CLI:
//! its own port and state directory, the admin's credentials from the
//! `admin-openrc` it writes, and the CLI run with a deadline.
//!
//! Needs python-openstackclient in /opt/weft-venv (`scripts/install-deps.sh`;
//! or set WEFT_VENV): a test fails, rather than skips, when it is missing.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "weft-cli-admin-pw";
const CMD_TIMEOUT: Duration = Duration::from_secs(180);

pub fn venv_bin() -> PathBuf {
    let venv = std::env::var_os("WEFT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/weft-venv"));
    let bin = venv.join("bin");
    assert!(
        bin.join("openstack").exists(),
        "the openstack CLI is not installed: run scripts/install-deps.sh (or set WEFT_VENV)"
    );
    bin
}

/// A running `weft serve` with its own state directory, killed on drop.
pub struct Serve {
    pub child: Child,
    pub dir: PathBuf,
    /// The admin's OS_* variables from `admin-openrc`.
    pub env: Env,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.dir.join("serve.log")) {
                eprintln!("--- weft serve log (last 40 lines) ---");
                let lines: Vec<&str> = log.lines().collect();
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{l}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Serve {
    /// Starts `weft serve` (with `extra` flags) as `name`'s own server.
    pub fn start(name: &str, extra: &[&str]) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // One directory per server: a file's tests run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("weft-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let state = dir.join("state");
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("serve")
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("WEFT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weft serve");
        let mut s = Serve {
            child,
            dir,
            env: BTreeMap::new(),
        };
        let openrc = state.join("admin-openrc");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(openrc.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()) {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("weft serve exited early: {st}");
            }
            assert!(Instant::now() < deadline, "weft serve did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        for line in std::fs::read_to_string(&openrc).unwrap().lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                s.env
                    .insert(k.to_string(), v.trim_matches('\'').to_string());
            }
        }
        s
    }

    /// `openstack ARGS` as the admin, with a deadline.
    pub fn openstack(&self, args: &[&str]) -> Output {
        run(&self.env, args)
    }

    /// `openstack ARGS -f json` as the admin, which must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        json_as(&self.env, args)
    }

    /// `openstack ARGS` as the admin, which must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        fails_as(&self.env, args)
    }

    /// The admin's variables with another user's credentials in place.
    pub fn env_of(&self, user: &str, password: &str, project: &str) -> Env {
        let mut env = self.env.clone();
        env.insert("OS_USERNAME".into(), user.into());
        env.insert("OS_PASSWORD".into(), password.into());
        env.insert("OS_PROJECT_NAME".into(), project.into());
        env
    }
}

/// OS_* variables for the CLI.
pub type Env = BTreeMap<String, String>;

/// `openstack ARGS` with `env` (and no OS_* of this process), with a deadline.
pub fn run(env: &Env, args: &[&str]) -> Output {
    let mut cmd = Command::new(venv_bin().join("openstack"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd
        .envs(env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openstack");
    let deadline = Instant::now() + CMD_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("timed out: openstack {}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `openstack ARGS -f json` with `env`, which must succeed.
pub fn json_as(env: &Env, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    let out = run(env, &all);
    assert!(
        out.status.success(),
        "openstack {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "openstack {}: {e}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `openstack ARGS` with `env`, which must fail; its stderr.
pub fn fails_as(env: &Env, args: &[&str]) -> String {
    let out = run(env, args);
    assert!(
        !out.status.success(),
        "openstack {} should have failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The row of a `-f json` table whose `key` is `value`.
pub fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key}={value} in {rows}"))
}
