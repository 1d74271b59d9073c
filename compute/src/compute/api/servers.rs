//! `/v2.1/servers` and their metadata.

use super::{Caller, Mv, S};
use crate::compute::body;
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::instance_actions::recorded;
use crate::compute::servers::{self, request::CreateServer, view, ListQuery};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn parse_query(q: Option<&str>, mv: (u32, u32)) -> ComputeResult<ListQuery> {
    let mut out = ListQuery::default();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "name" => out.name = Some(v),
            "status" => out.status = Some(v),
            "changes-since" | "changes_since" => out.changes_since = Some(v),
            "changes-before" if mv >= (2, 66) => out.changes_before = Some(v),
            "all_tenants" => {
                out.all_tenants = !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no")
            }
            "project_id" | "tenant_id" => out.project_id = Some(v),
            "host" => out.host = Some(v),
            "flavor" => out.flavor = Some(v),
            "image" => out.image = Some(v),
            "limit" => {
                out.limit = Some(v.parse().map_err(|_| {
                    ComputeError::BadRequest(format!(
                        "Invalid input for query parameters limit. Value: {v}."
                    ))
                })?)
            }
            "marker" => out.marker = Some(v),
            // Nova reads it leniently (anything else is false).
            "deleted" => {
                out.deleted = Some(matches!(
                    v.to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on" | "t" | "y"
                ))
            }
            k if mv >= (2, 26) && out.tags.take(k, &v) => {}
            _ => {}
        }
    }
    Ok(out)
}

async fn list(cx: (S, Caller, Mv, Option<String>), detail: bool) -> ComputeResult<Response> {
    let (State(c), caller, Mv(mv), raw) = cx;
    let ctx = caller.ctx(&c)?;
    let q = parse_query(raw.as_deref(), mv)?;
    let (rows, next): (Vec<Value>, Option<String>) = c.read_env(|st, env| -> ComputeResult<_> {
        let rows = servers::list(st, env, &ctx, &q)?;
        let next = match (q.limit, rows.last()) {
            (Some(l), Some(last)) if rows.len() == l => Some(last.id.clone()),
            _ => None,
        };
        let rows = rows
            .into_iter()
            .map(|s| {
                if detail {
                    view::detail(s, &caller.base, mv, ctx.is_admin)
                } else {
                    view::summary(s, &caller.base)
                }
            })
            .collect();
        Ok((rows, next))
    })?;
    let mut out = json!({ "servers": rows });
    if let Some(m) = next {
        let path = if detail { "servers/detail" } else { "servers" };
        // The next page keeps the request's filters, as Nova's link does.
        let mut next = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
            if k != "marker" {
                next.append_pair(&k, &v);
            }
        }
        next.append_pair("marker", &m);
        out["servers_links"] = json!([{"rel": "next",
            "href": format!("{}/v2.1/{path}?{}", caller.base, next.finish())}]);
    }
    Ok(Json(out).into_response())
}

/// `GET /servers`.
pub async fn list_h(
    s: S,
    caller: Caller,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    list((s, caller, mv, q), false).await
}

/// `GET /servers/detail`.
pub async fn detail_h(
    s: S,
    caller: Caller,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> ComputeResult<Response> {
    list((s, caller, mv, q), true).await
}

/// `POST /servers`: 202 with the first server's id, links and admin
/// password (`reservation_id` instead with `return_reservation_id`).
pub async fn create_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = CreateServer::parse(&b, mv)?;
    let want_reservation = body::object(&b)?
        .get("server")
        .and_then(|s| s.get("return_reservation_id"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let facts = {
        let (c, ctx, req) = (c.clone(), ctx.clone(), req.clone());
        tokio::task::spawn_blocking(move || c.facts(&ctx, &req))
            .await
            .map_err(|e| ComputeError::Internal(e.to_string()))?
    };
    let rid = caller.request_id.clone();
    let made =
        crate::compute::build::trusts::create_with_trust(&c, &ctx.clone(), move |st, env| {
            crate::compute::admit::create(st, env, &ctx, &req, &facts, &rid)
        })
        .await?;
    c.kick_builds();
    let first = &made[0];
    if want_reservation {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"reservation_id": first.reservation_id})),
        )
            .into_response());
    }
    let body = json!({"server": {
        "id": first.id,
        "links": view::summary(first, &caller.base)["links"],
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": first.security_groups.iter().map(|g| json!({"name": g})).collect::<Vec<_>>(),
        "adminPass": "",
    }});
    let loc = format!("{}/v2.1/servers/{}", caller.base, first.id);
    Ok((StatusCode::ACCEPTED, [("location", loc)], Json(body)).into_response())
}

