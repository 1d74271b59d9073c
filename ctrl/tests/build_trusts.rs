//! Builds act through trusts (`weft serve` in-process, a test compute host
//! over the real host services): server create records a trust with the
//! roles the policy asks for; the build outlives the user's token (5-minute
//! tokens, revoked right after create); a role removed mid-build stops it
//! with a fault naming the trust and role; server delete removes the trust;
//! a step token is bound to its one service; a resize moves the allocation
//! to its migration consumer with the compute service's placement token.

mod world;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use weft_compute::compute::build::{Observed, Spawned, Spawner};
use weft_compute::compute::servers::actions::Power;
use weft_compute::compute::servers::record::{FlavorCopy, Server};
use weft_ctrl::compute_host::HostServices;
use weft_identity::service::TokenBinding;
use weft_identity::token::Audience;
use world::World;

/// A compute host whose build is the control-plane steps of a real one
/// (ports, then the image), with an optional pause between them.
struct Host {
    hs: HostServices,
    /// Armed: the build says it reached the pause, then waits for a go.
    gate: Mutex<Option<(Sender<()>, Receiver<()>)>>,
    /// Bytes of the image each build read.
    read: Mutex<Vec<usize>>,
}

impl Spawner for Host {
    fn spawn(&self, s: &Server) -> Result<Spawned, String> {
        let plugged = self.hs.plug(s, "h1")?;
        let created: Vec<String> = plugged
            .iter()
            .filter(|p| p.created)
            .map(|p| p.port_id.clone())
            .collect();
        if let Some((reached, go)) = self.gate.lock().unwrap().take() {
            reached.send(()).unwrap();
            go.recv().unwrap();
        }
        let mut data = Vec::new();
        let r = self
            .hs
            .open_image(s)
            .and_then(|mut r| r.read_to_end(&mut data).map_err(|e| e.to_string()));
        if let Err(e) = r {
            let mut undo = s.clone();
            undo.created_ports = created;
            let _ = self.hs.unplug(&undo);
            return Err(e);
        }
        self.read.lock().unwrap().push(data.len());
        Ok(Spawned {
            addresses: BTreeMap::new(),
            created_ports: created,
        })
    }
    fn destroy(&self, s: &Server) -> Result<(), String> {
        self.hs.unplug(s)
    }
    fn power(&self, _: &Server, _: Power) -> Result<(), String> {
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
    fn resize(&self, _: &Server, _: &FlavorCopy) -> Result<(), String> {
        Ok(())
    }
}

struct Setup {
    w: World,
    host: Arc<Host>,
    alice: String,
    project: String,
    token: String,
    net: String,
    image: String,
}

async fn setup(binding: TokenBinding) -> Setup {
    let w = World::new(binding).await;
    let host = Arc::new(Host {
        hs: w.host_services(),
        gate: Mutex::new(None),
        read: Mutex::new(Vec::new()),
    });
    w.add_host("h1", host.clone()).await;
    let (alice, project, token) = w.member("alice", "member").await;
    let net = w.network(&token, "10.7.0.0/24").await;
    let image = w.image(&token, vec![7u8; 4096]).await;
    w.make(
        "/compute/v2.1/flavors",
        &w.admin,
        json!({"flavor": {"name": "tiny", "id": "1", "ram": 64, "vcpus": 1, "disk": 0}}),
    )
    .await;
    Setup {
        w,
        host,
        alice,
        project,
        token,
        net,
        image,
    }
}

impl Setup {
    async fn create(&self, token: &str) -> String {
        let b = self
            .w
            .make(
                "/compute/v2.1/servers",
                token,
                json!({"server": {"name": "vm", "flavorRef": "1", "imageRef": self.image,
                                  "networks": [{"uuid": self.net}]}}),
            )
            .await;
        b["server"]["id"].as_str().unwrap().to_string()
    }

    fn trust_of(&self, server: &str) -> String {
        self.w.compute.snapshot().servers[server]
            .trust_id
            .clone()
            .expect("the server carries its trust")
    }

