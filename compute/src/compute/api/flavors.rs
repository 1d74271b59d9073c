//! `/v2.1/flavors` and its extra specs and access lists.

use super::{Caller, Mv, S};
use crate::compute::error::ComputeResult;
use crate::compute::flavors::{self, CreateFlavor, ListQuery};
use crate::compute::model::{flavor_summary, flavor_view};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

async fn list(cx: (S, Caller, Mv, Option<String>), detail: bool) -> ComputeResult<Response> {
    let (State(c), caller, Mv(mv), q) = cx;
    let ctx = caller.ctx(&c)?;
    let q = ListQuery::parse(q.as_deref().unwrap_or(""))?;
    let list: Vec<Value> = c.read_env(|st, _| -> ComputeResult<_> {
        Ok(flavors::list(st, &ctx, &q)?
            .into_iter()
            .map(|f| {
                if detail {
                    flavor_view(f, &caller.base, mv)
                } else {
                    flavor_summary(f, &caller.base, mv)
                }
            })
            .collect())
    })?;
    Ok(Json(json!({ "flavors": list })).into_response())
}

/// `GET /flavors`.
pub async fn list_h(
    s: S,
    caller: Caller,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    list((s, caller, mv, q), false).await
}

/// `GET /flavors/detail`.
pub async fn detail_h(
    s: S,
    caller: Caller,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    list((s, caller, mv, q), true).await
}

/// `POST /flavors` (admin): 200 with the flavor, as Nova answers.
pub async fn create_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = CreateFlavor::parse(&b, mv)?;
    let f = c
        .write_async(move |st, env| flavors::create(st, env, &ctx, &req))
        .await?;
    Ok(Json(json!({ "flavor": flavor_view(&f, &caller.base, mv) })).into_response())
}

/// `GET /flavors/{id}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, _| -> ComputeResult<Value> {
        Ok(flavor_view(flavors::get(st, &ctx, &id)?, &caller.base, mv))
    })?;
    Ok(Json(json!({ "flavor": v })).into_response())
}

/// `PUT /flavors/{id}` (2.55+, admin): the description.
pub async fn update_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    if mv < (2, 55) {
        return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response());
    }
    let ctx = caller.ctx(&c)?;
    let f = c
        .write_async(move |st, env| flavors::update(st, env, &ctx, &id, &b))
        .await?;
    Ok(Json(json!({ "flavor": flavor_view(&f, &caller.base, mv) })).into_response())
}

/// `DELETE /flavors/{id}` (admin): 202.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| flavors::delete(st, env, &ctx, &id))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /flavors/{id}/os-extra_specs`.
pub async fn specs_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| flavors::specs(st, env, &ctx, &id, None))?;
    Ok(Json(v).into_response())
}

/// `GET /flavors/{id}/os-extra_specs/{key}`.
pub async fn spec_h(
    State(c): S,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| flavors::specs(st, env, &ctx, &id, Some(&key)))?;
    Ok(Json(v).into_response())
}

/// `POST /flavors/{id}/os-extra_specs` (admin).
pub async fn set_specs_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c
        .write_async(move |st, env| flavors::set_specs(st, env, &ctx, &id, &b))
        .await?;
    Ok(Json(v).into_response())
}

/// `PUT /flavors/{id}/os-extra_specs/{key}` (admin).
pub async fn put_spec_h(
    State(c): S,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c
        .write_async(move |st, env| flavors::put_spec(st, env, &ctx, &id, &key, &b))
        .await?;
    Ok(Json(v).into_response())
}

/// `DELETE /flavors/{id}/os-extra_specs/{key}` (admin): 202.
pub async fn delete_spec_h(
    State(c): S,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| flavors::delete_spec(st, env, &ctx, &id, &key))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /flavors/{id}/os-flavor-access` (admin).
pub async fn access_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| flavors::access(st, env, &ctx, &id))?;
    Ok(Json(v).into_response())
}

/// `POST /flavors/{id}/action`: add or remove a project's access.
pub async fn action_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c
        .write_async(move |st, env| flavors::access_action(st, env, &ctx, &id, &b))
        .await?;
    Ok(Json(v).into_response())
}
