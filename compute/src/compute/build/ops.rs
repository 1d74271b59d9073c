//! The host's side of rebuild, resize (confirm, revert) and createImage,
//! run by the build loop from the task state the API recorded
//! ([`crate::compute::servers::ops`]). Each ends with the task state
//! cleared; a failure leaves the server as it was before the action (or in
//! ERROR where the guest is gone, as after a failed rebuild) with a fault.

use super::claims::{ClaimError, Claims};
use super::{fail, plan, update, Compute};
use crate::compute::servers::record::{vm_state, Fault, Server};

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

    fn task_state(self) -> &'static str {
        match self {
            Job::Rebuild => "rebuilding",
            Job::Resize => "resize_prep",
            Job::Confirm => "resize_confirming",
            Job::Revert => "resize_reverting",
            Job::Snapshot => "image_snapshot",
        }
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

/// Runs `job` for `s` on its host (blocking).
pub fn run(c: &Compute, claims: &dyn Claims, s: Server, job: Job) {
    let Some(sp) = s.host.as_deref().and_then(|h| c.builds().spawner(h)) else {
        return;
    };
    match job {
        Job::Rebuild => match sp.rebuild(&s) {
            Ok(()) => finish(c, &s, job, None, |x| {
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
        Job::Resize => resize(c, claims, &s, sp.as_ref()),
        Job::Confirm => {
            let Some(m) = s.migration.clone() else {
                return finish(c, &s, job, None, |_| {});
            };
            match claims.release(&m.id) {
                Ok(()) => finish(c, &s, job, None, |x| {
                    x.vm_state = m.prior_vm_state.clone();
                    x.migration = None;
                }),
                // Left in resize_confirming: the next round tries again.
                Err(why) => {
                    tracing::warn!(server = %s.id, %why, "confirm: migration allocation not released")
                }
            }
        }
        Job::Revert => revert(c, claims, &s, sp.as_ref()),
        Job::Snapshot => {
            let Some(image) = s.pending_image.clone() else {
                return finish(c, &s, job, None, |_| {});
            };
            let r = sp.snapshot(&s, &image);
            if r.is_err() {
                if let Some(l) = c.lookups() {
                    l.delete_image(&image);
                }
            }
            finish(
                c,
                &s,
                job,
                r.err()
                    .map(|e| format!("Snapshot of instance {} failed: {e}", s.id)),
                |x| x.pending_image = None,
            );
        }
    }
}

/// The resize itself: allocation moved (both flavors held on the host),
/// then the domain redefined; any failure puts both back.
fn resize(c: &Compute, claims: &dyn Claims, s: &Server, sp: &dyn super::Spawner) {
    let Some(m) = s.migration.clone() else {
        return finish(c, s, Job::Resize, None, |_| {});
    };
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
        return undo(format!(
            "compute host of instance {} is not registered",
            s.id
        ));
    };
    if !m.moved {
        let want = plan::resources(&m.new_flavor);
        match claims.move_to_migration(&s.id, &m.id, &provider, &want) {
            Ok(()) => {}
            Err(ClaimError::Conflict(why)) | Err(ClaimError::Failed(why)) => {
                tracing::info!(server = %s.id, %why, "resize: no room on the host");
                return undo(format!(
                    "No valid host was found. The host has no room for flavor {}: {why}",
                    m.new_flavor.id
                ));
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
        );
    }
    match sp.resize(s, &m.new_flavor) {
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
            undo(format!("Resize of instance {} failed: {why}", s.id));
        }
    }
}

/// Revert: the domain back to the old flavor, then the old allocation.
fn revert(c: &Compute, claims: &dyn Claims, s: &Server, sp: &dyn super::Spawner) {
    let Some(m) = s.migration.clone() else {
        return finish(c, s, Job::Revert, None, |_| {});
    };
    if let Err(why) = sp.resize(s, &m.old_flavor) {
        // Still resized on the new flavor: the user may confirm or retry.
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
