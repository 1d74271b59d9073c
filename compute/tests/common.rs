//! Shared helpers of the placement HTTP tests: the router on a real SQLite
//! store, callers by token, and a request function.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;
use weft_compute::placement::{self, Authenticator, Placement};
use weft_identity::policy::{Credentials, Mode};

/// Tokens are names: `admin`, `service` (Nova's service user), `user` (a
/// project member), `reader2` (a reader of project p2); anything else is invalid.
pub struct Tokens;

impl Authenticator for Tokens {
    fn validate(&self, token: &str) -> Option<Credentials> {
        let (roles, project): (&[&str], &str) = match token {
            "admin" => (&["admin", "member", "reader"], "admin-project"),
            "service" => (&["service"], "service-project"),
            "user" => (&["member", "reader"], "p1"),
            "reader2" => (&["reader"], "p2"),
            _ => return None,
        };
        Some(Credentials {
            user_id: format!("{token}-id"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            project_id: Some(project.to_string()),
            ..Default::default()
        })
    }
}

/// A placement service on its own SQLite file.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub pl: Arc<Placement>,
    pub app: Router,
}

pub fn open_on(store: Arc<dyn weft_store::Store>) -> (Arc<Placement>, Router) {
    let pl = Placement::open(store, None, None, Mode::Enforce, Some(Arc::new(Tokens))).unwrap();
    let app = placement::router(pl.clone());
    (pl, app)
}

pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(weft_store::SqliteStore::open(&dir.path().join("weft.sqlite")).unwrap());
    let (pl, app) = open_on(store);
    Env { dir, pl, app }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of an error body.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["code"].as_str()
    }
}

/// `method path` as `token` at microversion `mv` (None: no header).
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    mv: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("x-auth-token", t);
    }
    if let Some(v) = mv {
        req = req.header("openstack-api-version", format!("placement {v}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// As the admin at `mv`.
pub async fn admin(app: &Router, method: &str, path: &str, mv: &str, body: Option<Value>) -> Resp {
    call(app, method, path, Some("admin"), Some(mv), body).await
}

/// Creates a provider (1.20) and returns its uuid.
pub async fn provider(app: &Router, name: &str, parent: Option<&str>) -> String {
    let mut b = serde_json::json!({"name": name});
    if let Some(p) = parent {
        b["parent_provider_uuid"] = p.into();
    }
    let r = admin(app, "POST", "/resource_providers", "1.20", Some(b)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["uuid"].as_str().unwrap().to_string()
}

/// Sets `rc=total` inventories on a provider, reading its generation first.
pub async fn inventory(app: &Router, uuid: &str, inv: &[(&str, u64)]) {
    let g = admin(
        app,
        "GET",
        &format!("/resource_providers/{uuid}"),
        "1.20",
        None,
    )
    .await;
    let gen = g.body["generation"].as_u64().unwrap();
    let mut m = serde_json::Map::new();
    for (rc, total) in inv {
        m.insert(rc.to_string(), serde_json::json!({"total": total}));
    }
    let r = admin(
        app,
        "PUT",
        &format!("/resource_providers/{uuid}/inventories"),
        "1.20",
        Some(serde_json::json!({"resource_provider_generation": gen, "inventories": m})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
