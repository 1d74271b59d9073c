//! The compute side of ctrl <-> a remote host's agent (`weft agent --compute-driver`):
//!
//! ```text
//!   agent ── PUT  /compute/agent/v1/hosts/{host}          ComputeHostRegistration ─► ctrl
//!   agent ── POST /compute/agent/v1/hosts/{host}/heartbeat ──────────────────────────► ctrl
//!   agent ── GET  /compute/agent/v1/hosts/{host}/work ◄──────────── ComputeWork ─────  ctrl
//!   agent ── POST .../servers/{id}/token   StepTokenRequest ◄── StepToken (one service)
//!            GET  /image/v2/images/{image}/file          with the image token
//!            POST /networking/v2.0/ports                 with the user's network token
//!            PUT  /networking/v2.0/ports/{port}          binding:host_id, the service's
//!   agent ── POST .../servers/{id}/spawned  SpawnReport ───────────────────────────► ctrl
//!   agent ── POST .../servers/{id}/destroyed ──────────────────────────────────────► ctrl
//! ```
//!
//! ctrl keeps the decisions (scheduling, claims, the server's state); the
//! agent does the host's steps, each with a short-lived token that ctrl's
//! compute service user mints for one service (an audience), through the
//! server's trust when the step is the user's.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A remote compute host: what it has, and how much ctrl may hand out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeHostRegistration {
    /// `QEMU`, `fake`.
    pub hypervisor_type: String,
    /// `libvirt`, `fake`.
    pub driver: String,
    /// `x86_64`...
    pub arch: String,
    /// Online CPUs.
    pub vcpus: u64,
    /// MiB.
    pub memory_mb: u64,
    /// GiB of the instances filesystem.
    pub disk_gb: u64,
    /// The host's address, as os-hypervisors shows it.
    pub host_ip: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// VCPU overcommit in placement.
    pub cpu_allocation_ratio: f64,
    /// MEMORY_MB overcommit.
    pub ram_allocation_ratio: f64,
    /// DISK_GB overcommit.
    pub disk_allocation_ratio: f64,
    /// MiB kept for the host itself.
    pub reserved_host_memory_mb: u64,
}

/// One NIC a build asks for, resolved by ctrl (the network `auto` picks,
/// security group names as ids of the server's project).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicOrder {
    /// A port to take, or
    pub port_id: Option<String>,
    /// a network to make one on,
    pub network_id: Option<String>,
    /// with this address.
    pub fixed_ip: Option<String>,
    /// Security group ids of a port made here (None: the project's default).
    pub security_groups: Option<Vec<String>>,
}

/// A server ctrl placed on the host: what the host runs it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOrder {
    /// The server's id.
    pub server_id: String,
    /// Its hostname (its ports are named after it).
    pub hostname: String,
    /// Its project (the ports it makes are the project's).
    pub project_id: String,
    /// The image to boot.
    pub image_id: String,
    /// vCPUs.
    pub vcpus: u32,
    /// MiB.
    pub memory_mb: u64,
    /// Root disk GiB.
    pub root_gb: u64,
    /// Ephemeral GiB.
    pub ephemeral_gb: u64,
    /// Swap MiB.
    pub swap_mb: u64,
    /// NICs in guest order.
    pub nics: Vec<NicOrder>,
    /// The domain's metadata.
    pub metadata: BTreeMap<String, String>,
}

/// A deleted server of the host, to tear down: its domain and disks here;
/// ctrl releases its ports and allocations once the agent says it is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOrder {
    /// The server's id.
    pub server_id: String,
}

/// What the host has to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeWork {
    /// Servers to build.
    pub builds: Vec<BuildOrder>,
    /// Servers to tear down.
    pub deletes: Vec<DeleteOrder>,
    /// Actions on running servers (absent from older ctrls).
    #[serde(default)]
    pub actions: Vec<crate::compute_actions::ActionOrder>,
    /// Console output requests.
    #[serde(default)]
    pub consoles: Vec<crate::compute_actions::ConsoleOrder>,
    /// os-interface attaches and detaches.
    #[serde(default)]
    pub interfaces: Vec<crate::compute_actions::InterfaceOrder>,
}

/// A step token for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTokenRequest {
    /// `image` or `network` (placement stays ctrl's).
    pub audience: String,
    /// True: for the server's user, through its trust; false: the compute
    /// service's own (port binding, teardown).
    pub for_user: bool,
}

/// The token, bound to the audience asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepToken {
    /// `X-Auth-Token` for the one service.
    pub token: String,
}

/// How a build ended on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnReport {
    /// None: the guest runs; else why the build failed.
    pub fault: Option<String>,
    /// The ports made for the server (deleted with it).
    pub created_ports: Vec<String>,
}
