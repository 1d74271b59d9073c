//! The filter scheduler at scale, on a real `weft serve` with 100 compute
//! hosts of the fake driver (`--compute-driver fake --fake-hosts 100`),
//! each with room for one server: creates one after another spread over
//! distinct hosts; 50 creates at once all land, none on a host that is
//! already full; once every host is full the next creates go ERROR with
//! "No valid host was found", and placement's usages never pass a host's
//! capacity. Deleting returns the room. Negative weigher multipliers
//! (`--ram-weight-multiplier -1 --cpu-weight-multiplier -1`) stack servers on
//! one host instead of spreading them.
//!
//! Needs python-openstackclient (scripts/install-deps.sh) and curl.

mod serve_util;

use serde_json::{json, Value};
use serve_util::Serve;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const HOSTS: usize = 100;

/// The compute API's base URL and an admin token, for requests the CLI
/// would make too slowly to be concurrent.
struct Api {
    base: String,
    token: String,
    image: String,
}

impl Api {
    fn new(s: &Serve, image: &str) -> Api {
        let token = s.json(&["token", "issue"])["id"]
            .as_str()
            .unwrap()
            .to_string();
        let auth = &s.env["OS_AUTH_URL"];
        let base = auth
            .trim_end_matches('/')
            .trim_end_matches("/v3")
            .trim_end_matches("/identity")
            .to_string();
        Api {
            base: format!("{base}/compute/v2.1"),
            token,
            image: image.to_string(),
        }
    }

