//! `GET /os-simple-tenant-usage[/{tenant_id}]` over HTTP: live and
//! deleted servers per project (deleted ones `terminated`, from their
//! tombstones), `detailed=1`, one project's usage for its own readers
//! (403 for another's, the list admin only), `{}` for a project that used
//! nothing, Nova's 400s for bad or reversed dates, and 2.40 paging with a
//! next link. The arithmetic on fixed times is in `usage.rs`'s unit tests.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};

async fn boot(e: &Env, who: &str, name: &str) -> String {
    let (st, b) = e
        .create_with(who, "2.79", json!({"name": name}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&id).await["status"], "ACTIVE");
    id
}

/// An hour ago to an hour ahead (the end is cut to now).
fn window() -> String {
    let now = chrono::Utc::now().naive_utc();
    let f = |t: chrono::NaiveDateTime| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    format!(
        "start={}&end={}",
        f(now - chrono::Duration::hours(1)),
        f(now + chrono::Duration::hours(1))
    )
}

async fn get(e: &Env, who: &str, mv: &str, path: &str) -> (StatusCode, Value) {
    e.call(who, mv, Method::GET, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_per_project_live_and_deleted_policy_and_bad_input() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let a = boot(&e, "alice", "ua").await;
    let b = boot(&e, "bob", "ub").await;
    let (st, _) = e
        .call(
            "bob",
            "2.79",
            Method::DELETE,
            &format!("/v2.1/servers/{b}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    e.gone(&b).await;

    let w = window();
    let (st, v) = get(
        &e,
        "admin",
        "2.79",
        &format!("/v2.1/os-simple-tenant-usage?{w}&detailed=1"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let usages = v["tenant_usages"].as_array().unwrap();
    assert_eq!(usages.len(), 2, "{v}");
    let of = |p: &str| usages.iter().find(|u| u["tenant_id"] == p).unwrap().clone();
    let pa = of("p-alice");
    let sa = &pa["server_usages"][0];
    assert_eq!(sa["instance_id"], a.as_str());
    assert_eq!(sa["state"], "active");
    assert_eq!(sa["flavor"], "f1");
    assert_eq!(
        (
            sa["vcpus"].as_u64(),
            sa["memory_mb"].as_u64(),
            sa["local_gb"].as_u64()
        ),
        (Some(1), Some(256), Some(1))
    );
    assert!(sa["ended_at"].is_null(), "{sa}");
    let hours = sa["hours"].as_f64().unwrap();
    assert!(hours > 0.0 && hours < 0.1, "{sa}");
    assert!((pa["total_memory_mb_usage"].as_f64().unwrap() - 256.0 * hours).abs() < 1e-9);
    let sb = &of("p-bob")["server_usages"][0];
    assert_eq!(sb["instance_id"], b.as_str());
    assert_eq!(sb["state"], "terminated", "{sb}");
    assert!(sb["ended_at"].is_string(), "{sb}");

    // Not detailed: totals only.
    let (_, v) = get(
        &e,
        "admin",
        "2.79",
        &format!("/v2.1/os-simple-tenant-usage?{w}"),
    )
    .await;
    assert!(v["tenant_usages"][0].get("server_usages").is_none(), "{v}");

    // One project's, for its reader; another's is a 403, the list admin only.
    let path = format!("/v2.1/os-simple-tenant-usage/p-alice?{w}");
    let (st, v) = get(&e, "rita", "2.79", &path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["tenant_usage"]["server_usages"][0]["instance_id"],
        a.as_str()
    );
    let (st, _) = get(&e, "bob", "2.79", &path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = get(
        &e,
        "alice",
        "2.79",
        &format!("/v2.1/os-simple-tenant-usage?{w}"),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = get(
        &e,
        "admin",
        "2.79",
        &format!("/v2.1/os-simple-tenant-usage/p-none?{w}"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({"tenant_usage": {}}));

    // A period before the servers existed: nothing.
    let (_, v) = get(
        &e,
        "admin",
        "2.79",
        "/v2.1/os-simple-tenant-usage?start=2020-01-01T00:00:00&end=2020-02-01T00:00:00",
    )
    .await;
    assert_eq!(v, json!({"tenant_usages": []}));

    for q in [
        "start=yesterday",
        "end=2020-01-01T00:00:00",
        "start=2030-01-01T00:00:00&end=2020-01-01T00:00:00",
        "",
    ] {
        let (st, v) = get(
            &e,
            "admin",
            "2.79",
            &format!("/v2.1/os-simple-tenant-usage?{q}"),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(v["badRequest"]["message"].is_string(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_240() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let mut ids = Vec::new();
    for n in ["s1", "s2", "s3"] {
        ids.push(boot(&e, "alice", n).await);
    }
    let w = window();
    let (st, v) = get(
        &e,
        "admin",
        "2.40",
        &format!("/v2.1/os-simple-tenant-usage?{w}&detailed=1&limit=2"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let page: Vec<&str> = v["tenant_usages"][0]["server_usages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [ids[0].as_str(), ids[1].as_str()]);
    let href = v["tenant_usages_links"][0]["href"].as_str().unwrap();
    assert!(
        href.contains(&format!("marker={}", ids[1])) && href.contains("limit=2"),
        "{href}"
    );
    let (_, v) = get(
        &e,
        "admin",
        "2.40",
        &format!(
            "/v2.1/os-simple-tenant-usage?{w}&detailed=1&limit=2&marker={}",
            ids[1]
        ),
    )
    .await;
    assert_eq!(
        v["tenant_usages"][0]["server_usages"][0]["instance_id"],
        ids[2].as_str()
    );
    assert!(v.get("tenant_usages_links").is_none(), "{v}");

    // One project's pages link to its own path.
    let (_, v) = get(
        &e,
        "alice",
        "2.40",
        &format!("/v2.1/os-simple-tenant-usage/p-alice?{w}&limit=1"),
    )
    .await;
    let href = v["tenant_usage_links"][0]["href"].as_str().unwrap();
    assert!(href.contains("/os-simple-tenant-usage/p-alice?"), "{href}");

    // Before 2.40 paging parameters are ignored.
    let (_, v) = get(
        &e,
        "admin",
        "2.39",
        &format!("/v2.1/os-simple-tenant-usage?{w}&detailed=1&limit=1"),
    )
    .await;
    assert_eq!(
        v["tenant_usages"][0]["server_usages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(v.get("tenant_usages_links").is_none());

    for q in ["limit=-1", "limit=x", "marker=nope"] {
        let (st, v) = get(
            &e,
            "admin",
            "2.40",
            &format!("/v2.1/os-simple-tenant-usage?{w}&{q}"),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
    }
}
