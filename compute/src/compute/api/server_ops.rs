//! Handlers of rebuild, resize, confirmResize, revertResize and
//! createImage (from `POST /servers/{id}/action`), and of os-interface.
//! The state rules are [`crate::compute::servers::ops`]' and
//! [`crate::compute::servers::interfaces`]'.

use super::{Caller, S};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::instance_actions::recorded;
use crate::compute::servers::interfaces::{self, Vif};
use crate::compute::servers::ops::{self, Op};
use crate::compute::servers::{self, view};
use crate::compute::{Compute, Ctx};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ComputeResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ComputeError::Internal(e.to_string()))
}

/// One of this module's actions on server `id`.
pub(super) async fn act(
    c: Arc<Compute>,
    caller: &Caller,
    mv: (u32, u32),
    ctx: Ctx,
    id: String,
    op: Op,
) -> ComputeResult<Response> {
    let rid = caller.request_id.clone();
    match op {
        Op::Rebuild(req) => {
            let facts = {
                let (c, ctx, img) = (c.clone(), ctx.clone(), req.image_ref.clone());
                blocking(move || c.lookups().and_then(|l| l.image(&ctx, &img))).await?
            };
            let admin = ctx.is_admin;
            let s = c
                .write_async(move |st, env| {
                    let w = ops::rebuild(st, env, &ctx, &id, &req, facts.as_ref()).and_then(
                        |(s, changes)| {
                            // New metadata counts against the project's quota.
                            if req.metadata.is_some() {
                                let n = s.metadata.len();
                                crate::compute::quotas::check_metadata(st, &s.project_id, n)?;
                            }
                            Ok((s, changes))
                        },
                    );
                    recorded(st, env, &ctx, (&id, "rebuild", &rid), w)
                })
                .await?;
            c.kick_builds();
            let mut v = view::detail(&s, &caller.base, mv, admin);
            v["adminPass"] = json!("");
            Ok((StatusCode::ACCEPTED, Json(json!({ "server": v }))).into_response())
        }
        Op::Resize(flavor) => {
            c.write_async(move |st, env| {
                // The server's project's limits, read in the same write.
                let project = st
                    .servers
                    .get(&id)
                    .map(|s| s.project_id.clone())
                    .unwrap_or_default();
                let quota = crate::compute::quotas::server_quota(st, &project);
                let w = ops::resize(st, env, &ctx, &id, &flavor, quota);
                recorded(st, env, &ctx, (&id, "resize", &rid), w)
            })
            .await?;
            c.kick_builds();
            Ok(StatusCode::ACCEPTED.into_response())
        }
        Op::ConfirmResize | Op::RevertResize => {
            let confirm = op == Op::ConfirmResize;
            let name = if confirm {
                "confirmResize"
            } else {
                "revertResize"
            };
            c.write_async(move |st, env| {
                let w = ops::finish_resize(st, env, &ctx, &id, confirm);
                recorded(st, env, &ctx, (&id, name, &rid), w)
            })
            .await?;
            c.kick_builds();
            // Nova: 204 for confirm, 202 for revert.
            Ok(if confirm {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::ACCEPTED
            }
            .into_response())
        }
        Op::CreateImage { name, metadata } => {
            create_image(c, caller, mv, ctx, id, name, metadata).await
        }
    }
}

