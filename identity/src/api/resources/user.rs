//! Users: list, show, create, update, delete, password change, their groups and projects.

use super::{
    default_domain, domain_filter_ok, get_or_404, group_json, project_json, q_bool, user_json,
    user_target, Q,
};
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize, Clone)]
struct UserBody {
    name: Option<String>,
    domain_id: Option<String>,
    password: Option<String>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    default_project_id: Option<Option<String>>,
    description: Option<String>,
    options: Option<serde_json::Map<String, Value>>,
}
const USER_KEYS: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "password",
    "enabled",
    "default_project_id",
    "description",
    "options",
    "links",
    "password_expires_at",
];

pub async fn list_users(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let scope = ctx.domain_id.as_ref().map(|d| json!({"domain_id": d}));
    let filters = [
        "domain_id",
        "enabled",
        "idp_id",
        "name",
        "protocol_id",
        "unique_id",
        "password_expires_at",
    ];
    id.authorize(
        &ctx,
        "identity:list_users",
        &list_target(scope, &q, &filters),
    )?;
    let enabled = q_bool(&q, "enabled")?;
    let state = id.snapshot();
    let items = state
        .users
        .values()
        .filter(|u| domain_filter_ok(&ctx, &u.domain_id))
        .filter(|u| q.get("name").is_none_or(|n| *n == u.name))
        .filter(|u| q.get("domain_id").is_none_or(|d| *d == u.domain_id))
        .filter(|u| enabled.is_none_or(|e| e == u.enabled))
        .map(|u| user_json(&id, u))
        .collect();
    Ok(axum::Json(list_body(&id, "users", "users", items)))
}

pub async fn get_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let u = get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:get_user",
        &json!({"target": {"user": user_target(u)}}),
    )?;
    Ok(axum::Json(json!({"user": user_json(&id, u)})))
}

pub async fn create_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "user")?;
    let b: UserBody = typed(sec, "user")?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'user.name': missing."))?;
    check_name("user.name", &name)?;
    let domain_id = b.domain_id.unwrap_or_else(|| default_domain(&ctx));
    id.authorize(
        &ctx,
        "identity:create_user",
        &json!({"target": {"user": {"name": name, "domain_id": domain_id}}}),
    )?;
    let state = id.snapshot();
    if !state.domains.contains_key(&domain_id) {
        return Err(IdentityError::not_found("domain", &domain_id).into());
    }
    let default_project_id = b.default_project_id.flatten();
    if let Some(p) = &default_project_id {
        if !state.projects.contains_key(p) {
            return Err(IdentityError::not_found("project", p).into());
        }
    }
    let now = now_micros();
    let ex = extras(sec, USER_KEYS);
    let id2 = id.clone();
    let u = blocking(move || {
        let hash = b.password.as_deref().map(|p| id2.hash_password(p)).transpose()?;
        let u = User {
            id: new_id(),
            name,
            domain_id,
            enabled: b.enabled.unwrap_or(true),
            password_created_at: hash.as_ref().map(|_| now),
            password_hash: hash,
            password_expires_at: None,
            default_project_id,
            description: b.description,
            options: b.options.unwrap_or_default(),
            extra: ex,
        };
        id2.write(|tx| {
            if tx.state.user_by_name(&u.domain_id, &u.name).is_some() {
                return Err(IdentityError::conflict(format!("Conflict occurred attempting to store user - Duplicate entry found with name {} at domain ID {}.", u.name, u.domain_id)));
            }
            tx.put_user(u.clone());
            Ok(())
        })?;
        Ok(u)
    })
    .await?;
    created(json!({"user": user_json(&id, &u)}))
}

