//! The one trait the compute agent drives, whatever runs the guests.

use uuid::Uuid;

use crate::{Error, HostResources, InstanceSpec, InterfaceSpec};

/// An instance's power state as the hypervisor sees it (Nova's
/// `power_state`), which the agent maps to a server's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PowerState {
    /// Running guest code (or shutting down).
    Running,
    /// Defined but not running.
    Shutoff,
    /// Stopped in memory by [`Driver::pause`].
    Paused,
    /// Saved to disk by [`Driver::suspend`]; [`Driver::resume`] restores it.
    Suspended,
    /// The guest crashed and was not restarted.
    Crashed,
    /// No such instance on this host.
    Absent,
}

/// Soft: ask the guest (ACPI), fall back to hard when it does not comply in
/// time. Hard: power cycle, as pulling the plug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootKind {
    /// Guest shutdown, then start.
    Soft,
    /// Destroy, then start.
    Hard,
}

/// A compute driver: runs instances on this host. Calls block (libvirt's API
/// is synchronous); the agent runs them off its async threads.
///
/// Every call is keyed by the instance uuid alone, so an agent that restarts
/// finds its instances again with [`Driver::list`] and goes on.
pub trait Driver: Send + Sync {
    /// Defines and starts the instance. Its disks and console log directory
    /// must exist (see [`crate::disk`]). [`Error::AlreadyExists`] if the uuid
    /// is already defined here: a build is never started twice.
    fn spawn(&self, spec: &InstanceSpec) -> Result<(), Error>;

    /// Stops and undefines the instance and removes its directory under the
    /// instances dir. Idempotent: absent is success.
    fn destroy(&self, uuid: Uuid) -> Result<(), Error>;

    /// Powers on a stopped or suspended instance; no-op if running.
    fn start(&self, uuid: Uuid) -> Result<(), Error>;

    /// Powers off: guest shutdown, then destroy after the driver's grace
    /// period. No-op if already off.
    fn stop(&self, uuid: Uuid) -> Result<(), Error>;

    /// Reboots a running instance.
    fn reboot(&self, uuid: Uuid, kind: RebootKind) -> Result<(), Error>;

    /// Freezes the vCPUs, memory kept in RAM.
    fn pause(&self, uuid: Uuid) -> Result<(), Error>;

    /// Undoes [`Driver::pause`].
    fn unpause(&self, uuid: Uuid) -> Result<(), Error>;

    /// Saves the guest's memory to disk and stops it (Nova's suspend).
    fn suspend(&self, uuid: Uuid) -> Result<(), Error>;

    /// Undoes [`Driver::suspend`].
    fn resume(&self, uuid: Uuid) -> Result<(), Error>;

    /// The instance's state; [`PowerState::Absent`] if it is not here.
    fn state(&self, uuid: Uuid) -> Result<PowerState, Error>;

    /// weft's instances on this host (never other domains), for reconcile.
    fn list(&self) -> Result<Vec<(Uuid, PowerState)>, Error>;

    /// The last `max_lines` lines of the serial console (all with `None`).
    fn console_output(&self, uuid: Uuid, max_lines: Option<usize>) -> Result<String, Error>;

    /// The host's capacity for placement.
    fn host_resources(&self) -> Result<HostResources, Error>;

    /// Hot-plugs a NIC into the instance (live when it runs, and in its
    /// persistent definition, so it survives a stop and start).
    fn attach_interface(&self, uuid: Uuid, nic: &InterfaceSpec) -> Result<(), Error>;

    /// Unplugs the NIC with `nic`'s MAC, live and from the definition.
    fn detach_interface(&self, uuid: Uuid, nic: &InterfaceSpec) -> Result<(), Error>;

    /// Redefines the instance with new vCPUs and RAM (Nova's resize on the
    /// same host): off while it changes, then back in its prior power state.
    /// `disks` runs while it is off (the caller grows the root disk there:
    /// a running QEMU holds the image's lock).
    fn resize(
        &self,
        uuid: Uuid,
        vcpus: u32,
        memory_mb: u64,
        disks: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error>;

    /// Powers the instance off at once (its disk is about to be replaced,
    /// so there is nothing to shut down cleanly), runs `replace_disks`,
    /// and boots it again on the same definition: NICs and MACs kept.
    fn rebuild(
        &self,
        uuid: Uuid,
        replace_disks: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(), Error>;
}

/// A power operation, with the states it applies in. Both drivers check
/// preconditions here, so the fake refuses exactly what libvirt would have
/// been asked to do wrongly, with the same error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PowerOp {
    Start,
    Stop,
    Reboot,
    Pause,
    Unpause,
    Suspend,
    Resume,
}

impl PowerOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PowerOp::Start => "start",
            PowerOp::Stop => "stop",
            PowerOp::Reboot => "reboot",
            PowerOp::Pause => "pause",
            PowerOp::Unpause => "unpause",
            PowerOp::Suspend => "suspend",
            PowerOp::Resume => "resume",
        }
    }

    /// `Ok(None)`: already done (power operations are retried by the agent
    /// after a restart, so repeating one is not an error); `Ok(Some(s))`: do
    /// it, the instance ends in `s`; `Err`: not in this state.
    pub(crate) fn plan(self, uuid: Uuid, from: PowerState) -> Result<Option<PowerState>, Error> {
        use PowerState::*;
        let to = match (self, from) {
            (_, Absent) => return Err(Error::NotFound(uuid)),
            (PowerOp::Start, Running) | (PowerOp::Stop, Shutoff) => None,
            (PowerOp::Start, Shutoff | Suspended | Crashed) => Some(Running),
            (PowerOp::Stop, Running | Paused | Suspended | Crashed) => Some(Shutoff),
            (PowerOp::Reboot, Running) => Some(Running),
            (PowerOp::Pause, Paused) | (PowerOp::Unpause, Running) => None,
            (PowerOp::Pause, Running) => Some(Paused),
            (PowerOp::Unpause, Paused) => Some(Running),
            (PowerOp::Suspend, Suspended) | (PowerOp::Resume, Running) => None,
            (PowerOp::Suspend, Running | Paused) => Some(Suspended),
            (PowerOp::Resume, Suspended) => Some(Running),
            (op, state) => {
                return Err(Error::InvalidState {
                    uuid,
                    state,
                    op: op.name(),
                })
            }
        };
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let u = Uuid::nil();
        use PowerState::*;
        assert_eq!(PowerOp::Start.plan(u, Shutoff).unwrap(), Some(Running));
        assert_eq!(PowerOp::Start.plan(u, Running).unwrap(), None);
        assert_eq!(PowerOp::Resume.plan(u, Suspended).unwrap(), Some(Running));
        assert_eq!(PowerOp::Stop.plan(u, Paused).unwrap(), Some(Shutoff));
        assert!(matches!(
            PowerOp::Pause.plan(u, Shutoff),
            Err(Error::InvalidState {
                op: "pause",
                state: Shutoff,
                ..
            })
        ));
        assert!(matches!(
            PowerOp::Reboot.plan(u, Paused),
            Err(Error::InvalidState { .. })
        ));
        assert!(matches!(
            PowerOp::Unpause.plan(u, Absent),
            Err(Error::NotFound(_))
        ));
    }
}
