//! Servers over HTTP, in-process, with the build loop running over a real
//! placement on the same SQLite store: create, the filter scheduler and the
//! claim, ERROR with "No valid host was found" when nothing fits, delete
//! returning the allocation, many parallel creates never over-committing a
//! host, quotas, bad input and visibility. The hosts' driver here is a
//! recording test double (the build loop's `Spawner`); the libvirt driver
//! has its own tests.

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
use weft_compute::compute::servers::record::Server;
use weft_compute::compute::servers::{request::CreateServer, Facts, ImageFacts};
use weft_compute::compute::{self, Compute, Ctx, Lookups};
use weft_compute::image::Tokens;
use weft_compute::placement::model::Inventory;
use weft_compute::placement::Placement;
use weft_identity::policy::{Credentials, Mode};

struct Table;

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

/// One image `img` (active, min_ram 128) and one network `net`.
struct World;

impl Lookups for World {
    fn facts(&self, _ctx: &Ctx, req: &CreateServer) -> Facts {
        Facts {
            image: (req.image_ref == "img").then(|| ImageFacts {
                status: "active".into(),
                min_disk: 0,
                min_ram: 128,
                size: 1 << 20,
            }),
            missing_networks: req
                .nics
                .iter()
                .filter_map(|n| n.network.clone())
                .filter(|n| n != "net")
                .collect(),
            ..Facts::default()
        }
    }
}

/// Records spawns and destroys; fails spawns of servers named `doomed`.
#[derive(Default)]
struct Recorder {
    spawned: Mutex<Vec<String>>,
    destroyed: Mutex<Vec<String>>,
    powered: Mutex<Vec<(String, Power)>>,
    /// What observe() reports (the reconcile test sets it).
    seen: Mutex<BTreeMap<String, Observed>>,
}

impl Spawner for Recorder {
    fn spawn(&self, s: &Server) -> Result<Spawned, String> {
        if s.name == "doomed" {
            return Err("the driver said no".into());
        }
        self.spawned.lock().unwrap().push(s.id.clone());
        Ok(Spawned {
            addresses: [(
                "net".to_string(),
                vec![("10.0.0.5".to_string(), 4, "fa:16:3e:00:00:01".to_string())],
            )]
            .into(),
            created_ports: vec![],
        })
    }
    fn destroy(&self, s: &Server) -> Result<(), String> {
        self.destroyed.lock().unwrap().push(s.id.clone());
        Ok(())
    }
    fn power(&self, s: &Server, op: Power) -> Result<(), String> {
        self.powered.lock().unwrap().push((s.id.clone(), op));
        Ok(())
    }
    fn console(&self, s: &Server, _lines: Option<usize>) -> Result<String, String> {
        Ok(format!("console of {}\n", s.name))
    }
    fn observe(&self) -> Result<BTreeMap<String, Observed>, String> {
        Ok(self.seen.lock().unwrap().clone())
    }
    fn destroy_orphan(&self, id: &str) -> Result<(), String> {
        self.destroyed.lock().unwrap().push(id.to_string());
        Ok(())
    }
}

struct Env {
    _dir: tempfile::TempDir,
    svc: Arc<Compute>,
    pl: Arc<Placement>,
    app: axum::Router,
    rec: Arc<Recorder>,
}

fn env() -> Env {
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
    let pl = Placement::open(store, None, None, Mode::Enforce, None).unwrap();
    tokio::spawn(build::run(svc.clone(), pl.clone()));
    Env {
        _dir: dir,
        app: compute::router(svc.clone()),
        svc,
        pl,
        rec: Arc::new(Recorder::default()),
    }
}

impl Env {
    /// A host with `vcpus` (ratio 1) and 4 GiB, driven by the recorder.
    fn add_host(&self, name: &str, vcpus: u64) {
        let inv: BTreeMap<String, Inventory> = [
            ("VCPU".to_string(), Inventory::with_total(vcpus)),
            ("MEMORY_MB".to_string(), Inventory::with_total(4096)),
            ("DISK_GB".to_string(), Inventory::with_total(100)),
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
            memory_mb: 4096,
            disk_gb: 100,
            host_ip: "192.0.2.1".into(),
            heartbeat: String::new(),
            seq: 0,
        };
        self.svc
            .register_host(self.pl.as_ref(), host, &inv, self.rec.clone())
            .unwrap();
    }

