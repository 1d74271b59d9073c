//! The agent (weft-agent) against ctrl: in-process on the networking service
//! (`weft serve`'s adapter) and over HTTP on loopback, with a recording switch: it applies the plan,
//! reports ACTIVE once the interface is attached, unplugs deleted ports, and
//! resyncs identically.
//!
//! It lives in the root package, which links both, so that ctrl needs the
//! agent not even as a dev-dependency; it borrows ctrl's test set-up.

#[path = "../ctrl/tests/common/mod.rs"]
mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft::in_process::LocalCtrl;
use weft_agent::{Agent, AgentAuth, Datapath, HostBase, HttpCtrl};
use weft_datapath::{NetworkType, PortKind, SwitchConfig};

#[derive(Clone, Default)]
struct FakeSwitch {
    applied: Arc<Mutex<Vec<SwitchConfig>>>,
    netdevs: Arc<Mutex<BTreeSet<String>>>,
}

/// Whether `cfg` has a port on interface `dev`.
fn carries(cfg: &SwitchConfig, dev: &str) -> bool {
    cfg.ports.iter().any(|p| p.name == dev)
}

impl Datapath for FakeSwitch {
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String> {
        // The switch's own rules accept what the agent planned.
        let cfg = config.validated("plan").map_err(|e| e.to_string())?;
        self.applied.lock().unwrap().push(cfg);
        Ok(())
    }
    fn attached(&self) -> BTreeSet<String> {
        // Attached = configured and the netdev exists.
        let applied = self.applied.lock().unwrap();
        let Some(cfg) = applied.last() else {
            return BTreeSet::new();
        };
        self.netdevs
            .lock()
            .unwrap()
            .iter()
            .filter(|d| carries(cfg, d))
            .cloned()
            .collect()
    }
}

fn base() -> HostBase {
    HostBase::parse("[[physnet]]\nname = \"physnet\"\ninterface = \"wnet-up\"\n").unwrap()
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

async fn status(api: &Api, pid: &str) -> String {
    api.get(&format!("/ports/{pid}"), ADMIN).await.1["port"]["status"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

async fn wait_status(api: &Api, pid: &str, want: &str) {
    for _ in 0..400 {
        if status(api, pid).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("port {pid} never became {want}");
}

async fn make_port(api: &Api, host: &str) -> (String, String) {
    let n = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "physnet", "provider:segmentation_id": 100}}),
        )
        .await;
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": n["id"], "binding:host_id": host}}),
        )
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let dev = format!("tap{}", &pid[..11]);
    (pid, dev)
}