/// `GET /servers/{id}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| -> ComputeResult<Value> {
        let s = servers::get(st, &ctx, &id)?;
        env.authz.check(
            &ctx,
            "os_compute_api:servers:show",
            &json!({"project_id": s.project_id}),
        )?;
        Ok(view::detail(s, &caller.base, mv, ctx.is_admin))
    })?;
    Ok(Json(json!({ "server": v })).into_response())
}

/// `PUT /servers/{id}`: the server's new name/description, shown whole.
pub async fn update_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let req = servers::update::UpdateServer::parse(&b, mv)?;
    let admin = ctx.is_admin;
    let s = c
        .write_async(move |st, env| servers::update::update(st, env, &ctx, &id, &req))
        .await?;
    Ok(Json(json!({ "server": view::detail(&s, &caller.base, mv, admin) })).into_response())
}

/// `DELETE /servers/{id}`: 204; the teardown finishes in the background.
pub async fn delete_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let rid = caller.request_id.clone();
    c.write_async(move |st, env| {
        let w = servers::delete(st, env, &ctx, &id);
        recorded(st, env, &ctx, (&id, "delete", &rid), w)
    })
    .await?;
    c.kick_builds();
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn metadata_body(b: &[u8], key: &str) -> ComputeResult<BTreeMap<String, String>> {
    let top = body::object(b)?;
    let m = body::wrapped(&top, key)?;
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) if !k.is_empty() && k.len() <= 255 && s.len() <= 255 => {
                Ok((k.clone(), s.clone()))
            }
            _ => Err(body::invalid(
                key,
                v,
                "is not a string of at most 255 characters",
            )),
        })
        .collect()
}

/// `GET /servers/{id}/metadata`.
pub async fn metadata_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let md = c.read_env(|st, env| -> ComputeResult<_> {
        let s = servers::get(st, &ctx, &id)?;
        env.authz.check(
            &ctx,
            "os_compute_api:server-metadata:index",
            &json!({"project_id": s.project_id}),
        )?;
        Ok(s.metadata.clone())
    })?;
    Ok(Json(json!({ "metadata": md })).into_response())
}

/// [`servers::set_metadata`] within the server's project's
/// `metadata_items` quota (Nova's 403 past it).
fn set_within_quota(
    st: &crate::compute::state::State,
    env: &mut crate::compute::service::Env,
    ctx: &crate::compute::Ctx,
    id: &str,
    md: BTreeMap<String, String>,
    replace: bool,
) -> crate::compute::service::Write<BTreeMap<String, String>> {
    let (out, changes) = servers::set_metadata(st, env, ctx, id, md, replace)?;
    let project = st.servers.get(id).map(|s| s.project_id.as_str());
    crate::compute::quotas::check_metadata(st, project.unwrap_or_default(), out.len())?;
    Ok((out, changes))
}

async fn set_metadata(
    c: S,
    caller: Caller,
    id: String,
    b: Bytes,
    replace: bool,
) -> ComputeResult<Response> {
    let State(c) = c;
    let ctx = caller.ctx(&c)?;
    let md = metadata_body(&b, "metadata")?;
    let out = c
        .write_async(move |st, env| set_within_quota(st, env, &ctx, &id, md.clone(), replace))
        .await?;
    Ok(Json(json!({ "metadata": out })).into_response())
}

