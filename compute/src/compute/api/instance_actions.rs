//! `/v2.1/servers/{id}/os-instance-actions`.

use super::{Caller, Mv, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::instance_actions::{self, ListQuery};
use crate::compute::servers::filters::instant;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

fn bad(key: &str, v: &str, why: &str) -> ComputeError {
    ComputeError::BadRequest(format!(
        "Invalid input for query parameters {key}. Value: {v}. {why}"
    ))
}

/// The 2.58 paging and time filters (2.66 `changes-before`); ignored
/// before, as Nova's older schemas do.
fn parse_query(q: Option<&str>, mv: (u32, u32)) -> ComputeResult<ListQuery> {
    let mut out = ListQuery::default();
    if mv < (2, 58) {
        return Ok(out);
    }
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let time = || instant(&v).ok_or_else(|| bad(&k, &v, "is not a 'date-time'"));
        match k.as_ref() {
            "limit" => out.limit = Some(v.parse().map_err(|_| bad(&k, &v, "is not an integer"))?),
            "marker" => out.marker = Some(v.to_string()),
            "changes-since" => out.changes_since = Some(time()?),
            "changes-before" if mv >= (2, 66) => out.changes_before = Some(time()?),
            _ => {}
        }
    }
    Ok(out)
}

/// `GET /servers/{id}/os-instance-actions`.
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let q = parse_query(q.as_deref(), mv)?;
    let v = c.read_env(|st, env| instance_actions::list(st, env, &ctx, &id, mv, &q))?;
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
