//! The agent's `Datapath` over a `weft switch` in another process, driven through its control
//! socket (`{"cmd":"apply","config":...}`, `{"cmd":"ports"}`).
//!
//! Why a separate process: the switch then outlives the agent. A kill -9, crash or upgrade of
//! the agent stops nothing on the wire: the switch keeps forwarding on the last config it was
//! given, and the restarted agent, starting from revision 0, sends the whole desired state
//! again, which the switch's live diff turns into no change at all for ports that did not
//! change (no tap is closed, no counter or learned MAC reset). The switch itself can then be
//! restarted or upgraded with `weft switch --takeover` under a running agent.

use crate::run::Datapath;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weft_datapath::daemon::control;
use weft_datapath::SwitchConfig;

/// How long an apply is retried while the switch is away (restarting, handing over).
const RETRY_FOR: Duration = Duration::from_secs(10);

/// A `weft switch` reached at its control socket.
pub struct RemoteSwitch {
    socket: PathBuf,
    /// The last attached set read, answered while the switch cannot be reached (a switch
    /// restarting must not turn every port DOWN in ctrl).
    last_attached: Mutex<BTreeSet<String>>,
}

impl RemoteSwitch {
    /// The switch serving the control socket at `socket`.
    pub fn new(socket: PathBuf) -> RemoteSwitch {
        RemoteSwitch {
            socket,
            last_attached: Mutex::new(BTreeSet::new()),
        }
    }

    fn call(&self, req: &Value) -> Result<Value, String> {
        let reply = control::request(&self.socket, req).map_err(|e| e.to_string())?;
        if reply["ok"] == true {
            Ok(reply)
        } else {
            Err(reply["error"]
                .as_str()
                .unwrap_or("switch error")
                .to_string())
        }
    }
}

/// Errors that go away by themselves: the switch is restarting or handing its ports over.
fn transient(e: &str) -> bool {
    e.contains("cannot connect") || e.contains("handed its ports over") || e.contains("bad reply")
}

impl Datapath for RemoteSwitch {
    fn apply(&mut self, config: &SwitchConfig) -> Result<(), String> {
        let cfg = config
            .validated("desired state from ctrl")
            .map_err(|e| e.to_string())?;
        let req = json!({"cmd": "apply", "config": cfg});
        let started = Instant::now();
        loop {
            match self.call(&req) {
                Ok(r) => {
                    tracing::debug!(report = %r["report"], "switch updated");
                    return Ok(());
                }
                Err(e) if transient(&e) && started.elapsed() < RETRY_FOR => {
                    tracing::info!(error = %e, "switch not ready; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn attached(&self) -> BTreeSet<String> {
        let mut last = self.last_attached.lock().unwrap_or_else(|p| p.into_inner());
        match self.call(&json!({"cmd": "ports"})) {
            Ok(r) => {
                *last = r["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["attached"] == true && p["role"] == "vm")
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the switch's ports; keeping the last")
            }
        }
        last.clone()
    }
}
