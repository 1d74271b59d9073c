//! The agent sync protocol over HTTP, and persistence across restarts.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn bound_port(api: &Api, host: &str) -> (String, String) {
    let n = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "physnet", "provider:segmentation_id": 300}}),
        )
        .await;
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": n["id"], "binding:host_id": host}}),
        )
        .await;
    (
        n["id"].as_str().unwrap().to_string(),
        p["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn host_state_lists_bound_ports_with_segments() {
    let api = Api::new();
    let (nid, pid) = bound_port(&api, "h1").await;
    api.create(
        "/ports",
        ADMIN,
        json!({"port": {"network_id": nid, "binding:host_id": "h2"}}),
    )
    .await;
    let (s, st) = api
        .call(
            "GET",
            "/networking/agent/v1/hosts/h1/state",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["host"], "h1");
    assert_eq!(st["ports"].as_array().unwrap().len(), 1);
    let p = &st["ports"][0];
    assert_eq!(p["id"], pid);
    assert_eq!(p["devname"], format!("tap{}", &pid[..11]));
    assert_eq!(p["kind"], "system");
    assert_eq!(p["fixed_ips"], json!(["10.0.0.2"]));
    assert_eq!(st["networks"][0]["segmentation_id"], 300);
    assert_eq!(st["networks"][0]["physical_network"], "physnet");
    // The network's subnets, for the switch's DHCP server; the port has no dns_name.
    let sub = &st["networks"][0]["subnets"][0];
    assert_eq!(sub["cidr"], "10.0.0.0/24");
    assert_eq!(sub["gateway_ip"], "10.0.0.1");
    assert_eq!(sub["enable_dhcp"], true);
    assert_eq!(p["dns_name"], Value::Null);
    // No device_id: no instance for the metadata service (every path 404).
    assert_eq!(p["instance"], Value::Null);
    // A device_id and a name: the instance the switch's metadata service describes.
    let (s, _) = api
        .put(
            &format!("/ports/{pid}"),
            ADMIN,
            json!({"port": {"device_id": "5f1c2d3e-0000-4000-8000-000000000001", "name": "web-1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, st3) = api
        .call(
            "GET",
            "/networking/agent/v1/hosts/h1/state",
            Some(ADMIN),
            None,
        )
        .await;
    let p3 = &st3["ports"][0];
    assert_eq!(p3["name"], "web-1");
    assert_eq!(
        p3["instance"]["uuid"],
        "5f1c2d3e-0000-4000-8000-000000000001"
    );
    assert_eq!(p3["instance"]["hostname"], "web-1");
    assert!(!p3["instance"]["project_id"].as_str().unwrap().is_empty());
    // A change of the subnet's options is in the next state the agent reads.
    let sid = sub["id"].as_str().unwrap().to_string();
    let (s, _) = api
        .put(
            &format!("/subnets/{sid}"),
            ADMIN,
            json!({"subnet": {"dns_nameservers": ["10.0.0.53"],
                "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, st2) = api
        .call(
            "GET",
            "/networking/agent/v1/hosts/h1/state",
            Some(ADMIN),
            None,
        )
        .await;
    let sub = &st2["networks"][0]["subnets"][0];
    assert_eq!(sub["dns_nameservers"], json!(["10.0.0.53"]));
    assert_eq!(
        sub["host_routes"],
        json!([{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}])
    );
    assert_eq!(
        st["security_groups"][0]["rules"].as_array().unwrap().len(),
        4
    );
    assert_eq!(
        st["security_groups"][0]["member_ips"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(st["revision"].as_u64().unwrap() > 0);
    // Members and anonymous callers do not get host state.
    assert_error(
        &api.call(
            "GET",
            "/networking/agent/v1/hosts/h1/state",
            Some(ALICE),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "agent",
    );
    assert_error(
        &api.call("GET", "/networking/agent/v1/hosts/h1/state", None, None)
            .await,
        StatusCode::UNAUTHORIZED,
        "Authentication",
    );
    assert_error(
        &api.call(
            "GET",
            "/networking/agent/v1/hosts/h1/state?since=x",
            Some(ADMIN),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "since",
    );
    // A binding profile may ask weft to create the tap itself.
    let (s, _) = api
        .put(
            &format!("/ports/{pid}"),
            ADMIN,
            json!({"port": {"binding:profile": {"weft_port_kind": "tap"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, st) = api
        .call(
            "GET",
            "/networking/agent/v1/hosts/h1/state",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st["ports"][0]["kind"], "tap");
}

#[tokio::test]
async fn long_poll_wakes_on_change_and_status_reports_flow_back() {
    let api = Api::new();
    let (nid, pid) = bound_port(&api, "h1").await;
    let rev = api.net.revision();
    // Nothing changes: the poll returns the same revision after its timeout.
    let (_, st) = api
        .call(
            "GET",
            &format!("/networking/agent/v1/hosts/h1/state?since={rev}&timeout=1"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st["revision"], rev);
    // A change while waiting wakes the poll.
    let waiter = {
        let app = api.clone();
        tokio::spawn(async move {
            app.call(
                "GET",
                &format!("/networking/agent/v1/hosts/h1/state?since={rev}&timeout=60"),
                Some(ADMIN),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    api.create(
        "/ports",
        ADMIN,
        json!({"port": {"network_id": nid, "binding:host_id": "h1"}}),
    )
    .await;
    let (_, st) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(st["revision"].as_u64().unwrap() > rev);
    assert_eq!(st["ports"].as_array().unwrap().len(), 2);

    // The agent reports ACTIVE; the API shows it.
    let (s, v) = api
        .call(
            "POST",
            "/networking/agent/v1/hosts/h1/status",
            Some(ADMIN),
            Some(json!({"ports": {pid.clone(): "ACTIVE"}})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (_, v) = api.get(&format!("/ports/{pid}"), ADMIN).await;
    assert_eq!(v["port"]["status"], "ACTIVE");
    // A report from a host the port is not bound to changes nothing.
    api.call(
        "POST",
        "/networking/agent/v1/hosts/h2/status",
        Some(ADMIN),
        Some(json!({"ports": {pid.clone(): "DOWN"}})),
    )
    .await;
    assert_eq!(
        api.get(&format!("/ports/{pid}"), ADMIN).await.1["port"]["status"],
        "ACTIVE"
    );
    let r = api
        .call(
            "POST",
            &format!("/networking/agent/v1/hosts/h2/ports/{pid}/status"),
            Some(ADMIN),
            Some(json!({"status": "DOWN"})),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "h1");
    let r = api
        .call(
            "POST",
            "/networking/agent/v1/hosts/h1/status",
            Some(ADMIN),
            Some(json!({"ports": {pid.clone(): "SLEEPY"}})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "status");
    // Rebinding to another host puts it back to DOWN.
    api.put(
        &format!("/ports/{pid}"),
        ADMIN,
        json!({"port": {"binding:host_id": "h2"}}),
    )
    .await;
    assert_eq!(
        api.get(&format!("/ports/{pid}"), ADMIN).await.1["port"]["status"],
        "DOWN"
    );
}

#[tokio::test]
async fn state_and_revision_survive_a_restart() {
    let api = Api::new();
    let (nid, pid) = bound_port(&api, "h1").await;
    let rev = api.net.revision();
    let Api { backend, app, net } = api;
    drop(app);
    drop(net);
    let again = Api::open(backend);
    assert_eq!(again.net.revision(), rev);
    let (s, v) = again.get(&format!("/ports/{pid}"), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["port"]["fixed_ips"][0]["ip_address"], "10.0.0.2");
    // Indexes were rebuilt: the address and the VLAN are still taken.
    let r = again
        .post(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.0.0.2"}]}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "10.0.0.2");
    let r = again
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "physnet", "provider:segmentation_id": 300}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "300");
    assert!(!again.backend.dir.path().join("networking.db").exists());
}

#[tokio::test]
async fn agents_register_tunnel_ips_and_learn_each_others() {
    let api = Api::new();
    let register = |host: &'static str, ip: Value| {
        let api = &api;
        async move {
            api.call(
                "PUT",
                &format!("/networking/agent/v1/hosts/{host}"),
                Some(ADMIN),
                Some(json!({"agent": {"tunnel_ip": ip}})),
            )
            .await
        }
    };
    let get = |host: &'static str| {
        let api = &api;
        async move {
            api.call(
                "GET",
                &format!("/networking/agent/v1/hosts/{host}/state"),
                Some(ADMIN),
                None,
            )
            .await
        }
    };
    let (s, body) = register("h1", json!("192.0.2.1")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (s, st) = get("h1").await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["tunnel_peers"], json!([]));
    let rev1 = st["revision"].as_u64().unwrap();
    register("h2", json!("192.0.2.2")).await;
    assert_eq!(get("h2").await.1["tunnel_peers"], json!(["192.0.2.1"]));
    let (_, st) = get("h1").await;
    assert_eq!(st["tunnel_peers"], json!(["192.0.2.2"]));
    let rev2 = st["revision"].as_u64().unwrap();
    assert_eq!(rev2, rev1 + 1);
    // Registering again is the agent's heartbeat (a write, what `alive` is
    // judged by); the peers stay as they were.
    register("h1", json!("192.0.2.1")).await;
    assert_eq!(api.net.revision(), rev2 + 1);
    assert_eq!(get("h2").await.1["tunnel_peers"], json!(["192.0.2.1"]));
    // The long-poll is a read: an old agent's ?tunnel_ip= registers nothing.
    let (s, st) = api
        .call(
            "GET",
            "/networking/agent/v1/hosts/h4/state?tunnel_ip=192.0.2.4",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(api.net.revision(), rev2 + 1);
    assert_eq!(st["tunnel_peers"], json!(["192.0.2.1", "192.0.2.2"]));
    // A host without a tunnel IP sees every endpoint and is nobody's peer.
    let (s, _) = register("h3", Value::Null).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, st) = get("h3").await;
    assert_eq!(st["tunnel_peers"], json!(["192.0.2.1", "192.0.2.2"]));
    // A moved endpoint replaces the old one.
    register("h2", json!("192.0.2.22")).await;
    let (_, st) = get("h1").await;
    assert_eq!(st["tunnel_peers"], json!(["192.0.2.22"]));
    // Bad addresses and bodies are a 400 naming the field; members may not register.
    for bad in [
        json!("nope"),
        json!("0.0.0.0"),
        json!("224.0.0.1"),
        json!(7),
    ] {
        let (s, body) = register("h1", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.to_string().contains("tunnel_ip"), "{body}");
    }
    let r = api
        .call(
            "PUT",
            "/networking/agent/v1/hosts/h1",
            Some(ALICE),
            Some(json!({"agent": {"tunnel_ip": "192.0.2.9"}})),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "agent");
}

/// port_shut_down: a port set administratively down reports DOWN at once,
/// and a late ACTIVE report (sent before the agent saw the change) does not
/// bring it back; the agent's next report after admin up does.
#[tokio::test]
async fn admin_down_port_reports_down() {
    let api = Api::new();
    let (nid, pid) = bound_port(&api, "h1").await;
    let report = |status: &'static str| {
        let api = api.clone();
        let pid = pid.clone();
        async move {
            let (s, v) = api
                .call(
                    "POST",
                    "/networking/agent/v1/hosts/h1/status",
                    Some(ADMIN),
                    Some(json!({"ports": {pid: status}})),
                )
                .await;
            assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
        }
    };
    let status =
        || async { api.get(&format!("/ports/{pid}"), ADMIN).await.1["port"]["status"].clone() };
    report("ACTIVE").await;
    assert_eq!(status().await, "ACTIVE");
    let (s, v) = api
        .put(
            &format!("/ports/{pid}"),
            ADMIN,
            json!({"port": {"admin_state_up": false}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["port"]["status"], "DOWN");
    report("ACTIVE").await;
    assert_eq!(status().await, "DOWN");
    // Created down: DOWN too.
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": nid, "admin_state_up": false}}),
        )
        .await;
    assert_eq!(p["status"], "DOWN");
    // Up again: the agent's report counts.
    api.put(
        &format!("/ports/{pid}"),
        ADMIN,
        json!({"port": {"admin_state_up": true}}),
    )
    .await;
    report("ACTIVE").await;
    assert_eq!(status().await, "ACTIVE");
}

/// `openstack network agent list/show/set/delete`, as Neutron answers them:
/// one row per registered host agent, alive from its heartbeat, the tunnel
/// IP in its configurations; admin only.
#[tokio::test]
async fn network_agents_api() {
    let api = Api::new();
    let (st, _) = api
        .call(
            "PUT",
            "/networking/agent/v1/hosts/h1",
            Some(ADMIN),
            Some(json!({"agent": {"tunnel_ip": "192.0.2.1"}})),
        )
        .await;
    assert!(st.is_success(), "{st}");
    let (st, body) = api.get("/agents", ADMIN).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let agents = body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{body}");
    let a = &agents[0];
    assert_eq!(a["host"], "h1");
    assert_eq!(a["alive"], true);
    assert_eq!(a["admin_state_up"], true);
    assert_eq!(a["agent_type"], "Open vSwitch agent");
    assert_eq!(a["configurations"]["tunneling_ip"], "192.0.2.1");
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // A heartbeat keeps the id.
    api.call(
        "PUT",
        "/networking/agent/v1/hosts/h1",
        Some(ADMIN),
        Some(json!({"agent": {"tunnel_ip": "192.0.2.1"}})),
    )
    .await;
    let (st, body) = api.get(&format!("/agents/{id}"), ADMIN).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["agent"]["host"], "h1");
    let (st, body) = api.get("/agents?host=h1", ADMIN).await;
    assert_eq!(
        (st, body["agents"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (_, body) = api.get("/agents?host=h2", ADMIN).await;
    assert!(body["agents"].as_array().unwrap().is_empty());
    // Members see no agents: an empty list, as Neutron filters lists by the
    // show policy (tempest test_list_agents_non_admin); showing one is refused.
    let (st, body) = api.get("/agents", ALICE).await;
    assert_eq!((st, &body), (StatusCode::OK, &json!({"agents": []})));
    let (st, _) = api.get(&format!("/agents/{id}"), ALICE).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // set --disable / --description
    let (st, body) = api
        .call(
            "PUT",
            &format!("/networking/v2.0/agents/{id}"),
            Some(ADMIN),
            Some(json!({"agent": {"admin_state_up": false, "description": "drain"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["agent"]["admin_state_up"], false);
    assert_eq!(body["agent"]["description"], "drain");
    let (st, _) = api
        .call(
            "PUT",
            &format!("/networking/v2.0/agents/{id}"),
            Some(ADMIN),
            Some(json!({"agent": {"host": "x"}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = api
        .call(
            "DELETE",
            &format!("/networking/v2.0/agents/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = api.get(&format!("/agents/{id}"), ADMIN).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
