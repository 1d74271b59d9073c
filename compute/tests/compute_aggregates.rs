//! os-aggregates over HTTP (admin only): create/show/update/delete, hosts
//! in and out, metadata, Nova's 400/403/404/409 for bad input, names taken,
//! a host split over two zones, an aggregate still holding hosts; and what
//! the scheduler makes of them: a flavor's `aggregate_instance_extra_specs`
//! lands only on hosts whose aggregates carry that metadata, an aggregate's
//! zone is its hosts' zone (listed, asked for at create, recorded on the
//! server), an unknown zone is a 400, and an admin's `zone:host` forces
//! the host.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};
use std::collections::BTreeSet;

async fn post(e: &Env, who: &str, path: &str, body: Value) -> (StatusCode, Value) {
    e.call(who, "2.79", Method::POST, path, Some(body)).await
}

async fn get(e: &Env, who: &str, path: &str) -> (StatusCode, Value) {
    e.call(who, "2.79", Method::GET, path, None).await
}

async fn new_aggregate(e: &Env, name: &str, zone: Option<&str>) -> u64 {
    let mut a = json!({ "name": name });
    if let Some(z) = zone {
        a["availability_zone"] = json!(z);
    }
    let (st, b) = post(e, "admin", "/v2.1/os-aggregates", json!({ "aggregate": a })).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["aggregate"]["id"].as_u64().unwrap()
}

