//! A compute host coming back (its process restarted) puts what libvirt has
//! and what the records say back in agreement, as Nova's compute manager
//! does at start: nothing leaked, nothing started twice.
//!
//! - A domain no server of this host owns (its server was deleted while the
//!   host was down) is destroyed.
//! - A build cut off by the restart goes ERROR (Nova's rule: builds are not
//!   resumed); its ports and claim go with its delete, as usual.
//! - A power action cut off is settled from the domain's actual state.
//! - An ACTIVE server whose domain is gone goes ERROR; one found powered off
//!   goes SHUTOFF (Nova's power-state sync).

use super::{update, Compute, Observed};
use crate::compute::servers::record::{vm_state, Fault};
use std::collections::BTreeMap;

/// What to do with one server of the host, from its record and the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// The records are right.
    Keep,
    /// Set vm_state/power_state (and clear the task state).
    Set(&'static str, u8),
    /// ERROR with this fault message.
    Fail(String),
}

/// Pure: the fix for a server with `vm`/`task` state and what the host sees.
pub fn fix(vm: &str, task: Option<&str>, seen: Observed) -> Fix {
    let from_domain = |seen: Observed| match seen {
        Observed::Running => Fix::Set(vm_state::ACTIVE, 1),
        Observed::Shutoff => Fix::Set(vm_state::STOPPED, 4),
        Observed::Paused => Fix::Set("paused", 3),
        Observed::Suspended => Fix::Set("suspended", 7),
        Observed::Absent => Fix::Fail("The server's domain is gone from its host.".into()),
    };
    match task {
        // Scheduling is the build loop's; deleting its teardown's.
        Some("scheduling") | Some("deleting") => Fix::Keep,
        Some("spawning") => Fix::Fail(
            "Build of instance aborted: its compute host restarted during the build.".into(),
        ),
        Some(_) => from_domain(seen),
        None => match (vm, seen) {
            (vm_state::ERROR, _) => Fix::Keep,
            (vm_state::ACTIVE, Observed::Running)
            | (vm_state::STOPPED, Observed::Shutoff)
            | ("paused", Observed::Paused)
            | ("suspended", Observed::Suspended) => Fix::Keep,
            _ => from_domain(seen),
        },
    }
}

/// Reconciles host `host` of `c` with what its driver reports (`seen`:
/// server id -> state, weft's domains only). Returns the orphan domains
/// (destroyed by the caller through the driver).
pub fn reconcile(c: &Compute, host: &str, seen: &BTreeMap<String, Observed>) -> Vec<String> {
    let st = c.snapshot();
    for s in st
        .servers
        .values()
        .filter(|s| s.host.as_deref() == Some(host))
    {
        let observed = seen.get(&s.id).copied().unwrap_or(Observed::Absent);
        let (vm, task) = (s.vm_state.clone(), s.task_state.clone());
        match fix(&vm, task.as_deref(), observed) {
            Fix::Keep => {}
            Fix::Set(vm_state, power) => {
                update(
                    c,
                    &s.id,
                    |x| x.vm_state == vm && x.task_state == task,
                    |x, _| {
                        x.vm_state = vm_state.into();
                        x.power_state = power;
                        x.task_state = None;
                    },
                );
            }
            Fix::Fail(message) => {
                update(
                    c,
                    &s.id,
                    |x| x.vm_state == vm && x.task_state == task,
                    |x, now| {
                        x.vm_state = vm_state::ERROR.into();
                        x.task_state = None;
                        x.power_state = 0;
                        x.fault = Some(Fault {
                            code: 500,
                            message: message.clone(),
                            created: now.to_string(),
                        });
                    },
                );
            }
        }
    }
    seen.keys()
        .filter(|id| {
            st.servers
                .get(*id)
                .is_none_or(|s| s.host.as_deref() != Some(host))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes() {
        use Observed::*;
        assert_eq!(fix("active", None, Running), Fix::Keep);
        assert_eq!(fix("active", None, Shutoff), Fix::Set("stopped", 4));
        assert!(matches!(fix("active", None, Absent), Fix::Fail(_)));
        assert!(matches!(
            fix("building", Some("spawning"), Running),
            Fix::Fail(_)
        ));
        assert_eq!(fix("building", Some("scheduling"), Absent), Fix::Keep);
        assert_eq!(fix("active", Some("deleting"), Absent), Fix::Keep);
        assert_eq!(
            fix("active", Some("powering-off"), Shutoff),
            Fix::Set("stopped", 4)
        );
        assert_eq!(
            fix("active", Some("powering-off"), Running),
            Fix::Set("active", 1)
        );
        assert_eq!(fix("error", None, Absent), Fix::Keep);
        assert_eq!(fix("stopped", None, Running), Fix::Set("active", 1));
    }
}
