//! Actions on a server of a host this process does not run (a remote
//! `weft agent`): the build loop leaves them in their task state, the
//! agent's report runs the shared finish code (a late report changes
//! nothing); console output is a stored request that another API replica
//! asks and waits for while the agent answers through this one; a host
//! that is down makes every action Nova's 409 at once.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::json;
use servers_util::{call_on, env};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weft_compute::compute::build::host_job::{self, HostJob};
use weft_compute::compute::build::{self, host::ComputeHost, remote, Spawned};
use weft_compute::compute::model::host_request::{Answer, Ask};
use weft_compute::compute::servers::actions::Power;
use weft_compute::placement::model::Inventory;

fn far() -> ComputeHost {
    ComputeHost {
        name: "far".into(),
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

async fn show(e: &servers_util::Env, id: &str) -> serde_json::Value {
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
    b["server"].clone()
}

async fn action(
    app: &axum::Router,
    id: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    call_on(
        app,
        "alice",
        "2.79",
        Method::POST,
        &format!("/v2.1/servers/{id}/action"),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_actions_end_by_the_hosts_report() {
    let e = env();
    let inv: BTreeMap<String, Inventory> = [
        ("VCPU".to_string(), Inventory::with_total(8)),
        ("MEMORY_MB".to_string(), Inventory::with_total(65536)),
        ("DISK_GB".to_string(), Inventory::with_total(1000)),
    ]
    .into();
    e.svc.record_host(e.pl.as_ref(), far(), &inv).unwrap();
    e.flavor("1", 1).await;
    let (_, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while show(&e, &id).await["OS-EXT-STS:task_state"] != "spawning" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (svc, id2) = (e.svc.clone(), id.clone());
    tokio::task::spawn_blocking(move || build::finish_build(&svc, &id2, Ok(Spawned::default())))
        .await
        .unwrap();
    assert_eq!(e.settled(&id).await["status"], "ACTIVE");

    // Stop: recorded, and left for the host's agent.
    let (st, b) = action(&e.app, &id, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(show(&e, &id).await["OS-EXT-STS:task_state"], "powering-off");
    // The agent took it (event opened) and reported: the finish code runs.
    let (svc, id2) = (e.svc.clone(), id.clone());
    tokio::task::spawn_blocking(move || {
        let s = svc.snapshot().servers[&id2].clone();
        assert_eq!(HostJob::of(&s), Some(HostJob::Power(Power::Stop)));
        host_job::begin_event(&svc, &s, HostJob::Power(Power::Stop));
        host_job::finish_power(&svc, &id2, Power::Stop, Ok(()));
        // A late report of another action changes nothing.
        host_job::finish_power(&svc, &id2, Power::Start, Ok(()));
    })
    .await
    .unwrap();
    let s = e.settled(&id).await;
    assert_eq!(s["status"], "SHUTOFF", "{s}");
    assert_eq!(s["OS-EXT-STS:power_state"], 4, "{s}");
    let (_, acts) = e
        .call(
            "admin",
            "2.62",
            Method::GET,
            &format!("/v2.1/servers/{id}/os-instance-actions"),
            None,
        )
        .await;
    let req = acts["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "stop")
        .unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, a) = e
        .call(
            "admin",
            "2.62",
            Method::GET,
            &format!("/v2.1/servers/{id}/os-instance-actions/{req}"),
            None,
        )
        .await;
    let ev = &a["instanceAction"]["events"][0];
    assert_eq!(ev["event"], "compute_stop_instance", "{a}");
    assert_eq!(ev["result"], "Success", "{a}");
    assert_eq!(ev["host"], "far", "{a}");

    // Console output: asked on another replica, answered by the agent
    // through this one.
    let other = e.replica();
    let svc = e.svc.clone();
    let agent = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let _ = svc.catch_up();
            if let Some(r) = remote::pending(&svc.snapshot(), "far").pop() {
                assert_eq!(r.ask, Ask::Console { lines: Some(5) });
                let output = "far console\n".to_string();
                assert!(remote::answer(&svc, "far", &r.id, Answer::Console { output }).unwrap());
                return r.id;
            }
            assert!(Instant::now() < deadline, "never asked");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (st, b) = action(&other, &id, json!({"os-getConsoleOutput": {"length": 5}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["output"], "far console\n");
    let asked = agent.await.unwrap();
    let _ = e.svc.catch_up();
    assert!(
        !e.svc.snapshot().host_requests.contains_key(&asked),
        "the asker removes its request"
    );

    // The host goes down: actions and the console are 409 at once.
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
    let t = Instant::now();
    for body in [
        json!({"os-start": null}),
        json!({"os-getConsoleOutput": {}}),
        json!({"resize": {"flavorRef": "1"}}),
        json!({"createImage": {"name": "x"}}),
    ] {
        let (st, b) = action(&e.app, &id, body.clone()).await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}: {b}");
        assert!(
            b.to_string()
                .contains("Service is unavailable at this time"),
            "{body}: {b}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(show(&e, &id).await["status"], "SHUTOFF");
}

/// A request whose asker died is removed after twice the wait; a fresh one
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_host_requests_expire() {
    use weft_compute::compute::model::host_request::HostRequest;
    use weft_compute::compute::state::Change;
    let e = env();
    let svc = e.svc.clone();
    tokio::task::spawn_blocking(move || {
        let req = |id: &str, created: &str| {
            Change::HostRequest(Box::new(HostRequest {
                id: id.into(),
                server_id: "s".into(),
                host: "far".into(),
                created: created.into(),
                ask: Ask::Console { lines: None },
                answer: None,
            }))
        };
        let now = weft_compute::compute::now_string();
        svc.write(|_, _| {
            Ok((
                (),
                vec![req("old", "2020-01-01T00:00:00.000000"), req("new", &now)],
            ))
        })
        .unwrap();
        remote::expire(&svc, "far");
        let st = svc.snapshot();
        assert!(!st.host_requests.contains_key("old"));
        assert!(st.host_requests.contains_key("new"));
    })
    .await
    .unwrap();
}
