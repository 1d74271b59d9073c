//! What a build asks of the control plane in `weft serve`, against the real
//! networking and image services on the test store: a server's ports
//! created (or a given port bound) on the host with its device id, its
//! addresses reported back, a failure midway leaving no port behind, and
//! teardown deleting what it made and unbinding what it was given. Each
//! step acts with the build's trust (or the compute service's own token),
//! through the whole `weft serve` control plane ([`world`]).

mod common;
mod world;

use axum::http::{Method, StatusCode};
use common::{off_runtime, Api, ALICE};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_compute::compute::servers::record::{FlavorCopy, NicRequest, Server};
use weft_compute::image::Tokens;
use weft_identity::policy::{Credentials, Mode};
use weft_identity::service::TokenBinding;
use world::World;

struct NoTokens;
impl Tokens for NoTokens {
    fn validate(&self, _: &str) -> Option<Credentials> {
        None
    }
}

fn server(id: &str, nics: Vec<NicRequest>) -> Server {
    Server {
        id: id.into(),
        name: "vm".into(),
        project_id: "p-alice".into(),
        user_id: "u-alice".into(),
        flavor: FlavorCopy {
            id: "1".into(),
            name: "f".into(),
            vcpus: 1,
            ram: 128,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            extra_specs: BTreeMap::new(),
        },
        image_ref: "img".into(),
        key_name: None,
        public_key: None,
        user_data: None,
        metadata: BTreeMap::new(),
        security_groups: vec!["default".into()],
        nics,
        auto_network: false,
        availability_zone: None,
        forced_host: None,
        server_group: None,
        launch_index: 0,
        reservation_id: "r-1".into(),
        vm_state: "building".into(),
        task_state: Some("spawning".into()),
        power_state: 0,
        host: Some("h1".into()),
        allocated: true,
        fault: None,
        ports: vec![],
        created_ports: vec![],
        addresses: BTreeMap::new(),
        created: String::new(),
        updated: String::new(),
        launched_at: None,
        tags: vec![],
        description: None,
        locked: false,
        migration: None,
        pending_image: None,
        instance_name: format!("weft-{id}"),
        hostname: "vm".into(),
        trust_id: None,
    }
}

