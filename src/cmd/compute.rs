//! The in-process compute host of `weft serve`: registers this host in
//! placement with its real inventory, heartbeats, and runs builds through
//! the driver (libvirt by default; `fake` only when asked, for scheduler
//! tests). The control-plane steps (image bytes, ports) are ctrl's
//! `HostServices`; the host steps (cache, disks, domain) the agent's.

use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weft_agent::compute::{Build, HostCompute, ImageSource, Nic};
use weft_compute::compute::build::scheduler::Weights;
use weft_compute::compute::build::{host::ComputeHost, Observed, Spawned, Spawner};
use weft_compute::compute::error::{ComputeError, ComputeResult};
use weft_compute::compute::servers::actions::Power;
use weft_compute::compute::servers::interfaces::{Attach, Vif};
use weft_compute::compute::servers::record::{vm_state, FlavorCopy, Server};
use weft_compute::compute::Compute;
use weft_compute::placement::model::Inventory;
use weft_compute::placement::Placement;
use weft_ctrl::compute_host::HostServices;
use weft_hypervisor::{
    Driver, FakeDriver, HostResources, InterfaceSpec, LibvirtConfig, LibvirtDriver, PowerState,
    RebootKind,
};

/// Which driver this host's servers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    /// QEMU through libvirt (KVM when /dev/kvm works, TCG otherwise).
    Libvirt,
    /// No guests: records only, for scheduler tests with many hosts.
    Fake,
    /// This process is no compute host.
    None,
}

#[derive(Args, Debug, Clone)]
pub struct ComputeServeArgs {
    /// The compute driver of this host.
    #[arg(long, value_enum, default_value = "libvirt")]
    pub compute_driver: DriverKind,
    /// Where instance disks and console logs live. Default: STATE_DIR/instances.
    #[arg(long)]
    pub instances_dir: Option<PathBuf>,
    /// libvirt connection URI.
    #[arg(long, default_value = "qemu:///system")]
    pub libvirt_uri: String,
    /// VCPU overcommit in placement (Nova's initial_cpu_allocation_ratio).
    #[arg(long, default_value_t = 4.0)]
    pub cpu_allocation_ratio: f64,
    /// MEMORY_MB overcommit (initial_ram_allocation_ratio).
    #[arg(long, default_value_t = 1.0)]
    pub ram_allocation_ratio: f64,
    /// DISK_GB overcommit (initial_disk_allocation_ratio).
    #[arg(long, default_value_t = 1.0)]
    pub disk_allocation_ratio: f64,
    /// Memory kept for the host itself (Nova's reserved_host_memory_mb).
    #[arg(long, default_value_t = 512)]
    pub reserved_host_memory_mb: u64,
    /// How long stop and soft reboot wait for the guest to power off before
    /// pulling the plug (Nova's shutdown_timeout).
    #[arg(long, default_value_t = 60)]
    pub shutdown_timeout_secs: u64,
    /// This host's availability zone.
    #[arg(long, default_value = "nova")]
    pub availability_zone: String,
    /// The scheduler's free-RAM weigher multiplier (Nova's
    /// ram_weight_multiplier): positive spreads servers over hosts, negative
    /// stacks them.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub ram_weight_multiplier: f64,
    /// The free-vCPU weigher multiplier (cpu_weight_multiplier).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub cpu_weight_multiplier: f64,
    /// The soft-(anti-)affinity weigher multiplier
    /// (soft_affinity_weight_multiplier).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub soft_affinity_weight_multiplier: f64,
    /// Builds scheduled and spawned at once by this process (Nova's
    /// max_concurrent_builds); the rest wait in BUILD/scheduling.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_builds: u32,
    /// With `--compute-driver fake`: run this many compute hosts in this
    /// process, this host and N-1 more named HOST-fake-0002..., each with
    /// its own fake driver, provider and heartbeat (scheduler tests and
    /// benchmarks with many hosts on one machine).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub fake_hosts: u32,
    /// With `--compute-driver fake`: each fake host's vCPUs (default: this
    /// machine's).
    #[arg(long)]
    pub fake_host_vcpus: Option<u32>,
    /// With `--compute-driver fake`: each fake host's memory in MiB (default:
    /// this machine's).
    #[arg(long)]
    pub fake_host_memory_mb: Option<u64>,
}

