//! Behaviour Placement's own gabbi suite (scripts/placement-gabbi.sh)
//! found missing or different, each checked here over HTTP on a real
//! SQLite store: routes below their microversion are a 404 before the
//! body is looked at; `mappings` are checked as Placement's schema checks
//! them; `/usages` ids are 1 to 255 characters and `consumer_type=all` is
//! one sum; a dashless consumer uuid names the same consumer; the
//! `resources` filter of `GET /resource_providers` honours min_unit and
//! step_size; body errors use jsonschema's words.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use serde_json::{json, Value};

fn detail(r: &Resp) -> &str {
    r.body["errors"][0]["detail"].as_str().unwrap_or("")
}

fn put_body(rp: &str, vcpu: u64, extra: Value) -> Value {
    let mut b = json!({"allocations": {rp: {"resources": {"VCPU": vcpu}}},
        "project_id": "p", "user_id": "u", "consumer_generation": null});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[tokio::test]
async fn routes_below_their_microversion_are_404_first() {
    let e = env();
    // Content type wrong too: the route's absence answers first.
    let r = call(
        &e.app,
        "POST",
        "/resource_classes",
        Some("admin"),
        Some("1.1"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = admin(&e.app, "POST", "/allocations", "1.12", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // At their version they are there (and the missing type is a 415).
    let r = call(
        &e.app,
        "POST",
        "/resource_classes",
        Some("admin"),
        Some("1.2"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
}

#[tokio::test]
async fn mappings_are_checked_and_only_from_1_34() {
    let e = env();
    let rp = provider(&e.app, "cn", None).await;
    inventory(&e.app, &rp, &[("VCPU", 2)]).await;
    let c = "0b2c687e-89eb-47f6-bb68-2fc83e28032a";
    let path = format!("/allocations/{c}");
    let good = json!({"mappings": {"": [&rp]}});
    let r = admin(
        &e.app,
        "PUT",
        &path,
        "1.33",
        Some(put_body(&rp, 1, good.clone())),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        detail(&r).contains("Additional properties are not allowed ('mappings' was unexpected)")
    );
    for (bad, said) in [
        (json!({"alpha": "beta"}), "'beta' is not of type 'array'"),
        (json!({}), "{} does not have enough properties"),
        (json!({"": [1]}), "1 is not of type 'string'"),
    ] {
        let b = put_body(&rp, 1, json!({ "mappings": bad }));
        let r = admin(&e.app, "PUT", &path, "1.34", Some(b)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert!(detail(&r).contains(said), "{}", r.body);
    }
    // Nothing was written by the refusals: both VCPUs are still free.
    let r = admin(
        &e.app,
        "PUT",
        &path,
        "1.34",
        Some(put_body(&rp, 2, good.clone())),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = admin(
        &e.app,
        "POST",
        "/allocations",
        "1.33",
        Some(json!({c: put_body(&rp, 2, good)})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

#[tokio::test]
async fn usages_ids_are_bounded_and_all_is_one_sum() {
    let e = env();
    for (q, said) in [
        ("project_id=", "Failed validating 'minLength'"),
        ("project_id=p&user_id=", "Failed validating 'minLength'"),
        (
            &*format!("project_id={}", "x".repeat(256)),
            "Failed validating 'maxLength'",
        ),
        (
            &*format!("project_id=p&user_id={}", "x".repeat(256)),
            "Failed validating 'maxLength'",
        ),
    ] {
        let r = admin(&e.app, "GET", &format!("/usages?{q}"), "1.9", None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.body);
        assert!(detail(&r).contains(said), "{q}: {}", r.body);
    }
    let r = admin(
        &e.app,
        "GET",
        &format!("/usages?project_id={}", "x".repeat(255)),
        "1.9",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let rp = provider(&e.app, "cn", None).await;
    inventory(&e.app, &rp, &[("VCPU", 8)]).await;
    for (i, ty) in ["INSTANCE", "MIGRATION"].iter().enumerate() {
        let path = format!("/allocations/00000000-0000-4000-8000-00000000000{i}");
        let b = put_body(&rp, 1 + i as u64, json!({"consumer_type": ty}));
        let r = admin(&e.app, "PUT", &path, "1.38", Some(b)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    }
    let r = admin(
        &e.app,
        "GET",
        "/usages?project_id=p&consumer_type=all",
        "1.38",
        None,
    )
    .await;
    assert_eq!(
        r.body["usages"],
        json!({"all": {"consumer_count": 2, "VCPU": 3}}),
        "{}",
        r.body
    );
    let r = admin(&e.app, "GET", "/usages?project_id=p", "1.38", None).await;
    assert_eq!(r.body["usages"].as_object().unwrap().len(), 2, "{}", r.body);
}

#[tokio::test]
async fn a_dashless_consumer_uuid_is_the_same_consumer() {
    let e = env();
    let rp = provider(&e.app, "cn", None).await;
    inventory(&e.app, &rp, &[("VCPU", 8)]).await;
    let dashless = "75d0f5f775d9458cb204f90ac91604ec";
    let dashed = "75d0f5f7-75d9-458c-b204-f90ac91604ec";
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{dashless}"),
        "1.28",
        Some(put_body(&rp, 1, json!({}))),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = admin(
        &e.app,
        "GET",
        &format!("/allocations/{dashed}"),
        "1.28",
        None,
    )
    .await;
    assert_eq!(r.body["consumer_generation"], 1, "{}", r.body);
    let b = put_body(&rp, 2, json!({"consumer_generation": 1}));
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{dashed}"),
        "1.28",
        Some(b),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = admin(
        &e.app,
        "GET",
        &format!("/allocations/{dashless}"),
        "1.28",
        None,
    )
    .await;
    assert_eq!(
        r.body["allocations"][&rp]["resources"]["VCPU"], 2,
        "{}",
        r.body
    );
    let r = admin(
        &e.app,
        "DELETE",
        &format!("/allocations/{dashless}"),
        "1.28",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Not a uuid at all is still refused.
    let r = admin(
        &e.app,
        "PUT",
        "/allocations/not-a-uuid",
        "1.28",
        Some(put_body(&rp, 1, json!({}))),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

async fn matching(app: &Router, resources: &str) -> usize {
    let r = admin(
        app,
        "GET",
        &format!("/resource_providers?resources={resources}"),
        "1.4",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["resource_providers"].as_array().unwrap().len()
}

#[tokio::test]
async fn resources_filter_honours_min_unit_and_step_size() {
    let e = env();
    let rp = provider(&e.app, "cn", None).await;
    let inv = json!({"resource_provider_generation": 0, "inventories": {
        "DISK_GB": {"total": 1000, "min_unit": 10, "step_size": 10, "max_unit": 500}}});
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{rp}/inventories"),
        "1.4",
        Some(inv),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(matching(&e.app, "DISK_GB:20").await, 1);
    assert_eq!(matching(&e.app, "DISK_GB:1").await, 0, "under min_unit");
    assert_eq!(matching(&e.app, "DISK_GB:11").await, 0, "off step_size");
    assert_eq!(matching(&e.app, "DISK_GB:510").await, 0, "over max_unit");
}

#[tokio::test]
async fn body_errors_use_jsonschema_words() {
    let e = env();
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.20",
        Some(json!({"name": "a", "bogus": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&r).contains("Additional properties are not allowed ('bogus' was unexpected)"),
        "{}",
        r.body
    );
    let rp = provider(&e.app, "cn", None).await;
    let path = format!("/resource_providers/{rp}/traits");
    for (b, said) in [
        (
            json!({"traits": []}),
            "'resource_provider_generation' is a required property",
        ),
        (
            json!({"traits": "x", "resource_provider_generation": 0}),
            "'x' is not of type 'array'",
        ),
        (
            json!({"traits": [], "resource_provider_generation": "g"}),
            "'g' is not of type 'integer'",
        ),
    ] {
        let r = admin(&e.app, "PUT", &path, "1.6", Some(b.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}");
        assert!(detail(&r).contains(said), "{b}: {}", r.body);
    }
}

#[tokio::test]
async fn refusals_in_placements_words_and_order() {
    let e = env();
    let rp = provider(&e.app, "cn", None).await;
    for (path, said) in [
        ("/resource_providers?resources=", "Got: empty string."),
        ("/resource_providers?resources=DISK_GB:500,", "Got: ."),
        (
            "/resource_providers?resources=VCPU:-2",
            "Requested resource VCPU requires amount >= 1.",
        ),
        (
            "/resource_providers?resources=VCPU:fred",
            "Requested resource VCPU expected positive integer amount.",
        ),
        (
            "/allocation_candidates?resources=VCPU:1&limit=0",
            "Failed validating 'pattern'",
        ),
        (
            "/resource_providers?member_of=!5e0c0c1e-1111-4c2f-8f0e-000000000001",
            "Forbidden member_of parameters are not supported in the specified microversion",
        ),
    ] {
        let r = admin(&e.app, "GET", path, "1.31", None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        assert!(detail(&r).contains(said), "{path}: {}", r.body);
    }
    // The body's schema is checked before the generation: a 400, not a 409.
    let b = json!({"resource_provider_generation": 99, "inventories": {"DISK_GB": {"total": 2147483648_u64}}});
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{rp}/inventories"),
        "1.20",
        Some(b),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        detail(&r).contains("Failed validating 'maximum' in schema['properties']['total']"),
        "{}",
        r.body
    );
    // An unknown provider is a 404 before its aggregates body is read.
    let r = admin(
        &e.app,
        "PUT",
        "/resource_providers/6984bb2d-830d-4c8d-ac64-c5a8103664be/aggregates",
        "1.19",
        Some(json!([])),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // A standard class fails the custom pattern at 1.7; a rename's new name
    // is checked before the old one is looked up.
    let r = admin(&e.app, "PUT", "/resource_classes/VCPU", "1.7", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        detail(&r).contains("Failed validating 'pattern'"),
        "{}",
        r.body
    );
    let long = format!("CUSTOM_{}", "S".repeat(250));
    let r = admin(
        &e.app,
        "PUT",
        "/resource_classes/CUSTOM_NOT_THERE",
        "1.6",
        Some(json!({"name": long})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        detail(&r).contains("Failed validating 'maxLength'"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn http_details_as_placement() {
    let e = env();
    // 405s name the methods as Placement does: no HEAD, `, ` between.
    let r = admin(&e.app, "POST", "/", "1.0", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET");
    let r = admin(&e.app, "PUT", "/resource_providers", "1.0", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = r.headers["allow"].to_str().unwrap();
    assert!(allow == "GET, POST" || allow == "POST, GET", "{allow}");
    assert_eq!(
        detail(&r),
        "The method PUT is not allowed for this resource."
    );
    // A body without a content type is a 400 saying so.
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/resource_providers")
        .header("x-auth-token", "admin")
        .header("content-length", "4")
        .body(axum::body::Body::from("abcd"))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(e.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A PUT that creates (201) carries no Last-Modified; a GET does (1.15).
    let r = admin(&e.app, "PUT", "/resource_classes/CUSTOM_MOO", "1.15", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(!r.headers.contains_key("last-modified"), "{:?}", r.headers);
    let r = admin(&e.app, "GET", "/resource_classes/CUSTOM_MOO", "1.15", None).await;
    assert!(r.headers.contains_key("last-modified"), "{:?}", r.headers);
    // A trait's PUT and GET (201, 204) do carry them.
    for m in ["PUT", "GET"] {
        let r = admin(&e.app, m, "/traits/CUSTOM_MOO", "1.15", None).await;
        assert!(r.status.is_success(), "{m}: {}", r.status);
        assert_eq!(r.headers["cache-control"], "no-cache", "{m}");
    }
    // Several aggregates need `in:`; a group number has no leading zero.
    let q = "/allocation_candidates?resources=VCPU:1&member_of=\
             5e0c0c1e-1111-4c2f-8f0e-000000000001,5e0c0c1e-1111-4c2f-8f0e-000000000002";
    let r = admin(&e.app, "GET", q, "1.25", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        detail(&r).contains("must be prefixed with the 'in:'"),
        "{}",
        r.body
    );
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources01=VCPU:1",
        "1.25",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(detail(&r).contains("'resources01' does not match any of the regexes"));
}

#[tokio::test]
async fn inventory_in_use_names_every_class_in_placements_order() {
    let e = env();
    let rp = provider(&e.app, "cn", None).await;
    inventory(
        &e.app,
        &rp,
        &[("DISK_GB", 100), ("VCPU", 8), ("MEMORY_MB", 512)],
    )
    .await;
    let b = json!({"allocations": {&rp: {"resources": {"DISK_GB": 10, "VCPU": 1}}},
        "project_id": "p", "user_id": "u", "consumer_generation": null});
    let r = admin(
        &e.app,
        "PUT",
        "/allocations/1835b1c9-1c61-45af-9eb3-3e0e9f29487b",
        "1.28",
        Some(b),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Class-id order (VCPU before DISK_GB), not the alphabet's.
    let want = format!("Inventory for 'VCPU, DISK_GB' on resource provider '{rp}' in use");
    let r = admin(
        &e.app,
        "DELETE",
        &format!("/resource_providers/{rp}/inventories"),
        "1.5",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(detail(&r).contains(&want), "{}", r.body);
    let b =
        json!({"resource_provider_generation": 2, "inventories": {"MEMORY_MB": {"total": 512}}});
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{rp}/inventories"),
        "1.23",
        Some(b),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), Some("placement.inventory.inuse"));
    assert!(detail(&r).contains(&want), "{}", r.body);
}
