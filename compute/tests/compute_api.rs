//! The Compute API's flavors and key pairs over HTTP, in-process: the
//! router on a real SQLite store, callers from a fixed token table.
//! Covers microversion negotiation, Nova's error bodies, admin-only flavor
//! writes, private flavors with access lists, extra specs, key pair import
//! and generation, per-user ownership, and a restart.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use weft_compute::compute::{self, Compute};
use weft_compute::image::Tokens;
use weft_identity::policy::{Credentials, Mode};

/// admin (project p-admin), alice (p-alice), bob (p-bob): members.
struct Table;

impl Tokens for Table {
    fn validate(&self, token: &str) -> Option<Credentials> {
        let (project, roles): (&str, &[&str]) = match token {
            "admin" => ("p-admin", &["admin", "member", "reader"]),
            "alice" => ("p-alice", &["member", "reader"]),
            "bob" => ("p-bob", &["member", "reader"]),
            _ => return None,
        };
        Some(Credentials {
            user_id: format!("u-{token}"),
            user_domain_id: Some("default".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            project_id: Some(project.into()),
            project_domain_id: Some("default".into()),
            ..Credentials::default()
        })
    }
}

fn open(dir: &Path) -> axum::Router {
    let store = Arc::new(weft_store::SqliteStore::open(&dir.join("weft.sqlite")).unwrap());
    let svc = Compute::open(store, dir, None, Mode::Enforce, Arc::new(Table)).unwrap();
    compute::router(svc)
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(
    app: &axum::Router,
    who: &str,
    mv: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if !who.is_empty() {
        req = req.header("x-auth-token", who);
    }
    if !mv.is_empty() {
        req = req.header("openstack-api-version", format!("compute {mv}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)))
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn tiny(id: &str, public: bool) -> Value {
    json!({"flavor": {"name": format!("f-{id}"), "id": id, "ram": 512, "vcpus": 1, "disk": 1,
        "os-flavor-access:is_public": public}})
}

#[tokio::test]
async fn versions_and_microversions() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let r = call(&app, "", "", Method::GET, "/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = &r.body["versions"][0];
    assert_eq!(v["id"], "v2.1");
    assert_eq!(v["version"], "2.80");
    assert_eq!(v["min_version"], "2.1");

    let r = call(&app, "alice", "2.79", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["openstack-api-version"], "compute 2.79");
    let r = call(&app, "alice", "latest", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(r.headers["openstack-api-version"], "compute 2.80");
    let r = call(&app, "alice", "", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(r.headers["openstack-api-version"], "compute 2.1");
    let r = call(&app, "alice", "2.200", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{:?}", r.body);
    let r = call(&app, "alice", "two", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // No token: 401, in Nova's shape.
    let r = call(&app, "", "", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn flavors_admin_writes_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    // A member may not create a flavor.
    let r = call(
        &app,
        "alice",
        "",
        Method::POST,
        "/v2.1/flavors",
        Some(tiny("a", true)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert!(r.body["forbidden"]["message"].is_string(), "{:?}", r.body);

    let r = call(
        &app,
        "admin",
        "2.75",
        Method::POST,
        "/v2.1/flavors",
        Some(tiny("a", true)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let f = &r.body["flavor"];
    assert_eq!(f["id"], "a");
    assert_eq!(f["ram"], 512);
    assert_eq!(f["swap"], 0, "2.75 shows swap 0, not \"\"");
    assert_eq!(f["os-flavor-access:is_public"], true);
    // Same id or name again: 409.
    let r = call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors",
        Some(tiny("a", true)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.body["conflictingRequest"]["message"].is_string());
    // Bad bodies: 400 in Nova's badRequest shape.
    for bad in [
        json!({"flavor": {"name": "x", "ram": -1, "vcpus": 1, "disk": 1}}),
        json!({"flavor": {"name": "x", "ram": 1, "vcpus": 0, "disk": 1}}),
        json!({"flavor": {"name": "", "ram": 1, "vcpus": 1, "disk": 1}}),
        json!({"flavor": {"ram": 1, "vcpus": 1, "disk": 1}}),
        json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 1, "bogus": 1}}),
        json!({"nope": {}}),
    ] {
        let r = call(
            &app,
            "admin",
            "",
            Method::POST,
            "/v2.1/flavors",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
        assert!(r.body["badRequest"]["message"].is_string(), "{:?}", r.body);
    }
    let r = call(
        &app,
        "alice",
        "",
        Method::GET,
        "/v2.1/flavors/missing",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["itemNotFound"]["message"].is_string());

    // Description (2.55) updated by PUT; before 2.55 no such route.
    let r = call(
        &app,
        "admin",
        "2.55",
        Method::PUT,
        "/v2.1/flavors/a",
        Some(json!({"flavor": {"description": "small"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["flavor"]["description"], "small");
    let r = call(
        &app,
        "admin",
        "2.54",
        Method::PUT,
        "/v2.1/flavors/a",
        Some(json!({"flavor": {"description": "x"}})),
    )
    .await;
    assert!(r.status.is_client_error(), "{:?}", r.status);

    let r = call(&app, "alice", "", Method::DELETE, "/v2.1/flavors/a", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&app, "admin", "", Method::DELETE, "/v2.1/flavors/a", None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = call(&app, "admin", "", Method::GET, "/v2.1/flavors/a", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Flavors "pub1" and "pub2" (public) and "priv" (private), made by the admin.
async fn three_flavors(app: &axum::Router) {
    for (id, public) in [("pub1", true), ("priv", false), ("pub2", true)] {
        let r = call(
            app,
            "admin",
            "",
            Method::POST,
            "/v2.1/flavors",
            Some(tiny(id, public)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

/// The flavor ids of a list.
fn ids(b: &Value) -> Vec<String> {
    b["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn private_flavors_are_seen_by_the_projects_given_access() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    three_flavors(&app).await;
    let r = call(&app, "alice", "", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(ids(&r.body), ["pub1", "pub2"]);
    let r = call(&app, "alice", "", Method::GET, "/v2.1/flavors/priv", None).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a private flavor is hidden"
    );

    // Give alice's project access: she sees it, bob still does not.
    let r = call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors/priv/action",
        Some(json!({"addTenantAccess": {"tenant": "p-alice"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"flavor_access": [{"flavor_id": "priv", "tenant_id": "p-alice"}]})
    );
    let r = call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors/priv/action",
        Some(json!({"addTenantAccess": {"tenant": "p-alice"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "twice: {:?}", r.body);
    let r = call(&app, "alice", "", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(ids(&r.body), ["priv", "pub1", "pub2"]);
    let r = call(&app, "bob", "", Method::GET, "/v2.1/flavors", None).await;
    assert_eq!(ids(&r.body), ["pub1", "pub2"]);
    let r = call(
        &app,
        "alice",
        "",
        Method::GET,
        "/v2.1/flavors/priv/os-flavor-access",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors/pub1/os-flavor-access",
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "public flavors have no list"
    );
    let r = call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors/pub1/action",
        Some(json!({"addTenantAccess": {"tenant": "p-bob"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Remove access again.
    let r = call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors/priv/action",
        Some(json!({"removeTenantAccess": {"tenant": "p-alice"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"flavor_access": []}));
    let r = call(&app, "alice", "", Method::GET, "/v2.1/flavors/priv", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_flavor_listings_filter_page_and_sort() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    three_flavors(&app).await;
    // Admin listings: is_public=None shows all, false only private.
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors?is_public=None",
        None,
    )
    .await;
    assert_eq!(ids(&r.body), ["priv", "pub1", "pub2"]);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors?is_public=false",
        None,
    )
    .await;
    assert_eq!(ids(&r.body), ["priv"]);
    // Paging and sorting.
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors?limit=1&marker=pub1",
        None,
    )
    .await;
    assert_eq!(ids(&r.body), ["pub2"]);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors?sort_key=id&sort_dir=desc",
        None,
    )
    .await;
    assert_eq!(ids(&r.body), ["pub2", "pub1"]);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors?sort_key=bogus",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors?marker=nope",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors/detail?minRam=1024",
        None,
    )
    .await;
    assert_eq!(ids(&r.body), Vec::<String>::new());
}

#[tokio::test]
async fn extra_specs() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors",
        Some(tiny("s", true)),
    )
    .await;
    let specs =
        json!({"extra_specs": {"hw:cpu_policy": "dedicated", "quota:disk_read_iops_sec": "100"}});
    let r = call(
        &app,
        "alice",
        "",
        Method::POST,
        "/v2.1/flavors/s/os-extra_specs",
        Some(specs.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &app,
        "admin",
        "",
        Method::POST,
        "/v2.1/flavors/s/os-extra_specs",
        Some(specs.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = call(
        &app,
        "alice",
        "",
        Method::GET,
        "/v2.1/flavors/s/os-extra_specs",
        None,
    )
    .await;
    assert_eq!(r.body, specs);
    let r = call(&app, "admin", "2.61", Method::GET, "/v2.1/flavors/s", None).await;
    assert_eq!(
        r.body["flavor"]["extra_specs"], specs["extra_specs"],
        "2.61 shows specs"
    );
    let r = call(
        &app,
        "admin",
        "",
        Method::PUT,
        "/v2.1/flavors/s/os-extra_specs/hw:cpu_policy",
        Some(json!({"hw:cpu_policy": "shared"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = call(
        &app,
        "admin",
        "",
        Method::PUT,
        "/v2.1/flavors/s/os-extra_specs/hw:cpu_policy",
        Some(json!({"other": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "key must match the path");
    let r = call(
        &app,
        "alice",
        "",
        Method::GET,
        "/v2.1/flavors/s/os-extra_specs/hw:cpu_policy",
        None,
    )
    .await;
    assert_eq!(r.body, json!({"hw:cpu_policy": "shared"}));
    let r = call(
        &app,
        "admin",
        "",
        Method::DELETE,
        "/v2.1/flavors/s/os-extra_specs/hw:cpu_policy",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &app,
        "admin",
        "",
        Method::GET,
        "/v2.1/flavors/s/os-extra_specs/hw:cpu_policy",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7aH2gE3cdbfLh1cR8y4H3Nt1pKUsbZ1gPDS4Jjhyz4 alice@host";

#[tokio::test]
async fn keypairs_are_per_user_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path());
    let r = call(
        &app,
        "alice",
        "2.2",
        Method::POST,
        "/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "k1", "public_key": ALICE_KEY}})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "2.2+ answers 201: {:?}",
        r.body
    );
    let kp = &r.body["keypair"];
    assert_eq!(kp["name"], "k1");
    assert_eq!(kp["type"], "ssh");
    assert_eq!(kp["user_id"], "u-alice");
    let fp = kp["fingerprint"].as_str().unwrap();
    assert_eq!(fp.split(':').count(), 16, "MD5 fingerprint: {fp}");
    assert!(kp.get("private_key").is_none());

    // Same name again: 409; a broken key: 400.
    let r = call(
        &app,
        "alice",
        "",
        Method::POST,
        "/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "k1", "public_key": ALICE_KEY}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &app,
        "alice",
        "",
        Method::POST,
        "/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "k2", "public_key": "ssh-rsa notakey"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);

    // Generated (before 2.92 Nova still generates): the private key is returned once.
    let r = call(
        &app,
        "alice",
        "2.79",
        Method::POST,
        "/v2.1/os-keypairs",
        Some(json!({"keypair": {"name": "gen"}})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "2.2+ answers 201: {:?}",
        r.body
    );
    assert!(r.body["keypair"]["private_key"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    let r = call(
        &app,
        "alice",
        "2.79",
        Method::GET,
        "/v2.1/os-keypairs/gen",
        None,
    )
    .await;
    assert!(r.body["keypair"].get("private_key").is_none());

    // Bob sees none of alice's pairs.
    let r = call(&app, "bob", "", Method::GET, "/v2.1/os-keypairs", None).await;
    assert_eq!(r.body, json!({"keypairs": []}));
    let r = call(&app, "bob", "", Method::GET, "/v2.1/os-keypairs/k1", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &app,
        "bob",
        "",
        Method::DELETE,
        "/v2.1/os-keypairs/k1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // An admin can ask for alice's (2.10) but bob cannot.
    let r = call(
        &app,
        "admin",
        "2.10",
        Method::GET,
        "/v2.1/os-keypairs/k1?user_id=u-alice",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = call(
        &app,
        "bob",
        "2.10",
        Method::GET,
        "/v2.1/os-keypairs/k1?user_id=u-alice",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);

    // Restart on the same store: alice's pairs are still hers.
    drop(app);
    let app = open(dir.path());
    let r = call(
        &app,
        "alice",
        "2.35",
        Method::GET,
        "/v2.1/os-keypairs?limit=1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<&str> = r.body["keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keypair"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gen"]);
    let r = call(
        &app,
        "alice",
        "",
        Method::DELETE,
        "/v2.1/os-keypairs/k1",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = call(&app, "alice", "", Method::GET, "/v2.1/os-keypairs/k1", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