async fn act(e: &Env, id: u64, body: Value) -> (StatusCode, Value) {
    post(
        e,
        "admin",
        &format!("/v2.1/os-aggregates/{id}/action"),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_hosts_metadata_bad_input_and_policy() {
    let e = env();
    for h in ["h1", "h2"] {
        e.add_host(h, 8);
    }
    let fast = create_as_nova_answers_and_refuse_bad_bodies(&e).await;
    let other = hosts_in_and_out_one_zone_per_host(&e, fast).await;
    metadata_and_updates(&e, fast).await;
    zones_as_clients_list_them(&e).await;
    delete_only_an_empty_aggregate(&e, fast, other).await;
}

/// Admin only; the create answer (as Nova's, uuid from 2.41); bad bodies, a taken name and
/// unknown ids. Returns aggregate "fast" (zone az1).
async fn create_as_nova_answers_and_refuse_bad_bodies(e: &Env) -> u64 {
    // Admin only.
    let (st, b) = get(e, "alice", "/v2.1/os-aggregates").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let (st, b) = post(
        e,
        "alice",
        "/v2.1/os-aggregates",
        json!({"aggregate": {"name": "x"}}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");

    // Create answers without hosts and metadata (as Nova), uuid from 2.41.
    let (st, b) = post(
        e,
        "admin",
        "/v2.1/os-aggregates",
        json!({"aggregate": {"name": "fast", "availability_zone": "az1"}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let a = &b["aggregate"];
    assert_eq!(a["name"], "fast");
    assert_eq!(a["availability_zone"], "az1");
    assert!(a["uuid"].is_string(), "{a}");
    assert!(
        a.get("hosts").is_none() && a.get("metadata").is_none(),
        "{a}"
    );
    let fast = a["id"].as_u64().unwrap();
    let (st, b) = e
        .call(
            "admin",
            "2.40",
            Method::GET,
            &format!("/v2.1/os-aggregates/{fast}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(b["aggregate"].get("uuid").is_none(), "{b}");
    assert_eq!(
        b["aggregate"]["metadata"],
        json!({"availability_zone": "az1"})
    );

    // Bad bodies and a taken name.
    for body in [
        json!({"aggregate": {}}),
        json!({"aggregate": {"name": ""}}),
        json!({"aggregate": {"name": " padded"}}),
        json!({"aggregate": {"name": "n", "availability_zone": "a:b"}}),
        json!({"aggregate": {"name": "n", "color": "red"}}),
        json!({"aggregate": "n"}),
        json!({"name": "n"}),
    ] {
        let (st, b) = post(e, "admin", "/v2.1/os-aggregates", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {b}");
        assert!(b["badRequest"]["message"].is_string(), "{b}");
    }
    let (st, b) = post(
        e,
        "admin",
        "/v2.1/os-aggregates",
        json!({"aggregate": {"name": "fast"}}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    for id in ["999", "abc"] {
        let (st, b) = get(e, "admin", &format!("/v2.1/os-aggregates/{id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    }
    fast
}

/// Hosts in and out of "fast"; a host stays in one zone ("other", az2, takes h2 and then joins
/// az1). Returns "other".
async fn hosts_in_and_out_one_zone_per_host(e: &Env, fast: u64) -> u64 {
    // Hosts in and out.
    let (st, b) = act(e, fast, json!({"add_host": {"host": "nope"}})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = act(e, fast, json!({"add_host": {"host": "h1"}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["aggregate"]["hosts"], json!(["h1"]));
    let (st, b) = act(e, fast, json!({"add_host": {"host": "h1"}})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = act(e, fast, json!({"add_host": {}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = act(
        e,
        fast,
        json!({"add_host": {"host": "h2"}, "remove_host": {"host": "h1"}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    // A host stays in one zone.
    let other = new_aggregate(e, "other", Some("az2")).await;
    let (st, b) = act(e, other, json!({"add_host": {"host": "h1"}})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = act(e, other, json!({"add_host": {"host": "h2"}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = act(
        e,
        other,
        json!({"set_metadata": {"metadata": {"availability_zone": "az1"}}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "joining az1 splits nothing: {b}");
    other
}

/// Metadata set, replaced and removed with null; renames, a taken name, an empty update.
async fn metadata_and_updates(e: &Env, fast: u64) {
    // Metadata: set, replace, remove with null.
    let (st, b) = act(
        e,
        fast,
        json!({"set_metadata": {"metadata": {"ssd": "true", "rack": "r1"}}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = act(
        e,
        fast,
        json!({"set_metadata": {"metadata": {"ssd": null, "rack": "r2"}}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b["aggregate"]["metadata"],
        json!({"availability_zone": "az1", "rack": "r2"})
    );
    let (st, b) = act(e, fast, json!({"set_metadata": {"metadata": {"k": 5}}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");

    // Update: rename, a taken name, nothing to update.
    let path = format!("/v2.1/os-aggregates/{fast}");
    let (st, b) = e
        .call(
            "admin",
            "2.79",
            Method::PUT,
            &path,
            Some(json!({"aggregate": {"name": "faster"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["aggregate"]["name"], "faster");
    assert!(b["aggregate"]["updated_at"].is_string(), "{b}");
    let (st, b) = e
        .call(
            "admin",
            "2.79",
            Method::PUT,
            &path,
            Some(json!({"aggregate": {"name": "other"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = e
        .call(
            "admin",
            "2.79",
            Method::PUT,
            &path,
            Some(json!({"aggregate": {}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
}

/// The aggregates' zone (az1, both hosts by now) is what clients list, in detail to admins.
async fn zones_as_clients_list_them(e: &Env) {
    // Zones as clients list them: the aggregates' zone for their hosts.
    let (st, b) = get(e, "alice", "/v2.1/os-availability-zone").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let zones: BTreeSet<&str> = b["availabilityZoneInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zoneName"].as_str().unwrap())
        .collect();
    assert_eq!(zones, BTreeSet::from(["az1"]), "{b}");
    let (st, b) = get(e, "alice", "/v2.1/os-availability-zone/detail").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let (st, b) = get(e, "admin", "/v2.1/os-availability-zone/detail").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let az1 = &b["availabilityZoneInfo"][0];
    assert_eq!(az1["zoneName"], "az1");
    assert_eq!(az1["hosts"]["h1"]["nova-compute"]["active"], true, "{b}");
    let (st, b) = get(e, "admin", "/v2.1/os-services?host=h2").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["services"][0]["zone"], "az1", "{b}");
}

/// Delete takes only an empty aggregate; ids are not handed out twice.
async fn delete_only_an_empty_aggregate(e: &Env, fast: u64, other: u64) {
    let path = format!("/v2.1/os-aggregates/{fast}");
    // Delete: only an empty aggregate.
    let (st, b) = e.call("admin", "2.79", Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = act(e, fast, json!({"remove_host": {"host": "h1"}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["aggregate"]["hosts"], json!([]));
    let (st, b) = act(e, fast, json!({"remove_host": {"host": "h1"}})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, _) = e.call("admin", "2.79", Method::DELETE, &path, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = get(e, "admin", &path).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = get(e, "admin", "/v2.1/os-aggregates").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["aggregates"].as_array().unwrap().len(), 1, "{b}");
    // Ids are not handed out twice while a higher one lives.
    let again = new_aggregate(e, "again", None).await;
    assert!(again > other, "{again} after {other}");
}

async fn host_of(e: &Env, id: &str) -> (String, String) {
    let s = e.settled(id).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    (
        s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string(),
        s["OS-EXT-AZ:availability_zone"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

async fn create(e: &Env, who: &str, flavor: &str, zone: Option<&str>) -> (StatusCode, Value) {
    let mut extra = json!({ "flavorRef": flavor });
    if let Some(z) = zone {
        extra["availability_zone"] = json!(z);
    }
    e.create_with(who, "2.79", extra, json!({})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_follows_aggregate_metadata_and_zones() {
    let e = env();
    for h in ["h1", "h2", "h3"] {
        e.add_host(h, 8);
    }
    e.flavor("1", 1).await;
    e.flavor("2", 1).await;
    let (st, b) = post(
        &e,
        "admin",
        "/v2.1/flavors/2/os-extra_specs",
        json!({"extra_specs": {"aggregate_instance_extra_specs:ssd": "true"}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // Before any aggregate carries ssd=true, such a flavor has no host.
    let (st, b) = create(&e, "alice", "2", None).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let s = e.settled(b["server"]["id"].as_str().unwrap()).await;
    assert_eq!(s["status"], "ERROR", "{s}");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("No valid host"),
        "{s}"
    );

    let ssd = new_aggregate(&e, "ssd", None).await;
    let (st, b) = act(&e, ssd, json!({"add_host": {"host": "h2"}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = act(
        &e,
        ssd,
        json!({"set_metadata": {"metadata": {"ssd": "true,nvme"}}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    for _ in 0..3 {
        let (st, b) = create(&e, "alice", "2", None).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        let (host, zone) = host_of(&e, b["server"]["id"].as_str().unwrap()).await;
        assert_eq!((host.as_str(), zone.as_str()), ("h2", "nova"));
    }

    // A zone made of h3 by an aggregate.
    let z = new_aggregate(&e, "edge", Some("edge")).await;
    let (st, b) = act(&e, z, json!({"add_host": {"host": "h3"}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = create(&e, "alice", "1", Some("edge")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let on_edge = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(host_of(&e, &on_edge).await, ("h3".into(), "edge".into()));
    let (st, b) = create(&e, "alice", "1", Some("nowhere")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    // The zone of an aggregate whose host runs a server stays.
    let (st, b) = act(
        &e,
        z,
        json!({"set_metadata": {"metadata": {"availability_zone": "moved"}}}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");

    // zone:host forces the host, for admins only: h2, the fullest, which
    // spreading would never pick.
    let (st, b) = create(&e, "alice", "1", Some("nova:h2")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    for _ in 0..2 {
        let (st, b) = create(&e, "admin", "1", Some("nova:h2")).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        let (host, zone) = host_of(&e, b["server"]["id"].as_str().unwrap()).await;
        assert_eq!((host.as_str(), zone.as_str()), ("h2", "nova"));
    }
}
