//! In-process harness: the real router over a real store. `WEFT_TEST_STORE`
//! picks the backend: unset or `sqlite`, a SQLite file in the test's temp
//! dir; `postgresql`, a fresh database on the local PostgreSQL
//! (`weft_store::testing::TestDatabase`, dropped with the harness).
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;
use weft_identity::{Identity, IdentityConfig};
use weft_store::testing::TestDatabase;
use weft_store::{Committed, Listener, Loaded, Row, Store, StoreError};

pub const ADMIN_PW: &str = "s3cret-admin";

pub struct H {
    pub dir: tempfile::TempDir,
    /// The store `id` writes through (another `Identity` may share it).
    pub store: Arc<dyn Store>,
    pub id: Arc<Identity>,
    pub app: Router,
    pub admin: String,
    pub admin_id: String,
    pub admin_project: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn subject(&self) -> String {
        self.headers
            .get("x-subject-token")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }
    /// The error message of an OpenStack error body.
    pub fn msg(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Is `WEFT_TEST_STORE` asking for PostgreSQL?
pub fn postgresql() -> bool {
    match std::env::var("WEFT_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgresql") => true,
        Ok(other) => panic!("WEFT_TEST_STORE={other}: expected sqlite or postgresql"),
    }
}

/// The store of one test, on the backend `WEFT_TEST_STORE` names. Blocking.
pub fn test_store(dir: &Path) -> Arc<dyn Store> {
    if postgresql() {
        let db = TestDatabase::create().expect("PostgreSQL (scripts/postgres.sh)");
        let pg = weft_store::PgStore::connect(&db.url).unwrap();
        Arc::new(OffRuntime(Some((Box::new(pg), db))))
    } else {
        Arc::new(weft_store::SqliteStore::open(&dir.join("weft.sqlite")).unwrap())
    }
}

/// A PostgreSQL store and its test database, dropped on a plain thread: the
/// blocking `postgres` client runs its own runtime, which must not be shut
/// down (nor the test database dropped) from inside an async test.
pub struct OffRuntime(Option<(Box<dyn Store>, TestDatabase)>);

impl OffRuntime {
    fn inner(&self) -> &dyn Store {
        self.0.as_ref().expect("not dropped").0.as_ref()
    }
}

impl Drop for OffRuntime {
    fn drop(&mut self) {
        if let Some((store, db)) = self.0.take() {
            let _ = std::thread::spawn(move || {
                drop(store);
                drop(db);
            })
            .join();
        }
    }
}

impl Store for OffRuntime {
    fn backend(&self) -> &'static str {
        self.inner().backend()
    }
    fn load(&self, service: &str) -> Result<Loaded, StoreError> {
        self.inner().load(service)
    }
    fn commit(
        &self,
        service: &str,
        expected: u64,
        changes: &[weft_store::Change],
    ) -> Result<u64, StoreError> {
        self.inner().commit(service, expected, changes)
    }
    fn changes_since(&self, service: &str, after: u64) -> Result<Vec<Committed>, StoreError> {
        self.inner().changes_since(service, after)
    }
    fn import(&self, service: &str, revision: u64, rows: &[Row]) -> Result<bool, StoreError> {
        self.inner().import(service, revision, rows)
    }
    fn listener(&self) -> Result<Option<Box<dyn Listener>>, StoreError> {
        self.inner().listener()
    }
}

/// An `Identity` on `store` with state dir `dir` (bcrypt cost 4). Blocking.
pub fn open_blocking(store: Arc<dyn Store>, dir: &Path, permissive: bool) -> Arc<Identity> {
    open_with(store, dir, permissive, Default::default())
}

/// [`open_blocking`] with a token binding mode.
pub fn open_with(
    store: Arc<dyn Store>,
    dir: &Path,
    permissive: bool,
    binding: weft_identity::service::TokenBinding,
) -> Arc<Identity> {
    let mut cfg = IdentityConfig::new(dir, "http://weft.test:8080");
    cfg.policy_permissive = permissive;
    cfg.token_binding = binding;
    let mut id = Identity::open(cfg, store).unwrap();
    id.set_bcrypt_cost(4);
    Arc::new(id)
}

/// Runs blocking work (store I/O) off the test's async thread.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

impl H {
    pub async fn new() -> H {
        Self::with(false).await
    }

    pub async fn with(permissive: bool) -> H {
        Self::with_binding(permissive, Default::default()).await
    }

