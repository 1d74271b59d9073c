//! `/v2.1/servers/{id}/os-instance-actions`.

use super::{Caller, Mv, S};
use crate::compute::error::ComputeResult;
use crate::compute::instance_actions;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /servers/{id}/os-instance-actions`.
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| instance_actions::list(st, env, &ctx, &id, mv))?;
    Ok(Json(v).into_response())
}

/// `GET /servers/{id}/os-instance-actions/{request_id}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path((id, rid)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| instance_actions::show(st, env, &ctx, &id, &rid, mv))?;
    Ok(Json(v).into_response())
}
