//! `/v2.1/os-server-groups`.

use super::{Caller, Mv, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::groups::{self, CreateGroup};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `POST /os-server-groups`: 200 with the group.
pub async fn create_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = CreateGroup::parse(&b, mv)?;
    let g = c
        .write_async(move |st, env| groups::create(st, env, &ctx, &req))
        .await?;
    let v = c.read_env(|st, _| groups::view(st, &g, mv));
    Ok(Json(json!({ "server_group": v })).into_response())
}

fn count(v: &str, key: &str) -> ComputeResult<usize> {
    v.parse().map_err(|_| {
        ComputeError::BadRequest(format!(
            "Invalid input for query parameters {key}. Value: {v}. '{v}' is not a 'integer'"
        ))
    })
}

/// `GET /os-server-groups[?all_projects=True&limit=&offset=]`.
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let (mut all, mut offset, mut limit) = (false, 0, None);
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "all_projects" => {
                all = !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "0" | "false" | "no" | "off"
                )
            }
            "offset" => offset = count(&v, "offset")?,
            "limit" => limit = Some(count(&v, "limit")?),
            _ => {}
        }
    }
    let rows = c.read_env(|st, env| -> ComputeResult<Vec<Value>> {
        Ok(groups::list(st, env, &ctx, all, offset, limit)?
            .into_iter()
            .map(|g| groups::view(st, g, mv))
            .collect())
    })?;
    Ok(Json(json!({ "server_groups": rows })).into_response())
}

/// `GET /os-server-groups/{id}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| -> ComputeResult<Value> {
        let g = groups::get(st, &ctx, &id)?;
        env.authz.check(
            &ctx,
            "os_compute_api:os-server-groups:show",
            &json!({"project_id": g.project_id}),
        )?;
        Ok(groups::view(st, g, mv))
    })?;
    Ok(Json(json!({ "server_group": v })).into_response())
}

/// `DELETE /os-server-groups/{id}`: 204.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| groups::delete(st, env, &ctx, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
