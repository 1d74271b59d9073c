//! The host's part of an action on a placed server (a power action, or one
//! of [`super::ops`]), named once so that the in-process host (the build
//! loop calls its [`super::Spawner`]) and a remote agent (which reads the
//! job from its work list, runs its driver and reports) share every
//! decision: which job a task state asks for, the instance action's event
//! it opens and closes, and the finish code that records the outcome. Only
//! who runs the driver call differs.

use super::{note, ops, update, Compute};
use crate::compute::instance_actions::{begin, finish};
use crate::compute::servers::actions::Power;
use crate::compute::servers::record::Server;

/// What a task state asks of the server's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostJob {
    /// start, stop, reboot, pause...
    Power(Power),
    /// rebuild, resize, confirm/revert, createImage.
    Op(ops::Job),
}

impl HostJob {
    /// The job `s`'s task state asks for, if any.
    pub fn of(s: &Server) -> Option<HostJob> {
        let t = s.task_state.as_deref()?;
        ops::Job::from_task_state(t)
            .map(HostJob::Op)
            .or_else(|| Power::from_task_state(t).map(HostJob::Power))
    }

    /// The instance action the API recorded for it (Nova's names).
    pub fn action(self) -> &'static str {
        match self {
            HostJob::Power(p) => p.name(),
            HostJob::Op(j) => j.action(),
        }
    }

    /// The event the host's step shows in that action.
    pub fn event(self) -> String {
        match self {
            HostJob::Power(p) => format!("compute_{}_instance", p.name()),
            HostJob::Op(j) => j.event().to_string(),
        }
    }
}

/// Opens the job's event on the server's latest action of its kind, unless
/// it is open (or done) already: a remote host's job is handed out on every
/// poll until it reports, and only the first hand-out opens it.
pub fn begin_event(c: &Compute, s: &Server, job: HostJob) {
    let (action, event) = (job.action(), job.event());
    let fresh = {
        let st = c.snapshot();
        crate::compute::instance_actions::latest(&st, &s.id, action)
            .is_some_and(|a| !a.events.iter().any(|e| e.event == event))
    };
    if fresh {
        let host = s.host.clone();
        note(c, &s.id, action, |a, now| {
            begin(a, now, &event, host.as_deref())
        });
    }
}

/// Closes the job's event with the host's outcome.
pub fn end_event(c: &Compute, id: &str, job: HostJob, r: Result<(), &str>) {
    let event = job.event();
    note(c, id, job.action(), |a, now| finish(a, now, &event, r));
}

/// Records how a power action ended on the host: the event closed, the task
/// state cleared, and on success Nova's vm_state and power_state for it.
/// Only a server still in the action's task state is moved.
pub fn finish_power(c: &Compute, id: &str, op: Power, r: Result<(), String>) {
    end_event(
        c,
        id,
        HostJob::Power(op),
        r.as_ref().map(|_| ()).map_err(String::as_str),
    );
    let task = op.task_state();
    update(
        c,
        id,
        |x| x.task_state.as_deref() == Some(task),
        |x, _| {
            x.task_state = None;
            if r.is_ok() {
                let (vm, power) = op.outcome();
                x.vm_state = vm.into();
                x.power_state = power;
            }
        },
    );
    if let Err(why) = r {
        tracing::warn!(server = %id, ?op, %why, "power action failed");
    }
}
