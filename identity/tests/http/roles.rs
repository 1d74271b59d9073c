use crate::common::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn roles_crud() {
    let h = H::new().await;
    let r = h
        .post(
            "/v3/roles",
            json!({"role": {"name": "observer", "description": "looks"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["role"]["id"].as_str().unwrap().to_string();
    assert!(r.body["role"]["domain_id"].is_null());
    assert_eq!(
        h.post("/v3/roles", json!({"role": {"name": "Observer"}}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.get("/v3/roles").await.body["roles"]
            .as_array()
            .unwrap()
            .len(),
        6 // the five bootstrap roles and Observer
    );
    // domain-specific roles are listed only with domain_id
    let dr = h
        .create(
            "/v3/roles",
            "role",
            json!({"name": "observer", "domain_id": "default"}),
        )
        .await;
    assert_eq!(
        h.get("/v3/roles").await.body["roles"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        h.get("/v3/roles?domain_id=default").await.body["roles"][0]["id"],
        dr
    );
    let r = h
        .patch(
            &format!("/v3/roles/{id}"),
            json!({"role": {"name": "watcher"}}),
        )
        .await;
    assert_eq!(r.body["role"]["name"], "watcher");
    assert_eq!(
        h.get(&format!("/v3/roles/{id}")).await.body["role"]["name"],
        "watcher"
    );
    assert_eq!(
        h.delete(&format!("/v3/roles/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(&format!("/v3/roles/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn implied_roles() {
    let h = H::new().await;
    let admin = h.role_id("admin").await;
    let member = h.role_id("member").await;
    let reader = h.role_id("reader").await;
    let r = h.get("/v3/role_inferences").await;
    let infs = r.body["role_inferences"].as_array().unwrap();
    assert_eq!(infs.len(), 3); // admin, manager, member
    let r = h.get(&format!("/v3/roles/{admin}/implies")).await;
    let mut implied: Vec<&str> = r.body["role_inference"]["implies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    implied.sort();
    assert_eq!(implied, ["manager", "member"]);
    assert!(r.body["role_inference"]["implies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == member));
    assert_eq!(
        h.head(&format!("/v3/roles/{member}/implies/{reader}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(&format!("/v3/roles/{member}/implies/{reader}"))
            .await
            .body["role_inference"]["implies"]["id"],
        reader
    );
    assert_eq!(
        h.head(&format!("/v3/roles/{admin}/implies/{reader}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // admin may not be implied; no cycles
    assert_eq!(
        h.put(&format!("/v3/roles/{reader}/implies/{admin}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.put(&format!("/v3/roles/{reader}/implies/{member}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let extra = h
        .create("/v3/roles", "role", json!({"name": "auditor"}))
        .await;
    let r = h.put(&format!("/v3/roles/{reader}/implies/{extra}")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["role_inference"]["prior_role"]["id"], reader);
    // admin now reaches auditor through two hops
    let t = h
        .token_for("admin", ADMIN_PW, project_scope(&h.admin_project))
        .await;
    assert_eq!(
        role_names(&h.validate(&t).await.body),
        vec!["admin", "auditor", "manager", "member", "reader"]
    );
    assert_eq!(
        h.delete(&format!("/v3/roles/{reader}/implies/{extra}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(&format!("/v3/roles/{reader}/implies/{extra}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.put(&format!("/v3/roles/{reader}/implies/nope"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn grants_on_project_domain_system() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let g = h.create("/v3/groups", "group", json!({"name": "g1"})).await;
    let p = h.project("p1").await;
    let member = h.role_id("member").await;
    for path in [
        format!("/v3/projects/{p}/users/{u}/roles/{member}"),
        format!("/v3/projects/{p}/groups/{g}/roles/{member}"),
        format!("/v3/domains/default/users/{u}/roles/{member}"),
        format!("/v3/domains/default/groups/{g}/roles/{member}"),
        format!("/v3/system/users/{u}/roles/{member}"),
        format!("/v3/system/groups/{g}/roles/{member}"),
    ] {
        assert_eq!(h.head(&path).await.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(h.put(&path).await.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            h.put(&path).await.status,
            StatusCode::NO_CONTENT,
            "idempotent {path}"
        );
        assert_eq!(h.head(&path).await.status, StatusCode::NO_CONTENT, "{path}");
        let list = path.rsplit_once('/').unwrap().0.to_string();
        assert_eq!(h.get(&list).await.body["roles"][0]["id"], member, "{list}");
        assert_eq!(h.delete(&path).await.status, StatusCode::NO_CONTENT);
        assert_eq!(h.delete(&path).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        h.put(&format!("/v3/projects/{p}/users/nope/roles/{member}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.put(&format!("/v3/projects/nope/users/{u}/roles/{member}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.put(&format!("/v3/projects/{p}/users/{u}/roles/nope"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn group_and_inherited_grants_reach_tokens() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let g = h.create("/v3/groups", "group", json!({"name": "g1"})).await;
    h.put(&format!("/v3/groups/{g}/users/{u}")).await;
    let parent = h.project("parent").await;
    let child = h
        .create(
            "/v3/projects",
            "project",
            json!({"name": "child", "parent_id": parent}),
        )
        .await;
    let reader = h.role_id("reader").await;
    let member = h.role_id("member").await;
    // group gets reader inherited from parent: applies to child, not parent
    let inh =
        format!("/v3/OS-INHERIT/projects/{parent}/groups/{g}/roles/{reader}/inherited_to_projects");
    assert_eq!(h.put(&inh).await.status, StatusCode::NO_CONTENT);
    assert_eq!(h.head(&inh).await.status, StatusCode::NO_CONTENT);
    let list = format!("/v3/OS-INHERIT/projects/{parent}/groups/{g}/roles/inherited_to_projects");
    assert_eq!(h.get(&list).await.body["roles"][0]["id"], reader);
    assert_eq!(
        h.login("u1", "pw", project_scope(&parent)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = h.login("u1", "pw", project_scope(&child)).await;
    assert_eq!(role_names(&r.body), vec!["reader"]);
    // user gets member inherited from the domain: every project in it
    let dinh =
        format!("/v3/OS-INHERIT/domains/default/users/{u}/roles/{member}/inherited_to_projects");
    assert_eq!(h.put(&dinh).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        role_names(&h.login("u1", "pw", project_scope(&parent)).await.body),
        vec!["member", "reader"]
    );
    // but not the domain itself
    assert_eq!(
        h.login("u1", "pw", Some(json!({"domain": {"id": "default"}})))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // leaving the group drops the group's roles at once
    let t = h.token_for("u1", "pw", project_scope(&child)).await;
    h.delete(&format!("/v3/groups/{g}/users/{u}")).await;
    assert_eq!(
        role_names(&h.validate(&t).await.body),
        vec!["member", "reader"]
    );
    h.delete(&dinh).await;
    assert_eq!(h.validate(&t).await.status, StatusCode::NOT_FOUND);
}

fn rows(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let who = a["user"]["id"]
                .as_str()
                .or(a["group"]["id"].as_str())
                .unwrap()
                .to_string();
            (who, a["role"]["id"].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn role_assignments_filters() {
    let h = H::new().await;
    let u = h.user("u1", "pw").await;
    let u2 = h.user("u2", "pw").await;
    let g = h.create("/v3/groups", "group", json!({"name": "g1"})).await;
    h.put(&format!("/v3/groups/{g}/users/{u2}")).await;
    let p = h.project("p1").await;
    let child = h
        .create(
            "/v3/projects",
            "project",
            json!({"name": "c1", "parent_id": p}),
        )
        .await;
    let member = h.role_id("member").await;
    let reader = h.role_id("reader").await;
    let admin = h.role_id("admin").await;
    h.put(&format!("/v3/projects/{p}/users/{u}/roles/{member}"))
        .await;
    h.put(&format!("/v3/projects/{p}/groups/{g}/roles/{reader}"))
        .await;
    h.put(&format!(
        "/v3/OS-INHERIT/projects/{p}/users/{u}/roles/{reader}/inherited_to_projects"
    ))
    .await;

    let r = h
        .get(&format!("/v3/role_assignments?scope.project.id={p}"))
        .await;
    assert_eq!(rows(&r.body), {
        let mut v = vec![
            (u.clone(), member.clone()),
            (g.clone(), reader.clone()),
            (u.clone(), reader.clone()),
        ];
        v.sort();
        v
    });
    let inherited = r.body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["scope"]["OS-INHERIT:inherited_to"] == "projects")
        .unwrap();
    assert!(inherited["links"]["assignment"]
        .as_str()
        .unwrap()
        .contains("/OS-INHERIT/projects/"));

    // effective: group expanded to u2, implied reader added for member, inherited moved to the child
    let r = h
        .get(&format!(
            "/v3/role_assignments?effective&scope.project.id={p}"
        ))
        .await;
    assert_eq!(rows(&r.body), {
        let mut v = vec![
            (u.clone(), member.clone()),
            (u.clone(), reader.clone()),
            (u2.clone(), reader.clone()),
        ];
        v.sort();
        v
    });
    let via_group = r.body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["user"]["id"] == u2)
        .unwrap();
    assert!(via_group["links"]["membership"]
        .as_str()
        .unwrap()
        .contains(&g));
    let implied = r.body["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["user"]["id"] == u && a["role"]["id"] == reader)
        .unwrap();
    assert!(implied["links"]["prior_role"]
        .as_str()
        .unwrap()
        .ends_with(&member));
    let r = h
        .get(&format!(
            "/v3/role_assignments?effective&scope.project.id={child}"
        ))
        .await;
    assert_eq!(rows(&r.body), vec![(u.clone(), reader.clone())]);

    // user, role, group, system filters; names
    let r = h
        .get(&format!(
            "/v3/role_assignments?user.id={u}&role.id={member}"
        ))
        .await;
    assert_eq!(rows(&r.body), vec![(u.clone(), member.clone())]);
    let r = h.get(&format!("/v3/role_assignments?group.id={g}")).await;
    assert_eq!(rows(&r.body), vec![(g.clone(), reader.clone())]);
    let r = h.get("/v3/role_assignments?scope.system=all").await;
    assert_eq!(rows(&r.body), vec![(h.admin_id.clone(), admin.clone())]);
    let r = h.get(&format!("/v3/role_assignments?user.id={u}&include_names=true&scope.project.id={p}&role.id={member}")).await;
    let a = &r.body["role_assignments"][0];
    assert_eq!(a["user"]["name"], "u1");
    assert_eq!(a["user"]["domain"]["name"], "Default");
    assert_eq!(a["role"]["name"], "member");
    assert_eq!(a["scope"]["project"]["name"], "p1");
    // include_subtree
    let r = h
        .get(&format!(
            "/v3/role_assignments?effective&scope.project.id={p}&include_subtree=true&user.id={u}"
        ))
        .await;
    assert_eq!(r.body["role_assignments"].as_array().unwrap().len(), 3);
    // inherited-only filter
    let r = h
        .get("/v3/role_assignments?scope.OS-INHERIT:inherited_to=projects")
        .await;
    assert_eq!(rows(&r.body), vec![(u.clone(), reader.clone())]);
    // bad combinations
    assert_eq!(
        h.get(&format!("/v3/role_assignments?effective&group.id={g}"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get(&format!(
            "/v3/role_assignments?scope.project.id={p}&scope.domain.id=default"
        ))
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get("/v3/role_assignments?include_subtree=true")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

/// Domain-specific roles (roles with a domain_id) only infer other roles:
/// Keystone leaves them out of effective assignment lists and tokens, keeping
/// the global roles they imply; the plain (non-effective) list still shows the
/// grant itself.
#[tokio::test]
async fn effective_assignments_and_tokens_leave_out_domain_specific_roles() {
    let h = H::new().await;
    let u = h.user("dsr-user", "pw-dsr-1").await;
    let p = h.project("dsr-project").await;
    let dom_role = h
        .create(
            "/v3/roles",
            "role",
            json!({"name": "dsr-role", "domain_id": "default"}),
        )
        .await;
    let global = h
        .create("/v3/roles", "role", json!({"name": "dsr-global"}))
        .await;
    let r = h
        .put(&format!("/v3/projects/{p}/users/{u}/roles/{dom_role}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let roles_in = |body: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = body["role_assignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["role"]["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let direct = h
        .get(&format!("/v3/role_assignments?scope.project.id={p}"))
        .await;
    assert_eq!(roles_in(&direct.body), vec![dom_role.clone()]);
    let eff = h
        .get(&format!(
            "/v3/role_assignments?effective&scope.project.id={p}"
        ))
        .await;
    assert_eq!(eff.status, StatusCode::OK);
    assert!(roles_in(&eff.body).is_empty(), "{:?}", eff.body);

    // the domain role implies a global one: effective shows only the global
    let r = h
        .put(&format!("/v3/roles/{dom_role}/implies/{global}"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let eff = h
        .get(&format!(
            "/v3/role_assignments?effective&scope.project.id={p}"
        ))
        .await;
    assert_eq!(roles_in(&eff.body), vec![global.clone()]);
    let eff = h
        .get(&format!(
            "/v3/role_assignments?effective&role.id={dom_role}&user.id={u}"
        ))
        .await;
    assert!(roles_in(&eff.body).is_empty(), "{:?}", eff.body);

    // the user's project token carries the implied global role, not the domain role
    let t = h.login("dsr-user", "pw-dsr-1", project_scope(&p)).await;
    assert_eq!(t.status, StatusCode::CREATED, "{:?}", t.body);
    assert_eq!(role_names(&t.body), vec!["dsr-global".to_string()]);
}

/// Bootstrap makes the roles Keystone (2023.2+) bootstraps and the default
/// policies name: reader, member, manager, admin (admin -> manager -> member
/// -> reader; admin -> member kept as the issue asks) and service. A
/// domain-scoped `manager` then works as the domain-manager rules intend.
#[tokio::test]
async fn bootstrap_makes_manager_and_domain_managers_manage_their_domain() {
    let h = H::new().await;
    let id_of = |name: &'static str| {
        let h = &h;
        async move { h.role_id(name).await }
    };
    let (admin, manager, member, reader) = (
        id_of("admin").await,
        id_of("manager").await,
        id_of("member").await,
        id_of("reader").await,
    );
    assert!(!id_of("service").await.is_empty());
    for (prior, implied) in [
        (&admin, &manager),
        (&manager, &member),
        (&member, &reader),
        (&admin, &member),
    ] {
        assert_eq!(
            h.head(&format!("/v3/roles/{prior}/implies/{implied}"))
                .await
                .status,
            StatusCode::NO_CONTENT,
            "{prior} -> {implied}"
        );
    }
    // a second bootstrap changes nothing
    let before = h.get("/v3/role_inferences").await.body;
    let roles_before = h.get("/v3/roles").await.body["roles"]
        .as_array()
        .unwrap()
        .len();
    let id = h.id.clone();
    let rep = blocking(move || id.bootstrap(Some(ADMIN_PW)))
        .await
        .unwrap();
    assert!(rep.already_bootstrapped && rep.generated_password.is_none());
    assert_eq!(h.get("/v3/role_inferences").await.body, before);
    assert_eq!(
        h.get("/v3/roles").await.body["roles"]
            .as_array()
            .unwrap()
            .len(),
        roles_before
    );

    // a domain with a manager and a plain member
    let d = h
        .create("/v3/domains", "domain", json!({"name": "acme"}))
        .await;
    let mk_user = |name: &'static str| {
        let h = &h;
        let d = d.clone();
        async move {
            h.create(
                "/v3/users",
                "user",
                json!({"name": name, "password": "pw-mgr-1", "domain_id": d}),
            )
            .await
        }
    };
    let boss = mk_user("boss").await;
    let worker = mk_user("worker").await;
    for (u, role) in [(&boss, &manager), (&worker, &member)] {
        let r = h
            .put(&format!("/v3/domains/{d}/users/{u}/roles/{role}"))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    }
    let dom_token = |name: &'static str| {
        let h = &h;
        let d = d.clone();
        async move {
            let r = h
                .issue(password_body(
                    json!({"name": name, "domain": {"id": d}}),
                    "pw-mgr-1",
                    Some(json!({"domain": {"id": d}})),
                ))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            (r.subject(), role_names(&r.body))
        }
    };
    let (boss_t, boss_roles) = dom_token("boss").await;
    assert_eq!(boss_roles, vec!["manager", "member", "reader"]);
    let (worker_t, _) = dom_token("worker").await;

    let new_user = |dom: &str, name: &str| json!({"user": {"name": name, "domain_id": dom, "password": "pw-new-1"}});
    // the manager creates a user in their domain, not in another
    let r = h
        .call(
            axum::http::Method::POST,
            "/v3/users",
            Some(&boss_t),
            Some(new_user(&d, "hired")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h
        .call(
            axum::http::Method::POST,
            "/v3/users",
            Some(&boss_t),
            Some(new_user("default", "outsider")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // a member of the domain may not
    let r = h
        .call(
            axum::http::Method::POST,
            "/v3/users",
            Some(&worker_t),
            Some(new_user(&d, "hired-2")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // the manager may grant member on a project of the domain, not admin
    let p = h
        .create(
            "/v3/projects",
            "project",
            json!({"name": "acme-web", "domain_id": d}),
        )
        .await;
    let grant = |role: &str| format!("/v3/projects/{p}/users/{worker}/roles/{role}");
    let r = h
        .call(
            axum::http::Method::PUT,
            &grant(&member),
            Some(&boss_t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = h
        .call(axum::http::Method::PUT, &grant(&admin), Some(&boss_t), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
}

/// List calls build their policy target as Keystone's enforcer does: the
/// caller's domain in the shape each default rule reads (`target.domain.id`
/// for domains, `target.group.domain_id` for groups, `target.domain_id` for
/// users, projects and assignments), and query filters under `filter_attr`,
/// so a query parameter cannot stand in for a target or path value.
#[tokio::test]
async fn domain_readers_list_their_domain_and_filters_do_not_reach_the_target() {
    let h = H::new().await;
    let d = h
        .create("/v3/domains", "domain", json!({"name": "lister"}))
        .await;
    let u = h
        .create(
            "/v3/users",
            "user",
            json!({"name": "dr", "password": "pw-dr-1", "domain_id": d}),
        )
        .await;
    h.create("/v3/groups", "group", json!({"name": "g1", "domain_id": d}))
        .await;
    h.create(
        "/v3/projects",
        "project",
        json!({"name": "p1", "domain_id": d}),
    )
    .await;
    let reader = h.role_id("reader").await;
    let r = h
        .put(&format!("/v3/domains/{d}/users/{u}/roles/{reader}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h
        .issue(password_body(
            json!({"id": u}),
            "pw-dr-1",
            Some(json!({"domain": {"id": d}})),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let t = r.subject();
    let get = |path: String| {
        let h = &h;
        let t = t.clone();
        async move { h.call(axum::http::Method::GET, &path, Some(&t), None).await }
    };
    for (path, key) in [
        ("/v3/domains".to_string(), "domains"),
        ("/v3/groups".to_string(), "groups"),
        ("/v3/users".to_string(), "users"),
        ("/v3/projects".to_string(), "projects"),
        ("/v3/role_assignments".to_string(), "role_assignments"),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        assert!(!r.body[key].as_array().unwrap().is_empty(), "{path}");
    }
    let r = get("/v3/domains".into()).await;
    assert_eq!(r.body["domains"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["domains"][0]["id"], d);
    // A query parameter named like a target path is a filter, not the target:
    // it neither grants nor breaks anything.
    let r = get(format!("/v3/users?target.domain_id=default&domain_id={d}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // a domain reader still may not read another domain's lists
    let r = get("/v3/users?domain_id=default".into()).await;
    assert!(
        r.status == StatusCode::FORBIDDEN
            || r.body["users"]
                .as_array()
                .unwrap()
                .iter()
                .all(|u| u["domain_id"] == d.as_str()),
        "{:?}",
        r.body
    );
}
