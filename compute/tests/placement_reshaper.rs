//! `POST /reshaper` over HTTP on a real SQLite store: a host's VCPU
//! inventory and the allocation using it move to a new NUMA child in one
//! request; a refused reshape (stale generation, inventory left in use,
//! allocation over capacity) changes nothing; generations move as
//! Placement's; `mappings` are checked as its schema does.

mod common;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use serde_json::{json, Value};

const CONSUMER: &str = "c0c0c0c0-1111-4111-8111-111111111111";

async fn get(app: &Router, path: &str) -> Value {
    let r = admin(app, "GET", path, "1.30", None).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    r.body
}

async fn generation(app: &Router, uuid: &str) -> u64 {
    get(app, &format!("/resource_providers/{uuid}")).await["generation"]
        .as_u64()
        .unwrap()
}

fn move_to(
    cn: &str,
    cn_gen: u64,
    numa: &str,
    numa_gen: u64,
    consumer_gen: Value,
    vcpu: u64,
) -> Value {
    json!({
        "inventories": {
            cn: {"resource_provider_generation": cn_gen, "inventories": {}},
            numa: {"resource_provider_generation": numa_gen,
                   "inventories": {"VCPU": {"total": 8}}},
        },
        "allocations": {
            CONSUMER: {
                "allocations": {numa: {"resources": {"VCPU": vcpu}}},
                "project_id": "p", "user_id": "u",
                "consumer_generation": consumer_gen,
            }
        }
    })
}

#[tokio::test]
async fn reshape_moves_inventory_and_allocations_together() {
    let e = env();
    let cn = provider(&e.app, "cn", None).await;
    let numa = provider(&e.app, "numa0", Some(&cn)).await;
    inventory(&e.app, &cn, &[("VCPU", 8)]).await;
    let r = admin(
        &e.app,
        "PUT",
        &format!("/allocations/{CONSUMER}"),
        "1.28",
        Some(json!({"allocations": {&cn: {"resources": {"VCPU": 4}}},
                    "project_id": "p", "user_id": "u", "consumer_generation": null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let cn_gen = generation(&e.app, &cn).await;
    let numa_gen = generation(&e.app, &numa).await;

    // Before 1.30 there is no reshaper; a member may not reshape.
    let body = move_to(&cn, cn_gen, &numa, numa_gen, json!(1), 4);
    let r = admin(&e.app, "POST", "/reshaper", "1.29", Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &e.app,
        "POST",
        "/reshaper",
        Some("user"),
        Some("1.30"),
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Refusals leave everything as it was.
    for (body, status, code) in [
        (
            move_to(&cn, cn_gen + 1, &numa, numa_gen, json!(1), 4),
            StatusCode::CONFLICT,
            "placement.concurrent_update",
        ),
        (
            move_to(&cn, cn_gen, &numa, numa_gen, json!(7), 4),
            StatusCode::CONFLICT,
            "placement.concurrent_update",
        ),
        (
            move_to(&cn, cn_gen, &numa, numa_gen, json!(1), 9),
            StatusCode::CONFLICT,
            "placement.undefined_code",
        ),
        (
            json!({"inventories": {&cn: {"resource_provider_generation": cn_gen,
                                         "inventories": {}}},
                   "allocations": {}}),
            StatusCode::CONFLICT,
            "placement.inventory.inuse",
        ),
        (
            json!({"inventories": {"39bafc00-3fff-444d-b87a-2ead3f866e05":
                       {"resource_provider_generation": 0, "inventories": {}}},
                   "allocations": {}}),
            StatusCode::BAD_REQUEST,
            "placement.resource_provider.not_found",
        ),
        (
            json!({"inventories": {}}),
            StatusCode::BAD_REQUEST,
            "placement.undefined_code",
        ),
    ] {
        let r = admin(&e.app, "POST", "/reshaper", "1.30", Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.code(), Some(code), "{}", r.body);
    }
    assert_eq!(generation(&e.app, &cn).await, cn_gen);
    let usages = get(&e.app, &format!("/resource_providers/{cn}/usages")).await;
    assert_eq!(usages["usages"], json!({"VCPU": 4}));

    let body = move_to(&cn, cn_gen, &numa, numa_gen, json!(1), 4);
    let r = admin(&e.app, "POST", "/reshaper", "1.30", Some(body)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let usages = get(&e.app, &format!("/resource_providers/{cn}/usages")).await;
    assert_eq!(usages["usages"], json!({}));
    let usages = get(&e.app, &format!("/resource_providers/{numa}/usages")).await;
    assert_eq!(usages["usages"], json!({"VCPU": 4}));
    let inv = get(&e.app, &format!("/resource_providers/{cn}/inventories")).await;
    assert_eq!(inv["inventories"], json!({}));
    // Generations move as Placement's three steps move them (Nova's report
    // client reads them back): the emptied host once (final inventory; it
    // has no interim and no new allocation), the NUMA child three times
    // (interim inventory, allocation, final inventory).
    assert_eq!(generation(&e.app, &cn).await, cn_gen + 1);
    assert_eq!(generation(&e.app, &numa).await, numa_gen + 3);
    let alloc = get(&e.app, &format!("/allocations/{CONSUMER}")).await;
    assert_eq!(alloc["consumer_generation"], json!(2));
}