/// `PUT /servers/{id}/metadata`: replaces all.
pub async fn put_metadata_h(
    c: S,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    set_metadata(c, caller, id, b, true).await
}

/// `POST /servers/{id}/metadata`: merges.
pub async fn post_metadata_h(
    c: S,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    set_metadata(c, caller, id, b, false).await
}

/// `PUT /servers/{id}/metadata/{key}` with `{"meta": {key: value}}`.
pub async fn put_meta_item_h(
    State(c): S,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
    b: Bytes,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let md = metadata_body(&b, "meta")?;
    if md.len() != 1 || !md.contains_key(&key) {
        return Err(ComputeError::BadRequest(
            "Request body and URI mismatch".into(),
        ));
    }
    c.write_async(move |st, env| set_within_quota(st, env, &ctx, &id, md.clone(), false))
        .await?;
    let v = b.to_vec();
    let echoed: Value = serde_json::from_slice(&v).unwrap_or(Value::Null);
    Ok(Json(json!({ "meta": echoed["meta"] })).into_response())
}

/// `GET /servers/{id}/metadata/{key}`.
pub async fn meta_item_h(
    State(c): S,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let v = c.read_env(|st, env| -> ComputeResult<_> {
        let s = servers::get(st, &ctx, &id)?;
        env.authz.check(
            &ctx,
            "os_compute_api:server-metadata:index",
            &json!({"project_id": s.project_id}),
        )?;
        s.metadata
            .get(&key)
            .cloned()
            .ok_or_else(|| ComputeError::NotFound("Metadata item was not found".into()))
    })?;
    Ok(Json(json!({ "meta": { key: v } })).into_response())
}

/// `DELETE /servers/{id}/metadata/{key}`: 204.
pub async fn delete_meta_item_h(
    State(c): S,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    c.write_async(move |st, env| servers::delete_metadata(st, env, &ctx, &id, &key))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /servers/{id}/action`: power actions (202), lock/unlock (202),
/// `os-getConsoleOutput` (200 with the output).
pub async fn action_h(
    State(c): S,
    caller: Caller,
    Mv(mv): Mv,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    use crate::compute::servers::actions::{self, Action};
    let ctx = caller.ctx(&c)?;
    let rid = caller.request_id.clone();
    let action = actions::parse(&body::object(&b)?)?;
    match action {
        Action::Power(p) => {
            c.write_async(move |st, env| {
                let w = actions::power(st, env, &ctx, &id, p);
                recorded(st, env, &ctx, (&id, p.name(), &rid), w)
            })
            .await?;
            c.kick_builds();
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Action::Op(op) => super::server_ops::act(c, &caller, mv, ctx, id, op).await,
        Action::Lock(on) => {
            let name = if on { "lock" } else { "unlock" };
            c.write_async(move |st, env| {
                let w = actions::lock(st, env, &ctx, &id, on);
                recorded(st, env, &ctx, (&id, name, &rid), w)
            })
            .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Action::Console(lines) => {
            let s = c.read_env(|st, env| -> ComputeResult<_> {
                let s = servers::get(st, &ctx, &id)?;
                env.authz.check(
                    &ctx,
                    "os_compute_api:os-console-output",
                    &json!({"project_id": s.project_id}),
                )?;
                Ok(s.clone())
            })?;
            let Some(sp) = s.host.as_deref().and_then(|h| c.builds().spawner(h)) else {
                // A remote host's agent has the console log.
                let out = super::server_ops::remote_console(&c, &s, lines).await?;
                return Ok(Json(json!({ "output": out })).into_response());
            };
            let out = tokio::task::spawn_blocking(move || sp.console(&s, lines))
                .await
                .map_err(|e| ComputeError::Internal(e.to_string()))?
                .map_err(ComputeError::Conflict)?;
            Ok(Json(json!({ "output": out })).into_response())
        }
    }
}
