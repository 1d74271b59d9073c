//! `weft agent`: the datapath agent of a compute host that joins a controller,
//! and the networking options `weft serve` takes for its own host.

use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use weft::in_process::LocalCtrl;
use weft_agent::{self as agent, AgentAuth, AgentError, LocalAgent};
use weft_ctrl::networking::{self, Networking};
use weft_ctrl::server::Server;

#[derive(Args)]
pub struct AgentArgs {
    /// The controller's base URL (the one `weft serve` listens on), e.g. http://10.0.0.1:8080;
    /// several replicas of one cloud separated by commas (tried in turn, failing over).
    #[arg(long)]
    pub ctrl: String,
    /// This host's name: ports with this binding:host_id are wired here (default: hostname).
    #[arg(long)]
    pub host: Option<String>,
    /// The host's switch config: its [[physnet]] sections (bridge mappings), [switch] settings
    /// and [tunnel] local_ip.
    #[arg(long)]
    pub config: PathBuf,
    /// This host's VXLAN tunnel endpoint (like Neutron's local_ip), when the config has no
    /// [tunnel] section. Without one, vxlan networks are wired host-local.
    #[arg(long)]
    pub tunnel_ip: Option<String>,
    /// Serve the agent's sync metrics and its switch's counters in Prometheus' text format at
    /// http://ADDR/metrics (no authentication: bind a management address).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Drive the `weft switch` serving this control socket instead of running the switch in
    /// the agent: the switch then outlives the agent, so an agent restart (even kill -9) loses
    /// no frame, and the switch can be upgraded under the agent with `weft switch --takeover`.
    #[arg(long)]
    pub switch_socket: Option<PathBuf>,
    #[command(flatten)]
    pub compute: RemoteComputeArgs,
}

/// The compute side of `weft agent`: this host runs servers ctrl places on it.
#[derive(Args, Debug, Clone)]
pub struct RemoteComputeArgs {
    /// Run servers on this host with this driver (default: none, a switch only).
    #[arg(long, value_enum, default_value = "none")]
    pub compute_driver: super::compute::DriverKind,
    /// Where the image cache and the instances live.
    #[arg(long, default_value = "/var/lib/weft-agent")]
    pub compute_state_dir: PathBuf,
    /// libvirt connection URI.
    #[arg(long, default_value = "qemu:///system")]
    pub libvirt_uri: String,
    /// This host's availability zone.
    #[arg(long, default_value = "nova")]
    pub availability_zone: String,
    /// VCPU overcommit in placement (Nova's initial_cpu_allocation_ratio).
    #[arg(long, default_value_t = 4.0)]
    pub cpu_allocation_ratio: f64,
    /// MiB kept for the host itself (reserved_host_memory_mb).
    #[arg(long, default_value_t = 512)]
    pub reserved_host_memory_mb: u64,
    /// With `--compute-driver fake`: the host's vCPUs (default: this machine's).
    #[arg(long)]
    pub fake_host_vcpus: Option<u32>,
    /// With `--compute-driver fake`: the host's memory in MiB (default: this machine's).
    #[arg(long)]
    pub fake_host_memory_mb: Option<u64>,
}

/// The host's compute agent, or None with `--compute-driver none`.
fn remote_compute(
    a: &RemoteComputeArgs,
    ctrl_url: &str,
    host: &str,
    auth: AgentAuth,
) -> anyhow::Result<Option<Arc<agent::compute_remote::RemoteCompute>>> {
    use super::compute::DriverKind;
    use weft_hypervisor::{Driver, FakeDriver, HostResources, LibvirtConfig, LibvirtDriver};
    let instances = a.compute_state_dir.join("instances");
    std::fs::create_dir_all(&instances)?;
    let r = weft_hypervisor::host_resources(&instances)?;
    let probe = weft_hypervisor::probe_accel();
    let (driver, r, hv): (Arc<dyn Driver>, HostResources, &str) = match a.compute_driver {
        DriverKind::None => return Ok(None),
        DriverKind::Fake => {
            let r = HostResources {
                vcpus: a.fake_host_vcpus.unwrap_or(r.vcpus),
                memory_mb: a.fake_host_memory_mb.unwrap_or(r.memory_mb),
                ..r
            };
            (Arc::new(FakeDriver::new(r)), r, "fake")
        }
        DriverKind::Libvirt => {
            let d = LibvirtDriver::connect(LibvirtConfig {
                uri: a.libvirt_uri.clone(),
                instances_dir: instances.clone(),
                shutdown_timeout: std::time::Duration::from_secs(60),
            })?;
            (Arc::new(d), r, "QEMU")
        }
    };
    let compute =
        agent::compute::HostCompute::new(driver, &a.compute_state_dir, &instances, probe.accel);
    let registration = agent::compute_remote::ComputeHostRegistration {
        hypervisor_type: hv.into(),
        driver: format!("{:?}", a.compute_driver).to_lowercase(),
        arch: std::env::consts::ARCH.into(),
        vcpus: u64::from(r.vcpus),
        memory_mb: r.memory_mb,
        disk_gb: r.disk_gb,
        host_ip: String::new(),
        availability_zone: a.availability_zone.clone(),
        cpu_allocation_ratio: a.cpu_allocation_ratio,
        ram_allocation_ratio: 1.0,
        disk_allocation_ratio: 1.0,
        reserved_host_memory_mb: a.reserved_host_memory_mb,
    };
    let ctrl = Arc::new(agent::HttpCtrl::new(ctrl_url, host, auth)?);
    println!(
        "weft: compute host {host} ({:?}, {}) joining {ctrl_url}",
        a.compute_driver, probe.reason
    );
    Ok(Some(agent::compute_remote::RemoteCompute::new(
        ctrl,
        Arc::new(compute),
        registration,
    )))
}