/// createImage: the server's state checked, the queued image made (with
/// Nova's snapshot properties), then the task recorded; the image is
/// removed again if the server moved on meanwhile.
async fn create_image(
    c: Arc<Compute>,
    caller: &Caller,
    mv: (u32, u32),
    ctx: Ctx,
    id: String,
    name: String,
    metadata: std::collections::BTreeMap<String, String>,
) -> ComputeResult<Response> {
    let s = c.read_env(|st, env| {
        ops::actionable(
            st,
            env,
            &ctx,
            &id,
            ("createImage", "os_compute_api:servers:create_image"),
            ops::SNAPSHOT_FROM,
        )
        .cloned()
    })?;
    let lookups = c
        .lookups()
        .cloned()
        .ok_or_else(|| ComputeError::Conflict("no image service in this cloud".into()))?;
    let image = {
        let (l, ctx) = (lookups.clone(), ctx.clone());
        let props = ops::snapshot_properties(&s, &metadata);
        blocking(move || l.create_snapshot_image(&ctx, &s, &name, props)).await??
    };
    let img = image.clone();
    let rid = caller.request_id.clone();
    if let Err(e) = c
        .write_async(move |st, env| {
            let w = ops::snapshot(st, env, &ctx, &id, &img);
            recorded(st, env, &ctx, (&id, "createImage", &rid), w)
        })
        .await
    {
        let img = image.clone();
        let _ = blocking(move || lookups.delete_image(&img)).await;
        return Err(e);
    }
    c.kick_builds();
    if mv >= (2, 45) {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "image_id": image }))).into_response());
    }
    let loc = format!("{}/images/{image}", caller.base);
    Ok((StatusCode::ACCEPTED, [("location", loc)]).into_response())
}

/// The server (visible to `ctx`, policy `rule`) and its interfaces.
async fn with_interfaces(
    c: &Arc<Compute>,
    ctx: &Ctx,
    id: &str,
    rule: &str,
) -> ComputeResult<(servers::record::Server, Vec<Vif>)> {
    let s = c.read_env(|st, env| -> ComputeResult<_> {
        let s = servers::get(st, ctx, id)?;
        env.authz
            .check(ctx, rule, &json!({"project_id": s.project_id}))?;
        Ok(s.clone())
    })?;
    let (c2, s2) = (c.clone(), s.clone());
    let vifs =
        blocking(move || c2.lookups().map(|l| l.interfaces(&s2)).unwrap_or_default()).await?;
    Ok((s, vifs))
}

/// `GET /servers/{id}/os-interface`.
pub async fn list_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let (_, vifs) =
        with_interfaces(&c, &ctx, &id, "os_compute_api:os-attach-interfaces:list").await?;
    let list: Vec<_> = vifs.iter().map(Vif::view).collect();
    Ok(Json(json!({ "interfaceAttachments": list })).into_response())
}

fn port_not_found(port: &str) -> ComputeError {
    ComputeError::NotFound(format!("Port {port} could not be found."))
}

