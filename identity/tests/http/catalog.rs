use crate::common::*;
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn regions_services_endpoints() {
    let h = H::new().await;
    assert_eq!(h.get("/v3/regions/RegionOne").await.status, StatusCode::OK);
    let r = h
        .post(
            "/v3/regions",
            json!({"region": {"id": "R2", "description": "two", "parent_region_id": "RegionOne"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["region"]["parent_region_id"], "RegionOne");
    assert_eq!(
        h.post("/v3/regions", json!({"region": {"id": "R2"}}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.post(
            "/v3/regions",
            json!({"region": {"parent_region_id": "nope"}})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/v3/regions?parent_region_id=RegionOne").await.body["regions"][0]["id"],
        "R2"
    );
    assert_eq!(
        h.delete("/v3/regions/RegionOne").await.status,
        StatusCode::FORBIDDEN
    );
    // a parent that would make a cycle
    assert_eq!(
        h.patch(
            "/v3/regions/RegionOne",
            json!({"region": {"parent_region_id": "R2"}})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    let r = h
        .patch("/v3/regions/R2", json!({"region": {"description": "2"}}))
        .await;
    assert_eq!(r.body["region"]["description"], "2");

    let s = h
        .create(
            "/v3/services",
            "service",
            json!({"type": "network", "name": "neutron"}),
        )
        .await;
    assert_eq!(
        h.get("/v3/services?type=network").await.body["services"][0]["id"],
        s
    );
    let r = h.post("/v3/endpoints", json!({"endpoint": {"service_id": s, "interface": "public", "url": "http://x/net", "region_id": "R2"}})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let e = r.body["endpoint"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["endpoint"]["region"], "R2");
    assert_eq!(
        h.post(
            "/v3/endpoints",
            json!({"endpoint": {"service_id": s, "interface": "sideways", "url": "u"}})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.post(
            "/v3/endpoints",
            json!({"endpoint": {"service_id": "nope", "interface": "public", "url": "u"}})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get(&format!("/v3/endpoints?service_id={s}")).await.body["endpoints"][0]["id"],
        e
    );
    let r = h
        .patch(
            &format!("/v3/endpoints/{e}"),
            json!({"endpoint": {"url": "http://y/net"}}),
        )
        .await;
    assert_eq!(r.body["endpoint"]["url"], "http://y/net");
    // the new service is in the token catalog
    let t = h
        .login("admin", ADMIN_PW, project_scope(&h.admin_project))
        .await;
    let cat = t.body["token"]["catalog"].as_array().unwrap();
    assert!(cat
        .iter()
        .any(|c| c["type"] == "network" && c["endpoints"][0]["url"] == "http://y/net"));
    // disabled services leave the catalog; deleting a service takes its endpoints
    h.patch(
        &format!("/v3/services/{s}"),
        json!({"service": {"enabled": false}}),
    )
    .await;
    let cat = h.get("/v3/auth/catalog").await.body["catalog"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!cat.iter().any(|c| c["type"] == "network"));
    assert_eq!(
        h.delete(&format!("/v3/services/{s}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(&format!("/v3/endpoints/{e}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.delete("/v3/regions/R2").await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn register_service_is_idempotent_and_follows_url() {
    let h = H::new().await;
    let id = h.id.clone();
    blocking(move || id.register_service("network", "neutron", "http://a/networking"))
        .await
        .unwrap();
    let id = h.id.clone();
    blocking(move || id.register_service("network", "neutron", "http://a/networking"))
        .await
        .unwrap();
    assert_eq!(
        h.get("/v3/services?type=network").await.body["services"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let id = h.id.clone();
    blocking(move || id.register_service("network", "neutron", "http://b/networking"))
        .await
        .unwrap();
    let eps = h.get("/v3/endpoints").await.body["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    let net: Vec<_> = eps
        .iter()
        .filter(|e| e["url"].as_str().unwrap().contains("networking"))
        .collect();
    assert_eq!(net.len(), 3);
    assert!(net.iter().all(|e| e["url"] == "http://b/networking"));
}

/// Keystone's v2-compatibility rule: an endpoint named with the legacy
/// `region` attribute (and no `region_id`) auto-creates an unknown region, on
/// create and on update; `region_id` naming an unknown region stays a 400.
#[tokio::test]
async fn legacy_region_attribute_creates_the_region() {
    let h = H::new().await;
    let s = h
        .create(
            "/v3/services",
            "service",
            json!({"type": "network", "name": "neutron"}),
        )
        .await;
    let r = h
        .post(
            "/v3/endpoints",
            json!({"endpoint": {"service_id": s, "interface": "public", "url": "http://x/net", "region": "LegacyOne"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["endpoint"]["region_id"], "LegacyOne");
    assert_eq!(r.body["endpoint"]["region"], "LegacyOne");
    let e = r.body["endpoint"]["id"].as_str().unwrap().to_string();
    let reg = h.get("/v3/regions/LegacyOne").await;
    assert_eq!(reg.status, StatusCode::OK);
    assert_eq!(
        reg.body["region"]["parent_region_id"],
        serde_json::Value::Null
    );

    // the same legacy name again reuses the region rather than failing
    let r = h
        .post(
            "/v3/endpoints",
            json!({"endpoint": {"service_id": s, "interface": "internal", "url": "http://x/net", "region": "LegacyOne"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // update with the legacy attribute also creates
    let r = h
        .patch(
            &format!("/v3/endpoints/{e}"),
            json!({"endpoint": {"region": "LegacyTwo"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["endpoint"]["region_id"], "LegacyTwo");
    assert_eq!(h.get("/v3/regions/LegacyTwo").await.status, StatusCode::OK);

    // region_id naming an unknown region is still refused, and creates nothing
    for body in [
        json!({"endpoint": {"service_id": s, "interface": "public", "url": "u", "region_id": "Nowhere"}}),
        json!({"endpoint": {"service_id": s, "interface": "public", "url": "u", "region_id": "Nowhere", "region": "Nowhere"}}),
    ] {
        assert_eq!(
            h.post("/v3/endpoints", body).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        h.patch(
            &format!("/v3/endpoints/{e}"),
            json!({"endpoint": {"region_id": "Nowhere"}}),
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get("/v3/regions/Nowhere").await.status,
        StatusCode::NOT_FOUND
    );
    // a legacy region name that is not a valid region id is a 400, not a 500
    assert_eq!(
        h.post(
            "/v3/endpoints",
            json!({"endpoint": {"service_id": s, "interface": "public", "url": "u", "region": ""}}),
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
}
