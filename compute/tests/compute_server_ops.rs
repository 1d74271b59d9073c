//! Rebuild, resize (confirm, revert), createImage and os-interface over
//! HTTP, in-process, with the build loop over a real placement on SQLite and
//! a host whose driver is the hypervisor crate's `FakeDriver` (the same
//! contract as libvirt: NICs hot-plugged, the domain resized, rebuilt with
//! its disk replaced). Networking and images are small in-memory doubles
//! behind the `Lookups` and `Spawner` seams, as `weft serve` puts its own
//! services there.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;
use uuid::Uuid;
use weft_compute::compute::build::{self, host::ComputeHost, Observed, Spawned, Spawner};
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_compute::compute::servers::actions::Power;
use weft_compute::compute::servers::interfaces::{Attach, Vif};
use weft_compute::compute::servers::record::{FlavorCopy, Server};
use weft_compute::compute::servers::{request::CreateServer, Facts, ImageFacts};
use weft_compute::compute::{self, Compute, Ctx, Lookups};
use weft_compute::image::Tokens;
use weft_compute::placement::model::Inventory;
use weft_compute::placement::Placement;
use weft_hypervisor::{Driver, FakeDriver, HostResources, InstanceSpec, InterfaceSpec};
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

/// Ports (id -> (device, vif)) and images (id -> properties) in memory.
#[derive(Default)]
struct World {
    ports: Mutex<BTreeMap<String, (String, Vif)>>,
    images: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    made: Mutex<u32>,
}

fn vif(port: &str, net: &str, ip: &str, mac: &str) -> Vif {
    Vif {
        port_id: port.into(),
        net_id: net.into(),
        network_name: net.into(),
        mac_addr: mac.into(),
        fixed_ips: vec![(ip.into(), format!("sub-{net}"))],
        port_state: "ACTIVE".into(),
    }
}

impl World {
    fn with_free_ports() -> Arc<World> {
        let w = World::default();
        {
            let mut p = w.ports.lock().unwrap();
            let free = "5d2c8f0e-1111-2222-3333-444455556666";
            p.insert(
                free.into(),
                (
                    String::new(),
                    vif(free, "net2", "10.0.1.7", "fa:16:3e:00:01:07"),
                ),
            );
            let used = "6d2c8f0e-1111-2222-3333-444455556666";
            p.insert(
                used.into(),
                (
                    "someone".into(),
                    vif(used, "net2", "10.0.1.8", "fa:16:3e:00:01:08"),
                ),
            );
        }
        Arc::new(w)
    }

    /// A new port on `net` bound to `device`.
    fn make_port(&self, net: &str, device: &str) -> Vif {
        let mut n = self.made.lock().unwrap();
        *n += 1;
        let id = Uuid::new_v4().to_string();
        let v = vif(
            &id,
            net,
            &format!("10.0.0.{}", 10 + *n),
            &format!("fa:16:3e:00:00:{:02x}", *n),
        );
        self.ports
            .lock()
            .unwrap()
            .insert(id, (device.to_string(), v.clone()));
        v
    }
}

