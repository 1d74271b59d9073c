//! Which cached decisions survive a reload: epochs of a snapshot's parts.
//!
//! A flow-cache entry holds the decision of the pipeline stages for one key, and those stages
//! read only some of the snapshot: the ingress port (classify, port security, DHCP, metadata),
//! its local VLAN (the members, their static MACs and egress edits, whether one has a
//! firewall), and what every port shares (networks, physnets, tunnel, `[switch]` settings).
//! They never read a firewall's rules: the firewall stage runs per frame, after the cache, on
//! the running snapshot's rules (see [`crate::pipeline`]).
//!
//! So a reload gives each part an epoch: the previous snapshot's when the part is unchanged,
//! a fresh one otherwise. When a worker meets a new snapshot it keeps the entries whose base,
//! ingress port and local VLAN epochs are all unchanged (and restamps them), and empties the
//! rest. A rule change, or a group's membership change, touches no epoch: no entry is lost,
//! on the ports concerned or any other. A port's own change (fixed IPs, port security, DHCP)
//! empties the entries of frames it sent; a change other ports' decisions can see (a port
//! joining or leaving a network, its MAC, whether it has a firewall at all) empties its local
//! VLAN's entries; only a change of what all ports share empties the whole cache, as the
//! global generation did for every reload before.
//!
//! OPTE bumps one epoch per port for any rule change; here rules are outside the cached
//! decision, so even that is unneeded.

use super::{Snapshot, MAX_LOCAL_VLAN};
use crate::verdict::PortNo;
use std::sync::atomic::{AtomicU64, Ordering};

/// Epochs come from one counter, so that two snapshots compiled apart never share one by
/// chance. 0 stands for "no such part".
static NEXT: AtomicU64 = AtomicU64::new(1);

fn fresh() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A snapshot's epochs.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    base: u64,
    /// By port number.
    ports: Vec<u64>,
    /// By local VLAN.
    vlans: Vec<u64>,
}

impl Epochs {
    /// The epochs of `new`, compiled after `prev` (if any).
    pub(crate) fn assign(new: &Snapshot, prev: Option<&Snapshot>) -> Epochs {
        let base = match prev {
            Some(p) if same_base(new, p) => p.epochs().base,
            _ => fresh(),
        };
        let ports = (0..new.port_slots())
            .map(|i| {
                let no = PortNo(i as u16);
                if new.port(no).is_none() {
                    return 0;
                }
                match prev {
                    Some(p) if same_port(new, p, no) => p.epochs().port(no),
                    _ => fresh(),
                }
            })
            .collect();
        let vlans = (0..=MAX_LOCAL_VLAN)
            .map(|v| {
                if new.vlan(v).is_none() {
                    return 0;
                }
                match prev {
                    Some(p) if same_vlan(new, p, v) => p.epochs().vlan(v),
                    _ => fresh(),
                }
            })
            .collect();
        Epochs { base, ports, vlans }
    }

    fn port(&self, no: PortNo) -> u64 {
        self.ports.get(usize::from(no.0)).copied().unwrap_or(0)
    }

    fn vlan(&self, v: u16) -> u64 {
        self.vlans.get(usize::from(v)).copied().unwrap_or(0)
    }
}

/// Whether a cached decision for a frame from `in_port` in local VLAN `vlan`, taken under `old`, is still what the
/// pipeline would decide under `new` (MAC learning apart: the MAC table's own epoch covers it).
pub(crate) fn still_valid(old: &Snapshot, new: &Snapshot, in_port: PortNo, vlan: u16) -> bool {
    let (o, n) = (old.epochs(), new.epochs());
    o.base == n.base && o.port(in_port) == n.port(in_port) && o.vlan(vlan) == n.vlan(vlan)
}

/// What every port's decisions read: switch settings, physnets, networks, the tunnel.
fn same_base(a: &Snapshot, b: &Snapshot) -> bool {
    let (x, y) = (a.config(), b.config());
    x.switch == y.switch
        && x.physnets == y.physnets
        && x.networks == y.networks
        && x.tunnel == y.tunnel
}

/// What a frame's own port decides with: the port itself, its port security, whether the
/// switch answers its DHCP and metadata, whether it has a firewall, its uplink segments.
fn same_port(a: &Snapshot, b: &Snapshot, no: PortNo) -> bool {
    a.port(no) == b.port(no)
        && a.security(no) == b.security(no)
        && a.dhcp(no).is_some() == b.dhcp(no).is_some()
        && a.metadata(no).is_some() == b.metadata(no).is_some()
        && a.firewall(no).is_some() == b.firewall(no).is_some()
        && a.uplink(no) == b.uplink(no)
}

/// What other ports' frames in a local VLAN decide with: its members with their egress edits,
/// their static MACs and whether each has a firewall.
fn same_vlan(a: &Snapshot, b: &Snapshot, v: u16) -> bool {
    match (a.vlan(v), b.vlan(v)) {
        (Some(x), Some(y)) => {
            x.network == y.network
                && x.uplink == y.uplink
                && x.firewalled == y.firewalled
                && x.members == y.members
                && x.members.iter().all(|m| {
                    let mac = a.port(m.port).and_then(|p| p.mac);
                    mac == b.port(m.port).and_then(|p| p.mac)
                        && mac.is_none_or(|mac| a.static_mac(v, mac) == b.static_mac(v, mac))
                        && a.firewall(m.port).is_some() == b.firewall(m.port).is_some()
                })
        }
        (None, None) => true,
        _ => false,
    }
}
