//! The API server in-process: identity under /identity, another service
//! mounted beside it with its catalog entry, first-start files.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use weft_ctrl::server::{Server, ServerConfig, ServiceMount};
use weft_identity::{Auth, Identity};

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn config(dir: &std::path::Path, pw: Option<&str>) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    cfg.public_url = "http://api.example:8080".into();
    cfg.admin_password = pw.map(String::from);
    cfg
}

/// A stand-in for the networking service: its own router, authenticated by identity.
fn echo_service(identity: Arc<Identity>) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|Auth(ctx): Auth| async move {
                axum::Json(json!({"user": ctx.user_name, "roles": ctx.roles}))
            }),
        )
        .with_state(identity)
}

#[tokio::test]
async fn serves_identity_and_mounted_services() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::open(config(dir.path(), Some("pw"))).unwrap();
    assert!(server.start_report().bootstrapped);
    let openrc = std::fs::read_to_string(dir.path().join("admin-openrc")).unwrap();
    assert!(openrc.contains("OS_AUTH_URL='http://api.example:8080/identity/v3'"));
    assert!(openrc.contains("OS_PASSWORD='pw'"));
    assert!(openrc.contains("OS_PROJECT_DOMAIN_NAME=Default"));
    let svc = echo_service(server.identity());
    server
        .mount(ServiceMount::new("/networking", "network", "neutron", svc))
        .unwrap();
    let app = server.router();

    let (st, _, body) = send(
        &app,
        Request::get("/identity/v3").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body["version"]["links"][0]["href"],
        "http://api.example:8080/identity/v3/"
    );

    let auth = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "pw"}}},
                      "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
    let req = Request::post("/identity/v3/auth/tokens")
        .header("content-type", "application/json")
        .body(Body::from(auth.to_string()))
        .unwrap();
    let (st, headers, body) = send(&app, req).await;
    assert_eq!(st, StatusCode::CREATED);
    let token = headers["x-subject-token"].to_str().unwrap().to_string();
    let cat = body["token"]["catalog"].as_array().unwrap();
    let urls = |t: &str| -> Vec<String> {
        cat.iter()
            .filter(|c| c["type"] == t)
            .flat_map(|c| {
                c["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["url"].as_str().unwrap().to_string())
            })
            .collect()
    };
    assert_eq!(
        urls("identity"),
        vec!["http://api.example:8080/identity/v3"; 3]
    );
    assert_eq!(
        urls("network"),
        vec!["http://api.example:8080/networking"; 3]
    );

    let (st, _, body) = send(
        &app,
        Request::get("/networking/whoami")
            .header("X-Auth-Token", &token)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["user"], "admin");
    let (st, _, body) = send(
        &app,
        Request::get("/networking/whoami")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], 401);
}

#[tokio::test]
async fn second_start_keeps_state_and_openrc() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::open(config(dir.path(), None)).unwrap();
    let pw = first
        .start_report()
        .generated_password
        .clone()
        .expect("generated on first start");
    let openrc = std::fs::read_to_string(dir.path().join("admin-openrc")).unwrap();
    assert!(openrc.contains(&pw));
    drop(first);
    let second = Server::open(config(dir.path(), None)).unwrap();
    assert!(!second.start_report().bootstrapped);
    assert!(second.start_report().generated_password.is_none());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("admin-openrc")).unwrap(),
        openrc
    );
    // the generated password still works
    let id = second.identity();
    let req = weft_identity::service::AuthRequest {
        password: Some(weft_identity::service::PasswordAuth {
            user: weft_identity::service::UserRef {
                name: Some("admin".into()),
                domain_id: Some("default".into()),
                ..Default::default()
            },
            password: pw,
        }),
        ..Default::default()
    };
    assert!(id.issue_token(&req).is_ok());
    assert_eq!(
        id.snapshot()
            .services
            .values()
            .filter(|s| s.service_type == "identity")
            .count(),
        1
    );
}