impl ComputeServeArgs {
    /// Refuses options that only mean something with another driver.
    pub fn check(&self) -> anyhow::Result<()> {
        let fake_only = self.fake_hosts > 1
            || self.fake_host_vcpus.is_some()
            || self.fake_host_memory_mb.is_some();
        if fake_only && self.compute_driver != DriverKind::Fake {
            anyhow::bail!(
                "--fake-hosts, --fake-host-vcpus and --fake-host-memory-mb need --compute-driver fake"
            );
        }
        Ok(())
    }
}

/// This host, as the build loop calls it.
struct LocalHost {
    host: String,
    compute: HostCompute,
    services: HostServices,
}

/// The image source of one build: the server's image, read with its trust.
struct Images<'a>(&'a HostServices, &'a Server);

impl ImageSource for Images<'_> {
    fn open(&self, id: &str) -> Result<Box<dyn std::io::Read + Send>, String> {
        if id != self.1.image_ref {
            return Err(format!("image {id} is not this build's image"));
        }
        self.0.open_image(self.1)
    }
}

impl Spawner for LocalHost {
    fn spawn(&self, s: &Server) -> Result<Spawned, String> {
        let plugged = self.services.plug(s, &self.host)?;
        let build = Build {
            server_id: s.id.clone(),
            image_id: s.image_ref.clone(),
            vcpus: s.flavor.vcpus,
            memory_mb: s.flavor.ram,
            root_gb: s.flavor.disk,
            ephemeral_gb: s.flavor.ephemeral,
            swap_mb: s.flavor.swap,
            nics: plugged
                .iter()
                .map(|p| Nic {
                    tap: p.devname.clone(),
                    mac: p.mac.clone(),
                    mtu: u16::try_from(p.mtu).unwrap_or(1500),
                })
                .collect(),
            metadata: [
                ("project_id".to_string(), s.project_id.clone()),
                ("flavor".to_string(), s.flavor.name.clone()),
            ]
            .into(),
        };
        let created: Vec<String> = plugged
            .iter()
            .filter(|p| p.created)
            .map(|p| p.port_id.clone())
            .collect();
        if let Err(e) = self.compute.spawn(&build, &Images(&self.services, s)) {
            let mut undo = s.clone();
            undo.created_ports = created;
            if let Err(why) = self.services.unplug(&undo) {
                tracing::warn!(server = %s.id, %why, "ports of a failed build not released");
            }
            return Err(e);
        }
        let mut addresses: BTreeMap<String, Vec<(String, u8, String)>> = BTreeMap::new();
        for p in &plugged {
            let list = addresses.entry(p.network_name.clone()).or_default();
            for (ip, v) in &p.ips {
                list.push((ip.clone(), *v, p.mac.clone()));
            }
        }
        Ok(Spawned {
            addresses,
            created_ports: created,
        })
    }

    fn destroy(&self, s: &Server) -> Result<(), String> {
        self.compute.destroy(&s.id)?;
        self.services.unplug(s)
    }

    fn power(&self, s: &Server, op: Power) -> Result<(), String> {
        let u = uuid::Uuid::parse_str(&s.id).map_err(|e| e.to_string())?;
        let d = self.compute.driver();
        match op {
            Power::Start => d.start(u),
            Power::Stop => d.stop(u),
            Power::SoftReboot => d.reboot(u, RebootKind::Soft),
            Power::HardReboot => d.reboot(u, RebootKind::Hard),
            Power::Pause => d.pause(u),
            Power::Unpause => d.unpause(u),
            Power::Suspend => d.suspend(u),
            Power::Resume => d.resume(u),
        }
        .map_err(|e| e.to_string())
    }

    fn console(&self, s: &Server, lines: Option<usize>) -> Result<String, String> {
        self.compute.console(&s.id, lines)
    }

    fn observe(&self) -> Result<BTreeMap<String, Observed>, String> {
        let list = self.compute.driver().list().map_err(|e| e.to_string())?;
        Ok(list
            .into_iter()
            .map(|(u, st)| {
                let seen = match st {
                    PowerState::Running => Observed::Running,
                    PowerState::Shutoff | PowerState::Crashed => Observed::Shutoff,
                    PowerState::Paused => Observed::Paused,
                    PowerState::Suspended => Observed::Suspended,
                    PowerState::Absent => Observed::Absent,
                };
                (u.to_string(), seen)
            })
            .collect())
    }

