//! The agent's `Datapath` over the weft switch daemon library.

use crate::run::Datapath;
use std::collections::BTreeSet;
use std::sync::Arc;
use weft_datapath::config::SwitchConfig;
use weft_datapath::daemon::control::ControlServer;
use weft_datapath::daemon::{Switch, SwitchHandle};

/// The weft switch, driven by the agent through [`Datapath`].
pub struct WeftSwitch {
    /// Shared so that a metrics collector can read its counters at scrape time.
    pub handle: Arc<SwitchHandle>,
    /// The switch's control socket, so that `weft ctl` (ports, conntrack, counters) and
    /// `weft trace` work on an agent's host as on a standalone switch. None when it could not
    /// be bound (logged): the agent runs without it.
    _control: Option<ControlServer>,
}

impl WeftSwitch {
    /// Starts the switch with the host's base config (its physnets, no ports yet) and serves its
    /// control socket (`[switch] control_socket`). `reload` is refused there: ctrl, not a file,
    /// holds this switch's config.
    pub fn start(base: &SwitchConfig) -> Result<WeftSwitch, String> {
        let handle = Arc::new(Switch::start(base.clone()).map_err(|e| e.to_string())?);
        let path = &base.switch.control_socket;
        let control = match handle.serve_control(path, None) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(socket = %path.display(), "no control socket for weft ctl: {e}");
                None
            }
        };
        Ok(WeftSwitch {
            handle,
            _control: control,
        })
    }
}

impl Datapath for WeftSwitch {
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String> {
        let cfg = config
            .validated("desired state from ctrl")
            .map_err(|e| e.to_string())?;
        let rep = self.handle.apply(cfg).map_err(|e| e.to_string())?;
        tracing::debug!(added = ?rep.added, removed = ?rep.removed, updated = ?rep.updated,
            reattached = ?rep.reattached, generation = rep.generation, "switch updated");
        Ok(())
    }

    fn attached(&self) -> BTreeSet<String> {
        self.handle
            .port_states()
            .into_iter()
            .filter(|p| p.attached && p.role == "vm")
            .map(|p| p.name)
            .collect()
    }
}
