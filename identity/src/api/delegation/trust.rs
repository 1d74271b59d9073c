//! OS-TRUST trusts: create, list, show, delete, and their roles.

use super::{parse_expiry, resolve_role, RoleRefBody, Q};
use crate::api::assignments::role_json;
use crate::api::resources::get_or_404;
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use crate::state::{Scope, State};
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn trust_json(id: &Identity, state: &State, t: &Trust) -> Value {
    let roles: Vec<Value> = t
        .role_ids
        .iter()
        .filter_map(|r| state.roles.get(r))
        .map(|r| json!({"id": r.id, "name": r.name, "domain_id": r.domain_id, "links": self_link(id, &format!("roles/{}", r.id))}))
        .collect();
    json!({
        "id": t.id, "trustor_user_id": t.trustor_user_id, "trustee_user_id": t.trustee_user_id,
        "project_id": t.project_id, "impersonation": t.impersonation,
        "expires_at": t.expires_at.map(fmt_time), "remaining_uses": t.remaining_uses,
        "allow_redelegation": t.allow_redelegation, "redelegation_count": t.redelegation_count,
        "redelegated_trust_id": t.redelegated_trust_id,
        "roles": roles,
        "roles_links": {"self": format!("{}/OS-TRUST/trusts/{}/roles", id.v3_url(), t.id), "previous": null, "next": null},
        "links": self_link(id, &format!("OS-TRUST/trusts/{}", t.id)),
    })
}

fn trust_target(t: &Trust) -> Value {
    json!({"target": {"trust": {"id": t.id, "trustor_user_id": t.trustor_user_id, "trustee_user_id": t.trustee_user_id}}})
}

#[derive(Deserialize)]
struct TrustBody {
    trustor_user_id: String,
    trustee_user_id: String,
    project_id: Option<String>,
    #[serde(default)]
    roles: Vec<RoleRefBody>,
    impersonation: bool,
    expires_at: Option<String>,
    remaining_uses: Option<i64>,
    allow_redelegation: Option<bool>,
    redelegation_count: Option<u32>,
}

/// A trust that is usable now (not expired, uses left).
fn live_trust<'a>(state: &'a State, tid: &str, now: Micros) -> ApiResult<&'a Trust> {
    state
        .trusts
        .get(tid)
        .filter(|t| t.expires_at.is_none_or(|e| e > now) && t.remaining_uses != Some(0))
        .ok_or_else(|| IdentityError::not_found("trust", tid).into())
}

pub async fn create_trust(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "trust")?;
    let b: TrustBody = typed(sec, "trust")?;
    id.authorize(
        &ctx,
        "identity:create_trust",
        &json!({"trust": {"trustor_user_id": b.trustor_user_id}, "target": {"trust": sec}}),
    )?;
    if ctx.user_id != b.trustor_user_id {
        return Err(IdentityError::Forbidden(
            "The authenticated user should match the trustor.".into(),
        )
        .into());
    }
    let state = id.snapshot();
    get_or_404(&state.users, "user", &b.trustee_user_id)?;
    if b.remaining_uses.is_some_and(|n| n <= 0) {
        return Err(IdentityError::bad(
            "Invalid input for field 'trust.remaining_uses': must be a positive integer or null.",
        )
        .into());
    }
    let now = now_micros();
    let mut expires_at = parse_expiry(b.expires_at.as_ref(), "trust.expires_at")?;
    if expires_at.is_some_and(|e| e <= now) {
        return Err(IdentityError::bad(
            "Invalid input for field 'trust.expires_at': already in the past.",
        )
        .into());
    }
    let mut role_ids = Vec::new();
    for (i, r) in b.roles.iter().enumerate() {
        let rid = resolve_role(&state, r, &format!("trust.roles[{i}]"))?;
        if !role_ids.contains(&rid) {
            role_ids.push(rid);
        }
    }
    match &b.project_id {
        Some(p) => {
            get_or_404(&state.projects, "project", p)?;
            if role_ids.is_empty() {
                return Err(IdentityError::bad("Invalid input for field 'trust.roles': at least one role is needed with a project.").into());
            }
            // A redelegation is checked against the trust it narrows (below).
            let held = match &ctx.trust {
                Some(_) => ctx.role_ids.iter().cloned().collect(),
                None => state.held_role_ids(&b.trustor_user_id, &Scope::Project(p.clone())),
            };
            if let Some(missing) = role_ids.iter().find(|r| !held.contains(*r)) {
                return Err(IdentityError::Forbidden(format!(
                    "The trustor does not hold role {missing} on project {p}."
                ))
                .into());
            }
        }
        None if !role_ids.is_empty() => {
            return Err(IdentityError::bad(
                "Invalid input for field 'trust.roles': roles need a project_id.",
            )
            .into());
        }
        None => {}
    }
    let allow = b.allow_redelegation.unwrap_or(false);
    let mut count = if allow {
        b.redelegation_count.unwrap_or(MAX_REDELEGATION)
    } else {
        0
    };
    if count > MAX_REDELEGATION {
        return Err(IdentityError::Forbidden(format!(
            "redelegation_count may be at most {MAX_REDELEGATION}."
        ))
        .into());
    }
    let mut parent = None;
    // A trust made with a trust-scoped token is a redelegation of that trust.
    if let Some(ti) = &ctx.trust {
        let pt = live_trust(&state, &ti.id, now)?;
        if !pt.allow_redelegation || pt.redelegation_count == 0 {
            return Err(
                IdentityError::Forbidden("The trust does not allow redelegation.".into()).into(),
            );
        }
        if !role_ids.iter().all(|r| pt.role_ids.contains(r)) || b.project_id != pt.project_id {
            return Err(IdentityError::Forbidden(
                "A redelegated trust can only narrow the original.".into(),
            )
            .into());
        }
        if let Some(pe) = pt.expires_at {
            expires_at = Some(expires_at.map_or(pe, |e| e.min(pe)));
        }
        count = count.min(pt.redelegation_count - 1);
        parent = Some(pt.id.clone());
    }
    let t = Trust {
        id: new_id(),
        trustor_user_id: b.trustor_user_id,
        trustee_user_id: b.trustee_user_id,
        project_id: b.project_id,
        role_ids,
        impersonation: b.impersonation,
        expires_at,
        remaining_uses: b.remaining_uses.map(|n| n as u64),
        allow_redelegation: allow && count > 0,
        redelegation_count: count,
        redelegated_trust_id: parent,
    };
    let t2 = t.clone();
    id.write_async(move |tx| {
        let t2 = t2.clone();
        tx.put_trust(t2);
        Ok(())
    })
    .await?;
    created(json!({"trust": trust_json(&id, &id.snapshot(), &t)}))
}

