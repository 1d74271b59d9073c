use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn member_setup(h: &H) -> (String, String, String) {
    let u = h.user("alice", "pw").await;
    let p = h.project("demo").await;
    h.grant(&p, &u, "member").await;
    let t = h.token_for("alice", "pw", project_scope(&p)).await;
    (u, p, t)
}

#[tokio::test]
async fn application_credentials() {
    let h = H::new().await;
    let (u, p, t) = member_setup(&h).await;
    let path = format!("/v3/users/{u}/application_credentials");
    let r = h
        .call(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({"application_credential": {"name": "ci", "roles": [{"name": "reader"}]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let ac = &r.body["application_credential"];
    let (id, secret) = (
        ac["id"].as_str().unwrap().to_string(),
        ac["secret"].as_str().unwrap().to_string(),
    );
    assert_eq!(ac["project_id"], p);
    assert_eq!(ac["roles"][0]["name"], "reader");
    // duplicate name, a role the user lacks
    assert_eq!(
        h.call(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({"application_credential": {"name": "ci"}}))
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let r = h
        .call(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({"application_credential": {"name": "x", "roles": [{"name": "admin"}]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // auth by id, then by name + user
    let r = h.issue(json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": id, "secret": secret}}}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(role_names(&r.body), vec!["reader"]);
    assert_eq!(r.body["token"]["project"]["id"], p);
    assert_eq!(r.body["token"]["application_credential"]["id"], id);
    assert_eq!(
        r.body["token"]["methods"],
        json!(["application_credential"])
    );
    let act = r.subject();
    let r = h
        .issue(json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"name": "ci", "user": {"name": "alice", "domain": {"id": "default"}}, "secret": secret}}}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h.issue(json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": id, "secret": "wrong"}}}})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // a restricted app cred token cannot make more app creds
    let r = h
        .call(
            Method::POST,
            &path,
            Some(&act),
            Some(json!({"application_credential": {"name": "y"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // list / get (no secret) / delete, and the token dies with it
    let r = h.call(Method::GET, &path, Some(&t), None).await;
    assert_eq!(r.body["application_credentials"][0]["id"], id);
    let r = h
        .call(Method::GET, &format!("{path}/{id}"), Some(&t), None)
        .await;
    assert!(r.body["application_credential"].get("secret").is_none());
    assert_eq!(
        h.call(Method::DELETE, &format!("{path}/{id}"), Some(&t), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.validate(&act).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.call(Method::GET, &format!("{path}/{id}"), Some(&t), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn expired_application_credential_is_refused() {
    let h = H::new().await;
    let (u, _p, t) = member_setup(&h).await;
    let path = format!("/v3/users/{u}/application_credentials");
    // Born expired: 400, as Keystone answers.
    let r = h.call(Method::POST, &path, Some(&t), Some(json!({"application_credential": {"name": "old", "expires_at": "2001-01-01T00:00:00"}}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.msg().contains("expires_at"), "{}", r.msg());
    // Expiring a second from now: works, then is refused once expired.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500))
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    let r = h
        .call(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({"application_credential": {"name": "old", "expires_at": soon}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["application_credential"]["id"].as_str().unwrap();
    let secret = r.body["application_credential"]["secret"].as_str().unwrap();
    let auth = json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": id, "secret": secret}}}});
    assert_eq!(h.issue(auth.clone()).await.status, StatusCode::CREATED);
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let r = h.issue(json!({"auth": {"identity": {"methods": ["application_credential"], "application_credential": {"id": id, "secret": secret}}}})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = h
        .call(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({"application_credential": {"name": "bad", "expires_at": "soon"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

fn trust_scope(tid: &str) -> Option<serde_json::Value> {
    Some(json!({"OS-TRUST:trust": {"id": tid}}))
}

#[tokio::test]
async fn trusts_delegate_only_the_given_roles() {
    let h = H::new().await;
    let (alice, p, t) = member_setup(&h).await;
    let bob = h.user("bob", "pw2").await;
    h.grant(&p, &alice, "admin").await;
    let t = {
        let _ = t;
        h.token_for("alice", "pw", project_scope(&p)).await
    };
    let body = json!({"trust": {"trustor_user_id": alice, "trustee_user_id": bob, "project_id": p, "roles": [{"name": "member"}], "impersonation": false, "remaining_uses": 2}});
    let r = h
        .call(Method::POST, "/v3/OS-TRUST/trusts", Some(&t), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let tid = r.body["trust"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["trust"]["roles"][0]["name"], "member");
    assert_eq!(r.body["trust"]["remaining_uses"], 2);
    // the trustee gets only member (and what member implies), not admin
    let r = h.login("bob", "pw2", trust_scope(&tid)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(role_names(&r.body), vec!["member", "reader"]);
    assert_eq!(r.body["token"]["OS-TRUST:trust"]["id"], tid);
    assert_eq!(
        r.body["token"]["OS-TRUST:trust"]["trustor_user"]["id"],
        alice
    );
    assert_eq!(r.body["token"]["user"]["id"], bob);
    assert_eq!(r.body["token"]["project"]["id"], p);
    let tt = r.subject();
    // remaining_uses counts down to 0
    assert_eq!(
        h.login("bob", "pw2", trust_scope(&tid)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.login("bob", "pw2", trust_scope(&tid)).await.status,
        StatusCode::NOT_FOUND
    );
    // only the trustee may use it
    assert_eq!(
        h.login("alice", "pw", trust_scope(&tid)).await.status,
        StatusCode::FORBIDDEN
    );
    // lists and roles
    let bt = h.token_for("bob", "pw2", None).await;
    let r = h
        .call(
            Method::GET,
            &format!("/v3/OS-TRUST/trusts?trustee_user_id={bob}"),
            Some(&bt),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["trusts"].as_array().unwrap().len(), 1);
    let r = h
        .call(
            Method::GET,
            &format!("/v3/OS-TRUST/trusts?trustor_user_id={alice}"),
            Some(&bt),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // the trust token dies with the trust
    assert_eq!(h.validate(&tt).await.status, StatusCode::OK);
    assert_eq!(
        h.call(
            Method::DELETE,
            &format!("/v3/OS-TRUST/trusts/{tid}"),
            Some(&t),
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.validate(&tt).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/v3/OS-TRUST/trusts/{tid}"),
            Some(&t),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn trust_tokens_die_when_trustor_loses_role_or_is_disabled() {
    let h = H::new().await;
    let (alice, p, t) = member_setup(&h).await;
    let bob = h.user("bob", "pw2").await;
    let mk = |imp: bool| json!({"trust": {"trustor_user_id": alice, "trustee_user_id": bob, "project_id": p, "roles": [{"name": "member"}], "impersonation": imp}});
    let tid = h
        .call(
            Method::POST,
            "/v3/OS-TRUST/trusts",
            Some(&t),
            Some(mk(true)),
        )
        .await
        .body["trust"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h.login("bob", "pw2", trust_scope(&tid)).await;
    // impersonation: the token shows the trustor
    assert_eq!(r.body["token"]["user"]["id"], alice);
    let tt = r.subject();
    let r = h
        .call(
            Method::GET,
            &format!("/v3/OS-TRUST/trusts/{tid}/roles"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["roles"][0]["name"], "member");
    let member = h.role_id("member").await;
    assert_eq!(
        h.call(
            Method::GET,
            &format!("/v3/OS-TRUST/trusts/{tid}/roles/{member}"),
            Some(&t),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    // trustor disabled
    h.patch(
        &format!("/v3/users/{alice}"),
        json!({"user": {"enabled": false}}),
    )
    .await;
    assert_eq!(h.validate(&tt).await.status, StatusCode::NOT_FOUND);
    h.patch(
        &format!("/v3/users/{alice}"),
        json!({"user": {"enabled": true}}),
    )
    .await;
    let tt = h.login("bob", "pw2", trust_scope(&tid)).await.subject();
    assert_eq!(h.validate(&tt).await.status, StatusCode::OK);
    // trustor loses the delegated role
    h.delete(&format!("/v3/projects/{p}/users/{alice}/roles/{member}"))
        .await;
    assert_eq!(h.validate(&tt).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.login("bob", "pw2", trust_scope(&tid)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn trust_validation_errors() {
    let h = H::new().await;
    let (alice, p, t) = member_setup(&h).await;
    let bob = h.user("bob", "pw2").await;
    let post = |b: serde_json::Value| {
        let t = t.clone();
        let h = &h;
        async move {
            h.call(
                Method::POST,
                "/v3/OS-TRUST/trusts",
                Some(&t),
                Some(json!({ "trust": b })),
            )
            .await
        }
    };
    // not the trustor
    let r = post(json!({"trustor_user_id": bob, "trustee_user_id": alice, "project_id": p, "roles": [{"name": "member"}], "impersonation": false})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // a role the trustor does not hold
    let r = post(json!({"trustor_user_id": alice, "trustee_user_id": bob, "project_id": p, "roles": [{"name": "admin"}], "impersonation": false})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // impersonation is required, remaining_uses must be positive
    let r = post(json!({"trustor_user_id": alice, "trustee_user_id": bob, "project_id": p, "roles": [{"name": "member"}]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.msg().contains("impersonation"), "{}", r.msg());
    let r = post(json!({"trustor_user_id": alice, "trustee_user_id": bob, "project_id": p, "roles": [{"name": "member"}], "impersonation": false, "remaining_uses": 0})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // unknown trustee
    let r = post(json!({"trustor_user_id": alice, "trustee_user_id": "nope", "project_id": p, "roles": [{"name": "member"}], "impersonation": false})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // redelegation: allowed chain narrows
    let r = post(json!({"trustor_user_id": alice, "trustee_user_id": bob, "project_id": p, "roles": [{"name": "member"}], "impersonation": false, "allow_redelegation": true, "redelegation_count": 2})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let tid = r.body["trust"]["id"].as_str().unwrap().to_string();
    let carol = h.user("carol", "pw3").await;
    let bt = h.login("bob", "pw2", trust_scope(&tid)).await.subject();
    let r = h
        .call(Method::POST, "/v3/OS-TRUST/trusts", Some(&bt), Some(json!({"trust": {"trustor_user_id": bob, "trustee_user_id": carol, "project_id": p, "roles": [{"name": "member"}], "impersonation": false, "allow_redelegation": true}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["trust"]["redelegated_trust_id"], tid);
    assert_eq!(r.body["trust"]["redelegation_count"], 1);
    let child = r.body["trust"]["id"].as_str().unwrap().to_string();
    // deleting the original takes the redelegated one with it
    h.call(
        Method::DELETE,
        &format!("/v3/OS-TRUST/trusts/{tid}"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(
        h.get(&format!("/v3/OS-TRUST/trusts/{child}")).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Keystone stores an application credential's expiry as a naive UTC time and
/// echoes it as `%Y-%m-%dT%H:%M:%S.%f` (six digits, no zone), whether the
/// client sent a `Z`, an offset or nothing (tempest compares it with
/// `datetime.isoformat()`).
#[tokio::test]
async fn application_credential_expiry_is_echoed_in_keystones_form() {
    let h = H::new().await;
    let (u, _p, t) = member_setup(&h).await;
    let path = format!("/v3/users/{u}/application_credentials");
    for (name, sent, shown) in [
        (
            "z",
            "2099-01-02T03:04:05.123456Z",
            "2099-01-02T03:04:05.123456",
        ),
        (
            "naive",
            "2099-01-02T03:04:05.123456",
            "2099-01-02T03:04:05.123456",
        ),
        ("whole", "2099-01-02T03:04:05", "2099-01-02T03:04:05.000000"),
        (
            "offset",
            "2099-01-02T05:04:05.5+02:00",
            "2099-01-02T03:04:05.500000",
        ),
    ] {
        let r = h
            .call(
                Method::POST,
                &path,
                Some(&t),
                Some(json!({"application_credential": {"name": name, "expires_at": sent}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(
            r.body["application_credential"]["expires_at"], shown,
            "{sent}"
        );
        let id = r.body["application_credential"]["id"].as_str().unwrap();
        let r = h
            .call(Method::GET, &format!("{path}/{id}"), Some(&t), None)
            .await;
        assert_eq!(
            r.body["application_credential"]["expires_at"], shown,
            "{sent}"
        );
    }
}
