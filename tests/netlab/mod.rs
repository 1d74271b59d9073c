//! Shared by the networking end-to-end tests: namespaces torn down on drop,
//! commands in namespaces, the real `openstack` CLI, and Nova-style VM plugs.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

pub fn sh(ns: Option<&str>, args: &[&str]) -> Output {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    run(&mut c)
}

pub fn must(ns: Option<&str>, args: &[&str]) {
    let o = sh(ns, args);
    assert!(
        o.status.success(),
        "{ns:?} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Tears everything down even when an assertion fails.
pub struct Lab {
    pub namespaces: Vec<String>,
    pub children: Vec<Child>,
    pub dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    /// A lab for one test: checks it runs as root with the CLI installed,
    /// makes a temp dir named after `prefix`, and creates `namespaces`.
    pub fn new(prefix: &str, namespaces: &[&str]) -> Lab {
        assert_eq!(
            euid(),
            0,
            "this end-to-end test needs root (CI runs as root)"
        );
        assert!(
            Path::new(&openstack_bin()).exists(),
            "openstack CLI missing: run scripts/install-deps.sh"
        );
        let dir = std::env::temp_dir().join(format!("{prefix}-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            namespaces: vec![],
            children: vec![],
            dir,
        };
        for ns in namespaces {
            lab.ns(ns);
        }
        lab
    }

    pub fn ns(&mut self, name: &str) {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        must(None, &["ip", "netns", "add", name]);
        self.namespaces.push(name.to_string());
        must(Some(name), &["ip", "link", "set", "lo", "up"]);
    }
}

pub fn openrc(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

pub fn openstack_bin() -> String {
    let venv = std::env::var("WEFT_VENV").unwrap_or_else(|_| "/opt/weft-venv".into());
    format!("{venv}/bin/openstack")
}

/// The real CLI, run inside namespace `api_ns` (where the API listens).
pub fn os_in(api_ns: &str, env: &HashMap<String, String>, args: &[&str]) -> Result<Value, String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", api_ns, &openstack_bin()])
        .args(args)
        .envs(env);
    let o = run(&mut c);
    if !o.status.success() {
        return Err(format!(
            "openstack {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let s = String::from_utf8_lossy(&o.stdout);
    Ok(serde_json::from_str(&s).unwrap_or(Value::String(s.trim().to_string())))
}

pub fn wait_for<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}");
}

pub fn ping(ns: &str, ip: &str) -> bool {
    sh(Some(ns), &["ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

/// A VM: namespace `vm` holding one end of a veth whose other end, named like
/// Nova's tap for `port`, sits in `host` for the agent to attach.
pub fn plug_vm(host: &str, vm: &str, inner: &str, port: &Value) {
    let id = port["id"].as_str().unwrap();
    let tap = format!("tap{}", &id[..11]);
    let mac = port["mac_address"].as_str().unwrap();
    let ip = port["fixed_ips"][0]["ip_address"].as_str().unwrap();
    must(
        Some(host),
        &[
            "ip", "link", "add", &tap, "type", "veth", "peer", "name", inner, "netns", vm,
        ],
    );
    must(Some(host), &["ip", "link", "set", &tap, "up"]);
    must(Some(vm), &["ip", "link", "set", inner, "address", mac]);
    must(
        Some(vm),
        &["ip", "addr", "add", &format!("{ip}/24"), "dev", inner],
    );
    must(Some(vm), &["ip", "link", "set", inner, "up"]);
}

/// The effective uid, read from /proc to keep the tests free of unsafe code.
pub fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}
