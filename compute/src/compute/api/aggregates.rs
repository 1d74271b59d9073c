//! `/v2.1/os-aggregates`: host aggregates, admin only (the logic is in
//! [`crate::compute::aggregates`]).

use super::{Caller, Mv, S};
use crate::compute::aggregates::{self, AggregateAction, AggregateReq};
use crate::compute::error::ComputeResult;
use crate::compute::host_placement;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `GET /os-aggregates`.
pub async fn list_h(State(c): S, caller: Caller, Mv(mv): Mv) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let list = c.read_env(|st, env| {
        aggregates::list(st, env, &ctx).map(|l| {
            l.into_iter()
                .map(|a| aggregates::view(a, mv, false))
                .collect::<Vec<_>>()
        })
    })?;
    Ok(Json(json!({ "aggregates": list })).into_response())
}

/// `POST /os-aggregates`.
pub async fn create_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = AggregateReq::parse_create(&b)?;
    let a = c
        .write_async(move |st, env| aggregates::create(st, env, &ctx, &req))
        .await?;
    Ok(Json(json!({ "aggregate": aggregates::view(&a, mv, true) })).into_response())
}

/// `GET /os-aggregates/{id}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| {
        aggregates::show(st, env, &ctx, &id).map(|a| aggregates::view(a, mv, false))
    })?;
    Ok(Json(json!({ "aggregate": v })).into_response())
}

/// `PUT /os-aggregates/{id}`.
pub async fn update_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = AggregateReq::parse_update(&b)?;
    let a = c
        .write_async(move |st, env| aggregates::update(st, env, &ctx, &id, &req))
        .await?;
    Ok(Json(json!({ "aggregate": aggregates::view(&a, mv, false) })).into_response())
}

/// `DELETE /os-aggregates/{id}`: 200 with no body, as Nova's.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| aggregates::delete(st, env, &ctx, &id))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /os-aggregates/{id}/action`: add_host, remove_host, set_metadata.
pub async fn action_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let action = AggregateAction::parse(&b)?;
    let membership = match &action {
        AggregateAction::AddHost(h) => Some((h.clone(), true)),
        AggregateAction::RemoveHost(h) => Some((h.clone(), false)),
        AggregateAction::SetMetadata(_) => None,
    };
    let a = c
        .write_async(move |st, env| aggregates::act(st, env, &ctx, &id, &action))
        .await?;
    if let Some((host, member)) = membership {
        // Into the host provider's placement aggregates, as Nova does.
        let (c, uuid) = (c.clone(), a.uuid.clone());
        let _ = tokio::task::spawn_blocking(move || {
            host_placement::mirror_membership(&c, &host, &uuid, member)
        })
        .await;
    }
    Ok(Json(json!({ "aggregate": aggregates::view(&a, mv, false) })).into_response())
}
