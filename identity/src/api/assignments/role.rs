//! Roles: list, show, create, update, delete.

use super::Q;
use crate::api::resources::get_or_404;
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

pub fn role_json(id: &Identity, r: &Role) -> Value {
    let mut v = json!({
        "id": r.id, "name": r.name, "domain_id": r.domain_id, "options": r.options,
        "links": self_link(id, &format!("roles/{}", r.id)),
    });
    if let Some(d) = &r.description {
        v["description"] = json!(d);
    }
    v
}

pub(super) fn role_ref(id: &Identity, r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "links": self_link(id, &format!("roles/{}", r.id))})
}

pub(super) fn role_target(r: &Role) -> Value {
    json!({"id": r.id, "name": r.name, "domain_id": r.domain_id})
}

#[derive(Deserialize, Clone)]
struct RoleBody {
    name: Option<String>,
    domain_id: Option<String>,
    description: Option<String>,
    options: Option<serde_json::Map<String, Value>>,
}

pub async fn list_roles(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let domain = q.get("domain_id").cloned();
    let action = if domain.is_some() {
        "identity:list_domain_roles"
    } else {
        "identity:list_roles"
    };
    id.authorize(&ctx, action, &json!({"target": {"domain_id": domain}}))?;
    let state = id.snapshot();
    let items = state
        .roles
        .values()
        .filter(|r| r.domain_id == domain)
        .filter(|r| q.get("name").is_none_or(|n| *n == r.name))
        .map(|r| role_json(&id, r))
        .collect();
    Ok(axum::Json(list_body(&id, "roles", "roles", items)))
}

pub async fn get_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let r = get_or_404(&state.roles, "role", &rid)?;
    let action = if r.domain_id.is_some() {
        "identity:get_domain_role"
    } else {
        "identity:get_role"
    };
    id.authorize(&ctx, action, &json!({"target": {"role": role_target(r)}}))?;
    Ok(axum::Json(json!({"role": role_json(&id, r)})))
}

pub async fn create_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "role")?;
    let b: RoleBody = typed(sec, "role")?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'role.name': missing."))?;
    check_name("role.name", &name)?;
    let action = if b.domain_id.is_some() {
        "identity:create_domain_role"
    } else {
        "identity:create_role"
    };
    id.authorize(
        &ctx,
        action,
        &json!({"target": {"role": {"name": name, "domain_id": b.domain_id}}}),
    )?;
    if let Some(d) = &b.domain_id {
        get_or_404(&id.snapshot().domains, "domain", d)?;
    }
    let r = Role {
        id: new_id(),
        name,
        domain_id: b.domain_id,
        description: b.description,
        options: b.options.unwrap_or_default(),
    };
    let r2 = r.clone();
    id.write_async(move |tx| {
        let r2 = r2.clone();
        if tx
            .state
            .roles
            .values()
            .any(|x| x.domain_id == r2.domain_id && x.name.eq_ignore_ascii_case(&r2.name))
        {
            return Err(IdentityError::conflict(format!(
                "Conflict occurred attempting to store role - Duplicate entry found with name {}.",
                r2.name
            )));
        }
        tx.put_role(r2);
        Ok(())
    })
    .await?;
    created(json!({"role": role_json(&id, &r)}))
}

pub async fn update_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let b: RoleBody = typed(section(&body, "role")?, "role")?;
    {
        let state = id.snapshot();
        let r = get_or_404(&state.roles, "role", &rid)?;
        id.authorize(
            &ctx,
            "identity:update_role",
            &json!({"target": {"role": role_target(r)}}),
        )?;
        if b.domain_id.is_some() && b.domain_id != r.domain_id {
            return Err(IdentityError::bad(
                "Invalid input for field 'role.domain_id': cannot change.",
            )
            .into());
        }
    }
    if let Some(n) = &b.name {
        check_name("role.name", n)?;
    }
    let r = id
        .write_async(move |tx| {
            let b = b.clone();
            let mut r = tx
                .state
                .roles
                .get(&rid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("role", &rid))?;
            if let Some(n) = b.name {
                if tx.state.roles.values().any(|x| {
                    x.id != rid && x.domain_id == r.domain_id && x.name.eq_ignore_ascii_case(&n)
                }) {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                r.name = n;
            }
            if let Some(d) = b.description {
                r.description = Some(d);
            }
            if let Some(o) = b.options {
                r.options.extend(o);
            }
            tx.put_role(r.clone());
            Ok(r)
        })
        .await?;
    Ok(axum::Json(json!({"role": role_json(&id, &r)})))
}

pub async fn delete_role(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(rid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let r = get_or_404(&state.roles, "role", &rid)?;
        id.authorize(
            &ctx,
            "identity:delete_role",
            &json!({"target": {"role": role_target(r)}}),
        )?;
    }
    id.write_async(move |tx| {
        ops::delete_role(tx, &rid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
