//! The build loop with a host it does not run (a remote `weft agent`): the
//! server is scheduled and claimed there and left spawning for the agent;
//! its report makes it ACTIVE (or ERROR). Delete waits for the agent while
//! the host is up, and a host that is down is deleted locally. And the
//! loop's limit on builds at once (`max_concurrent_builds`).

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::json;
use servers_util::env;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_compute::compute::build::{self, host::ComputeHost, Observed, Spawned, Spawner};
use weft_compute::compute::servers::actions::Power;
use weft_compute::compute::servers::record::Server;
use weft_compute::placement::model::Inventory;

fn remote(name: &str) -> ComputeHost {
    ComputeHost {
        name: name.into(),
        provider: String::new(),
        availability_zone: "nova".into(),
        enabled: true,
        disabled_reason: None,
        forced_down: false,
        driver: "fake".into(),
        hypervisor_type: "fake".into(),
        arch: "x86_64".into(),
        vcpus: 8,
        memory_mb: 65536,
        disk_gb: 1000,
        host_ip: "192.0.2.9".into(),
        heartbeat: String::new(),
        seq: 0,
    }
}

fn inventory() -> BTreeMap<String, Inventory> {
    [
        ("VCPU".to_string(), Inventory::with_total(8)),
        ("MEMORY_MB".to_string(), Inventory::with_total(65536)),
        ("DISK_GB".to_string(), Inventory::with_total(1000)),
    ]
    .into()
}

async fn wait_task(e: &servers_util::Env, id: &str, task: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, b) = e
            .call(
                "admin",
                "2.79",
                Method::GET,
                &format!("/v2.1/servers/{id}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        if b["server"]["OS-EXT-STS:task_state"] == task {
            return b["server"].clone();
        }
        assert!(Instant::now() < deadline, "never {task}: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_host_builds_through_its_reports() {
    let e = env();
    e.svc
        .record_host(e.pl.as_ref(), remote("far"), &inventory())
        .unwrap();
    e.flavor("1", 1).await;
    let (st, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    // Placed and claimed on the remote host, left for its agent.
    let s = wait_task(&e, &id, "spawning").await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], "far", "{s}");
    assert_eq!(s["status"], "BUILD");
    assert!(e.pl.snapshot().consumers.contains_key(&id));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wait_task(&e, &id, "spawning").await["status"], "BUILD");

    let svc = e.svc.clone();
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || build::finish_build(&svc, &id2, Ok(Spawned::default())))
        .await
        .unwrap();
    assert_eq!(e.settled(&id).await["status"], "ACTIVE");

    // Delete waits for the agent while the host is up...
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    wait_task(&e, &id, "deleting").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_task(&e, &id, "deleting").await;
    // ...and its report ends it: record and allocation gone.
    let (svc, pl) = (e.svc.clone(), e.pl.clone());
    let s: Server = svc.snapshot().servers[&id].clone();
    tokio::task::spawn_blocking(move || build::finish_teardown(&svc, pl.as_ref(), &s))
        .await
        .unwrap();
    e.gone(&id).await;
    assert!(!e.pl.snapshot().consumers.contains_key(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_remote_build_and_a_dead_host() {
    let e = env();
    e.svc
        .record_host(e.pl.as_ref(), remote("far"), &inventory())
        .unwrap();
    e.flavor("1", 1).await;
    let (_, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    let id = b["server"]["id"].as_str().unwrap().to_string();
    wait_task(&e, &id, "spawning").await;
    let svc = e.svc.clone();
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || build::finish_build(&svc, &id2, Err("no disk".into())))
        .await
        .unwrap();
    let s = e.settled(&id).await;
    assert_eq!(s["status"], "ERROR");
    assert!(
        s["fault"]["message"].as_str().unwrap().contains("no disk"),
        "{s}"
    );
    // The host goes down (forced): delete no longer waits for its agent.
    let svc = e.svc.clone();
    tokio::task::spawn_blocking(move || {
        svc.write(|st, _| {
            let mut h = st.hosts["far"].clone();
            h.forced_down = true;
            Ok(((), vec![weft_compute::compute::state::Change::Host(h)]))
        })
    })
    .await
    .unwrap()
    .unwrap();
    // ctrl releases the ports itself (the agent that would is down).
    let released = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = released.clone();
    e.svc.builds().set_port_release(Arc::new(move |s: &Server| {
        r.lock().unwrap().push(s.id.clone());
        Ok(())
    }));
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    e.gone(&id).await;
    assert!(!e.pl.snapshot().consumers.contains_key(&id));
    assert_eq!(*released.lock().unwrap(), vec![id.clone()]);
}

/// Counts spawns running at once.
#[derive(Default)]
struct Slow {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Spawner for Slow {
    fn spawn(&self, _: &Server) -> Result<Spawned, String> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(Spawned::default())
    }
    fn destroy(&self, _: &Server) -> Result<(), String> {
        Ok(())
    }
    fn power(&self, _: &Server, _: Power) -> Result<(), String> {
        Ok(())
    }
    fn console(&self, _: &Server, _: Option<usize>) -> Result<String, String> {
        Ok(String::new())
    }
    fn observe(&self) -> Result<BTreeMap<String, Observed>, String> {
        Ok(BTreeMap::new())
    }
    fn destroy_orphan(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_at_once_stay_under_the_limit() {
    let e = env();
    let slow = Arc::new(Slow::default());
    e.svc
        .register_host(e.pl.as_ref(), remote("near"), &inventory(), slow.clone())
        .unwrap();
    e.svc.builds().set_max_concurrent(2);
    e.flavor("1", 1).await;
    let (st, b) = e
        .create_with(
            "admin",
            "2.79",
            json!({}),
            json!({"server": {"name": "m", "imageRef": "img",
            "flavorRef": "1", "networks": "none", "min_count": 8, "max_count": 8}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = e.svc.snapshot();
        if all.servers.values().all(|s| s.vm_state == "active") && all.servers.len() == 8 {
            break;
        }
        assert!(Instant::now() < deadline, "the 8 builds did not all finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        slow.max.load(Ordering::SeqCst),
        2,
        "two at once, never more"
    );
}
