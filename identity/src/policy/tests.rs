//! Enforcer tests: Keystone's defaults for the personas Keystone documents,
//! policy files, permissive recording and the workplan.

use super::*;
use serde_json::{json, Value};

fn roles(rs: &[&str]) -> Vec<String> {
    rs.iter().map(|r| r.to_string()).collect()
}

fn system(user: &str, rs: &[&str]) -> Credentials {
    Credentials {
        user_id: user.into(),
        user_domain_id: Some("default".into()),
        roles: roles(rs),
        system_scope: Some("all".into()),
        ..Default::default()
    }
}

fn domain(user: &str, domain: &str, rs: &[&str]) -> Credentials {
    Credentials {
        user_id: user.into(),
        user_domain_id: Some(domain.into()),
        roles: roles(rs),
        domain_id: Some(domain.into()),
        ..Default::default()
    }
}

fn project(user: &str, project: &str, rs: &[&str]) -> Credentials {
    Credentials {
        user_id: user.into(),
        user_domain_id: Some("d1".into()),
        roles: roles(rs),
        project_id: Some(project.into()),
        project_domain_id: Some("d1".into()),
        ..Default::default()
    }
}

fn keystone() -> Enforcer {
    Enforcer::new(identity_defaults(), None, Mode::Enforce, None).expect("defaults compile")
}