/// alice (a member of her project) and a server of hers whose build acts
/// through a trust she gave: (world, alice's token, the server).
async fn alices_build(id: &str, nics: Vec<NicRequest>) -> (World, String, Server) {
    let w = World::new(TokenBinding::Enforce).await;
    let (alice, project, token) = w.member("alice", "member").await;
    let mut s = server(id, nics);
    s.project_id = project.clone();
    s.user_id = alice.clone();
    let d = w.compute.delegation().unwrap();
    let creds = Credentials {
        user_id: alice,
        project_id: Some(project),
        roles: vec!["member".into()],
        ..Credentials::default()
    };
    s.trust_id = Some(
        tokio::task::spawn_blocking(move || d.create_trust(&creds))
            .await
            .unwrap()
            .unwrap(),
    );
    (w, token, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plug_and_unplug_ports_for_a_build() {
    let sid = "3f1c0a52-0000-4000-8000-000000000001";
    let (w, alice, mut s) = alices_build(sid, vec![]).await;
    let net_id = w.network(&alice, "10.5.0.0/24").await;
    let given_id = w
        .make(
            "/networking/v2.0/ports",
            &alice,
            json!({"port": {"network_id": net_id}}),
        )
        .await["port"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = |id: String| {
        let w = &w;
        let alice = alice.clone();
        async move {
            w.call(
                Method::GET,
                &format!("/networking/v2.0/{id}"),
                Some(&alice),
                None,
            )
            .await
        }
    };
    let hs = w.host_services();
    s.nics = vec![
        NicRequest {
            network: Some(net_id.clone()),
            port: None,
            fixed_ip: Some("10.5.0.77".into()),
        },
        NicRequest {
            network: None,
            port: Some(given_id.clone()),
            fixed_ip: None,
        },
    ];
    let plugged = off_runtime(|| hs.plug(&s, "h1")).unwrap();
    assert_eq!(plugged.len(), 2);
    assert_eq!(plugged[0].ips, [("10.5.0.77".to_string(), 4)]);
    assert_eq!(plugged[0].network_name, "n1");
    assert!(plugged[0].created && !plugged[1].created);
    assert_eq!(
        plugged[0].devname,
        format!("tap{}", &plugged[0].port_id[..11])
    );
    for p in &plugged {
        let (_, port) = get(format!("ports/{}", p.port_id)).await;
        assert_eq!(port["port"]["device_id"], sid, "{port}");
        assert_eq!(port["port"]["binding:host_id"], "h1");
        assert_eq!(port["port"]["device_owner"], "compute:nova");
        assert_eq!(port["port"]["project_id"], s.project_id);
    }

    // A failure midway (an address already taken) leaves no port made for it.
    let mut t = server(
        "3f1c0a52-0000-4000-8000-000000000002",
        vec![
            NicRequest {
                network: Some(net_id.clone()),
                port: None,
                fixed_ip: None,
            },
            NicRequest {
                network: Some(net_id.clone()),
                port: None,
                fixed_ip: Some("10.5.0.77".into()),
            },
        ],
    );
    t.project_id = s.project_id.clone();
    t.trust_id = s.trust_id.clone();
    let err = off_runtime(|| hs.plug(&t, "h1")).unwrap_err();
    assert!(
        err.contains("10.5.0.77") || err.to_lowercase().contains("ip"),
        "{err}"
    );
    let (_, ports) = get(format!("ports?device_id={}", t.id)).await;
    assert_eq!(ports["ports"], json!([]), "no leaked port");

    // A server without a trust builds nothing.
    let mut u = t.clone();
    u.trust_id = None;
    let err = off_runtime(|| hs.plug(&u, "h1")).unwrap_err();
    assert!(err.contains("no trust"), "{err}");

    // Teardown: the made port goes, the given one is unbound and stays.
    s.created_ports = vec![plugged[0].port_id.clone()];
    off_runtime(|| hs.unplug(&s)).unwrap();
    let (st, _) = get(format!("ports/{}", plugged[0].port_id)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, port) = get(format!("ports/{given_id}")).await;
    assert_eq!(port["port"]["device_id"], "");
    assert_eq!(port["port"]["binding:host_id"], "");
    // Idempotent.
    off_runtime(|| hs.unplug(&s)).unwrap();
}

/// A compute host's read of an image: the whole data, read from the store
/// window by window (over 8 MiB windows, so three of them here), with the
/// build's trust; an image without data (queued) is an error, and so is one
/// the trust's project does not see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_image_reads_the_data_whole() {
    let (w, alice, mut s) = alices_build("3f1c0a52-0000-4000-8000-000000000003", vec![]).await;
    let data: Vec<u8> = (0..(17u32 << 20) + 5)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.image_ref = w.image(&alice, data.clone()).await;
    let hs = w.host_services();
    let mut copy = Vec::new();
    let mut r = off_runtime(|| hs.open_image(&s)).unwrap();
    std::io::Read::read_to_end(&mut r, &mut copy).unwrap();
    assert!(copy == data, "the copy differs");

    // An image without data (queued: not active) is an error.
    let empty = w
        .make(
            "/image/v2/images",
            &alice,
            json!({"name": "e", "disk_format": "raw", "container_format": "bare"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.image_ref = empty;
    let err = off_runtime(|| hs.open_image(&s).map(|_| ())).unwrap_err();
    assert!(err.contains("not active"), "{err}");
    // Another project's private image is not found through alice's trust.
    let (_, _, bob) = w.member("bob", "member").await;
    s.image_ref = w.image(&bob, vec![1, 2, 3]).await;
    let err = off_runtime(|| hs.open_image(&s).map(|_| ())).unwrap_err();
    assert!(
        err.contains("not found") || err.contains("No image"),
        "{err}"
    );
}

/// The switch's metadata service gets a server's own data (its key, user
/// data, metadata, names) for the server's ports, through the host state
/// ctrl sends the host; other ports keep what the port says.
#[tokio::test]
async fn host_state_carries_the_servers_instance_data() {
    use weft_compute::compute::state::Change;
    use weft_compute::compute::Compute;
    use weft_ctrl::compute::ServerInstances;
    let api = Api::new();
    let (_, net) = api
        .post("/networks", ALICE, json!({"network": {"name": "n1"}}))
        .await;
    let net_id = net["network"]["id"].as_str().unwrap().to_string();
    api.post(
        "/subnets",
        ALICE,
        json!({"subnet": {"network_id": net_id, "cidr": "10.6.0.0/24", "ip_version": 4}}),
    )
    .await;
    let backend = api.backend.clone();
    let compute = off_runtime(|| {
        Compute::open(
            backend.store(),
            backend.dir.path(),
            None,
            Mode::Enforce,
            Arc::new(NoTokens),
        )
        .unwrap()
    });
    let sid = "3f1c0a52-0000-4000-8000-0000000000aa";
    let mut s = server(sid, vec![]);
    s.name = "web one".into();
    s.hostname = "web-one".into();
    s.key_name = Some("k".into());
    s.public_key = Some("ssh-ed25519 AAAA test".into());
    s.user_data = Some("IyEvYmluL3NoCg==".into());
    s.metadata = [("role".to_string(), "web".to_string())].into();
    let rec = s.clone();
    off_runtime(|| {
        compute.write(move |_, _| Ok(((), vec![Change::Server(Box::new(rec.clone()))])))
    })
    .unwrap();
    api.net
        .set_instance_info(Arc::new(ServerInstances(compute.clone())));
    for (device, name) in [(sid, "srv-port"), ("not-a-server", "other")] {
        let (st, _) = api
            .post(
                "/ports",
                common::ADMIN,
                json!({"port": {"network_id": net_id, "name": name, "device_id": device,
                "binding:host_id": "h9", "project_id": "p-alice"}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let hs = api.net.host_state("h9");
    let inst = |name: &str| {
        hs.ports
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.instance.clone())
            .unwrap()
    };
    let i = inst("srv-port");
    assert_eq!(i.uuid, sid);
    assert_eq!(i.name, "web one");
    assert_eq!(i.hostname, "web-one");
    assert_eq!(
        i.public_keys.get("k").map(String::as_str),
        Some("ssh-ed25519 AAAA test")
    );
    assert_eq!(i.user_data.as_deref(), Some("IyEvYmluL3NoCg=="));
    assert_eq!(i.meta.get("role").map(String::as_str), Some("web"));
    assert_eq!(i.availability_zone, "nova");
    let o = inst("other");
    assert_eq!(o.uuid, "not-a-server");
    assert_eq!(o.name, "other", "a port of no server keeps the port's data");
    assert!(o.public_keys.is_empty());
}
