//! `PUT /servers/{id}` over HTTP: rename, describe (2.19) and clear the
//! description, the answer is the server whole; Nova's 400s (blank name,
//! description before 2.19, access IPs, not an object), 404 for another
//! project's server, 403 for a reader.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::json;
use servers_util::env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_describe_and_bad_bodies() {
    let e = env();
    e.add_host("h1", 8);
    e.flavor("1", 1).await;
    let (st, b) = e.create_with("alice", "2.79", json!({}), json!({})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    e.settled(&id).await;
    let path = format!("/v2.1/servers/{id}");
    let put = |who: &'static str, mv: &'static str, body: serde_json::Value| {
        let path = path.clone();
        let e = &e;
        async move { e.call(who, mv, Method::PUT, &path, Some(body)).await }
    };

    let (st, b) = put(
        "alice",
        "2.79",
        json!({"server": {"name": "renamed", "description": "web"}}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["server"]["name"], "renamed");
    assert_eq!(b["server"]["description"], "web");
    assert_eq!(b["server"]["id"], id.as_str());
    let (st, b) = put("alice", "2.79", json!({"server": {"description": null}})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(b["server"]["description"].is_null(), "{b}");
    assert_eq!(b["server"]["name"], "renamed");
    let (st, b) = e.call("alice", "2.79", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["server"]["name"], "renamed", "{b}");

    for (mv, body) in [
        ("2.79", json!({"server": {"name": ""}})),
        ("2.18", json!({"server": {"description": "x"}})),
        ("2.79", json!({"server": {"accessIPv4": "192.0.2.1"}})),
        ("2.79", json!({"server": "x"})),
        ("2.79", json!({"server": {"color": "red"}})),
    ] {
        let (st, b) = put("alice", mv, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {b}");
    }
    let (st, b) = put("bob", "2.79", json!({"server": {"name": "mine"}})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, b) = put("rita", "2.79", json!({"server": {"name": "mine"}})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
}
