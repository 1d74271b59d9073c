//! The harness of the server-side HTTP tests (groups, quotas, instance
//! actions): the compute router on a real SQLite store with the build loop
//! over a real placement, hosts driven by a recording `Spawner`, callers by
//! token. compute_servers.rs predates it and keeps its own copy.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;
use weft_compute::compute::build::{self, host::ComputeHost, Observed, Spawned, Spawner};
use weft_compute::compute::servers::actions::Power;
use weft_compute::compute::servers::record::{FlavorCopy, Server};
use weft_compute::compute::servers::{request::CreateServer, Facts, ImageFacts};
use weft_compute::compute::{self, Compute, Ctx, Lookups};
use weft_compute::image::Tokens;
use weft_compute::placement::model::Inventory;
use weft_compute::placement::Placement;
use weft_identity::policy::{Credentials, Mode};

/// Tokens are names: `admin` (project p-admin), `alice` and `bob` (members
/// of p-alice and p-bob), `rita` (a reader of p-alice).
pub struct Table;

impl Tokens for Table {
    fn validate(&self, token: &str) -> Option<Credentials> {
        let (project, roles): (&str, &[&str]) = match token {
            "admin" => ("p-admin", &["admin", "member", "reader"]),
            "alice" => ("p-alice", &["member", "reader"]),
            "bob" => ("p-bob", &["member", "reader"]),
            "rita" => ("p-alice", &["reader"]),
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

/// One image `img` and one network `net`.
struct World;

impl Lookups for World {
    fn facts(&self, _ctx: &Ctx, req: &CreateServer) -> Facts {
        Facts {
            image: (req.image_ref == "img").then(|| ImageFacts {
                status: "active".into(),
                min_disk: 0,
                min_ram: 0,
                size: 1 << 20,
            }),
            ..Facts::default()
        }
    }
    fn image(&self, _ctx: &Ctx, id: &str) -> Option<ImageFacts> {
        (id == "img").then(|| ImageFacts {
            status: "active".into(),
            min_disk: 0,
            min_ram: 0,
            size: 1 << 20,
        })
    }
}

/// Records spawns and power actions; fails spawns of servers named `doomed`;
/// gives servers named `wired` two addresses on network `private`;
/// resizes all but servers named `noresize`.
#[derive(Default)]
pub struct Recorder {
    pub spawned: Mutex<Vec<String>>,
    pub powered: Mutex<Vec<(String, Power)>>,
}

impl Spawner for Recorder {
    fn spawn(&self, s: &Server) -> Result<Spawned, String> {
        if s.name == "doomed" {
            return Err("the driver said no".into());
        }
        self.spawned.lock().unwrap().push(s.id.clone());
        let mut done = Spawned::default();
        if s.name == "wired" {
            done.addresses.insert(
                "private".into(),
                vec![
                    ("10.0.0.5".into(), 4, "fa:16:3e:00:00:05".into()),
                    ("fd00::5".into(), 6, "fa:16:3e:00:00:05".into()),
                ],
            );
        }
        Ok(done)
    }
    fn destroy(&self, _: &Server) -> Result<(), String> {
        Ok(())
    }
    fn power(&self, s: &Server, op: Power) -> Result<(), String> {
        self.powered.lock().unwrap().push((s.id.clone(), op));
        Ok(())
    }
    fn console(&self, _: &Server, _: Option<usize>) -> Result<String, String> {
        Ok(String::new())
    }
    fn observe(&self) -> Result<BTreeMap<String, Observed>, String> {
        Ok(BTreeMap::new())
    }
    fn destroy_orphan(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    /// Refuses servers named `noresize`.
    fn resize(&self, s: &Server, _: &FlavorCopy) -> Result<(), String> {
        if s.name == "noresize" {
            return Err("the driver cannot resize it".into());
        }
        Ok(())
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn weft_store::Store>,
    pub svc: Arc<Compute>,
    pub pl: Arc<Placement>,
    pub app: axum::Router,
    pub rec: Arc<Recorder>,
}

/// The compute API over SQLite with its build loop and placement.
pub fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn weft_store::Store> =
        Arc::new(weft_store::SqliteStore::open(&dir.path().join("weft.sqlite")).unwrap());
    let svc = Compute::open(
        store.clone(),
        dir.path(),
        None,
        Mode::Enforce,
        Arc::new(Table),
    )
    .unwrap();
    svc.set_lookups(Arc::new(World));
    // Tokens are names on placement's own router ([`Env::placement_call`]).
    let pl = Placement::open(
        store.clone(),
        None,
        None,
        Mode::Enforce,
        Some(Arc::new(weft_compute::placement::NoAuth2)),
    )
    .unwrap();
    svc.set_placement(pl.clone());
    tokio::spawn(build::run(svc.clone(), pl.clone()));
    Env {
        app: compute::router(svc.clone()),
        dir,
        store,
        svc,
        pl,
        rec: Arc::new(Recorder::default()),
    }
}

/// `method path` as `who` at microversion `mv` ("" for none) on `app`.
pub async fn call_on(
    app: &axum::Router,
    who: &str,
    mv: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("x-auth-token", who);
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
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, v)
}

impl Env {
    /// Another API replica on the same store (no build loop of its own).
    pub fn replica(&self) -> axum::Router {
        let svc = Compute::open(
            self.store.clone(),
            self.dir.path(),
            None,
            Mode::Enforce,
            Arc::new(Table),
        )
        .unwrap();
        svc.set_lookups(Arc::new(World));
        compute::router(svc)
    }

    /// A host with `vcpus` and 64 GiB, driven by the recorder.
    pub fn add_host(&self, name: &str, vcpus: u64) {
        let inv: BTreeMap<String, Inventory> = [
            ("VCPU".to_string(), Inventory::with_total(vcpus)),
            ("MEMORY_MB".to_string(), Inventory::with_total(65536)),
            ("DISK_GB".to_string(), Inventory::with_total(1000)),
        ]
        .into();
        let host = ComputeHost {
            name: name.into(),
            provider: String::new(),
            availability_zone: "nova".into(),
            enabled: true,
            disabled_reason: None,
            forced_down: false,
            driver: "test".into(),
            hypervisor_type: "QEMU".into(),
            arch: "x86_64".into(),
            vcpus,
            memory_mb: 65536,
            disk_gb: 1000,
            host_ip: "192.0.2.1".into(),
            heartbeat: String::new(),
            seq: 0,
        };
        self.svc
            .register_host(self.pl.as_ref(), host, &inv, self.rec.clone())
            .unwrap();
    }

    /// `method path` on placement's router as `who` at placement `mv`.
    pub async fn placement_call(
        &self,
        who: &str,
        mv: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-auth-token", who)
            .header("openstack-api-version", format!("placement {mv}"));
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let app = weft_compute::placement::router(self.pl.clone());
        let resp = app.oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn call(
        &self,
        who: &str,
        mv: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_on(&self.app, who, mv, method, path, body).await
    }

    /// A flavor `id` with `vcpus` and 256 MiB (as admin).
    pub async fn flavor(&self, id: &str, vcpus: u32) {
        let (st, b) = self
            .call(
                "admin",
                "",
                Method::POST,
                "/v2.1/flavors",
                Some(json!({"flavor": {"name": format!("f{id}"), "id": id, "ram": 256, "vcpus": vcpus, "disk": 1}})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }

    /// `POST /servers` of `extra` merged into a minimal server body.
    pub async fn create_with(
        &self,
        who: &str,
        mv: &str,
        extra: Value,
        top: Value,
    ) -> (StatusCode, Value) {
        let mut server =
            json!({"name": "s", "imageRef": "img", "flavorRef": "1", "networks": "none"});
        for (k, v) in extra.as_object().unwrap() {
            server[k] = v.clone();
        }
        let mut body = json!({ "server": server });
        for (k, v) in top.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.call(who, mv, Method::POST, "/v2.1/servers", Some(body))
            .await
    }

    /// Waits until the server leaves BUILD (or a task); its detail as admin.
    pub async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (st, b) = self
                .call(
                    "admin",
                    "2.79",
                    Method::GET,
                    &format!("/v2.1/servers/{id}"),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{b}");
            let s = &b["server"];
            if s["status"] != "BUILD" && s["OS-EXT-STS:task_state"].is_null() {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "server {id} never settled: {b}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until server `id` is gone.
    pub async fn gone(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .call(
                "admin",
                "",
                Method::GET,
                &format!("/v2.1/servers/{id}"),
                None,
            )
            .await
            .0
            != StatusCode::NOT_FOUND
        {
            assert!(Instant::now() < deadline, "server {id} never went");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
