//! Placement over HTTP: microversions, auth and policy, providers,
//! inventories, traits, resource classes and aggregates, with bad input
//! and conflicts. The router runs in-process on a real SQLite store.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn root_advertises_versions_and_refuses_bad_ones() {
    let e = env();
    let r = call(&e.app, "GET", "/", None, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["versions"][0]["max_version"], "1.39");
    assert_eq!(r.body["versions"][0]["min_version"], "1.0");
    assert_eq!(r.body["versions"][0]["id"], "v1.0");
    assert_eq!(r.headers["openstack-api-version"], "placement 1.0");
    assert_eq!(r.headers["vary"], "openstack-api-version");

    let r = call(&e.app, "GET", "/", None, Some("latest"), None).await;
    assert_eq!(r.headers["openstack-api-version"], "placement 1.39");

    let r = call(&e.app, "GET", "/", None, Some("0.5"), None).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(r.body["errors"][0]["title"], "Not Acceptable");
    assert_eq!(r.body["errors"][0]["max_version"], "1.39");
    assert!(r.body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("Unacceptable version header: 0.5"));
    let r = call(&e.app, "GET", "/", None, Some("1.40"), None).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);

    for bad in ["pony.horse", "1.2.3"] {
        let r = call(&e.app, "GET", "/", None, Some(bad), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("invalid version string: {bad}")));
    }
    // An error from the app still says the version.
    let r = call(&e.app, "POST", "/", None, None, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["openstack-api-version"], "placement 1.0");
}

