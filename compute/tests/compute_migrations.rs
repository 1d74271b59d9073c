//! `GET /os-migrations` from the resizes the API and the build loop run:
//! a record per resize whose status follows it (finished, confirmed,
//! reverted, error for a resize the host refused), Nova's fields per
//! microversion (2.23 migration_type, 2.59 uuid, 2.80 user/project), the
//! filters, 2.59 paging with a next link and changes-since, 2.66
//! changes-before, 2.80 user_id/project_id, the 400s for bad input, admin
//! only; and `GET /servers/{id}/migrations` (2.23+, live migrations only:
//! always empty in weft).

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};

async fn boot(e: &Env, name: &str) -> String {
    let (st, b) = e
        .create_with("alice", "2.79", json!({"name": name}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled(&id).await["status"], "ACTIVE");
    id
}

/// Runs `action` on `id` as alice and waits for it to settle.
async fn act(e: &Env, id: &str, action: Value) -> Value {
    let (st, b) = e
        .call(
            "alice",
            "2.79",
            Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(action),
        )
        .await;
    // confirmResize answers 204, the others 202 (Nova's codes).
    assert!(
        st == StatusCode::ACCEPTED || st == StatusCode::NO_CONTENT,
        "{st}: {b}"
    );
    e.settled(id).await
}

async fn migrations(e: &Env, mv: &str, query: &str) -> (StatusCode, Value) {
    e.call(
        "admin",
        mv,
        Method::GET,
        &format!("/v2.1/os-migrations{query}"),
        None,
    )
    .await
}

/// The statuses listed for `query` at 2.80, newest first.
async fn statuses(e: &Env, query: &str) -> Vec<String> {
    let (st, b) = migrations(e, "2.80", query).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizes_are_listed_with_their_status_fields_and_filters() {
    let e = env();
    e.add_host("h1", 8);
    for (id, vcpus) in [("1", 1), ("2", 2), ("3", 3)] {
        e.flavor(id, vcpus).await;
    }
    let a = boot(&e, "a").await;
    assert!(statuses(&e, "").await.is_empty());

    let s = act(&e, &a, json!({"resize": {"flavorRef": "2"}})).await;
    assert_eq!(s["status"], "VERIFY_RESIZE", "{s}");
    let (st, b) = migrations(&e, "2.80", "").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let m = &b["migrations"][0];
    assert_eq!(m["status"], "finished", "{m}");
    assert_eq!(m["instance_uuid"], a.as_str());
    assert_eq!(m["migration_type"], "resize");
    assert_eq!(m["old_instance_type_id"], 1);
    assert_eq!(m["new_instance_type_id"], 2);
    assert_eq!(m["source_compute"], "h1");
    assert_eq!(m["dest_compute"], "h1");
    assert_eq!(m["dest_node"], "h1");
    assert_eq!(m["dest_host"], "192.0.2.1");
    assert_eq!(m["user_id"], "u-alice");
    assert_eq!(m["project_id"], "p-alice");
    assert!(m["uuid"].is_string() && m["id"].is_u64(), "{m}");
    assert!(m["updated_at"].is_string(), "{m}");
    let first = m["uuid"].as_str().unwrap().to_string();

    act(&e, &a, json!({"confirmResize": null})).await;
    assert_eq!(statuses(&e, "").await, ["confirmed"]);

    let s = act(&e, &a, json!({"resize": {"flavorRef": "3"}})).await;
    assert_eq!(s["status"], "VERIFY_RESIZE", "{s}");
    let s = act(&e, &a, json!({"revertResize": null})).await;
    assert_eq!(s["flavor"]["vcpus"], 2, "{s}");
    assert_eq!(statuses(&e, "").await, ["reverted", "confirmed"]);

    // A resize the host refuses: the server as it was, the record an error.
    let n = boot(&e, "noresize").await;
    let s = act(&e, &n, json!({"resize": {"flavorRef": "2"}})).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(statuses(&e, "").await, ["error", "reverted", "confirmed"]);

    // Filters.
    assert_eq!(
        statuses(&e, &format!("?instance_uuid={n}")).await,
        ["error"]
    );
    assert_eq!(statuses(&e, "?status=confirmed").await, ["confirmed"]);
    assert_eq!(statuses(&e, "?host=h1").await.len(), 3);
    assert_eq!(statuses(&e, "?source_compute=h1").await.len(), 3);
    assert!(statuses(&e, "?host=h9").await.is_empty());
    assert!(statuses(&e, "?migration_type=live-migration")
        .await
        .is_empty());
    assert!(statuses(&e, "?hidden=1").await.is_empty());
    assert_eq!(statuses(&e, "?user_id=u-alice").await.len(), 3);
    assert!(statuses(&e, "?project_id=p-bob").await.is_empty());

    // Fields per microversion.
    let (_, b) = migrations(&e, "2.1", "").await;
    let m = &b["migrations"][2];
    assert_eq!(m["status"], "confirmed", "{m}");
    assert!(
        m.get("migration_type").is_none() && m.get("uuid").is_none(),
        "{m}"
    );
    let (_, b) = migrations(&e, "2.23", "").await;
    assert_eq!(b["migrations"][0]["migration_type"], "resize");
    assert!(b["migrations"][0].get("uuid").is_none());
    let (_, b) = migrations(&e, "2.59", "").await;
    assert_eq!(b["migrations"][2]["uuid"], first.as_str());
    assert!(b["migrations"][0].get("user_id").is_none());

    // Before 2.80 user_id is unknown: a 400 from 2.59, ignored before.
    assert_eq!(
        migrations(&e, "2.79", "?user_id=u-bob").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(statuses(&e, "?user_id=u-bob").await.len(), 0);
    let (st, b) = migrations(&e, "2.58", "?user_id=u-bob&limit=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["migrations"].as_array().unwrap().len(), 3, "{b}");

    // A server deleted while resized: Nova confirms the resize first.
    let s = act(&e, &a, json!({"resize": {"flavorRef": "3"}})).await;
    assert_eq!(s["status"], "VERIFY_RESIZE", "{s}");
    let (st, _) = e
        .call(
            "alice",
            "2.79",
            Method::DELETE,
            &format!("/v2.1/servers/{a}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    e.gone(&a).await;
    assert_eq!(
        statuses(&e, &format!("?instance_uuid={a}")).await,
        ["confirmed", "reverted", "confirmed"]
    );

    // Admin only.
    for who in ["alice", "rita"] {
        let (st, b) = e
            .call(who, "2.80", Method::GET, "/v2.1/os-migrations", None)
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{who}: {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_time_windows_and_bad_input() {
    let e = env();
    // Room for three resized servers, each holding both flavors until confirmed.
    e.add_host("h1", 32);
    for (id, vcpus) in [("1", 1), ("2", 2)] {
        e.flavor(id, vcpus).await;
    }
    let mut servers = Vec::new();
    for name in ["p1", "p2", "p3"] {
        let id = boot(&e, name).await;
        act(&e, &id, json!({"resize": {"flavorRef": "2"}})).await;
        servers.push(id);
    }
    // Newest first: the last resized server's record leads.
    let (st, b) = migrations(&e, "2.59", "?limit=2&status=finished").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let page: Vec<&Value> = b["migrations"].as_array().unwrap().iter().collect();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["instance_uuid"], servers[2].as_str());
    assert_eq!(page[1]["instance_uuid"], servers[1].as_str());
    let href = b["migrations_links"][0]["href"].as_str().unwrap();
    assert!(
        href.contains("status=finished")
            && href.contains(&format!("marker={}", page[1]["uuid"].as_str().unwrap())),
        "{href}"
    );
    let marker = page[1]["uuid"].as_str().unwrap();
    let (_, b) = migrations(&e, "2.59", &format!("?limit=2&marker={marker}")).await;
    let rest = b["migrations"].as_array().unwrap();
    assert_eq!(rest.len(), 1, "{b}");
    assert_eq!(rest[0]["instance_uuid"], servers[0].as_str());
    assert!(b.get("migrations_links").is_none(), "{b}");

    // changes-since / changes-before on the last update.
    let (_, b) = migrations(&e, "2.59", "").await;
    let t = b["migrations"][1]["updated_at"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, b) = migrations(&e, "2.59", &format!("?changes-since={t}")).await;
    assert_eq!(b["migrations"].as_array().unwrap().len(), 2, "{b}");
    let (_, b) = migrations(&e, "2.66", &format!("?changes-before={t}")).await;
    assert_eq!(b["migrations"].as_array().unwrap().len(), 2, "{b}");
    let (_, b) = migrations(&e, "2.59", "?changes-since=2999-01-01T00:00:00Z").await;
    assert!(b["migrations"].as_array().unwrap().is_empty(), "{b}");

    for (mv, q) in [
        ("2.59", "?marker=00000000-0000-0000-0000-000000000000"),
        ("2.59", "?limit=-1"),
        ("2.59", "?limit=x"),
        ("2.59", "?changes-since=yesterday"),
        ("2.59", "?bogus=1"),
        ("2.59", "?changes-before=2020-01-01T00:00:00Z"),
        (
            "2.66",
            "?changes-since=2021-01-01T00:00:00Z&changes-before=2020-01-01T00:00:00Z",
        ),
    ] {
        let (st, b) = migrations(&e, mv, q).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{mv} {q}: {b}");
        assert!(b["badRequest"]["message"].is_string(), "{b}");
    }
    // Before 2.59 unknown parameters and paging are ignored.
    let (st, b) = migrations(&e, "2.58", "?bogus=1&limit=x").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["migrations"].as_array().unwrap().len(), 3);

    // The server's own list: live migrations in progress only (none).
    let path = format!("/v2.1/servers/{}/migrations", servers[0]);
    let (st, b) = e.call("admin", "2.23", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"migrations": []}));
    let (st, _) = e.call("admin", "2.22", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e.call("alice", "2.23", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = e
        .call(
            "admin",
            "2.23",
            Method::GET,
            "/v2.1/servers/nope/migrations",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e
        .call("admin", "2.23", Method::GET, &format!("{path}/1"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
