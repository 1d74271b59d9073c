//! HTTP tests: the security-group API as Neutron's (issue 14): protocols by
//! name or number for both ethertypes, port ranges refused with Neutron's
//! messages, duplicate rules, the default group, bulk creates, a group named
//! twice on a port, every rule shown, and stateless groups.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

/// A new group of alice's; returns its id.
async fn group(api: &Api, body: Value) -> String {
    let g = api
        .create("/security-groups", ALICE, json!({ "security_group": body }))
        .await;
    g["id"].as_str().unwrap().to_string()
}

/// Posts one rule of alice's into group `gid` with the given attributes.
async fn post_rule(api: &Api, gid: &str, attrs: Value) -> (StatusCode, Value) {
    let mut body = json!({"security_group_id": gid, "direction": "ingress"});
    for (k, v) in attrs.as_object().unwrap() {
        body[k] = v.clone();
    }
    api.post(
        "/security-group-rules",
        ALICE,
        json!({ "security_group_rule": body }),
    )
    .await
}

/// Asserts the error's Neutron exception name as well as its message.
fn assert_neutron(got: &(StatusCode, Value), status: StatusCode, kind: &str, says: &str) {
    assert_error(got, status, says);
    assert_eq!(got.1["NeutronError"]["type"], kind, "{}", got.1);
}

