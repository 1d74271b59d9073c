//! A compute host's records mirrored into placement, as Nova keeps them:
//! a host added to a host aggregate puts its provider in the aggregate's
//! placement aggregate (`GET /resource_providers/{rp}/aggregates`, and
//! `member_of` in allocation candidates finds it), removed takes it out,
//! and a registration puts back what placement lost; `DELETE
//! /os-services/{id}` deletes the host's provider and takes the host out
//! of its aggregates, refuses (409) while the provider still holds an
//! allocation, and leaves the other hosts alone.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};

/// The host's service id at 2.53: its provider's uuid.
async fn provider_of(e: &Env, host: &str) -> String {
    let (st, b) = e
        .call(
            "admin",
            "2.53",
            Method::GET,
            &format!("/v2.1/os-services?host={host}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["services"][0]["id"].as_str().unwrap().to_string()
}

/// A new aggregate's (id, uuid).
async fn aggregate(e: &Env, name: &str) -> (u64, String) {
    let (st, b) = e
        .call(
            "admin",
            "2.79",
            Method::POST,
            "/v2.1/os-aggregates",
            Some(json!({"aggregate": {"name": name}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let a = &b["aggregate"];
    (
        a["id"].as_u64().unwrap(),
        a["uuid"].as_str().unwrap().to_string(),
    )
}

async fn host_action(e: &Env, id: u64, action: &str, host: &str) -> (StatusCode, Value) {
    e.call(
        "admin",
        "2.79",
        Method::POST,
        &format!("/v2.1/os-aggregates/{id}/action"),
        Some(json!({ action: {"host": host} })),
    )
    .await
}

/// The provider's placement aggregates (1.19).
async fn rp_aggregates(e: &Env, rp: &str) -> Vec<String> {
    let (st, b) = e
        .placement_call(
            "admin",
            "1.19",
            Method::GET,
            &format!("/resource_providers/{rp}/aggregates"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    serde_json::from_value(b["aggregates"].clone()).unwrap()
}

/// The providers of allocation candidates for 1 VCPU in aggregate `agg`.
async fn candidates_in(e: &Env, agg: &str) -> Vec<String> {
    let (st, b) = e
        .placement_call(
            "admin",
            "1.21",
            Method::GET,
            &format!("/allocation_candidates?resources=VCPU:1&member_of={agg}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let mut rps: Vec<String> = b["provider_summaries"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    rps.sort();
    rps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_membership_is_mirrored_into_placement() {
    let e = env();
    e.add_host("h1", 8);
    e.add_host("h2", 8);
    let (rp1, rp2) = (provider_of(&e, "h1").await, provider_of(&e, "h2").await);
    let (id, uuid) = aggregate(&e, "fast").await;
    assert!(candidates_in(&e, &uuid).await.is_empty());

    let (st, b) = host_action(&e, id, "add_host", "h1").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(rp_aggregates(&e, &rp1).await, std::slice::from_ref(&uuid));
    assert!(rp_aggregates(&e, &rp2).await.is_empty());
    assert_eq!(candidates_in(&e, &uuid).await, std::slice::from_ref(&rp1));

    // A second aggregate on the same host: both kept.
    let (id2, uuid2) = aggregate(&e, "ssd").await;
    host_action(&e, id2, "add_host", "h1").await;
    let mut both = vec![uuid.clone(), uuid2.clone()];
    both.sort();
    assert_eq!(rp_aggregates(&e, &rp1).await, both);

    // A refused add (unknown host, already a member) changes nothing.
    assert_eq!(
        host_action(&e, id, "add_host", "nope").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        host_action(&e, id, "add_host", "h1").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(rp_aggregates(&e, &rp1).await, both);

    let (st, b) = host_action(&e, id, "remove_host", "h1").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(rp_aggregates(&e, &rp1).await, std::slice::from_ref(&uuid2));
    assert!(candidates_in(&e, &uuid).await.is_empty());

    // Placement lost the membership (an operator's PUT, an older weft):
    // the host's next registration puts it back.
    let (st, b) = e
        .placement_call(
            "admin",
            "1.1",
            Method::PUT,
            &format!("/resource_providers/{rp1}/aggregates"),
            Some(json!([])),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(rp_aggregates(&e, &rp1).await.is_empty());
    e.add_host("h1", 8);
    assert_eq!(rp_aggregates(&e, &rp1).await, [uuid2]);
}

async fn delete_service(e: &Env, rp: &str) -> (StatusCode, Value) {
    e.call(
        "admin",
        "2.53",
        Method::DELETE,
        &format!("/v2.1/os-services/{rp}"),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_delete_removes_the_provider_and_the_aggregate_membership() {
    let e = env();
    e.add_host("h1", 8);
    e.add_host("h2", 8);
    let (rp1, rp2) = (provider_of(&e, "h1").await, provider_of(&e, "h2").await);
    let (id, uuid) = aggregate(&e, "fast").await;
    for h in ["h1", "h2"] {
        host_action(&e, id, "add_host", h).await;
    }

    // An allocation on h2's provider (a build that claimed it a moment
    // ago): the delete is refused and nothing is gone.
    let consumer = "0b6d4f0e-5a2c-4d67-9f45-3f1b2c0d9e11";
    let (st, b) = e
        .placement_call(
            "admin",
            "1.28",
            Method::PUT,
            &format!("/allocations/{consumer}"),
            Some(json!({
                "allocations": {rp2.clone(): {"resources": {"VCPU": 1}}},
                "project_id": "p-admin", "user_id": "u-admin",
                "consumer_generation": null,
            })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let (st, b) = delete_service(&e, &rp2).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(
        b["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("allocations"),
        "{b}"
    );
    assert_eq!(provider_of(&e, "h2").await, rp2);

    let (st, _) = e
        .placement_call(
            "admin",
            "1.28",
            Method::DELETE,
            &format!("/allocations/{consumer}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b) = delete_service(&e, &rp2).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");

    // Its provider is gone from placement, the host from the aggregate.
    let (st, b) = e
        .placement_call(
            "admin",
            "1.14",
            Method::GET,
            &format!("/resource_providers/{rp2}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = e
        .placement_call(
            "admin",
            "1.14",
            Method::GET,
            "/resource_providers?name=h2",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["resource_providers"], json!([]), "{b}");
    let (st, b) = e
        .call(
            "admin",
            "2.79",
            Method::GET,
            &format!("/v2.1/os-aggregates/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["aggregate"]["hosts"], json!(["h1"]), "{b}");
    // h1 keeps its provider and membership.
    assert_eq!(candidates_in(&e, &uuid).await, [rp1]);
}
