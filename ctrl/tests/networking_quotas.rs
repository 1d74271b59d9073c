//! HTTP tests of the read-only networking quotas (what `openstack quota
//! show` reads beside Nova's): every limit unlimited, usage counted per
//! project in details.json, another project's quotas an admin's, and
//! setting them refused.

mod common;
use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn quotas_are_unlimited_with_usage_and_cannot_be_set() {
    let api = Api::new();
    api.create("/networks", ALICE, json!({"network": {"name": "a"}}))
        .await;
    let (s, v) = api.get("/quotas/p-alice", ALICE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["quota"]["network"], -1);
    assert_eq!(v["quota"]["port"], -1);
    let (s, v) = api.get("/quotas/p-alice/default", READER).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["quota"]["security_group"], -1);
    let (s, v) = api.get("/quotas/p-alice/details.json", ALICE).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["quota"]["network"],
        json!({"limit": -1, "used": 1, "reserved": 0})
    );
    assert_eq!(v["quota"]["subnet"]["used"], 0);
    let r = api.get("/quotas/p-alice", BOB).await;
    assert_error(&r, StatusCode::FORBIDDEN, "get_quota");
    let (s, v) = api.get("/quotas/p-alice/details", ADMIN).await;
    assert_eq!(s, StatusCode::OK, "openstacksdk's path");
    assert_eq!(v["quota"]["network"]["used"], 1);
    let r = api
        .put("/quotas/p-alice", ADMIN, json!({"quota": {"network": 5}}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "not enforced");
}
