//! HTTP tests: version discovery, auth, extensions, networks and segments.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn version_discovery_and_auth() {
    let api = Api::new();
    let (s, v) = api.call("GET", "/networking", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["versions"][0]["id"], "v2.0");
    assert_eq!(
        v["versions"][0]["links"][0]["href"],
        "http://ctrl.test:8080/networking/v2.0/"
    );
    let r = api
        .call("GET", "/networking/v2.0/routers", Some(ALICE), None)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "routers");
    let (s, v) = api.call("GET", "/networking/v2.0/", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["collection"] == "networks"));

    let r = api
        .call("GET", "/networking/v2.0/networks", None, None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "Authentication");
    let r = api
        .call("GET", "/networking/v2.0/networks", Some("forged"), None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "Authentication");

    let (s, v) = api.get("/extensions", ALICE).await;
    assert_eq!(s, StatusCode::OK);
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    for want in [
        "provider",
        "binding",
        "security-group",
        "port-security",
        "allowed-address-pairs",
        "external-net",
        // Neutron's aliases for the MTU attribute and for its being writable
        // (clients look for these names; tempest's NetworksMtuTestJSON).
        "net-mtu",
        "net-mtu-writable",
    ] {
        assert!(aliases.contains(&want), "{want} missing from {aliases:?}");
    }
    assert!(!aliases.contains(&"router"), "no L3 here");
    assert_eq!(
        api.get("/extensions/provider", ALICE).await.0,
        StatusCode::OK
    );
    assert_error(
        &api.get("/extensions/router", ALICE).await,
        StatusCode::NOT_FOUND,
        "router",
    );
}

