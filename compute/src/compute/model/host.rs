//! Compute hosts as the API knows them: one record per host whose agent
//! registered (os-services, os-hypervisors, availability zones), with its
//! resource provider in placement and its last heartbeat.

use serde::{Deserialize, Serialize};

/// A compute host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeHost {
    /// Host name (the agent's `--host`), unique.
    pub name: String,
    /// Its resource provider's uuid in placement.
    pub provider: String,
    /// Availability zone (Nova's default `nova`).
    pub availability_zone: String,
    /// Operators disable a host to keep new servers off it.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Marked down by an operator, whatever its heartbeats say.
    pub forced_down: bool,
    /// The driver it runs (`libvirt`, `fake`).
    pub driver: String,
    /// `QEMU` (TCG or KVM under libvirt), `fake`.
    pub hypervisor_type: String,
    /// The CPU architecture (`x86_64`).
    pub arch: String,
    /// What it offers.
    pub vcpus: u64,
    /// MiB.
    pub memory_mb: u64,
    /// GiB.
    pub disk_gb: u64,
    /// The host's IP, shown by os-hypervisors.
    pub host_ip: String,
    /// Last heartbeat, RFC 3339.
    pub heartbeat: String,
    /// Sequence number: Nova's integer service/hypervisor id before 2.53.
    pub seq: u64,
}

/// Nova's `service_down_time`: a host silent this long is down.
pub const DOWN_AFTER_SECS: i64 = 60;

impl ComputeHost {
    /// Up: heartbeats within [`DOWN_AFTER_SECS`] of `now` and not forced down.
    pub fn is_up(&self, now: &str) -> bool {
        let parse = |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok();
        match (parse(&self.heartbeat), parse(now)) {
            (Some(h), Some(n)) => !self.forced_down && (n - h).num_seconds() <= DOWN_AFTER_SECS,
            _ => false,
        }
    }
}
