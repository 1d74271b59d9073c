//! The host's side of rebuild, resize (confirm, revert) and createImage,
//! run by the build loop from the task state the API recorded
//! ([`crate::compute::servers::ops`]). Each ends with the task state
//! cleared; a failure leaves the server as it was before the action (or in
//! ERROR where the guest is gone, as after a failed rebuild) with a fault.

use super::claims::{ClaimError, Claims};
use super::host_job::{begin_event, end_event, HostJob};
use super::{fail, plan, update, Compute};
use crate::compute::servers::record::{vm_state, Fault, FlavorCopy, Server};

/// A job the loop runs for a task state of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// `rebuilding`.
    Rebuild,
    /// `resize_prep`.
    Resize,
    /// `resize_confirming`.
    Confirm,
    /// `resize_reverting`.
    Revert,
    /// `image_snapshot`.
    Snapshot,
}

impl Job {
    /// The job a task state asks for.
    pub fn from_task_state(t: &str) -> Option<Job> {
        Some(match t {
            "rebuilding" => Job::Rebuild,
            "resize_prep" => Job::Resize,
            "resize_confirming" => Job::Confirm,
            "resize_reverting" => Job::Revert,
            "image_snapshot" => Job::Snapshot,
            _ => return None,
        })
    }

    /// The instance action the API recorded (Nova's action names).
    pub fn action(self) -> &'static str {
        match self {
            Job::Rebuild => "rebuild",
            Job::Resize => "resize",
            Job::Confirm => "confirmResize",
            Job::Revert => "revertResize",
            Job::Snapshot => "createImage",
        }
    }

    /// The host's event in that action (Nova's names).
    pub fn event(self) -> &'static str {
        match self {
            Job::Rebuild => "compute_rebuild_instance",
            Job::Resize => "compute_resize_instance",
            Job::Confirm => "compute_confirm_resize",
            Job::Revert => "compute_revert_resize",
            Job::Snapshot => "compute_snapshot_instance",
        }
    }

    /// The task state it runs in.
    pub fn task_state(self) -> &'static str {
        match self {
            Job::Rebuild => "rebuilding",
            Job::Resize => "resize_prep",
            Job::Confirm => "resize_confirming",
            Job::Revert => "resize_reverting",
            Job::Snapshot => "image_snapshot",
        }
    }
}

/// What the host's driver must do for a job (`None`: nothing; the job
/// ends at once, as for a record with no migration or image left).
#[derive(Debug, Clone, PartialEq)]
pub enum HostWork {
    /// A fresh root disk from `server.image_ref`, booted again; a server
    /// rebuilt while stopped stays stopped (Nova).
    Rebuild {
        /// Stopped before, so powered off again after.
        stopped: bool,
    },
    /// The domain redefined with this flavor's vCPUs and RAM (resize to the
    /// new flavor, revert to the old one).
    Resize(FlavorCopy),
    /// The root disk uploaded to this (queued) image.
    Snapshot(String),
}

/// The driver's part of `job` on `s` (see [`HostWork`]). Confirm has none:
/// on the same host it only frees the old flavor's allocation.
pub fn host_work(s: &Server, job: Job) -> Option<HostWork> {
    match job {
        Job::Rebuild => Some(HostWork::Rebuild {
            stopped: s.vm_state == vm_state::STOPPED,
        }),
        Job::Resize => s
            .migration
            .as_ref()
            .map(|m| HostWork::Resize(m.new_flavor.clone())),
        Job::Revert => s
            .migration
            .as_ref()
            .map(|m| HostWork::Resize(m.old_flavor.clone())),
        Job::Snapshot => s.pending_image.clone().map(HostWork::Snapshot),
        Job::Confirm => None,
    }
}

/// Ends the job: the task state cleared, `f` applied, a fault if `error`.
fn finish(c: &Compute, s: &Server, job: Job, error: Option<String>, f: impl Fn(&mut Server)) {
    let task = job.task_state();
    update(
        c,
        &s.id,
        |x| x.task_state.as_deref() == Some(task),
        |x, now| {
            x.task_state = None;
            f(x);
            if let Some(e) = &error {
                x.fault = Some(Fault {
                    code: 500,
                    message: e.clone(),
                    created: now.to_string(),
                });
            }
        },
    );
}

/// Runs `job` for `s` on its in-process host (blocking): the control
/// plane's steps, the driver's call, and [`host_done`] with its outcome.
/// A remote agent runs the same driver call and reports to `host_done`.
pub fn run(c: &Compute, claims: &dyn Claims, s: Server, job: Job) {
    let Some(sp) = s.host.as_deref().and_then(|h| c.builds().spawner(h)) else {
        return;
    };
    if job == Job::Confirm {
        return confirm(c, claims, &s);
    }
    if job == Job::Resize && !resize_claim(c, claims, &s) {
        return;
    }
    let Some(work) = host_work(&s, job) else {
        return host_done(c, claims, &s, job, Ok(()));
    };
    begin_event(c, &s, HostJob::Op(job));
    let r = match &work {
        HostWork::Rebuild { .. } => sp.rebuild(&s),
        HostWork::Resize(to) => sp.resize(&s, to),
        HostWork::Snapshot(image) => sp.snapshot(&s, image),
    };
    host_done(c, claims, &s, job, r);
}