#[tokio::test]
async fn provider_networks_admin_only_and_segment_conflicts() {
    let api = Api::new();
    let n = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"name": "pv", "provider:network_type": "vlan",
            "provider:physical_network": "physnet", "provider:segmentation_id": 200}}),
        )
        .await;
    assert_eq!(n["provider:segmentation_id"], 200);
    assert_eq!(n["status"], "ACTIVE");
    assert_eq!(n["mtu"], 1500);
    assert_eq!(n["project_id"], "p-admin");
    assert_eq!(n["tenant_id"], "p-admin");

    // Same VLAN on the same physnet: 409; outside 1..4094 or unknown physnet: 400.
    let again = json!({"network": {"provider:network_type": "vlan", "provider:physical_network": "physnet",
        "provider:segmentation_id": 200}});
    assert_error(
        &api.post("/networks", ADMIN, again).await,
        StatusCode::CONFLICT,
        "200",
    );
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "physnet", "provider:segmentation_id": 5000}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "provider:segmentation_id");
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "nowhere", "provider:segmentation_id": 5}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "provider:physical_network");
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "token-ring"}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "provider:network_type");
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "flat",
        "provider:physical_network": "physnet", "provider:segmentation_id": 3}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "provider:segmentation_id");
    let flat = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "flat",
        "provider:physical_network": "physnet"}}),
        )
        .await;
    assert_eq!(flat["provider:segmentation_id"], serde_json::Value::Null);
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "flat",
        "provider:physical_network": "physnet"}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "physnet");
    let vx = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vxlan",
        "provider:segmentation_id": 77}}),
        )
        .await;
    assert_eq!(vx["mtu"], 1450);
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vxlan",
        "provider:segmentation_id": 77}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "77");

    // A member may not set provider attributes, shared or router:external.
    for body in [
        json!({"network": {"provider:network_type": "vlan", "provider:physical_network": "physnet", "provider:segmentation_id": 300}}),
        json!({"network": {"provider:segmentation_id": 300}}),
        json!({"network": {"shared": true}}),
        json!({"network": {"router:external": true}}),
    ] {
        assert_error(
            &api.post("/networks", ALICE, body).await,
            StatusCode::FORBIDDEN,
            "disallowed by policy",
        );
    }
    // A reader may not create at all.
    assert_error(
        &api.post("/networks", READER, json!({"network": {}})).await,
        StatusCode::FORBIDDEN,
        "create_network",
    );
    // Provider attributes cannot change afterwards.
    let id = n["id"].as_str().unwrap();
    let r = api
        .put(
            &format!("/networks/{id}"),
            ADMIN,
            json!({"network": {"provider:segmentation_id": 201}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "provider");
}

#[tokio::test]
async fn tenant_networks_draw_segments_and_release_them() {
    let api = Api::new();
    let a = api
        .create("/networks", ALICE, json!({"network": {"name": "a"}}))
        .await;
    assert!(
        a.get("provider:segmentation_id").is_none(),
        "members do not see provider attributes: {a}"
    );
    let b = api
        .create("/networks", ALICE, json!({"network": {"name": "b"}}))
        .await;
    let seg = |id: &str| {
        let api = &api;
        let id = id.to_string();
        async move {
            api.get(&format!("/networks/{id}"), ADMIN).await.1["network"]
                ["provider:segmentation_id"]
                .clone()
        }
    };
    assert_eq!(seg(a["id"].as_str().unwrap()).await, 100);
    assert_eq!(seg(b["id"].as_str().unwrap()).await, 101);
    // Range physnet:100:101 is exhausted.
    let r = api
        .post("/networks", BOB, json!({"network": {"name": "c"}}))
        .await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "No tenant network");
    // Admin may not take a tenant-held VLAN either.
    let r = api
        .post(
            "/networks",
            ADMIN,
            json!({"network": {"provider:network_type": "vlan",
        "provider:physical_network": "physnet", "provider:segmentation_id": 100}}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "100");
    // Delete releases the segment.
    assert_eq!(
        api.delete(&format!("/networks/{}", a["id"].as_str().unwrap()), ALICE)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let c = api
        .create("/networks", BOB, json!({"network": {"name": "c"}}))
        .await;
    assert_eq!(seg(c["id"].as_str().unwrap()).await, 100);
    assert_eq!(c["project_id"], "p-bob");
}

#[tokio::test]
async fn networks_are_project_scoped_and_shared_ones_visible() {
    let api = Api::new();
    let a = api
        .create(
            "/networks",
            ALICE,
            json!({"network": {"name": "alice-net"}}),
        )
        .await;
    let shared = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"name": "pub", "shared": true}}),
        )
        .await;
    let aid = a["id"].as_str().unwrap();
    // Bob: 404 (not 403) for alice's network, on every verb.
    assert_error(
        &api.get(&format!("/networks/{aid}"), BOB).await,
        StatusCode::NOT_FOUND,
        aid,
    );
    assert_error(
        &api.put(
            &format!("/networks/{aid}"),
            BOB,
            json!({"network": {"name": "x"}}),
        )
        .await,
        StatusCode::NOT_FOUND,
        aid,
    );
    assert_error(
        &api.delete(&format!("/networks/{aid}"), BOB).await,
        StatusCode::NOT_FOUND,
        aid,
    );
    let (_, list) = api.get("/networks", BOB).await;
    let names: Vec<&str> = list["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["pub"]);
    // Shared: visible to bob, but not his to change.
    let sid = shared["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/networks/{sid}"), BOB).await.0,
        StatusCode::OK
    );
    assert_error(
        &api.put(
            &format!("/networks/{sid}"),
            BOB,
            json!({"network": {"name": "mine"}}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "update_network",
    );
    // Admin sees all.
    let (_, list) = api.get("/networks", ADMIN).await;
    assert_eq!(list["networks"].as_array().unwrap().len(), 2);
    // Alice renames hers.
    let (s, v) = api
        .put(
            &format!("/networks/{aid}"),
            ALICE,
            json!({"network": {"name": "renamed", "admin_state_up": false}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["network"]["name"], "renamed");
    assert_eq!(v["network"]["admin_state_up"], false);
    assert_eq!(v["network"]["revision_number"], 1);
}

#[tokio::test]
async fn bad_network_input_names_the_field() {
    let api = Api::new();
    let r = api
        .post(
            "/networks",
            ALICE,
            json!({"network": {"admin_state_up": "maybe"}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "admin_state_up");
    let r = api
        .post("/networks", ALICE, json!({"network": {"name": 42}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "name");
    let r = api
        .post("/networks", ALICE, json!({"network": {"colour": "blue"}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "colour");
    let r = api
        .post("/networks", ALICE, json!({"network": {"mtu": 9000}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "mtu");
    let r = api
        .post("/networks", ALICE, json!({"network": {"status": "DOWN"}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "status");
    let r = api.post("/networks", ALICE, json!({"net": {}})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "network");
    let r = api
        .post(
            "/networks",
            ALICE,
            json!({"network": {"project_id": "p-bob"}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "requires admin privileges");
    let (s, v) = api
        .call("POST", "/networking/v2.0/networks", Some(ALICE), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api
        .app
        .clone()
        .oneshot_raw("POST", "/networking/v2.0/networks", ALICE, "{not json")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.contains("Malformed"), "{v}");
}

#[tokio::test]
async fn list_filters_fields_sorting_and_pagination() {
    let api = Api::new();
    for name in ["n3", "n1", "n2", "n5", "n4"] {
        api.create(
            "/networks",
            ADMIN,
            json!({"network": {"name": name, "provider:network_type": "local"}}),
        )
        .await;
    }
    let (_, v) = api
        .get("/networks?name=n2&fields=id&fields=name", ADMIN)
        .await;
    let items = v["networks"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_object().unwrap().len(), 2);
    let (_, v) = api.get("/networks?name=n2&name=n4", ADMIN).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 2);
    let (_, v) = api
        .get("/networks?shared=False&admin_state_up=true", ADMIN)
        .await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 5);

    let mut seen = Vec::new();
    let mut url = "/networks?sort_key=name&sort_dir=desc&limit=2".to_string();
    loop {
        let (s, v) = api.get(&url, ADMIN).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        seen.extend(
            v["networks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_string()),
        );
        let next = v["networks_links"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["rel"] == "next"))
            .map(|l| l["href"].as_str().unwrap().to_string());
        match next {
            Some(href) => {
                assert!(
                    href.starts_with("http://ctrl.test:8080/networking/v2.0/networks?"),
                    "{href}"
                );
                url = href
                    .trim_start_matches("http://ctrl.test:8080/networking/v2.0")
                    .to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, vec!["n5", "n4", "n3", "n2", "n1"]);
    assert_error(
        &api.get("/networks?sort_key=colour", ADMIN).await,
        StatusCode::BAD_REQUEST,
        "sort_key",
    );
    assert_error(
        &api.get("/networks?limit=many", ADMIN).await,
        StatusCode::BAD_REQUEST,
        "limit",
    );
    let (_, v) = api.get("/networks?fields=name", ADMIN).await;
    let id = {
        let (_, all) = api.get("/networks", ADMIN).await;
        all["networks"][0]["id"].as_str().unwrap().to_string()
    };
    assert!(v["networks"][0].get("id").is_none());
    let (_, one) = api
        .get(&format!("/networks/{id}?fields=status"), ADMIN)
        .await;
    assert_eq!(one["network"], json!({"status": "ACTIVE"}));
}

trait RawCall {
    async fn oneshot_raw(
        self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, String);
}

impl RawCall for axum::Router {
    async fn oneshot_raw(
        self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-auth-token", token)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let resp = self.oneshot(req).await.unwrap();
        let s = resp.status();
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        (s, String::from_utf8_lossy(&b).into_owned())
    }
}

/// Answers the framework gives (a method a path does not take, a body over
/// the size limit) carry Neutron's JSON body like every other error.
#[tokio::test]
async fn method_not_allowed_and_too_large_are_neutron_errors() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    let path = format!("/networking/v2.0/networks/{}", n["id"].as_str().unwrap());
    for (method, path) in [
        ("PATCH", path.as_str()),
        ("POST", path.as_str()),
        ("DELETE", "/networking/v2.0/networks"),
    ] {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-auth-token", ALICE)
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{\"network\": {}}"))
            .unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(resp.headers().contains_key("allow"), "{method} {path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {body:?}"));
        assert_eq!(v["NeutronError"]["type"], "HTTPMethodNotAllowed", "{v}");
        assert!(
            v["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains(method),
            "{v}"
        );
    }
    // Over the limit (axum's 2 MiB default): 413, a JSON body, and the
    // connection closed since the rest of the body was never read.
    let big = format!(
        "{{\"network\": {{\"name\": \"x\", \"description\": \"{}\"}}}}",
        "a".repeat(3 << 20)
    );
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/networking/v2.0/networks")
        .header("x-auth-token", ALICE)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(big))
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["connection"], "close");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(
        v["NeutronError"]["type"], "HTTPRequestEntityTooLarge",
        "{v}"
    );
    // Nothing was created.
    let (_, v) = api.get("/networks?name=x", ALICE).await;
    assert_eq!(v["networks"], json!([]));
}

/// Neutron counts a name's length in characters, not UTF-8 bytes: 255
/// Chinese characters (765 bytes) are a valid name, 256 are not.
#[tokio::test]
async fn name_limits_count_characters() {
    let api = Api::new();
    let name = "网".repeat(255);
    let n = api
        .create(
            "/networks",
            ALICE,
            json!({"network": {"name": name, "description": name}}),
        )
        .await;
    assert_eq!(n["name"], name);
    let (_, v) = api
        .get(&format!("/networks/{}", n["id"].as_str().unwrap()), ALICE)
        .await;
    assert_eq!(v["network"]["name"], name);
    let long = "网".repeat(256);
    for body in [
        json!({"network": {"name": long}}),
        json!({"network": {"description": long}}),
    ] {
        let r = api.post("/networks", ALICE, body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "exceeds maximum length of 255");
    }
    let p = api
        .create(
            "/ports",
            ALICE,
            json!({"port": {"network_id": n["id"], "name": name}}),
        )
        .await;
    assert_eq!(p["name"], name);
    let r = api
        .post(
            "/security-groups",
            ALICE,
            json!({"security_group": {"name": long}}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "security_group.name");
}

/// `router:external`: false by default, set by an admin, shown and
/// filtered on; an external network is visible to every project (Neutron's
/// `get_network`: owner, shared or external), though not theirs to change.
#[tokio::test]
async fn router_external_networks() {
    let api = Api::new();
    let plain = api.create("/networks", ALICE, json!({"network": {}})).await;
    assert_eq!(plain["router:external"], false);
    let r = api
        .post(
            "/networks",
            ALICE,
            json!({"network": {"router:external": true}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "create_network:router:external");
    let ext = api
        .create(
            "/networks",
            ADMIN,
            json!({"network": {"name": "public", "router:external": true}}),
        )
        .await;
    assert_eq!(ext["router:external"], true);
    let eid = ext["id"].as_str().unwrap();
    let (_, v) = api.get("/networks?router:external=true", ADMIN).await;
    let ids: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![eid]);
    let (_, v) = api.get("/networks?router:external=False", ADMIN).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    assert_eq!(v["networks"][0]["id"], plain["id"]);
    // Bob sees the external network, but may not change it.
    let (s, v) = api.get(&format!("/networks/{eid}"), BOB).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["network"]["router:external"], true);
    let (_, v) = api.get("/networks?router:external=true", BOB).await;
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    let r = api
        .put(
            &format!("/networks/{eid}"),
            BOB,
            json!({"network": {"name": "x"}}),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "update_network");
    // ...nor plug into it, nor see its subnets (tempest's
    // test_external_network_visibility: "Public subnets visible").
    api.create(
        "/subnets",
        ADMIN,
        json!({"subnet": {"network_id": eid, "cidr": "203.0.113.0/24"}}),
    )
    .await;
    let r = api
        .post("/ports", BOB, json!({"port": {"network_id": eid}}))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "not allowed to create port");
    let (_, v) = api.get(&format!("/subnets?network_id={eid}"), BOB).await;
    assert_eq!(v["subnets"], json!([]));
    // The admin turns it off: gone from bob's view.
    let (s, _) = api
        .put(
            &format!("/networks/{eid}"),
            ADMIN,
            json!({"network": {"router:external": false}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        api.get(&format!("/networks/{eid}"), BOB).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Neutron's `_validate_privileges`: a project other than the caller's in
/// a create body is a 400 for non-admins; an admin may name any project,
/// even one identity does not know (Neutron does not ask keystone).
#[tokio::test]
async fn other_project_in_a_create_body() {
    let api = Api::new();
    let n = api.create("/networks", ALICE, json!({"network": {}})).await;
    api.create(
        "/subnets",
        ALICE,
        json!({"subnet": {"network_id": n["id"], "cidr": "10.0.0.0/24"}}),
    )
    .await;
    for (path, body) in [
        ("/networks", json!({"network": {"project_id": "p-bob"}})),
        ("/networks", json!({"network": {"tenant_id": "p-bob"}})),
        (
            "/ports",
            json!({"port": {"network_id": n["id"], "project_id": "p-bob"}}),
        ),
        (
            "/security-groups",
            json!({"security_group": {"name": "g", "project_id": "p-bob"}}),
        ),
    ] {
        let r = api.post(path, ALICE, body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "requires admin privileges");
    }
    // Naming one's own project is fine.
    api.create(
        "/ports",
        ALICE,
        json!({"port": {"network_id": n["id"], "project_id": "p-alice"}}),
    )
    .await;
    let p = api
        .create(
            "/ports",
            ADMIN,
            json!({"port": {"network_id": n["id"], "project_id": "no-such-project"}}),
        )
        .await;
    assert_eq!(p["project_id"], "no-such-project");
    assert_eq!(p["tenant_id"], "no-such-project");
}

/// Under `--policy-permissive` a member's provider network is allowed, and
/// the denial it would have been is recorded in the state directory's one
/// records file, so `weft policy workplan` plans networking with identity.
#[tokio::test]
async fn permissive_mode_records_networking_denials_for_the_workplan() {
    let api = Api::permissive();
    let (st, body) = api
        .call(
            "POST",
            "/networking/v2.0/networks",
            Some(ALICE),
            Some(
                json!({"network": {"name": "perm", "provider:network_type": "vlan",
                "provider:physical_network": "physnet", "provider:segmentation_id": 101}}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let path = weft_identity::policy::records_path(api.backend.dir.path());
    let recs = weft_identity::policy::read_records(&path).unwrap();
    assert!(
        recs.iter()
            .any(|r| r.action == "create_network:provider:network_type" && r.user_id == "u-alice"),
        "{recs:?}"
    );
    let plan = weft_identity::policy::workplan(&recs);
    assert!(
        plan.grants.iter().any(|g| g.user_id == "u-alice"
            && g.role == "admin"
            && g.actions
                .iter()
                .any(|a| a == "create_network:provider:network_type")),
        "{plan:?}"
    );
}

/// Neutron's revision-if-match: `If-Match: revision_number=N` makes an
/// update or delete conditional on the resource still being at revision N
/// (412 otherwise, nothing written); without the header nothing changes
/// (tempest test_update_network_constrained_by_revision).
#[tokio::test]
async fn writes_constrained_by_revision() {
    let api = Api::new();
    let n = api
        .create("/networks", ALICE, json!({"network": {"name": "rev"}}))
        .await;
    let id = n["id"].as_str().unwrap();
    let path = format!("/networking/v2.0/networks/{id}");
    let rev = n["revision_number"].as_u64().unwrap();
    let put = |want: String| {
        let (api, path) = (api.clone(), path.clone());
        async move {
            api.call_with(
                "PUT",
                &path,
                Some(ALICE),
                Some(json!({"network": {"name": format!("at {want}")}})),
                &[("if-match", &format!("revision_number={want}"))],
            )
            .await
        }
    };
    for stale in [rev as i64 - 1, rev as i64 + 1] {
        let r = put(stale.to_string()).await;
        assert_error(&r, StatusCode::PRECONDITION_FAILED, "Constrained to");
    }
    let (_, v) = api.get(&format!("/networks/{id}"), ALICE).await;
    assert_eq!(
        v["network"]["name"], "rev",
        "a failed constraint writes nothing"
    );
    assert_eq!(v["network"]["revision_number"], rev);
    let (s, v) = put(rev.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["network"]["revision_number"], rev + 1);
    let r = put("x".into()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "revision_number=<int>");
    // Another project's network stays a 404, whatever the constraint.
    let r = api
        .call_with(
            "PUT",
            &path,
            Some(BOB),
            Some(json!({"network": {"name": "b"}})),
            &[("if-match", "revision_number=0")],
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, id);
    // Deletes too.
    let del = |want: u64| {
        let (api, path) = (api.clone(), path.clone());
        async move {
            api.call_with(
                "DELETE",
                &path,
                Some(ALICE),
                None,
                &[("if-match", &format!("revision_number={want}"))],
            )
            .await
        }
    };
    assert_error(
        &del(rev).await,
        StatusCode::PRECONDITION_FAILED,
        "Constrained to",
    );
    assert_eq!(del(rev + 1).await.0, StatusCode::NO_CONTENT);
    let (_, v) = api.get("/extensions/revision-if-match", ALICE).await;
    assert_eq!(v["extension"]["alias"], "revision-if-match");
}
