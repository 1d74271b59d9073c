//! HTTP tests: security groups and rules, the per-project default group.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn default_group_created_by_the_first_write_not_by_reads() {
    let api = Api::new();
    // Reads never write: listing and showing create nothing.
    let rev = api.net.revision();
    for path in ["/security-groups", "/security-group-rules"] {
        let (s, v) = api.get(path, ALICE).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v.as_object().unwrap().values().next().unwrap(), &json!([]));
    }
    assert_eq!(api.net.revision(), rev);
    // The project's first network brings the default group, in the same commit.
    api.create("/networks", ALICE, json!({"network": {"name": "n"}}))
        .await;
    assert_eq!(api.net.revision(), rev + 1);
    let (s, v) = api.get("/security-groups", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g["name"], "default");
    let rules = g["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    let gid = g["id"].as_str().unwrap();
    for eth in ["IPv4", "IPv6"] {
        assert!(rules.iter().any(|r| r["direction"] == "egress"
            && r["ethertype"] == eth
            && r["remote_group_id"].is_null()));
        assert!(rules.iter().any(|r| r["direction"] == "ingress"
            && r["ethertype"] == eth
            && r["remote_group_id"] == gid));
    }
    // Only once.
    api.create("/networks", ALICE, json!({"network": {"name": "n2"}}))
        .await;
    let (_, v) = api.get("/security-groups", ALICE).await;
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 1);
    // Bob's first security-group write brings his own; neither sees the other's.
    assert_eq!(
        api.get("/security-groups", BOB).await.1["security_groups"],
        json!([])
    );
    api.create(
        "/security-groups",
        BOB,
        json!({"security_group": {"name": "web"}}),
    )
    .await;
    let (_, v) = api.get("/security-groups", BOB).await;
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 2);
    let (_, v) = api.get("/security-groups?name=default", BOB).await;
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 1);
    assert_eq!(v["security_groups"].as_array().unwrap().len(), 1);
    assert_ne!(v["security_groups"][0]["id"], gid);
    assert_error(
        &api.get(&format!("/security-groups/{gid}"), BOB).await,
        StatusCode::NOT_FOUND,
        gid,
    );
    // A second "default" is refused; the default cannot be removed by its member.
    let r = api
        .post(
            "/security-groups",
            ALICE,
            json!({"security_group": {"name": "default"}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "Default security group");
    assert_error(
        &api.delete(&format!("/security-groups/{gid}"), ALICE).await,
        StatusCode::CONFLICT,
        "default",
    );
}

/// Alice's group "web": a new group comes with its two egress rules (IPv4, IPv6).
async fn web_group(api: &Api) -> String {
    let g = api
        .create(
            "/security-groups",
            ALICE,
            json!({"security_group": {"name": "web", "description": "http"}}),
        )
        .await;
    assert_eq!(
        g["security_group_rules"].as_array().unwrap().len(),
        2,
        "new groups allow egress: {g}"
    );
    g["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn rules_are_created_listed_and_hidden_from_other_projects() {
    let api = Api::new();
    let gid = web_group(&api).await;
    let r = api
        .create(
            "/security-group-rules",
            ALICE,
            json!({"security_group_rule": {"security_group_id": gid,
        "direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 443,
        "remote_ip_prefix": "192.168.1.7/24"}}),
        )
        .await;
    // Neutron keeps the prefix as written and shows its network beside it.
    assert_eq!(r["remote_ip_prefix"], "192.168.1.7/24");
    assert_eq!(r["normalized_cidr"], "192.168.1.0/24");
    assert_eq!(r["ethertype"], "IPv4");
    assert_eq!(r["project_id"], "p-alice");
    let dup = json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress", "protocol": "tcp",
        "port_range_min": 80, "port_range_max": 443, "remote_ip_prefix": "192.168.1.7/24"}});
    assert_error(
        &api.post("/security-group-rules", ALICE, dup).await,
        StatusCode::CONFLICT,
        r["id"].as_str().unwrap(),
    );
    api.create(
        "/security-group-rules",
        ALICE,
        json!({"security_group_rule": {"security_group_id": gid,
        "direction": "ingress", "protocol": "icmp", "port_range_min": 8, "port_range_max": 0}}),
    )
    .await;
    api.create(
        "/security-group-rules",
        ALICE,
        json!({"security_group_rule": {"security_group_id": gid,
        "direction": "ingress", "ethertype": "IPv6", "protocol": "ipv6-icmp"}}),
    )
    .await;

    // Bob cannot add rules to alice's group, nor see its rules.
    let r = api
        .post(
            "/security-group-rules",
            BOB,
            json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress"}}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, &gid);
    assert_error(
        &api.get(
            &format!("/security-group-rules/{}", r_id(&r_json(&api, &gid).await)),
            BOB,
        )
        .await,
        StatusCode::NOT_FOUND,
        "",
    );
    let (_, v) = api
        .get(
            &format!("/security-group-rules?security_group_id={gid}&direction=ingress"),
            ALICE,
        )
        .await;
    assert_eq!(v["security_group_rules"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_rules_name_the_field() {
    let api = Api::new();
    let gid = web_group(&api).await;
    let bad: Vec<(Value, &str)> = vec![
        (
            json!({"security_group_id": gid, "direction": "sideways"}),
            "direction",
        ),
        (json!({"security_group_id": gid}), "direction"),
        (json!({"direction": "ingress"}), "security_group_id"),
        (
            json!({"security_group_id": gid, "direction": "ingress", "ethertype": "IPX"}),
            "ethertype",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "protocol": "carrier-pigeon"}),
            "protocol",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "port_range_min": 22, "port_range_max": 22}),
            "Must also specify protocol",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "protocol": "tcp", "port_range_min": 0, "port_range_max": 22}),
            "Invalid value for port 0",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "protocol": "tcp", "port_range_min": 30, "port_range_max": 22}),
            "port_range_min",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "protocol": "udp", "port_range_min": 53}),
            "port_range_max",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "protocol": "icmp", "port_range_min": 300}),
            "port_range_min",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "remote_ip_prefix": "2001:db8::/64"}),
            "Conflicting value ethertype IPv4",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "remote_ip_prefix": "10.0.0.0/40"}),
            "Invalid CIDR 10.0.0.0/40",
        ),
        (
            json!({"security_group_id": gid, "direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": gid}),
            "remote_group_id",
        ),
    ];
    for (body, field) in bad {
        let r = api
            .post(
                "/security-group-rules",
                ALICE,
                json!({ "security_group_rule": body }),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, field);
    }
}

#[tokio::test]
async fn a_group_in_use_stays_then_goes_with_its_rules() {
    let api = Api::new();
    let gid = web_group(&api).await;
    // In use by a port -> 409; after the port goes, the group can go, with its rules.
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": n["id"], "security_groups": [gid]}}),
        )
        .await;
    assert_error(
        &api.delete(&format!("/security-groups/{gid}"), ALICE).await,
        StatusCode::CONFLICT,
        "in use",
    );
    api.delete(&format!("/ports/{}", p["id"].as_str().unwrap()), ALICE)
        .await;
    let (s, v) = api
        .put(
            &format!("/security-groups/{gid}"),
            ALICE,
            json!({"security_group": {"name": "www"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        api.delete(&format!("/security-groups/{gid}"), ALICE)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, v) = api
        .get(
            &format!("/security-group-rules?security_group_id={gid}"),
            ALICE,
        )
        .await;
    assert_eq!(v["security_group_rules"], json!([]));
}

async fn r_json(api: &Api, gid: &str) -> Value {
    api.get(
        &format!("/security-group-rules?security_group_id={gid}"),
        ALICE,
    )
    .await
    .1
}

fn r_id(v: &Value) -> String {
    v["security_group_rules"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}
