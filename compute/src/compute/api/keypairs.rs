//! `/v2.1/os-keypairs`.

use super::{Caller, Mv, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::keypairs::{self, CreateKeypair};
use crate::compute::model::{keypair_summary, keypair_view};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `?user_id=` (2.10+), `?limit=` and `?marker=` (2.35+).
#[derive(Default)]
struct Query {
    user_id: Option<String>,
    limit: Option<usize>,
    marker: Option<String>,
}

fn query(q: Option<&str>, mv: (u32, u32)) -> ComputeResult<Query> {
    let mut out = Query::default();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "user_id" if mv >= (2, 10) => out.user_id = Some(v.into_owned()),
            "limit" if mv >= (2, 35) => {
                out.limit = Some(v.parse().map_err(|_| {
                    ComputeError::BadRequest(format!(
                        "Invalid input for query parameters limit. Value: {v}."
                    ))
                })?)
            }
            "marker" if mv >= (2, 35) => out.marker = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(out)
}

/// `GET /os-keypairs`.
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let q = query(q.as_deref(), mv)?;
    let list: Vec<Value> = c.read_env(|st, env| -> ComputeResult<_> {
        Ok(keypairs::list(
            st,
            env,
            &ctx,
            q.user_id.as_deref(),
            q.marker.as_deref(),
            q.limit,
        )?
        .into_iter()
        .map(|k| json!({ "keypair": keypair_summary(k, mv) }))
        .collect())
    })?;
    Ok(Json(json!({ "keypairs": list })).into_response())
}

/// `POST /os-keypairs`: import, or generate (the private key is in this
/// answer only). 200 before 2.2, 201 from 2.2.
pub async fn create_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = CreateKeypair::parse(&b, mv)?;
    let (public, private) = match &req.public_key {
        Some(k) => (k.clone(), None),
        None if req.key_type == "ssh" => {
            let (public, private) = keypairs::generate(&req.name)?;
            (public, Some(private))
        }
        None => (String::new(), None),
    };
    let k = c
        .write_async(move |st, env| keypairs::create(st, env, &ctx, &req, &public))
        .await?;
    let mut v = keypair_summary(&k, mv);
    v["user_id"] = json!(k.user_id);
    if let Some(p) = private {
        v["private_key"] = json!(p);
    }
    let status = if mv >= (2, 2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "keypair": v }))).into_response())
}

/// `GET /os-keypairs/{name}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let q = query(q.as_deref(), mv)?;
    let v = c.read_env(|st, env| -> ComputeResult<Value> {
        Ok(keypair_view(
            keypairs::show(st, env, &ctx, &name, q.user_id.as_deref())?,
            mv,
        ))
    })?;
    Ok(Json(json!({ "keypair": v })).into_response())
}

/// `DELETE /os-keypairs/{name}`: 202 before 2.2, 204 from 2.2.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let q = query(q.as_deref(), mv)?;
    c.write_async(move |st, env| keypairs::delete(st, env, &ctx, &name, q.user_id.as_deref()))
        .await?;
    Ok(if mv >= (2, 2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    }
    .into_response())
}