#[tokio::test]
async fn protocols_by_name_or_number_for_ipv4_and_ipv6() {
    let api = Api::new();
    let gid = group(&api, json!({"name": "protocols"})).await;
    // Every name tempest sends for IPv4, and its number both as JSON number
    // and as text, each stored as given.
    let v4 = [
        ("ah", 51),
        ("dccp", 33),
        ("egp", 8),
        ("esp", 50),
        ("gre", 47),
        ("icmp", 1),
        ("igmp", 2),
        ("ospf", 89),
        ("pgm", 113),
        ("rsvp", 46),
        ("sctp", 132),
        ("tcp", 6),
        ("udp", 17),
        ("udplite", 136),
        ("vrrp", 112),
    ];
    for (name, num) in v4 {
        for (given, stored, dir) in [
            (json!(name.to_uppercase()), json!(name), "ingress"),
            (json!(num), json!(num.to_string()), "egress"),
        ] {
            let (s, v) = post_rule(&api, &gid, json!({"protocol": given, "direction": dir})).await;
            assert_eq!(s, StatusCode::CREATED, "{given}: {v}");
            assert_eq!(v["security_group_rule"]["protocol"], stored, "{given}");
        }
        // The same protocol by number is the same rule as by name.
        let r = post_rule(&api, &gid, json!({"protocol": num.to_string()})).await;
        assert_neutron(
            &r,
            StatusCode::CONFLICT,
            "SecurityGroupRuleExists",
            "already exists",
        );
    }
    // IPv6: the legacy ICMP spellings become ipv6-icmp (58), as Neutron stores them.
    // (Each from its own remote: all three ICMP spellings are one rule.)
    let v6 = [
        (json!("ipv6-icmp"), json!("ipv6-icmp"), "ingress"),
        (json!("icmp"), json!("ipv6-icmp"), "egress"),
        (json!(1), json!("58"), "2001:db8::/64"),
        (json!("ipv6-encap"), json!("ipv6-encap"), "ingress"),
        (json!(44), json!("44"), "ingress"),
        (json!("ipv6-route"), json!("ipv6-route"), "ingress"),
        (json!("tcp"), json!("tcp"), "ingress"),
    ];
    for (given, stored, dir_or_remote) in v6 {
        let mut attrs = json!({"protocol": given, "ethertype": "IPv6"});
        match dir_or_remote {
            "ingress" | "egress" => attrs["direction"] = json!(dir_or_remote),
            prefix => attrs["remote_ip_prefix"] = json!(prefix),
        }
        let (s, v) = post_rule(&api, &gid, attrs).await;
        assert_eq!(s, StatusCode::CREATED, "{given}: {v}");
        assert_eq!(v["security_group_rule"]["protocol"], stored, "{given}");
        assert_eq!(v["security_group_rule"]["ethertype"], "IPv6");
    }
    // icmpv6 after icmp in IPv6 egress: the same rule.
    let r = post_rule(
        &api,
        &gid,
        json!({"protocol": "icmpv6", "ethertype": "ipv6", "direction": "egress"}),
    )
    .await;
    assert_neutron(
        &r,
        StatusCode::CONFLICT,
        "SecurityGroupRuleExists",
        "already exists",
    );
    // IPv6-only protocols, by name or number, are refused in IPv4 rules.
    for p in [
        json!("ipv6-encap"),
        json!("ipv6-frag"),
        json!("ipv6-icmp"),
        json!("icmpv6"),
        json!("ipv6-nonxt"),
        json!("ipv6-opts"),
        json!("ipv6-route"),
        json!(41),
        json!(44),
        json!(58),
        json!("59"),
        json!(60),
        json!(43),
    ] {
        let r = post_rule(&api, &gid, json!({"protocol": p, "ethertype": "IPv4"})).await;
        assert_neutron(
            &r,
            StatusCode::BAD_REQUEST,
            "SecurityGroupEthertypeConflictWithProtocol",
            "Invalid ethertype IPv4 for protocol",
        );
    }
    for p in [
        json!(256),
        json!(-1),
        json!("300"),
        json!("bogus"),
        json!(""),
        json!(true),
    ] {
        let r = post_rule(&api, &gid, json!({"protocol": p})).await;
        assert_neutron(
            &r,
            StatusCode::BAD_REQUEST,
            "SecurityGroupRuleInvalidProtocol",
            "integer representations [0 to 255]",
        );
    }
    // `any` is every protocol: stored as null.
    let (s, v) = post_rule(
        &api,
        &gid,
        json!({"protocol": "any", "remote_ip_prefix": "10.9.0.0/16"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["security_group_rule"]["protocol"], Value::Null);
    let r = post_rule(&api, &gid, json!({"ethertype": "IPX"})).await;
    assert_neutron(
        &r,
        StatusCode::BAD_REQUEST,
        "SecurityGroupRuleInvalidEtherType",
        "ethertype 'IPX' not supported",
    );
}

/// tempest's test_create_security_group_rule_with_invalid_ports, its TCP table: (min, max,
/// Neutron's error type, what its message says).
fn tcp_bad_ranges() -> [(Value, Value, &'static str, &'static str); 5] {
    [
        (
            json!(-16),
            json!(80),
            "SecurityGroupInvalidPortValue",
            "Invalid value for port -16",
        ),
        (
            json!(80),
            json!(79),
            "SecurityGroupInvalidPortRange",
            "port_range_min must be <= port_range_max",
        ),
        (
            json!(80),
            json!(65536),
            "SecurityGroupInvalidPortValue",
            "Invalid value for port 65536",
        ),
        (
            Value::Null,
            json!(6),
            "SecurityGroupInvalidPortRange",
            "port_range_min must be <= port_range_max",
        ),
        (
            json!(-16),
            json!(65536),
            "SecurityGroupInvalidPortValue",
            "Invalid value for port",
        ),
    ]
}

/// The same test's ICMP table: min and max are the ICMP type and code.
fn icmp_bad_ranges() -> [(Value, Value, &'static str, &'static str); 4] {
    [
        (
            json!(1),
            json!(256),
            "SecurityGroupInvalidIcmpValue",
            "Invalid value for ICMP code",
        ),
        (
            json!(-1),
            json!(25),
            "SecurityGroupInvalidPortValue",
            "Invalid value",
        ),
        (
            Value::Null,
            json!(6),
            "SecurityGroupMissingIcmpType",
            "ICMP type (port-range-min) is missing",
        ),
        (
            json!(300),
            json!(1),
            "SecurityGroupInvalidIcmpValue",
            "Invalid value for ICMP type",
        ),
    ]
}

/// Port 0, a range without a protocol, a range on a protocol without ports, a port that is
/// not a number, an ICMPv6 code without a type.
fn other_bad_ports() -> [(Value, &'static str, &'static str); 5] {
    [
        (
            json!({"protocol": "udp", "port_range_min": 0, "port_range_max": 53}),
            "SecurityGroupInvalidPortValue",
            "Invalid value for port 0",
        ),
        (
            json!({"port_range_min": 22, "port_range_max": 22}),
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ),
        (
            json!({"protocol": "gre", "port_range_min": 22, "port_range_max": 22}),
            "SecurityGroupInvalidProtocolForPort",
            "Ports cannot be specified for protocol 47. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE.",
        ),
        (
            json!({"protocol": "tcp", "port_range_min": "ssh", "port_range_max": 22}),
            "SecurityGroupInvalidPortValue",
            "Invalid value for port ssh",
        ),
        (
            json!({"protocol": "icmpv6", "ethertype": "IPv6", "port_range_max": 0}),
            "SecurityGroupMissingIcmpType",
            "ICMP code (port-range-max) 0 is provided",
        ),
    ]
}

#[tokio::test]
async fn invalid_port_ranges_are_refused_with_neutrons_messages() {
    let api = Api::new();
    let gid = group(&api, json!({"name": "ports"})).await;
    for (min, max, kind, says) in tcp_bad_ranges() {
        let r = post_rule(
            &api,
            &gid,
            json!({"protocol": "tcp", "port_range_min": min, "port_range_max": max}),
        )
        .await;
        assert_neutron(&r, StatusCode::BAD_REQUEST, kind, says);
    }
    for (min, max, kind, says) in icmp_bad_ranges() {
        let r = post_rule(
            &api,
            &gid,
            json!({"protocol": "icmp", "port_range_min": min, "port_range_max": max}),
        )
        .await;
        assert_neutron(&r, StatusCode::BAD_REQUEST, kind, says);
    }
    for (attrs, kind, says) in other_bad_ports() {
        let r = post_rule(&api, &gid, attrs).await;
        assert_neutron(&r, StatusCode::BAD_REQUEST, kind, says);
    }
    // Nothing of the above was stored: the group has its two egress rules.
    let (_, v) = api
        .get(
            &format!("/security-group-rules?security_group_id={gid}"),
            ALICE,
        )
        .await;
    assert_eq!(
        v["security_group_rules"].as_array().unwrap().len(),
        2,
        "{v}"
    );
}

#[tokio::test]
async fn valid_port_ranges_are_stored_as_neutron_stores_them() {
    let api = Api::new();
    let gid = group(&api, json!({"name": "ports"})).await;
    // Good ranges: ports as text, a single port, and the whole range, which
    // Neutron stores as no range at all.
    let (s, v) = post_rule(
        &api,
        &gid,
        json!({"protocol": "tcp", "port_range_min": "22", "port_range_max": "22"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["security_group_rule"]["port_range_min"], 22);
    assert_eq!(v["security_group_rule"]["port_range_max"], 22);
    let (s, v) = post_rule(
        &api,
        &gid,
        json!({"protocol": "udp", "port_range_min": 1, "port_range_max": 65535}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["security_group_rule"]["port_range_min"], Value::Null);
    assert_eq!(v["security_group_rule"]["port_range_max"], Value::Null);
    let (s, v) = post_rule(
        &api,
        &gid,
        json!({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["security_group_rule"]["port_range_min"], 8);
    assert_eq!(v["security_group_rule"]["port_range_max"], 0);
}

#[tokio::test]
async fn duplicate_rules_conflict_as_neutron_compares_them() {
    let api = Api::new();
    let gid = group(&api, json!({"name": "dups"})).await;
    let (s, first) = post_rule(
        &api,
        &gid,
        json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let rid = first["security_group_rule"]["id"].as_str().unwrap();
    let r = post_rule(
        &api,
        &gid,
        json!({"protocol": 6, "port_range_min": "22", "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}),
    )
    .await;
    assert_neutron(
        &r,
        StatusCode::CONFLICT,
        "SecurityGroupRuleExists",
        &format!("Security group rule already exists. Rule id is {rid}."),
    );
    // Another port, direction, ethertype or remote is another rule.
    for attrs in [
        json!({"protocol": "tcp", "port_range_min": 23, "port_range_max": 23}),
        json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "direction": "egress"}),
        json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "ethertype": "IPv6"}),
        json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"}),
        json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_group_id": gid}),
    ] {
        let (s, v) = post_rule(&api, &gid, attrs.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{attrs}: {v}");
    }
    // The new group's egress-any rules: `::/0` is no remote at all.
    let r = api
        .post(
            "/security-group-rules",
            ALICE,
            json!({"security_group_rule": {"security_group_id": gid, "direction": "egress",
                "ethertype": "IPv6", "remote_ip_prefix": "::/0"}}),
        )
        .await;
    assert_neutron(
        &r,
        StatusCode::CONFLICT,
        "SecurityGroupRuleExists",
        "already exists",
    );
}

#[tokio::test]
async fn remote_prefixes_keep_host_bits_and_agents_get_the_network() {
    let api = Api::new();
    let n = api.create("/networks", ADMIN, json!({"network": {}})).await;
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.0.0.0/24"}}),
    )
    .await;
    let g = api
        .create(
            "/security-groups",
            ADMIN,
            json!({"security_group": {"name": "g"}}),
        )
        .await;
    let gid = g["id"].as_str().unwrap();
    let r = api
        .create(
            "/security-group-rules",
            ADMIN,
            json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
                "protocol": "tcp", "remote_ip_prefix": "10.0.0.34/24"}}),
        )
        .await;
    assert_eq!(r["remote_ip_prefix"], "10.0.0.34/24");
    assert_eq!(r["normalized_cidr"], "10.0.0.0/24");
    let r6 = api
        .create(
            "/security-group-rules",
            ADMIN,
            json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
                "ethertype": "IPv6", "remote_ip_prefix": "2001:DB8::1"}}),
        )
        .await;
    assert_eq!(r6["remote_ip_prefix"], "2001:db8::1/128");
    assert_eq!(r6["normalized_cidr"], "2001:db8::1/128");
    let rg = api
        .create(
            "/security-group-rules",
            ADMIN,
            json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
                "remote_group_id": gid}}),
        )
        .await;
    assert_eq!(rg["remote_ip_prefix"], Value::Null);
    assert_eq!(rg["normalized_cidr"], Value::Null);
    // Advertised, so tempest's SecGroupNormalizedCidrTest runs against it.
    let (_, v) = api.get("/extensions", ALICE).await;
    assert!(
        v["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["alias"] == "security-groups-normalized-cidr"),
        "{v}"
    );
    api.create(
        "/ports",
        ADMIN,
        json!({"port": {"network_id": n["id"], "binding:host_id": "h1", "security_groups": [gid]}}),
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
    let rules = st["security_groups"][0]["rules"].as_array().unwrap();
    let sent = rules.iter().find(|x| x["id"] == r["id"]).unwrap();
    assert_eq!(sent["remote_ip_prefix"], "10.0.0.0/24", "{st}");
}

#[tokio::test]
async fn the_default_group_keeps_its_name_and_is_removed_only_by_an_admin() {
    let api = Api::new();
    let other = group(&api, json!({"name": "other"})).await;
    let (_, v) = api.get("/security-groups?name=default", ALICE).await;
    let default = v["security_groups"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/security-groups/{default}");
    for name in ["test", "default"] {
        let r = api
            .put(&path, ALICE, json!({"security_group": {"name": name}}))
            .await;
        assert_eq!(r.0, StatusCode::CONFLICT, "{name}: {}", r.1);
    }
    let r = api
        .put(&path, ALICE, json!({"security_group": {"name": "test"}}))
        .await;
    assert_neutron(
        &r,
        StatusCode::CONFLICT,
        "SecurityGroupCannotUpdateDefault",
        "Updating default security group not allowed.",
    );
    // Its description may change.
    let (s, v) = api
        .put(
            &path,
            ALICE,
            json!({"security_group": {"description": "mine"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["security_group"]["name"], "default");
    // No other group takes the name, in any case, on create or update.
    for name in ["default", "Default", "DEFAULT"] {
        let r = api
            .put(
                &format!("/security-groups/{other}"),
                ALICE,
                json!({"security_group": {"name": name}}),
            )
            .await;
        assert_neutron(
            &r,
            StatusCode::CONFLICT,
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        );
        let r = api
            .post(
                "/security-groups",
                ALICE,
                json!({"security_group": {"name": name}}),
            )
            .await;
        assert_neutron(
            &r,
            StatusCode::CONFLICT,
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        );
    }
    // In use: 409 for everyone, the admin too (Neutron checks use first).
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let p = api
        .create("/ports", ALICE, json!({"port": {"network_id": n["id"]}}))
        .await;
    assert_eq!(p["security_groups"], json!([default]));
    let pid = p["id"].as_str().unwrap();
    assert_neutron(
        &api.delete(&path, ADMIN).await,
        StatusCode::CONFLICT,
        "SecurityGroupInUse",
        &format!("Security Group {default} in use."),
    );
    let (s, v) = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"security_groups": []}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Unused: still not alice's to remove; an admin may.
    assert_neutron(
        &api.delete(&path, ALICE).await,
        StatusCode::CONFLICT,
        "SecurityGroupCannotRemoveDefault",
        "Insufficient rights for removing default security group.",
    );
    assert_eq!(api.delete(&path, ADMIN).await.0, StatusCode::NO_CONTENT);
    let (_, v) = api.get("/security-groups?name=default", ALICE).await;
    assert_eq!(v["security_groups"], json!([]));
    // The project's next port write brings a new default group
    // (neutron-tempest-plugin's test_security_group_recreated_on_port_update).
    let (s, v) = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"name": "update"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = api.get("/security-groups?name=default", ALICE).await;
    let again = v["security_groups"].as_array().unwrap();
    assert_eq!(again.len(), 1, "{v}");
    assert_ne!(again[0]["id"], json!(default));
    assert_eq!(
        again[0]["security_group_rules"].as_array().unwrap().len(),
        4
    );
}

#[tokio::test]
async fn bulk_create_of_groups_and_rules_is_all_or_nothing() {
    let api = Api::new();
    // Neutron takes the items bare or wrapped, as the tempest plugin sends them.
    let v = api
        .create(
            "/security-groups",
            ALICE,
            json!({"security_groups": [
                {"security_group": {"name": "a", "stateful": false}},
                {"name": "b", "description": "bare"},
            ]}),
        )
        .await;
    let made = v.as_array().unwrap();
    assert_eq!(made.len(), 2, "{v}");
    assert_eq!(made[0]["name"], "a");
    assert_eq!(made[0]["stateful"], false);
    assert_eq!(made[1]["name"], "b");
    assert_eq!(made[1]["description"], "bare");
    assert_eq!(made[1]["stateful"], true);
    for g in made {
        assert_eq!(
            g["security_group_rules"].as_array().unwrap().len(),
            2,
            "{g}"
        );
    }
    let count = |v: &Value| v["security_groups"].as_array().unwrap().len();
    let before = count(&api.get("/security-groups", ALICE).await.1);
    assert_eq!(before, 3, "a, b and the default group");
    let rev = api.net.revision();
    // One bad item: nothing is created, whichever item it is.
    for bad in [
        json!({"security_groups": [{"name": "c"}, {"security_group": {"name": "default"}}]}),
        json!({"security_groups": [{"name": "x".repeat(256)}, {"name": "d"}]}),
        json!({"security_groups": [{"name": "e"}, {"security_group": {"name": "f", "bogus": 1}}]}),
    ] {
        let (s, v) = api.post("/security-groups", ALICE, bad.clone()).await;
        assert!(
            s == StatusCode::CONFLICT || s == StatusCode::BAD_REQUEST,
            "{bad}: {s} {v}"
        );
        assert!(v["NeutronError"]["message"].is_string(), "{v}");
    }
    assert_eq!(api.net.revision(), rev);
    assert_eq!(count(&api.get("/security-groups", ALICE).await.1), before);
    // Rules in bulk too; a duplicate among them refuses them all.
    let gid = made[1]["id"].as_str().unwrap();
    let rule = |port: u32| {
        json!({"security_group_id": gid, "direction": "ingress", "protocol": "tcp",
               "port_range_min": port, "port_range_max": port})
    };
    let v = api
        .create(
            "/security-group-rules",
            ALICE,
            json!({"security_group_rules": [rule(22), {"security_group_rule": rule(80)}]}),
        )
        .await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let rev = api.net.revision();
    let r = api
        .post(
            "/security-group-rules",
            ALICE,
            json!({"security_group_rules": [rule(443), rule(443)]}),
        )
        .await;
    assert_neutron(
        &r,
        StatusCode::CONFLICT,
        "SecurityGroupRuleExists",
        "already exists",
    );
    assert_eq!(api.net.revision(), rev);
    let (_, v) = api
        .get(
            &format!("/security-group-rules?security_group_id={gid}"),
            ALICE,
        )
        .await;
    assert_eq!(
        v["security_group_rules"].as_array().unwrap().len(),
        4,
        "{v}"
    );
}

#[tokio::test]
async fn a_group_named_twice_on_a_port_is_refused() {
    let api = Api::new();
    let gid = group(&api, json!({"name": "web"})).await;
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": n["id"], "security_groups": [gid, gid]}}),
        )
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        &format!(
            "Invalid input for security_groups. Reason: Duplicate items in the list: '{gid}'."
        ),
    );
    let p = api
        .create("/ports", ALICE, json!({"port": {"network_id": n["id"]}}))
        .await;
    let pid = p["id"].as_str().unwrap();
    let r = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"security_groups": [gid, gid]}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "Duplicate items in the list");
    let (_, v) = api.get(&format!("/ports/{pid}"), ALICE).await;
    assert_eq!(v["port"]["security_groups"], p["security_groups"]);
    // Each once is fine.
    let (s, v) = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"security_groups": [gid, p["security_groups"][0]]}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Missing groups are named in the 404.
    let r = api
        .put(
            &format!("/ports/{pid}"),
            ALICE,
            json!({"port": {"security_groups": [gid, "no-such-1", "no-such-2"]}}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "no-such-1, no-such-2");
}

