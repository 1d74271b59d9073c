//! Networking on weft-store: the legacy state file imported once at its
//! revision, all-or-nothing bulk create, and two replicas on one store
//! (racing for the last free address; seeing each other's writes).

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use weft_ctrl::networking::body::{NetworkReq, PoolReq, PortReq, SecurityGroupReq, SubnetReq};
use weft_ctrl::networking::{service, Ctx, NetError, Networking, TokenValidator};
use weft_identity::policy::Mode;

/// Writes `rows` at `revision` in the pre-weft-store `networking.db` format.
fn write_legacy(path: &std::path::Path, revision: i64, rows: &[weft_store::Row]) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE resources (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
                                 PRIMARY KEY (kind, id));",
    )
    .unwrap();
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('revision', ?1)",
        [revision],
    )
    .unwrap();
    for r in rows {
        c.execute(
            "INSERT INTO resources (kind, id, body) VALUES (?1, ?2, ?3)",
            [&r.kind, &r.id, &r.body],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn legacy_state_file_is_imported_once_at_its_revision() {
    // Records as the old service stored them (same JSON documents).
    let old = Api::new();
    let n = old
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
                "provider:physical_network": "physnet", "provider:segmentation_id": 300}}),
        )
        .await;
    let nid = n["id"].as_str().unwrap().to_string();
    old.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let p = old
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": nid, "binding:host_id": "h1"}}),
        )
        .await;
    let rows = off_runtime(|| old.backend.store().load("networking").unwrap().rows);
    assert!(rows.len() >= 3);

    let backend = Arc::new(Backend::new());
    write_legacy(&backend.dir.path().join("networking.db"), 41, &rows);
    let api = Api::open(backend.clone());
    assert_eq!(api.net.revision(), 41);
    let (s, v) = api
        .get(&format!("/ports/{}", p["id"].as_str().unwrap()), ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["port"]["fixed_ips"][0]["ip_address"], "10.0.0.2");
    // Indexes came with it: the address and the VLAN are still taken.
    let r = api
        .post(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.0.0.2"}]}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "10.0.0.2");
    // An agent that long-polled the old service at revision 41 is not
    // stranded: it waits for 42, which the next write brings.
    let (_, st) = api
        .call(
            "GET",
            "/networking/agent/v1/hosts/h1/state?since=41&timeout=0",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st["revision"], 41);
    assert_eq!(st["ports"].as_array().unwrap().len(), 1);
    let port2 = api
        .create("/ports", ADMIN, json!({"port": {"network_id": nid}}))
        .await;
    assert_eq!(api.net.revision(), 42);
    // Opened again, the store is the truth: the file is not imported twice.
    let Api { backend, app, net } = api;
    drop((app, net));
    let again = Api::open(backend);
    assert_eq!(again.net.revision(), 42);
    let (s, _) = again
        .get(&format!("/ports/{}", port2["id"].as_str().unwrap()), ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_store_that_knows_networking_ignores_the_legacy_file() {
    let backend = Arc::new(Backend::new());
    let api = Api::open(backend.clone());
    api.create("/networks", ALICE, json!({"network": {"name": "new"}}))
        .await;
    let rev = api.net.revision();
    drop(api);
    let stale = weft_store::Row {
        kind: "network".into(),
        id: "legacy-net".into(),
        body: "{}".into(),
    };
    write_legacy(&backend.dir.path().join("networking.db"), 99, &[stale]);
    let again = Api::open(backend);
    assert_eq!(again.net.revision(), rev);
    let (s, _) = again.get("/networks/legacy-net", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn one_subnet(api: &Api) -> String {
    let n = api
        .create("/networks", ALICE, json!({"network": {"name": "n"}}))
        .await;
    let nid = n["id"].as_str().unwrap().to_string();
    api.create(
        "/subnets",
        ALICE,
        json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/24"}}),
    )
    .await;
    nid
}

#[tokio::test]
async fn bulk_port_create_is_all_or_nothing() {
    let api = Api::new();
    let nid = one_subnet(&api).await;
    let rev = api.net.revision();
    let ports = |api: &Api| {
        let api = api.clone();
        async move {
            api.get("/ports", ALICE).await.1["ports"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    // The second item asks for the address the first one asks for: 409, nothing created.
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"ports": [
                {"network_id": nid, "name": "a", "fixed_ips": [{"ip_address": "10.0.0.7"}]},
                {"network_id": nid, "name": "b", "fixed_ips": [{"ip_address": "10.0.0.7"}]}]}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "10.0.0.7");
    assert_eq!(ports(&api).await, 0);
    assert_eq!(api.net.revision(), rev);
    // The second item has a bad field: 400 naming it, nothing created.
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"ports": [
                {"network_id": nid, "name": "a"},
                {"network_id": nid, "admin_state_up": "maybe"}]}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "admin_state_up");
    assert_eq!(ports(&api).await, 0);
    assert_eq!(api.net.revision(), rev);
    // All valid: one commit, distinct addresses and MACs, both listed.
    let (s, v) = api
        .post(
            "/ports",
            ALICE,
            json!({"ports": [{"network_id": nid, "name": "a"}, {"network_id": nid, "name": "b"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let made = v["ports"].as_array().unwrap();
    assert_eq!(made.len(), 2);
    assert_eq!(made[0]["name"], "a");
    assert_ne!(made[0]["fixed_ips"], made[1]["fixed_ips"]);
    assert_ne!(made[0]["mac_address"], made[1]["mac_address"]);
    assert_eq!(api.net.revision(), rev + 1);
    assert_eq!(ports(&api).await, 2);
    // Bulk networks too: an invalid second item creates neither.
    let local =
        |name: &str, mtu: i64| json!({"name": name, "provider:network_type": "local", "mtu": mtu});
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"networks": [local("x", 1400), local("y", -1)]}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "mtu");
    let (_, v) = api.get("/networks?name=x", ADMIN).await;
    assert_eq!(v["networks"], json!([]));
}

#[tokio::test]
async fn a_bad_field_is_named_by_its_path() {
    let api = Api::new();
    let nid = one_subnet(&api).await;
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": 5}]}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "port.fixed_ips[0].ip_address");
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"ports": [{"network_id": nid}, {"network_id": nid, "admin_state_up": "maybe"}]}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "ports[1].admin_state_up");
    let r = api
        .post(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nid, "cidr": "10.1.0.0/24",
                "allocation_pools": [{"start": "10.1.0.5"}]}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "subnet.allocation_pools[0]");
    assert!(r.1.to_string().contains("end"), "{}", r.1);
    let r = api
        .call(
            "POST",
            "/networking/agent/v1/hosts/h1/status",
            Some(ADMIN),
            Some(json!({"ports": {"p1": 3}})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "ports.p1");
    // Unknown and read-only attributes, as Neutron words them.
    let r = api
        .post("/networks", ALICE, json!({"network": {"colour": "blue"}}))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "Unrecognized attribute(s) 'colour'",
    );
    let r = api
        .post("/networks", ALICE, json!({"network": {"status": "DOWN"}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'status' not allowed in POST");
}

#[tokio::test]
async fn store_errors_map_to_409_and_500_with_neutron_bodies() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    async fn render(e: NetError) -> (StatusCode, Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
    let conflict = weft_store::StoreError::Conflict {
        service: "networking".into(),
        expected: 3,
        actual: 4,
    };
    let (s, v) = render(NetError::from(conflict)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["NeutronError"]["type"], "HTTPConflict");
    assert!(v["NeutronError"]["message"].is_string());
    let (s, v) = render(NetError::from(weft_store::StoreError::Backend(
        "gone".into(),
    )))
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["NeutronError"]["type"], "HTTPInternalServerError");
    assert_eq!(v["NeutronError"]["detail"], "");
}

/// A second replica of the service on the same store, over its own connection.
fn replica(backend: &Backend) -> Arc<Networking> {
    off_runtime(|| {
        Networking::open(
            backend.store(),
            backend.dir.path(),
            &config(),
            None,
            Mode::Enforce,
            tokens(),
        )
        .unwrap()
    })
}

fn alice() -> Ctx {
    Ctx::new(tokens().validate(ALICE).unwrap())
}

#[test]
fn two_replicas_race_for_the_last_address_and_exactly_one_wins() {
    let backend = Backend::new();
    let a = replica(&backend);
    let b = replica(&backend);
    let ctx = alice();
    let nid = a
        .write(|st, env| service::create_network(st, env, &ctx, &NetworkReq::default()))
        .unwrap()
        .id;
    // One address to hand out: the pool is 10.0.0.2..10.0.0.2.
    a.write(|st, env| {
        service::create_subnet(
            st,
            env,
            &ctx,
            &SubnetReq {
                network_id: Some(nid.clone()),
                cidr: Some("10.0.0.0/29".into()),
                allocation_pools: Some(vec![PoolReq {
                    start: "10.0.0.2".into(),
                    end: "10.0.0.2".into(),
                }]),
                ..SubnetReq::default()
            },
        )
    })
    .unwrap();
    // B learns of the network and subnet the way it learns of any other
    // write: its conditional commit conflicts, it catches up and reruns.
    let body = PortReq {
        network_id: Some(nid.clone()),
        ..PortReq::default()
    };
    for round in 0..100 {
        let start = Arc::new(Barrier::new(2));
        let race = |net: Arc<Networking>| {
            let (start, body, ctx) = (start.clone(), body.clone(), ctx.clone());
            std::thread::spawn(move || {
                start.wait();
                net.write(|st, env| service::create_port(st, env, &ctx, &body))
            })
        };
        let (ra, rb) = (race(a.clone()), race(b.clone()));
        let results = [ra.join().unwrap(), rb.join().unwrap()];
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert_eq!(won[0].fixed_ips[0].ip_address, "10.0.0.2");
        let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            matches!(
                lost,
                NetError::Conflict {
                    kind: "IpAddressGenerationFailure",
                    ..
                }
            ),
            "round {round}: {lost:?}"
        );
        let winner = won[0].id.clone();
        for net in [&a, &b] {
            net.catch_up().unwrap();
            assert_eq!(net.read(|st| st.ports.len()), 1, "round {round}");
        }
        // Delete through either replica, and go again.
        let deleter = if round % 2 == 0 { &b } else { &a };
        deleter
            .write(|st, env| service::delete_port(st, env, &ctx, &winner))
            .unwrap();
    }
    a.catch_up().unwrap();
    b.catch_up().unwrap();
    assert_eq!(a.revision(), b.revision());
    assert!(a.read(|st| st.ports.is_empty()));
}

#[test]
fn a_write_on_one_replica_is_visible_on_the_other() {
    let backend = Backend::new();
    let a = replica(&backend);
    let b = replica(&backend);
    let ctx = alice();
    // The follower as `weft serve` runs it. On SQLite it only polls (once a
    // second), so there the other replica catches up on demand instead.
    weft_store::follow(backend.store(), vec![b.replica()]).unwrap();
    let following = backend.is_postgresql();
    for i in 0..5 {
        let since = b.revision();
        // An agent long-polling B is woken by A's write.
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(b.wait_host_state("h1", since, Duration::from_secs(10)))
            })
        };
        let body = SecurityGroupReq {
            name: Some(format!("sg-{i}")),
            ..SecurityGroupReq::default()
        };
        let g = a
            .write(|st, env| service::create_sg(st, env, &ctx, &body))
            .unwrap();
        let written = Instant::now();
        // A reads its own write at once.
        assert!(a.read(|st| st.security_groups.contains_key(&g.id)));
        if !following {
            b.catch_up().unwrap();
        }
        loop {
            if b.read(|st| st.security_groups.contains_key(&g.id)) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_millis(100),
                "write {i} not visible on B after 100 ms"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let st = waiter.join().unwrap();
        assert!(st.revision > since, "long-poll on B not woken: {st:?}");
        assert_eq!(b.revision(), a.revision());
    }
    // Five groups and the project's default.
    let v: Value = b.read(|st| json!(st.security_groups.len()));
    assert_eq!(v, json!(6));
}
