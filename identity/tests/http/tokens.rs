use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn version_discovery() {
    let h = H::new().await;
    let r = h.call(Method::GET, "", None, None).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(r.body["versions"]["values"][0]["id"], "v3.14");
    assert_eq!(
        r.body["versions"]["values"][0]["links"][0]["href"],
        "http://weft.test:8080/identity/v3/"
    );
    let r = h.call(Method::GET, "/v3", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"]["status"], "stable");
}

#[tokio::test]
async fn password_token_project_scope_has_full_body() {
    let h = H::new().await;
    let r = h
        .login(
            "admin",
            ADMIN_PW,
            Some(json!({"project": {"name": "admin", "domain": {"name": "Default"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(t["user"]["domain"]["id"], "default");
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["project"]["domain"]["name"], "Default");
    assert_eq!(
        role_names(&r.body),
        vec!["admin", "manager", "member", "reader"]
    );
    assert_eq!(t["catalog"][0]["type"], "identity");
    assert_eq!(t["catalog"][0]["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(t["audit_ids"].as_array().unwrap().len(), 1);
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(t["issued_at"].as_str().unwrap() < t["expires_at"].as_str().unwrap());
    assert!(!r.subject().is_empty());
}

#[tokio::test]
async fn user_by_id_and_other_scopes() {
    let h = H::new().await;
    // by user id, unscoped: no roles, no catalog
    let r = h
        .issue(password_body(json!({"id": h.admin_id}), ADMIN_PW, None))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["token"].get("roles").is_none());
    assert!(r.body["token"].get("catalog").is_none());
    // system scope
    let r = h
        .issue(password_body(
            json!({"id": h.admin_id}),
            ADMIN_PW,
            Some(json!({"system": {"all": true}})),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["token"]["system"], json!({"all": true}));
    assert_eq!(
        role_names(&r.body),
        vec!["admin", "manager", "member", "reader"]
    );
    // domain scope without a domain role: refused
    let r = h
        .issue(password_body(
            json!({"id": h.admin_id}),
            ADMIN_PW,
            Some(json!({"domain": {"id": "default"}})),
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let rid = h.role_id("admin").await;
    assert_eq!(
        h.put(&format!(
            "/v3/domains/default/users/{}/roles/{rid}",
            h.admin_id
        ))
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let r = h
        .issue(password_body(
            json!({"id": h.admin_id}),
            ADMIN_PW,
            Some(json!({"domain": {"name": "Default"}})),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["token"]["domain"]["id"], "default");
    // ?nocatalog
    let r = h
        .call(
            Method::POST,
            "/v3/auth/tokens?nocatalog",
            None,
            Some(password_body(
                json!({"id": h.admin_id}),
                ADMIN_PW,
                project_scope(&h.admin_project),
            )),
        )
        .await;
    assert!(r.body["token"].get("catalog").is_none());
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_the_same_401() {
    let h = H::new().await;
    let a = h.login("admin", "nope", None).await;
    let b = h.login("nobody", "nope", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body, b.body);
    assert_eq!(a.body["error"]["code"], 401);
    assert_eq!(a.body["error"]["title"], "Unauthorized");
    assert!(a.headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn scope_without_roles_is_refused() {
    let h = H::new().await;
    h.user("u1", "pw").await;
    let p = h.project("p1").await;
    assert_eq!(
        h.login("u1", "pw", project_scope(&p)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.login("u1", "pw", Some(json!({"system": {"all": true}})))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.login("u1", "pw", project_scope("nope")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn validate_check_revoke() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let p = h.project("p1").await;
    h.grant(&p, &u, "member").await;
    let t = h.token_for("u1", "pw", project_scope(&p)).await;
    let r = h.validate(&t).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.subject(), t);
    assert_eq!(role_names(&r.body), vec!["member", "reader"]);
    let admin = h.admin.clone();
    let r = h
        .raw(
            Method::HEAD,
            "/v3/auth/tokens",
            Some(&admin),
            None,
            &[("X-Subject-Token", &t)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // a user may validate their own token
    let r = h
        .raw(
            Method::GET,
            "/v3/auth/tokens",
            Some(&t),
            None,
            &[("X-Subject-Token", &t)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // garbage subject: 404; no caller token: 401; missing header: 400
    assert_eq!(
        h.validate("gAAAAAgarbage").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.raw(
            Method::GET,
            "/v3/auth/tokens",
            None,
            None,
            &[("X-Subject-Token", &t)]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.raw(Method::GET, "/v3/auth/tokens", Some(&admin), None, &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // revoke
    let r = h
        .raw(
            Method::DELETE,
            "/v3/auth/tokens",
            Some(&admin),
            None,
            &[("X-Subject-Token", &t)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.validate(&t).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.call(Method::GET, "/v3/auth/projects", Some(&t), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // a new token for the same user still works
    let t2 = h.token_for("u1", "pw", project_scope(&p)).await;
    assert_eq!(h.validate(&t2).await.status, StatusCode::OK);
}

#[tokio::test]
async fn role_removal_takes_effect_at_once() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let p = h.project("p1").await;
    h.grant(&p, &u, "member").await;
    h.grant(&p, &u, "reader").await;
    let t = h.token_for("u1", "pw", project_scope(&p)).await;
    // Validated (and so cached) before the change: the cache must not outlive it.
    assert_eq!(
        role_names(&h.validate(&t).await.body),
        vec!["member", "reader"]
    );
    let member = h.role_id("member").await;
    assert_eq!(
        h.delete(&format!("/v3/projects/{p}/users/{u}/roles/{member}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(role_names(&h.validate(&t).await.body), vec!["reader"]);
    let reader = h.role_id("reader").await;
    h.delete(&format!("/v3/projects/{p}/users/{u}/roles/{reader}"))
        .await;
    assert_eq!(h.validate(&t).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn disable_and_password_change_revoke_tokens() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let p = h.project("p1").await;
    h.grant(&p, &u, "member").await;
    let t = h.token_for("u1", "pw", project_scope(&p)).await;
    // self-service password change: wrong original is 401, right one revokes
    let r = h
        .call(
            Method::POST,
            &format!("/v3/users/{u}/password"),
            None,
            Some(json!({"user": {"password": "new", "original_password": "bad"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            &format!("/v3/users/{u}/password"),
            None,
            Some(json!({"user": {"password": "new", "original_password": "pw"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.validate(&t).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.login("u1", "pw", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let t2 = h.token_for("u1", "new", project_scope(&p)).await;
    assert_eq!(h.validate(&t2).await.status, StatusCode::OK);
    // disable
    assert_eq!(
        h.patch(
            &format!("/v3/users/{u}"),
            json!({"user": {"enabled": false}})
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(h.validate(&t2).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.login("u1", "new", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // re-enabled: old tokens stay revoked, new ones work
    h.patch(
        &format!("/v3/users/{u}"),
        json!({"user": {"enabled": true}}),
    )
    .await;
    assert_eq!(h.validate(&t2).await.status, StatusCode::NOT_FOUND);
    let t3 = h.token_for("u1", "new", project_scope(&p)).await;
    assert_eq!(h.validate(&t3).await.status, StatusCode::OK);
}

#[tokio::test]
async fn token_method_rescopes_and_keeps_audit_chain() {
    let h = H::new().await;
    let r = h.login("admin", ADMIN_PW, None).await;
    let unscoped = r.subject();
    let first_audit = r.body["token"]["audit_ids"][0].clone();
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped}}, "scope": {"project": {"id": h.admin_project}}}});
    let r = h.issue(body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["password", "token"]));
    assert_eq!(t["audit_ids"][1], first_audit);
    assert_eq!(
        t["expires_at"],
        h.validate(&unscoped).await.body["token"]["expires_at"]
    );
    let r = h
        .issue(json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "bogus"}}}}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_discovery_calls() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let p = h.project("p1").await;
    h.project("p2").await;
    h.grant(&p, &u, "reader").await;
    let t = h.token_for("u1", "pw", None).await;
    let r = h
        .call(Method::GET, "/v3/auth/projects", Some(&t), None)
        .await;
    let names: Vec<&str> = r.body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["p1"]);
    let r = h
        .call(Method::GET, "/v3/auth/domains", Some(&t), None)
        .await;
    assert_eq!(r.body["domains"], json!([]));
    let r = h.call(Method::GET, "/v3/auth/system", Some(&t), None).await;
    assert_eq!(r.body["system"], json!([]));
    let r = h.get("/v3/auth/system").await;
    assert_eq!(r.body["system"], json!([{"all": true}]));
    // catalog needs a scoped token
    assert_eq!(
        h.call(Method::GET, "/v3/auth/catalog", Some(&t), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = h.get("/v3/auth/catalog").await;
    assert_eq!(r.body["catalog"][0]["name"], "keystone");
    let r = h.get(&format!("/v3/users/{u}/projects")).await;
    assert_eq!(r.body["projects"][0]["id"], p);
}

#[tokio::test]
async fn key_rotation_keeps_tokens_valid() {
    let h = H::new().await;
    let t = h.admin.clone();
    let id = h.id.clone();
    let keys = blocking(move || id.rotate_keys(3)).await.unwrap();
    assert_eq!(keys, [0, 1, 2]);
    assert_eq!(h.validate(&t).await.status, StatusCode::OK);
    // A fresh process (as after `weft identity rotate-keys` + restart) still accepts it.
    let id2 = h.reopen().await;
    assert!(id2.validate_token(&t).is_ok());
    assert_eq!(id2.snapshot().keys.indexes(), [0, 1, 2]);
}

#[tokio::test]
async fn a_rotated_out_key_invalidates_cached_tokens() {
    let h = H::new().await;
    let t = h.admin.clone();
    assert_eq!(h.validate(&t).await.status, StatusCode::OK);
    // Key 1 sealed `t`. With 3 keys kept, the first rotation makes it a
    // secondary ({0, 1, 2}); the second drops it ({0, 2, 3}).
    let id = h.id.clone();
    assert_eq!(
        blocking(move || id.rotate_keys(3)).await.unwrap(),
        [0, 1, 2]
    );
    assert_eq!(h.validate(&t).await.status, StatusCode::OK);
    let id = h.id.clone();
    assert_eq!(
        blocking(move || id.rotate_keys(3)).await.unwrap(),
        [0, 2, 3]
    );
    assert_eq!(h.validate(&t).await.status, StatusCode::UNAUTHORIZED);
    assert!(h.id.validate_token(&t).is_err());
}

#[tokio::test]
async fn state_survives_reopen() {
    let h = H::new().await;
    let u = h.user("persist", "pw").await;
    let t = h.token_for("persist", "pw", None).await;
    h.call(
        Method::DELETE,
        "/v3/auth/tokens",
        Some(&h.admin.clone()),
        None,
    )
    .await;
    let r = h
        .raw(
            Method::DELETE,
            "/v3/auth/tokens",
            Some(&h.admin.clone()),
            None,
            &[("X-Subject-Token", &t)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let rev = h.id.revision();
    let id2 = h.reopen().await;
    assert_eq!(id2.revision(), rev);
    assert!(id2.snapshot().users.contains_key(&u));
    assert!(id2.validate_token(&t).is_err(), "revocation persisted");
}

#[test]
fn short_ttl_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = weft_identity::IdentityConfig::new(dir.path(), "http://x");
    cfg.token_ttl = std::time::Duration::from_millis(1);
    let id = weft_identity::Identity::open(cfg, test_store(dir.path())).unwrap();
    id.bootstrap(Some("pw")).unwrap();
    let req = weft_identity::service::AuthRequest {
        password: Some(weft_identity::service::PasswordAuth {
            user: weft_identity::service::UserRef {
                name: Some("admin".into()),
                domain_id: Some("default".into()),
                ..Default::default()
            },
            password: "pw".into(),
        }),
        ..Default::default()
    };
    let (t, _) = id.issue_token(&req).unwrap();
    // Cached if it validates now; the cache must still honour the expiry.
    let _ = id.validate_token(&t);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(matches!(
        id.validate_token(&t),
        Err(weft_identity::IdentityError::Unauthorized(_))
    ));
}

/// A project-scoped token stops validating as soon as its project is
/// disabled, and as soon as the project's domain is disabled: validation
/// answers from a cache, and that cache must not outlive either write.
#[tokio::test]
async fn disabling_the_project_or_its_domain_stops_its_tokens_at_once() {
    let h = H::new().await;
    let u = h.user("pd-user", "pw").await;
    let r = h
        .post("/v3/domains", json!({"domain": {"name": "pd-domain"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let d = r.body["domain"]["id"].as_str().unwrap().to_string();
    let mut projects = Vec::new();
    for name in ["pd-p1", "pd-p2"] {
        let r = h
            .post(
                "/v3/projects",
                json!({"project": {"name": name, "domain_id": d}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let p = r.body["project"]["id"].as_str().unwrap().to_string();
        h.grant(&p, &u, "member").await;
        projects.push(p);
    }
    let t1 = h
        .token_for("pd-user", "pw", project_scope(&projects[0]))
        .await;
    let t2 = h
        .token_for("pd-user", "pw", project_scope(&projects[1]))
        .await;
    // Both validated once, so both sit in the validation cache.
    assert_eq!(h.validate(&t1).await.status, StatusCode::OK);
    assert_eq!(h.validate(&t2).await.status, StatusCode::OK);
    let r = h
        .patch(
            &format!("/v3/projects/{}", projects[0]),
            json!({"project": {"enabled": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.validate(&t1).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.validate(&t2).await.status, StatusCode::OK);
    let r = h
        .patch(
            &format!("/v3/domains/{d}"),
            json!({"domain": {"enabled": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.validate(&t2).await.status, StatusCode::NOT_FOUND);
}