    /// curl METHOD PATH [BODY] on the compute API: (status, JSON body).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.request(&self.base, method, path, body)
    }

    /// curl METHOD BASE+PATH with the token (another service's API).
    fn call_at(&self, base: &str, method: &str, path: &str) -> (u16, Value) {
        self.request(base, method, path, None)
    }

    fn request(&self, base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "-m", "60", "-X", method, "-w", "\n%{http_code}"])
            .args(["-H", &format!("X-Auth-Token: {}", self.token)])
            .args(["-H", "OpenStack-API-Version: compute 2.79"]);
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
        }
        let out = c.arg(format!("{base}{path}")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    fn create(&self, name: &str, net: &str) -> String {
        let (st, b) = self.call(
            "POST",
            "/servers",
            Some(&json!({"server": {"name": name, "imageRef": self.image,
                "flavorRef": "sched.one", "networks": [{"uuid": net}]}})),
        );
        assert_eq!(st, 202, "{b}");
        b["server"]["id"].as_str().unwrap().to_string()
    }

    /// Waits until none of `ids` is in BUILD; id -> (status, host, fault).
    fn settle(&self, ids: &[String]) -> BTreeMap<String, (String, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (st, b) = self.call("GET", "/servers/detail?all_tenants=1", None);
            assert_eq!(st, 200, "{b}");
            let seen: BTreeMap<String, (String, String, String)> = b["servers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| ids.contains(&s["id"].as_str().unwrap().to_string()))
                .map(|s| {
                    (
                        s["id"].as_str().unwrap().to_string(),
                        (
                            s["status"].as_str().unwrap().to_string(),
                            s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or("").to_string(),
                            s["fault"]["message"].as_str().unwrap_or("").to_string(),
                        ),
                    )
                })
                .collect();
            if seen.len() == ids.len() && seen.values().all(|v| v.0 != "BUILD") {
                return seen;
            }
            assert!(Instant::now() < deadline, "still building: {seen:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// Creates `n` servers at once (one thread each); their ids.
fn create_at_once(api: &Api, prefix: &str, n: usize, net: &str) -> Vec<String> {
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .map(|i| sc.spawn(move || api.create(&format!("{prefix}-{i}"), net)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Servers per host among the ACTIVE ones.
fn per_host(seen: &BTreeMap<String, (String, String, String)>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (status, host, _) in seen.values() {
        if status == "ACTIVE" {
            *m.entry(host.clone()).or_default() += 1;
        }
    }
    m
}

#[test]
fn a_hundred_fake_hosts_fill_up_without_overcommit() {
    let s = Serve::start(
        "compute-sched",
        &[
            "--compute-driver",
            "fake",
            "--host",
            "sched",
            "--fake-hosts",
            &HOSTS.to_string(),
            "--fake-host-vcpus",
            "1",
            "--fake-host-memory-mb",
            "2048",
            "--cpu-allocation-ratio",
            "1",
        ],
    );
    let hosts = s.json(&["compute", "service", "list"]);
    assert_eq!(hosts.as_array().unwrap().len(), HOSTS, "{hosts}");
    let rps = s.json(&["resource", "provider", "list"]);
    assert_eq!(rps.as_array().unwrap().len(), HOSTS);

    let img = s.dir.join("img.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    s.json(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        img.to_str().unwrap(),
        "sched-img",
    ]);
    s.json(&[
        "flavor",
        "create",
        "--id",
        "sched.one",
        "--vcpus",
        "1",
        "--ram",
        "256",
        "--disk",
        "1",
        "sched.one",
    ]);
    let net = s.json(&["network", "create", "sched-net"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.json(&[
        "subnet",
        "create",
        "--network",
        "sched-net",
        "--subnet-range",
        "10.77.0.0/20",
        "sched-sub",
    ]);
    // The admin's quota must not be what stops the test.
    let q = s.openstack(&[
        "quota",
        "set",
        "--instances",
        "500",
        "--cores",
        "500",
        "--ram",
        "1000000",
        "admin",
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let img_id = s.json(&["image", "show", "sched-img"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = Api::new(&s, &img_id);

    // One after another: the RAM/CPU weighers spread them over distinct hosts.
    let mut seq = Vec::new();
    for i in 0..5 {
        let id = api.create(&format!("seq-{i}"), &net);
        api.settle(std::slice::from_ref(&id));
        seq.push(id);
    }
    let seen = api.settle(&seq);
    assert_eq!(per_host(&seen).len(), 5, "not spread: {seen:?}");

    // 50 at once: all land, never two on a one-server host.
    let burst = create_at_once(&api, "burst", 50, &net);
    let seen = api.settle(&burst);
    let errors: Vec<_> = seen.values().filter(|v| v.0 != "ACTIVE").collect();
    assert!(errors.is_empty(), "{errors:?}");
    let all: Vec<String> = seq.iter().chain(&burst).cloned().collect();
    let placed = per_host(&api.settle(&all));
    assert!(
        placed.values().all(|n| *n == 1),
        "over-committed: {placed:?}"
    );
    assert_eq!(placed.len(), 55);

    // 60 more at once for the 45 hosts left: 45 land, 15 find no host.
    let over = create_at_once(&api, "over", 60, &net);
    let seen = api.settle(&over);
    let active = seen.values().filter(|v| v.0 == "ACTIVE").count();
    let no_host = seen
        .values()
        .filter(|v| v.0 == "ERROR" && v.2.contains("No valid host was found"))
        .count();
    assert_eq!((active, no_host), (45, 15), "{seen:?}");
    let all: Vec<String> = all.iter().chain(&over).cloned().collect();
    let placed = per_host(&api.settle(&all));
    assert_eq!(placed.len(), HOSTS);
    assert!(
        placed.values().all(|n| *n == 1),
        "over-committed: {placed:?}"
    );
    // Placement agrees: every provider holds exactly its one VCPU.
    let placement = api.base.replace("/compute/v2.1", "/placement");
    for rp in rps.as_array().unwrap() {
        let id = rp["uuid"].as_str().unwrap();
        let (st, usage) = api.call_at(
            &placement,
            "GET",
            &format!("/resource_providers/{id}/usages"),
        );
        assert_eq!(st, 200, "{usage}");
        assert_eq!(usage["usages"]["VCPU"], 1, "provider {id}: {usage}");
    }

    // Deleting one server makes room for exactly one more.
    let (st, _) = api.call("DELETE", &format!("/servers/{}", seq[0]), None);
    assert_eq!(st, 204);
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.call("GET", &format!("/servers/{}", seq[0]), None).0 != 404 {
        assert!(Instant::now() < deadline, "delete did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = create_at_once(&api, "again", 2, &net);
    let seen = api.settle(&again);
    let active = seen.values().filter(|v| v.0 == "ACTIVE").count();
    assert_eq!(active, 1, "{seen:?}");
}

#[test]
fn negative_weigher_multipliers_stack_servers() {
    let s = Serve::start(
        "compute-stack",
        &[
            "--compute-driver",
            "fake",
            "--host",
            "stack",
            "--fake-hosts",
            "3",
            "--fake-host-vcpus",
            "4",
            "--fake-host-memory-mb",
            "4096",
            "--cpu-allocation-ratio",
            "1",
            "--ram-weight-multiplier",
            "-1",
            "--cpu-weight-multiplier",
            "-1",
        ],
    );
    let img = s.dir.join("img.raw");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let img_id = s.json(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        img.to_str().unwrap(),
        "sched-img",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.json(&[
        "flavor",
        "create",
        "--id",
        "sched.one",
        "--vcpus",
        "1",
        "--ram",
        "256",
        "--disk",
        "1",
        "sched.one",
    ]);
    let net = s.json(&["network", "create", "stack-net"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.json(&[
        "subnet",
        "create",
        "--network",
        "stack-net",
        "--subnet-range",
        "10.78.0.0/24",
        "stack-sub",
    ]);
    let api = Api::new(&s, &img_id);
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = api.create(&format!("stack-{i}"), &net);
        api.settle(std::slice::from_ref(&id));
        ids.push(id);
    }
    let placed = per_host(&api.settle(&ids));
    assert_eq!(
        placed.values().copied().collect::<Vec<_>>(),
        vec![3],
        "not stacked: {placed:?}"
    );
}