    fn destroy_orphan(&self, server_id: &str) -> Result<(), String> {
        self.compute.destroy(server_id)
    }

    fn rebuild(&self, s: &Server) -> Result<(), String> {
        self.compute.rebuild(
            &s.id,
            &s.image_ref,
            s.flavor.disk,
            &Images(&self.services, s),
        )?;
        // Nova: a server rebuilt while stopped stays stopped.
        if s.vm_state == vm_state::STOPPED {
            self.power(s, Power::Stop)?;
        }
        Ok(())
    }

    fn resize(&self, s: &Server, to: &FlavorCopy) -> Result<(), String> {
        self.compute.resize(&s.id, to.vcpus, to.ram, to.disk)
    }

    fn snapshot(&self, s: &Server, image_id: &str) -> Result<(), String> {
        // Beside the disks: the same filesystem, and no partial file left
        // in the image cache or the instance's own directory.
        let file = self
            .compute
            .instances_dir()
            .join(format!(".snapshot-{image_id}.qcow2"));
        let r = self
            .compute
            .snapshot(&s.id, &file)
            .and_then(|()| self.services.upload_image(s, image_id, &file));
        let _ = std::fs::remove_file(&file);
        r
    }

    fn attach_interface(&self, s: &Server, req: &Attach) -> ComputeResult<(Vif, bool)> {
        let p = self.services.attach(s, &self.host, req)?;
        let nic = InterfaceSpec {
            tap: p.devname.clone(),
            mac: p.mac.clone(),
            mtu: u16::try_from(p.mtu).unwrap_or(1500),
        };
        let u = uuid::Uuid::parse_str(&s.id).map_err(|e| ComputeError::Internal(e.to_string()))?;
        if let Err(e) = self.compute.driver().attach_interface(u, &nic) {
            self.services.unattach(s, &p);
            return Err(ComputeError::Conflict(format!(
                "Failed to attach network adapter device to {}: {e}",
                s.id
            )));
        }
        let vif = self
            .services
            .vifs(&s.id)
            .into_iter()
            .find(|v| v.port_id == p.port_id)
            .ok_or_else(|| ComputeError::Internal(format!("port {} vanished", p.port_id)))?;
        Ok((vif, p.created))
    }

    fn detach_interface(&self, s: &Server, port_id: &str) -> ComputeResult<()> {
        let vif = self
            .services
            .vifs(&s.id)
            .into_iter()
            .find(|v| v.port_id == port_id)
            .ok_or_else(|| ComputeError::NotFound(format!("Port {port_id} could not be found.")))?;
        let nic = InterfaceSpec {
            tap: weft_hypervisor::tap_name(port_id),
            mac: vif.mac_addr.clone(),
            mtu: 1500,
        };
        let u = uuid::Uuid::parse_str(&s.id).map_err(|e| ComputeError::Internal(e.to_string()))?;
        self.compute
            .driver()
            .detach_interface(u, &nic)
            .map_err(|e| {
                ComputeError::Conflict(format!(
                    "Failed to detach network adapter device from {}: {e}",
                    s.id
                ))
            })?;
        self.services.detach(s, port_id);
        Ok(())
    }
}

fn inventory(
    a: &ComputeServeArgs,
    r: &weft_hypervisor::HostResources,
) -> BTreeMap<String, Inventory> {
    let inv = |total: u64, reserved: u64, ratio: f64| Inventory {
        reserved: reserved.min(total),
        allocation_ratio: ratio,
        max_unit: total,
        ..Inventory::with_total(total)
    };
    [
        (
            "VCPU".to_string(),
            inv(u64::from(r.vcpus), 0, a.cpu_allocation_ratio),
        ),
        (
            "MEMORY_MB".to_string(),
            inv(
                r.memory_mb,
                a.reserved_host_memory_mb,
                a.ram_allocation_ratio,
            ),
        ),
        (
            "DISK_GB".to_string(),
            inv(r.disk_gb, 0, a.disk_allocation_ratio),
        ),
    ]
    .into()
}

