//! Operators' writes to compute services (os-services): disable a host so
//! the scheduler keeps new servers off it, force it down (its heartbeats no
//! longer count), delete its record. Pure functions over [`State`], as
//! Nova's `os-services` update and delete behave: from 2.53 by the
//! service's uuid with a `status`/`disabled_reason`/`forced_down` body,
//! before by action (`enable`, `disable`, `disable-log-reason`,
//! `force-down`) with `host` and `binary` in the body.

use super::body;
use super::error::{ComputeError, ComputeResult};
use super::model::host::ComputeHost;
use super::service::{Ctx, Env, Write};
use super::state::{Change, State};
use serde_json::{json, Map, Value};

/// The only service binary weft's hosts run (Nova's compute service).
pub const BINARY: &str = "nova-compute";

/// Nova's bound on `disabled_reason` (its column is 255 characters).
const REASON_MAX: usize = 255;

fn allowed(env: &Env, ctx: &Ctx, action: &str) -> ComputeResult<()> {
    env.authz.check(
        ctx,
        &format!("os_compute_api:os-services:{action}"),
        &json!({}),
    )
}

/// The host a service id names: its provider's uuid from 2.53, its
/// integer sequence number before (Nova's two id forms); 400 for an id not
/// of the version's form, as Nova.
pub fn by_id<'a>(
    st: &'a State,
    id: &str,
    mv: (u32, u32),
) -> ComputeResult<Option<&'a ComputeHost>> {
    if mv >= (2, 53) {
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(ComputeError::BadRequest(format!("Invalid uuid {id}")));
        }
        let want = id.to_ascii_lowercase();
        return Ok(st
            .hosts
            .values()
            .find(|h| h.provider.to_ascii_lowercase() == want));
    }
    let seq: u64 = id.parse().map_err(|_| {
        ComputeError::BadRequest(format!(
            "Invalid input received: id must be an integer (got {id})"
        ))
    })?;
    Ok(st.hosts.values().find(|h| h.seq == seq))
}

/// A reason of 1 to 255 characters, as Nova's schema takes it.
fn reason(m: &Map<String, Value>) -> ComputeResult<Option<String>> {
    let r = body::str_field(m, "disabled_reason", REASON_MAX)?;
    if let Some(s) = &r {
        if s.is_empty() {
            return Err(body::invalid("disabled_reason", &json!(s), "is too short"));
        }
    }
    Ok(r)
}

/// `PUT /os-services/{id}` (2.53+): the updated host.
pub fn update(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    m: &Map<String, Value>,
) -> Write<ComputeHost> {
    body::only(m, &["status", "disabled_reason", "forced_down"])?;
    let status = match m.get("status") {
        None => None,
        Some(Value::String(s)) if s == "enabled" || s == "disabled" => Some(s.as_str()),
        Some(v) => {
            return Err(body::invalid(
                "status",
                v,
                "is not one of ['enabled', 'disabled']",
            ))
        }
    };
    let why = reason(m)?;
    let forced = body::bool_field(m, "forced_down")?;
    let host = by_id(st, id, (2, 53))?;
    allowed(env, ctx, "update")?;
    let Some(host) = host else {
        return Err(ComputeError::NotFound(format!(
            "Service {id} could not be found."
        )));
    };
    let mut h = host.clone();
    match status {
        Some("enabled") if why.is_some() => {
            return Err(ComputeError::BadRequest(
                "Specifying 'disabled_reason' with status 'enabled' is invalid.".into(),
            ))
        }
        Some("enabled") => {
            h.enabled = true;
            h.disabled_reason = None;
        }
        Some(_) => {
            h.enabled = false;
            h.disabled_reason = why;
        }
        None => {}
    }
    if let Some(f) = forced {
        h.forced_down = f;
    }
    if status.is_none() && forced.is_none() {
        return Err(ComputeError::BadRequest(
            "No updates were requested. Fields 'status' or 'forced_down' should be specified."
                .into(),
        ));
    }
    Ok((h.clone(), vec![Change::Host(h)]))
}