/// Credentials come from the environment: WEFT_AGENT_TOKEN, or an openrc's OS_* variables.
pub fn run_agent(a: AgentArgs) -> anyhow::Result<()> {
    let host = a.host.unwrap_or_else(agent::default_host);
    let auth = auth_from_env()?;
    let compute = remote_compute(&a.compute, &a.ctrl, &host, auth.clone())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        if let Some(c) = compute {
            tokio::spawn(c.run(rx.clone()));
        }
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            let _ = tx.send(true);
        });
        agent::run_remote(
            &a.ctrl,
            &host,
            &a.config,
            a.tunnel_ip.as_deref(),
            auth,
            a.metrics_listen,
            a.switch_socket.as_deref(),
            rx,
        )
        .await
    })?;
    Ok(())
}

/// The agent's credentials from the environment: `WEFT_AGENT_TOKEN`, else the `OS_*`
/// variables of an openrc.
fn auth_from_env() -> Result<AgentAuth, AgentError> {
    if let Ok(t) = std::env::var("WEFT_AGENT_TOKEN") {
        return Ok(AgentAuth::Token(t));
    }
    let var = |k: &str| {
        std::env::var(k).map_err(|_| {
            AgentError::Auth(format!(
                "{k} is not set (source an openrc or set WEFT_AGENT_TOKEN)"
            ))
        })
    };
    let opt = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    Ok(AgentAuth::Password {
        auth_url: var("OS_AUTH_URL")?,
        username: var("OS_USERNAME")?,
        password: var("OS_PASSWORD")?,
        project_name: opt("OS_PROJECT_NAME", "admin"),
        user_domain: opt("OS_USER_DOMAIN_NAME", "Default"),
        project_domain: opt("OS_PROJECT_DOMAIN_NAME", "Default"),
    })
}

/// Networking options of `weft serve`.
#[derive(Args, Clone, Debug, Default)]
pub struct NetServeArgs {
    /// Networking config (TOML): tenant_network_types, network_vlan_ranges, flat_networks, vni_ranges.
    #[arg(long)]
    pub network_config: Option<PathBuf>,
    /// This host's switch config ([[physnet]] sections): runs the datapath agent in-process.
    #[arg(long)]
    pub switch_config: Option<PathBuf>,
    /// binding:host_id of this host for the in-process agent (default: hostname).
    #[arg(long)]
    pub host: Option<String>,
    /// This host's VXLAN tunnel endpoint for the in-process agent, when the switch config has
    /// no [tunnel] section. Without one, vxlan networks stay on this host.
    #[arg(long)]
    pub tunnel_ip: Option<String>,
}

/// Mounts networking into `weft serve` and starts the in-process agent when
/// a switch config is given. Keep the returned agent alive while serving.
pub fn start_in_serve(
    server: &mut Server,
    a: &NetServeArgs,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<(Arc<Networking>, Option<LocalAgent>)> {
    let cfg = match &a.network_config {
        Some(p) => networking::read_config(p).map_err(anyhow::Error::msg)?,
        None => networking::NetConfig::default(),
    };
    let net = networking::mount(server, &cfg).map_err(anyhow::Error::msg)?;
    let local = match &a.switch_config {
        Some(p) => {
            let host = a.host.clone().unwrap_or_else(agent::default_host);
            println!("weft: datapath agent for host {host} in-process");
            let net = net.clone();
            let local =
                agent::spawn_local(rt.handle(), p, a.tunnel_ip.as_deref(), |base| LocalCtrl {
                    net,
                    host,
                    tunnel_ip: base.tunnel_ip.clone(),
                })?;
            // Its sync rounds and the switch's counters join weft serve's /metrics.
            server.metrics().extend(|reg| local.register_metrics(reg));
            Some(local)
        }
        None => None,
    };
    Ok((net, local))
}
