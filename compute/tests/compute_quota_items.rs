//! The per-item quotas set through os-quota-sets and enforced as Nova does:
//! `metadata_items` at server create, rebuild and the metadata writes
//! (403 "Maximum number of metadata items exceeds N"), `key_pairs` at key
//! pair create (403); -1 is unlimited; another project keeps the default.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::env;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7aH2gE3cdbfLh1cR8y4H3Nt1pKUsbZ1gPDS4Jjhyz4 alice@host";

async fn set_quota(e: &servers_util::Env, project: &str, q: Value) {
    let (st, b) = e
        .call(
            "admin",
            "2.79",
            Method::PUT,
            &format!("/v2.1/os-quota-sets/{project}"),
            Some(json!({ "quota_set": q })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

fn items(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

fn forbidden(st: StatusCode, b: &Value, limit: i64) {
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        format!("Maximum number of metadata items exceeds {limit}"),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_items_quota_is_per_project_and_enforced_everywhere() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    set_quota(&e, "p-alice", json!({"metadata_items": 2})).await;
    let (st, b) = e
        .call("alice", "2.79", Method::GET, "/v2.1/limits", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["limits"]["absolute"]["maxServerMeta"], 2);

    // Create: three items is over, two fit.
    let (st, b) = e
        .create_with("alice", "2.79", json!({"metadata": items(3)}), json!({}))
        .await;
    forbidden(st, &b, 2);
    let (st, b) = e
        .create_with("alice", "2.79", json!({"metadata": items(2)}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    e.settled(&id).await;
    let md = format!("/v2.1/servers/{id}/metadata");

    // Merge and item PUT count what the server would have.
    let (st, b) = e
        .call(
            "alice",
            "",
            Method::POST,
            &md,
            Some(json!({"metadata": {"x": "1"}})),
        )
        .await;
    forbidden(st, &b, 2);
    let (st, b) = e
        .call(
            "alice",
            "",
            Method::PUT,
            &format!("{md}/x"),
            Some(json!({"meta": {"x": "1"}})),
        )
        .await;
    forbidden(st, &b, 2);
    // Replace with two is fine; an existing key's new value too.
    let (st, b) = e
        .call(
            "alice",
            "",
            Method::PUT,
            &md,
            Some(json!({"metadata": {"a": "1", "b": "2"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = e
        .call(
            "alice",
            "",
            Method::PUT,
            &format!("{md}/a"),
            Some(json!({"meta": {"a": "3"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // Rebuild's metadata too.
    let (st, b) = e
        .call(
            "alice",
            "2.79",
            Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(json!({"rebuild": {"imageRef": "img", "metadata": items(3)}})),
        )
        .await;
    forbidden(st, &b, 2);

    // Another project keeps Nova's 128.
    let (st, b) = e
        .create_with("bob", "2.79", json!({"metadata": items(128)}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (st, b) = e
        .create_with("bob", "2.79", json!({"metadata": items(129)}), json!({}))
        .await;
    forbidden(st, &b, 128);

    // -1: unlimited.
    set_quota(&e, "p-alice", json!({"metadata_items": -1})).await;
    let (st, b) = e
        .call(
            "alice",
            "",
            Method::POST,
            &md,
            Some(json!({"metadata": items(200)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    // Bad quota values are 400.
    for bad in [json!(-2), json!("many"), json!(1.5)] {
        let (st, b) = e
            .call(
                "admin",
                "2.79",
                Method::PUT,
                "/v2.1/os-quota-sets/p-alice",
                Some(json!({"quota_set": {"metadata_items": bad}})),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    // A member may not set quotas.
    let (st, _) = e
        .call(
            "alice",
            "2.79",
            Method::PUT,
            "/v2.1/os-quota-sets/p-alice",
            Some(json!({"quota_set": {"metadata_items": 500}})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_pairs_quota_is_settable_and_enforced() {
    let e = env();
    set_quota(&e, "p-alice", json!({"key_pairs": 1})).await;
    let kp = |name: &str| json!({"keypair": {"name": name, "public_key": KEY}});
    let (st, b) = e
        .call(
            "alice",
            "2.2",
            Method::POST,
            "/v2.1/os-keypairs",
            Some(kp("one")),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = e
        .call(
            "alice",
            "2.2",
            Method::POST,
            "/v2.1/os-keypairs",
            Some(kp("two")),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        b["forbidden"]["message"],
        "Quota exceeded, too many key pairs."
    );
    // Bob's project keeps the default.
    let (st, b) = e
        .call(
            "bob",
            "2.2",
            Method::POST,
            "/v2.1/os-keypairs",
            Some(kp("two")),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (_, b) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            "/v2.1/os-quota-sets/p-alice",
            None,
        )
        .await;
    assert_eq!(b["quota_set"]["key_pairs"], 1, "{b}");
    set_quota(&e, "p-alice", json!({"key_pairs": 2})).await;
    let (st, b) = e
        .call(
            "alice",
            "2.2",
            Method::POST,
            "/v2.1/os-keypairs",
            Some(kp("two")),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
}
