//! Deleted servers as Nova shows them: status DELETED in `GET /servers`
//! with `changes-since` / `changes-before` (so a poller learns of the
//! delete), to admins with `deleted=true`, never to another project, never
//! in a plain list nor at `GET /servers/{id}`; kept in the store (another
//! replica sees them) and purged after a week.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{call_on, env};
use weft_compute::compute::state::Change;

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// (id, status) of the servers a list shows.
async fn listed(app: &axum::Router, who: &str, query: &str) -> Vec<(String, String)> {
    let (st, b) = call_on(
        app,
        who,
        "2.79",
        Method::GET,
        &format!("/v2.1/servers/detail{query}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{query}: {b}");
    b["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(rows: &[(String, String)], id: &str, status: &str) -> bool {
    rows.iter().any(|(i, s)| i == id && s == status)
}

async fn server(e: &servers_util::Env, who: &str, name: &str) -> String {
    let (st, b) = e
        .create_with(who, "2.79", json!({"name": name}), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    e.settled(&id).await;
    id
}

async fn delete(e: &servers_util::Env, who: &str, id: &str) {
    let (st, b) = e
        .call(
            who,
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    e.gone(id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_since_lists_deleted_servers_to_their_project() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let kept = server(&e, "alice", "kept").await;
    let placed = server(&e, "alice", "placed").await;
    let bobs = server(&e, "bob", "bobs").await;
    let t0 = now();
    // One torn down on its host, one never placed (no host: ERROR).
    delete(&e, "alice", &placed).await;
    let (st, b) = e
        .call("admin", "2.53", Method::GET, "/v2.1/os-services", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let h1 = b["services"][0]["id"].as_str().unwrap().to_string();
    let (st, _) = e
        .call(
            "admin",
            "2.53",
            Method::PUT,
            &format!("/v2.1/os-services/{h1}"),
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let errored = server(&e, "alice", "errored").await;
    delete(&e, "alice", &errored).await;
    delete(&e, "bob", &bobs).await;
    let t1 = now();

    let since = listed(&e.app, "alice", &format!("?changes-since={t0}")).await;
    assert!(has(&since, &placed, "DELETED"), "{since:?}");
    assert!(has(&since, &errored, "DELETED"), "{since:?}");
    assert!(
        !since.iter().any(|(i, _)| *i == bobs),
        "another project's: {since:?}"
    );
    // The summary list too, and changes-before (2.66) bounds the window.
    let (_, b) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            &format!("/v2.1/servers?changes-since={t0}"),
            None,
        )
        .await;
    assert!(b["servers"].to_string().contains(&placed), "{b}");
    let before = listed(&e.app, "alice", &format!("?changes-before={t0}")).await;
    assert!(!has(&before, &placed, "DELETED"), "{before:?}");
    let after = listed(&e.app, "alice", &format!("?changes-since={t1}")).await;
    assert!(after.is_empty(), "{after:?}");

    // Nowhere else.
    let plain = listed(&e.app, "alice", "").await;
    assert_eq!(plain, vec![(kept.clone(), "ACTIVE".to_string())]);
    let own_deleted = listed(&e.app, "alice", "?deleted=true").await;
    assert_eq!(own_deleted, plain, "deleted is an admin's filter");
    for id in [&placed, &errored] {
        for who in ["alice", "admin"] {
            let (st, _) = e
                .call(who, "", Method::GET, &format!("/v2.1/servers/{id}"), None)
                .await;
            assert_eq!(st, StatusCode::NOT_FOUND);
        }
    }

    // Admins: deleted=true only the deleted, deleted=false none of them.
    let only = listed(&e.app, "admin", "?all_tenants=1&deleted=true").await;
    let mut ids: Vec<&str> = only.iter().map(|(i, _)| i.as_str()).collect();
    ids.sort();
    let mut want = vec![placed.as_str(), errored.as_str(), bobs.as_str()];
    want.sort();
    assert_eq!(ids, want, "{only:?}");
    let none = listed(
        &e.app,
        "admin",
        &format!("?all_tenants=1&deleted=false&changes-since={t0}"),
    )
    .await;
    assert!(none.iter().all(|(_, s)| s != "DELETED"), "{none:?}");

    // Bad times are 400.
    let (st, _) = e
        .call(
            "alice",
            "2.79",
            Method::GET,
            "/v2.1/servers?changes-since=yesterday",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Stored: another replica reads them back.
    let other = e.replica();
    let since = listed(&other, "alice", &format!("?changes-since={t0}")).await;
    assert!(has(&since, &placed, "DELETED"), "{since:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_delete_purges_tombstones_older_than_a_week() {
    let e = env();
    e.flavor("1", 1).await;
    let old = server(&e, "alice", "old").await;
    delete(&e, "alice", &old).await;
    // Age its tombstone by eight days.
    let mut t = e.svc.snapshot().deleted[&old].clone();
    t.updated = (chrono::Utc::now() - chrono::Duration::days(8))
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    e.svc
        .write(move |_, _| Ok(((), vec![Change::Tombstone(Box::new(t.clone()))])))
        .unwrap();
    let recent = server(&e, "alice", "recent").await;
    assert!(e.svc.snapshot().deleted.contains_key(&old));
    delete(&e, "alice", &recent).await;
    let st = e.svc.snapshot();
    assert!(!st.deleted.contains_key(&old), "purged");
    assert!(st.deleted.contains_key(&recent));
    let t = &st.deleted[&recent];
    assert_eq!(
        (t.user_data.as_deref(), t.public_key.as_deref()),
        (None, None),
        "trimmed"
    );
    let v: Value = serde_json::to_value(t).unwrap();
    assert_eq!(v["vm_state"], "deleted");
}