    /// A step token of the compute service with `trust`, for `audience`.
    async fn step_token(&self, trust: &str, audience: Audience) -> Result<String, String> {
        let (d, t) = (self.w.compute.delegation().unwrap(), trust.to_string());
        tokio::task::spawn_blocking(move || d.token(Some(&t), audience))
            .await
            .unwrap()
    }
}

fn message(b: &Value) -> String {
    b.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_acts_through_its_trust_and_outlives_the_users_token() {
    let s = setup(TokenBinding::Enforce).await;
    let w = &s.w;
    let id = s.create(&s.token).await;
    // The user's token is revoked right after create: the build never uses it.
    let (st, _, _) = w
        .raw(
            Method::DELETE,
            "/identity/v3/auth/tokens",
            Some(&s.token),
            "application/json",
            vec![],
            &[("X-Subject-Token", &s.token)],
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let server = w.settled(&id).await;
    assert_eq!(server["status"], "ACTIVE", "{server}");
    assert_eq!(
        *s.host.read.lock().unwrap(),
        [4096],
        "the image was read with the trust"
    );

    // The trust: alice -> the compute service user, on her project, with
    // exactly the roles derived from the policy.
    let trust = s.trust_of(&id);
    let st = w.identity.snapshot();
    let t = &st.trusts[&trust];
    assert_eq!(t.trustor_user_id, s.alice);
    assert_eq!(st.users[&t.trustee_user_id].name, "nova");
    assert_eq!(t.project_id.as_deref(), Some(s.project.as_str()));
    let names: Vec<String> = t
        .role_ids
        .iter()
        .map(|r| st.roles[r].name.clone())
        .collect();
    assert_eq!(
        names,
        weft_ctrl::delegation::derive_roles(None).unwrap().trust
    );
    assert_eq!(names, ["member"]);
    assert!(!t.impersonation);
    drop(st);
    // Its port: made in alice's project, bound to the host.
    let (_, ports) = w
        .call(
            Method::GET,
            &format!("/networking/v2.0/ports?device_id={id}"),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(ports["ports"][0]["project_id"], s.project, "{ports}");
    assert_eq!(ports["ports"][0]["binding:host_id"], "h1");

    // A step token is bound to its service: the image API takes it, the
    // networking API, placement and identity refuse it, saying why.
    let img = s.step_token(&trust, Audience::Image).await.unwrap();
    let (st, b) = w
        .call(
            Method::GET,
            &format!("/image/v2/images/{}", s.image),
            Some(&img),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    for path in [
        "/networking/v2.0/ports",
        "/placement/resource_providers",
        "/identity/v3/projects",
        "/compute/v2.1/servers",
    ] {
        let (st, b) = w.call(Method::GET, path, Some(&img), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {b}");
        assert!(
            message(&b).contains("bound to the image service"),
            "{path}: {b}"
        );
    }
    let net = s.step_token(&trust, Audience::Network).await.unwrap();
    let (st, b) = w
        .call(Method::GET, "/networking/v2.0/ports", Some(&net), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    // Delete (with a new token of alice's): the trust goes, and its tokens stop.
    let again = w.token("alice", "pw", &s.project).await;
    let (st, _) = w
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{id}"),
            Some(&again),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    w.gone(&id).await;
    assert!(
        !w.identity.snapshot().trusts.contains_key(&trust),
        "the trust is deleted with the server"
    );
    let (st, _) = w
        .call(
            Method::GET,
            &format!("/image/v2/images/{}", s.image),
            Some(&img),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, ports) = w
        .call(
            Method::GET,
            &format!("/networking/v2.0/ports?device_id={id}"),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(ports["ports"], json!([]), "the port went with the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_users_role_mid_build_stops_it_with_a_fault() {
    let s = setup(TokenBinding::Enforce).await;
    let w = &s.w;
    let (reached_tx, reached) = channel();
    let (go, go_rx) = channel();
    *s.host.gate.lock().unwrap() = Some((reached_tx, go_rx));
    let id = s.create(&s.token).await;
    // The build made its port, and waits before the image step.
    tokio::task::spawn_blocking(move || reached.recv().unwrap())
        .await
        .unwrap();
    let (_, roles) = w
        .call(
            Method::GET,
            "/identity/v3/roles?name=member",
            Some(&w.admin),
            None,
        )
        .await;
    let rid = roles["roles"][0]["id"].as_str().unwrap().to_string();
    let (st, _) = w
        .call(
            Method::DELETE,
            &format!(
                "/identity/v3/projects/{}/users/{}/roles/{rid}",
                s.project, s.alice
            ),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    go.send(()).unwrap();
    let server = w.settled(&id).await;
    assert_eq!(server["status"], "ERROR", "{server}");
    let fault = server["fault"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let trust = s.trust_of(&id);
    assert!(
        fault.contains(&trust) && fault.contains("role member") && fault.contains(&s.alice),
        "the fault names the trust, the role and the user: {fault}"
    );
    assert!(
        s.host.read.lock().unwrap().is_empty(),
        "no image read for her"
    );
    // Its port is gone again; the trust stays until the server is deleted.
    let (_, ports) = w
        .call(
            Method::GET,
            &format!("/networking/v2.0/ports?device_id={id}"),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(ports["ports"], json!([]), "{ports}");
    assert!(w.identity.snapshot().trusts.contains_key(&trust));
    let (st, _) = w
        .call(
            Method::DELETE,
            &format!("/compute/v2.1/servers/{id}"),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    w.gone(&id).await;
    // The trust goes after the server's record (trusts::release runs once the record is
    // removed), so on a busy machine it may lag the 404 by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.identity.snapshot().trusts.contains_key(&trust) {
        assert!(
            std::time::Instant::now() < deadline,
            "the trust outlived its server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_the_roles_cannot_create_and_no_trust_is_left() {
    let s = setup(TokenBinding::Enforce).await;
    let w = &s.w;
    // A reader may not create servers anyway; give bob only `reader`, and
    // let him try: 403, no server, no trust.
    let (_, _, bob) = w.member("bob", "reader").await;
    let before = w.identity.snapshot().trusts.len();
    let (st, b) = w
        .call(Method::POST, "/compute/v2.1/servers", Some(&bob),
              Some(json!({"server": {"name": "vm", "flavorRef": "1", "imageRef": s.image, "networks": [{"uuid": s.net}]}})))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("role member"), "{b}");
    assert_eq!(w.identity.snapshot().trusts.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_binding_lets_a_step_token_through_and_records_it() {
    let s = setup(TokenBinding::Permissive).await;
    let w = &s.w;
    let id = s.create(&s.token).await;
    assert_eq!(w.settled(&id).await["status"], "ACTIVE");
    let img = s
        .step_token(&s.trust_of(&id), Audience::Image)
        .await
        .unwrap();
    let (st, b) = w
        .call(Method::GET, "/networking/v2.0/ports", Some(&img), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let records =
        weft_identity::policy::read_records(&weft_identity::policy::records_path(w.dir.path()))
            .unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.action == "network:token_audience" && r.rule == "audience:image"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_moves_the_allocation_with_the_service_token() {
    let s = setup(TokenBinding::Enforce).await;
    let w = &s.w;
    w.make(
        "/compute/v2.1/flavors",
        &w.admin,
        json!({"flavor": {"name": "small", "id": "2", "ram": 128, "vcpus": 2, "disk": 0}}),
    )
    .await;
    let id = s.create(&s.token).await;
    assert_eq!(w.settled(&id).await["status"], "ACTIVE");
    let path = format!("/compute/v2.1/servers/{id}");
    let (st, b) = w
        .call(
            Method::POST,
            &format!("{path}/action"),
            Some(&s.token),
            Some(json!({"resize": {"flavorRef": "2"}})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    // The build loop moves the old flavor's allocation to the migration
    // consumer through placement as the compute service (ServiceClaims).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, b) = w.call(Method::GET, &path, Some(&s.token), None).await;
        if b["server"]["status"] == "VERIFY_RESIZE" {
            break;
        }
        assert!(
            b["server"]["fault"].is_null() && std::time::Instant::now() < deadline,
            "no VERIFY_RESIZE: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (st, b) = w
        .call(
            Method::POST,
            &format!("{path}/action"),
            Some(&s.token),
            Some(json!({"confirmResize": null})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{b}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, b) = w.call(Method::GET, &path, Some(&s.token), None).await;
        if b["server"]["status"] == "ACTIVE" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not ACTIVE: {b}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
