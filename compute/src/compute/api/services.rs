//! `PUT` and `DELETE /v2.1/os-services/{id}`: operators enable, disable,
//! force down and delete compute services (the logic in
//! [`crate::compute::os_services`]).

use super::{Caller, Mv, S};
use crate::compute::body;
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::{host_placement, now_string, os_services};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `PUT /os-services/{id}`: from 2.53 `id` is the service's uuid; before,
/// it is the action (`enable`, `disable`, `disable-log-reason`,
/// `force-down`) and the body names host and binary.
pub async fn update_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let m = body::object(&b)?;
    if mv >= (2, 53) {
        let h = c
            .write_async(move |st, env| os_services::update(st, env, &ctx, &id, &m))
            .await?;
        let st = c.snapshot();
        return Ok(
            Json(json!({"service": super::hosts::service(&st, &h, mv, &now_string())}))
                .into_response(),
        );
    }
    let v = c
        .write_async(move |st, env| os_services::update_by_action(st, env, &ctx, &id, &m, mv))
        .await?;
    Ok(Json(json!({ "service": v })).into_response())
}

/// `DELETE /os-services/{id}`: 204; the host's placement provider goes
/// too ([`host_placement::delete_service`]).
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    // Placement's provider and the record: blocking writes, off the async threads.
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || host_placement::delete_service(&c2, &ctx, &id, mv))
        .await
        .map_err(|e| ComputeError::Internal(format!("service delete task failed: {e}")))??;
    Ok(StatusCode::NO_CONTENT.into_response())
}
