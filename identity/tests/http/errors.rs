use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn bad(h: &H, method: Method, path: &str, body: &str) -> String {
    let admin = h.admin.clone();
    let r = h
        .raw(method, path, Some(&admin), Some(body.to_string()), &[])
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{path} {body}: {:?}",
        r.body
    );
    assert_eq!(r.body["error"]["code"], 400);
    assert_eq!(r.body["error"]["title"], "Bad Request");
    r.msg()
}

#[tokio::test]
async fn bad_json_missing_and_mistyped_fields_name_the_field() {
    let h = H::new().await;
    assert!(bad(&h, Method::POST, "/v3/users", "{not json")
        .await
        .contains("Malformed"));
    assert!(bad(&h, Method::POST, "/v3/users", "")
        .await
        .contains("JSON body"));
    assert!(bad(&h, Method::POST, "/v3/users", "{}")
        .await
        .contains("'user'"));
    assert!(bad(&h, Method::POST, "/v3/users", r#"{"user": []}"#)
        .await
        .contains("'user'"));
    assert!(bad(&h, Method::POST, "/v3/users", r#"{"user": {}}"#)
        .await
        .contains("user.name"));
    let m = bad(
        &h,
        Method::POST,
        "/v3/users",
        r#"{"user": {"name": "x", "enabled": "yes"}}"#,
    )
    .await;
    assert!(m.contains("user.enabled"), "{m}");
    let m = bad(
        &h,
        Method::POST,
        "/v3/projects",
        r#"{"project": {"name": 7}}"#,
    )
    .await;
    assert!(m.contains("project.name"), "{m}");
    let m = bad(
        &h,
        Method::POST,
        "/v3/projects",
        r#"{"project": {"name": "x", "tags": "a"}}"#,
    )
    .await;
    assert!(m.contains("project.tags"), "{m}");
    assert!(bad(
        &h,
        Method::POST,
        "/v3/projects",
        r#"{"project": {"name": ""}}"#
    )
    .await
    .contains("project.name"));
    assert!(bad(
        &h,
        Method::POST,
        "/v3/domains",
        r#"{"domain": {"name": null}}"#
    )
    .await
    .contains("domain.name"));
    assert!(bad(
        &h,
        Method::POST,
        "/v3/roles",
        r#"{"role": {"name": ["a"]}}"#
    )
    .await
    .contains("role.name"));
    assert!(bad(
        &h,
        Method::POST,
        "/v3/groups",
        r#"{"group": {"name": "g", "description": 5}}"#
    )
    .await
    .contains("group.description"));
    assert!(bad(
        &h,
        Method::POST,
        "/v3/services",
        r#"{"service": {"name": "x"}}"#
    )
    .await
    .contains("service.type"));
    assert!(bad(
        &h,
        Method::POST,
        "/v3/endpoints",
        r#"{"endpoint": {"url": "u"}}"#
    )
    .await
    .contains("endpoint.interface"));
    let m = bad(
        &h,
        Method::POST,
        "/v3/OS-TRUST/trusts",
        r#"{"trust": {"trustor_user_id": 1}}"#,
    )
    .await;
    assert!(m.contains("trust.trustor_user_id"), "{m}");
    let m = bad(
        &h,
        Method::PATCH,
        &format!("/v3/users/{}", h.admin_id),
        r#"{"user": {"enabled": 1}}"#,
    )
    .await;
    assert!(m.contains("user.enabled"), "{m}");
}

#[tokio::test]
async fn bad_auth_bodies() {
    let h = H::new().await;
    for (body, field) in [
        (json!({}), "auth"),
        (json!({"auth": {}}), "identity"),
        (
            json!({"auth": {"identity": {"methods": "password"}}}),
            "auth.identity.methods",
        ),
        (
            json!({"auth": {"identity": {"methods": ["password"]}}}),
            "auth.identity.password",
        ),
        (
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "x"}}}}}),
            "auth.identity.password.user",
        ),
        (
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "x", "password": 5}}}}}),
            "password",
        ),
        (
            json!({"auth": {"identity": {"methods": ["token"]}}}),
            "auth.identity.token",
        ),
        (
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "x", "password": "p"}}}, "scope": {"project": {}}}}),
            "auth.scope.project",
        ),
        (
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "x", "password": "p"}}}, "scope": {"system": {"all": false}}}}),
            "auth.scope.system",
        ),
        (
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": "x", "password": "p"}}}, "scope": {"galaxy": {}}}}),
            "auth.scope",
        ),
    ] {
        let r = h.issue(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        assert!(r.msg().contains(field), "{body}: {}", r.msg());
    }
    let r = h
        .issue(json!({"auth": {"identity": {"methods": ["kerberos"]}}}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_paths_and_ids_are_404_json() {
    let h = H::new().await;
    for p in [
        "/v3/users/nope",
        "/v3/projects/nope",
        "/v3/domains/nope",
        "/v3/groups/nope",
        "/v3/roles/nope",
        "/v3/services/nope",
        "/v3/endpoints/nope",
        "/v3/regions/nope",
        "/v3/nothing-here",
        "/v3/OS-TRUST/trusts/nope",
    ] {
        let r = h.get(p).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        assert_eq!(r.body["error"]["code"], 404, "{p}");
    }
}

#[tokio::test]
async fn hostile_tokens_never_500() {
    let h = H::new().await;
    let long = "A".repeat(5000);
    for t in ["", "x", "gAAAAA", long.as_str(), "gAAAAABrCph4m_dppt1G8114uwkzU6lpXUPoCw7mweJd7XpGmw5D19Kcoyn-4Ba63zoibQq2lbqtt1YGu-QDZJP7gy0P0vLF8JEb4tdYg17cizfgze_I6kU4"] {
        let r = h.call(Method::GET, "/v3/auth/projects", Some(t), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{t}");
        let r = h.validate(t).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST, "{t}: {}", r.status);
    }
}

/// Keystone's resource schema caps project and domain names at 64 characters.
#[tokio::test]
async fn project_and_domain_names_longer_than_64_are_rejected() {
    let h = H::new().await;
    let long = "p".repeat(65);
    for (path, key) in [("/v3/projects", "project"), ("/v3/domains", "domain")] {
        let m = bad(
            &h,
            Method::POST,
            path,
            &json!({ key: {"name": long} }).to_string(),
        )
        .await;
        assert!(m.contains(&format!("{key}.name")), "{m}");
    }
    let ok = "p".repeat(64);
    let admin = h.admin.clone();
    let r = h
        .raw(
            Method::POST,
            "/v3/projects",
            Some(&admin),
            Some(json!({"project": {"name": ok}}).to_string()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// A body over the limit (axum's 2 MiB default) is Keystone's 413
/// RequestTooLarge with its JSON body, not a 400 asking to fix the JSON, and
/// the connection is announced closed (the rest of the body was not read).
#[tokio::test]
async fn oversized_body_is_413_with_a_json_body() {
    let h = H::new().await;
    let admin = h.admin.clone();
    let big = format!(
        r#"{{"user": {{"name": "big", "description": "{}"}}}}"#,
        "a".repeat(3 << 20)
    );
    for path in ["/v3/users", "/v3/auth/tokens"] {
        let r = h
            .raw(Method::POST, path, Some(&admin), Some(big.clone()), &[])
            .await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {:?}",
            r.body
        );
        assert_eq!(r.headers["content-type"], "application/json", "{path}");
        assert_eq!(r.headers["connection"], "close", "{path}");
        assert_eq!(r.body["error"]["code"], 413, "{path}");
        assert_eq!(r.body["error"]["title"], "Request Entity Too Large");
        assert_eq!(r.msg(), "Request is too large.");
    }
    // Nothing was created.
    let r = h.get("/v3/users?name=big").await;
    assert_eq!(r.body["users"], json!([]));
}