pub async fn list_trusts(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let trustor = q.get("trustor_user_id");
    let trustee = q.get("trustee_user_id");
    let state = id.snapshot();
    let now = now_micros();
    // Keystone: listing another user's trusts needs the admin rule; your own, not.
    let own =
        trustor.is_some_and(|t| *t == ctx.user_id) || trustee.is_some_and(|t| *t == ctx.user_id);
    let (action, target) = match (trustor, trustee) {
        (Some(t), _) => (
            "identity:list_trusts_for_trustor",
            json!({"target": {"trust": {"trustor_user_id": t}}}),
        ),
        (None, Some(t)) => (
            "identity:list_trusts_for_trustee",
            json!({"target": {"trust": {"trustee_user_id": t}}}),
        ),
        _ => ("identity:list_trusts", json!({})),
    };
    if !own {
        id.authorize(&ctx, action, &target)?;
    }
    let items = state
        .trusts
        .values()
        .filter(|t| t.expires_at.is_none_or(|e| e > now))
        .filter(|t| trustor.is_none_or(|x| *x == t.trustor_user_id))
        .filter(|t| trustee.is_none_or(|x| *x == t.trustee_user_id))
        .map(|t| trust_json(&id, &state, t))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "trusts",
        "OS-TRUST/trusts",
        items,
    )))
}

fn party_or_policy(id: &Identity, ctx: &AuthContext, t: &Trust, action: &str) -> ApiResult<()> {
    if ctx.user_id == t.trustor_user_id || ctx.user_id == t.trustee_user_id {
        return Ok(());
    }
    id.authorize(ctx, action, &trust_target(t))?;
    Ok(())
}

pub async fn get_trust(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(tid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let t = live_trust(&state, &tid, now_micros())?;
    party_or_policy(&id, &ctx, t, "identity:get_trust")?;
    Ok(axum::Json(json!({"trust": trust_json(&id, &state, t)})))
}

pub async fn delete_trust(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(tid): Path<String>,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    let t = get_or_404(&state.trusts, "trust", &tid)?;
    if ctx.user_id != t.trustor_user_id {
        id.authorize(&ctx, "identity:delete_trust", &trust_target(t))?;
    }
    let now = now_micros();
    id.write_async(move |tx| {
        // Redelegated trusts go with the trust they came from.
        let mut doomed = vec![tid.clone()];
        let mut i = 0;
        while i < doomed.len() {
            let kids: Vec<String> = tx
                .state
                .trusts
                .values()
                .filter(|x| x.redelegated_trust_id.as_deref() == Some(&doomed[i]))
                .map(|x| x.id.clone())
                .collect();
            doomed.extend(kids);
            i += 1;
        }
        for d in doomed {
            tx.del_trust(&d);
            ops::revoke_trust(tx, &d, now);
        }
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn trust_roles(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(tid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let t = live_trust(&state, &tid, now_micros())?;
    party_or_policy(&id, &ctx, t, "identity:list_roles_for_trust")?;
    let items = t
        .role_ids
        .iter()
        .filter_map(|r| state.roles.get(r))
        .map(|r| role_json(&id, r))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "roles",
        &format!("OS-TRUST/trusts/{tid}/roles"),
        items,
    )))
}

pub async fn trust_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((tid, rid)): Path<(String, String)>,
) -> JsonResult {
    let state = id.snapshot();
    let t = live_trust(&state, &tid, now_micros())?;
    party_or_policy(&id, &ctx, t, "identity:get_role_for_trust")?;
    if !t.role_ids.contains(&rid) {
        return Err(IdentityError::not_found("role", &rid).into());
    }
    let r = get_or_404(&state.roles, "role", &rid)?;
    Ok(axum::Json(json!({"role": role_json(&id, r)})))
}
