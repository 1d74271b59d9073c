//! `/v2.1/os-quota-sets` and `/v2.1/limits`.

use super::{Caller, Mv, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::quotas;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Per-user quotas (`?user_id=`) are Nova's, not weft's: said, not ignored.
fn no_user(q: Option<&str>) -> ComputeResult<()> {
    if form_urlencoded::parse(q.unwrap_or("").as_bytes()).any(|(k, _)| k == "user_id") {
        return Err(ComputeError::BadRequest(
            "Per-user quotas are not supported by this cloud: quotas are per project.".into(),
        ));
    }
    Ok(())
}

async fn show(
    c: S,
    caller: Caller,
    mv: Mv,
    project: String,
    q: Option<String>,
    detail: bool,
) -> ComputeResult<Response> {
    let (State(c), Mv(mv)) = (c, mv);
    let ctx = caller.ctx(&c)?;
    no_user(q.as_deref())?;
    let v = c.read_env(|st, env| quotas::show(st, env, &ctx, &project, mv, detail))?;
    Ok(Json(json!({ "quota_set": v })).into_response())
}

/// `GET /os-quota-sets/{project}`.
pub async fn show_h(
    c: S,
    caller: Caller,
    mv: Mv,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    show(c, caller, mv, project, q, false).await
}

/// `GET /os-quota-sets/{project}/detail`.
pub async fn detail_h(
    c: S,
    caller: Caller,
    mv: Mv,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    show(c, caller, mv, project, q, true).await
}

/// `GET /os-quota-sets/{project}/defaults`.
pub async fn defaults_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(project): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|_, env| quotas::defaults(env, &ctx, &project, mv))?;
    Ok(Json(json!({ "quota_set": v })).into_response())
}

/// `PUT /os-quota-sets/{project}` (admin).
pub async fn update_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    no_user(q.as_deref())?;
    let (set, force) = quotas::parse_update(&b, mv)?;
    let v = c
        .write_async(move |st, env| quotas::update(st, env, &ctx, &project, &set, force, mv))
        .await?;
    Ok(Json(json!({ "quota_set": v })).into_response())
}

/// `DELETE /os-quota-sets/{project}` (admin): 202, back to the defaults.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Path(project): Path<String>,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    no_user(q.as_deref())?;
    c.write_async(move |st, env| quotas::revert(st, env, &ctx, &project))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /limits[?tenant_id=]`.
pub async fn limits_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let tenant = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "tenant_id")
        .map(|(_, v)| v.into_owned());
    let v = c.read_env(|st, env| quotas::limits(st, env, &ctx, tenant.as_deref(), mv))?;
    Ok(Json(v).into_response())
}
