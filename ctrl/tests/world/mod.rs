//! A whole `weft serve` control plane in-process, as `weft serve` puts it
//! together: identity (bootstrapped, real tokens), networking, images,
//! placement and compute mounted on one server behind its auth layer, the
//! build loop running. Builds reach a compute host the test registers with
//! its own driver (a [`Spawner`] over the real [`HostServices`]).
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use weft_compute::compute::build::host::ComputeHost;
use weft_compute::compute::build::Spawner;
use weft_compute::compute::Compute;
use weft_compute::image::{ImageConfig, Images};
use weft_compute::placement::model::Inventory;
use weft_compute::placement::{self, Placement};
use weft_ctrl::compute_host::HostServices;
use weft_ctrl::networking::{self, NetConfig, Networking};
use weft_ctrl::server::{Server, ServerConfig, ServiceMount};
use weft_identity::policy::Mode;
use weft_identity::service::TokenBinding;
use weft_identity::Identity;

pub const ADMIN_PW: &str = "admin-pw";

pub struct World {
    pub dir: tempfile::TempDir,
    pub app: Router,
    pub identity: Arc<Identity>,
    pub net: Arc<Networking>,
    pub images: Arc<Images>,
    pub placement: Arc<Placement>,
    pub compute: Arc<Compute>,
    /// An admin token (admin project).
    pub admin: String,
}

