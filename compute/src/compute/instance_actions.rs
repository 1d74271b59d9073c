//! Instance actions (os-instance-actions): the record each request that
//! acts on a server leaves (written in the same store write as the act
//! itself), the events the build loop adds as the work progresses, and
//! their views per microversion.

use super::error::{ComputeError, ComputeResult};
use super::model::action::{ActionEvent, InstanceAction};
use super::servers::record::Server;
use super::service::{Ctx, Env};
use super::state::{Change, State};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha224};

/// The build's steps, with Nova's event names.
pub mod event {
    /// The conductor's scheduling of a new server.
    pub const SCHEDULE: &str = "conductor_schedule_and_build_instances";
    /// The compute host's build.
    pub const BUILD: &str = "compute__do_build_and_run_instance";
}

/// The new action record `ctx`'s request `request_id` leaves on `s`.
pub fn record(env: &Env, ctx: &Ctx, s: &Server, action: &str, request_id: &str) -> Change {
    Change::Action(Box::new(InstanceAction {
        server_id: s.id.clone(),
        request_id: request_id.to_string(),
        action: action.to_string(),
        user_id: ctx.user_id.clone(),
        project_id: s.project_id.clone(),
        start_time: env.now.clone(),
        updated_at: env.now.clone(),
        message: None,
        events: vec![],
    }))
}

/// The latest action named `action` on server `id`.
pub fn latest<'a>(st: &'a State, id: &str, action: &str) -> Option<&'a InstanceAction> {
    of_server(st, id)
        .filter(|a| a.action == action)
        .max_by(|a, b| a.start_time.cmp(&b.start_time))
}

/// Every action on server `id`.
fn of_server<'a>(st: &'a State, id: &str) -> impl Iterator<Item = &'a InstanceAction> + 'a {
    let lo = (id.to_string(), String::new());
    let id = id.to_string();
    st.actions
        .range(lo..)
        .take_while(move |((s, _), _)| *s == id)
        .map(|(_, a)| a)
}

/// Changes the latest `action` of server `id` by `f` (nothing if the
/// server has no such action, e.g. one created before actions were kept).
pub fn step(
    st: &State,
    id: &str,
    action: &str,
    f: impl FnOnce(&mut InstanceAction),
) -> Option<Change> {
    let mut a = latest(st, id, action)?.clone();
    f(&mut a);
    Some(Change::Action(Box::new(a)))
}

/// Opens `event` on `a` at `now`, on `host`.
pub fn begin(a: &mut InstanceAction, now: &str, event: &str, host: Option<&str>) {
    a.events.push(ActionEvent {
        event: event.to_string(),
        start_time: now.to_string(),
        finish_time: None,
        result: None,
        traceback: None,
        host: host.map(str::to_string),
        details: None,
    });
    a.updated_at = now.to_string();
}

/// Ends `a`'s open `event`: `Success`, or `Error` with the reason (and
/// the action's message `Error`, as Nova marks a failed action).
pub fn finish(a: &mut InstanceAction, now: &str, event: &str, outcome: Result<(), &str>) {
    let Some(ev) = a
        .events
        .iter_mut()
        .rev()
        .find(|e| e.event == event && e.finish_time.is_none())
    else {
        return;
    };
    ev.finish_time = Some(now.to_string());
    match outcome {
        Ok(()) => ev.result = Some("Success".into()),
        Err(why) => {
            ev.result = Some("Error".into());
            ev.traceback = Some(why.to_string());
            ev.details = Some(why.to_string());
            a.message = Some("Error".into());
        }
    }
    a.updated_at = now.to_string();
}

/// The action record of a request that acted on server `id`, added to
/// the act's own write `w` (so the record and the act commit together).
pub fn recorded<T>(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    (id, action, request_id): (&str, &str, &str),
    w: super::service::Write<T>,
) -> super::service::Write<T> {
    let (out, mut changes) = w?;
    if let Some(s) = st.servers.get(id) {
        changes.push(record(env, ctx, s, action, request_id));
    }
    Ok((out, changes))
}

/// The project whose actions on server `id` `ctx` may see: the server's
/// if it exists (Nova's 404 otherwise), or, from 2.21, a deleted server's
/// through its recorded actions.
fn owner(st: &State, ctx: &Ctx, id: &str, mv: (u32, u32)) -> ComputeResult<String> {
    if let Ok(s) = super::servers::get(st, ctx, id) {
        return Ok(s.project_id.clone());
    }
    let gone = || ComputeError::NotFound(format!("Instance {id} could not be found."));
    if mv < (2, 21) || st.servers.contains_key(id) {
        return Err(gone());
    }
    of_server(st, id)
        .next()
        .map(|a| a.project_id.clone())
        .filter(|p| ctx.is_admin || ctx.project_id.as_deref() == Some(p.as_str()))
        .ok_or_else(gone)
}

