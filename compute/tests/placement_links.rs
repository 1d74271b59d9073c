//! Where placement's links point, and what a client that takes no JSON
//! gets: links and `Location`s are relative to where placement is mounted
//! (`/placement` in `weft serve`'s app, the root of a listener of its own,
//! as `--placement-listen` serves it); an unrouted path is a 404 even for
//! a client that takes no JSON, and an error is an HTML page for one that
//! asks for HTML, as Placement (WebOb) answers.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// `GET path` with `accept`; status, content type and body text.
async fn get_as(app: &Router, path: &str, accept: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .uri(path)
        .header("x-auth-token", "admin")
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ty = resp.headers()["content-type"].to_str().unwrap().to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ty, String::from_utf8_lossy(&bytes).into_owned())
}

fn self_link(v: &Value) -> &str {
    v["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "self")
        .unwrap()["href"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn links_follow_the_mount() {
    let e = env();
    let nested = Router::new().nest("/placement", e.app.clone());
    for (app, prefix, base) in [(&e.app, "", ""), (&nested, "/placement", "/placement")] {
        let uuid = uuid_for(base);
        let r = admin(
            app,
            "POST",
            &format!("{prefix}/resource_providers"),
            "1.20",
            Some(json!({"name": format!("n{base}"), "uuid": uuid})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let want = format!("{base}/resource_providers/{uuid}");
        assert_eq!(r.headers["location"], want.as_str());
        assert_eq!(self_link(&r.body), want);
        let r = admin(
            app,
            "GET",
            &format!("{prefix}/resource_providers"),
            "1.20",
            None,
        )
        .await;
        let mine = r.body["resource_providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["uuid"] == uuid)
            .unwrap();
        assert_eq!(self_link(mine), want);
        assert!(mine["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["href"].as_str().unwrap().starts_with(&want)));

        let r = admin(
            app,
            "PUT",
            &format!("{prefix}/resource_classes/CUSTOM_X{}", base.len()),
            "1.7",
            None,
        )
        .await;
        assert_eq!(
            r.headers["location"],
            format!("{base}/resource_classes/CUSTOM_X{}", base.len()).as_str()
        );
        let r = admin(
            app,
            "GET",
            &format!("{prefix}/resource_classes/VCPU"),
            "1.7",
            None,
        )
        .await;
        assert_eq!(self_link(&r.body), format!("{base}/resource_classes/VCPU"));
        let r = admin(
            app,
            "PUT",
            &format!("{prefix}/traits/CUSTOM_T"),
            "1.6",
            None,
        )
        .await;
        assert_eq!(
            r.headers["location"],
            format!("{base}/traits/CUSTOM_T").as_str()
        );
    }
}

fn uuid_for(base: &str) -> &'static str {
    if base.is_empty() {
        "5b1d7a1e-57a1-4a8e-9d35-1f6c8c0e0a01"
    } else {
        "5b1d7a1e-57a1-4a8e-9d35-1f6c8c0e0a02"
    }
}

#[tokio::test]
async fn unrouted_is_404_whatever_the_accept() {
    let e = env();
    // No route: 404 before the Accept check, as Placement routes first.
    let (status, _, body) = get_as(&e.app, "/moo", "text/plain").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("The resource could not be found"), "{body}");
    // A routed GET for a client that takes no JSON stays a 406.
    let (status, _, _) = get_as(&e.app, "/resource_providers", "text/plain").await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    // A browser's Accept (*/*) takes JSON.
    let (status, ty, _) = get_as(
        &e.app,
        "/resource_providers",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ty.starts_with("application/json"));
}

#[tokio::test]
async fn errors_are_html_for_a_client_asking_html() {
    let e = env();
    let (status, ty, body) =
        get_as(&e.app, "/bc8d9d50-7b0d-45ef-839c-e7b5e1c4e8fd", "text/html").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(ty.starts_with("text/html"), "{ty}");
    assert!(body.contains("<title>404 Not Found</title>"), "{body}");
    assert!(body.contains("The resource could not be found"), "{body}");
    // A client taking JSON keeps Placement's JSON error body.
    let (status, ty, body) = get_as(&e.app, "/moo", "application/json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(ty.starts_with("application/json"), "{ty}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["status"], 404);
}
