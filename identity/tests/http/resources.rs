use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn domains_crud() {
    let h = H::new().await;
    let r = h
        .post(
            "/v3/domains",
            json!({"domain": {"name": "d1", "description": "first"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let d = r.body["domain"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["domain"]["enabled"], true);
    assert!(r.body["domain"]["links"]["self"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v3/domains/{d}")));
    assert_eq!(
        h.post("/v3/domains", json!({"domain": {"name": "d1"}}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.get(&format!("/v3/domains/{d}")).await.body["domain"]["name"],
        "d1"
    );
    assert_eq!(
        h.get("/v3/domains?name=d1").await.body["domains"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.get("/v3/domains").await.body["domains"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // enabled domain cannot be deleted
    assert_eq!(
        h.delete(&format!("/v3/domains/{d}")).await.status,
        StatusCode::FORBIDDEN
    );
    let r = h
        .patch(
            &format!("/v3/domains/{d}"),
            json!({"domain": {"enabled": false, "description": "x"}}),
        )
        .await;
    assert_eq!(r.body["domain"]["enabled"], false);
    assert_eq!(r.body["domain"]["description"], "x");
    assert_eq!(
        h.delete(&format!("/v3/domains/{d}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(&format!("/v3/domains/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn domain_delete_cascades_and_disabled_domain_blocks_login() {
    let h = H::new().await;
    let d = h
        .create("/v3/domains", "domain", json!({"name": "d2"}))
        .await;
    let u = h
        .create(
            "/v3/users",
            "user",
            json!({"name": "du", "domain_id": d, "password": "pw"}),
        )
        .await;
    let p = h
        .create(
            "/v3/projects",
            "project",
            json!({"name": "dp", "domain_id": d}),
        )
        .await;
    h.grant(&p, &u, "member").await;
    let body = password_body(
        json!({"name": "du", "domain": {"name": "d2"}}),
        "pw",
        project_scope(&p),
    );
    let t = h.issue(body.clone()).await.subject();
    h.patch(
        &format!("/v3/domains/{d}"),
        json!({"domain": {"enabled": false}}),
    )
    .await;
    assert_eq!(h.validate(&t).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.issue(body).await.status, StatusCode::UNAUTHORIZED);
    h.delete(&format!("/v3/domains/{d}")).await;
    assert_eq!(
        h.get(&format!("/v3/users/{u}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("/v3/projects/{p}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn projects_hierarchy() {
    let h = H::new().await;
    let top = h.project("top").await;
    let r = h.get(&format!("/v3/projects/{top}")).await;
    assert_eq!(r.body["project"]["parent_id"], "default");
    assert_eq!(r.body["project"]["is_domain"], false);
    let mid = h
        .create(
            "/v3/projects",
            "project",
            json!({"name": "mid", "parent_id": top}),
        )
        .await;
    let leaf = h
        .create(
            "/v3/projects",
            "project",
            json!({"name": "leaf", "parent_id": mid}),
        )
        .await;
    assert_eq!(
        h.get(&format!("/v3/projects/{leaf}")).await.body["project"]["domain_id"],
        "default"
    );
    let r = h.get(&format!("/v3/projects/{top}?subtree_as_ids")).await;
    assert_eq!(
        r.body["project"]["subtree"],
        json!({ mid.clone(): { leaf.clone(): null } })
    );
    let r = h.get(&format!("/v3/projects/{leaf}?parents_as_ids")).await;
    assert_eq!(
        r.body["project"]["parents"],
        json!({ mid.clone(): { top.clone(): null } })
    );
    let r = h.get(&format!("/v3/projects/{top}?subtree_as_list")).await;
    assert_eq!(r.body["project"]["subtree"].as_array().unwrap().len(), 2);
    let r = h.get(&format!("/v3/projects?parent_id={mid}")).await;
    assert_eq!(r.body["projects"][0]["id"], leaf);
    // a project with children cannot go
    assert_eq!(
        h.delete(&format!("/v3/projects/{mid}")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.delete(&format!("/v3/projects/{leaf}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(&format!("/v3/projects/{mid}")).await.status,
        StatusCode::NO_CONTENT
    );
    // unknown parent, duplicate, is_domain
    let r = h
        .post(
            "/v3/projects",
            json!({"project": {"name": "x", "parent_id": "nope"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.post("/v3/projects", json!({"project": {"name": "top"}}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.post(
            "/v3/projects",
            json!({"project": {"name": "y", "is_domain": true}})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    // update + tags + filters
    let r = h
        .patch(
            &format!("/v3/projects/{top}"),
            json!({"project": {"description": "d", "tags": ["a", "b"], "enabled": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["project"]["tags"], json!(["a", "b"]));
    assert_eq!(
        h.get("/v3/projects?tags=a").await.body["projects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.get("/v3/projects?enabled=false").await.body["projects"][0]["id"],
        top
    );
    assert_eq!(
        h.get("/v3/projects?name=admin").await.body["projects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn users_crud_and_extras() {
    let h = H::new().await;
    let r = h.post("/v3/users", json!({"user": {"name": "u1", "password": "pw", "email": "u1@example.org", "description": "d"}})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let u = r.body["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["user"]["email"], "u1@example.org");
    assert_eq!(r.body["user"]["domain_id"], "default");
    assert!(r.body["user"].get("password").is_none());
    assert!(r.body["user"]["password_expires_at"].is_null());
    assert_eq!(
        h.post("/v3/users", json!({"user": {"name": "u1"}}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(h.get("/v3/users?name=u1").await.body["users"][0]["id"], u);
    assert_eq!(
        h.get("/v3/users?domain_id=default").await.body["users"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = h
        .patch(
            &format!("/v3/users/{u}"),
            json!({"user": {"name": "u1b", "email": "new@example.org"}}),
        )
        .await;
    assert_eq!(r.body["user"]["name"], "u1b");
    assert_eq!(r.body["user"]["email"], "new@example.org");
    // admin password reset works for login
    h.patch(
        &format!("/v3/users/{u}"),
        json!({"user": {"password": "reset"}}),
    )
    .await;
    assert_eq!(
        h.login("u1b", "reset", None).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.get("/v3/users?enabled=false").await.body["users"],
        json!([])
    );
    assert_eq!(
        h.delete(&format!("/v3/users/{u}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(&format!("/v3/users/{u}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.post(
            "/v3/users",
            json!({"user": {"name": "z", "domain_id": "nope"}})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn expired_password_cannot_log_in_but_can_change() {
    let h = H::new().await;
    let u = h.user("old", "pw").await;
    let u2 = u.clone();
    h.id.write_async(move |tx| {
        let mut user = tx.state.users.get(&u2).unwrap().clone();
        user.password_expires_at = Some(1);
        tx.put_user(user);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(
        h.get(&format!("/v3/users/{u}")).await.body["user"]["password_expires_at"],
        "1970-01-01T00:00:00.000001Z"
    );
    let r = h.login("old", "pw", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.msg().contains("expired"));
    let r = h
        .call(
            Method::POST,
            &format!("/v3/users/{u}/password"),
            None,
            Some(json!({"user": {"password": "n", "original_password": "pw"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(h.login("old", "n", None).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn groups_and_membership() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let g = h
        .create(
            "/v3/groups",
            "group",
            json!({"name": "g1", "description": "x"}),
        )
        .await;
    assert_eq!(
        h.post("/v3/groups", json!({"group": {"name": "g1"}}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    let path = format!("/v3/groups/{g}/users/{u}");
    assert_eq!(h.head(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.put(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.head(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/v3/groups/{g}/users")).await.body["users"][0]["id"],
        u
    );
    assert_eq!(
        h.get(&format!("/v3/users/{u}/groups")).await.body["groups"][0]["id"],
        g
    );
    assert_eq!(
        h.put(&format!("/v3/groups/{g}/users/nope")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .patch(&format!("/v3/groups/{g}"), json!({"group": {"name": "g2"}}))
        .await;
    assert_eq!(r.body["group"]["name"], "g2");
    assert_eq!(h.get("/v3/groups?name=g2").await.body["groups"][0]["id"], g);
    assert_eq!(h.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.delete(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.delete(&format!("/v3/groups/{g}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(&format!("/v3/groups/{g}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn policy_denies_non_admins() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let p = h.project("p1").await;
    h.grant(&p, &u, "member").await;
    let t = h.token_for("u1", "pw", project_scope(&p)).await;
    let r = h
        .call(
            Method::POST,
            "/v3/users",
            Some(&t),
            Some(json!({"user": {"name": "x"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"]["title"], "Forbidden");
    assert_eq!(
        h.call(Method::GET, "/v3/users", Some(&t), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // but a user reads themselves and their own project
    assert_eq!(
        h.call(Method::GET, &format!("/v3/users/{u}"), Some(&t), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.call(Method::GET, &format!("/v3/projects/{p}"), Some(&t), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/v3/users/{}", h.admin_id),
            Some(&t),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // no token at all
    assert_eq!(
        h.call(Method::GET, "/v3/users", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn permissive_mode_allows_and_records() {
    let h = H::with(true).await;
    let u = h.user("u1", "pw").await;
    let p = h.project("p1").await;
    h.grant(&p, &u, "member").await;
    let t = h.token_for("u1", "pw", project_scope(&p)).await;
    let r = h
        .call(
            Method::POST,
            "/v3/users",
            Some(&t),
            Some(json!({"user": {"name": "made-by-member"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let recs = h.id.enforcer().records();
    assert!(
        recs.iter().any(|r| r.action == "identity:create_user"),
        "{recs:?}"
    );
    let plan = weft_identity::policy::workplan(&recs);
    assert!(plan.to_string().contains("admin"), "{plan}");
}