/// `PUT /os-services/{action}` (before 2.53): Nova's short answer for the
/// action (`host`, `binary` and what changed).
pub fn update_by_action(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    action: &str,
    m: &Map<String, Value>,
    mv: (u32, u32),
) -> Write<Value> {
    let mut keys = vec!["host", "binary", "disabled_reason"];
    if mv >= (2, 11) {
        keys.push("forced_down");
    }
    body::only(m, &keys)?;
    let host = body::required(body::str_field(m, "host", 255)?, "host")?;
    let binary = body::required(body::str_field(m, "binary", 255)?, "binary")?;
    let why = reason(m)?;
    let forced = body::bool_field(m, "forced_down")?;
    allowed(env, ctx, "update")?;
    let known = matches!(action, "enable" | "disable" | "disable-log-reason")
        || (action == "force-down" && mv >= (2, 11));
    if !known {
        return Err(ComputeError::NotFound("Unknown action".into()));
    }
    let Some(found) = st.hosts.get(&host) else {
        return Err(ComputeError::NotFound(format!(
            "Host '{host}' is not mapped to any cell"
        )));
    };
    if binary != BINARY {
        return Err(ComputeError::NotFound(format!(
            "Could not find binary {binary} on host {host}."
        )));
    }
    let mut h = found.clone();
    let mut out = json!({"host": host, "binary": binary});
    match action {
        "enable" => {
            h.enabled = true;
            h.disabled_reason = None;
            out["status"] = json!("enabled");
        }
        "disable" => {
            h.enabled = false;
            h.disabled_reason = None;
            out["status"] = json!("disabled");
        }
        "disable-log-reason" => {
            let Some(why) = why else {
                return Err(ComputeError::BadRequest(
                    "Missing disabled reason field".into(),
                ));
            };
            h.enabled = false;
            h.disabled_reason = Some(why.clone());
            out["status"] = json!("disabled");
            out["disabled_reason"] = json!(why);
        }
        _ => {
            let Some(f) = forced else {
                return Err(ComputeError::BadRequest("Missing forced_down field".into()));
            };
            h.forced_down = f;
            out["forced_down"] = json!(f);
        }
    }
    Ok((out, vec![Change::Host(h)]))
}

/// `DELETE /os-services/{id}`'s checks, before anything is deleted: the
/// host it names, if the caller may delete it and it hosts no server
/// (Nova's 409: deleting it would orphan them).
pub fn deletable(
    st: &State,
    env: &Env,
    ctx: &Ctx,
    id: &str,
    mv: (u32, u32),
) -> ComputeResult<ComputeHost> {
    let host = by_id(st, id, mv)?;
    allowed(env, ctx, "delete")?;
    let Some(h) = host else {
        return Err(ComputeError::NotFound(format!("Service {id} not found.")));
    };
    if st
        .servers
        .values()
        .any(|s| s.host.as_deref() == Some(h.name.as_str()))
    {
        return Err(ComputeError::Conflict(
            "Unable to delete compute service that is hosting instances. Migrate or delete the instances first.".into(),
        ));
    }
    Ok(h.clone())
}

/// `DELETE /os-services/{id}`: the host's record goes and it leaves every
/// aggregate it was in, in one write, as Nova's delete does (its agent
/// registers it again when it restarts, as a Nova compute service does).
/// Its placement provider is the caller's to delete first
/// ([`crate::compute::host_placement::delete_service`]).
pub fn delete(st: &State, env: &Env, ctx: &Ctx, id: &str, mv: (u32, u32)) -> Write<()> {
    let h = deletable(st, env, ctx, id, mv)?;
    let mut changes: Vec<Change> = st
        .aggregates
        .values()
        .filter(|a| a.hosts.contains(&h.name))
        .map(|a| {
            let mut a = a.clone();
            a.hosts.remove(&h.name);
            a.updated_at = Some(env.now.clone());
            Change::Aggregate(a)
        })
        .collect();
    changes.push(Change::DeleteHost(h.name));
    Ok(((), changes))
}