fn allowed(e: &Enforcer, action: &str, target: &Value, c: &Credentials) -> bool {
    let check = e.check(action, target, c);
    assert_eq!(check, e.authorize(action, target, c).is_ok(), "{action}");
    check
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-policy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_default_parses_and_links() {
    let e = keystone();
    for (action, text) in identity_defaults() {
        assert_eq!(e.rule_text(action), Some(*text));
    }
    for action in [
        "identity:get_user",
        "identity:list_users",
        "identity:create_user",
        "identity:update_user",
        "identity:delete_user",
        "identity:list_projects",
        "identity:get_project",
        "identity:create_project",
        "identity:update_project",
        "identity:delete_project",
        "identity:list_user_projects",
        "identity:get_domain",
        "identity:list_domains",
        "identity:create_domain",
        "identity:update_domain",
        "identity:delete_domain",
        "identity:get_group",
        "identity:list_groups",
        "identity:create_group",
        "identity:add_user_to_group",
        "identity:remove_user_from_group",
        "identity:check_user_in_group",
        "identity:list_users_in_group",
        "identity:list_groups_for_user",
        "identity:get_role",
        "identity:list_roles",
        "identity:create_role",
        "identity:create_implied_role",
        "identity:list_implied_roles",
        "identity:list_role_inference_rules",
        "identity:create_grant",
        "identity:check_grant",
        "identity:list_grants",
        "identity:revoke_grant",
        "identity:create_system_grant_for_user",
        "identity:list_system_grants_for_group",
        "identity:list_role_assignments",
        "identity:list_role_assignments_for_tree",
        "identity:list_services",
        "identity:create_endpoint",
        "identity:list_regions",
        "identity:create_application_credential",
        "identity:list_application_credentials",
        "identity:create_trust",
        "identity:get_trust",
        "identity:delete_trust",
        "identity:validate_token",
        "identity:check_token",
        "identity:revoke_token",
        "identity:revocation_list",
        "identity:get_auth_catalog",
        "identity:get_auth_projects",
        "identity:get_auth_domains",
        "identity:get_auth_system",
        "identity:ec2_create_credential",
    ] {
        assert!(e.rule_text(action).is_some(), "no default for {action}");
    }
    // The base rules Keystone's defaults are made of.
    for base in [
        "admin_required",
        "service_role",
        "service_or_admin",
        "owner",
        "admin_or_owner",
    ] {
        assert!(e.rule_text(base).is_some(), "{base}");
    }
    // Every role any default names is known, weakest first.
    let known = e.known_roles();
    assert_eq!(
        &known[..3],
        ["reader", "manager", "service"].map(String::from)
    );
    assert!(known.contains(&"admin".to_string()));
    assert_eq!(known.last().map(String::as_str), Some("admin"));
}

#[test]
fn list_projects_defaults() {
    let e = keystone();
    let in_d1 = json!({"target": {"domain_id": "d1"}});
    let in_d2 = json!({"target": {"domain_id": "d2"}});
    let all = json!({});
    let a = "identity:list_projects";
    assert!(allowed(&e, a, &all, &system("sr", &["reader"])));
    assert!(allowed(
        &e,
        a,
        &all,
        &system("sa", &["admin", "member", "reader"])
    ));
    // A domain reader lists its own domain's projects only.
    assert!(allowed(&e, a, &in_d1, &domain("dr", "d1", &["reader"])));
    assert!(!allowed(&e, a, &in_d2, &domain("dr", "d1", &["reader"])));
    assert!(!allowed(&e, a, &all, &domain("dr", "d1", &["reader"])));
    // Keystone's admin_required is `role:admin`: an admin anywhere is admin.
    assert!(allowed(
        &e,
        a,
        &in_d2,
        &domain("da", "d1", &["admin", "member", "reader"])
    ));
    // A project member may not list projects (it uses /auth/projects).
    assert!(!allowed(
        &e,
        a,
        &in_d1,
        &project("pm", "p1", &["member", "reader"])
    ));
    assert!(allowed(
        &e,
        "identity:get_auth_projects",
        &all,
        &project("pm", "p1", &["member", "reader"])
    ));
}

#[test]
fn get_user_defaults() {
    let e = keystone();
    let a = "identity:get_user";
    let alice = json!({"user_id": "alice", "target": {"user": {"id": "alice", "domain_id": "d1"}}});
    let bob_d2 = json!({"user_id": "bob", "target": {"user": {"id": "bob", "domain_id": "d2"}}});
    // Owner: any token of alice's may read alice.
    assert!(allowed(
        &e,
        a,
        &alice,
        &project("alice", "p1", &["member", "reader"])
    ));
    assert!(allowed(
        &e,
        a,
        &alice,
        &Credentials {
            user_id: "alice".into(),
            ..Default::default()
        }
    ));
    // Another project member may not.
    assert!(!allowed(
        &e,
        a,
        &alice,
        &project("carol", "p1", &["member", "reader"])
    ));
    // System reader reads anyone.
    assert!(allowed(&e, a, &bob_d2, &system("sr", &["reader"])));
    // Domain reader: users of its own domain only (token.domain.id).
    assert!(allowed(&e, a, &alice, &domain("dr", "d1", &["reader"])));
    assert!(!allowed(&e, a, &bob_d2, &domain("dr", "d1", &["reader"])));
    // A project-scoped reader whose project is in d1 is not a domain reader.
    assert!(!allowed(
        &e,
        a,
        &alice,
        &project("carol", "p1", &["reader"])
    ));
    // Domain admin.
    assert!(allowed(
        &e,
        a,
        &bob_d2,
        &domain("da", "d1", &["admin", "member", "reader"])
    ));
}

#[test]
fn list_role_assignments_defaults() {
    let e = keystone();
    let a = "identity:list_role_assignments";
    let d1 = json!({"target.domain_id": "d1"});
    assert!(allowed(&e, a, &json!({}), &system("sr", &["reader"])));
    assert!(allowed(&e, a, &d1, &domain("dr", "d1", &["reader"])));
    assert!(!allowed(
        &e,
        a,
        &json!({"target.domain_id": "d2"}),
        &domain("dr", "d1", &["reader"])
    ));
    assert!(!allowed(
        &e,
        a,
        &d1,
        &project("pm", "p1", &["member", "reader"])
    ));
    assert!(allowed(
        &e,
        a,
        &d1,
        &project("pa", "p1", &["admin", "member", "reader"])
    ));
}

#[test]
fn user_and_project_management_defaults() {
    let e = keystone();
    let new_user_d1 = json!({"target": {"user": {"domain_id": "d1"}}});
    let mgr = domain("m", "d1", &["manager", "member", "reader"]);
    assert!(allowed(&e, "identity:create_user", &new_user_d1, &mgr));
    assert!(!allowed(
        &e,
        "identity:create_user",
        &json!({"target.user.domain_id": "d2"}),
        &mgr
    ));
    assert!(!allowed(
        &e,
        "identity:create_user",
        &new_user_d1,
        &project("pm", "p1", &["member", "reader"])
    ));
    assert!(!allowed(
        &e,
        "identity:create_user",
        &new_user_d1,
        &system("sr", &["reader"])
    ));

    let proj_d1 = json!({"target": {"project": {"id": "p1", "domain_id": "d1"}}});
    assert!(allowed(
        &e,
        "identity:get_project",
        &proj_d1,
        &project("pm", "p1", &["member", "reader"])
    ));
    assert!(!allowed(
        &e,
        "identity:get_project",
        &proj_d1,
        &project("pm", "p2", &["member", "reader"])
    ));
    assert!(allowed(&e, "identity:create_project", &proj_d1, &mgr));
    assert!(!allowed(
        &e,
        "identity:create_project",
        &proj_d1,
        &domain("dr", "d1", &["reader"])
    ));
    // A project at the top (domain_id null) is never a domain manager's.
    let root = json!({"target": {"project": {"id": "x", "domain_id": null}}});
    assert!(!allowed(
        &e,
        "identity:create_project",
        &root,
        &domain("m", "None", &["manager"])
    ));
}

#[test]
fn grants_defaults() {
    let e = keystone();
    let mgr = domain("m", "d1", &["manager", "member", "reader"]);
    let grant = |role: &str, role_domain: Value| {
        json!({"target": {
            "user": {"id": "u", "domain_id": "d1"},
            "project": {"id": "p1", "domain_id": "d1"},
            "role": {"id": "r", "name": role, "domain_id": role_domain}
        }})
    };
    // A domain manager may hand out member/reader/manager in its domain, not admin.
    assert!(allowed(
        &e,
        "identity:create_grant",
        &grant("member", Value::Null),
        &mgr
    ));
    assert!(!allowed(
        &e,
        "identity:create_grant",
        &grant("admin", Value::Null),
        &mgr
    ));
    // A domain reader may check and list grants in its domain.
    let dr = domain("dr", "d1", &["reader"]);
    assert!(allowed(
        &e,
        "identity:check_grant",
        &grant("admin", Value::Null),
        &dr
    ));
    assert!(allowed(
        &e,
        "identity:list_grants",
        &grant("admin", Value::Null),
        &dr
    ));
    // ... but not for a role owned by another domain.
    assert!(!allowed(
        &e,
        "identity:check_grant",
        &grant("x", json!("d9")),
        &dr
    ));
    assert!(!allowed(
        &e,
        "identity:create_grant",
        &grant("member", Value::Null),
        &dr
    ));
    // System reader checks anything; only admins grant system roles.
    assert!(allowed(
        &e,
        "identity:check_grant",
        &grant("x", json!("d9")),
        &system("sr", &["reader"])
    ));
    assert!(!allowed(
        &e,
        "identity:create_system_grant_for_user",
        &json!({}),
        &system("sr", &["reader"])
    ));
    assert!(allowed(
        &e,
        "identity:create_system_grant_for_user",
        &json!({}),
        &system("sa", &["admin"])
    ));
}

#[test]
fn trust_token_and_appcred_defaults() {
    let e = keystone();
    let trust =
        json!({"target": {"trust": {"trustor_user_id": "alice", "trustee_user_id": "bob"}}});
    let alice = project("alice", "p1", &["member", "reader"]);
    let bob = project("bob", "p1", &["member", "reader"]);
    assert!(allowed(&e, "identity:create_trust", &trust, &alice));
    assert!(!allowed(&e, "identity:create_trust", &trust, &bob));
    assert!(allowed(&e, "identity:get_trust", &trust, &bob));
    assert!(allowed(&e, "identity:delete_trust", &trust, &alice));
    assert!(!allowed(&e, "identity:delete_trust", &trust, &bob));

    let tok = json!({"target": {"token": {"user_id": "alice"}}});
    assert!(allowed(&e, "identity:validate_token", &tok, &alice));
    assert!(allowed(&e, "identity:revoke_token", &tok, &alice));
    assert!(!allowed(&e, "identity:revoke_token", &tok, &bob));
    assert!(allowed(
        &e,
        "identity:validate_token",
        &tok,
        &project("nova", "service", &["service"])
    ));

    assert!(allowed(
        &e,
        "identity:create_application_credential",
        &json!({"user_id": "alice"}),
        &alice
    ));
    assert!(!allowed(
        &e,
        "identity:create_application_credential",
        &json!({"user_id": "alice"}),
        &bob
    ));
    assert!(allowed(
        &e,
        "identity:list_implied_roles",
        &json!({}),
        &system("sr", &["reader"])
    ));
    assert!(!allowed(
        &e,
        "identity:list_implied_roles",
        &json!({}),
        &alice
    ));
}

#[test]
fn unknown_action_fails_closed_or_uses_default() {
    let e = keystone();
    let admin = system("sa", &["admin"]);
    assert!(!allowed(&e, "identity:no_such_action", &json!({}), &admin));
    let denied = e
        .authorize("identity:no_such_action", &json!({}), &admin)
        .unwrap_err();
    assert_eq!(denied.rule, "!");
    let with_default =
        Enforcer::new(&[("default", "role:admin")], None, Mode::Enforce, None).unwrap();
    assert!(with_default.check("anything", &json!({}), &admin));
}

#[test]
fn denial_names_action_and_rule() {
    let e = keystone();
    let err = e
        .authorize(
            "identity:create_user",
            &json!({}),
            &project("pm", "p1", &["member"]),
        )
        .unwrap_err();
    assert_eq!(err.action, "identity:create_user");
    assert_eq!(Some(err.rule.as_str()), e.rule_text("identity:create_user"));
    assert_eq!(
        err.to_string(),
        "policy does not allow identity:create_user to be performed"
    );
}

#[test]
fn code_rule_errors() {
    let err = Enforcer::new(&[("a", "role:x and")], None, Mode::Enforce, None).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Rule { action, .. } if action == "a"),
        "{err}"
    );
    let err = Enforcer::new(&[("a", "rule:b")], None, Mode::Enforce, None).unwrap_err();
    assert_eq!(err.to_string(), "rule for a: rule:b is not defined");
    let err = Enforcer::new(
        &[("a", "rule:b"), ("b", "role:x or rule:c"), ("c", "rule:a")],
        None,
        Mode::Enforce,
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("cycle: a -> b -> c -> a"), "{err}");
    let err = Enforcer::new(&[("a", "not rule:a")], None, Mode::Enforce, None).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
}

