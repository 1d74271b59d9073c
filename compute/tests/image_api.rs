//! The image service over HTTP, in-process: its router on a real SQLite
//! store and a real file store in a temporary directory, callers given by
//! a fixed token table. Covers records, patch, visibility and members,
//! data (cut-off, size cap, quota, qcow2), and a restart.

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;
use weft_compute::image::{self, ImageConfig, Images, Limits, Tokens};
use weft_identity::policy::{Credentials, Mode};

/// admin (project p-admin), alice (p-alice), bob (p-bob): members;
/// carol: reader only, in p-alice.
struct Table;

impl Tokens for Table {
    fn validate(&self, token: &str) -> Option<Credentials> {
        let (project, roles): (&str, &[&str]) = match token {
            "admin" => ("p-admin", &["admin", "member", "reader"]),
            "alice" => ("p-alice", &["member", "reader"]),
            "bob" => ("p-bob", &["member", "reader"]),
            "carol" => ("p-alice", &["reader"]),
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

struct Svc {
    dir: PathBuf,
    images: Arc<Images>,
    app: axum::Router,
}

fn open(dir: &Path, limits: Limits) -> Svc {
    let store = Arc::new(weft_store::SqliteStore::open(&dir.join("weft.sqlite")).unwrap());
    let images = Images::open(
        store,
        dir,
        &ImageConfig {
            limits,
            ..ImageConfig::default()
        },
        None,
        Mode::Enforce,
        Arc::new(Table),
    )
    .unwrap();
    Svc {
        dir: dir.to_path_buf(),
        app: image::router(images.clone()),
        images,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

impl Svc {
    async fn send(&self, who: &str, method: Method, path: &str, ct: &str, body: Body) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if !who.is_empty() {
            req = req.header("x-auth-token", who);
        }
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, who: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let (ct, b) = match body {
            Some(v) => ("application/json", Body::from(v.to_string())),
            None => ("", Body::empty()),
        };
        self.send(who, method, path, ct, b).await
    }

    async fn patch(&self, who: &str, id: &str, ops: Value) -> Resp {
        self.send(
            who,
            Method::PATCH,
            &format!("/v2/images/{id}"),
            "application/openstack-images-v2.1-json-patch",
            Body::from(ops.to_string()),
        )
        .await
    }

    async fn create(&self, who: &str, body: Value) -> Value {
        let r = self.call(who, Method::POST, "/v2/images", Some(body)).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    async fn upload(&self, who: &str, id: &str, data: Body) -> Resp {
        self.send(
            who,
            Method::PUT,
            &format!("/v2/images/{id}/file"),
            "application/octet-stream",
            data,
        )
        .await
    }

    async fn show(&self, who: &str, id: &str) -> Resp {
        self.call(who, Method::GET, &format!("/v2/images/{id}"), None)
            .await
    }

    /// Files in the image directory (data and staging leftovers).
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A body that yields `chunks`, then fails as a connection cut off mid-stream does.
fn cut_off_body(chunks: usize) -> Body {
    let mut items: Vec<Result<Bytes, std::io::Error>> = (0..chunks)
        .map(|_| Ok(Bytes::from(vec![7u8; 256 * 1024])))
        .collect();
    items.push(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    Body::from_stream(futures_util::stream::iter(items))
}

fn raw(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_show_list_filter_sort_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    assert_eq!(
        s.call("", Method::GET, "/v2/images", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    for (n, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        s.create(
            "alice",
            json!({"name": name, "disk_format": if n % 2 == 0 {"raw"} else {"qcow2"},
                   "container_format": "bare", "tags": ["t"], "min_ram": n}),
        )
        .await;
    }
    let img = s
        .create("alice", json!({"name": "f", "hw_disk_bus": "virtio"}))
        .await;
    assert_eq!(img["status"], "queued");
    assert_eq!(img["visibility"], "shared", "Glance's default visibility");
    assert_eq!(img["owner"], "p-alice");
    assert_eq!(img["hw_disk_bus"], "virtio", "properties at top level");
    assert_eq!(img["size"], Value::Null);
    assert_eq!(
        img["self"],
        format!("/v2/images/{}", img["id"].as_str().unwrap())
    );

    let r = s
        .call(
            "alice",
            Method::GET,
            "/v2/images?sort_key=name&sort_dir=asc",
            None,
        )
        .await;
    let l = r.json();
    assert_eq!(ids(&l), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(l["first"], "/v2/images");
    assert_eq!(l["schema"], "/v2/schemas/images");
    assert!(l.get("next").is_none());

    let l = s
        .call(
            "alice",
            Method::GET,
            "/v2/images?disk_format=raw&sort=name:desc",
            None,
        )
        .await
        .json();
    assert_eq!(ids(&l), ["e", "c", "a"]);
    let l = s
        .call("alice", Method::GET, "/v2/images?hw_disk_bus=virtio", None)
        .await
        .json();
    assert_eq!(ids(&l), ["f"]);
    let l = s
        .call(
            "alice",
            Method::GET,
            "/v2/images?tag=t&name=in:a,b&sort=name:asc",
            None,
        )
        .await
        .json();
    assert_eq!(ids(&l), ["a", "b"]);

    // Pages of two, following `next` as the SDK does.
    let mut url = "/v2/images?limit=2&sort_key=name&sort_dir=asc".to_string();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let l = s.call("alice", Method::GET, &url, None).await.json();
        seen.extend(ids(&l));
        match l.get("next").and_then(Value::as_str) {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e", "f"]);

    for bad in [
        "/v2/images?sort_key=nope",
        "/v2/images?sort_dir=up",
        "/v2/images?limit=x",
        "/v2/images?marker=00000000-0000-0000-0000-000000000000",
        "/v2/images?visibility=everyone",
    ] {
        let r = s.call("alice", Method::GET, bad, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["message"].as_str().unwrap().len() > 5);
    }
    for (body, status) in [
        (
            json!({"name": "x", "disk_format": "floppy"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "x", "container_format": "crate"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "x", "status": "active"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"name": "x", "owner": "p-bob"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"name": "x", "visibility": "public"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"id": img["id"], "name": "dup"}),
            StatusCode::CONFLICT,
        ),
    ] {
        let r = s
            .call("alice", Method::POST, "/v2/images", Some(body.clone()))
            .await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // A reader may look but not create.
    let r = s
        .call(
            "carol",
            Method::POST,
            "/v2/images",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        ids(&s
            .call("carol", Method::GET, "/v2/images?name=a", None)
            .await
            .json()),
        ["a"]
    );
}

/// Patches Glance refuses, with its status: read-only and reserved properties (403), a
/// property added twice or missing (409), bad values, ops and formats (400).
fn refused_patches() -> [(Value, StatusCode); 14] {
    [
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/size", "value": 1}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "1"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/name"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/k", "value": "again"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "replace", "path": "/missing", "value": "x"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "remove", "path": "/missing"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": -1}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/k", "value": 5}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "move", "path": "/k", "from": "/x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/a/b", "value": "x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "add", "path": "/container_format", "value": "crate"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/disk_format", "value": "floppy"}]),
            StatusCode::BAD_REQUEST,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_as_glance_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let img = s.create("alice", json!({"name": "p", "k": "v"})).await;
    let id = img["id"].as_str().unwrap();
    let r = s
        .patch(
            "alice",
            id,
            json!([
                {"op": "replace", "path": "/name", "value": "q"},
                {"op": "add", "path": "/new", "value": "1"},
                {"op": "replace", "path": "/k", "value": "w"},
                {"op": "add", "path": "/tags", "value": ["x", "y"]},
                {"op": "replace", "path": "/min_disk", "value": 3},
                {"op": "add", "path": "/disk_format", "value": "qcow2"},
            ]),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_eq!(
        (v["name"].as_str(), v["new"].as_str(), v["k"].as_str()),
        (Some("q"), Some("1"), Some("w"))
    );
    assert_eq!(v["tags"], json!(["x", "y"]));
    assert_eq!(v["min_disk"], 3);
    let v = s
        .patch("alice", id, json!([{"op": "remove", "path": "/new"}]))
        .await
        .json();
    assert!(v.get("new").is_none());

    for (ops, status) in refused_patches() {
        let r = s.patch("alice", id, ops.clone()).await;
        assert_eq!(
            r.status,
            status,
            "{ops}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // All or nothing: the valid first op of a refused patch is not applied.
    let r = s
        .patch("alice", id, json!([{"op": "replace", "path": "/name", "value": "z"}, {"op": "replace", "path": "/id", "value": "x"}]))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(s.show("alice", id).await.json()["name"], "q");

    let r = s
        .send(
            "alice",
            Method::PATCH,
            &format!("/v2/images/{id}"),
            "application/json",
            Body::from("[]"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Tags.
    let tag = |m: Method, t: &'static str| {
        let s = &s;
        async move {
            s.call("alice", m, &format!("/v2/images/{id}/tags/{t}"), None)
                .await
                .status
        }
    };
    assert_eq!(tag(Method::PUT, "z").await, StatusCode::NO_CONTENT);
    assert_eq!(tag(Method::DELETE, "x").await, StatusCode::NO_CONTENT);
    assert_eq!(tag(Method::DELETE, "x").await, StatusCode::NOT_FOUND);
    assert_eq!(s.show("alice", id).await.json()["tags"], json!(["y", "z"]));

    // Protected: no delete until unprotected.
    s.patch(
        "alice",
        id,
        json!([{"op": "replace", "path": "/protected", "value": true}]),
    )
    .await;
    let del = s
        .call("alice", Method::DELETE, &format!("/v2/images/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::FORBIDDEN);
    assert!(del.json()["message"]
        .as_str()
        .unwrap()
        .contains("protected"));
    s.patch(
        "alice",
        id,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await;
    let del = s
        .call("alice", Method::DELETE, &format!("/v2/images/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(s.show("alice", id).await.status, StatusCode::NOT_FOUND);
}

/// Alice's private, shared (the default) and community images and the admin's public one:
/// (private, shared, community, public).
async fn four_images(s: &Svc) -> (Value, Value, Value, Value) {
    let private = s
        .create("alice", json!({"name": "priv", "visibility": "private"}))
        .await;
    let shared = s.create("alice", json!({"name": "shr"})).await;
    let community = s
        .create("alice", json!({"name": "comm", "visibility": "community"}))
        .await;
    let public = s
        .create("admin", json!({"name": "pub", "visibility": "public"}))
        .await;
    (private, shared, community, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_across_projects_and_who_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let (private, _shared, community, public) = four_images(&s).await;
    let pid = private["id"].as_str().unwrap();

    // Another project's private image is a 404, never a 403, for every verb.
    assert_eq!(s.show("bob", pid).await.status, StatusCode::NOT_FOUND);
    let r = s
        .patch(
            "bob",
            pid,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.call("bob", Method::DELETE, &format!("/v2/images/{pid}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call("bob", Method::GET, &format!("/v2/images/{pid}/file"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.show("admin", pid).await.status, StatusCode::OK);
    assert_eq!(
        s.show("bob", community["id"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );

    // Bob lists the public image only; community when asked for.
    assert_eq!(
        ids(&s.call("bob", Method::GET, "/v2/images", None).await.json()),
        ["pub"]
    );
    assert_eq!(
        ids(&s
            .call("bob", Method::GET, "/v2/images?visibility=community", None)
            .await
            .json()),
        ["comm"]
    );
    // Bob may not change a public or community image he can see.
    let r = s
        .patch(
            "bob",
            public["id"].as_str().unwrap(),
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Only an admin publishes.
    let r = s
        .patch(
            "alice",
            pid,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .patch(
            "admin",
            pid,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.show("bob", pid).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_a_shared_image_and_list_it_once_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let (_private, shared, community, _public) = four_images(&s).await;
    let sid = shared["id"].as_str().unwrap();

    // Members: only on shared images; pending members see it but do not list it.
    let r = s
        .call(
            "alice",
            Method::POST,
            &format!("/v2/images/{}/members", community["id"].as_str().unwrap()),
            Some(json!({"member": "p-bob"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(s.show("bob", sid).await.status, StatusCode::NOT_FOUND);
    let members = format!("/v2/images/{sid}/members");
    let r = s
        .call(
            "bob",
            Method::POST,
            &members,
            Some(json!({"member": "p-bob"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "bob cannot see it yet");
    let r = s
        .call(
            "alice",
            Method::POST,
            &members,
            Some(json!({"member": "p-bob"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(
        s.call(
            "alice",
            Method::POST,
            &members,
            Some(json!({"member": "p-bob"}))
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(s.show("bob", sid).await.status, StatusCode::OK);
    assert!(
        !ids(&s.call("bob", Method::GET, "/v2/images", None).await.json())
            .contains(&"shr".to_string())
    );
    assert_eq!(
        ids(&s
            .call(
                "bob",
                Method::GET,
                "/v2/images?visibility=shared&member_status=pending",
                None
            )
            .await
            .json()),
        ["shr"]
    );

    // The owner cannot answer for the member; the member accepts.
    let me = format!("{members}/p-bob");
    assert_eq!(
        s.call(
            "alice",
            Method::PUT,
            &me,
            Some(json!({"status": "accepted"}))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("bob", Method::PUT, &me, Some(json!({"status": "maybe"})))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // openstacksdk sends the whole member back; the extra key is ignored.
    let r = s
        .call(
            "bob",
            Method::PUT,
            &me,
            Some(json!({"member": "p-bob", "status": "accepted"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "accepted");
    assert!(
        ids(&s.call("bob", Method::GET, "/v2/images", None).await.json())
            .contains(&"shr".to_string())
    );
    assert_eq!(
        s.call("bob", Method::GET, &members, None).await.json()["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.call("bob", Method::GET, &me, None).await.status,
        StatusCode::OK
    );
    // The member may not modify or delete the image, nor remove itself.
    let r = s
        .patch(
            "bob",
            sid,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.call("bob", Method::DELETE, &me, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("alice", Method::DELETE, &me, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.show("bob", sid).await.status, StatusCode::NOT_FOUND);
}

/// A member who rejects a share can still look the image up by id (as in
/// Glance), but it leaves his lists unless he asks for rejected ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_share_leaves_the_members_lists() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let shared = s.create("alice", json!({"name": "shr"})).await;
    let sid = shared["id"].as_str().unwrap();
    let members = format!("/v2/images/{sid}/members");
    let me = format!("{members}/p-bob");
    let r = s
        .call(
            "alice",
            Method::POST,
            &members,
            Some(json!({"member": "p-bob"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .call("bob", Method::PUT, &me, Some(json!({"status": "rejected"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "rejected");
    assert_eq!(s.show("bob", sid).await.status, StatusCode::OK);
    for q in ["", "?visibility=shared", "?member_status=pending"] {
        let l = s
            .call("bob", Method::GET, &format!("/v2/images{q}"), None)
            .await
            .json();
        assert!(!ids(&l).contains(&"shr".to_string()), "{q}: {l}");
    }
    assert_eq!(
        ids(&s
            .call(
                "bob",
                Method::GET,
                "/v2/images?visibility=shared&member_status=rejected",
                None
            )
            .await
            .json()),
        ["shr"]
    );
    // The owner sees the answer; the member may change his mind.
    let r = s.call("alice", Method::GET, &me, None).await;
    assert_eq!(r.json()["status"], "rejected");
    let r = s
        .call("bob", Method::PUT, &me, Some(json!({"status": "accepted"})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        ids(&s.call("bob", Method::GET, "/v2/images", None).await.json())
            .contains(&"shr".to_string())
    );
}

/// Alice's raw image "d" with 3 MiB + 17 bytes of data uploaded: (its id, the data).
async fn active_raw_image(s: &Svc) -> (String, Vec<u8>) {
    let img = s
        .create(
            "alice",
            json!({"name": "d", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    let data = raw(3 * 1024 * 1024 + 17);
    let r = s.upload("alice", &id, Body::from(data.clone())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    (id, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let img = s.create("alice", json!({"name": "d"})).await;
    let id = img["id"].as_str().unwrap();
    let data = raw(3 * 1024 * 1024 + 17);
    let r = s.upload("alice", id, Body::from(data.clone())).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "formats must be set first"
    );
    s.patch("alice", id, json!([{"op": "add", "path": "/disk_format", "value": "raw"}, {"op": "add", "path": "/container_format", "value": "bare"}])).await;
    let r = s
        .send(
            "alice",
            Method::PUT,
            &format!("/v2/images/{id}/file"),
            "text/plain",
            Body::from("x"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        s.call("alice", Method::GET, &format!("/v2/images/{id}/file"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // A reader may not upload.
    assert_eq!(
        s.upload("carol", id, Body::from(data.clone())).await.status,
        StatusCode::FORBIDDEN
    );

    let r = s.upload("alice", id, Body::from(data.clone())).await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = s.show("alice", id).await.json();
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], data.len());
    assert_eq!(
        v["virtual_size"],
        data.len(),
        "raw: virtual size is the size"
    );
    assert_eq!(
        v["checksum"],
        hex::encode(<md5::Md5 as md5::Digest>::digest(&data))
    );
    assert_eq!(v["os_hash_algo"], "sha512");
    assert_eq!(
        v["os_hash_value"],
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&data))
    );
    assert_eq!(
        s.upload("alice", id, Body::from(data.clone())).await.status,
        StatusCode::CONFLICT
    );
    // Formats are fixed once there is data.
    let r = s
        .patch(
            "alice",
            id,
            json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = s
        .call("alice", Method::GET, &format!("/v2/images/{id}/file"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), data.as_slice());
    assert_eq!(r.headers["content-md5"], v["checksum"].as_str().unwrap());
    assert_eq!(r.headers["content-length"], data.len().to_string().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_images_download_for_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let (id, _) = active_raw_image(&s).await;
    let id = id.as_str();
    // Deactivated: no download except for an admin; reactivated: back.
    let act = |who: &'static str, a: &'static str| {
        let s = &s;
        async move {
            s.call(
                who,
                Method::POST,
                &format!("/v2/images/{id}/actions/{a}"),
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(act("bob", "deactivate").await, StatusCode::NOT_FOUND);
    assert_eq!(act("alice", "deactivate").await, StatusCode::NO_CONTENT);
    assert_eq!(s.show("alice", id).await.json()["status"], "deactivated");
    assert_eq!(
        s.call("alice", Method::GET, &format!("/v2/images/{id}/file"), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("admin", Method::GET, &format!("/v2/images/{id}/file"), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(act("alice", "reactivate").await, StatusCode::NO_CONTENT);
    assert_eq!(
        s.call("alice", Method::GET, &format!("/v2/images/{id}/file"), None)
            .await
            .status,
        StatusCode::OK
    );
    let queued = s.create("alice", json!({"name": "q"})).await;
    let r = s
        .call(
            "alice",
            Method::POST,
            &format!(
                "/v2/images/{}/actions/deactivate",
                queued["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qcow2_virtual_size_delete_removes_the_data_and_no_import() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let (id, _) = active_raw_image(&s).await;
    // A qcow2 header gives the virtual size.
    let q = s
        .create(
            "alice",
            json!({"name": "q2", "disk_format": "qcow2", "container_format": "bare"}),
        )
        .await;
    let mut head = vec![0u8; 4096];
    head[..4].copy_from_slice(b"QFI\xfb");
    head[4..8].copy_from_slice(&3u32.to_be_bytes());
    head[24..32].copy_from_slice(&(10u64 << 30).to_be_bytes());
    let qid = q["id"].as_str().unwrap();
    assert_eq!(
        s.upload("alice", qid, Body::from(head)).await.status,
        StatusCode::NO_CONTENT
    );
    let v = s.show("alice", qid).await.json();
    assert_eq!(
        (v["size"].as_u64(), v["virtual_size"].as_u64()),
        (Some(4096), Some(10 << 30))
    );

    // Delete removes the data.
    assert_eq!(s.files().len(), 2);
    assert_eq!(
        s.call("alice", Method::DELETE, &format!("/v2/images/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.files(), vec![qid.to_string()]);

    // Import is not offered, and says so without a 500.
    let info = s
        .call("alice", Method::GET, "/v2/info/import", None)
        .await
        .json();
    assert_eq!(info["import-methods"]["value"], json!([]));
    let r = s
        .call(
            "alice",
            Method::POST,
            &format!("/v2/images/{qid}/import"),
            Some(json!({"method": {"name": "web-download"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.call("alice", Method::GET, "/v2/info/stores", None)
            .await
            .status,
        StatusCode::OK
    );
}

/// Range, as Glance answers it: one span is a 206 with Content-Range (and
/// the whole image's Content-MD5); a span across a download window comes
/// back whole; a bad or multiple range is a 416 with `bytes */size`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_the_data_is_a_206() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let img = s
        .create(
            "alice",
            json!({"name": "r", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap();
    let data = raw(3 * 1024 * 1024 + 17);
    let r = s.upload("alice", id, Body::from(data.clone())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v = s.show("alice", id).await.json();
    let ranged = |h: &'static str| {
        let s = &s;
        async move {
            let req = Request::get(format!("/v2/images/{id}/file"))
                .header("x-auth-token", "alice")
                .header("range", h)
                .body(Body::empty())
                .unwrap();
            let resp = s.app.clone().oneshot(req).await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, headers, body)
        }
    };
    let n = data.len();
    let (st, h, b) = ranged("bytes=3-10").await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(b.as_ref(), &data[3..=10]);
    assert_eq!(h["content-range"], format!("bytes 3-10/{n}").as_str());
    assert_eq!(h["content-length"], "8");
    assert_eq!(h["content-md5"], v["checksum"].as_str().unwrap());
    let (st, _, b) = ranged("bytes=1000000-3000000").await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(b.as_ref(), &data[1_000_000..=3_000_000]);
    let (st, h, b) = ranged("bytes=-5").await;
    assert_eq!(
        (st, b.as_ref()),
        (StatusCode::PARTIAL_CONTENT, &data[n - 5..])
    );
    assert_eq!(
        h["content-range"],
        format!("bytes {}-{}/{n}", n - 5, n - 1).as_str()
    );
    for bad in ["bytes=10-5", "bytes=0-1,4-5", "bytes=99999999-"] {
        let (st, h, _) = ranged(bad).await;
        assert_eq!(st, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(h["content-range"], format!("bytes */{n}").as_str(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_upload_leaves_a_queued_image_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), Limits::default());
    let img = s
        .create(
            "alice",
            json!({"name": "c", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap();
    let r = s.upload("alice", id, cut_off_body(12)).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let v = s.show("alice", id).await.json();
    assert_eq!(v["status"], "queued");
    assert_eq!(v["size"], Value::Null);
    assert_eq!(s.files(), Vec::<String>::new(), "no stray file");
    // And the data can be uploaded again.
    let data = raw(1000);
    assert_eq!(
        s.upload("alice", id, Body::from(data)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.show("alice", id).await.json()["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_cap_and_project_quota_are_413s() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        Limits {
            image_size_cap: 3 * 1024 * 1024,
            project_quota: Some(5 * 1024 * 1024),
        },
    );
    let mk = |name: &'static str| {
        let s = &s;
        async move {
            s.create(
                "alice",
                json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // Streamed (no Content-Length): refused when the data passes the cap.
    let a = mk("a").await;
    let r = s.upload("alice", &a, cut_off_body(0)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let big: Vec<Result<Bytes, std::io::Error>> = (0..16)
        .map(|_| Ok(Bytes::from(vec![1u8; 256 * 1024])))
        .collect();
    let r = s
        .upload(
            "alice",
            &a,
            Body::from_stream(futures_util::stream::iter(big)),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.json()["message"].as_str().unwrap().contains("limit"));
    assert_eq!(s.show("alice", &a).await.json()["status"], "queued");
    assert_eq!(s.files(), Vec::<String>::new());
    // With a Content-Length past the cap: refused before any data is read.
    let r = s.send_with_length("alice", &a, 4 * 1024 * 1024).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Quota: 3 MiB + 2 MiB fill it; the next upload is refused.
    assert_eq!(
        s.upload("alice", &a, Body::from(raw(3 * 1024 * 1024)))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let b = mk("b").await;
    let r = s
        .upload("alice", &b, Body::from(raw(3 * 1024 * 1024)))
        .await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "past what is left of the quota"
    );
    assert_eq!(
        s.upload("alice", &b, Body::from(raw(2 * 1024 * 1024)))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let c = mk("c").await;
    let r = s.upload("alice", &c, Body::from(raw(10))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("image_size_total"));
    // Another project's quota is its own.
    let bobs = s
        .create(
            "bob",
            json!({"name": "b", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    assert_eq!(
        s.upload("bob", bobs["id"].as_str().unwrap(), Body::from(raw(10)))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // Deleting frees it.
    assert_eq!(
        s.call("alice", Method::DELETE, &format!("/v2/images/{a}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.upload("alice", &c, Body::from(raw(10))).await.status,
        StatusCode::NO_CONTENT
    );
}

impl Svc {
    async fn send_with_length(&self, who: &str, id: &str, len: u64) -> Resp {
        let req = Request::builder()
            .method(Method::PUT)
            .uri(format!("/v2/images/{id}/file"))
            .header("x-auth-token", who)
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(Body::empty())
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_files_survive_a_restart_and_a_crash_mid_upload_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let data = raw(2 * 1024 * 1024 + 5);
    let (done, interrupted) = {
        let s = open(dir.path(), Limits::default());
        let a = s
            .create(
                "alice",
                json!({"name": "kept", "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let a = a["id"].as_str().unwrap().to_string();
        assert_eq!(
            s.upload("alice", &a, Body::from(data.clone())).await.status,
            StatusCode::NO_CONTENT
        );
        // An upload under way when the server dies: the record says saving
        // and a staged file is on disk.
        let b = s
            .create(
                "alice",
                json!({"name": "cut", "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let b = b["id"].as_str().unwrap().to_string();
        let target = b.clone();
        s.images
            .write_async(move |st, env| {
                let ctx = weft_compute::image::Ctx::new(Table.validate("alice").unwrap());
                weft_compute::image::upload::begin_upload(st, env, &ctx, &target, None)
            })
            .await
            .unwrap();
        let mut staged = s.images.data_store().stage(&b).unwrap();
        staged.write(b"half an image").unwrap();
        std::mem::forget(staged); // as a kill -9 would leave it
        std::fs::write(dir.path().join("images").join("orphan-file"), b"x").unwrap();
        (a, b)
    };
    let s = open(dir.path(), Limits::default());
    let v = s.show("alice", &done).await.json();
    assert_eq!(v["status"], "active");
    let r = s
        .call(
            "alice",
            Method::GET,
            &format!("/v2/images/{done}/file"),
            None,
        )
        .await;
    assert_eq!(r.body.as_ref(), data.as_slice());
    assert_eq!(
        s.show("alice", &interrupted).await.json()["status"],
        "queued"
    );
    assert_eq!(
        s.files(),
        vec![done.clone()],
        "staged leftovers and orphans swept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_deleted_during_its_upload_keeps_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path(), Limits::default()));
    let img = s
        .create(
            "alice",
            json!({"name": "gone", "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_string();
    // The body is fed by hand: one chunk, then the image is deleted, then the rest.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|x| (x, rx))
    }));
    let up = {
        let (s, id) = (s.clone(), id.clone());
        tokio::spawn(async move { s.upload("alice", &id, body).await })
    };
    tx.send(Ok(Bytes::from(raw(1 << 20)))).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.show("alice", &id).await.json()["status"] != "saving" {
        assert!(std::time::Instant::now() < deadline, "upload never began");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let del = s
        .call("alice", Method::DELETE, &format!("/v2/images/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    tx.send(Ok(Bytes::from(raw(1 << 20)))).await.unwrap();
    drop(tx);
    let r = up.await.unwrap();
    assert_eq!(
        r.status,
        StatusCode::GONE,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(s.show("alice", &id).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.files(), Vec::<String>::new(), "no stray file");
}

/// The service on PostgreSQL, as two replicas of one database would run it
/// (each with its own file store): an image created through one is updated
/// through the other, which catches up on the refusal instead of answering
/// 404. The blocking PostgreSQL client is opened and dropped outside the
/// runtime, as `weft serve` does.
#[test]
fn records_replicate_through_postgresql() {
    let db = weft_store::testing::TestDatabase::create().expect("PostgreSQL (scripts/postgres.sh)");
    let open_pg = |dir: &Path| {
        let store = Arc::new(weft_store::PgStore::connect(&db.url).unwrap());
        let images = Images::open(
            store,
            dir,
            &ImageConfig::default(),
            None,
            Mode::Enforce,
            Arc::new(Table),
        )
        .unwrap();
        Svc {
            dir: dir.to_path_buf(),
            app: image::router(images.clone()),
            images,
        }
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open_pg(a_dir.path()), open_pg(b_dir.path()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let img = a
            .create(
                "alice",
                json!({"name": "rep", "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let id = img["id"].as_str().unwrap();
        assert_eq!(
            a.upload("alice", id, Body::from(raw(4096))).await.status,
            StatusCode::NO_CONTENT
        );
        let r = b
            .patch(
                "alice",
                id,
                json!([{"op": "add", "path": "/site", "value": "b"}]),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["status"], "active");
        assert_eq!(b.show("alice", id).await.json()["site"], "b");
    });
    drop(rt);
}

/// A replica of the image service on PostgreSQL `db`, with its own state
/// directory, and image files in `shared/images` when given one directory
/// all replicas share, else in its own state directory.
fn open_replica(db: &str, state: &Path, shared: Option<&Path>) -> Svc {
    let store = Arc::new(weft_store::PgStore::connect(db).unwrap());
    let cfg = ImageConfig {
        image_dir: shared.map(|d| d.join("images")),
        ..ImageConfig::default()
    };
    let images = Images::open(store, state, &cfg, None, Mode::Enforce, Arc::new(Table)).unwrap();
    Svc {
        dir: shared.unwrap_or(state).to_path_buf(),
        app: image::router(images.clone()),
        images,
    }
}

/// Begins an upload of `id` by `who` through `s` and stages some data, as
/// a replica does when the body starts coming (blocking: outside a runtime).
fn begin_and_stage(s: &Svc, who: &str, id: &str) {
    let ctx = weft_compute::image::Ctx::new(Table.validate(who).unwrap());
    let target = id.to_string();
    s.images
        .write(move |st, env| {
            weft_compute::image::upload::begin_upload(st, env, &ctx, &target, None)
        })
        .unwrap();
    let mut staged = s.images.data_store().stage(id).unwrap();
    staged.write(b"the first bytes").unwrap();
    std::mem::forget(staged); // still being written (or, for a crash, left behind)
}

/// Two replicas sharing one PostgreSQL and one image directory: a replica
/// that restarts sets back to queued only the upload it was receiving, and
/// leaves the other replica's upload (record and staged file) alone; an
/// image uploaded through one downloads whole through the other.
#[test]
fn a_restarting_replica_recovers_only_its_own_uploads() {
    let db = weft_store::testing::TestDatabase::create().expect("PostgreSQL (scripts/postgres.sh)");
    let (a_state, b_state, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = open_replica(&db.url, a_state.path(), Some(shared.path()));
    let b = open_replica(&db.url, b_state.path(), Some(shared.path()));
    assert_ne!(a.images.replica_id(), b.images.replica_id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let new_image = |s: &Svc, name: &str| {
        rt.block_on(s.create(
            "alice",
            json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
        ))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (on_a, on_b, whole) = (
        new_image(&a, "a"),
        new_image(&a, "b"),
        new_image(&a, "whole"),
    );
    let data = raw(3 * 1024 * 1024 + 17);
    let r = rt.block_on(a.upload("alice", &whole, Body::from(data.clone())));
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    begin_and_stage(&a, "alice", &on_a);
    begin_and_stage(&b, "alice", &on_b);
    let staged = |s: &Svc| {
        s.files()
            .into_iter()
            .filter(|f| f.starts_with(".staging-"))
            .count()
    };
    assert_eq!(staged(&a), 2);

    // Replica a restarts (same state directory, so the same replica id).
    let a_id = a.images.replica_id().to_string();
    drop(a);
    let a = open_replica(&db.url, a_state.path(), Some(shared.path()));
    assert_eq!(a.images.replica_id(), a_id);
    rt.block_on(async {
        assert_eq!(a.show("alice", &on_a).await.json()["status"], "queued");
        assert_eq!(
            a.show("alice", &on_b).await.json()["status"],
            "saving",
            "b's upload is still under way"
        );
        // Through b, which never saw the file arrive: the shared directory.
        let r = b
            .call(
                "alice",
                Method::GET,
                &format!("/v2/images/{whole}/file"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_ref(), data.as_slice());
    });
    assert_eq!(staged(&a), 1, "a's leftover swept, b's staged data kept");
    assert!(a.files().contains(&whole));
    drop(rt);
}

/// Replicas that do not share an image directory: data uploaded through
/// one is a 503 through the other, saying where it is, not a 500; a Range
/// of it through the first is a 206 as Glance gives it.
#[test]
fn a_replica_without_the_data_says_so() {
    let db = weft_store::testing::TestDatabase::create().expect("PostgreSQL (scripts/postgres.sh)");
    let (a_state, b_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_replica(&db.url, a_state.path(), None);
    let b = open_replica(&db.url, b_state.path(), None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let img = a
            .create(
                "alice",
                json!({"name": "here", "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let id = img["id"].as_str().unwrap();
        let data = raw(100_000);
        let up = a.upload("alice", id, Body::from(data.clone())).await;
        assert_eq!(up.status, StatusCode::NO_CONTENT);
        let path = format!("/v2/images/{id}/file");
        // What b's store follower does in `weft serve`: replay a's commits
        // (the PostgreSQL client blocks: off the async worker).
        tokio::task::block_in_place(|| b.images.replica().catch_up().unwrap());
        let r = b.call("alice", Method::GET, &path, None).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(msg.contains(a.images.replica_id()), "{msg}");
        assert!(msg.contains("--image-dir"), "{msg}");
        let r = a.call("alice", Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_ref(), data.as_slice());
        let req = Request::get(&path)
            .header("x-auth-token", "alice")
            .header("range", "bytes=99990-")
            .body(Body::empty())
            .unwrap();
        let resp = a.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(resp.headers()["content-range"], "bytes 99990-99999/100000");
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.as_ref(), &data[99_990..]);
    });
    drop(rt);
}
