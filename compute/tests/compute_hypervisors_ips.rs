//! What `openstack hypervisor show`, `hypervisor stats show` and `server
//! show`'s address lookups ask of the API beyond the lists: os-hypervisors
//! show (uuid ids from 2.53, integers before; 400 for a malformed uuid, 404
//! for an unknown id), `uptime`, `statistics`, the 2.53 list's
//! `hypervisor_hostname_pattern` and `with_servers`, the pre-2.53 `search`
//! and `servers`; and `/servers/{id}/ips[/{label}]` (404 for another
//! project's server and for a network it is not on).

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};

async fn get(e: &Env, who: &str, mv: &str, path: &str) -> (StatusCode, Value) {
    e.call(who, mv, Method::GET, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypervisor_show_uptime_statistics_and_search() {
    let e = env();
    e.add_host("node-a", 8);
    e.add_host("node-b", 4);
    e.flavor("1", 2).await;
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({"availability_zone": "nova:node-a"}),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let (st, b) = e
        .create_with(
            "admin",
            "2.79",
            json!({"availability_zone": "nova:node-a"}),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let sid = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&sid).await["status"], "ACTIVE");

    let (st, b) = get(&e, "alice", "2.79", "/v2.1/os-hypervisors/statistics").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let (st, b) = get(&e, "admin", "2.79", "/v2.1/os-hypervisors/statistics").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let stats = &b["hypervisor_statistics"];
    assert_eq!(stats["count"], 2, "{b}");
    assert_eq!(stats["vcpus"], 12, "{b}");
    assert_eq!(stats["vcpus_used"], 2, "{b}");
    assert_eq!(stats["running_vms"], 1, "{b}");

    // 2.53: uuids, the name pattern, the servers on it.
    let (st, b) = get(
        &e,
        "admin",
        "2.79",
        "/v2.1/os-hypervisors?hypervisor_hostname_pattern=-a&with_servers=true",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let list = b["hypervisors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{b}");
    assert_eq!(list[0]["hypervisor_hostname"], "node-a");
    assert_eq!(list[0]["servers"][0]["uuid"], sid.as_str(), "{b}");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let (st, b) = get(
        &e,
        "admin",
        "2.79",
        "/v2.1/os-hypervisors?hypervisor_hostname_pattern=zzz",
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = get(&e, "admin", "2.79", &format!("/v2.1/os-hypervisors/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["hypervisor"]["hypervisor_hostname"], "node-a");
    assert_eq!(b["hypervisor"]["vcpus_used"], 2, "{b}");
    let (st, b) = get(
        &e,
        "admin",
        "2.79",
        &format!("/v2.1/os-hypervisors/{id}/uptime"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(
        b["hypervisor"]["uptime"].as_str().unwrap().contains("up"),
        "{b}"
    );
    let (st, b) = get(&e, "admin", "2.79", "/v2.1/os-hypervisors/1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = get(
        &e,
        "admin",
        "2.79",
        "/v2.1/os-hypervisors/0b0b0b0b-0000-4000-8000-000000000000",
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = get(&e, "alice", "2.79", &format!("/v2.1/os-hypervisors/{id}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");

    // Before 2.53: integer ids, search and servers by pattern.
    let (st, b) = get(&e, "admin", "2.1", "/v2.1/os-hypervisors/node/search").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["hypervisors"].as_array().unwrap().len(), 2, "{b}");
    let n = b["hypervisors"][0]["id"].as_u64().unwrap();
    let (st, b) = get(&e, "admin", "2.1", &format!("/v2.1/os-hypervisors/{n}")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = get(&e, "admin", "2.1", "/v2.1/os-hypervisors/node-a/servers").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b["hypervisors"][0]["servers"][0]["uuid"],
        sid.as_str(),
        "{b}"
    );
    let (st, b) = get(&e, "admin", "2.1", "/v2.1/os-hypervisors/nothing/search").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = get(&e, "admin", "2.53", "/v2.1/os-hypervisors/node/search").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "gone from 2.53: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ips_by_network() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let (st, b) = e
        .create_with("alice", "2.79", json!({"name": "wired"}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let sid = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&sid).await["status"], "ACTIVE");

    let (st, b) = get(&e, "alice", "", &format!("/v2.1/servers/{sid}/ips")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"addresses": {"private": [
            {"addr": "10.0.0.5", "version": 4},
            {"addr": "fd00::5", "version": 6}
        ]}})
    );
    let (st, b) = get(&e, "alice", "", &format!("/v2.1/servers/{sid}/ips/private")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["private"][0]["addr"], "10.0.0.5", "{b}");
    let (st, b) = get(&e, "alice", "", &format!("/v2.1/servers/{sid}/ips/public")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    assert!(b["itemNotFound"]["message"].is_string(), "{b}");
    let (st, b) = get(&e, "bob", "", &format!("/v2.1/servers/{sid}/ips")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another project's server: {b}");
    let (st, b) = get(&e, "admin", "", &format!("/v2.1/servers/{sid}/ips")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}
