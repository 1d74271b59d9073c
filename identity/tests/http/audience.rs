//! Build delegation: the compute service user, a build's trust, and step
//! tokens bound to one service (audience), refused on the identity API
//! (or let through and recorded under permissive binding).

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use weft_identity::service::{BuildTrust, ServiceUser, TokenBinding, STEP_TOKEN_TTL};
use weft_identity::token::Audience;
use weft_identity::Identity;

/// alice (member of `demo`), the `nova` service user, and alice's trust to it.
async fn build_trust(h: &H) -> (String, String, ServiceUser, String) {
    let alice = h.user("alice", "pw").await;
    let demo = h.project("demo").await;
    h.grant(&demo, &alice, "member").await;
    let (id, dir) = (h.id.clone(), h.dir.path().to_path_buf());
    let (a, d) = (alice.clone(), demo.clone());
    let (nova, trust) = blocking(move || {
        let nova = id
            .ensure_service_user("nova", &["service".into()], &dir.join("nova-password"))
            .unwrap();
        let trust = id
            .create_build_trust(&BuildTrust {
                trustor_user_id: a,
                trustee_user_id: nova.user_id.clone(),
                project_id: d,
                roles: vec!["member".into()],
            })
            .unwrap();
        (nova, trust)
    })
    .await;
    (alice, demo, nova, trust)
}

async fn step(
    id: &Arc<Identity>,
    nova: &ServiceUser,
    trust: Option<&str>,
    a: Audience,
) -> Result<String, String> {
    let (id, nova, trust) = (id.clone(), nova.clone(), trust.map(String::from));
    blocking(move || {
        id.step_token(&nova, trust.as_deref(), a)
            .map_err(|e| e.to_string())
    })
    .await
}

#[tokio::test]
async fn step_tokens_are_bound_short_lived_and_refused_on_identity() {
    let h = H::new().await;
    let (alice, demo, nova, trust) = build_trust(&h).await;
    // The service user: made once, in project `service`, with its role there.
    let again = {
        let (id, dir) = (h.id.clone(), h.dir.path().to_path_buf());
        blocking(move || {
            id.ensure_service_user("nova", &["service".into()], &dir.join("nova-password"))
                .unwrap()
        })
        .await
    };
    assert_eq!(again.user_id, nova.user_id);
    let pw = std::fs::read_to_string(h.dir.path().join("nova-password")).unwrap();
    let own = h
        .token_for("nova", pw.trim(), project_scope(&nova.project_id))
        .await;
    assert_eq!(role_names(&h.validate(&own).await.body), vec!["service"]);

    let tok = step(&h.id, &nova, Some(&trust), Audience::Image)
        .await
        .unwrap();
    let ctx = h.id.validate_token(&tok).unwrap();
    assert_eq!(ctx.audience, Some(Audience::Image));
    assert_eq!(ctx.project_id.as_deref(), Some(demo.as_str()));
    assert_eq!(ctx.trust.as_ref().unwrap().trustor_user_id, alice);
    assert!(ctx.roles.contains(&"member".to_string()) && !ctx.roles.contains(&"admin".to_string()));
    let ttl = i64::try_from(STEP_TOKEN_TTL.as_micros()).unwrap();
    assert!(
        ctx.expires_at - ctx.issued_at <= ttl,
        "a step token lives 5 minutes at most"
    );
    // Ordinary tokens carry no audience.
    assert_eq!(h.id.validate_token(&h.admin).unwrap().audience, None);

    // The identity API refuses it, with a message that says why.
    for path in [
        "/v3/auth/tokens",
        "/v3/projects",
        &format!("/v3/OS-TRUST/trusts/{trust}"),
    ] {
        let r = h
            .raw(
                Method::GET,
                path,
                Some(&tok),
                None,
                &[("X-Subject-Token", &tok)],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {:?}", r.body);
        assert!(
            r.msg().contains("bound to the image service"),
            "{}",
            r.msg()
        );
    }
    // It cannot make a new trust or token either.
    let r = h
        .call(
            Method::POST,
            "/v3/OS-TRUST/trusts",
            Some(&tok),
            Some(json!({"trust": {"trustor_user_id": alice, "trustee_user_id": nova.user_id, "impersonation": false}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = h
        .issue(json!({"auth": {"identity": {"methods": ["token"], "token": {"id": tok}}}}))
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.body);
    // Validated by another holder (the admin), it is a valid token.
    assert_eq!(h.validate(&tok).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_lost_role_or_deleted_trust_stops_step_tokens_with_a_clear_error() {
    let h = H::new().await;
    let (alice, demo, nova, trust) = build_trust(&h).await;
    let net = step(&h.id, &nova, Some(&trust), Audience::Network)
        .await
        .unwrap();
    let rid = h.role_id("member").await;
    let r = h
        .delete(&format!("/v3/projects/{demo}/users/{alice}/roles/{rid}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let e = step(&h.id, &nova, Some(&trust), Audience::Image)
        .await
        .unwrap_err();
    assert!(
        e.contains(&trust) && e.contains("member") && e.contains(&alice),
        "the refusal names the trust, the role and the trustor: {e}"
    );
    assert!(
        h.id.validate_token(&net).is_err(),
        "tokens already made stop too"
    );
    // Role back, then the trust deleted: its tokens are revoked.
    h.grant(&demo, &alice, "member").await;
    let img = step(&h.id, &nova, Some(&trust), Audience::Image)
        .await
        .unwrap();
    assert!(h.id.validate_token(&img).is_ok());
    let (id, t) = (h.id.clone(), trust.clone());
    blocking(move || id.delete_build_trust(&t).unwrap()).await;
    assert!(h.id.validate_token(&img).is_err());
    let e = step(&h.id, &nova, Some(&trust), Audience::Image)
        .await
        .unwrap_err();
    assert!(e.contains("no longer exists"), "{e}");
    // A user without the role cannot give the trust at all.
    let bob = h.user("bob", "pw").await;
    let (id, n) = (h.id.clone(), nova.user_id.clone());
    let e = blocking(move || {
        id.create_build_trust(&BuildTrust {
            trustor_user_id: bob,
            trustee_user_id: n,
            project_id: demo,
            roles: vec!["member".into()],
        })
        .unwrap_err()
        .to_string()
    })
    .await;
    assert!(e.contains("does not hold role member"), "{e}");
}

#[tokio::test]
async fn permissive_binding_lets_it_through_and_records_it() {
    let h = H::with_binding(false, TokenBinding::Permissive).await;
    let (_, _, nova, trust) = build_trust(&h).await;
    let tok = step(&h.id, &nova, Some(&trust), Audience::Placement)
        .await
        .unwrap();
    let r = h
        .call(Method::GET, "/v3/auth/projects", Some(&tok), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let path = weft_identity::policy::records_path(h.dir.path());
    let records = weft_identity::policy::read_records(&path).unwrap();
    let rec = records
        .iter()
        .find(|r| r.action == "identity:token_audience")
        .expect("the would-be refusal is recorded");
    assert_eq!(rec.rule, "audience:placement");
    assert_eq!(rec.target["trust_id"], trust);
    let plan = weft_identity::policy::workplan(&records);
    assert!(
        plan.unsatisfied
            .iter()
            .any(|u| u.action == "identity:token_audience"),
        "weft policy workplan lists it: {plan}"
    );
}
