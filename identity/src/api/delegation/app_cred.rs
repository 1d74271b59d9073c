//! Application credentials: create, list, show, delete.

use super::{parse_expiry, resolve_role, role_brief, RoleRefBody, Q};
use crate::api::resources::get_or_404;
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn app_cred_json(id: &Identity, state: &State, c: &AppCred) -> Value {
    json!({
        "id": c.id, "name": c.name, "description": c.description, "user_id": c.user_id,
        "project_id": c.project_id, "expires_at": c.expires_at.map(fmt_naive_time),
        "unrestricted": c.unrestricted, "access_rules": [],
        "roles": c.role_ids.iter().map(|r| role_brief(state, r)).collect::<Vec<_>>(),
        "links": self_link(id, &format!("users/{}/application_credentials/{}", c.user_id, c.id)),
    })
}

#[derive(Deserialize)]
struct AppCredBody {
    name: String,
    description: Option<String>,
    secret: Option<String>,
    expires_at: Option<String>,
    roles: Option<Vec<RoleRefBody>>,
    unrestricted: Option<bool>,
}

fn own_target(uid: &str, state: &State) -> Value {
    let dom = state.users.get(uid).map(|u| u.domain_id.clone());
    json!({"user_id": uid, "target": {"user": {"id": uid, "domain_id": dom}}})
}

pub async fn create_app_cred(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let b: AppCredBody = typed(
        section(&body, "application_credential")?,
        "application_credential",
    )?;
    check_name("application_credential.name", &b.name)?;
    let state = id.snapshot();
    get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:create_application_credential",
        &own_target(&uid, &state),
    )?;
    if ctx.user_id != uid {
        return Err(IdentityError::Forbidden(
            "Application credentials can only be created for yourself.".into(),
        )
        .into());
    }
    let project_id = ctx.project_id.clone().ok_or_else(|| {
        IdentityError::Forbidden("Application credentials need a project-scoped token.".into())
    })?;
    if let Some(acid) = &ctx.app_cred_id {
        if !state.app_creds.get(acid).is_some_and(|c| c.unrestricted) {
            return Err(IdentityError::Forbidden(
                "A restricted application credential cannot create another.".into(),
            )
            .into());
        }
    }
    if ctx.trust.is_some() {
        return Err(IdentityError::Forbidden(
            "Application credentials cannot be created with a trust-scoped token.".into(),
        )
        .into());
    }
    let role_ids = match &b.roles {
        None => ctx.role_ids.clone(),
        Some(rs) if rs.is_empty() => ctx.role_ids.clone(),
        Some(rs) => {
            let mut v = Vec::new();
            for (i, r) in rs.iter().enumerate() {
                let rid = resolve_role(&state, r, &format!("application_credential.roles[{i}]"))?;
                if !ctx.role_ids.contains(&rid) {
                    return Err(IdentityError::Forbidden(format!(
                        "You do not hold role {rid} on this project."
                    ))
                    .into());
                }
                if !v.contains(&rid) {
                    v.push(rid);
                }
            }
            v
        }
    };
    let expires_at = parse_expiry(b.expires_at.as_ref(), "application_credential.expires_at")?;
    // Keystone's ValidationExpirationError: a credential born expired is a client error.
    if expires_at.is_some_and(|e| e <= now_micros()) {
        return Err(IdentityError::bad(
            "The 'expires_at' must not be before now. Invalid input for field \
             'application_credential.expires_at'.",
        )
        .into());
    }
    let secret = match b.secret {
        Some(s) if s.is_empty() => {
            return Err(IdentityError::bad(
                "Invalid input for field 'application_credential.secret': empty.",
            )
            .into())
        }
        Some(s) => s,
        None => {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
                + &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(rand::random::<[u8; 32]>())
        }
    };
    let c = AppCred {
        id: new_id(),
        user_id: uid.clone(),
        name: b.name,
        description: b.description,
        secret_hash: secret_hash(&secret),
        project_id,
        role_ids,
        expires_at,
        unrestricted: b.unrestricted.unwrap_or(false),
    };
    let c2 = c.clone();
    id.write_async(move |tx| {
        let c2 = c2.clone();
        if tx.state.app_creds.values().any(|x| x.user_id == c2.user_id && x.name == c2.name) {
            return Err(IdentityError::conflict(format!("Conflict occurred attempting to store application_credential - Duplicate entry found with name {}.", c2.name)));
        }
        tx.put_app_cred(c2);
        Ok(())
    }).await?;
    let mut v = app_cred_json(&id, &id.snapshot(), &c);
    v["secret"] = json!(secret);
    created(json!({"application_credential": v}))
}

pub async fn list_app_creds(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
    Query(q): Q,
) -> JsonResult {
    let state = id.snapshot();
    get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:list_application_credentials",
        &own_target(&uid, &state),
    )?;
    let items = state
        .app_creds
        .values()
        .filter(|c| c.user_id == uid)
        .filter(|c| q.get("name").is_none_or(|n| *n == c.name))
        .map(|c| app_cred_json(&id, &state, c))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "application_credentials",
        &format!("users/{uid}/application_credentials"),
        items,
    )))
}

fn find_cred<'a>(state: &'a State, uid: &str, cid: &str) -> ApiResult<&'a AppCred> {
    state
        .app_creds
        .get(cid)
        .filter(|c| c.user_id == uid)
        .ok_or_else(|| IdentityError::not_found("application credential", cid).into())
}

pub async fn get_app_cred(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((uid, cid)): Path<(String, String)>,
) -> JsonResult {
    let state = id.snapshot();
    id.authorize(
        &ctx,
        "identity:get_application_credential",
        &own_target(&uid, &state),
    )?;
    let c = find_cred(&state, &uid, &cid)?;
    Ok(axum::Json(
        json!({"application_credential": app_cred_json(&id, &state, c)}),
    ))
}

pub async fn delete_app_cred(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((uid, cid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    id.authorize(
        &ctx,
        "identity:delete_application_credential",
        &own_target(&uid, &state),
    )?;
    find_cred(&state, &uid, &cid)?;
    id.write_async(move |tx| {
        tx.del_app_cred(&cid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