/// Keystone and Neutron ignore a trailing slash (`/identity/`, `/networking/`,
/// `/v3/OS-TRUST/trusts/`); tempest and auth URLs ending in `/` rely on it.
#[tokio::test]
async fn trailing_slash_is_the_same_resource() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::open(config(dir.path(), Some("pw"))).unwrap();
    let svc = echo_service(server.identity());
    server
        .mount(ServiceMount::new("/networking", "network", "neutron", svc))
        .unwrap();
    let app = server.service();
    for (path, want) in [
        ("/identity/", StatusCode::MULTIPLE_CHOICES),
        ("/identity/v3/", StatusCode::OK),
        ("/networking/whoami/", StatusCode::UNAUTHORIZED),
    ] {
        let slash = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bare = app
            .clone()
            .oneshot(
                Request::get(path.trim_end_matches('/'))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(slash.status(), bare.status(), "{path}");
        assert_eq!(slash.status(), want, "{path}");
    }
}

/// Framework answers under /identity (405 on a known path) carry Keystone's `{"error": {"code", "title", "message"}}`.
#[tokio::test]
async fn identity_framework_errors_have_keystone_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(config(dir.path(), Some("pw"))).unwrap();
    let app = server.service();
    let resp = app
        .clone()
        .oneshot(
            Request::patch("/identity/v3/auth/tokens")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(v["error"]["code"], 405, "{v}");
    assert_eq!(v["error"]["title"], "Method Not Allowed", "{v}");
    // Over the body limit: identity's own JSON extractor answers it (a 400
    // in Keystone's shape today), never a text/plain body.
    let big = format!("{{\"auth\": \"{}\"}}", "a".repeat(3 << 20));
    let resp = app
        .clone()
        .oneshot(
            Request::post("/identity/v3/auth/tokens")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    assert!(status.is_client_error(), "{status}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(v["error"]["code"], status.as_u16(), "{v}");
}

/// Every answer carries an `x-openstack-request-id`; `GET /metrics` parses as
/// Prometheus text and counts requests by service, route template and status,
/// their latency, and token validations by the one authentication layer.
#[tokio::test]
async fn request_ids_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::open(config(dir.path(), Some("pw"))).unwrap();
    let svc = echo_service(server.identity());
    server
        .mount(ServiceMount::new("/networking", "network", "neutron", svc))
        .unwrap();
    let app = server.router();
    let auth = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"name": "Default"}, "password": "pw"}}},
                      "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}});
    let (st, headers, _) = send(
        &app,
        Request::post("/identity/v3/auth/tokens")
            .header("content-type", "application/json")
            .body(Body::from(auth.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let id1 = headers["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(id1.starts_with("req-"), "{id1}");
    let token = headers["x-subject-token"].to_str().unwrap().to_string();
    for t in [token.as_str(), token.as_str(), "garbage"] {
        let (_, h, _) = send(
            &app,
            Request::get("/networking/whoami")
                .header("x-auth-token", t)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_ne!(h["x-openstack-request-id"].to_str().unwrap(), id1);
    }
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    // Parse: every sample line is `name{labels} value`, value a number.
    let mut samples = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample: {line}"));
        samples.insert(name.to_string(), v);
    }
    let get = |k: &str| samples.get(k).copied();
    assert_eq!(
        get(
            r#"weft_http_requests_total{service="identity",route="/identity/v3/auth/tokens",method="POST",status="201"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(
            r#"weft_http_requests_total{service="networking",route="/networking/whoami",method="GET",status="200"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get(
            r#"weft_http_requests_total{service="networking",route="/networking/whoami",method="GET",status="401"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(r#"weft_token_validations_total{result="valid"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        get(r#"weft_token_validations_total{result="invalid"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        get(
            r#"weft_http_request_duration_seconds_count{service="networking",route="/networking/whoami"}"#
        ),
        Some(3.0),
        "{text}"
    );
}