#[tokio::test]
async fn in_process_agent_wires_reports_and_unplugs() {
    let api = Api::new();
    let (pid, dev) = make_port(&api, "h1").await;
    let sw = FakeSwitch::default();
    let mut agent = Agent::new(
        LocalCtrl {
            net: api.net.clone(),
            host: "h1".into(),
            tunnel_ip: None,
        },
        sw.clone(),
        base(),
    );
    agent.pending_wait = Duration::from_millis(20);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(stop_rx));

    eventually("config with the port applied", || {
        sw.applied
            .lock()
            .unwrap()
            .last()
            .is_some_and(|c| carries(c, &dev))
    })
    .await;
    let cfg = sw.applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        cfg.networks[0].network_type,
        NetworkType::Vlan {
            segmentation_id: 100
        },
        "{cfg:?}"
    );
    assert_eq!(cfg.ports[0].kind, PortKind::System, "{cfg:?}");
    // Not attached yet (Nova has not created the tap): DOWN.
    assert_eq!(status(&api, &pid).await, "DOWN");
    // The netdev appears: ACTIVE.
    sw.netdevs.lock().unwrap().insert(dev.clone());
    wait_status(&api, &pid, "ACTIVE").await;
    // Admin-down unplugs it: DOWN, and the port leaves the switch config.
    api.put(
        &format!("/ports/{pid}"),
        ADMIN,
        json!({"port": {"admin_state_up": false}}),
    )
    .await;
    wait_status(&api, &pid, "DOWN").await;
    // DOWN is set by the update itself now; the agent unplugs after.
    eventually("admin-down port leaves the switch config", || {
        !carries(sw.applied.lock().unwrap().last().unwrap(), &dev)
    })
    .await;
    api.put(
        &format!("/ports/{pid}"),
        ADMIN,
        json!({"port": {"admin_state_up": true}}),
    )
    .await;
    wait_status(&api, &pid, "ACTIVE").await;
    // Deleted: gone from the config.
    api.delete(&format!("/ports/{pid}"), ADMIN).await;
    eventually("port removed from the switch", || {
        !carries(sw.applied.lock().unwrap().last().unwrap(), &dev)
    })
    .await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn http_agent_and_restart_resync() {
    let api = Api::new();
    let (pid, dev) = make_port(&api, "h2").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}");

    let sw = FakeSwitch::default();
    sw.netdevs.lock().unwrap().insert(dev.clone());
    let ctrl = HttpCtrl::new(&url, "h2", AgentAuth::Token(ADMIN.into())).unwrap();
    let mut agent = Agent::new(ctrl, sw.clone(), base());
    agent.idle_wait = Duration::from_secs(2);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(stop_rx));
    wait_status(&api, &pid, "ACTIVE").await;
    let last = sw.applied.lock().unwrap().last().cloned().unwrap();
    stop_tx.send(true).unwrap();
    task.await.unwrap();

    // A restarted agent (fresh process state) computes the identical config,
    // so the switch's diff leaves the port alone; status stays ACTIVE.
    let sw2 = FakeSwitch {
        applied: Arc::default(),
        netdevs: sw.netdevs.clone(),
    };
    let ctrl = HttpCtrl::new(&url, "h2", AgentAuth::Token(ADMIN.into())).unwrap();
    let agent = Agent::new(ctrl, sw2.clone(), base());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(stop_rx));
    eventually("resync applied", || !sw2.applied.lock().unwrap().is_empty()).await;
    assert_eq!(sw2.applied.lock().unwrap()[0], last);
    assert_eq!(status(&api, &pid).await, "ACTIVE");

    // A bad token is refused: the agent keeps retrying without applying anything new.
    let sw3 = FakeSwitch::default();
    let ctrl = HttpCtrl::new(&url, "h2", AgentAuth::Token("forged".into())).unwrap();
    let (stop3_tx, stop3_rx) = watch::channel(false);
    let task3 = tokio::spawn(Agent::new(ctrl, sw3.clone(), base()).run(stop3_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sw3.applied.lock().unwrap().is_empty());
    stop3_tx.send(true).unwrap();
    task3.await.unwrap();
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

/// The agent heartbeats (re-registers) every `heartbeat`, so the agents API
/// keeps it alive; without heartbeats the registration would be its last sign.
#[tokio::test]
async fn the_agent_heartbeats() {
    let api = Api::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = api.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ctrl = HttpCtrl::new(
        &format!("http://{addr}"),
        "hb",
        AgentAuth::Token(ADMIN.into()),
    )
    .unwrap();
    let mut agent = Agent::new(ctrl, FakeSwitch::default(), base());
    agent.idle_wait = Duration::from_millis(50);
    agent.heartbeat = Duration::from_millis(200);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(stop_rx));
    eventually("registered", || {
        api.net.read(|st| st.agents.contains_key("hb"))
    })
    .await;
    let first = api.net.revision();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let beats = api.net.revision() - first;
    assert!(
        (3..=8).contains(&beats),
        "{beats} heartbeats in 1.1 s at 200 ms"
    );
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let (st, body) = api.get("/agents", ADMIN).await;
    assert_eq!(st, axum::http::StatusCode::OK);
    assert_eq!(body["agents"][0]["host"], "hb");
    assert_eq!(body["agents"][0]["alive"], true);
}