impl Lookups for World {
    fn facts(&self, ctx: &Ctx, req: &CreateServer) -> Facts {
        Facts {
            image: self.image(ctx, &req.image_ref),
            ..Facts::default()
        }
    }
    fn image(&self, _ctx: &Ctx, id: &str) -> Option<ImageFacts> {
        let (status, min_ram) = match id {
            "img" | "img2" => ("active", 128),
            "queued" => ("queued", 0),
            "big" => ("active", 4096),
            _ => return None,
        };
        Some(ImageFacts {
            status: status.into(),
            min_disk: 0,
            min_ram,
            size: 1 << 20,
        })
    }
    fn interfaces(&self, s: &Server) -> Vec<Vif> {
        self.ports
            .lock()
            .unwrap()
            .values()
            .filter(|(d, _)| d == &s.id)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn create_snapshot_image(
        &self,
        _ctx: &Ctx,
        _s: &Server,
        _name: &str,
        properties: BTreeMap<String, String>,
    ) -> ComputeResult<String> {
        let id = Uuid::new_v4().to_string();
        self.images.lock().unwrap().insert(id.clone(), properties);
        Ok(id)
    }
    fn delete_image(&self, id: &str) {
        self.images.lock().unwrap().remove(id);
    }
}

/// A host over the fake driver, with the world's ports.
struct Host {
    drv: FakeDriver,
    world: Arc<World>,
    snapshots: Mutex<Vec<(String, String)>>,
    rebuilt: Mutex<Vec<(String, String)>>,
}

fn uuid_of(s: &Server) -> Uuid {
    Uuid::parse_str(&s.id).unwrap()
}

fn nic_of(v: &Vif) -> InterfaceSpec {
    InterfaceSpec {
        tap: weft_hypervisor::tap_name(&v.port_id),
        mac: v.mac_addr.clone(),
        mtu: 1500,
    }
}

impl Spawner for Host {
    fn spawn(&self, s: &Server) -> Result<Spawned, String> {
        let v = self.world.make_port("net", &s.id);
        let spec = InstanceSpec {
            uuid: uuid_of(s),
            name: format!("weft-{}", s.id),
            vcpus: s.flavor.vcpus,
            memory_mb: s.flavor.ram,
            root_disk: format!("/nonexistent/{}/disk", s.id).into(),
            ephemeral: None,
            swap: None,
            interfaces: vec![nic_of(&v)],
            console_log: format!("/nonexistent/{}/console.log", s.id).into(),
            accel: weft_hypervisor::Accel::Tcg,
            metadata: BTreeMap::new(),
        };
        self.drv.spawn(&spec).map_err(|e| e.to_string())?;
        Ok(Spawned {
            addresses: [(
                "net".to_string(),
                vec![(v.fixed_ips[0].0.clone(), 4, v.mac_addr.clone())],
            )]
            .into(),
            created_ports: vec![v.port_id],
        })
    }
    fn destroy(&self, s: &Server) -> Result<(), String> {
        self.drv.destroy(uuid_of(s)).map_err(|e| e.to_string())
    }
    fn power(&self, s: &Server, op: Power) -> Result<(), String> {
        let u = uuid_of(s);
        match op {
            Power::Stop => self.drv.stop(u),
            Power::Start => self.drv.start(u),
            Power::Pause => self.drv.pause(u),
            Power::Unpause => self.drv.unpause(u),
            _ => Ok(()),
        }
        .map_err(|e| e.to_string())
    }
    fn console(&self, s: &Server, lines: Option<usize>) -> Result<String, String> {
        self.drv
            .console_output(uuid_of(s), lines)
            .map_err(|e| e.to_string())
    }
    fn observe(&self) -> Result<BTreeMap<String, Observed>, String> {
        Ok(BTreeMap::new())
    }
    fn destroy_orphan(&self, _id: &str) -> Result<(), String> {
        Ok(())
    }
    fn rebuild(&self, s: &Server) -> Result<(), String> {
        let image = s.image_ref.clone();
        let id = s.id.clone();
        let rebuilt = &self.rebuilt;
        self.drv
            .rebuild(uuid_of(s), &mut || {
                rebuilt.lock().unwrap().push((id.clone(), image.clone()));
                Ok(())
            })
            .map_err(|e| e.to_string())
    }
    fn resize(&self, s: &Server, to: &FlavorCopy) -> Result<(), String> {
        if to.name == "fbroken" {
            return Err("the driver cannot redefine it".into());
        }
        self.drv
            .resize(uuid_of(s), to.vcpus, to.ram, &mut || Ok(()))
            .map_err(|e| e.to_string())
    }
    fn snapshot(&self, s: &Server, image_id: &str) -> Result<(), String> {
        if s.name == "nosnap" {
            return Err("qemu-img said no".into());
        }
        self.snapshots
            .lock()
            .unwrap()
            .push((s.id.clone(), image_id.to_string()));
        Ok(())
    }
    fn attach_interface(&self, s: &Server, req: &Attach) -> ComputeResult<(Vif, bool)> {
        let (v, created) = match (&req.port_id, &req.net_id) {
            (Some(p), _) => {
                let mut ports = self.world.ports.lock().unwrap();
                let (dev, v) = ports.get_mut(p).ok_or_else(|| {
                    ComputeError::NotFound(format!("Port {p} could not be found."))
                })?;
                if !dev.is_empty() {
                    return Err(ComputeError::Conflict(format!("Port {p} is still in use.")));
                }
                *dev = s.id.clone();
                (v.clone(), false)
            }
            (None, Some(n)) => (self.world.make_port(n, &s.id), true),
            _ => return Err(ComputeError::BadRequest("nothing to attach".into())),
        };
        self.drv
            .attach_interface(uuid_of(s), &nic_of(&v))
            .map_err(|e| ComputeError::Conflict(e.to_string()))?;
        Ok((v, created))
    }
    fn detach_interface(&self, s: &Server, port_id: &str) -> ComputeResult<()> {
        let mut ports = self.world.ports.lock().unwrap();
        let (dev, v) = ports
            .get_mut(port_id)
            .ok_or_else(|| ComputeError::NotFound(format!("Port {port_id} could not be found.")))?;
        self.drv
            .detach_interface(uuid_of(s), &nic_of(v))
            .map_err(|e| ComputeError::Conflict(e.to_string()))?;
        dev.clear();
        Ok(())
    }
}

struct Env {
    _dir: tempfile::TempDir,
    svc: Arc<Compute>,
    pl: Arc<Placement>,
    app: axum::Router,
    host: Arc<Host>,
    world: Arc<World>,
    provider: String,
}

/// One host of 4 vCPUs and 4 GiB (ratio 1) on the fake driver.
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
    let world = World::with_free_ports();
    svc.set_lookups(world.clone());
    let pl = Placement::open(store, None, None, Mode::Enforce, None).unwrap();
    tokio::spawn(build::run(svc.clone(), pl.clone()));
    let host = Arc::new(Host {
        drv: FakeDriver::new(HostResources {
            vcpus: 4,
            memory_mb: 4096,
            disk_gb: 100,
        }),
        world: world.clone(),
        snapshots: Mutex::default(),
        rebuilt: Mutex::default(),
    });
    let inv: BTreeMap<String, Inventory> = [
        ("VCPU".to_string(), Inventory::with_total(4)),
        ("MEMORY_MB".to_string(), Inventory::with_total(4096)),
        ("DISK_GB".to_string(), Inventory::with_total(100)),
    ]
    .into();
    let record = ComputeHost {
        name: "h1".into(),
        provider: String::new(),
        availability_zone: "nova".into(),
        enabled: true,
        disabled_reason: None,
        forced_down: false,
        driver: "fake".into(),
        hypervisor_type: "QEMU".into(),
        arch: "x86_64".into(),
        vcpus: 4,
        memory_mb: 4096,
        disk_gb: 100,
        host_ip: "192.0.2.1".into(),
        heartbeat: String::new(),
        seq: 0,
    };
    svc.register_host(pl.as_ref(), record, &inv, host.clone())
        .unwrap();
    let provider = svc.snapshot().hosts["h1"].provider.clone();
    Env {
        _dir: dir,
        app: compute::router(svc.clone()),
        svc,
        pl,
        host,
        world,
        provider,
    }
}

