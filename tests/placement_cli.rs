//! End to end: `weft serve` driven by the real `openstack` CLI with the
//! osc-placement plugin, as an operator (or a deployment tool) uses
//! Placement: providers and their tree, inventories, traits, allocation
//! candidates, allocations and usages, and the refusals.
//!
//! Needs python-openstackclient and osc-placement in /opt/weft-venv
//! (`scripts/install-deps.sh`; or set WEFT_VENV). The test fails, rather
//! than skips, when they are missing.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "weft-placement-cli-pw";
const CMD_TIMEOUT: Duration = Duration::from_secs(180);

fn venv_bin() -> PathBuf {
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
struct Serve {
    child: Child,
    dir: PathBuf,
    env: BTreeMap<String, String>,
    /// Where `--placement-listen` serves placement alone, at the root.
    placement_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    fn start() -> Serve {
        let (port, placement_port) = (free_port(), free_port());
        // One directory per server: the tests of this file run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("weft-placement-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let state = dir.join("state");
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("serve")
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--placement-listen", &format!("127.0.0.1:{placement_port}")])
            // No in-process compute host: it would register this host as a
            // provider, and the test counts providers and candidates.
            .args(["--compute-driver", "none"])
            .env("WEFT_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weft serve");
        let mut s = Serve {
            child,
            dir,
            env: BTreeMap::new(),
            placement_port,
        };
        let openrc = state.join("admin-openrc");
        let deadline = Instant::now() + Duration::from_secs(60);
        let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
        while !(openrc.exists() && up(port) && up(placement_port)) {
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
    fn openstack(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(venv_bin().join("openstack"));
        for (k, _) in std::env::vars() {
            if k.starts_with("OS_") {
                cmd.env_remove(&k);
            }
        }
        let mut child = cmd
            .envs(&self.env)
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

    /// `openstack ARGS -f json`, which must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self.openstack(&all);
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

    /// `openstack ARGS`, which must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.openstack(args);
        assert!(
            !out.status.success(),
            "openstack {} should have failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The rows of a `-f json` table whose `key` is `value`.
fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key}={value} in {rows}"))
}

#[test]
fn osc_placement_drives_weft_placement() {
    let s = Serve::start();
    let catalog = s.json(&["catalog", "show", "placement"]);
    assert_eq!(catalog["type"], "placement");

    // Providers: a compute host with a NUMA node under it.
    let host = s.json(&["resource", "provider", "create", "compute1"]);
    let host_id = host["uuid"].as_str().unwrap().to_string();
    assert_eq!(host["generation"], 0);
    let numa = s.json(&[
        "resource",
        "provider",
        "create",
        "compute1_numa0",
        "--parent-provider",
        &host_id,
    ]);
    assert_eq!(numa["root_provider_uuid"], host_id.as_str());
    let err = s.fails(&["resource", "provider", "create", "compute1"]);
    assert!(err.contains("Conflicting resource provider name"), "{err}");
    let list = s.json(&["resource", "provider", "list", "--in-tree", &host_id]);
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Inventory: 8 VCPUs at 4x overcommit, 16 GiB.
    let inv = s.json(&[
        "resource",
        "provider",
        "inventory",
        "set",
        &host_id,
        "--resource",
        "VCPU=8",
        "--resource",
        "VCPU:allocation_ratio=4.0",
        "--resource",
        "MEMORY_MB=16384",
        "--resource",
        "MEMORY_MB:reserved=512",
    ]);
    assert_eq!(row(&inv, "resource_class", "VCPU")["total"], 8);
    assert_eq!(row(&inv, "resource_class", "MEMORY_MB")["reserved"], 512);
    let err = s.fails(&[
        "resource",
        "provider",
        "inventory",
        "set",
        &host_id,
        "--resource",
        "NOPE=1",
    ]);
    assert!(!err.is_empty());

    // Candidates for one VCPU: the host, with 32 VCPU of capacity.
    let cands = s.json(&["allocation", "candidate", "list", "--resource", "VCPU=1"]);
    let c = row(&cands, "resource provider", &host_id);
    assert_eq!(c["allocation"], "VCPU=1");
    assert!(
        c["inventory used/capacity"]
            .as_str()
            .unwrap()
            .contains("VCPU=0/32"),
        "{c}"
    );

    // Traits filter candidates.
    s.json(&[
        "resource",
        "provider",
        "trait",
        "set",
        &host_id,
        "--trait",
        "HW_CPU_X86_AVX2",
    ]);
    let cands = s.json(&[
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--required",
        "HW_CPU_X86_AVX2",
    ]);
    assert_eq!(cands.as_array().unwrap().len(), 1);
    let cands = s.json(&[
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--forbidden",
        "HW_CPU_X86_AVX2",
        "--os-placement-api-version",
        "1.22",
    ]);
    assert_eq!(cands.as_array().unwrap().len(), 0);

    // An allocation, and the usage it makes.
    let consumer = "5c5b7f9e-1f0a-4c7e-9d9b-3b1e2f000001";
    let alloc = s.json(&[
        "resource",
        "provider",
        "allocation",
        "set",
        consumer,
        "--allocation",
        &format!("rp={host_id},VCPU=2,MEMORY_MB=2048"),
        "--project-id",
        "proj-1",
        "--user-id",
        "user-1",
    ]);
    assert_eq!(alloc[0]["resource_provider"], host_id.as_str());
    let usage = s.json(&["resource", "provider", "usage", "show", &host_id]);
    assert_eq!(row(&usage, "resource_class", "VCPU")["usage"], 2);
    assert_eq!(row(&usage, "resource_class", "MEMORY_MB")["usage"], 2048);
    let by_project = s.json(&["resource", "usage", "show", "proj-1"]);
    assert_eq!(row(&by_project, "resource_class", "VCPU")["usage"], 2);

    // Past the capacity: refused with Placement's words.
    let err = s.fails(&[
        "resource",
        "provider",
        "allocation",
        "set",
        "5c5b7f9e-1f0a-4c7e-9d9b-3b1e2f000002",
        "--allocation",
        &format!("rp={host_id},VCPU=31"),
        "--project-id",
        "proj-1",
        "--user-id",
        "user-1",
    ]);
    assert!(err.contains("exceed the capacity"), "{err}");
    // Inventory in use cannot be removed.
    let err = s.fails(&[
        "resource",
        "provider",
        "inventory",
        "delete",
        &host_id,
        "--resource-class",
        "VCPU",
    ]);
    assert!(err.contains("in use"), "{err}");
    // Nor the provider with allocations, nor the parent of another.
    let err = s.fails(&["resource", "provider", "delete", &host_id]);
    assert!(!err.is_empty());

    // Releasing the allocation frees the host.
    let out = s.openstack(&["resource", "provider", "allocation", "delete", consumer]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage = s.json(&["resource", "provider", "usage", "show", &host_id]);
    assert_eq!(row(&usage, "resource_class", "VCPU")["usage"], 0);
    for id in [numa["uuid"].as_str().unwrap(), &host_id] {
        let out = s.openstack(&["resource", "provider", "delete", id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = s.json(&["resource", "provider", "list"]);
    assert_eq!(list, serde_json::json!([]));
}

/// One HTTP/1.1 request to `port` (placement alone): status line, headers
/// and body as text.
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Auth-Token: {token}\r\n\
         OpenStack-API-Version: placement 1.20\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// `--placement-listen`: Placement alone at the root of a port of its own
/// (as a standalone placement-api on 8778), on the same service and tokens
/// as `/placement`, with root-relative links.
#[test]
fn placement_alone_on_its_own_port() {
    let s = Serve::start();
    let token = s.json(&["token", "issue"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http(s.placement_port, "GET", "/", "", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"max_version\":\"1.39\""), "{r}");
    // No valid token, no provider.
    let r = http(
        s.placement_port,
        "POST",
        "/resource_providers",
        "bogus",
        r#"{"name":"x"}"#,
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = http(
        s.placement_port,
        "POST",
        "/resource_providers",
        &token,
        r#"{"name":"alone"}"#,
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let v: Value = serde_json::from_str(body).unwrap();
    let uuid = v["uuid"].as_str().unwrap();
    let here = format!("/resource_providers/{uuid}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "location: http://127.0.0.1:{}{here}\r\n",
            s.placement_port
        )),
        "{head}"
    );
    let links = v["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["href"] == here.as_str()), "{v}");
    // The same provider through the catalog's /placement, with its links there.
    let shown = s.json(&["resource", "provider", "show", uuid]);
    assert_eq!(shown["name"], "alone");
    let r = http(
        s.placement_port,
        "GET",
        &format!("/resource_providers/{uuid}"),
        &token,
        "",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}