    async fn call(
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
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    async fn flavor(&self, id: &str, vcpus: u32) {
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

    async fn create(&self, who: &str, name: &str, flavor: &str) -> (StatusCode, Value) {
        self.call(
            who,
            "2.79",
            Method::POST,
            "/v2.1/servers",
            Some(json!({"server": {"name": name, "imageRef": "img", "flavorRef": flavor, "networks": [{"uuid": "net"}]}})),
        )
        .await
    }

    /// Waits until the server leaves BUILD; its detail.
    async fn settled(&self, who: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (st, b) = self
                .call(
                    who,
                    "2.79",
                    Method::GET,
                    &format!("/v2.1/servers/{id}"),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{b}");
            if b["server"]["status"] != "BUILD" {
                return b["server"].clone();
            }
            assert!(Instant::now() < deadline, "server {id} still BUILD: {b}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_is_an_error_with_nova_fault() {
    let e = env();
    e.flavor("1", 1).await;
    let (st, b) = e.create("alice", "lonely", "1").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let s = e.settled("alice", &id).await;
    assert_eq!(s["status"], "ERROR");
    let msg = s["fault"]["message"].as_str().unwrap();
    assert!(msg.starts_with("No valid host was found"), "{msg}");
    assert_eq!(s["fault"]["code"], 500);
    // An ERROR server can be deleted; it held nothing.
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::GET,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_claims_spawns_and_delete_returns_the_allocation() {
    let e = env();
    e.add_host("h1", 4);
    e.flavor("2", 2).await;
    let (st, b) = e.create("alice", "web", "2").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let s = e.settled("alice", &id).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(s["addresses"]["net"][0]["addr"], "10.0.0.5");
    assert_eq!(s["flavor"]["vcpus"], 2, "2.47+ embeds the flavor");
    assert!(s.get("OS-EXT-SRV-ATTR:host").is_none(), "not for a member");
    assert!(!s["hostId"].as_str().unwrap().is_empty());
    let (_, admin_view) = e
        .call(
            "admin",
            "2.79",
            Method::GET,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(admin_view["server"]["OS-EXT-SRV-ATTR:host"], "h1");
    // No zone asked for: the server takes its host's.
    assert_eq!(
        admin_view["server"]["OS-EXT-AZ:availability_zone"], "nova",
        "{admin_view}"
    );
    assert_eq!(
        e.rec.spawned.lock().unwrap().as_slice(),
        std::slice::from_ref(&id)
    );
    the_host_as_services_hypervisors_and_zones_show_it(&e).await;
    // Placement holds the claim: 2 VCPU against h1.
    let consumer =
        e.pl.snapshot()
            .consumers
            .get(&id)
            .cloned()
            .expect("allocation");
    let _ = consumer;
    // Others do not see it.
    let (st, _) = e
        .call("bob", "", Method::GET, &format!("/v2.1/servers/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, l) = e.call("bob", "", Method::GET, "/v2.1/servers", None).await;
    assert_eq!(l["servers"], json!([]));
    // A reader may look but not delete.
    let (st, _) = e
        .call(
            "rita",
            "",
            Method::GET,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = e
        .call(
            "rita",
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _) = e
            .call(
                "alice",
                "",
                Method::GET,
                &format!("/v2.1/servers/{id}"),
                None,
            )
            .await;
        if st == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "server not torn down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        e.rec.destroyed.lock().unwrap().as_slice(),
        std::slice::from_ref(&id)
    );
    assert!(
        !e.pl.snapshot().consumers.contains_key(&id),
        "allocation released"
    );
}

/// The host of the one 2-vCPU server, as os-services and os-hypervisors show it (admin only),
/// and its zone.
async fn the_host_as_services_hypervisors_and_zones_show_it(e: &Env) {
    let (_, sv) = e
        .call("admin", "2.79", Method::GET, "/v2.1/os-services", None)
        .await;
    assert_eq!(sv["services"][0]["host"], "h1", "{sv}");
    assert_eq!(sv["services"][0]["state"], "up");
    assert_eq!(sv["services"][0]["binary"], "nova-compute");
    for (query, n) in [
        ("?host=h1", 1),
        ("?host=h1&binary=nova-compute", 1),
        ("?host=elsewhere", 0),
        ("?binary=nova-scheduler", 0),
    ] {
        let (_, sv) = e
            .call(
                "admin",
                "2.79",
                Method::GET,
                &format!("/v2.1/os-services{query}"),
                None,
            )
            .await;
        assert_eq!(sv["services"].as_array().unwrap().len(), n, "{query}: {sv}");
    }
    let (st, _) = e
        .call("alice", "", Method::GET, "/v2.1/os-services", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, hv) = e
        .call(
            "admin",
            "2.1",
            Method::GET,
            "/v2.1/os-hypervisors/detail",
            None,
        )
        .await;
    assert_eq!(hv["hypervisors"][0]["vcpus_used"], 2);
    assert_eq!(hv["hypervisors"][0]["running_vms"], 1);
    let (_, az) = e
        .call("alice", "", Method::GET, "/v2.1/os-availability-zone", None)
        .await;
    assert_eq!(az["availabilityZoneInfo"][0]["zoneName"], "nova");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_failure_is_an_error_with_the_drivers_words() {
    let e = env();
    e.add_host("h1", 4);
    e.flavor("2", 2).await;
    // A driver failure is an ERROR with the driver's words, and the claim is kept
    // until delete (as Nova: the instance still holds it).
    let (_, b) = e.create("alice", "doomed", "2").await;
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let s = e.settled("alice", &id).await;
    assert_eq!(s["status"], "ERROR");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("the driver said no"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_never_overcommit() {
    let e = env();
    e.add_host("h1", 3);
    e.add_host("h2", 3);
    e.flavor("1", 1).await;
    // Room for 6 one-vCPU servers; 9 asked for at once (admin: no quota issue
    // below 10 instances).
    let mut ids = Vec::new();
    // Created back to back: the build loop claims them in parallel tasks.
    for i in 0..9 {
        let (st, b) = e.create("admin", &format!("s{i}"), "1").await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        ids.push(b["server"]["id"].as_str().unwrap().to_string());
    }
    let mut active: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors = 0;
    for id in &ids {
        let s = e.settled("admin", id).await;
        match s["status"].as_str().unwrap() {
            "ACTIVE" => {
                *active
                    .entry(s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string())
                    .or_default() += 1
            }
            "ERROR" => errors += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!(active.values().sum::<usize>(), 6, "{active:?}");
    assert!(
        active.values().all(|n| *n <= 3),
        "over-committed: {active:?}"
    );
    assert_eq!(errors, 3);
    // Spread: both hosts used.
    assert_eq!(active.len(), 2, "{active:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_server_bodies_are_refused_with_nova_errors() {
    let e = env();
    e.flavor("1", 1).await;
    e.flavor("big", 16).await;
    let post = |b: Value| e.call("alice", "2.79", Method::POST, "/v2.1/servers", Some(b));
    for (body, want) in [
        (
            json!({"server": {"name": "x", "imageRef": "img", "networks": "none"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "nope", "networks": "none"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "gone", "flavorRef": "1", "networks": "none"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "1"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "1", "networks": [{"uuid": "other"}]}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [{"boot_index": 0, "source_type": "volume", "uuid": "v1", "destination_type": "volume"}]}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "1", "networks": "none", "min_count": 3, "max_count": 2}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "1", "networks": "none", "user_data": "%%%"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "1", "networks": "none", "key_name": "nokey"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"server": {"name": "x", "imageRef": "img", "flavorRef": "big", "networks": "none", "min_count": 2, "max_count": 2}}),
            StatusCode::FORBIDDEN,
        ),
        (json!({"nope": {}}), StatusCode::BAD_REQUEST),
    ] {
        let (st, b) = post(body.clone()).await;
        assert_eq!(st, want, "{body}: {b}");
        let kind = b.as_object().unwrap().keys().next().unwrap().clone();
        assert!(b[&kind]["message"].is_string(), "{b}");
    }
    // The image restated as a local boot disk (what the CLI sends) is fine;
    // config_drive is refused by name, not ignored.
    let (st, b) = post(
        json!({"server": {"name": "bdm", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{"boot_index": 0, "uuid": "img", "source_type": "image",
            "destination_type": "local", "delete_on_termination": true}]}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, b) = post(json!({"server": {"name": "cd", "imageRef": "img", "flavorRef": "1", "networks": "none", "config_drive": true}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("config_drive"));
    // Wait for the deleted one to go (it may have reached ERROR first).
    let deadline = Instant::now() + Duration::from_secs(20);
    while e
        .call(
            "alice",
            "",
            Method::GET,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await
        .0
        != StatusCode::NOT_FOUND
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_trims_a_multi_create_and_listing_pages_and_filters() {
    let e = env();
    e.flavor("1", 1).await;
    e.flavor("big", 16).await;
    let post = |b: Value| e.call("alice", "2.79", Method::POST, "/v2.1/servers", Some(b));
    // The quota trims a multi-create to what fits: 20 cores, 16 + 1 + 1 + 1 + 1 = 20.
    let (st, b) = post(json!({"server": {"name": "big", "imageRef": "img", "flavorRef": "big", "networks": "none"}})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (st, b) = post(
        json!({"server": {"name": "m", "imageRef": "img", "flavorRef": "1", "networks": "none",
        "min_count": 1, "max_count": 6, "return_reservation_id": true}}),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    assert!(b["reservation_id"].as_str().unwrap().starts_with("r-"));
    let (_, l) = e
        .call("alice", "", Method::GET, "/v2.1/servers", None)
        .await;
    assert_eq!(l["servers"].as_array().unwrap().len(), 5, "{l}");
    let (st, b) = post(json!({"server": {"name": "one-more", "imageRef": "img", "flavorRef": "1", "networks": "none"}})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["forbidden"]["message"]
            .as_str()
            .unwrap()
            .contains("Quota exceeded for cores"),
        "{b}"
    );

    // Listing: paging with a next link, name filter, admin all_tenants.
    let (_, l) = e
        .call("alice", "", Method::GET, "/v2.1/servers?limit=2", None)
        .await;
    assert_eq!(l["servers"].as_array().unwrap().len(), 2);
    let next = l["servers_links"][0]["href"].as_str().unwrap();
    assert!(next.contains("marker="), "{next}");
    let (_, l) = e
        .call(
            "alice",
            "",
            Method::GET,
            "/v2.1/servers/detail?name=big",
            None,
        )
        .await;
    assert_eq!(l["servers"].as_array().unwrap().len(), 1);
    assert_eq!(l["servers"][0]["name"], "big");
    let (_, l) = e
        .call("admin", "", Method::GET, "/v2.1/servers", None)
        .await;
    assert_eq!(l["servers"], json!([]), "admin's own project has none");
    let (_, l) = e
        .call(
            "admin",
            "",
            Method::GET,
            "/v2.1/servers?all_tenants=1",
            None,
        )
        .await;
    assert_eq!(l["servers"].as_array().unwrap().len(), 5);
    let (_, l) = e
        .call("bob", "", Method::GET, "/v2.1/servers?all_tenants=1", None)
        .await;
    assert_eq!(l["servers"], json!([]), "all_tenants is an admin's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_metadata_is_the_owners() {
    let e = env();
    e.flavor("1", 1).await;
    let (st, b) = e
        .call(
            "alice",
            "2.79",
            Method::POST,
            "/v2.1/servers",
            Some(json!({"server": {"name": "big", "imageRef": "img", "flavorRef": "1", "networks": "none"}})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (_, l) = e
        .call("alice", "", Method::GET, "/v2.1/servers?name=big", None)
        .await;
    let id = l["servers"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v2.1/servers/{id}/metadata");
    let (st, b) = e
        .call(
            "alice",
            "",
            Method::POST,
            &path,
            Some(json!({"metadata": {"a": "1", "b": "2"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (_, b) = e
        .call(
            "alice",
            "",
            Method::PUT,
            &format!("{path}/a"),
            Some(json!({"meta": {"a": "9"}})),
        )
        .await;
    assert_eq!(b, json!({"meta": {"a": "9"}}));
    let (st, _) = e
        .call(
            "alice",
            "",
            Method::PUT,
            &format!("{path}/a"),
            Some(json!({"meta": {"z": "9"}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = e
        .call("alice", "", Method::DELETE, &format!("{path}/b"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, b) = e.call("alice", "", Method::GET, &path, None).await;
    assert_eq!(b, json!({"metadata": {"a": "9"}}));
    let (st, _) = e.call("bob", "", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_reconciles_with_its_domains() {
    let e = env();
    e.add_host("h1", 4);
    e.flavor("1", 1).await;
    let (_, b) = e.create("alice", "keep", "1").await;
    let keep = b["server"]["id"].as_str().unwrap().to_string();
    let (_, b) = e.create("alice", "lost", "1").await;
    let lost = b["server"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.settled("alice", &keep).await["status"], "ACTIVE");
    assert_eq!(e.settled("alice", &lost).await["status"], "ACTIVE");
    // The host comes back: `keep` was found powered off, `lost` has no
    // domain any more, and a domain of a server deleted meanwhile remains.
    let orphan = "0b0b0b0b-0000-4000-8000-000000000000".to_string();
    *e.rec.seen.lock().unwrap() = [
        (keep.clone(), Observed::Shutoff),
        (orphan.clone(), Observed::Running),
    ]
    .into();
    e.add_host("h1", 4);
    let k = e.settled("alice", &keep).await;
    assert_eq!(k["status"], "SHUTOFF", "{k}");
    let l = e.settled("alice", &lost).await;
    assert_eq!(l["status"], "ERROR", "{l}");
    assert!(l["fault"]["message"]
        .as_str()
        .unwrap()
        .contains("domain is gone"));
    assert!(
        e.rec.destroyed.lock().unwrap().contains(&orphan),
        "orphan left running"
    );
    assert!(
        !e.rec.destroyed.lock().unwrap().contains(&keep),
        "a live server's domain destroyed"
    );
}
