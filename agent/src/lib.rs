//! weft-agent: the host agent. It keeps a host's switch in line with ctrl.
//!
//! ```text
//!   ctrl ──(HostState since rev R: long-poll over HTTP / in-process)──► Agent
//!                                                                        │ plan(): pure
//!                                                                        ▼
//!            ◄──(port status ACTIVE/DOWN)──────────  switch.apply(&SwitchConfig)
//! ```
//!
//! After a restart the agent starts from revision 0 and applies the whole
//! state; the switch's live diff leaves ports whose config did not change alone.
//!
//! Non-goals: no HTTP server, no database, no dependency on ctrl. The agent
//! speaks the wire types of weft-proto through its [`Ctrl`] trait: [`HttpCtrl`]
//! for a remote ctrl; `weft serve` implements it over its in-process
//! networking service. Credentials come typed ([`AgentAuth`]); reading them from
//! the environment is the binary's job.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod compute;
pub mod compute_remote;
mod image_fetch;
pub mod metrics;
pub mod remote;
pub mod run;
pub mod switch;
pub mod translate;

pub use client::{AgentAuth, AgentError, Ctrl, HttpCtrl};
pub use metrics::AgentMetrics;
pub use remote::RemoteSwitch;
pub use run::{Agent, Datapath};
pub use switch::WeftSwitch;
pub use translate::{plan, HostBase, Plan};

use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use weft_datapath::config::{SwitchConfig, TunnelConfig};
use weft_datapath::metrics::{encode_registry, MetricsServer, SwitchCollector};

/// Reads a host config: the switch's TOML (its `[switch]`, `[[physnet]]` and
/// `[tunnel]` sections matter here). `tunnel_ip` (the `--tunnel-ip` flag) adds
/// a `[tunnel] local_ip` when the file has none.
pub fn read_host_config(path: &Path, tunnel_ip: Option<&str>) -> Result<HostBase, AgentError> {
    let cfg = SwitchConfig::load(path).map_err(|e| AgentError::Local(e.to_string()))?;
    let cfg = with_tunnel_ip(cfg, tunnel_ip)
        .map_err(|e| AgentError::Local(format!("{}: {e}", path.display())))?;
    Ok(HostBase::new(cfg))
}

/// The host config with a tunnel endpoint at `tunnel_ip` (on the VXLAN port, no static
/// peers), unless the config already names that endpoint; another `local_ip` in the file
/// is an error.
pub fn with_tunnel_ip(
    mut cfg: SwitchConfig,
    tunnel_ip: Option<&str>,
) -> Result<SwitchConfig, String> {
    let Some(ip) = tunnel_ip else {
        return Ok(cfg);
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("--tunnel-ip: invalid IP address {ip:?}"))?;
    match &cfg.tunnel {
        Some(own) if own.local_ip == ip => Ok(cfg),
        Some(own) => Err(format!(
            "--tunnel-ip {ip} disagrees with [tunnel] local_ip = {:?} in the config",
            own.local_ip.to_string()
        )),
        None => {
            cfg.tunnel = Some(TunnelConfig {
                local_ip: ip,
                udp_port: weft_datapath::tunnel::VXLAN_UDP_PORT,
                peers: Vec::new(),
            });
            // The switch's rules for an endpoint (unicast) hold for the flag too.
            cfg.validated("--tunnel-ip").map_err(|e| e.to_string())
        }
    }
}

/// `weft agent`: joins the ctrl at `ctrl_url` as `host` until `stop` turns true.
/// With `metrics_listen`, serves the agent's and its switch's metrics at
/// `http://ADDR/metrics`. With `switch_socket`, drives the `weft switch` serving that control
/// socket (see [`RemoteSwitch`]) instead of running the switch in this process.
#[allow(clippy::too_many_arguments)]
pub async fn run_remote(
    ctrl_url: &str,
    host: &str,
    config: &Path,
    tunnel_ip: Option<&str>,
    auth: AgentAuth,
    metrics_listen: Option<SocketAddr>,
    switch_socket: Option<&Path>,
    stop: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let base = read_host_config(config, tunnel_ip)?;
    let mut ctrl = HttpCtrl::new(ctrl_url, host, auth)?;
    ctrl.tunnel_ip = base.tunnel_ip.clone();
    if let Some(sock) = switch_socket {
        let agent = Agent::new(ctrl, RemoteSwitch::new(sock.to_path_buf()), base);
        let _metrics = match metrics_listen {
            Some(addr) => {
                let mut reg = Registry::with_prefix("weft");
                agent.metrics.register(&mut reg);
                let m = MetricsServer::bind(addr, Arc::new(move || encode_registry(&reg)))
                    .map_err(|e| AgentError::Local(format!("--metrics-listen {addr}: {e}")))?;
                Some(m)
            }
            None => None,
        };
        tracing::info!(%host, ctrl = %ctrl_url, switch = %sock.display(), "weft agent: driving the switch at its control socket, syncing");
        agent.run(stop).await;
        return Ok(());
    }
    let sw = WeftSwitch::start(&base.config).map_err(AgentError::Local)?;
    let agent = Agent::new(ctrl, sw, base);
    let _metrics = match metrics_listen {
        Some(addr) => {
            let m = serve_metrics(addr, &agent.metrics, &agent.dp.handle)
                .map_err(|e| AgentError::Local(format!("--metrics-listen {addr}: {e}")))?;
            tracing::info!(addr = %m.local_addr(), "serving /metrics");
            Some(m)
        }
        None => None,
    };
    tracing::info!(%host, ctrl = %ctrl_url, tunnel_ip = ?agent.base.tunnel_ip, "weft agent: switch started, syncing");
    let sw = agent.run(stop).await;
    sw.handle.shutdown();
    Ok(())
}