impl World {
    /// Tokens live 5 minutes (`--token-ttl-minutes 5`).
    pub async fn new(binding: TokenBinding) -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let rt = tokio::runtime::Handle::current();
        let (server, identity, net, images, placement, compute) =
            tokio::task::spawn_blocking(move || {
                let mut cfg = ServerConfig::new(&path, "127.0.0.1:0".parse().unwrap());
                cfg.admin_password = Some(ADMIN_PW.into());
                cfg.token_ttl = Duration::from_secs(300);
                cfg.token_binding = binding;
                let mut server = Server::open(cfg).unwrap();
                let net = networking::mount(&mut server, &NetConfig::default()).unwrap();
                let images = weft_ctrl::image::mount(&mut server, &ImageConfig::default()).unwrap();
                let pl = Placement::open(
                    server.store(),
                    Some(&path),
                    None,
                    Mode::Enforce,
                    Some(server.identity() as Arc<dyn placement::Authenticator>),
                )
                .unwrap();
                server
                    .mount(ServiceMount::new(
                        placement::MOUNT,
                        "placement",
                        "placement",
                        placement::router(pl.clone()),
                    ))
                    .unwrap();
                let compute = weft_ctrl::compute::mount(
                    &mut server,
                    images.clone(),
                    net.clone(),
                    pl.clone(),
                    &rt,
                )
                .unwrap();
                let identity = server.identity();
                (server, identity, net, images, pl, compute)
            })
            .await
            .unwrap();
        let app = server.router();
        let mut w = World {
            dir,
            app,
            identity,
            net,
            images,
            placement,
            compute,
            admin: String::new(),
        };
        let admin_project = w
            .identity
            .snapshot()
            .projects
            .values()
            .find(|p| p.name == "admin")
            .unwrap()
            .id
            .clone();
        w.admin = w.token("admin", ADMIN_PW, &admin_project).await;
        w
    }

    /// The body as JSON (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (st, _, b) = self
            .raw(
                method,
                path,
                token,
                "application/json",
                body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
                &[],
            )
            .await;
        (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Bytes) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (st, h) = (resp.status(), resp.headers().clone());
        (st, h, resp.into_body().collect().await.unwrap().to_bytes())
    }

    /// A project-scoped password token.
    pub async fn token(&self, user: &str, pw: &str, project_id: &str) -> String {
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": pw}}},
                          "scope": {"project": {"id": project_id}}}});
        let (st, h, b) = self
            .raw(
                Method::POST,
                "/identity/v3/auth/tokens",
                None,
                "application/json",
                body.to_string().into_bytes(),
                &[],
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
        h["x-subject-token"].to_str().unwrap().to_string()
    }

    /// Makes what `call` posts, or fails the test; the new resource.
    pub async fn make(&self, path: &str, token: &str, body: Value) -> Value {
        let (st, b) = self.call(Method::POST, path, Some(token), Some(body)).await;
        assert!(st.is_success(), "{path}: {st} {b}");
        b
    }

    /// A user with `role` on a new project: (user id, project id, token).
    pub async fn member(&self, name: &str, role: &str) -> (String, String, String) {
        let p = self
            .make(
                "/identity/v3/projects",
                &self.admin,
                json!({"project": {"name": format!("{name}-project"), "domain_id": "default"}}),
            )
            .await["project"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let u = self
            .make(
                "/identity/v3/users",
                &self.admin,
                json!({"user": {"name": name, "password": "pw", "domain_id": "default"}}),
            )
            .await["user"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, roles) = self
            .call(
                Method::GET,
                &format!("/identity/v3/roles?name={role}"),
                Some(&self.admin),
                None,
            )
            .await;
        let rid = roles["roles"][0]["id"].as_str().unwrap().to_string();
        let (st, _) = self
            .call(
                Method::PUT,
                &format!("/identity/v3/projects/{p}/users/{u}/roles/{rid}"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
        let t = self.token(name, "pw", &p).await;
        (u, p, t)
    }

    /// A network with a /24 subnet, owned by the token's project: its id.
    pub async fn network(&self, token: &str, cidr: &str) -> String {
        let n = self
            .make(
                "/networking/v2.0/networks",
                token,
                json!({"network": {"name": "n1"}}),
            )
            .await["network"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        self.make(
            "/networking/v2.0/subnets",
            token,
            json!({"subnet": {"network_id": n, "cidr": cidr, "ip_version": 4}}),
        )
        .await;
        n
    }

    /// An active private image holding `data`: its id.
    pub async fn image(&self, token: &str, data: Vec<u8>) -> String {
        let id = self
            .make(
                "/image/v2/images",
                token,
                json!({"name": "disk", "disk_format": "raw", "container_format": "bare"}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, _, b) = self
            .raw(
                Method::PUT,
                &format!("/image/v2/images/{id}/file"),
                Some(token),
                "application/octet-stream",
                data,
                &[],
            )
            .await;
        assert_eq!(
            st,
            StatusCode::NO_CONTENT,
            "{}",
            String::from_utf8_lossy(&b)
        );
        id
    }

    /// The host services a compute host of this process builds with.
    pub fn host_services(&self) -> HostServices {
        HostServices::new(
            self.images.clone(),
            self.net.clone(),
            self.identity.clone(),
            self.compute.delegation().expect("compute::mount sets it"),
        )
    }

    /// Registers compute host `name` driven by `spawner`.
    pub async fn add_host(&self, name: &str, spawner: Arc<dyn Spawner>) {
        let inv: BTreeMap<String, Inventory> = [
            ("VCPU".to_string(), Inventory::with_total(8)),
            ("MEMORY_MB".to_string(), Inventory::with_total(8192)),
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
            vcpus: 8,
            memory_mb: 8192,
            disk_gb: 100,
            host_ip: "192.0.2.1".into(),
            heartbeat: String::new(),
            seq: 0,
        };
        let (c, pl) = (self.compute.clone(), self.placement.clone());
        tokio::task::spawn_blocking(move || {
            c.register_host(pl.as_ref(), host, &inv, spawner).unwrap()
        })
        .await
        .unwrap();
    }

    /// Server `id` once it leaves BUILD (or is gone: Null), as the admin sees it.
    pub async fn settled(&self, id: &str) -> Value {
        for _ in 0..300 {
            let (st, b) = self
                .call(
                    Method::GET,
                    &format!("/compute/v2.1/servers/{id}"),
                    Some(&self.admin),
                    None,
                )
                .await;
            if st == StatusCode::NOT_FOUND {
                return Value::Null;
            }
            if b["server"]["status"] != "BUILD" {
                return b["server"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server {id} still building");
    }

    /// Waits until server `id` is gone.
    pub async fn gone(&self, id: &str) {
        for _ in 0..300 {
            let (st, _) = self
                .call(
                    Method::GET,
                    &format!("/compute/v2.1/servers/{id}"),
                    Some(&self.admin),
                    None,
                )
                .await;
            if st == StatusCode::NOT_FOUND {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server {id} not deleted");
    }
}
