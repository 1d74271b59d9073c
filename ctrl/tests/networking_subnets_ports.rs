//! HTTP tests: subnets (IPAM and validation) and ports.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

async fn net_and_subnet(api: &Api, token: &str) -> (String, String) {
    let n = api
        .create("/networks", token, json!({"network": {"name": "n"}}))
        .await;
    let nid = n["id"].as_str().unwrap().to_string();
    let s = api
        .create(
            "/subnets",
            token,
            json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/24", "ip_version": 4}}),
        )
        .await;
    (nid, s["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn subnet_defaults_v4_and_v6() {
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let nid = n["id"].as_str().unwrap();
    let s = api
        .create(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/24",
        "ip_version": 4, "name": "s4", "dns_nameservers": ["9.9.9.9"],
        "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]}}),
        )
        .await;
    assert_eq!(s["gateway_ip"], "10.0.0.1");
    assert_eq!(
        s["allocation_pools"],
        json!([{"start": "10.0.0.2", "end": "10.0.0.254"}])
    );
    assert_eq!(s["enable_dhcp"], true);
    assert_eq!(s["host_routes"][0]["nexthop"], "10.0.0.254");
    let s6 = api
        .create(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nid, "cidr": "2001:db8::/64",
        "ip_version": 6, "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}}),
        )
        .await;
    assert_eq!(s6["gateway_ip"], "2001:db8::1");
    assert_eq!(s6["allocation_pools"][0]["start"], "2001:db8::2");
    assert_eq!(
        s6["allocation_pools"][0]["end"],
        "2001:db8::ffff:ffff:ffff:ffff"
    );
    let nogw = api.create("/networks", ALICE, json!({"network": {}})).await;
    let s = api
        .create(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nogw["id"], "cidr": "10.1.0.0/29",
        "gateway_ip": null}}),
        )
        .await;
    assert_eq!(s["gateway_ip"], Value::Null);
    assert_eq!(
        s["allocation_pools"],
        json!([{"start": "10.1.0.1", "end": "10.1.0.6"}])
    );
    let (_, v) = api.get(&format!("/networks/{nid}"), ALICE).await;
    assert_eq!(v["network"]["subnets"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn subnet_validation_names_the_field() {
    let api = Api::new();
    let (nid, _) = net_and_subnet(&api, ALICE).await;
    let post = |body: Value| {
        let api = &api;
        async move { api.post("/subnets", ALICE, json!({ "subnet": body })).await }
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"network_id": nid, "cidr": "10.9.0.0/33"}), "cidr"),
        (
            json!({"network_id": nid, "cidr": "10.9.0.5/24"}),
            "10.9.0.0/24",
        ),
        (json!({"network_id": nid, "cidr": "banana"}), "cidr"),
        (json!({"network_id": nid}), "cidr"),
        (json!({"cidr": "10.9.0.0/24"}), "network_id"),
        (
            json!({"network_id": nid, "cidr": "10.0.0.128/25"}),
            "overlaps",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "ip_version": 6}),
            "ip_version",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "ip_version": 5}),
            "ip_version",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "allocation_pools": [{"start": "10.8.0.2", "end": "10.8.0.9"}]}),
            "allocation_pools",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "allocation_pools": [{"start": "10.9.0.2", "end": "10.9.0.20"}, {"start": "10.9.0.10", "end": "10.9.0.30"}]}),
            "allocation_pools",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "allocation_pools": [{"start": "10.9.0.20", "end": "10.9.0.2"}]}),
            "allocation_pools",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "gateway_ip": "10.9.0.5", "allocation_pools": [{"start": "10.9.0.2", "end": "10.9.0.20"}]}),
            "gateway_ip",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "gateway_ip": "10.8.0.1"}),
            "gateway_ip",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "dns_nameservers": ["not-an-ip"]}),
            "dns_nameservers",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "host_routes": [{"destination": "x", "nexthop": "10.9.0.1"}]}),
            "host_routes",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "enable_dhcp": "perhaps"}),
            "enable_dhcp",
        ),
        (
            json!({"network_id": nid, "cidr": "10.9.0.0/24", "ipv6_ra_mode": "slaac"}),
            "ipv6_ra_mode",
        ),
    ];
    for (body, field) in cases {
        let r = post(body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, field);
    }
    // Another project's network: 404.
    let r = api
        .post(
            "/subnets",
            BOB,
            json!({"subnet": {"network_id": nid, "cidr": "10.9.0.0/24"}}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, &nid);
    // cidr is read-only afterwards.
    let (_, list) = api.get("/subnets", ALICE).await;
    let sid = list["subnets"][0]["id"].as_str().unwrap().to_string();
    let r = api
        .put(
            &format!("/subnets/{sid}"),
            ALICE,
            json!({"subnet": {"cidr": "10.0.1.0/24"}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "cidr");
    let (s, v) = api
        .put(
            &format!("/subnets/{sid}"),
            ALICE,
            json!({"subnet": {"name": "renamed", "dns_nameservers": ["1.1.1.1"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["subnet"]["dns_nameservers"], json!(["1.1.1.1"]));
    assert_error(
        &api.get(&format!("/subnets/{sid}"), BOB).await,
        StatusCode::NOT_FOUND,
        &sid,
    );
}

#[tokio::test]
async fn port_defaults_and_allocation() {
    let api = Api::new();
    let (nid, sid) = net_and_subnet(&api, ALICE).await;
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "name": "p1"}}),
        )
        .await;
    let mac = p["mac_address"].as_str().unwrap();
    assert!(mac.starts_with("fa:16:3e:"), "{mac}");
    assert_eq!(
        p["fixed_ips"],
        json!([{"subnet_id": sid, "ip_address": "10.0.0.2"}])
    );
    assert_eq!(p["status"], "DOWN");
    assert_eq!(p["binding:vif_type"], "unbound");
    assert_eq!(p["port_security_enabled"], true);
    assert_eq!(p["admin_state_up"], true);
    let sgs = p["security_groups"].as_array().unwrap();
    assert_eq!(sgs.len(), 1);
    let (_, g) = api
        .get(
            &format!("/security-groups/{}", sgs[0].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(g["security_group"]["name"], "default");

    let p2 = api
        .create("/ports", ALICE, json!({"port": {"network_id": nid}}))
        .await;
    assert_eq!(p2["fixed_ips"][0]["ip_address"], "10.0.0.3");
    assert_ne!(p2["mac_address"], p["mac_address"]);
    // Requested address, subnet by id.
    let p3 = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid,
        "fixed_ips": [{"subnet_id": sid, "ip_address": "10.0.0.50"}]}}),
        )
        .await;
    assert_eq!(p3["fixed_ips"][0]["ip_address"], "10.0.0.50");
    // Taken -> 409; the gateway -> 409; outside the subnet -> 400.
    for ip in ["10.0.0.50", "10.0.0.1"] {
        let r = api
            .post(
                "/ports",
                ALICE,
                json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": ip}]}}),
            )
            .await;
        assert_error(&r, StatusCode::CONFLICT, ip);
    }
    let r = api.post("/ports", ALICE, json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": sid, "ip_address": "10.7.0.5"}]}})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "10.7.0.5");
    assert_eq!(r.1["NeutronError"]["type"], "InvalidIpForSubnet");
    // No fixed IPs at all.
    let bare = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "fixed_ips": []}}),
        )
        .await;
    assert_eq!(bare["fixed_ips"], json!([]));
    // Deleting frees the address for the next allocation.
    assert_eq!(
        api.delete(&format!("/ports/{}", p["id"].as_str().unwrap()), ALICE)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let p4 = api
        .create("/ports", ALICE, json!({"port": {"network_id": nid}}))
        .await;
    assert_eq!(p4["fixed_ips"][0]["ip_address"], "10.0.0.2");
    // Subnet and network with ports in use -> 409.
    assert_error(
        &api.delete(&format!("/subnets/{sid}"), ALICE).await,
        StatusCode::CONFLICT,
        "subnet",
    );
    assert_error(
        &api.delete(&format!("/networks/{nid}"), ALICE).await,
        StatusCode::CONFLICT,
        "ports still in use",
    );
}

