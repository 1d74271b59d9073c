//! `POST /servers/{id}/action`: the power actions (start, stop, reboot,
//! pause/unpause, suspend/resume), lock/unlock. A power action checks the
//! server's state as Nova does (409 otherwise) and records its task state;
//! the build loop carries it out on the host and records the outcome.

use super::get;
use super::record::{vm_state, Server};
use crate::compute::error::{ComputeError, ComputeResult};
use crate::compute::service::{Ctx, Env, Write};
use crate::compute::state::{Change, State};
use serde_json::{json, Map, Value};

/// A power operation the host's driver performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Power on a stopped server.
    Start,
    /// Power off.
    Stop,
    /// ACPI reboot.
    SoftReboot,
    /// Reset.
    HardReboot,
    /// Freeze in memory.
    Pause,
    /// Thaw.
    Unpause,
    /// Save to disk and stop.
    Suspend,
    /// Restore.
    Resume,
}

impl Power {
    /// The task state a server shows while this runs (Nova's names).
    pub fn task_state(self) -> &'static str {
        match self {
            Power::Start => "powering-on",
            Power::Stop => "powering-off",
            Power::SoftReboot => "rebooting",
            Power::HardReboot => "rebooting_hard",
            Power::Pause => "pausing",
            Power::Unpause => "unpausing",
            Power::Suspend => "suspending",
            Power::Resume => "resuming",
        }
    }

    /// The power action a task state stands for.
    pub fn from_task_state(t: &str) -> Option<Power> {
        [
            Power::Start,
            Power::Stop,
            Power::SoftReboot,
            Power::HardReboot,
            Power::Pause,
            Power::Unpause,
            Power::Suspend,
            Power::Resume,
        ]
        .into_iter()
        .find(|p| p.task_state() == t)
    }

    /// (vm_state, power_state) once done.
    pub fn outcome(self) -> (&'static str, u8) {
        match self {
            Power::Start
            | Power::SoftReboot
            | Power::HardReboot
            | Power::Unpause
            | Power::Resume => (vm_state::ACTIVE, 1),
            Power::Stop => (vm_state::STOPPED, 4),
            Power::Pause => ("paused", 3),
            Power::Suspend => ("suspended", 7),
        }
    }

    /// Nova's action name, for messages, policy and instance actions.
    pub fn name(self) -> &'static str {
        match self {
            Power::Start => "start",
            Power::Stop => "stop",
            Power::SoftReboot | Power::HardReboot => "reboot",
            Power::Pause => "pause",
            Power::Unpause => "unpause",
            Power::Suspend => "suspend",
            Power::Resume => "resume",
        }
    }

    /// The vm_states it may start from.
    fn allowed_from(self) -> &'static [&'static str] {
        match self {
            Power::Start => &[vm_state::STOPPED],
            Power::Stop => &[vm_state::ACTIVE, vm_state::ERROR, "paused", "suspended"],
            Power::SoftReboot => &[vm_state::ACTIVE],
            Power::HardReboot => &[
                vm_state::ACTIVE,
                vm_state::STOPPED,
                vm_state::ERROR,
                "paused",
                "suspended",
            ],
            Power::Pause => &[vm_state::ACTIVE],
            Power::Unpause => &["paused"],
            Power::Suspend => &[vm_state::ACTIVE],
            Power::Resume => &["suspended"],
        }
    }
}

/// What an action body asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A power operation.
    Power(Power),
    /// `os-getConsoleOutput` with an optional line count.
    Console(Option<usize>),
    /// `lock` / `unlock`.
    Lock(bool),
    /// rebuild, resize, confirm/revert, createImage ([`super::ops`]).
    Op(super::ops::Op),
}

/// Reads an action body: exactly one known action.
pub fn parse(body: &Map<String, Value>) -> ComputeResult<Action> {
    if body.len() != 1 {
        return Err(ComputeError::BadRequest(
            "There is no such action in the request body, or more than one.".into(),
        ));
    }
    let (k, v) = body.iter().next().expect("one entry");
    Ok(match k.as_str() {
        "os-start" => Action::Power(Power::Start),
        "os-stop" => Action::Power(Power::Stop),
        "pause" => Action::Power(Power::Pause),
        "unpause" => Action::Power(Power::Unpause),
        "suspend" => Action::Power(Power::Suspend),
        "resume" => Action::Power(Power::Resume),
        "lock" => Action::Lock(true),
        "unlock" => Action::Lock(false),
        "reboot" => match v
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("SOFT") => Action::Power(Power::SoftReboot),
            Some("HARD") => Action::Power(Power::HardReboot),
            _ => {
                return Err(ComputeError::BadRequest(
                    "Invalid input for field/attribute type: must be SOFT or HARD".into(),
                ))
            }
        },
        "os-getConsoleOutput" => {
            let length = match v.get("length") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(|n| if n < 0 { None } else { Some(n as usize) })
                    .ok_or_else(|| ComputeError::BadRequest("length must be an integer".into()))?,
                Some(Value::String(s)) => {
                    Some(s.parse::<usize>().map_err(|_| {
                        ComputeError::BadRequest("length must be an integer".into())
                    })?)
                }
                Some(_) => {
                    return Err(ComputeError::BadRequest("length must be an integer".into()))
                }
            };
            Action::Console(length)
        }
        other => match super::ops::parse(other, v) {
            Some(op) => Action::Op(op?),
            None => {
                return Err(ComputeError::BadRequest(format!(
                    "Action '{other}' is not supported by this cloud."
                )))
            }
        },
    })
}

fn policy(ctx: &Ctx, env: &Env, s: &Server, rule: &str) -> ComputeResult<()> {
    env.authz.check(
        ctx,
        rule,
        &json!({"project_id": s.project_id, "user_id": s.user_id}),
    )
}

/// Starts a power action: state checked, task state recorded.
pub fn power(st: &State, env: &mut Env, ctx: &Ctx, id: &str, p: Power) -> Write<()> {
    let s = get(st, ctx, id)?;
    policy(ctx, env, s, &format!("os_compute_api:servers:{}", p.name()))?;
    if s.locked && !ctx.is_admin {
        return Err(ComputeError::Conflict(format!("Instance {id} is locked")));
    }
    if s.task_state.is_some() || !p.allowed_from().contains(&s.vm_state.as_str()) {
        return Err(ComputeError::Conflict(format!(
            "Cannot '{}' instance {id} while it is in vm_state {}{}",
            p.name(),
            s.vm_state,
            s.task_state
                .as_deref()
                .map(|t| format!(" and task_state {t}"))
                .unwrap_or_default()
        )));
    }
    if s.host.is_none() {
        return Err(ComputeError::Conflict(format!(
            "Cannot '{}' instance {id}: it was never placed on a host",
            p.name()
        )));
    }
    super::ops::host_available(st, env, s)?;
    let mut s = s.clone();
    s.task_state = Some(p.task_state().into());
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}

/// `lock` / `unlock`.
pub fn lock(st: &State, env: &mut Env, ctx: &Ctx, id: &str, on: bool) -> Write<()> {
    let s = get(st, ctx, id)?;
    let rule = if on { "lock" } else { "unlock" };
    policy(
        ctx,
        env,
        s,
        &format!("os_compute_api:os-lock-server:{rule}"),
    )?;
    let mut s = s.clone();
    s.locked = on;
    s.updated = env.now.clone();
    Ok(((), vec![Change::Server(Box::new(s))]))
}
