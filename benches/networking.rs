//! Networking benches:
//! - agent resync as a pure function: host state (1k / 10k ports) -> switch config;
//! - ctrl side: computing a host's desired state from the service state;
//! - ports created per second through the HTTP API (axum router in-process,
//!   real SQLite file, real policy enforcer);
//! - port create -> agent has applied a config containing it (in-process protocol,
//!   recording switch), p50/p99 printed;
//! - with the real switch (needs root for taps): agent restart = plan + apply
//!   onto a running switch that already carries 1k / 10k ports, and port create
//!   -> the switch has opened the port's tap (datapath programmed), p50/p99.

use axum::body::Body;
use axum::http::Request;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;
use weft::in_process::LocalCtrl;
use weft_agent::{plan, Agent, Datapath, HostBase, WeftSwitch};
use weft_ctrl::networking::{self, NetConfig, Networking, TokenValidator};
use weft_datapath::SwitchConfig;
use weft_identity::policy::{Credentials, Mode};
use weft_proto::{AddressPair, HostNetwork, HostPort, HostState};

fn host_state(n: usize) -> HostState {
    let networks: Vec<HostNetwork> = (0..16)
        .map(|i| HostNetwork {
            id: format!("net-{i:04}"),
            network_type: "vlan".into(),
            physical_network: Some("physnet".into()),
            segmentation_id: Some(100 + i as u32),
            mtu: 1500,
            admin_state_up: true,
            subnets: vec![],
        })
        .collect();
    let ports = (0..n)
        .map(|i| HostPort {
            id: format!("{i:08x}-aaaa-bbbb-cccc-dddddddddddd"),
            network_id: format!("net-{:04}", i % 16),
            mac_address: format!(
                "fa:16:3e:{:02x}:{:02x}:{:02x}",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            ),
            fixed_ips: vec![format!("10.{}.{}.{}", i % 16, (i >> 8) & 0xff, i & 0xff)],
            admin_state_up: true,
            port_security_enabled: true,
            allowed_address_pairs: vec![AddressPair {
                ip_address: "192.168.0.0/24".into(),
                mac_address: String::new(),
            }],
            security_groups: vec!["sg".into()],
            kind: "system".into(),
            devname: format!("tap{i:08x}-aa"),
            status: "ACTIVE".into(),
            dns_name: None,
            name: String::new(),
            instance: None,
        })
        .collect();
    HostState {
        host: "h1".into(),
        revision: 1,
        networks,
        ports,
        security_groups: vec![],
        tunnel_peers: vec![],
    }
}

fn base() -> HostBase {
    HostBase::parse("[[physnet]]\nname = \"physnet\"\ninterface = \"eth1\"\n").unwrap()
}

fn bench_resync(c: &mut Criterion) {
    let mut g = c.benchmark_group("agent_resync_plan");
    g.sample_size(10);
    for n in [1_000usize, 10_000] {
        let st = host_state(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &st, |b, st| {
            let base = base();
            b.iter(|| plan(&base, st))
        });
    }
    g.finish();
}

struct Admin;
impl TokenValidator for Admin {
    fn validate(&self, t: &str) -> Option<Credentials> {
        (t == "admin").then(|| Credentials {
            user_id: "u".into(),
            roles: vec!["admin".into(), "member".into(), "reader".into()],
            project_id: Some("p".into()),
            ..Default::default()
        })
    }
}

fn service(dir: &std::path::Path) -> Arc<Networking> {
    let cfg = NetConfig {
        network_vlan_ranges: vec!["physnet:100:199".into()],
        ..NetConfig::default()
    };
    let store = Arc::new(weft_store::SqliteStore::open(&dir.join("weft.sqlite")).unwrap());
    Networking::open(store, dir, &cfg, None, Mode::Enforce, Arc::new(Admin)).unwrap()
}

async fn call(app: &axum::Router, method: &str, path: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-auth-token", "admin")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

async fn network_with_subnet(app: &axum::Router, host_bits: &str) -> String {
    let n = call(
        app,
        "POST",
        "/networking/v2.0/networks",
        json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "physnet"}}),
    )
    .await;
    let nid = n["network"]["id"].as_str().unwrap().to_string();
    call(
        app,
        "POST",
        "/networking/v2.0/subnets",
        json!({"subnet": {"network_id": nid, "cidr": host_bits}}),
    )
    .await;
    nid
}

fn bench_api(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = service(dir.path());
    let app = axum::Router::new().nest(networking::MOUNT, networking::router(net.clone()));
    let nid = rt.block_on(network_with_subnet(&app, "10.0.0.0/16"));
    let mut g = c.benchmark_group("api");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("port_create_http_sqlite", |b| {
        b.iter(|| {
            rt.block_on(call(
                &app,
                "POST",
                "/networking/v2.0/ports",
                json!({"port": {"network_id": nid, "binding:host_id": "h1"}}),
            ))
        })
    });
    g.finish();
    // ctrl side of a resync: the host's desired state out of the service state.
    let n = net.read(|st| st.ports.len());
    let mut g = c.benchmark_group("ctrl_host_state");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter(|| net.host_state("h1"))
    });
    g.finish();
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Datapath for Recorder {
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap();
        for p in &config.ports {
            if let Some(name) = p.name.strip_prefix("tap") {
                seen.entry(name.to_string()).or_insert(now);
            }
        }
        Ok(())
    }
    fn attached(&self) -> BTreeSet<String> {
        // Everything configured counts as attached, so the agent long-polls
        // on the revision instead of re-asking while ports are pending.
        self.seen
            .lock()
            .unwrap()
            .keys()
            .map(|k| format!("tap{k}"))
            .collect()
    }
}