pub async fn update_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let sec = section(&body, "user")?;
    let b: UserBody = typed(sec, "user")?;
    {
        let state = id.snapshot();
        let u = get_or_404(&state.users, "user", &uid)?;
        id.authorize(
            &ctx,
            "identity:update_user",
            &json!({"target": {"user": user_target(u)}}),
        )?;
        if b.domain_id.as_ref().is_some_and(|d| *d != u.domain_id) {
            return Err(IdentityError::bad(
                "Invalid input for field 'user.domain_id': a user cannot move domains.",
            )
            .into());
        }
        if let Some(Some(p)) = &b.default_project_id {
            if !state.projects.contains_key(p) {
                return Err(IdentityError::not_found("project", p).into());
            }
        }
    }
    if let Some(n) = &b.name {
        check_name("user.name", n)?;
    }
    let ex = extras(sec, USER_KEYS);
    let id2 = id.clone();
    let u = blocking(move || {
        let hash = b
            .password
            .as_deref()
            .map(|p| id2.hash_password(p))
            .transpose()?;
        let now = now_micros();
        id2.write(|tx| {
            let b = b.clone();
            let ex = ex.clone();
            let hash = hash.clone();
            let mut u = tx
                .state
                .users
                .get(&uid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("user", &uid))?;
            let mut revoke = false;
            if let Some(n) = b.name {
                if tx
                    .state
                    .users
                    .values()
                    .any(|x| x.id != uid && x.domain_id == u.domain_id && x.name == n)
                {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                u.name = n;
            }
            if let Some(e) = b.enabled {
                revoke |= u.enabled && !e;
                u.enabled = e;
            }
            if let Some(h) = hash {
                u.password_hash = Some(h);
                u.password_created_at = Some(now);
                u.password_expires_at = None;
                revoke = true;
            }
            if let Some(p) = b.default_project_id {
                u.default_project_id = p;
            }
            if let Some(d) = b.description {
                u.description = Some(d);
            }
            if let Some(o) = b.options {
                u.options.extend(o);
            }
            u.extra.extend(ex);
            tx.put_user(u.clone());
            if revoke {
                ops::revoke_user(tx, &u.id, now);
            }
            Ok(u)
        })
    })
    .await?;
    Ok(axum::Json(json!({"user": user_json(&id, &u)})))
}

pub async fn delete_user(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let u = get_or_404(&state.users, "user", &uid)?;
        id.authorize(
            &ctx,
            "identity:delete_user",
            &json!({"target": {"user": user_target(u)}}),
        )?;
    }
    let now = now_micros();
    id.write_async(move |tx| {
        ops::delete_user(tx, &uid, now);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

#[derive(Deserialize)]
struct PasswordChange {
    password: String,
    original_password: String,
}

/// `POST /users/{id}/password`: needs the original password, not a token
/// (so a user with an expired password can still change it).
pub async fn change_password(
    St(id): St<Arc<Identity>>,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<StatusCode> {
    let b: PasswordChange = typed(section(&body, "user")?, "user")?;
    let id2 = id.clone();
    blocking(move || {
        let state = id2.snapshot();
        let u = state.users.get(&uid).ok_or_else(|| {
            IdentityError::Unauthorized("The request you have made requires authentication.".into())
        })?;
        let ok = u
            .password_hash
            .as_deref()
            .is_some_and(|h| bcrypt::verify(&b.original_password, h).unwrap_or(false));
        if !ok || !u.enabled {
            return Err(IdentityError::Unauthorized(
                "The request you have made requires authentication.".into(),
            ));
        }
        let hash = id2.hash_password(&b.password)?;
        let now = now_micros();
        id2.write(|tx| {
            let hash = hash.clone();
            let mut u = tx
                .state
                .users
                .get(&uid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("user", &uid))?;
            u.password_hash = Some(hash);
            u.password_created_at = Some(now);
            u.password_expires_at = None;
            tx.put_user(u);
            ops::revoke_user(tx, &uid, now);
            Ok(())
        })
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn user_groups(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let u = get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:list_groups_for_user",
        &json!({"target": {"user": user_target(u)}}),
    )?;
    let items = state
        .groups_of(&uid)
        .iter()
        .filter_map(|g| state.groups.get(g))
        .map(|g| group_json(&id, g))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "groups",
        &format!("users/{uid}/groups"),
        items,
    )))
}

pub async fn user_projects(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(uid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let u = get_or_404(&state.users, "user", &uid)?;
    id.authorize(
        &ctx,
        "identity:list_user_projects",
        &json!({"target": {"user": user_target(u)}}),
    )?;
    let items = state
        .projects_of(&uid)
        .iter()
        .filter_map(|p| state.projects.get(p))
        .map(|p| project_json(&id, p))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "projects",
        &format!("users/{uid}/projects"),
        items,
    )))
}