impl Env {
    async fn call_h(
        &self,
        who: &str,
        mv: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
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
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v, headers)
    }

    async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, v, _) = self.call_h(who, "2.79", method, path, body).await;
        (s, v)
    }

    async fn act(&self, who: &str, id: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            who,
            Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(body),
        )
        .await
    }

    async fn flavor(&self, id: &str, vcpus: u32, ram: u64, disk: u64) {
        let (st, b) = self
            .call(
                "admin",
                Method::POST,
                "/v2.1/flavors",
                Some(json!({"flavor": {"name": format!("f{id}"), "id": id, "ram": ram, "vcpus": vcpus, "disk": disk}})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }

    /// An ACTIVE server of alice's on flavor `flavor`.
    async fn server(&self, name: &str, flavor: &str) -> String {
        let (st, b) = self
            .call(
                "alice",
                Method::POST,
                "/v2.1/servers",
                Some(json!({"server": {"name": name, "imageRef": "img", "flavorRef": flavor, "networks": "none"}})),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        let id = b["server"]["id"].as_str().unwrap().to_string();
        let s = self.until(&id, |s| s["status"] != "BUILD").await;
        assert_eq!(s["status"], "ACTIVE", "{s}");
        id
    }

    /// Polls the server (as admin) until `done` holds; its detail.
    async fn until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (st, b) = self
                .call("admin", Method::GET, &format!("/v2.1/servers/{id}"), None)
                .await;
            assert_eq!(st, StatusCode::OK, "{b}");
            if done(&b["server"]) {
                return b["server"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "server {id} never got there: {b}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// What the host's provider has in use of `rc`.
    fn used(&self, rc: &str) -> u64 {
        self.pl.snapshot().used(&self.provider, rc)
    }
}

fn settled(s: &Value) -> bool {
    s["OS-EXT-STS:task_state"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_boots_the_new_image_on_the_same_ports() {
    let e = env();
    e.flavor("1", 1, 256, 1).await;
    let id = e.server("web", "1").await;
    let before = e.until(&id, settled).await;
    let u = Uuid::parse_str(&id).unwrap();
    let nics = e.host.drv.interfaces(u).unwrap();
    let (st, b) = e
        .act(
            "alice",
            &id,
            json!({"rebuild": {"imageRef": "img2", "name": "web2", "metadata": {"k": "v"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["server"]["status"], "REBUILD", "{b}");
    assert_eq!(b["server"]["image"]["id"], "img2");
    let s = e.until(&id, |s| s["status"] == "ACTIVE").await;
    assert_eq!(s["name"], "web2");
    assert_eq!(s["metadata"]["k"], "v");
    assert_eq!(s["addresses"], before["addresses"], "ports and IPs kept");
    assert_eq!(e.host.drv.interfaces(u).unwrap(), nics);
    assert_eq!(
        e.host.rebuilt.lock().unwrap().as_slice(),
        &[(id.clone(), "img2".to_string())]
    );
    // The guest booted again: the fake's console has a second boot.
    assert!(e
        .host
        .drv
        .console_output(u, None)
        .unwrap()
        .contains("boot 2"));

    // Bad input: 400s, nothing recorded.
    for (body, want) in [
        (json!({"rebuild": {}}), "imageRef"),
        (
            json!({"rebuild": {"imageRef": "nope"}}),
            "could not be found",
        ),
        (json!({"rebuild": {"imageRef": "queued"}}), "is not active"),
        (
            json!({"rebuild": {"imageRef": "big"}}),
            "memory is too small",
        ),
        (json!({"rebuild": {"imageRef": "img", "bogus": 1}}), "bogus"),
        (json!({"rebuild": "img"}), "object"),
    ] {
        let (st, b) = e.act("alice", &id, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {b}");
        let msg = b["badRequest"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{body}: {b}");
    }
    // Not while paused (Nova's vm_states for rebuild).
    let (st, _) = e.act("alice", &id, json!({"pause": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    e.until(&id, |s| s["status"] == "PAUSED").await;
    let (st, b) = e
        .act("alice", &id, json!({"rebuild": {"imageRef": "img"}}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(
        b["conflictingRequest"]["message"],
        format!("Cannot 'rebuild' instance {id} while it is in vm_state paused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_moves_the_allocation_and_confirm_or_revert_settle_it() {
    let e = env();
    e.flavor("1", 1, 256, 1).await;
    e.flavor("2", 2, 512, 1).await;
    e.flavor("0", 1, 256, 0).await;
    let id = e.server("web", "1").await;
    let u = Uuid::parse_str(&id).unwrap();
    assert_eq!(e.used("VCPU"), 1);

    let (st, b) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "2"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let s = e.until(&id, |s| s["status"] == "VERIFY_RESIZE").await;
    assert_eq!(s["OS-EXT-STS:vm_state"], "resized");
    assert_eq!(s["flavor"]["vcpus"], 2);
    assert_eq!(e.host.drv.size(u), Some((2, 512)));
    // Both flavors held until confirm: the new by the server, the old by
    // the migration consumer.
    assert_eq!((e.used("VCPU"), e.used("MEMORY_MB")), (3, 768));
    let pst = e.pl.snapshot();
    let migration = pst
        .consumers
        .values()
        .find(|c| c.consumer_type.as_deref() == Some("MIGRATION"))
        .expect("a migration consumer");
    assert_eq!(migration.allocations[&e.provider]["VCPU"], 1);
    assert_eq!(pst.consumers[&id].allocations[&e.provider]["VCPU"], 2);
    // Only confirm or revert now.
    let (st, b) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "1"}}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(b["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("vm_state resized"));

    let (st, b) = e.act("alice", &id, json!({"confirmResize": null})).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let s = e.until(&id, |s| s["status"] == "ACTIVE").await;
    assert_eq!(s["flavor"]["vcpus"], 2);
    assert_eq!((e.used("VCPU"), e.used("MEMORY_MB")), (2, 512));
    assert!(e
        .pl
        .snapshot()
        .consumers
        .values()
        .all(|c| c.consumer_type.as_deref() != Some("MIGRATION")));

    // Again, then revert: the old flavor and allocation come back.
    let (st, _) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "1"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    e.until(&id, |s| s["status"] == "VERIFY_RESIZE").await;
    assert_eq!(e.host.drv.size(u), Some((1, 256)));
    let (st, b) = e.act("alice", &id, json!({"revertResize": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let s = e.until(&id, |s| s["status"] == "ACTIVE").await;
    assert_eq!(s["flavor"]["vcpus"], 2);
    assert_eq!(e.host.drv.size(u), Some((2, 512)));
    assert_eq!((e.used("VCPU"), e.used("MEMORY_MB")), (2, 512));
    assert_eq!(e.pl.snapshot().consumers.len(), 1);

    // Confirm/revert with no resize pending: 404 as Nova (no migration).
    let (st, _) = e.act("alice", &id, json!({"confirmResize": null})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Bad asks.
    for (body, want) in [
        (json!({"resize": {"flavorRef": "2"}}), "must change flavor"),
        (
            json!({"resize": {"flavorRef": "9"}}),
            "Unable to find flavor",
        ),
        (json!({"resize": {"flavorRef": "0"}}), "smaller disk"),
        (json!({"resize": {}}), "flavorRef"),
    ] {
        let (st, b) = e.act("alice", &id, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(
            b["badRequest"]["message"].as_str().unwrap().contains(want),
            "{body}: {b}"
        );
    }

    // A stopped server resizes and stays stopped.
    let (st, _) = e.act("alice", &id, json!({"os-stop": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    e.until(&id, |s| s["status"] == "SHUTOFF").await;
    let (st, _) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "1"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    e.until(&id, |s| s["status"] == "VERIFY_RESIZE").await;
    let (st, _) = e.act("alice", &id, json!({"confirmResize": null})).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let s = e.until(&id, |s| s["status"] == "SHUTOFF").await;
    assert_eq!(s["flavor"]["vcpus"], 1);
    assert_eq!(e.used("VCPU"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_that_cannot_fit_or_fails_leaves_the_server_as_it_was() {
    let e = env();
    e.flavor("1", 1, 256, 1).await;
    e.flavor("4", 4, 256, 1).await;
    e.flavor("b", 2, 256, 1).await;
    // "fb" is the flavor the test driver refuses to redefine to.
    let (st, _) = e
        .call("admin", Method::POST, "/v2.1/flavors",
            Some(json!({"flavor": {"name": "fbroken", "id": "x", "ram": 256, "vcpus": 2, "disk": 1}})))
        .await;
    assert_eq!(st, StatusCode::OK);
    let id = e.server("web", "1").await;
    // 1 + 4 vCPUs do not fit a 4-vCPU host while both are held.
    let (st, _) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "4"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let s = e.until(&id, settled).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(s["flavor"]["vcpus"], 1);
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("No valid host"),
        "{s}"
    );
    assert_eq!(e.used("VCPU"), 1);
    // The driver fails: the allocation is moved back.
    let (st, _) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "x"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let s = e.until(&id, settled).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot redefine"),
        "{s}"
    );
    assert_eq!(e.used("VCPU"), 1);
    assert_eq!(e.pl.snapshot().consumers.len(), 1);
    // Deleting a server in VERIFY_RESIZE frees both holds.
    let (st, _) = e
        .act("alice", &id, json!({"resize": {"flavorRef": "b"}}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    e.until(&id, |s| s["status"] == "VERIFY_RESIZE").await;
    assert_eq!(e.used("VCPU"), 3);
    let (st, _) = e
        .call(
            "alice",
            Method::DELETE,
            &format!("/v2.1/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !e.pl.snapshot().consumers.is_empty() {
        assert!(Instant::now() < deadline, "allocations left");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_image_answers_per_microversion_and_sets_novas_properties() {
    let e = env();
    e.flavor("1", 1, 256, 1).await;
    let id = e.server("web", "1").await;
    let (st, b, _) = e
        .call_h(
            "alice",
            "2.45",
            Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(json!({"createImage": {"name": "snap", "metadata": {"purpose": "backup"}}})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let image = b["image_id"].as_str().unwrap().to_string();
    e.until(&id, settled).await;
    assert_eq!(
        e.host.snapshots.lock().unwrap().as_slice(),
        &[(id.clone(), image.clone())]
    );
    let props = e.world.images.lock().unwrap()[&image].clone();
    assert_eq!(props["image_type"], "snapshot");
    assert_eq!(props["instance_uuid"], id);
    assert_eq!(props["base_image_ref"], "img");
    assert_eq!(props["purpose"], "backup");
    // Before 2.45: the image's URL in Location, no body.
    let (st, b, h) = e
        .call_h(
            "alice",
            "2.44",
            Method::POST,
            &format!("/v2.1/servers/{id}/action"),
            Some(json!({"createImage": {"name": "snap2"}})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    assert!(b.is_null());
    let loc = h["location"].to_str().unwrap();
    let second = loc.rsplit('/').next().unwrap();
    assert!(
        loc.contains("/images/") && e.world.images.lock().unwrap().contains_key(second),
        "{loc}"
    );
    e.until(&id, settled).await;
    for body in [
        json!({"createImage": {}}),
        json!({"createImage": {"name": "  "}}),
        json!({"createImage": {"name": "a", "metadata": {"k": 1}}}),
    ] {
        let (st, b) = e.act("alice", &id, body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    // A failed snapshot removes its image and says why.
    let bad = e.server("nosnap", "1").await;
    let (st, b, _) = e
        .call_h(
            "alice",
            "2.79",
            Method::POST,
            &format!("/v2.1/servers/{bad}/action"),
            Some(json!({"createImage": {"name": "x"}})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let image = b["image_id"].as_str().unwrap().to_string();
    let s = e.until(&bad, settled).await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("qemu-img said no"),
        "{s}"
    );
    assert!(!e.world.images.lock().unwrap().contains_key(&image));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interfaces_attach_list_show_detach() {
    let e = env();
    e.flavor("1", 1, 256, 1).await;
    let id = e.server("web", "1").await;
    let u = Uuid::parse_str(&id).unwrap();
    let path = format!("/v2.1/servers/{id}/os-interface");
    let (st, b) = e.call("alice", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        b["interfaceAttachments"].as_array().unwrap().len(),
        1,
        "the boot port"
    );

    let free = "5d2c8f0e-1111-2222-3333-444455556666";
    let (st, b) = e
        .call(
            "alice",
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": free}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["interfaceAttachment"]["port_id"], free);
    assert_eq!(
        b["interfaceAttachment"]["fixed_ips"][0]["ip_address"],
        "10.0.1.7"
    );
    assert_eq!(b["interfaceAttachment"]["mac_addr"], "fa:16:3e:00:01:07");
    let nics = e.host.drv.interfaces(u).unwrap();
    assert_eq!(nics.len(), 2);
    assert_eq!(nics[1].tap, "tap5d2c8f0e-11");
    let s = e.until(&id, settled).await;
    assert_eq!(s["addresses"]["net2"][0]["addr"], "10.0.1.7", "{s}");
    let (st, b) = e
        .call("alice", Method::GET, &format!("{path}/{free}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["interfaceAttachment"]["net_id"], "net2");
    // A port on a network: made for the server.
    let (st, b) = e
        .call(
            "alice",
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"net_id": "net3"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let made = b["interfaceAttachment"]["port_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, b) = e.call("alice", Method::GET, &path, None).await;
    assert_eq!(b["interfaceAttachments"].as_array().unwrap().len(), 3);
    assert_eq!(e.host.drv.interfaces(u).unwrap().len(), 3);

    // Bad input and conflicts.
    let used = "6d2c8f0e-1111-2222-3333-444455556666";
    for (body, want) in [
        (
            json!({"interfaceAttachment": {"port_id": free, "net_id": "net2"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"interfaceAttachment": {"fixed_ips": [{"ip_address": "10.0.0.9"}]}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"interfaceAttachment": {"net_id": "n", "fixed_ips": [{"ip_address": "nope"}]}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"interfaceAttachment": {"port_id": 5}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"port_id": free}), StatusCode::BAD_REQUEST),
        (
            json!({"interfaceAttachment": {"port_id": used}}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"interfaceAttachment": {"port_id": free}}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"interfaceAttachment": {"port_id": "no-such-port"}}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (st, b) = e
            .call("alice", Method::POST, &path, Some(body.clone()))
            .await;
        assert_eq!(st, want, "{body}: {b}");
    }
    assert_eq!(
        e.host.drv.interfaces(u).unwrap().len(),
        3,
        "nothing plugged by a refusal"
    );

    // Detach: unplugged, unbound, gone from addresses.
    let (st, b) = e
        .call("alice", Method::DELETE, &format!("{path}/{free}"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    assert_eq!(e.host.drv.interfaces(u).unwrap().len(), 2);
    assert!(e.world.ports.lock().unwrap()[free].0.is_empty());
    let s = e.until(&id, settled).await;
    assert!(s["addresses"].get("net2").is_none(), "{s}");
    let (st, _) = e
        .call("alice", Method::GET, &format!("{path}/{free}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e
        .call("alice", Method::DELETE, &format!("{path}/{free}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e
        .call("alice", Method::DELETE, &format!("{path}/{made}"), None)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // Not while suspended (Nova: active, paused, stopped only).
    let (st, _) = e.act("alice", &id, json!({"suspend": null})).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    e.until(&id, |s| s["status"] == "SUSPENDED").await;
    let (st, b) = e
        .call(
            "alice",
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": free}})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(b["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("vm_state suspended"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_projects_see_404_and_readers_403() {
    let e = env();
    e.flavor("1", 1, 256, 1).await;
    e.flavor("2", 2, 256, 1).await;
    let id = e.server("web", "1").await;
    let free = "5d2c8f0e-1111-2222-3333-444455556666";
    let path = format!("/v2.1/servers/{id}/os-interface");
    let actions = [
        json!({"rebuild": {"imageRef": "img"}}),
        json!({"resize": {"flavorRef": "2"}}),
        json!({"confirmResize": null}),
        json!({"revertResize": null}),
        json!({"createImage": {"name": "x"}}),
    ];
    for a in &actions {
        let (st, b) = e.act("bob", &id, a.clone()).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{a}: {b}");
    }
    let (st, _) = e.call("bob", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e
        .call(
            "bob",
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": free}})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = e
        .call("bob", Method::DELETE, &format!("{path}/{free}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A reader of the project sees the interfaces but may not change anything.
    let (st, _) = e.call("rita", Method::GET, &path, None).await;
    assert_eq!(st, StatusCode::OK);
    for a in &actions[..2] {
        let (st, b) = e.act("rita", &id, a.clone()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{a}: {b}");
    }
    let (st, _) = e
        .call(
            "rita",
            Method::POST,
            &path,
            Some(json!({"interfaceAttachment": {"port_id": free}})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Nothing happened to the server or the world.
    let s = e.until(&id, settled).await;
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["flavor"]["vcpus"], 1);
    assert!(e.world.images.lock().unwrap().is_empty());
    assert!(e.world.ports.lock().unwrap()[free].0.is_empty());
    let _ = &e.svc;
}