/// `GET /servers/{id}/os-interface/{port_id}`.
pub async fn show_h(
    State(c): S,
    caller: Caller,
    Path((id, port)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let (_, vifs) =
        with_interfaces(&c, &ctx, &id, "os_compute_api:os-attach-interfaces:show").await?;
    let v = vifs
        .iter()
        .find(|v| v.port_id == port)
        .ok_or_else(|| port_not_found(&port))?;
    Ok(Json(json!({ "interfaceAttachment": v.view() })).into_response())
}

/// The server, if `action` may run on it now, and its host's driver
/// (`None`: a remote host, asked through its agent).
fn for_interface_change(
    c: &Arc<Compute>,
    ctx: &Ctx,
    id: &str,
    action: (&str, &str),
) -> ComputeResult<(
    servers::record::Server,
    Option<Arc<dyn crate::compute::build::Spawner>>,
)> {
    let s = c.read_env(|st, env| {
        ops::actionable(st, env, ctx, id, action, interfaces::ATTACH_FROM).cloned()
    })?;
    let sp = s.host.as_deref().and_then(|h| c.builds().spawner(h));
    Ok((s, sp))
}

/// Asks a remote host's agent to attach or detach (see
/// [`crate::compute::build::remote`]); its report records the change.
async fn ask_remote(
    c: &Arc<Compute>,
    s: &servers::record::Server,
    ask: crate::compute::model::host_request::Ask,
) -> ComputeResult<crate::compute::model::host_request::Answer> {
    use crate::compute::build::remote;
    use crate::compute::model::host_request::Answer;
    match remote::ask(c, s, ask, remote::ASK_TIMEOUT).await? {
        Answer::Failed { message } => Err(ComputeError::Conflict(message)),
        a => Ok(a),
    }
}

/// `POST /servers/{id}/os-interface`: 200 with the new attachment once
/// the host has plugged it.
pub async fn attach_h(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> ComputeResult<Response> {
    use crate::compute::model::host_request::{Answer, Ask};
    let ctx = caller.ctx(&c)?;
    let req = interfaces::parse_attach(&b)?;
    let action = (
        "attach_interface",
        "os_compute_api:os-attach-interfaces:create",
    );
    let (s, sp) = for_interface_change(&c, &ctx, &id, action)?;
    let Some(sp) = sp else {
        if let Some(l) = c.lookups().cloned() {
            let (s, req) = (s.clone(), req.clone());
            blocking(move || l.check_attach(&s, &req)).await??;
        }
        let ask = Ask::Attach {
            port_id: req.port_id.clone(),
            net_id: req.net_id.clone(),
            fixed_ip: req.fixed_ip.clone(),
        };
        let Answer::Attached { port_id, .. } = ask_remote(&c, &s, ask).await? else {
            return Err(ComputeError::Internal(
                "unexpected answer to an attach".into(),
            ));
        };
        let (_, vifs) = with_interfaces(&c, &ctx, &id, action.1).await?;
        let vif = vifs
            .into_iter()
            .find(|v| v.port_id == port_id)
            .ok_or_else(|| port_not_found(&port_id))?;
        return Ok(Json(json!({ "interfaceAttachment": vif.view() })).into_response());
    };
    let (vif, created) = blocking(move || sp.attach_interface(&s, &req)).await??;
    let v = vif.clone();
    c.write_async(move |st, env| interfaces::attached(st, env, &id, &v, created))
        .await?;
    Ok(Json(json!({ "interfaceAttachment": vif.view() })).into_response())
}

/// `DELETE /servers/{id}/os-interface/{port_id}`: 202 once unplugged.
pub async fn detach_h(
    State(c): S,
    caller: Caller,
    Path((id, port)): Path<(String, String)>,
) -> ComputeResult<Response> {
    let ctx = caller.ctx(&c)?;
    let action = (
        "detach_interface",
        "os_compute_api:os-attach-interfaces:delete",
    );
    let (s, sp) = for_interface_change(&c, &ctx, &id, action)?;
    let (_, vifs) = with_interfaces(&c, &ctx, &id, action.1).await?;
    let vif = vifs
        .into_iter()
        .find(|v| v.port_id == port)
        .ok_or_else(|| port_not_found(&port))?;
    let Some(sp) = sp else {
        let ask = crate::compute::model::host_request::Ask::Detach {
            port_id: port.clone(),
            mac: vif.mac_addr.clone(),
        };
        ask_remote(&c, &s, ask).await?;
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    let p = port.clone();
    blocking(move || sp.detach_interface(&s, &p)).await??;
    c.write_async(move |st, env| interfaces::detached(st, env, &id, &port, &vif.mac_addr))
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `os-getConsoleOutput` of a server on a remote host: asked of its agent
/// (see [`crate::compute::build::remote`]); a host that is down is a 409.
pub(super) async fn remote_console(
    c: &Arc<Compute>,
    s: &servers::record::Server,
    lines: Option<usize>,
) -> ComputeResult<String> {
    use crate::compute::build::remote;
    use crate::compute::model::host_request::{Answer, Ask};
    if s.host.is_none() {
        return Err(ComputeError::Conflict(format!(
            "Cannot 'get_console_output' instance {}: it was never placed on a host",
            s.id
        )));
    }
    c.read_env(|st, env| ops::host_available(st, env, s))?;
    match remote::ask(c, s, Ask::Console { lines }, remote::ASK_TIMEOUT).await? {
        Answer::Console { output } => Ok(output),
        Answer::Failed { message } => Err(ComputeError::Conflict(message)),
        other => Err(ComputeError::Internal(format!(
            "unexpected answer to a console request: {other:?}"
        ))),
    }
}