/// Port create (HTTP) -> config containing the port handed to the switch.
fn port_to_datapath_latency(_c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = service(dir.path());
    let app = axum::Router::new().nest(networking::MOUNT, networking::router(net.clone()));
    let rec = Recorder::default();
    let mut lat = rt.block_on(async {
        let nid = network_with_subnet(&app, "10.1.0.0/16").await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut agent = Agent::new(
            LocalCtrl {
                net: net.clone(),
                host: "h1".into(),
                tunnel_ip: None,
            },
            rec.clone(),
            base(),
        );
        agent.idle_wait = Duration::from_secs(5);
        tokio::spawn(agent.run(stop_rx));
        let mut lat = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            let p = call(
                &app,
                "POST",
                "/networking/v2.0/ports",
                json!({"port": {"network_id": nid, "binding:host_id": "h1"}}),
            )
            .await;
            let key = p["port"]["id"].as_str().unwrap()[..11].to_string();
            loop {
                if let Some(t) = rec.seen.lock().unwrap().get(&key) {
                    lat.push(t.duration_since(t0));
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        let _ = stop_tx.send(true);
        lat
    });
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "port_create_to_agent_apply (in-process, {} ports, growing to 200 on the host): p50 {:?} p99 {:?}",
        lat.len(),
        p(0.5),
        p(0.99)
    );
}

/// The base of a host whose physnet NIC does not exist: the uplink stays
/// pending, and so do the `system` ports of `host_state` (no netdevs), so the
/// switch does the whole config compile + diff without touching the kernel.
const PENDING_BASE: &str = "[[physnet]]\nname = \"physnet\"\ninterface = \"wbnrs-none\"\n";

/// A restarted agent's work on a host with `n` ports: compute the plan from the
/// host state and apply it to the running switch, which already carries that
/// state (so nothing is reopened). This is the Neutron OVS agent's "resync".
fn bench_resync_real_switch(c: &mut Criterion) {
    let base = HostBase::parse(PENDING_BASE).unwrap();
    let mut g = c.benchmark_group("agent_resync_real_switch");
    g.sample_size(10);
    for n in [1_000usize, 10_000] {
        let st = host_state(n);
        let mut sw = WeftSwitch::start(&HostBase::parse(PENDING_BASE).unwrap().config).unwrap();
        // First apply: what a cold start (switch and agent both new) costs.
        let t0 = Instant::now();
        sw.apply(plan(&base, &st).config.as_ref().unwrap()).unwrap();
        println!(
            "agent_resync_real_switch/{n}: cold start (empty switch -> {n} ports) {:?}",
            t0.elapsed()
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &st, |b, st| {
            b.iter(|| sw.apply(plan(&base, st).config.as_ref().unwrap()).unwrap())
        });
        sw.handle.shutdown();
    }
    g.finish();
}

/// The agent's switch, shared with the bench so it can watch the port table.
struct SharedSwitch(Arc<weft_datapath::daemon::SwitchHandle>);

impl Datapath for SharedSwitch {
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String> {
        let cfg = config.validated("bench").map_err(|e| e.to_string())?;
        self.0.apply(cfg).map(|_| ()).map_err(|e| e.to_string())
    }
    fn attached(&self) -> BTreeSet<String> {
        self.0
            .port_states()
            .into_iter()
            .filter(|p| p.attached && p.role == "vm")
            .map(|p| p.name)
            .collect()
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Port create (HTTP) -> the real switch has opened the port's tap and runs a
/// pipeline snapshot with it: the datapath is programmed for that port.
fn port_to_real_datapath_latency(_c: &mut Criterion) {
    if !is_root() {
        println!("port_create_to_datapath_programmed: skipped (taps need root)");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = service(dir.path());
    let app = axum::Router::new().nest(networking::MOUNT, networking::router(net.clone()));
    let sw = SharedSwitch(
        WeftSwitch::start(&HostBase::parse(PENDING_BASE).unwrap().config)
            .unwrap()
            .handle,
    );
    let handle = sw.0.clone();
    let mut lat = rt.block_on(async {
        let nid = network_with_subnet(&app, "10.2.0.0/16").await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut agent = Agent::new(
            LocalCtrl {
                net: net.clone(),
                host: "h1".into(),
                tunnel_ip: None,
            },
            sw,
            HostBase::parse(PENDING_BASE).unwrap(),
        );
        agent.idle_wait = Duration::from_secs(5);
        let task = tokio::spawn(agent.run(stop_rx));
        let mut lat = Vec::new();
        for _ in 0..100 {
            let t0 = Instant::now();
            let p = call(
                &app,
                "POST",
                "/networking/v2.0/ports",
                json!({"port": {"network_id": nid, "binding:host_id": "h1",
                    "binding:profile": {"weft_port_kind": "tap"}}}),
            )
            .await;
            let dev = format!("tap{}", &p["port"]["id"].as_str().unwrap()[..11]);
            loop {
                let up = handle
                    .port_states()
                    .iter()
                    .any(|s| s.name == dev && s.attached);
                if up {
                    lat.push(t0.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_micros(50)).await;
            }
        }
        let _ = stop_tx.send(true);
        let _ = task.await;
        lat
    });
    handle.shutdown();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "port_create_to_datapath_programmed (HTTP create -> real switch has the tap open, {} ports): p50 {:?} p99 {:?}",
        lat.len(),
        p(0.5),
        p(0.99)
    );
}

criterion_group!(
    benches,
    bench_resync,
    bench_resync_real_switch,
    bench_api,
    port_to_datapath_latency,
    port_to_real_datapath_latency
);
criterion_main!(benches);
