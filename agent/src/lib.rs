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
/// `tunnel_ip` (the `--tunnel-ip` flag) adds a `[tunnel] local_ip` when the file has none.
pub fn read_host_config(
    path: &Path,
    tunnel_ip: Option<&str>,
) -> Result<(String, HostBase), AgentError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AgentError::Local(format!("{}: {e}", path.display())))?;
    let local = |e: String| AgentError::Local(format!("{}: {e}", path.display()));
    let base = HostBase::parse(&text).map_err(local)?;
    let text = with_tunnel_ip(&text, &base, tunnel_ip).map_err(local)?;
    let base = HostBase::parse(&text).map_err(local)?;
    Ok((text, base))
}

/// The host config text with `[tunnel] local_ip = tunnel_ip` appended, unless the config
/// already names that endpoint; another `local_ip` in the file is an error.
pub fn with_tunnel_ip(
    text: &str,
    base: &HostBase,
    tunnel_ip: Option<&str>,
) -> Result<String, String> {
    let Some(ip) = tunnel_ip else {
        return Ok(text.to_string());
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("--tunnel-ip: invalid IP address {ip:?}"))?;
    match &base.tunnel_ip {
        Some(own) if *own == ip.to_string() => Ok(text.to_string()),
        Some(own) => Err(format!(
            "--tunnel-ip {ip} disagrees with [tunnel] local_ip = {own:?} in the config"
        )),
        None if text.contains("[tunnel]") => {
            Err("[tunnel] has no local_ip; set it there or drop --tunnel-ip".into())
        }
        None => {
            let mut t = text.to_string();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(&format!("\n[tunnel]\nlocal_ip = \"{ip}\"\n"));
            Ok(t)
        }
    }
}

/// `weft agent`: joins the ctrl at `ctrl_url` as `host` until `stop` turns true.
pub async fn run_remote(
    ctrl_url: &str,
    host: &str,
    config: &Path,
    tunnel_ip: Option<&str>,
    auth: AgentAuth,
    stop: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let (text, base) = read_host_config(config, tunnel_ip)?;
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
    tunnel_ip: Option<&str>,
) -> Result<LocalAgent, AgentError> {
    let (text, base) = read_host_config(config, tunnel_ip)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_ip_flag_adds_or_matches_the_config() {
        let text = "[[physnet]]\nname = \"physnet\"\ninterface = \"eth1\"";
        let base = HostBase::parse(text).unwrap();
        assert_eq!(with_tunnel_ip(text, &base, None).unwrap(), text);
        let t = with_tunnel_ip(text, &base, Some("192.0.2.5")).unwrap();
        let b = HostBase::parse(&t).unwrap();
        assert_eq!(b.tunnel_ip.as_deref(), Some("192.0.2.5"));
        assert!(b.physnets.contains("physnet"));
        weft_datapath::SwitchConfig::from_toml(&t, "t").unwrap();
        // Same address as the file: unchanged; another one: refused.
        assert_eq!(with_tunnel_ip(&t, &b, Some("192.0.2.5")).unwrap(), t);
        assert!(with_tunnel_ip(&t, &b, Some("192.0.2.6"))
            .unwrap_err()
            .contains("disagrees"));
        assert!(with_tunnel_ip(text, &base, Some("x")).is_err());
    }
}