#[tokio::test]
async fn port_pool_exhaustion_is_409() {
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    api.create(
        "/subnets",
        ALICE,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.0.0.0/30"}}),
    )
    .await;
    api.create("/ports", ALICE, json!({"port": {"network_id": n["id"]}}))
        .await;
    let r = api
        .post("/ports", ALICE, json!({"port": {"network_id": n["id"]}}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "No more IP addresses");
}

#[tokio::test]
async fn port_mac_binding_security_and_policy() {
    let api = Api::new();
    let (nid, _) = net_and_subnet(&api, ALICE).await;
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "mac_address": "FA:16:3E:00:00:AA"}}),
        )
        .await;
    assert_eq!(p["mac_address"], "fa:16:3e:00:00:aa");
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "mac_address": "fa:16:3e:00:00:aa"}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "mac address");
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "mac_address": "01:00:5e:00:00:01"}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "mac_address");
    // Binding is for admins (Nova's service user).
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "binding:host_id": "h1"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "binding:host_id");
    let pid = p["id"].as_str().unwrap();
    let r = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"binding:host_id": "h1"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "binding:host_id");
    let (s, v) = api
        .put(
            &format!("/ports/{pid}"),
            ADMIN,
            json!({"port": {"binding:host_id": "h1", "device_id": "vm-1",
        "device_owner": "compute:nova"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["port"]["binding:vif_type"], "tap");
    assert_eq!(
        v["port"]["binding:vif_details"]["devname"],
        format!("tap{}", &pid[..11])
    );
    // port_security off with security groups -> 400; with pairs -> 409.
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "port_security_enabled": false,
        "security_groups": [p["security_groups"][0]]}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "security groups");
    assert_eq!(
        r.1["NeutronError"]["type"],
        "PortSecurityAndIPRequiredForSecurityGroups"
    );
    let open = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "port_security_enabled": false}}),
        )
        .await;
    assert_eq!(open["security_groups"], json!([]));
    let r = api
        .put(
            &format!("/ports/{}", open["id"].as_str().unwrap()),
            ALICE,
            json!({"port": {"allowed_address_pairs": [{"ip_address": "10.0.0.0/24"}]}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "Port Security");
    let (s, v) = api.put(&format!("/ports/{pid}"), ALICE,
        json!({"port": {"allowed_address_pairs": [{"ip_address": "10.0.0.0/24"}, {"ip_address": "10.0.5.5", "mac_address": "fa:16:3e:00:00:bb"}]}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["port"]["allowed_address_pairs"].as_array().unwrap().len(),
        2
    );
    let r = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"allowed_address_pairs": [{"ip_address": "nope"}]}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "allowed_address_pairs");
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "security_groups": ["no-such-group"]}}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "no-such-group");
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "status": "ACTIVE"}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "status");
    // Another project: 404 on the port and on the network.
    assert_error(
        &api.get(&format!("/ports/{pid}"), BOB).await,
        StatusCode::NOT_FOUND,
        pid,
    );
    assert_error(
        &api.delete(&format!("/ports/{pid}"), BOB).await,
        StatusCode::NOT_FOUND,
        pid,
    );
    let r = api
        .post("/ports", BOB, json!({"port": {"network_id": nid}}))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, &nid);
    // Filters on ports.
    let (_, v) = api
        .get("/ports?fixed_ips=ip_address%3D10.0.0.2", ALICE)
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    let (_, v) = api.get("/ports?binding:host_id=h1", ADMIN).await;
    assert_eq!(v["ports"][0]["id"], pid);
    let (_, v) = api
        .get(&format!("/ports?device_id=vm-1&network_id={nid}"), ALICE)
        .await;
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn member_may_plug_into_a_shared_network() {
    let api = Api::new();
    let n = api
        .create("/networks", ADMIN, json!({"network": {"shared": true}}))
        .await;
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.5.0.0/24"}}),
    )
    .await;
    let p = api
        .create("/ports", BOB, json!({"port": {"network_id": n["id"]}}))
        .await;
    assert_eq!(p["project_id"], "p-bob");
    // ...but not add a subnet to it.
    let r = api
        .post(
            "/subnets",
            BOB,
            json!({"subnet": {"network_id": n["id"], "cidr": "10.6.0.0/24"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "create_subnet");
    // Alice does not see bob's port.
    let (_, v) = api.get("/ports", ALICE).await;
    assert_eq!(v["ports"], json!([]));
}

/// Neutron's `create_port:device_owner` / `update_port:device_owner`: a
/// `network:*` owner (a DHCP or router port) only by an admin or the
/// network's owner, so a tenant on a shared network cannot pose as the
/// network's own services.
#[tokio::test]
async fn network_device_owner_is_for_admins_and_the_network_owner() {
    let api = Api::new();
    let shared = api
        .create("/networks", ADMIN, json!({"network": {"shared": true}}))
        .await;
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": shared["id"], "cidr": "10.5.0.0/24"}}),
    )
    .await;
    let r = api
        .post(
            "/ports",
            BOB,
            json!({"port": {"network_id": shared["id"], "device_owner": "network:dhcp"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "create_port:device_owner");
    assert_eq!(r.1["NeutronError"]["type"], "PolicyNotAuthorized");
    // Any other owner is the member's to set.
    let p = api
        .create(
            "/ports",
            BOB,
            json!({"port": {"network_id": shared["id"], "device_owner": "compute:nova"}}),
        )
        .await;
    let pid = p["id"].as_str().unwrap();
    let r = api
        .put(
            &format!("/ports/{pid}"),
            BOB,
            json!({"port": {"device_owner": "network:router_interface"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "update_port:device_owner");
    let (s, v) = api
        .put(
            &format!("/ports/{pid}"),
            BOB,
            json!({"port": {"device_owner": "compute:other"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The admin may; so may the network's owner on its own network.
    api.create(
        "/ports",
        ADMIN,
        json!({"port": {"network_id": shared["id"], "device_owner": "network:dhcp"}}),
    )
    .await;
    let (own, _) = net_and_subnet(&api, ALICE).await;
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": own, "device_owner": "network:dhcp"}}),
        )
        .await;
    assert_eq!(p["device_owner"], "network:dhcp");
}

/// `create_port:fixed_ips:ip_address`: a specific address on a shared
/// network only by an admin or the network's owner; a subnet alone is fine.
#[tokio::test]
async fn fixed_ip_address_on_a_shared_network_is_for_admins_and_the_owner() {
    let api = Api::new();
    let shared = api
        .create("/networks", ADMIN, json!({"network": {"shared": true}}))
        .await;
    let s = api
        .create(
            "/subnets",
            ADMIN,
            json!({"subnet": {"network_id": shared["id"], "cidr": "10.5.0.0/24"}}),
        )
        .await;
    let r = api
        .post(
            "/ports",
            BOB,
            json!({"port": {"network_id": shared["id"],
                "fixed_ips": [{"subnet_id": s["id"], "ip_address": "10.5.0.20"}]}}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "create_port:fixed_ips:ip_address",
    );
    let r = api
        .post(
            "/ports",
            BOB,
            json!({"port": {"network_id": shared["id"], "fixed_ips": [{"ip_address": "10.5.0.20"}]}}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::FORBIDDEN,
        "create_port:fixed_ips:ip_address",
    );
    let p = api
        .create(
            "/ports",
            BOB,
            json!({"port": {"network_id": shared["id"], "fixed_ips": [{"subnet_id": s["id"]}]}}),
        )
        .await;
    assert_eq!(p["fixed_ips"][0]["subnet_id"], s["id"]);
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": shared["id"], "fixed_ips": [{"ip_address": "10.5.0.20"}]}}),
        )
        .await;
    assert_eq!(p["fixed_ips"][0]["ip_address"], "10.5.0.20");
    let (own, _) = net_and_subnet(&api, ALICE).await;
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": own, "fixed_ips": [{"ip_address": "10.0.0.20"}]}}),
        )
        .await;
    assert_eq!(p["fixed_ips"][0]["ip_address"], "10.0.0.20");
}

/// Neutron's `check_subnet_ip`: never the network address, nor (IPv4) the
/// broadcast address; `InvalidIpForSubnet`, 400.
#[tokio::test]
async fn network_and_broadcast_addresses_are_invalid_fixed_ips() {
    let api = Api::new();
    let (nid, sid) = net_and_subnet(&api, ALICE).await;
    for ip in ["10.0.0.0", "10.0.0.255"] {
        for fixed in [
            json!([{"ip_address": ip}]),
            json!([{"subnet_id": sid, "ip_address": ip}]),
        ] {
            let r = api
                .post(
                    "/ports",
                    ALICE,
                    json!({"port": {"network_id": nid, "fixed_ips": fixed}}),
                )
                .await;
            assert_error(&r, StatusCode::BAD_REQUEST, ip);
            assert_eq!(r.1["NeutronError"]["type"], "InvalidIpForSubnet", "{}", r.1);
        }
    }
    let p = api
        .create("/ports", ALICE, json!({"port": {"network_id": nid}}))
        .await;
    let r = api
        .put(
            &format!("/ports/{}", p["id"].as_str().unwrap()),
            ALICE,
            json!({"port": {"fixed_ips": [{"subnet_id": sid, "ip_address": "10.0.0.255"}]}}),
        )
        .await;
    assert_eq!(r.1["NeutronError"]["type"], "InvalidIpForSubnet", "{}", r.1);
    // IPv6: the subnet-router anycast (network) address is refused too.
    let s6 = api
        .create(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nid, "cidr": "2001:db8::/64", "ip_version": 6}}),
        )
        .await;
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": s6["id"], "ip_address": "2001:db8::"}]}}),
        )
        .await;
    assert_eq!(r.1["NeutronError"]["type"], "InvalidIpForSubnet", "{}", r.1);
    // The last IPv6 address is an ordinary one.
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": s6["id"], "ip_address": "2001:db8::ffff:ffff:ffff:ffff"}]}}),
        )
        .await;
    assert_eq!(
        p["fixed_ips"][0]["ip_address"],
        "2001:db8::ffff:ffff:ffff:ffff"
    );
}

/// tempest's test_port_sec_update_port_failed: turning port security off on
/// a port that still has security groups is a conflict with the port's
/// state (409 PortSecurityPortHasSecurityGroup); so are address pairs on a
/// port without it (409 AddressPairAndPortSecurityRequired).
#[tokio::test]
async fn port_security_update_conflicts() {
    let api = Api::new();
    let (nid, _) = net_and_subnet(&api, ALICE).await;
    let p = api
        .create("/ports", ALICE, json!({"port": {"network_id": nid}}))
        .await;
    let path = format!("/ports/{}", p["id"].as_str().unwrap());
    let r = api
        .put(
            &path,
            ALICE,
            json!({"port": {"port_security_enabled": false}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "security group");
    assert_eq!(
        r.1["NeutronError"]["type"],
        "PortSecurityPortHasSecurityGroup"
    );
    let (s, v) = api
        .put(
            &path,
            ALICE,
            json!({"port": {"port_security_enabled": false, "security_groups": []}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["port"]["port_security_enabled"], false);
    let r = api
        .put(
            &path,
            ALICE,
            json!({"port": {"allowed_address_pairs": [{"ip_address": "10.0.0.77", "mac_address": "fa:16:3e:00:00:77"}]}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "Port Security");
    assert_eq!(
        r.1["NeutronError"]["type"],
        "AddressPairAndPortSecurityRequired"
    );
    // Groups on a port without port security: the request is invalid (400).
    let r = api
        .put(
            &path,
            ALICE,
            json!({"port": {"security_groups": p["security_groups"]}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "security groups");
    // Both back on in one request.
    let (s, v) = api
        .put(
            &path,
            ALICE,
            json!({"port": {"port_security_enabled": true, "security_groups": p["security_groups"]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["port"]["security_groups"], p["security_groups"]);
}

/// Ids whose MACs are always the same: the second port on a network finds
/// every draw taken.
struct OneMac(u64);

impl weft_ctrl::networking::service::Ids for OneMac {
    fn uuid(&mut self) -> String {
        self.0 += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.0)
    }
    fn mac_tail(&mut self) -> [u8; 3] {
        [0, 0, 1]
    }
}

/// MAC generation retries a bounded number of times, then answers as
/// Neutron does (MacAddressGenerationFailure, 503) instead of spinning.
#[tokio::test]
async fn mac_generation_gives_up_with_503() {
    let api = Api::with_ids(Box::new(OneMac(0)));
    let (nid, _) = net_and_subnet(&api, ALICE).await;
    let p = api
        .create("/ports", ALICE, json!({"port": {"network_id": nid}}))
        .await;
    assert_eq!(p["mac_address"], "fa:16:3e:00:00:01");
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        api.post("/ports", ALICE, json!({"port": {"network_id": nid}})),
    )
    .await
    .expect("port create gave up within 10 s");
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, &nid);
    assert_eq!(r.1["NeutronError"]["type"], "MacAddressGenerationFailure");
    // The same MAC on another network is fine (uniqueness is per network).
    let (other, _) = net_and_subnet(&api, ALICE).await;
    let q = api
        .create("/ports", ALICE, json!({"port": {"network_id": other}}))
        .await;
    assert_eq!(q["mac_address"], "fa:16:3e:00:00:01");
}

/// Subnets carry their network's `shared`, and `?shared=true` filters on it.
#[tokio::test]
async fn shared_filter_on_subnets() {
    let api = Api::new();
    let shared = api
        .create("/networks", ADMIN, json!({"network": {"shared": true}}))
        .await;
    let s = api
        .create(
            "/subnets",
            ADMIN,
            json!({"subnet": {"network_id": shared["id"], "cidr": "10.5.0.0/24"}}),
        )
        .await;
    assert_eq!(s["shared"], true);
    let (_, own) = net_and_subnet(&api, ADMIN).await;
    let (_, v) = api.get("/subnets?shared=true", ADMIN).await;
    let ids: Vec<&Value> = v["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, vec![&s["id"]]);
    let (_, v) = api.get("/subnets?shared=False", ADMIN).await;
    assert_eq!(v["subnets"].as_array().unwrap().len(), 1);
    assert_eq!(v["subnets"][0]["id"], own);
    assert_eq!(v["subnets"][0]["shared"], false);
    // Bob sees the shared one.
    let (_, v) = api.get("/subnets?shared=true", BOB).await;
    assert_eq!(v["subnets"].as_array().unwrap().len(), 1);
}

/// An IP version needs a minimum MTU (IPv4 68, IPv6 1280). As Neutron's
/// net-mtu-writable, the network may have a smaller one (0 is the type's
/// maximum); its subnets refuse it: no subnet on a network below its
/// version's minimum, and no MTU update below an existing subnet's minimum
/// (409 NetworkMTUSubnetConflict, tempest's test_*_mtu_below_minimum_*).
#[tokio::test]
async fn mtu_below_the_ip_version_minimum() {
    let api = Api::new();
    let tiny = api
        .create("/networks", ALICE, json!({"network": {"mtu": 67}}))
        .await;
    assert_eq!(tiny["mtu"], 67);
    let r = api
        .post(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": tiny["id"], "cidr": "10.9.0.0/24"}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "minimum of 68");
    assert_eq!(r.1["NeutronError"]["type"], "NetworkMTUSubnetConflict");
    let r = api
        .post("/networks", ALICE, json!({"network": {"mtu": -1}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "mtu");
    let tiny_id = tiny["id"].as_str().unwrap();
    let (_, v) = api
        .put(
            &format!("/networks/{tiny_id}"),
            ALICE,
            json!({"network": {"mtu": 0}}),
        )
        .await;
    assert_eq!(v["network"]["mtu"], 1500, "0 is the type's maximum");

    let n = api
        .create("/networks", ALICE, json!({"network": {"mtu": 1000}}))
        .await;
    let nid = n["id"].as_str().unwrap();
    let r = api
        .post(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nid, "cidr": "2001:db8::/64", "ip_version": 6}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "minimum of 1280");
    assert_eq!(r.1["NeutronError"]["type"], "NetworkMTUSubnetConflict");
    api.create(
        "/subnets",
        ALICE,
        json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let r = api
        .put(
            &format!("/networks/{nid}"),
            ALICE,
            json!({"network": {"mtu": 67}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "minimum of 68");
    let (s, v) = api
        .put(
            &format!("/networks/{nid}"),
            ALICE,
            json!({"network": {"mtu": 1400}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    api.create(
        "/subnets",
        ALICE,
        json!({"subnet": {"network_id": nid, "cidr": "2001:db8::/64", "ip_version": 6}}),
    )
    .await;
    let r = api
        .put(
            &format!("/networks/{nid}"),
            ALICE,
            json!({"network": {"mtu": 1279}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "minimum of 1280");
    assert_eq!(r.1["NeutronError"]["type"], "NetworkMTUSubnetConflict");
    let (_, v) = api.get(&format!("/networks/{nid}"), ALICE).await;
    assert_eq!(v["network"]["mtu"], 1400);
}

/// A subnet's create, update and delete revise its network (Neutron's
/// `revises_on_change`; tempest test_update_subnet_bumps_network_revision).
#[tokio::test]
async fn subnet_writes_revise_the_network() {
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let nid = n["id"].as_str().unwrap();
    let rev = || {
        let api = api.clone();
        let path = format!("/networks/{nid}");
        async move {
            api.get(&path, ALICE).await.1["network"]["revision_number"]
                .as_u64()
                .unwrap()
        }
    };
    let r0 = rev().await;
    let s = api
        .create(
            "/subnets",
            ALICE,
            json!({"subnet": {"network_id": nid, "cidr": "10.0.0.0/24"}}),
        )
        .await;
    let r1 = rev().await;
    assert!(r1 > r0, "create: {r0} -> {r1}");
    let sid = s["id"].as_str().unwrap();
    let (st, _) = api
        .put(
            &format!("/subnets/{sid}"),
            ALICE,
            json!({"subnet": {"name": "x"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let r2 = rev().await;
    assert!(r2 > r1, "update: {r1} -> {r2}");
    assert_eq!(
        api.delete(&format!("/subnets/{sid}"), ALICE).await.0,
        StatusCode::NO_CONTENT
    );
    let r3 = rev().await;
    assert!(r3 > r2, "delete: {r2} -> {r3}");
}

/// An IPv6 subnet's two modes, as Neutron checks them together: they must
/// agree when both are given, need DHCP on, and automatic addresses need a
/// /64 (tempest test_dhcpv6_invalid_options).
#[tokio::test]
async fn ipv6_modes_checked_together() {
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let nid = n["id"].as_str().unwrap();
    let subnet = |extra: Value| {
        let mut b = json!({"network_id": nid, "cidr": "2001:db8::/64", "ip_version": 6});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "subnet": b })
    };
    let modes = ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"];
    for ra in modes {
        for am in modes.iter().filter(|m| **m != ra) {
            let r = api
                .post(
                    "/subnets",
                    ALICE,
                    subnet(json!({"ipv6_ra_mode": ra, "ipv6_address_mode": am})),
                )
                .await;
            assert_error(&r, StatusCode::BAD_REQUEST, "must be the same value");
        }
    }
    let r = api
        .post(
            "/subnets",
            ALICE,
            subnet(json!({"ipv6_address_mode": "slaac", "enable_dhcp": false})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "enable_dhcp");
    let r = api
        .post(
            "/subnets",
            ALICE,
            subnet(json!({"ipv6_ra_mode": "slaac", "cidr": "2001:db8::/80"})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "EUI-64");
    let s = api
        .create(
            "/subnets",
            ALICE,
            subnet(json!({"ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})),
        )
        .await;
    assert_eq!(s["ipv6_address_mode"], "slaac");
}

/// DHCPv6 modes are refused with a 400 that names what is missing (nothing answers DHCPv6:
/// the switch serves DHCPv4 only), never stored as a silent no-op; nothing is created.
#[tokio::test]
async fn dhcpv6_modes_are_refused_naming_what_is_missing() {
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let nid = n["id"].as_str().unwrap();
    for mode in ["dhcpv6-stateful", "dhcpv6-stateless"] {
        for body in [
            json!({"ipv6_ra_mode": mode, "ipv6_address_mode": mode}),
            json!({"ipv6_address_mode": mode}),
            json!({"ipv6_ra_mode": mode}),
        ] {
            let mut b = json!({"network_id": nid, "cidr": "2001:db8::/64", "ip_version": 6});
            b.as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            let r = api.post("/subnets", ALICE, json!({ "subnet": b })).await;
            assert_error(&r, StatusCode::BAD_REQUEST, "needs a DHCPv6 server");
            assert_error(&r, StatusCode::BAD_REQUEST, mode);
        }
    }
    let (_, v) = api.get("/subnets", ALICE).await;
    assert_eq!(v["subnets"], json!([]));
}

/// A subnet whose addresses are automatic (SLAAC) may be deleted while ports
/// hold addresses on it: they are withdrawn from the ports, which stay (so the
/// network is still in use); a router interface keeps it, and a subnet of
/// allocated addresses with ports stays in use (Neutron's
/// _remove_subnet_ip_allocations_from_ports; tempest
/// test_create_delete_slaac_subnet_with_ports).
#[tokio::test]
async fn auto_address_subnet_deleted_under_its_ports() {
    let api = Api::new();
    let n = api.create("/networks", ADMIN, json!({"network": {}})).await;
    let nid = n["id"].as_str().unwrap();
    let v6 = |cidr: &str, mode: Option<&str>| {
        let mut s = json!({"network_id": nid, "cidr": cidr, "ip_version": 6});
        if let Some(m) = mode {
            s["ipv6_ra_mode"] = json!(m);
            s["ipv6_address_mode"] = json!(m);
        }
        json!({ "subnet": s })
    };
    let port = |owner: &str, subnet: &Value| {
        json!({"port": {"network_id": nid, "device_owner": owner,
            "fixed_ips": [{"subnet_id": subnet["id"]}]}})
    };
    let stateful = api
        .create("/subnets", ADMIN, v6("2001:db8:1::/64", None))
        .await;
    let held = api.create("/ports", ADMIN, port("", &stateful)).await;
    let r = api
        .delete(
            &format!("/subnets/{}", stateful["id"].as_str().unwrap()),
            ADMIN,
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "One or more ports");
    api.delete(&format!("/ports/{}", held["id"].as_str().unwrap()), ADMIN)
        .await;

    for mode in ["slaac"] {
        let s = api
            .create("/subnets", ADMIN, v6("2001:db8::/64", Some(mode)))
            .await;
        let sid = s["id"].as_str().unwrap();
        let router = api
            .create("/ports", ADMIN, port("network:router_interface", &s))
            .await;
        let r = api.delete(&format!("/subnets/{sid}"), ADMIN).await;
        assert_error(&r, StatusCode::CONFLICT, "One or more ports");
        let rid = router["id"].as_str().unwrap();
        api.delete(&format!("/ports/{rid}"), ADMIN).await;

        let p = api.create("/ports", ADMIN, port("compute:nova", &s)).await;
        let pid = p["id"].as_str().unwrap();
        assert_eq!(p["fixed_ips"][0]["subnet_id"], sid);
        let (st, _) = api.delete(&format!("/subnets/{sid}"), ADMIN).await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{mode}");
        let (_, v) = api.get(&format!("/ports/{pid}"), ADMIN).await;
        assert_eq!(v["port"]["fixed_ips"], json!([]), "{mode}");
        assert!(v["port"]["revision_number"].as_u64() > p["revision_number"].as_u64());
        let r = api.delete(&format!("/networks/{nid}"), ADMIN).await;
        assert_error(&r, StatusCode::CONFLICT, "ports still in use");
        api.delete(&format!("/ports/{pid}"), ADMIN).await;
    }
}
