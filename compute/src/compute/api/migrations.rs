//! `GET /v2.1/os-migrations` (the logic in [`crate::compute::migrations`])
//! and `GET /v2.1/servers/{id}/migrations[/{migration}]`.

use super::{Caller, Mv, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::migrations::{self, MigrationQuery};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `GET /os-migrations`: from 2.59 with `migrations_links` to the next
/// page when this one is full (the request's filters kept).
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    RawQuery(raw): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let raw = raw.unwrap_or_default();
    let q = MigrationQuery::parse(&raw, mv)?;
    let (rows, next) = c.read_env(|st, env| -> ComputeResult<(Vec<Value>, Option<String>)> {
        let (rows, full) = migrations::list(st, env, &ctx, &q)?;
        let next = rows.last().filter(|_| full).map(|m| m.uuid.clone());
        Ok((
            rows.into_iter().map(|m| migrations::view(m, mv)).collect(),
            next,
        ))
    })?;
    let mut out = json!({ "migrations": rows });
    if let (Some(marker), true) = (next, mv >= (2, 59)) {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if k != "marker" {
                q.append_pair(&k, &v);
            }
        }
        q.append_pair("marker", &marker);
        out["migrations_links"] = json!([{"rel": "next",
            "href": format!("{}/v2.1/os-migrations?{}", caller.base, q.finish())}]);
    }
    Ok(Json(out).into_response())
}

/// The server's project, for the policy target; 404 for one the caller
/// cannot see (and for any before 2.23, where Nova has no such route).
fn server_project(
    c: &crate::compute::Compute,
    ctx: &crate::compute::Ctx,
    id: &str,
    mv: (u32, u32),
) -> ComputeResult<String> {
    if mv < (2, 23) {
        return Err(ComputeError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    let st = c.snapshot();
    crate::compute::servers::get(&st, ctx, id).map(|s| s.project_id.clone())
}

/// `GET /servers/{id}/migrations` (2.23+): Nova lists only live
/// migrations in progress here, and weft has none (a resize shows in
/// `/os-migrations`), so the list is empty for a server the admin sees.
pub async fn server_list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let project = server_project(&c, &ctx, &id, mv)?;
    c.read_env(|_, env| {
        env.authz.check(
            &ctx,
            "os_compute_api:servers:migrations:index",
            &json!({ "project_id": project }),
        )
    })?;
    Ok(Json(json!({ "migrations": [] })).into_response())
}

/// `GET /servers/{id}/migrations/{migration}` (2.23+): no live migration
/// is ever in progress, so Nova's 404.
pub async fn server_show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path((id, mid)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let project = server_project(&c, &ctx, &id, mv)?;
    c.read_env(|_, env| {
        env.authz.check(
            &ctx,
            "os_compute_api:servers:migrations:show",
            &json!({ "project_id": project }),
        )
    })?;
    Err(ComputeError::NotFound(format!(
        "In-progress live migration {mid} is not found for server {id}."
    )))
}
