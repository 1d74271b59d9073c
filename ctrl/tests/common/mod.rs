//! Shared set-up for the networking HTTP tests: the real router, a real
//! store (chosen by `WEFT_TEST_STORE`: unset or `sqlite` for a SQLite file in
//! a temp dir, `postgresql` for a fresh database on the local cluster), the
//! real policy enforcer with Neutron's defaults, and a token table standing
//! in for the identity service.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tower::ServiceExt;
use weft_ctrl::networking::{self, NetConfig, Networking, TokenValidator};
use weft_identity::policy::{Credentials, Mode};
use weft_store::testing::TestDatabase;
use weft_store::{PgStore, SqliteStore, Store};

pub const ADMIN: &str = "tok-admin";
pub const ALICE: &str = "tok-alice";
pub const BOB: &str = "tok-bob";
pub const READER: &str = "tok-reader";

pub struct Tokens(HashMap<String, Credentials>);

impl TokenValidator for Tokens {
    fn validate(&self, token: &str) -> Option<Credentials> {
        self.0.get(token).cloned()
    }
}

fn creds(user: &str, project: &str, roles: &[&str]) -> Credentials {
    Credentials {
        user_id: user.into(),
        user_domain_id: Some("default".into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        project_id: Some(project.into()),
        project_domain_id: Some("default".into()),
        domain_id: None,
        system_scope: None,
        is_admin_project: project == "p-admin",
    }
}

pub fn tokens() -> Arc<Tokens> {
    let mut m = HashMap::new();
    m.insert(
        ADMIN.to_string(),
        creds("u-admin", "p-admin", &["admin", "member", "reader"]),
    );
    m.insert(
        ALICE.to_string(),
        creds("u-alice", "p-alice", &["member", "reader"]),
    );
    m.insert(
        BOB.to_string(),
        creds("u-bob", "p-bob", &["member", "reader"]),
    );
    m.insert(
        READER.to_string(),
        creds("u-reader", "p-alice", &["reader"]),
    );
    Arc::new(Tokens(m))
}

pub fn config() -> NetConfig {
    NetConfig {
        tenant_network_types: vec!["vlan".into()],
        network_vlan_ranges: vec!["physnet:100:101".into(), "other".into()],
        flat_networks: vec!["physnet".into()],
        vni_ranges: vec!["5000:5001".into()],
        ..NetConfig::default()
    }
}

/// Where a test's state lives: a temp dir (the policy log, and the SQLite
/// file on that backend) and, on PostgreSQL, a database of its own.
pub struct Backend {
    pub dir: tempfile::TempDir,
    pub db: Option<TestDatabase>,
}

impl Backend {
    /// The backend `WEFT_TEST_STORE` names (unset: SQLite).
    pub fn new() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let db = match std::env::var("WEFT_TEST_STORE").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => None,
            Ok("postgresql") => Some(off_runtime(|| TestDatabase::create().unwrap())),
            Ok(other) => panic!("WEFT_TEST_STORE={other}: expected sqlite or postgresql"),
        };
        Backend { dir, db }
    }

    /// A new connection to the test's store (another process's view on PostgreSQL).
    pub fn store(&self) -> Arc<dyn Store> {
        match &self.db {
            None => Arc::new(SqliteStore::open(&self.dir.path().join("weft.sqlite")).unwrap()),
            Some(db) => Arc::new(PgStore::connect(&db.url).unwrap()),
        }
    }

    pub fn is_postgresql(&self) -> bool {
        self.db.is_some()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Dropping the database is blocking I/O; tests drop from async code.
        if let Some(db) = self.db.take() {
            off_runtime(move || drop(db));
        }
    }
}

/// Runs blocking set-up (opening a store: database I/O, and the postgres
/// crate's own runtime) on a plain thread, as `weft serve` does before its
/// runtime starts: tests call it from async code.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

#[derive(Clone)]
pub struct Api {
    pub app: Router,
    pub net: Arc<Networking>,
    pub backend: Arc<Backend>,
}

impl Api {
    pub fn new() -> Api {
        Api::open(Arc::new(Backend::new()))
    }

    /// The service on `backend`'s store (again, after a restart).
    pub fn open(backend: Arc<Backend>) -> Api {
        Api::open_in(backend, Mode::Enforce)
    }

    /// Under `--policy-permissive`: denials are allowed and recorded.
    pub fn permissive() -> Api {
        Api::open_in(Arc::new(Backend::new()), Mode::Permissive)
    }

    fn open_in(backend: Arc<Backend>, mode: Mode) -> Api {
        let net = off_runtime(|| {
            Networking::open(
                backend.store(),
                backend.dir.path(),
                &config(),
                None,
                mode,
                tokens(),
            )
            .unwrap()
        });
        Api {
            app: axum::Router::new().nest(networking::MOUNT, networking::router(net.clone())),
            net,
            backend,
        }
    }

    /// The service drawing ids and MACs from `ids` (deterministic tests).
    pub fn with_ids(ids: Box<dyn networking::service::Ids + Send>) -> Api {
        let backend = Arc::new(Backend::new());
        let net = off_runtime(|| {
            let enforcer = weft_identity::policy::Enforcer::new(
                networking::policy::DEFAULTS,
                None,
                Mode::Enforce,
                None,
            )
            .unwrap();
            Networking::new(
                backend.store(),
                &config(),
                Box::new(networking::policy::NetPolicy { enforcer }),
                ids,
                tokens(),
            )
            .unwrap()
        });
        Api {
            app: axum::Router::new().nest(networking::MOUNT, networking::router(net.clone())),
            net,
            backend,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// [`Api::call`] with extra request headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "ctrl.test:8080");
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", &format!("/networking/v2.0{path}"), Some(token), None)
            .await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/networking/v2.0{path}"),
            Some(token),
            Some(body),
        )
        .await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            "PUT",
            &format!("/networking/v2.0{path}"),
            Some(token),
            Some(body),
        )
        .await
    }
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(
            "DELETE",
            &format!("/networking/v2.0{path}"),
            Some(token),
            None,
        )
        .await
    }

    /// POST that must succeed; returns the created resource.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> Value {
        let (s, v) = self.post(path, token, body).await;
        assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
        let key = v.as_object().unwrap().keys().next().unwrap().clone();
        v[key].clone()
    }
}

/// Asserts a Neutron error body of the given status whose message names `field`.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, mentions: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    let msg = got.1["NeutronError"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not a NeutronError: {}", got.1));
    assert!(got.1["NeutronError"]["type"].is_string(), "{}", got.1);
    assert!(
        msg.contains(mentions),
        "message {msg:?} does not mention {mentions:?}"
    );
}
