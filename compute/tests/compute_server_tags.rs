//! Server tags over HTTP (2.26): create with tags (2.52), the tag API
//! (replace, add 201/204, check 204/404, remove, remove all), Nova's 400s
//! (a bad tag, more than 50), 404 before 2.26 and for another project's
//! server, a reader cannot write; and the list filters `tags`,
//! `tags-any`, `not-tags`, `not-tags-any`.

mod servers_util;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use servers_util::{env, Env};
use std::collections::BTreeSet;

async fn call(
    e: &Env,
    who: &str,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    e.call(who, "2.79", m, path, body).await
}

async fn server(e: &Env, name: &str, tags: &[&str]) -> String {
    let (st, b) = e
        .create_with(
            "alice",
            "2.79",
            json!({"name": name, "tags": tags}),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    e.settled(&id).await;
    id
}

async fn names(e: &Env, query: &str) -> BTreeSet<String> {
    let (st, b) = call(
        e,
        "alice",
        Method::GET,
        &format!("/v2.1/servers?{query}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_api_errors_and_list_filters() {
    let e = env();
    e.add_host("h1", 16);
    e.flavor("1", 1).await;
    let a = server(&e, "a", &["red", "big"]).await;
    let b = server(&e, "b", &["red"]).await;
    let _c = server(&e, "c", &[]).await;
    let tags = format!("/v2.1/servers/{a}/tags");

    let (st, v) = call(&e, "alice", Method::GET, &tags, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"tags": ["red", "big"]}));
    let (st, v) = e.call("alice", "2.25", Method::GET, &tags, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no tag API before 2.26: {v}");
    let (st, v) = call(&e, "bob", Method::GET, &tags, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another project's server: {v}");
    // A reader of the project reads the tags and changes none.
    let (st, v) = call(&e, "rita", Method::GET, &tags, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(&e, "rita", Method::PUT, &format!("{tags}/mine"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = call(&e, "rita", Method::DELETE, &tags, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // One tag: add (new 201, again 204), check, remove.
    let one = format!("{tags}/blue");
    let (st, _) = call(&e, "alice", Method::GET, &one, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = call(&e, "alice", Method::PUT, &one, None).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = call(&e, "alice", Method::PUT, &one, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = call(&e, "alice", Method::GET, &one, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = call(&e, "alice", Method::PUT, &format!("{tags}/a,b"), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = call(&e, "alice", Method::DELETE, &one, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = call(&e, "alice", Method::DELETE, &one, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    // Replace all: duplicates folded, bad bodies, the limit.
    let (st, v) = call(
        &e,
        "alice",
        Method::PUT,
        &tags,
        Some(json!({"tags": ["x", "y", "x"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"tags": ["x", "y"]}));
    for body in [
        json!({"tags": "x"}),
        json!({"tags": [1]}),
        json!({"tags": [""]}),
        json!({"tag": ["x"]}),
        json!({"tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
    ] {
        let (st, v) = call(&e, "alice", Method::PUT, &tags, Some(body.clone())).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body} -> {v}");
    }
    let (st, v) = e
        .create_with(
            "alice",
            "2.79",
            json!({"tags": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = call(
        &e,
        "alice",
        Method::PUT,
        &tags,
        Some(json!({"tags": ["red", "big"]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The list filters.
    assert_eq!(names(&e, "tags=red").await, set(&["a", "b"]));
    assert_eq!(names(&e, "tags=red,big").await, set(&["a"]));
    assert_eq!(names(&e, "tags-any=big,nothing").await, set(&["a"]));
    assert_eq!(names(&e, "not-tags=red,big").await, set(&["b", "c"]));
    assert_eq!(names(&e, "not-tags-any=red").await, set(&["c"]));
    let (st, v) = call(
        &e,
        "alice",
        Method::GET,
        &format!("/v2.1/servers/{b}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["server"]["tags"], json!(["red"]));

    // Remove all.
    let (st, _) = call(&e, "alice", Method::DELETE, &tags, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(names(&e, "tags=big").await, set(&[]));
}