/// Registers the agent's metrics and its switch's counters in `reg`.
pub fn register_metrics(
    reg: &mut Registry,
    metrics: &AgentMetrics,
    switch: &Arc<weft_datapath::daemon::SwitchHandle>,
) {
    metrics.register(reg);
    reg.register_collector(Box::new(SwitchCollector::new(switch)));
}

/// Serves `metrics` and `switch`'s counters at `http://addr/metrics` (a
/// blocking responder on its own thread: the agent has no HTTP server).
pub fn serve_metrics(
    addr: SocketAddr,
    metrics: &AgentMetrics,
    switch: &Arc<weft_datapath::daemon::SwitchHandle>,
) -> std::io::Result<MetricsServer> {
    let mut reg = Registry::with_prefix("weft");
    register_metrics(&mut reg, metrics, switch);
    MetricsServer::bind(addr, Arc::new(move || encode_registry(&reg)))
}

/// A running in-process agent (`weft serve`); stops when dropped.
pub struct LocalAgent {
    stop: watch::Sender<bool>,
    metrics: AgentMetrics,
    switch: Arc<weft_datapath::daemon::SwitchHandle>,
}

impl LocalAgent {
    /// Registers the agent's metrics and its switch's counters in `reg`
    /// (`weft serve` adds them to its own `/metrics`).
    pub fn register_metrics(&self, reg: &mut Registry) {
        register_metrics(reg, &self.metrics, &self.switch);
    }
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the agent for this host inside `weft serve`, on the same protocol in-process:
/// `ctrl` builds the caller's [`Ctrl`] once the host config (and so its tunnel endpoint)
/// is known.
pub fn spawn_local<C: Ctrl + 'static>(
    rt: &tokio::runtime::Handle,
    config: &Path,
    tunnel_ip: Option<&str>,
    ctrl: impl FnOnce(&HostBase) -> C,
) -> Result<LocalAgent, AgentError> {
    let base = read_host_config(config, tunnel_ip)?;
    let sw = WeftSwitch::start(&base.config).map_err(AgentError::Local)?;
    let (tx, rx) = watch::channel(false);
    let ctrl = ctrl(&base);
    let agent = Agent::new(ctrl, sw, base);
    let local = LocalAgent {
        stop: tx,
        metrics: agent.metrics.clone(),
        switch: agent.dp.handle.clone(),
    };
    rt.spawn(async move {
        let sw = agent.run(rx).await;
        sw.handle.shutdown();
    });
    Ok(local)
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
        let cfg = SwitchConfig::from_toml(text, "t").unwrap();
        assert_eq!(with_tunnel_ip(cfg.clone(), None).unwrap(), cfg);
        let t = with_tunnel_ip(cfg.clone(), Some("192.0.2.5")).unwrap();
        let b = HostBase::new(t.clone());
        assert_eq!(b.tunnel_ip.as_deref(), Some("192.0.2.5"));
        assert_eq!(t.tunnel.as_ref().unwrap().udp_port, 4789);
        assert!(b.physnets.contains("physnet"));
        // Same address as the file: unchanged; another one: refused.
        assert_eq!(with_tunnel_ip(t.clone(), Some("192.0.2.5")).unwrap(), t);
        assert!(with_tunnel_ip(t, Some("192.0.2.6"))
            .unwrap_err()
            .contains("disagrees"));
        assert!(with_tunnel_ip(cfg.clone(), Some("x")).is_err());
        // The switch's rules for an endpoint hold for the flag.
        assert!(with_tunnel_ip(cfg, Some("224.0.0.1"))
            .unwrap_err()
            .contains("not a unicast address"));
    }
}