#[tokio::test]
async fn auth_and_policy() {
    let e = env();
    let r = call(&e.app, "GET", "/resource_providers", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &e.app,
        "GET",
        "/resource_providers",
        Some("forged"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A project member is not placement's client; the admin and services are.
    let r = call(
        &e.app,
        "GET",
        "/resource_providers",
        Some("user"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["errors"][0]["title"], "Forbidden");
    let r = call(
        &e.app,
        "POST",
        "/resource_providers",
        Some("user"),
        Some("1.20"),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for who in ["admin", "service"] {
        let r = call(&e.app, "GET", "/resource_providers", Some(who), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{who}");
    }
    // A reader sees its own project's usages only.
    let r = call(
        &e.app,
        "GET",
        "/usages?project_id=p2",
        Some("reader2"),
        Some("1.9"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &e.app,
        "GET",
        "/usages?project_id=p1",
        Some("reader2"),
        Some("1.9"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The uuid given to provider "b", which becomes the root of a tree.
const TREE_ROOT: &str = "3d3a6c3e-0f7e-4b5c-9a52-6a1d1c0a0b01";

#[tokio::test]
async fn providers_per_microversion() {
    let e = env();
    // Before 1.20: 201, Location, no body.
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.0",
        Some(json!({"name": "a"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // The router at the root: root-relative (placement_links.rs nests it).
    assert!(r.headers["location"]
        .to_str()
        .unwrap()
        .starts_with("/resource_providers/"));
    assert!(r.body.is_null());
    // 1.20: 200 with the provider.
    let u = TREE_ROOT;
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.20",
        Some(json!({"name": "b", "uuid": u})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["uuid"], u);
    assert_eq!(r.body["generation"], 0);
    assert_eq!(r.body["root_provider_uuid"], u);
    // Duplicates: code at 1.23, none before.
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.23",
        Some(json!({"name": "b"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), Some("placement.duplicate_name"));
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.22",
        Some(json!({"name": "b"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), None);
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.20",
        Some(json!({"name": "c", "uuid": u})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Bad bodies.
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "x", "colour": 1}),
        json!({"name": "x", "uuid": "nope"}),
    ] {
        let r = admin(
            &e.app,
            "POST",
            "/resource_providers",
            "1.20",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn provider_trees_renames_moves_and_deletes() {
    let e = env();
    // Providers "a" and "b" (uuid TREE_ROOT), as the test above creates them.
    provider(&e.app, "a", None).await;
    let u = TREE_ROOT;
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.20",
        Some(json!({"name": "b", "uuid": u})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // parent_provider_uuid is 1.14+.
    let r = admin(
        &e.app,
        "POST",
        "/resource_providers",
        "1.13",
        Some(json!({"name": "kid", "parent_provider_uuid": u})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let kid = provider(&e.app, "kid", Some(u)).await;
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{kid}"),
        "1.14",
        None,
    )
    .await;
    assert_eq!(r.body["parent_provider_uuid"], u);
    assert_eq!(r.body["root_provider_uuid"], u);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{kid}"),
        "1.13",
        None,
    )
    .await;
    assert!(r.body.get("root_provider_uuid").is_none());
    // in_tree lists the whole tree.
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers?in_tree={kid}"),
        "1.14",
        None,
    )
    .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 2);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers?in_tree={kid}"),
        "1.13",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(&e.app, "GET", "/resource_providers?name=a", "1.0", None).await;
    assert_eq!(r.body["resource_providers"][0]["name"], "a");
    let r = admin(&e.app, "GET", "/resource_providers?bogus=1", "1.0", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A parent cannot go while it has children.
    let r = admin(
        &e.app,
        "DELETE",
        &format!("/resource_providers/{u}"),
        "1.23",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.code(),
        Some("placement.resource_provider.cannot_delete_parent")
    );
    // Rename; re-parenting needs 1.37.
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{kid}"),
        "1.14",
        Some(json!({"name": "kid2", "parent_provider_uuid": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{kid}"),
        "1.37",
        Some(json!({"name": "kid2", "parent_provider_uuid": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["root_provider_uuid"], kid);
    assert_eq!(
        r.body["generation"], 0,
        "a rename or move is not a generation"
    );
    // A loop is refused.
    let r = admin(
        &e.app,
        "PUT",
        &format!("/resource_providers/{kid}"),
        "1.37",
        Some(json!({"name": "kid2", "parent_provider_uuid": kid})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "DELETE",
        &format!("/resource_providers/{u}"),
        "1.0",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{u}"),
        "1.0",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = admin(&e.app, "GET", "/nothing-here", "1.0", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["errors"].is_array());
}

#[tokio::test]
async fn inventories_with_generations() {
    let e = env();
    let u = provider(&e.app, "host", None).await;
    let path = format!("/resource_providers/{u}/inventories");
    set_and_refuse_bad_inventories(&e, &path).await;
    add_a_class_and_keep_what_is_in_use(&e, &u, &path).await;
}

/// VCPU and memory set at generation 0; a stale generation, bad values, and `reserved` equal to
/// `total` (from 1.26) refused or taken. Leaves the provider at generation 2.
async fn set_and_refuse_bad_inventories(e: &Env, path: &str) {
    let r = admin(
        &e.app,
        "PUT",
        path,
        "1.26",
        Some(json!({"resource_provider_generation": 0, "inventories": {
            "VCPU": {"total": 8, "allocation_ratio": 2.0},
            "MEMORY_MB": {"total": 4096, "reserved": 512, "step_size": 256}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 1);
    assert_eq!(r.body["inventories"]["VCPU"]["max_unit"], 2147483647);
    // Stale generation.
    let r = admin(
        &e.app,
        "PUT",
        path,
        "1.26",
        Some(json!({"resource_provider_generation": 0, "inventories": {}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), Some("placement.concurrent_update"));
    // Bad values.
    for inv in [
        json!({"total": 0}),
        json!({"total": 4, "reserved": 5}),
        json!({"total": 4, "allocation_ratio": 0}),
        json!({"total": 4, "step_size": 0}),
        json!({"total": -1}),
    ] {
        let r = admin(
            &e.app,
            "PUT",
            path,
            "1.26",
            Some(json!({"resource_provider_generation": 1, "inventories": {"VCPU": inv}})),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{inv}: {}", r.body);
    }
    let r = admin(
        &e.app,
        "PUT",
        path,
        "1.26",
        Some(json!({"resource_provider_generation": 1, "inventories": {"CUSTOM_NOPE": {"total": 1}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // reserved == total: only from 1.26.
    let one = format!("{path}/VCPU");
    let r = admin(
        &e.app,
        "PUT",
        &one,
        "1.25",
        Some(json!({"resource_provider_generation": 1, "total": 8, "reserved": 8})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "PUT",
        &one,
        "1.26",
        Some(json!({"resource_provider_generation": 1, "total": 8, "reserved": 8})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 2);
    let r = admin(&e.app, "GET", &one, "1.26", None).await;
    assert_eq!(r.body["reserved"], 8);
}

/// A class added by POST (once); an inventory allocated from cannot be deleted or shrunk away,
/// and an amount past any inventory is no match rather than an overflow.
async fn add_a_class_and_keep_what_is_in_use(e: &Env, u: &str, path: &str) {
    // POST adds a class, once.
    let body =
        json!({"resource_provider_generation": 2, "resource_class": "DISK_GB", "total": 100});
    let r = admin(&e.app, "POST", path, "1.26", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let body =
        json!({"resource_provider_generation": 3, "resource_class": "DISK_GB", "total": 100});
    let r = admin(&e.app, "POST", path, "1.26", Some(body)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Inventory in use cannot go.
    let r = admin(
        &e.app,
        "PUT",
        "/allocations/6f8a4a1e-1111-4c2f-8f0e-000000000001",
        "1.28",
        Some(json!({"allocations": {u: {"resources": {"DISK_GB": 10}}},
            "project_id": "p1", "user_id": "u1", "consumer_generation": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Amounts past any inventory are no match, not an overflow.
    let r = admin(
        &e.app,
        "GET",
        "/resource_providers?resources=DISK_GB:18446744073709551615",
        "1.4",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["resource_providers"], json!([]));
    let r = admin(
        &e.app,
        "GET",
        "/allocation_candidates?resources=DISK_GB:18446744073709551615",
        "1.39",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = admin(&e.app, "DELETE", &format!("{path}/DISK_GB"), "1.26", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), Some("placement.inventory.inuse"));
    let r = admin(&e.app, "DELETE", path, "1.26", None).await;
    assert_eq!(r.code(), Some("placement.inventory.inuse"));
    let r = admin(&e.app, "DELETE", path, "1.4", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let g = admin(&e.app, "GET", path, "1.26", None).await;
    let gen = g.body["resource_provider_generation"].clone();
    let r = admin(
        &e.app,
        "PUT",
        path,
        "1.26",
        Some(json!({"resource_provider_generation": gen, "inventories": {"VCPU": {"total": 1}}})),
    )
    .await;
    assert_eq!(r.code(), Some("placement.inventory.inuse"));
    let r = admin(&e.app, "DELETE", &format!("{path}/VCPU"), "1.26", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(&e.app, "GET", &format!("{path}/VCPU"), "1.26", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = admin(
        &e.app,
        "PUT",
        path,
        "1.26",
        Some(json!({"inventories": {}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(&e.app, "PUT", path, Some("admin"), Some("1.26"), None).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn traits_and_a_providers_traits() {
    let e = env();
    let u = provider(&e.app, "host", None).await;
    let r = admin(&e.app, "GET", "/traits", "1.5", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = admin(
        &e.app,
        "GET",
        "/traits?name=startswith:HW_CPU_X86_AVX",
        "1.6",
        None,
    )
    .await;
    let list = r.body["traits"].as_array().unwrap();
    assert!(list.contains(&json!("HW_CPU_X86_AVX2")));
    assert!(list
        .iter()
        .all(|t| t.as_str().unwrap().starts_with("HW_CPU_X86_AVX")));
    let r = admin(&e.app, "PUT", "/traits/CUSTOM_GOLD", "1.6", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = admin(&e.app, "PUT", "/traits/CUSTOM_GOLD", "1.6", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(&e.app, "PUT", "/traits/gold", "1.6", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(&e.app, "GET", "/traits/CUSTOM_GOLD", "1.6", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(&e.app, "GET", "/traits/CUSTOM_SILVER", "1.6", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let tp = format!("/resource_providers/{u}/traits");
    let r = admin(
        &e.app,
        "PUT",
        &tp,
        "1.6",
        Some(json!({"traits": ["CUSTOM_SILVER"], "resource_provider_generation": 0})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "PUT",
        &tp,
        "1.6",
        Some(
            json!({"traits": ["CUSTOM_GOLD", "HW_CPU_X86_AVX"], "resource_provider_generation": 0}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["resource_provider_generation"], 1);
    let r = admin(
        &e.app,
        "PUT",
        &tp,
        "1.23",
        Some(json!({"traits": [], "resource_provider_generation": 0})),
    )
    .await;
    assert_eq!(r.code(), Some("placement.concurrent_update"));
    let r = admin(&e.app, "GET", "/traits?associated=true", "1.6", None).await;
    assert_eq!(r.body["traits"], json!(["CUSTOM_GOLD", "HW_CPU_X86_AVX"]));
    let r = admin(&e.app, "DELETE", "/traits/CUSTOM_GOLD", "1.6", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(&e.app, "DELETE", "/traits/HW_CPU_X86_AVX", "1.6", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "GET",
        "/resource_providers?required=CUSTOM_GOLD",
        "1.18",
        None,
    )
    .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = admin(
        &e.app,
        "GET",
        "/resource_providers?required=!CUSTOM_GOLD",
        "1.22",
        None,
    )
    .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 0);
    let r = admin(&e.app, "DELETE", &tp, "1.6", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(&e.app, "DELETE", "/traits/CUSTOM_GOLD", "1.6", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn resource_classes_and_their_rename_into_inventories() {
    let e = env();
    let u = provider(&e.app, "host", None).await;
    // Resource classes.
    let r = admin(&e.app, "GET", "/resource_classes", "1.2", None).await;
    assert_eq!(r.body["resource_classes"][0]["name"], "VCPU");
    let r = admin(
        &e.app,
        "POST",
        "/resource_classes",
        "1.2",
        Some(json!({"name": "CUSTOM_FPGA_X"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = admin(
        &e.app,
        "POST",
        "/resource_classes",
        "1.2",
        Some(json!({"name": "CUSTOM_FPGA_X"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(&e.app, "PUT", "/resource_classes/CUSTOM_GPU", "1.7", None).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = admin(&e.app, "PUT", "/resource_classes/CUSTOM_GPU", "1.7", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = admin(&e.app, "PUT", "/resource_classes/gpu", "1.7", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(&e.app, "PUT", "/resource_classes/VCPU", "1.7", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(&e.app, "DELETE", "/resource_classes/VCPU", "1.7", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    inventory(&e.app, &u, &[("CUSTOM_GPU", 2)]).await;
    let r = admin(
        &e.app,
        "DELETE",
        "/resource_classes/CUSTOM_GPU",
        "1.7",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(
        &e.app,
        "DELETE",
        "/resource_classes/CUSTOM_FPGA_X",
        "1.7",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // The 1.2-1.6 rename follows the class into inventories.
    let r = admin(
        &e.app,
        "PUT",
        "/resource_classes/VCPU",
        "1.6",
        Some(json!({"name": "CUSTOM_X"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "PUT",
        "/resource_classes/CUSTOM_GPU",
        "1.6",
        Some(json!({"name": "CUSTOM_NFV"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "CUSTOM_NFV");
    let r = admin(
        &e.app,
        "PUT",
        "/resource_classes/CUSTOM_NFV",
        "1.6",
        Some(json!({"name": "CUSTOM_NFV"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers/{u}/inventories"),
        "1.6",
        None,
    )
    .await;
    assert_eq!(r.body["inventories"]["CUSTOM_NFV"]["total"], 2);
    assert!(r.body["inventories"].get("CUSTOM_GPU").is_none());
    let r = admin(&e.app, "GET", "/resource_classes/CUSTOM_GPU", "1.6", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn aggregates_per_microversion() {
    let e = env();
    let u = provider(&e.app, "host", None).await;
    // Aggregates: a bare list before 1.19, with the generation after.
    let ap = format!("/resource_providers/{u}/aggregates");
    let agg = "7b6f1f2e-aaaa-4bbb-8ccc-000000000001";
    let r = admin(&e.app, "PUT", &ap, "1.1", Some(json!([agg]))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"aggregates": [agg]}));
    let r = admin(&e.app, "GET", &ap, "1.19", None).await;
    let gen = r.body["resource_provider_generation"].as_u64().unwrap();
    let r = admin(
        &e.app,
        "PUT",
        &ap,
        "1.19",
        Some(json!({"aggregates": [], "resource_provider_generation": gen + 5})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin(&e.app, "PUT", &ap, "1.19", Some(json!([agg]))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers?member_of={agg}"),
        "1.3",
        None,
    )
    .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 1);
    let r = admin(
        &e.app,
        "GET",
        &format!("/resource_providers?member_of=!{agg}"),
        "1.32",
        None,
    )
    .await;
    assert_eq!(r.body["resource_providers"].as_array().unwrap().len(), 0);
    let r = admin(
        &e.app,
        "PUT",
        &ap,
        "1.19",
        Some(json!({"aggregates": [], "resource_provider_generation": gen})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["resource_provider_generation"], gen + 1);
}

#[tokio::test]
async fn noauth2_takes_tokens_as_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        weft_store::SqliteStore::open(&dir.path().join("weft.sqlite")).unwrap(),
    );
    let pl = weft_compute::placement::Placement::open_noauth2(store, None).unwrap();
    let app = weft_compute::placement::router(pl);
    let r = call(
        &app,
        "GET",
        "/resource_providers",
        Some("admin"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&app, "GET", "/resource_providers", Some("user"), None, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&app, "GET", "/resource_providers", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Off by default: the same name is no token to a normal placement.
    let e = env();
    let r = call(
        &e.app,
        "GET",
        "/resource_providers",
        Some("admin-by-name"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn only_json_is_served() {
    use tower::ServiceExt;
    let e = env();
    let get = |accept: &'static str| {
        axum::http::Request::get("/resource_providers")
            .header("x-auth-token", "admin")
            .header("accept", accept)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for (accept, want) in [
        ("text/plain", StatusCode::NOT_ACCEPTABLE),
        (
            "text/html,application/xml;q=0.9",
            StatusCode::NOT_ACCEPTABLE,
        ),
        ("application/json;q=0", StatusCode::NOT_ACCEPTABLE),
        ("text/html,application/xml;q=0.9,*/*;q=0.8", StatusCode::OK),
        ("application/json", StatusCode::OK),
    ] {
        let r = e.app.clone().oneshot(get(accept)).await.unwrap();
        assert_eq!(r.status(), want, "{accept}");
    }
    // A body that is not JSON is a 415.
    let r = e
        .app
        .clone()
        .oneshot(
            axum::http::Request::post("/resource_providers")
                .header("x-auth-token", "admin")
                .header("content-type", "text/plain")
                .body(axum::body::Body::from("name=x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