/// Registers this host as a compute host of `compute` (unless the driver is
/// `none`), with `--fake-hosts` more beside it for the fake driver, and
/// starts their heartbeats on `rt`.
pub fn start_in_serve(
    a: &ComputeServeArgs,
    host: &str,
    state_dir: &Path,
    compute: &Arc<Compute>,
    placement: &Arc<Placement>,
    services: HostServices,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    a.check()?;
    compute.set_weights(Weights {
        ram: a.ram_weight_multiplier,
        cpu: a.cpu_weight_multiplier,
        soft_group: a.soft_affinity_weight_multiplier,
    });
    compute
        .builds()
        .set_max_concurrent(a.max_concurrent_builds as usize);
    let instances = a
        .instances_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("instances"));
    std::fs::create_dir_all(&instances)?;
    let resources = weft_hypervisor::host_resources(&instances)?;
    let probe = weft_hypervisor::probe_accel();
    let mut hosts: Vec<(String, Arc<dyn Driver>, PathBuf, HostResources)> = Vec::new();
    let hv_type = match a.compute_driver {
        DriverKind::None => return Ok(()),
        DriverKind::Fake => {
            let r = HostResources {
                vcpus: a.fake_host_vcpus.unwrap_or(resources.vcpus),
                memory_mb: a.fake_host_memory_mb.unwrap_or(resources.memory_mb),
                ..resources
            };
            for i in 1..=a.fake_hosts {
                let (name, dir) = if i == 1 {
                    (host.to_string(), instances.clone())
                } else {
                    let name = format!("{host}-fake-{i:04}");
                    let dir = instances.join(&name);
                    (name, dir)
                };
                hosts.push((name, Arc::new(FakeDriver::new(r)), dir, r));
            }
            "fake"
        }
        DriverKind::Libvirt => {
            let cfg = LibvirtConfig {
                uri: a.libvirt_uri.clone(),
                instances_dir: instances.clone(),
                shutdown_timeout: std::time::Duration::from_secs(a.shutdown_timeout_secs),
            };
            match LibvirtDriver::connect(cfg) {
                Ok(d) => hosts.push((host.to_string(), Arc::new(d), instances.clone(), resources)),
                Err(e) => {
                    // Not a compute host until libvirtd answers: servers get
                    // "No valid host" rather than a driver that cannot run them.
                    tracing::warn!(error = %e, "compute: libvirt unavailable; this host runs no servers");
                    eprintln!(
                        "weft: compute: libvirt unavailable ({e}); this host runs no servers"
                    );
                    return Ok(());
                }
            }
            "QEMU"
        }
    };
    tracing::info!(host, accel = ?probe.accel, reason = %probe.reason, hosts = hosts.len(), "compute host");
    let mut names = Vec::new();
    for (name, driver, dir, r) in hosts {
        std::fs::create_dir_all(&dir)?;
        let local = LocalHost {
            host: name.clone(),
            compute: HostCompute::new(driver, state_dir, &dir, probe.accel),
            services: services.clone(),
        };
        let record = ComputeHost {
            name: name.clone(),
            provider: String::new(),
            availability_zone: a.availability_zone.clone(),
            enabled: true,
            disabled_reason: None,
            forced_down: false,
            driver: format!("{:?}", a.compute_driver).to_lowercase(),
            hypervisor_type: hv_type.into(),
            arch: std::env::consts::ARCH.into(),
            vcpus: u64::from(r.vcpus),
            memory_mb: r.memory_mb,
            disk_gb: r.disk_gb,
            host_ip: "127.0.0.1".into(),
            heartbeat: String::new(),
            seq: 0,
        };
        compute
            .register_host(
                placement.as_ref(),
                record,
                &inventory(a, &r),
                Arc::new(local),
            )
            .map_err(|e| anyhow::anyhow!("compute host {name}: {e}"))?;
        names.push(name);
    }
    println!(
        "weft: compute host {host} in-process ({:?}, {}){}",
        a.compute_driver,
        probe.reason,
        if names.len() > 1 {
            format!(", with {} more fake hosts", names.len() - 1)
        } else {
            String::new()
        }
    );
    let c = compute.clone();
    rt.spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            let (c, names) = (c.clone(), names.clone());
            let _ = tokio::task::spawn_blocking(move || c.heartbeat_all(&names)).await;
        }
    });
    Ok(())
}