fn summary(a: &InstanceAction, mv: (u32, u32)) -> Value {
    let mut v = json!({
        "action": a.action,
        "instance_uuid": a.server_id,
        "message": a.message,
        "project_id": a.project_id,
        "request_id": a.request_id,
        "start_time": a.start_time,
        "user_id": a.user_id,
    });
    if mv >= (2, 58) {
        v["updated_at"] = json!(a.updated_at);
    }
    v
}

fn event_view(e: &ActionEvent, project: &str, mv: (u32, u32), admin: bool) -> Value {
    let mut m = Map::new();
    m.insert("event".into(), json!(e.event));
    m.insert("start_time".into(), json!(e.start_time));
    m.insert("finish_time".into(), json!(e.finish_time));
    m.insert("result".into(), json!(e.result));
    if admin {
        m.insert("traceback".into(), json!(e.traceback));
    }
    if mv >= (2, 62) {
        let host_id = match &e.host {
            Some(h) => hex::encode(Sha224::digest(format!("{project}{h}"))),
            None => String::new(),
        };
        m.insert("hostId".into(), json!(host_id));
        if admin {
            m.insert("host".into(), json!(e.host.clone().unwrap_or_default()));
        }
    }
    Value::Object(m)
}

/// The paging and time filters of an action list (2.58; `changes_before`
/// 2.66), times already checked.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Page size.
    pub limit: Option<usize>,
    /// The request id of the last action of the previous page.
    pub marker: Option<String>,
    /// Only actions updated at or after.
    pub changes_since: Option<chrono::NaiveDateTime>,
    /// Only actions updated at or before.
    pub changes_before: Option<chrono::NaiveDateTime>,
}

/// `GET /servers/{id}/os-instance-actions`, newest first.
pub fn list(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    mv: (u32, u32),
    q: &ListQuery,
) -> ComputeResult<Value> {
    let project = owner(st, ctx, id, mv)?;
    env.authz.check(
        ctx,
        "os_compute_api:os-instance-actions:list",
        &json!({"project_id": project}),
    )?;
    let instant = super::servers::filters::instant;
    let mut rows: Vec<&InstanceAction> = of_server(st, id)
        .filter(|a| {
            let at = instant(&a.updated_at);
            q.changes_since.is_none_or(|t| at.is_some_and(|u| u >= t))
                && q.changes_before.is_none_or(|t| at.is_some_and(|u| u <= t))
        })
        .collect();
    rows.sort_by(|a, b| {
        b.start_time
            .cmp(&a.start_time)
            .then(b.request_id.cmp(&a.request_id))
    });
    if let Some(m) = &q.marker {
        let at = rows
            .iter()
            .position(|a| &a.request_id == m)
            .ok_or_else(|| ComputeError::BadRequest(format!("Marker {m} could not be found.")))?;
        rows.drain(..=at);
    }
    rows.truncate(q.limit.unwrap_or(usize::MAX));
    let rows: Vec<Value> = rows.into_iter().map(|a| summary(a, mv)).collect();
    Ok(json!({ "instanceActions": rows }))
}

/// `GET /servers/{id}/os-instance-actions/{request_id}` with its events:
/// before 2.51 only for those the `events` rule allows (admins), from 2.51
/// for all, the traceback and host still an admin's.
pub fn show(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    request_id: &str,
    mv: (u32, u32),
) -> ComputeResult<Value> {
    let project = owner(st, ctx, id, mv)?;
    let target = json!({"project_id": project});
    env.authz
        .check(ctx, "os_compute_api:os-instance-actions:show", &target)?;
    let a = st
        .actions
        .get(&(id.to_string(), request_id.to_string()))
        .ok_or_else(|| {
            ComputeError::NotFound(format!(
                "Action for request_id {request_id} on instance {id} not found"
            ))
        })?;
    let admin = env
        .authz
        .check(ctx, "os_compute_api:os-instance-actions:events", &target)
        .is_ok();
    let mut v = summary(a, mv);
    if admin || mv >= (2, 51) {
        v["events"] = a
            .events
            .iter()
            .map(|e| event_view(e, &project, mv, admin))
            .collect();
    }
    Ok(json!({ "instanceAction": v }))
}