/// Records how the host's part of `job` ended (`s` as it was when the job
/// started): the event closed, and the server moved on as Nova does, or put
/// back with a fault. A no-op for a server no longer in the job's task state.
pub fn host_done(c: &Compute, claims: &dyn Claims, s: &Server, job: Job, r: Result<(), String>) {
    end_event(
        c,
        &s.id,
        HostJob::Op(job),
        r.as_ref().map(|_| ()).map_err(String::as_str),
    );
    match job {
        Job::Rebuild => match r {
            Ok(()) => finish(c, s, job, None, |x| {
                x.fault = None;
                if x.vm_state == vm_state::ERROR {
                    x.vm_state = vm_state::ACTIVE.into();
                }
                x.power_state = if x.vm_state == vm_state::STOPPED {
                    4
                } else {
                    1
                };
            }),
            Err(why) => fail(
                c,
                &s.id,
                format!("Rebuild of instance {} failed: {why}", s.id),
            ),
        },
        Job::Resize => resize_done(c, claims, s, r),
        Job::Confirm => confirm(c, claims, s),
        Job::Revert => revert_done(c, claims, s, r),
        Job::Snapshot => {
            let image = s.pending_image.clone();
            if r.is_err() {
                if let (Some(l), Some(image)) = (c.lookups(), &image) {
                    l.delete_image(image);
                }
            }
            finish(
                c,
                s,
                job,
                r.err()
                    .map(|e| format!("Snapshot of instance {} failed: {e}", s.id)),
                |x| x.pending_image = None,
            );
        }
    }
}

/// Confirm: the migration's allocation (the old flavor's) freed; no host
/// work on the same host.
pub fn confirm(c: &Compute, claims: &dyn Claims, s: &Server) {
    let job = Job::Confirm;
    let Some(m) = s.migration.clone() else {
        return finish(c, s, job, None, |_| {});
    };
    begin_event(c, s, HostJob::Op(job));
    match claims.release(&m.id) {
        Ok(()) => {
            end_event(c, &s.id, HostJob::Op(job), Ok(()));
            finish(c, s, job, None, |x| {
                x.vm_state = m.prior_vm_state.clone();
                x.migration = None;
            })
        }
        // Left in resize_confirming: the next round tries again.
        Err(why) => {
            tracing::warn!(server = %s.id, %why, "confirm: migration allocation not released")
        }
    }
}

/// The resize's placement half, before the host's: the old flavor's
/// allocation moved to the migration's consumer and the new one claimed
/// for the server (both held on the host). True when the host may go on;
/// false when the resize ended here (no room: put back with a fault).
pub fn resize_claim(c: &Compute, claims: &dyn Claims, s: &Server) -> bool {
    let Some(m) = s.migration.clone() else {
        finish(c, s, Job::Resize, None, |_| {});
        return false;
    };
    if m.moved {
        return true;
    }
    let provider = c
        .snapshot()
        .hosts
        .get(s.host.as_deref().unwrap_or_default())
        .map(|h| h.provider.clone());
    let undo = |why: String| {
        finish(c, s, Job::Resize, Some(why), |x| {
            x.migration = None;
            x.vm_state = m.prior_vm_state.clone();
        })
    };
    let Some(provider) = provider else {
        undo(format!(
            "compute host of instance {} is not registered",
            s.id
        ));
        return false;
    };
    let want = plan::resources(&m.new_flavor);
    match claims.move_to_migration(&s.id, &m.id, &provider, &want) {
        Ok(()) => {}
        Err(ClaimError::Conflict(why)) | Err(ClaimError::Failed(why)) => {
            tracing::info!(server = %s.id, %why, "resize: no room on the host");
            undo(format!(
                "No valid host was found. The host has no room for flavor {}: {why}",
                m.new_flavor.id
            ));
            return false;
        }
    }
    update(
        c,
        &s.id,
        |x| x.task_state.as_deref() == Some("resize_prep"),
        |x, _| {
            if let Some(mm) = &mut x.migration {
                mm.moved = true;
            }
        },
    )
}

/// The resize's end: the new flavor recorded (VERIFY_RESIZE), or both
/// allocations put back when the host failed.
fn resize_done(c: &Compute, claims: &dyn Claims, s: &Server, r: Result<(), String>) {
    let Some(m) = s.migration.clone() else {
        return finish(c, s, Job::Resize, None, |_| {});
    };
    match r {
        Ok(()) => finish(c, s, Job::Resize, None, |x| {
            x.flavor = m.new_flavor.clone();
            x.vm_state = vm_state::RESIZED.into();
            if let Some(mm) = &mut x.migration {
                mm.moved = true;
            }
        }),
        Err(why) => {
            if let Err(e) = claims.revert_migration(&s.id, &m.id) {
                tracing::warn!(server = %s.id, error = %e, "resize: allocation not moved back");
            }
            finish(
                c,
                s,
                Job::Resize,
                Some(format!("Resize of instance {} failed: {why}", s.id)),
                |x| {
                    x.migration = None;
                    x.vm_state = m.prior_vm_state.clone();
                },
            );
        }
    }
}

/// Revert's end: once the host runs the old flavor again, the old
/// allocation back; a host failure leaves it resized (the user may confirm
/// or retry).
fn revert_done(c: &Compute, claims: &dyn Claims, s: &Server, r: Result<(), String>) {
    let Some(m) = s.migration.clone() else {
        return finish(c, s, Job::Revert, None, |_| {});
    };
    if let Err(why) = r {
        return finish(
            c,
            s,
            Job::Revert,
            Some(format!("Revert of the resize of {} failed: {why}", s.id)),
            |_| {},
        );
    }
    if let Err(why) = claims.revert_migration(&s.id, &m.id) {
        tracing::warn!(server = %s.id, %why, "revert: allocation not moved back");
    }
    finish(c, s, Job::Revert, None, |x| {
        x.flavor = m.old_flavor.clone();
        x.vm_state = m.prior_vm_state.clone();
        x.migration = None;
    });
}