    pub async fn with_binding(
        permissive: bool,
        binding: weft_identity::service::TokenBinding,
    ) -> H {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (store, id, rep) = blocking(move || {
            let store = test_store(&path);
            let id = open_with(store.clone(), &path, permissive, binding);
            let rep = id.bootstrap(Some(ADMIN_PW)).unwrap();
            id.register_service("identity", "keystone", &id.v3_url())
                .unwrap();
            (store, id, rep)
        })
        .await;
        let app = Router::new().nest("/identity", weft_identity::router(id.clone()));
        let mut h = H {
            dir,
            store,
            id,
            app,
            admin: String::new(),
            admin_id: rep.admin_user_id,
            admin_project: rep.admin_project_id,
        };
        h.admin = h
            .token_for(
                "admin",
                ADMIN_PW,
                Some(json!({"project": {"name": "admin", "domain": {"id": "default"}}})),
            )
            .await;
        h
    }

    /// Another `Identity` on this harness's store and state dir (as a
    /// restarted process, or a second replica on PostgreSQL).
    pub async fn reopen(&self) -> Arc<Identity> {
        let (store, dir): (_, PathBuf) = (self.store.clone(), self.dir.path().into());
        blocking(move || open_blocking(store, &dir, false)).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.raw(method, path, token, body.map(|b| b.to_string()), &[])
            .await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("/identity{path}"));
        if let Some(t) = token {
            b = b.header("X-Auth-Token", t);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(s) => b
                .header("content-type", "application/json")
                .body(Body::from(s))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, Some(&self.admin.clone()), None)
            .await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&self.admin.clone()), Some(body))
            .await
    }
    pub async fn put(&self, path: &str) -> Resp {
        self.call(Method::PUT, path, Some(&self.admin.clone()), None)
            .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(&self.admin.clone()), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(&self.admin.clone()), None)
            .await
    }
    pub async fn head(&self, path: &str) -> Resp {
        self.call(Method::HEAD, path, Some(&self.admin.clone()), None)
            .await
    }

    /// Password token for a user in the default domain.
    pub async fn token_for(&self, user: &str, pw: &str, scope: Option<Value>) -> String {
        let r = self.login(user, pw, scope).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.subject()
    }

    pub async fn issue(&self, body: Value) -> Resp {
        self.call(Method::POST, "/v3/auth/tokens", None, Some(body))
            .await
    }

    pub async fn login(&self, user: &str, pw: &str, scope: Option<Value>) -> Resp {
        self.issue(password_body(
            json!({"name": user, "domain": {"id": "default"}}),
            pw,
            scope,
        ))
        .await
    }

    /// Validate `subject` with the admin token.
    pub async fn validate(&self, subject: &str) -> Resp {
        let admin = self.admin.clone();
        self.raw(
            Method::GET,
            "/v3/auth/tokens",
            Some(&admin),
            None,
            &[("X-Subject-Token", subject)],
        )
        .await
    }

    pub async fn create(&self, path: &str, key: &str, body: Value) -> String {
        let r = self.post(path, json!({ key: body })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {:?}", r.body);
        r.body[key]["id"].as_str().unwrap().to_string()
    }

    pub async fn user(&self, name: &str, pw: &str) -> String {
        self.create(
            "/v3/users",
            "user",
            json!({"name": name, "password": pw, "domain_id": "default"}),
        )
        .await
    }

    pub async fn project(&self, name: &str) -> String {
        self.create(
            "/v3/projects",
            "project",
            json!({"name": name, "domain_id": "default"}),
        )
        .await
    }

    pub async fn role_id(&self, name: &str) -> String {
        let r = self.get(&format!("/v3/roles?name={name}")).await;
        r.body["roles"][0]["id"].as_str().unwrap().to_string()
    }

    pub async fn grant(&self, project: &str, user: &str, role: &str) {
        let rid = self.role_id(role).await;
        let r = self
            .put(&format!("/v3/projects/{project}/users/{user}/roles/{rid}"))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
}

pub fn password_body(user: Value, pw: &str, scope: Option<Value>) -> Value {
    let mut u = user;
    u["password"] = json!(pw);
    let mut b = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": u}}}});
    if let Some(s) = scope {
        b["auth"]["scope"] = s;
    }
    b
}

pub fn project_scope(id: &str) -> Option<Value> {
    Some(json!({"project": {"id": id}}))
}

pub fn role_names(token_body: &Value) -> Vec<String> {
    let mut v: Vec<String> = token_body["token"]["roles"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
