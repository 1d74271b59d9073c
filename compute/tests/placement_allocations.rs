//! Placement over HTTP: allocations with consumer and provider generations,
//! capacity, `POST /allocations`, usages, and allocation candidates.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

const C1: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const C2: &str = "aaaaaaaa-0000-4000-8000-000000000002";

#[tokio::test]
async fn allocations_generations_and_capacity() {
    let e = env();
    let u = provider(&e.app, "host", None).await;
    inventory(&e.app, &u, &[("VCPU", 4), ("MEMORY_MB", 1024)]).await;
    let put = |_c: &str, vcpu: u64, gen: serde_json::Value| {
        json!({"allocations": {&u: {"resources": {"VCPU": vcpu}}},
            "project_id": "p1", "user_id": "u1", "consumer_generation": gen})
    };
    let path = format!("/allocations/{C1}");
    let r = admin(&e.app, "PUT", &path, "1.28", Some(put(C1, 2, json!(null)))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // A second "new consumer" write is stale.
    let r = admin(&e.app, "PUT", &path, "1.28", Some(put(C1, 1, json!(null)))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), Some("placement.concurrent_update"));
    // consumer_generation is required from 1.28.
    let mut b = put(C1, 1, json!(1));
    b.as_object_mut().unwrap().remove("consumer_generation");
    let r = admin(&e.app, "PUT", &path, "1.28", Some(b)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(&e.app, "GET", &path, "1.28", None).await;
    assert_eq!(r.body["consumer_generation"], 1);
    assert_eq!(r.body["project_id"], "p1");
    assert_eq!(r.body["allocations"][&u]["resources"]["VCPU"], 2);
    assert_eq!(r.body["allocations"][&u]["generation"], 2);
    let r = admin(&e.app, "GET", &path, "1.11", None).await;
    assert!(r.body.get("project_id").is_none());
    // Over capacity: 2 used of 4, 3 more do not fit.
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{C2}"),
        "1.28",
        Some(put(C2, 3, json!(null))),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("exceed the capacity"));
    // Unknown provider, class without inventory, zero.
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{C2}"),
        "1.28",
        Some(json!({
        "allocations": {"bbbbbbbb-0000-4000-8000-000000000009": {"resources": {"VCPU": 1}}},
        "project_id": "p1", "user_id": "u1", "consumer_generation": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{C2}"),
        "1.28",
        Some(json!({
        "allocations": {&u: {"resources": {"DISK_GB": 1}}},
        "project_id": "p1", "user_id": "u1", "consumer_generation": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{C2}"),
        "1.28",
        Some(put(C2, 0, json!(null))),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The list form before 1.12, with project and user from 1.8.
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{C2}"),
        "1.8",
        Some(json!({
        "allocations": [{"resource_provider": {"uuid": &u}, "resources": {"VCPU": 1}}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{C2}"),
        "1.8",
        Some(json!({
        "allocations": [{"resource_provider": {"uuid": &u}, "resources": {"VCPU": 1}}],
        "project_id": "p2", "user_id": "u2"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Provider allocations and usages.
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{u}/allocations"),
        "1.0",
        None,
    )
    .await;
    assert_eq!(r.body["allocations"][C1]["resources"]["VCPU"], 2);
    assert_eq!(r.body["allocations"][C2]["resources"]["VCPU"], 1);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{u}/usages"),
        "1.0",
        None,
    )
    .await;
    assert_eq!(r.body["usages"], json!({"VCPU": 3, "MEMORY_MB": 0}));
    let r = admin(&e.app, "GET", "/usages?project_id=p1", "1.9", None).await;
    assert_eq!(r.body["usages"], json!({"VCPU": 2}));
    let r = admin(
        &e.app,
        "GET",
        "/usages?project_id=p1&user_id=nobody",
        "1.9",
        None,
    )
    .await;
    assert_eq!(r.body["usages"], json!({}));
    let r = admin(&e.app, "GET", "/usages", "1.9", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(&e.app, "GET", "/usages?project_id=p1", "1.8", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Shrinking the consumer with its generation; then deleting it.
    let r = admin(&e.app, "PUT", &path, "1.28", Some(put(C1, 1, json!(1)))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = admin(&e.app, "DELETE", &path, "1.28", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(&e.app, "DELETE", &path, "1.28", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = admin(&e.app, "GET", &path, "1.28", None).await;
    assert_eq!(r.body, json!({"allocations": {}}));
    // The provider with allocations cannot be deleted.
    let r = admin(
        &e.app,
        "DELETE",
        &format!("/resource_providers/{u}"),
        "1.28",
        None,
    )
    .await;
    assert_eq!(r.code(), Some("placement.resource_provider.inuse"));
}

#[tokio::test]
async fn post_allocations_is_all_or_nothing() {
    let e = env();
    let u = provider(&e.app, "host", None).await;
    inventory(&e.app, &u, &[("VCPU", 4)]).await;
    let both = |a: u64, b: u64| {
        json!({
            C1: {"allocations": {&u: {"resources": {"VCPU": a}}}, "project_id": "p", "user_id": "u",
                 "consumer_generation": null, "consumer_type": "INSTANCE"},
            C2: {"allocations": {&u: {"resources": {"VCPU": b}}}, "project_id": "p", "user_id": "u",
                 "consumer_generation": null, "consumer_type": "MIGRATION"},
        })
    };
    // Before 1.13 the route does not exist (Placement's gabbi: a 404).
    let r = admin(&e.app, "POST", "/allocations", "1.12", Some(both(1, 1))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = admin(&e.app, "POST", "/allocations", "1.38", Some(both(3, 2))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{u}/usages"),
        "1.38",
        None,
    )
    .await;
    assert_eq!(
        r.body["usages"]["VCPU"], 0,
        "nothing of a refused POST is written"
    );
    let r = admin(&e.app, "POST", "/allocations", "1.38", Some(both(3, 1))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = admin(&e.app, "GET", "/usages?project_id=p", "1.38", None).await;
    assert_eq!(
        r.body["usages"],
        json!({
        "INSTANCE": {"consumer_count": 1, "VCPU": 3},
        "MIGRATION": {"consumer_count": 1, "VCPU": 1}})
    );
    let r = admin(
        &e.app,
        "GET",
        "/usages?project_id=p&consumer_type=INSTANCE",
        "1.38",
        None,
    )
    .await;
    assert_eq!(
        r.body["usages"],
        json!({"INSTANCE": {"consumer_count": 1, "VCPU": 3}})
    );
    // Moving C1's allocation to C2 in one POST (a migration swap).
    let r = admin(&e.app, "POST", "/allocations", "1.38", Some(json!({
        C1: {"allocations": {}, "project_id": "p", "user_id": "u", "consumer_generation": 1, "consumer_type": "INSTANCE"},
        C2: {"allocations": {&u: {"resources": {"VCPU": 4}}}, "project_id": "p", "user_id": "u",
             "consumer_generation": 1, "consumer_type": "MIGRATION"}}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = admin(&e.app, "GET", &format!("/allocations/{C2}"), "1.38", None).await;
    assert_eq!(r.body["consumer_type"], "MIGRATION");
    assert_eq!(r.body["consumer_generation"], 2);
    // consumer_type is required from 1.38.
    let r = admin(
        &e.app,
        "POST",
        "/allocations",
        "1.38",
        Some(json!({
        C1: {"allocations": {}, "project_id": "p", "user_id": "u", "consumer_generation": null}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Provider "a" (4 VCPU, 2 GiB) and "b" (1 VCPU, 8 GiB, 10 GB of disk): their uuids.
async fn two_providers(e: &Env) -> (String, String) {
    let a = provider(&e.app, "a", None).await;
    let b = provider(&e.app, "b", None).await;
    inventory(&e.app, &a, &[("VCPU", 4), ("MEMORY_MB", 2048)]).await;
    inventory(
        &e.app,
        &b,
        &[("VCPU", 1), ("MEMORY_MB", 8192), ("DISK_GB", 10)],
    )
    .await;
    (a, b)
}

#[tokio::test]
async fn allocation_candidates_over_http() {
    let e = env();
    let (a, b) = two_providers(&e).await;
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1",
        "1.9",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:2",
        "1.10",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["allocation_requests"],
        json!([{"allocations": [
        {"resource_provider": {"uuid": &a}, "resources": {"VCPU": 2}}]}])
    );
    assert_eq!(
        r.body["provider_summaries"][&a]["resources"],
        json!({"VCPU": {"capacity": 4, "used": 0}})
    );
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1,MEMORY_MB:1024",
        "1.29",
        None,
    )
    .await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 2);
    assert_eq!(
        r.body["provider_summaries"][&b]["resources"]["DISK_GB"],
        json!({"capacity": 10, "used": 0})
    );
    assert_eq!(
        r.body["provider_summaries"][&b]["root_provider_uuid"],
        json!(b)
    );
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&limit=1",
        "1.16",
        None,
    )
    .await;
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn allocation_candidates_with_required_and_root_required_traits() {
    let e = env();
    let (a, b) = two_providers(&e).await;
    // Traits: required and forbidden.
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{b}/traits"),
        "1.6",
        Some(json!({"traits": ["HW_CPU_X86_AVX2"], "resource_provider_generation": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&required=HW_CPU_X86_AVX2",
        "1.17",
        None,
    )
    .await;
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"],
        json!({&b: {"resources": {"VCPU": 1}}})
    );
    assert_eq!(
        r.body["provider_summaries"][&b]["traits"],
        json!(["HW_CPU_X86_AVX2"])
    );
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&required=!HW_CPU_X86_AVX2",
        "1.22",
        None,
    )
    .await;
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"],
        json!({&a: {"resources": {"VCPU": 1}}})
    );
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    // root_required (1.35): the tree's root must (not) carry the trait, as
    // Nova asks with root_required=!COMPUTE_STATUS_DISABLED.
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&root_required=!HW_CPU_X86_AVX2",
        "1.35",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["allocation_requests"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"],
        json!({&a: {"resources": {"VCPU": 1}}})
    );
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&root_required=HW_CPU_X86_AVX2",
        "1.35",
        None,
    )
    .await;
    assert_eq!(
        r.body["allocation_requests"][0]["allocations"],
        json!({&b: {"resources": {"VCPU": 1}}})
    );
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=VCPU:1&root_required=HW_CPU_X86_AVX2",
        "1.34",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_allocation_candidate_queries_and_numbered_groups() {
    let e = env();
    let (a, _) = two_providers(&e).await;
    // Bad requests.
    for q in [
        "",
        "resources=VCPU",
        "resources=NOPE:1",
        "resources=VCPU:1&required=CUSTOM_NOPE",
        "resources=VCPU:1&bogus=1",
        "resources=VCPU:1&limit=0",
        "resources1=VCPU:1&resources2=MEMORY_MB:1",
    ] {
        let r = admin(
            &e.app,
            "GET",
            &format!("/allocation_candidates?{q}"),
            "1.39",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
    }
    // Numbered groups: isolate puts them on different providers.
    let q = "resources1=VCPU:1&resources2=VCPU:1&group_policy=isolate";
    let r = admin(
        &e.app,
        "GET",
        &format!("/allocation_candidates?{q}"),
        "1.34",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Flat providers are their own trees: no tree has two providers.
    assert_eq!(r.body["allocation_requests"], json!([]));
    let q = "resources1=VCPU:1&resources2=VCPU:1&group_policy=none";
    let r = admin(
        &e.app,
        "GET",
        &format!("/allocation_candidates?{q}"),
        "1.34",
        None,
    )
    .await;
    let reqs = r.body["allocation_requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 1, "only a has room for 2 VCPU: {}", r.body);
    assert_eq!(
        reqs[0]["allocations"],
        json!({&a: {"resources": {"VCPU": 2}}})
    );
    assert_eq!(reqs[0]["mappings"], json!({"1": [&a], "2": [&a]}));
}