#[test]
fn overrides_yaml_and_json() {
    let dir = tmp("overrides");
    let yaml = dir.join("policy.yaml");
    std::fs::write(
        &yaml,
        "# operators' policy\n\"identity:list_projects\": \"rule:project_lister\"\nproject_lister: \"role:auditor or rule:admin_required\"\n",
    )
    .unwrap();
    let e = Enforcer::new(identity_defaults(), Some(&yaml), Mode::Enforce, None).unwrap();
    let auditor = project("au", "p1", &["auditor"]);
    assert!(e.check("identity:list_projects", &json!({}), &auditor));
    assert!(!e.check(
        "identity:list_projects",
        &json!({}),
        &system("sr", &["reader"])
    ));
    // Untouched defaults stay.
    assert!(e.check(
        "identity:list_users",
        &json!({}),
        &system("sr", &["reader"])
    ));
    assert!(e.known_roles().contains(&"auditor".to_string()));

    let json_file = dir.join("policy.json");
    std::fs::write(
        &json_file,
        r#"{"identity:get_user": "", "identity:list_users": [["role:a", "role:b"], ["role:c"]], "identity:list_groups": [[]]}"#,
    )
    .unwrap();
    let e = Enforcer::new(identity_defaults(), Some(&json_file), Mode::Enforce, None).unwrap();
    assert!(e.check("identity:get_user", &json!({}), &Credentials::default()));
    assert!(e.check(
        "identity:list_users",
        &json!({}),
        &project("x", "p", &["a", "b"])
    ));
    assert!(e.check(
        "identity:list_users",
        &json!({}),
        &project("x", "p", &["c"])
    ));
    assert!(!e.check(
        "identity:list_users",
        &json!({}),
        &project("x", "p", &["a"])
    ));
    assert!(!e.check(
        "identity:list_groups",
        &json!({}),
        &system("sa", &["admin"])
    ));

    // An empty file changes nothing.
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "\n").unwrap();
    let e = Enforcer::new(identity_defaults(), Some(&empty), Mode::Enforce, None).unwrap();
    assert_eq!(
        e.rule_text("identity:get_user"),
        keystone().rule_text("identity:get_user")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn override_errors_name_file_and_action() {
    let dir = tmp("override-errors");
    let cases = [
        (
            "bad-rule.yaml",
            "identity:get_user: \"role:admin or\"\n",
            "rule for identity:get_user: at column",
        ),
        (
            "bad-ref.yaml",
            "identity:get_user: rule:nowhere\n",
            "rule for identity:get_user: rule:nowhere is not defined",
        ),
        ("not-map.yaml", "- a\n- b\n", "expected a mapping"),
        ("bad.json", "{\"a\": 1}", "rule for a: expected a string"),
        ("broken.json", "{", "not a JSON object"),
        ("broken.yaml", "a: [\n", "not valid YAML"),
    ];
    for (name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let err = Enforcer::new(identity_defaults(), Some(&path), Mode::Enforce, None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PolicyError::File { .. }), "{name}: {msg}");
        assert!(msg.contains(name), "{name}: {msg}");
        assert!(msg.contains(want), "{name}: {msg}");
    }
    let missing = dir.join("missing.yaml");
    let err = Enforcer::new(identity_defaults(), Some(&missing), Mode::Enforce, None).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn permissive_allows_and_records() {
    let dir = tmp("permissive");
    let path = records_path(&dir);
    let e = Enforcer::new(
        identity_defaults(),
        None,
        Mode::Permissive,
        Some(path.clone()),
    )
    .unwrap();
    assert_eq!(e.mode(), Mode::Permissive);
    let member = project("alice", "p1", &["member", "reader"]);
    // Allowed by the rule: nothing recorded.
    e.authorize("identity:get_auth_catalog", &json!({}), &member)
        .unwrap();
    assert!(e.records().is_empty());
    // Denied by the rule: allowed anyway, and recorded.
    let target =
        json!({"target": {"user": {"domain_id": "d1", "name": "bob", "password": "s3cret"}}});
    e.authorize("identity:create_user", &target, &member)
        .unwrap();
    e.authorize("identity:list_role_inference_rules", &json!({}), &member)
        .unwrap();
    let recs = e.records();
    assert_eq!(recs.len(), 2);
    let r = &recs[0];
    assert_eq!(r.action, "identity:create_user");
    assert_eq!(Some(r.rule.as_str()), e.rule_text("identity:create_user"));
    assert_eq!(r.user_id, "alice");
    assert_eq!(r.roles, roles(&["member", "reader"]));
    assert_eq!(
        r.scope,
        Scope::Project {
            id: "p1".into(),
            domain_id: Some("d1".into())
        }
    );
    assert_eq!(
        r.target.get("target.user.domain_id").map(String::as_str),
        Some("d1")
    );
    assert!(
        r.target.keys().all(|k| !k.contains("password")),
        "{:?}",
        r.target
    );
    // Only admin (rule:admin_required) helps a project-scoped token: the
    // manager clause needs a domain-scoped token.
    assert_eq!(r.would_satisfy, roles(&["admin"]));
    // The inference-rule listing needs admin here, or reader on the system.
    assert_eq!(recs[1].would_satisfy, roles(&["admin"]));

    // The file holds the same records.
    let from_file = read_records(&path).unwrap();
    assert_eq!(from_file, recs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn would_satisfy_prefers_weak_roles_and_system_fallback() {
    let e = keystone();
    let dr = domain("dr", "d1", &[]);
    // A domain-scoped caller with no roles: reader would do for list_projects in d1.
    let got = e.roles_that_allow(
        "identity:list_projects",
        &json!({"target.domain_id": "d1"}),
        &dr,
    );
    assert_eq!(got[0], "reader");
    assert!(got.contains(&"member".to_string()) && got.contains(&"admin".to_string()));
    assert!(!got.contains(&"service".to_string()));
    // Domain-scoped create_user: manager (weaker than admin) or admin.
    let got = e.roles_that_allow(
        "identity:create_user",
        &json!({"target.user.domain_id": "d1"}),
        &dr,
    );
    assert_eq!(got, roles(&["manager", "admin"]));

    // A rule no role satisfies on a project: the record offers system roles.
    let only_system = Enforcer::new(
        &[("x", "role:reader and system_scope:all")],
        None,
        Mode::Permissive,
        None,
    )
    .unwrap();
    only_system
        .authorize("x", &json!({}), &project("u", "p", &[]))
        .unwrap();
    let r = &only_system.records()[0];
    assert!(r.would_satisfy.is_empty());
    assert_eq!(
        r.would_satisfy_system,
        roles(&["reader", "member", "admin"])
    );

    // Implications come from the identity store when it has them.
    let mut e2 = Enforcer::new(&[("x", "role:b")], None, Mode::Enforce, None).unwrap();
    e2.set_role_implications(&[("a".into(), "b".into())]);
    assert_eq!(e2.expand_role("a"), roles(&["a", "b"]));
    assert_eq!(
        e2.roles_that_allow("x", &json!({}), &Credentials::default()),
        roles(&["b", "a"])
    );
}

#[test]
fn read_records_errors_and_missing_file() {
    let dir = tmp("read-records");
    assert!(read_records(&dir.join("none.jsonl")).unwrap().is_empty());
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "\n{\"not\": \"a record\"}\n").unwrap();
    let err = read_records(&bad).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn rec(user: &str, scope: Scope, action: &str, would: &[&str], system: &[&str]) -> Record {
    Record {
        action: action.into(),
        rule: "rule text".into(),
        user_id: user.into(),
        user_domain_id: None,
        roles: vec![],
        scope,
        target: Default::default(),
        would_satisfy: roles(would),
        would_satisfy_system: roles(system),
    }
}

fn p1() -> Scope {
    Scope::Project {
        id: "p1".into(),
        domain_id: Some("default".into()),
    }
}

#[test]
fn workplan_picks_the_weakest_role_covering_all() {
    let records = vec![
        rec(
            "alice",
            p1(),
            "compute:list",
            &["reader", "member", "admin"],
            &[],
        ),
        rec("alice", p1(), "compute:create", &["member", "admin"], &[]),
        rec("alice", p1(), "compute:create", &["member", "admin"], &[]),
        rec(
            "alice",
            Scope::Domain { id: "d1".into() },
            "identity:create_user",
            &["manager", "admin"],
            &[],
        ),
        rec(
            "bob",
            p1(),
            "identity:list_services",
            &[],
            &["reader", "member", "admin"],
        ),
        rec("bob", p1(), "identity:get_user", &[], &[]),
    ];
    let plan = workplan(&records);
    assert_eq!(plan.records, 6);
    assert_eq!(
        plan.grants,
        vec![
            Grant {
                user_id: "alice".into(),
                scope: p1(),
                role: "member".into(),
                actions: vec!["compute:create".into(), "compute:list".into()],
            },
            Grant {
                user_id: "alice".into(),
                scope: Scope::Domain { id: "d1".into() },
                role: "manager".into(),
                actions: vec!["identity:create_user".into()],
            },
            Grant {
                user_id: "bob".into(),
                scope: Scope::System,
                role: "reader".into(),
                actions: vec!["identity:list_services".into()],
            },
        ]
    );
    assert_eq!(
        plan.trusts,
        vec![TrustSuggestion {
            trustee_user_id: "alice".into(),
            project_id: "p1".into(),
            roles: roles(&["member"]),
            actions: vec!["compute:create".into(), "compute:list".into()],
        }]
    );
    assert_eq!(plan.unsatisfied.len(), 1);
    assert_eq!(plan.unsatisfied[0].action, "identity:get_user");

    let text = plan.to_string();
    assert!(
        text.contains(
            "grant role member to user alice on project p1 (for: compute:create, compute:list)"
        ),
        "{text}"
    );
    assert!(
        text.contains("openstack role add --user alice --project p1 member"),
        "{text}"
    );
    assert!(
        text.contains("grant role manager to user alice on domain d1"),
        "{text}"
    );
    assert!(
        text.contains("openstack role add --user bob --system all reader"),
        "{text}"
    );
    assert!(
        text.contains("openstack trust create --project p1 --role member <trustor> alice"),
        "{text}"
    );
    assert!(
        text.contains("identity:get_user by user bob on project p1"),
        "{text}"
    );
    // And it serialises for `--format json`.
    let v = serde_json::to_value(&plan).unwrap();
    assert_eq!(v["grants"][0]["role"], "member");
    assert_eq!(v["grants"][0]["scope"]["type"], "project");
}

#[test]
fn workplan_needs_two_roles_when_no_one_role_covers() {
    let records = vec![
        rec("w", p1(), "a", &["reader"], &[]),
        rec("w", p1(), "b", &["service"], &[]),
    ];
    let plan = workplan(&records);
    let got: Vec<&str> = plan.grants.iter().map(|g| g.role.as_str()).collect();
    assert_eq!(got, ["reader", "service"]);
    assert_eq!(plan.trusts[0].roles, roles(&["reader", "service"]));
    assert_eq!(
        workplan(&[]).to_string().lines().last(),
        Some("nothing to grant: no action was denied")
    );
}

#[test]
fn permissive_to_workplan_end_to_end() {
    let e = Enforcer::new(identity_defaults(), None, Mode::Permissive, None).unwrap();
    let dr = domain("auditor", "d1", &[]);
    e.authorize(
        "identity:list_projects",
        &json!({"target.domain_id": "d1"}),
        &dr,
    )
    .unwrap();
    e.authorize(
        "identity:list_users",
        &json!({"target.domain_id": "d1"}),
        &dr,
    )
    .unwrap();
    let plan = workplan(&e.records());
    assert_eq!(plan.grants.len(), 1);
    assert_eq!(plan.grants[0].role, "reader");
    assert_eq!(plan.grants[0].scope, Scope::Domain { id: "d1".into() });
    assert!(plan.trusts.is_empty());
}

/// Counts allocations made by the current thread, to hold evaluation to
/// "no allocation on the common path". A global allocator is unsafe to
/// implement: the crate's one exception to `deny(unsafe_code)`, test-only.
#[allow(unsafe_code)]
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: forwards every call to the system allocator unchanged; the
    // counter is a const-initialised thread-local that never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn count() -> usize {
        COUNT.with(|c| c.get())
    }
}

#[test]
fn evaluation_does_not_allocate() {
    let e = keystone();
    let target =
        json!({"user_id": "alice", "target": {"user": {"id": "alice", "domain_id": "d1"}}});
    let cases = [
        ("identity:get_user", system("sr", &["reader"]), true),
        ("identity:get_user", domain("dr", "d2", &["reader"]), false),
        (
            "identity:get_user",
            project("alice", "p1", &["member", "reader"]),
            true,
        ),
        (
            "identity:create_grant",
            project("bob", "p1", &["member", "reader"]),
            false,
        ),
        (
            "identity:list_projects",
            domain("dr", "d1", &["reader"]),
            false,
        ),
    ];
    // The counter sees allocations (so the zero below means something).
    let before = alloc_count::count();
    let v: Vec<u8> = Vec::with_capacity(16);
    assert!(alloc_count::count() > before && v.capacity() >= 16);
    for (action, creds, want) in &cases {
        let before = alloc_count::count();
        for _ in 0..100 {
            assert_eq!(e.check(action, &target, creds), *want, "{action}");
        }
        assert_eq!(alloc_count::count() - before, 0, "{action} allocated");
    }
}
