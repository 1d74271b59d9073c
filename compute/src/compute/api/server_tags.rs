//! `/v2.1/servers/{id}/tags[/{tag}]` (2.26): the server tag API (the
//! logic is in [`crate::compute::servers::tags`]).

use super::{Caller, Mv, S};
use crate::compute::body::{self, only, required};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::servers::tags;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Before 2.26 there is no tag API (Nova's 404).
fn since_2_26(mv: (u32, u32)) -> ComputeResult<()> {
    match mv >= (2, 26) {
        true => Ok(()),
        false => Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        )),
    }
}

/// `GET /servers/{id}/tags`.
pub async fn index_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    since_2_26(mv)?;
    let ctx = caller.ctx(&c)?;
    let list =
        c.read_env(|st, env| tags::server(st, env, &ctx, &id, "index").map(|s| s.tags.clone()))?;
    Ok(Json(json!({ "tags": list })).into_response())
}

/// `PUT /servers/{id}/tags` with `{"tags": [...]}`: the set replaced.
pub async fn replace_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    since_2_26(mv)?;
    let ctx = caller.ctx(&c)?;
    let m = body::object(&b)?;
    only(&m, &["tags"])?;
    let list: Vec<String> = match required(m.get("tags"), "tags")? {
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| body::invalid("tags", t, "is not of type 'string'"))
            })
            .collect::<ComputeResult<_>>()?,
        v => return Err(body::invalid("tags", v, "is not of type 'array'")),
    };
    let now = c
        .write_async(move |st, env| tags::replace_all(st, env, &ctx, &id, &list))
        .await?;
    Ok(Json(json!({ "tags": now })).into_response())
}

/// `DELETE /servers/{id}/tags`: 204.
pub async fn delete_all_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    since_2_26(mv)?;
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| tags::remove_all(st, env, &ctx, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /servers/{id}/tags/{tag}`: 204 when the server has it, else 404.
pub async fn check_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path((id, tag)): Path<(String, String)>,
) -> ComputeResult<Response> {
    since_2_26(mv)?;
    let ctx = caller.ctx(&c)?;
    let has = c.read_env(|st, env| {
        tags::server(st, env, &ctx, &id, "show").map(|s| s.tags.contains(&tag))
    })?;
    match has {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(ComputeError::NotFound(format!(
            "Tag {tag} could not be found."
        ))),
    }
}

/// `PUT /servers/{id}/tags/{tag}`: 201 with its Location when new, 204
/// when the server had it.
pub async fn add_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path((id, tag)): Path<(String, String)>,
) -> ComputeResult<Response> {
    since_2_26(mv)?;
    let ctx = caller.ctx(&c)?;
    let location = format!("{}/v2.1/servers/{id}/tags/{tag}", caller.base);
    let added = c
        .write_async(move |st, env| tags::add(st, env, &ctx, &id, &tag))
        .await?;
    match added {
        true => Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response()),
        false => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `DELETE /servers/{id}/tags/{tag}`: 204, or 404 without it.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path((id, tag)): Path<(String, String)>,
) -> ComputeResult<Response> {
    since_2_26(mv)?;
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| tags::remove(st, env, &ctx, &id, &tag))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
