//! Groups and their membership.

use super::{default_domain, domain_filter_ok, get_or_404, group_json, user_json, user_target, Q};
use crate::api::util::*;
use crate::error::IdentityError;
use crate::model::*;
use crate::ops;
use crate::service::*;
use crate::state::State;
use axum::extract::{Path, Query, State as St};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize, Clone)]
struct GroupBody {
    name: Option<String>,
    domain_id: Option<String>,
    description: Option<String>,
}
const GROUP_KEYS: &[&str] = &["id", "name", "domain_id", "description", "links"];

fn group_target(g: &Group) -> Value {
    json!({"id": g.id, "name": g.name, "domain_id": g.domain_id})
}

pub async fn list_groups(St(id): St<Arc<Identity>>, Auth(ctx): Auth, Query(q): Q) -> JsonResult {
    let scope = ctx
        .domain_id
        .as_ref()
        .map(|d| json!({"group": {"domain_id": d}}));
    let target = list_target(scope, &q, &["domain_id", "name"]);
    id.authorize(&ctx, "identity:list_groups", &target)?;
    let state = id.snapshot();
    let items = state
        .groups
        .values()
        .filter(|g| domain_filter_ok(&ctx, &g.domain_id))
        .filter(|g| q.get("name").is_none_or(|n| *n == g.name))
        .filter(|g| q.get("domain_id").is_none_or(|d| *d == g.domain_id))
        .map(|g| group_json(&id, g))
        .collect();
    Ok(axum::Json(list_body(&id, "groups", "groups", items)))
}

pub async fn get_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
) -> JsonResult {
    let state = id.snapshot();
    let g = get_or_404(&state.groups, "group", &gid)?;
    id.authorize(
        &ctx,
        "identity:get_group",
        &json!({"target": {"group": group_target(g)}}),
    )?;
    Ok(axum::Json(json!({"group": group_json(&id, g)})))
}

pub async fn create_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let sec = section(&body, "group")?;
    let b: GroupBody = typed(sec, "group")?;
    let name = b
        .name
        .ok_or_else(|| IdentityError::bad("Invalid input for field 'group.name': missing."))?;
    check_name("group.name", &name)?;
    let domain_id = b.domain_id.unwrap_or_else(|| default_domain(&ctx));
    id.authorize(
        &ctx,
        "identity:create_group",
        &json!({"target": {"group": {"name": name, "domain_id": domain_id}}}),
    )?;
    if !id.snapshot().domains.contains_key(&domain_id) {
        return Err(IdentityError::not_found("domain", &domain_id).into());
    }
    let g = Group {
        id: new_id(),
        name,
        domain_id,
        description: b.description.unwrap_or_default(),
        extra: extras(sec, GROUP_KEYS),
    };
    let g2 = g.clone();
    id.write_async(move |tx| {
        let g2 = g2.clone();
        if tx
            .state
            .groups
            .values()
            .any(|x| x.domain_id == g2.domain_id && x.name == g2.name)
        {
            return Err(IdentityError::conflict(format!(
                "Conflict occurred attempting to store group - Duplicate entry found with name {}.",
                g2.name
            )));
        }
        tx.put_group(g2);
        Ok(())
    })
    .await?;
    created(json!({"group": group_json(&id, &g)}))
}

pub async fn update_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> JsonResult {
    let sec = section(&body, "group")?;
    let b: GroupBody = typed(sec, "group")?;
    {
        let state = id.snapshot();
        let g = get_or_404(&state.groups, "group", &gid)?;
        id.authorize(
            &ctx,
            "identity:update_group",
            &json!({"target": {"group": group_target(g)}}),
        )?;
        if b.domain_id.as_ref().is_some_and(|d| *d != g.domain_id) {
            return Err(IdentityError::bad(
                "Invalid input for field 'group.domain_id': a group cannot move domains.",
            )
            .into());
        }
    }
    if let Some(n) = &b.name {
        check_name("group.name", n)?;
    }
    let ex = extras(sec, GROUP_KEYS);
    let g = id
        .write_async(move |tx| {
            let b = b.clone();
            let ex = ex.clone();
            let mut g = tx
                .state
                .groups
                .get(&gid)
                .cloned()
                .ok_or_else(|| IdentityError::not_found("group", &gid))?;
            if let Some(n) = b.name {
                if tx
                    .state
                    .groups
                    .values()
                    .any(|x| x.id != gid && x.domain_id == g.domain_id && x.name == n)
                {
                    return Err(IdentityError::conflict(format!(
                        "Duplicate entry found with name {n}."
                    )));
                }
                g.name = n;
            }
            if let Some(d) = b.description {
                g.description = d;
            }
            g.extra.extend(ex);
            tx.put_group(g.clone());
            Ok(g)
        })
        .await?;
    Ok(axum::Json(json!({"group": group_json(&id, &g)})))
}

pub async fn delete_group(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
) -> ApiResult<StatusCode> {
    {
        let state = id.snapshot();
        let g = get_or_404(&state.groups, "group", &gid)?;
        id.authorize(
            &ctx,
            "identity:delete_group",
            &json!({"target": {"group": group_target(g)}}),
        )?;
    }
    id.write_async(move |tx| {
        ops::delete_group(tx, &gid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn group_users(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path(gid): Path<String>,
    Query(q): Q,
) -> JsonResult {
    let state = id.snapshot();
    let g = get_or_404(&state.groups, "group", &gid)?;
    id.authorize(
        &ctx,
        "identity:list_users_in_group",
        &json!({"target": {"group": group_target(g)}}),
    )?;
    let items = state
        .memberships
        .iter()
        .filter(|(g, _)| *g == gid)
        .filter_map(|(_, u)| state.users.get(u))
        .filter(|u| q.get("name").is_none_or(|n| *n == u.name))
        .map(|u| user_json(&id, u))
        .collect();
    Ok(axum::Json(list_body(
        &id,
        "users",
        &format!("groups/{gid}/users"),
        items,
    )))
}

fn member_target(state: &State, gid: &str, uid: &str) -> ApiResult<Value> {
    let g = get_or_404(&state.groups, "group", gid)?;
    let u = get_or_404(&state.users, "user", uid)?;
    Ok(json!({"target": {"group": group_target(g), "user": user_target(u)}}))
}

pub async fn add_member(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = member_target(&id.snapshot(), &gid, &uid)?;
    id.authorize(&ctx, "identity:add_user_to_group", &t)?;
    id.write_async(move |tx| {
        tx.add_membership(&gid, &uid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}

pub async fn check_member(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let state = id.snapshot();
    let t = member_target(&state, &gid, &uid)?;
    id.authorize(&ctx, "identity:check_user_in_group", &t)?;
    if state.memberships.contains(&(gid.clone(), uid.clone())) {
        Ok(NO_CONTENT)
    } else {
        Err(IdentityError::not_found("membership", format!("user {uid} in group {gid}")).into())
    }
}

pub async fn remove_member(
    St(id): St<Arc<Identity>>,
    Auth(ctx): Auth,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = member_target(&id.snapshot(), &gid, &uid)?;
    id.authorize(&ctx, "identity:remove_user_from_group", &t)?;
    id.write_async(move |tx| {
        if !tx.state.memberships.contains(&(gid.clone(), uid.clone())) {
            return Err(IdentityError::not_found(
                "membership",
                format!("user {uid} in group {gid}"),
            ));
        }
        tx.remove_membership(&gid, &uid);
        Ok(())
    })
    .await?;
    Ok(NO_CONTENT)
}
