//! A create with no `networks` key before 2.37, against the real
//! networking of `weft serve` (in-process), as Nova decides it: with no
//! network to take the server boots without one; with exactly one it gets
//! a port there; with several it is Nova's 409 NetworkAmbiguous. From 2.37
//! the key is required (400).

mod world;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_compute::compute::build::{Observed, Spawned, Spawner};
use weft_compute::compute::servers::actions::Power;
use weft_compute::compute::servers::record::Server;
use weft_ctrl::compute_host::HostServices;
use weft_identity::service::TokenBinding;
use world::World;

/// A host whose build is a real one's control-plane step: its ports.
struct Host(HostServices);

impl Spawner for Host {
    fn spawn(&self, s: &Server) -> Result<Spawned, String> {
        let plugged = self.0.plug(s, "na-h1")?;
        Ok(Spawned {
            addresses: BTreeMap::new(),
            created_ports: plugged
                .iter()
                .filter(|p| p.created)
                .map(|p| p.port_id.clone())
                .collect(),
        })
    }
    fn destroy(&self, s: &Server) -> Result<(), String> {
        self.0.unplug(s)
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
}

/// `POST /servers` without `networks` at microversion `mv`.
async fn create(w: &World, token: &str, image: &str, mv: &str) -> (StatusCode, Value) {
    let body = json!({"server": {"name": "vm", "flavorRef": "1", "imageRef": image}});
    let version = format!("compute {mv}");
    let (st, _, b) = w
        .raw(
            Method::POST,
            "/compute/v2.1/servers",
            Some(token),
            "application/json",
            body.to_string().into_bytes(),
            &[("openstack-api-version", &version)],
        )
        .await;
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// The networks of server `id`'s ports.
async fn port_networks(w: &World, id: &str) -> Vec<String> {
    let (st, b) = w
        .call(
            Method::GET,
            &format!("/networking/v2.0/ports?device_id={id}"),
            Some(&w.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["network_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_networks_key_before_237_takes_none_one_or_is_ambiguous() {
    let w = World::new(TokenBinding::Enforce).await;
    w.add_host("na-h1", Arc::new(Host(w.host_services()))).await;
    let (_, _, token) = w.member("na-alice", "member").await;
    let image = w.image(&token, vec![7u8; 4096]).await;
    w.make(
        "/compute/v2.1/flavors",
        &w.admin,
        json!({"flavor": {"name": "tiny", "id": "1", "ram": 64, "vcpus": 1, "disk": 0}}),
    )
    .await;

    // No network anywhere: boots without one.
    let (st, b) = create(&w, &token, &image, "2.36").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let s = w.settled(&id).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(s["addresses"], json!({}), "{s}");
    assert!(port_networks(&w, &id).await.is_empty());
    // 2.37 requires the key.
    let (st, b) = create(&w, &token, &image, "2.37").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");

    // Exactly one network of the project: the server gets a port there.
    let net = w.network(&token, "10.61.0.0/24").await;
    let (st, b) = create(&w, &token, &image, "2.1").await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let id = b["server"]["id"].as_str().unwrap().to_string();
    let s = w.settled(&id).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(port_networks(&w, &id).await, vec![net.clone()]);

    // Two: ambiguous, refused at the API.
    w.network(&token, "10.62.0.0/24").await;
    let (st, b) = create(&w, &token, &image, "2.36").await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(
        b["conflictingRequest"]["message"],
        "Multiple possible networks found, use a Network ID to be more specific."
    );
}
