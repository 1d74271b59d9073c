//! The datapath agent: keeps a host's switch in line with ctrl.
//!
//! ```text
//!   ctrl ──(host state since rev R: long-poll / in-process)──► Agent
//!                                                               │ plan(): pure
//!                                                               ▼
//!            ◄──(port status ACTIVE/DOWN)──────────  switch.apply(config TOML)
//! ```
//!
//! After a restart the agent starts from revision 0 and applies the whole
//! state; the switch's live diff leaves ports whose config did not change alone.

pub mod client;
pub mod run;
pub mod switch;
pub mod translate;

pub use client::{AgentAuth, AgentError, Ctrl, HttpCtrl, LocalCtrl};
pub use run::{Agent, Datapath};
pub use switch::WeftSwitch;
pub use translate::{plan, HostBase, Plan};

use crate::networking::Networking;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// Reads a host config: the switch's TOML (its `[switch]`, `[[physnet]]` and
/// `[tunnel]` sections matter here), as text and as a table.
pub fn read_host_config(path: &Path) -> Result<(String, HostBase), AgentError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AgentError::Local(format!("{}: {e}", path.display())))?;
    let base = HostBase::parse(&text)
        .map_err(|e| AgentError::Local(format!("{}: {e}", path.display())))?;
    Ok((text, base))
}

/// `weft agent`: joins the ctrl at `ctrl_url` as `host` until `stop` turns true.
pub async fn run_remote(
    ctrl_url: &str,
    host: &str,
    config: &Path,
    auth: AgentAuth,
    stop: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let (text, base) = read_host_config(config)?;
    let mut ctrl = HttpCtrl::new(ctrl_url, host, auth)?;
    ctrl.tunnel_ip = base.tunnel_ip.clone();
    let sw = WeftSwitch::start(&text, &config.display().to_string()).map_err(AgentError::Local)?;
    tracing::info!(%host, ctrl = %ctrl_url, tunnel_ip = ?base.tunnel_ip, "weft agent: switch started, syncing");
    let sw = Agent::new(ctrl, sw, base).run(stop).await;
    sw.handle.shutdown();
    Ok(())
}

/// A running in-process agent (`weft serve`); stops when dropped.
pub struct LocalAgent {
    stop: watch::Sender<bool>,
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the agent for this host inside `weft serve`, on the same protocol in-process.
pub fn spawn_local(
    rt: &tokio::runtime::Handle,
    net: Arc<Networking>,
    host: &str,
    config: &Path,
) -> Result<LocalAgent, AgentError> {
    let (text, base) = read_host_config(config)?;
    let sw = WeftSwitch::start(&text, &config.display().to_string()).map_err(AgentError::Local)?;
    let (tx, rx) = watch::channel(false);
    let ctrl = LocalCtrl {
        net,
        host: host.to_string(),
        tunnel_ip: base.tunnel_ip.clone(),
    };
    rt.spawn(async move {
        let sw = Agent::new(ctrl, sw, base).run(rx).await;
        sw.handle.shutdown();
    });
    Ok(LocalAgent { stop: tx })
}

/// The kernel's host name, the default `binding:host_id` of this host.
pub fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