#[tokio::test]
async fn every_rule_of_a_group_is_shown_in_show_and_list() {
    let api = Api::new();
    let gid = group(&api, json!({"name": "all"})).await;
    for (p, port) in [("tcp", 22), ("udp", 53), ("sctp", 9)] {
        let (s, v) = post_rule(
            &api,
            &gid,
            json!({"protocol": p, "port_range_min": port, "port_range_max": port}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // A rule an admin adds to alice's group is hers to see too.
    let (s, v) = api
        .post(
            "/security-group-rules",
            ADMIN,
            json!({"security_group_rule": {"security_group_id": gid, "direction": "ingress",
                "protocol": "igmp"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let ids = |rules: &Value| {
        let mut v: Vec<String> = rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let (_, listed) = api
        .get(
            &format!("/security-group-rules?security_group_id={gid}"),
            ALICE,
        )
        .await;
    let want = ids(&listed["security_group_rules"]);
    assert_eq!(want.len(), 6, "2 egress + 4: {listed}");
    let (_, shown) = api.get(&format!("/security-groups/{gid}"), ALICE).await;
    assert_eq!(ids(&shown["security_group"]["security_group_rules"]), want);
    let (_, groups) = api.get("/security-groups", ALICE).await;
    let g = groups["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == json!(gid))
        .unwrap();
    assert_eq!(ids(&g["security_group_rules"]), want);
    // Each shown rule is the rule itself.
    let one = &shown["security_group"]["security_group_rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["protocol"] == "udp")
        .unwrap()
        .clone();
    let (_, alone) = api
        .get(
            &format!("/security-group-rules/{}", one["id"].as_str().unwrap()),
            ALICE,
        )
        .await;
    assert_eq!(&alone["security_group_rule"], one);
}

#[tokio::test]
async fn stateless_groups_do_not_mix_with_stateful_ones_nor_flip_in_use() {
    let api = Api::new();
    let stateless = api
        .create(
            "/security-groups",
            ALICE,
            json!({"security_group": {"name": "sl", "stateful": false}}),
        )
        .await;
    assert_eq!(stateless["stateful"], false);
    // Neutron gives a stateless group the same two egress rules.
    let rules = stateless["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r["direction"] == "egress"));
    let sl = stateless["id"].as_str().unwrap().to_string();
    let sf = group(&api, json!({"name": "sf", "stateful": "true"})).await;
    let (_, v) = api.get(&format!("/security-groups/{sl}"), ALICE).await;
    assert_eq!(v["security_group"]["stateful"], false);
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let conflict = "Cannot apply both stateful and stateless security groups on the same port";
    let r = api
        .post(
            "/ports",
            ALICE,
            json!({"port": {"network_id": n["id"], "security_groups": [sf, sl]}}),
        )
        .await;
    assert_neutron(&r, StatusCode::CONFLICT, "SecurityGroupConflict", conflict);
    for (first, then) in [(&sl, &sf), (&sf, &sl)] {
        let p = api
            .create(
                "/ports",
                ALICE,
                json!({"port": {"network_id": n["id"], "security_groups": [first]}}),
            )
            .await;
        let r = api
            .put(
                &format!("/ports/{}", p["id"].as_str().unwrap()),
                ALICE,
                json!({"port": {"security_groups": [first, then]}}),
            )
            .await;
        assert_neutron(&r, StatusCode::CONFLICT, "SecurityGroupConflict", conflict);
    }
    // Both groups are in use now: neither flips; setting the value it
    // already has is no flip.
    for (g, now) in [(&sl, false), (&sf, true)] {
        let path = format!("/security-groups/{g}");
        let r = api
            .put(&path, ALICE, json!({"security_group": {"stateful": !now}}))
            .await;
        assert_neutron(
            &r,
            StatusCode::CONFLICT,
            "SecurityGroupInUse",
            &format!("Security Group {g} in use."),
        );
        let (s, v) = api
            .put(
                &path,
                ALICE,
                json!({"security_group": {"stateful": now, "name": "same"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["security_group"]["stateful"], now);
    }
    // An unused group flips both ways.
    let free = group(&api, json!({"name": "free"})).await;
    for want in [false, true] {
        let (s, v) = api
            .put(
                &format!("/security-groups/{free}"),
                ALICE,
                json!({"security_group": {"stateful": want}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["security_group"]["stateful"], want);
    }
    // Agents learn what each group is.
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": n["id"], "project_id": "p-alice",
                "binding:host_id": "h1", "security_groups": [sl]}}),
        )
        .await;
    assert_eq!(p["security_groups"], json!([sl]));
    let st = api.net.host_state("h1");
    let g = st.security_groups.iter().find(|g| g.id == sl).unwrap();
    assert!(!g.stateful);
}
