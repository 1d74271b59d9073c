//! The compiled pipeline: an immutable snapshot of ports, local VLANs, uplink segment maps,
//! flood sets and per-port security, built from a [`SwitchConfig`]. Port numbers and local
//! VLANs stay stable across recompiles for ports/networks whose names are unchanged.
//!
//! ```text
//!  SwitchConfig ─► compile (port numbers, local VLANs, flood sets, port security)
//!                    └─ firewall: security groups compiled per port, reused across reloads
//!                  ─► Snapshot (immutable; swapped whole) ─► epochs: what a reload changed
//! ```

use crate::config::{NetworkType, PortKind, SwitchConfig};
use crate::dhcp::PortDhcp;
use crate::hash::FxBuild;
use crate::mac::MacAddr;
use crate::metadata::PortMetadata;
use crate::secgroup::{CompiledFirewall, Members};
use crate::verdict::{EgressEdit, PortNo};
use epochs::Epochs;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

mod compile;
pub(crate) mod epochs;
mod firewall;
#[cfg(test)]
mod tests;

pub use firewall::reload_conntrack;

/// Local VLAN ids are allocated from 1..=MAX_LOCAL_VLAN (4095 is reserved).
pub const MAX_LOCAL_VLAN: u16 = 4094;

/// What a port is to the switch.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PortRole {
    /// A VM-side port (tap or system): access port in its network's local VLAN, never tagged.
    Vm,
    /// A physnet's NIC: trunk carrying the physnet's flat/vlan segments. Also the VXLAN
    /// endpoint (kind `Vxlan`): a trunk carrying each vxlan network tagged with its local VLAN,
    /// which the tunnel shell maps to and from VNIs (like br-int's patch to br-tun).
    Uplink,
}

/// A port as the I/O shell needs to know it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PortInfo {
    /// Stable port number.
    pub no: PortNo,
    /// Interface name (for uplinks: the physnet's interface).
    pub name: String,
    /// How to attach it: Tap (create a tap) or System (existing netdev; uplinks are System).
    pub kind: PortKind,
    /// VM port or uplink.
    pub role: PortRole,
    /// VM ports: network name. Uplinks: None.
    pub network: Option<String>,
    /// Uplinks: physnet name. VM ports: None.
    pub physnet: Option<String>,
    /// VM ports: the network's local VLAN. Uplinks: 0.
    pub local_vlan: u16,
    /// VM ports: configured MAC.
    pub mac: Option<MacAddr>,
    /// Anti-spoofing on (VM ports only; always false for uplinks).
    pub port_security: bool,
    /// The VXLAN endpoint's local address and UDP port (kind `Vxlan` only).
    pub tunnel_endpoint: Option<SocketAddr>,
    /// MTU for a tap the switch creates.
    pub mtu: Option<u32>,
    /// The pcap file the port's frames are written to, if any.
    pub capture: Option<std::path::PathBuf>,
}

/// A network with its allocated local VLAN.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NetworkInfo {
    /// Name.
    pub name: String,
    /// flat / vlan / local.
    pub network_type: NetworkType,
    /// Physnet (flat/vlan).
    pub physnet: Option<String>,
    /// Host-local VLAN id (1..=4094).
    pub local_vlan: u16,
    /// The uplink port carrying it, if any.
    pub uplink: Option<PortNo>,
}

/// What port security allows a port to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PortSecurity {
    pub macs: Vec<MacAddr>,
    pub v4: Vec<(MacAddr, Ipv4Net)>,
    pub v6: Vec<(MacAddr, Ipv6Net)>,
}

impl PortSecurity {
    pub fn mac_ok(&self, m: MacAddr) -> bool {
        self.macs.contains(&m)
    }
    pub fn v4_ok(&self, m: MacAddr, ip: Ipv4Addr) -> bool {
        self.v4.iter().any(|(pm, n)| *pm == m && n.contains(&ip))
    }
    pub fn v6_ok(&self, m: MacAddr, ip: Ipv6Addr) -> bool {
        self.v6.iter().any(|(pm, n)| *pm == m && n.contains(&ip))
    }
}

/// Flood-set member of a local VLAN with its egress edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub port: PortNo,
    /// Edit when the frame entered untagged (from a VM port or a flat uplink).
    pub edit_untagged: EgressEdit,
    /// Edit when the frame entered tagged (from a VLAN uplink).
    pub edit_tagged: EgressEdit,
}

impl Member {
    #[inline]
    pub fn edit(&self, tagged_ingress: bool) -> EgressEdit {
        if tagged_ingress {
            self.edit_tagged
        } else {
            self.edit_untagged
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct VlanEntry {
    pub network: usize,
    /// Sorted by port.
    pub members: Vec<Member>,
    /// Index in `members` of the network's uplink (or tunnel) port, if it has one: the most
    /// looked-up member (every frame to a remote MAC), found without a search.
    pub uplink: Option<usize>,
    /// Whether a member has a firewall (a flood then goes through the firewall stage).
    pub firewalled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UplinkRt {
    /// Global VID -> local VLAN.
    pub segments: HashMap<u16, u16>,
    /// Local VLAN of the physnet's flat network.
    pub flat_vlan: Option<u16>,
}

/// An immutable compiled pipeline. Swap it into a [`crate::Datapath`] atomically.
#[derive(Debug)]
pub struct Snapshot {
    generation: u64,
    config: SwitchConfig,
    ports: Vec<Option<PortInfo>>,
    security: Vec<Option<PortSecurity>>,
    /// What the switch's DHCP server hands each VM port on an enable_dhcp subnet.
    dhcp: Vec<Option<PortDhcp>>,
    /// What the metadata service at 169.254.169.254 serves each VM port with a fixed IPv4.
    metadata: Vec<Option<PortMetadata>>,
    /// Per port number: its security groups, compiled (None: no firewall).
    firewalls: Vec<Option<Arc<CompiledFirewall>>>,
    /// Security group id -> its members, compiled once and shared by the rules naming it.
    groups: HashMap<String, Arc<Members>>,
    uplinks: Vec<Option<UplinkRt>>,
    by_name: HashMap<String, PortNo>,
    networks: Vec<NetworkInfo>,
    vlans: Vec<Option<VlanEntry>>,
    static_macs: HashMap<u64, PortNo, FxBuild>,
    tunnel: Option<TunnelInfo>,
    /// Which parts changed since the previous snapshot (which flow-cache entries survive).
    epochs: Epochs,
}

/// The VXLAN endpoint as compiled: its port, address, peers and VNI <-> local VLAN maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelInfo {
    /// The endpoint's switch port (role Uplink, kind Vxlan).
    pub port: PortNo,
    /// Local tunnel IP.
    pub local_ip: IpAddr,
    /// UDP port.
    pub udp_port: u16,
    /// Remote VTEPs.
    pub peers: Vec<IpAddr>,
    vni_to_vlan: HashMap<u32, u16>,
    vlan_to_vni: HashMap<u16, u32>,
}

impl TunnelInfo {
    /// The local VLAN of a VNI with a network on this host.
    #[inline]
    pub fn vlan_of_vni(&self, vni: u32) -> Option<u16> {
        self.vni_to_vlan.get(&vni).copied()
    }

    /// The VNI of a local VLAN (None: not a vxlan network).
    #[inline]
    pub fn vni_of_vlan(&self, vlan: u16) -> Option<u32> {
        self.vlan_to_vni.get(&vlan).copied()
    }

    /// Whether `ip` is a configured peer.
    #[inline]
    pub fn is_peer(&self, ip: IpAddr) -> bool {
        self.peers.contains(&ip)
    }
}

/// Ports to open, close or reopen when moving from one snapshot to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// New ports (open them).
    pub added: Vec<PortInfo>,
    /// Ports gone (close them).
    pub removed: Vec<PortInfo>,
    /// Same number and name but another kind (close and reopen).
    pub reattached: Vec<PortInfo>,
}

impl Snapshot {
    /// Which parts changed since the previous snapshot (see [`epochs`]).
    pub(crate) fn epochs(&self) -> &Epochs {
        &self.epochs
    }

    /// Length of the tables indexed by port number.
    pub(crate) fn port_slots(&self) -> usize {
        self.ports.len()
    }

    /// Unique id of this snapshot (flow cache entries of other generations are stale).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The config it was compiled from.
    pub fn config(&self) -> &SwitchConfig {
        &self.config
    }

    /// MAC aging time in nanoseconds.
    pub fn mac_aging_ns(&self) -> u64 {
        self.config
            .switch
            .mac_aging_secs
            .saturating_mul(1_000_000_000)
    }

    /// All ports (uplinks and VM ports), by port number.
    pub fn ports(&self) -> impl Iterator<Item = &PortInfo> {
        self.ports.iter().flatten()
    }

    /// A port by number.
    #[inline]
    pub fn port(&self, no: PortNo) -> Option<&PortInfo> {
        self.ports.get(usize::from(no.0)).and_then(|p| p.as_ref())
    }

    /// A port by interface name.
    pub fn port_by_name(&self, name: &str) -> Option<&PortInfo> {
        self.by_name.get(name).and_then(|&no| self.port(no))
    }

    /// The VXLAN endpoint, when the config has a `[tunnel]`.
    pub fn tunnel(&self) -> Option<&TunnelInfo> {
        self.tunnel.as_ref()
    }

    /// Networks with their local VLANs.
    pub fn networks(&self) -> &[NetworkInfo] {
        &self.networks
    }

    /// A network by name.
    pub fn network(&self, name: &str) -> Option<&NetworkInfo> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The network using a local VLAN.
    pub fn network_by_local_vlan(&self, vlan: u16) -> Option<&NetworkInfo> {
        self.vlan(vlan).map(|v| &self.networks[v.network])
    }

    /// Ports that must be opened/closed/reopened to go from `old` to `self`.
    pub fn diff(&self, old: &Snapshot) -> SnapshotDiff {
        let mut d = SnapshotDiff::default();
        for p in self.ports() {
            match old.port_by_name(&p.name) {
                None => d.added.push(p.clone()),
                Some(o) if o.kind != p.kind || o.role != p.role => d.reattached.push(p.clone()),
                // Same endpoint name, another local address: the socket must be rebound.
                Some(o) if o.tunnel_endpoint != p.tunnel_endpoint => d.reattached.push(p.clone()),
                Some(_) => {}
            }
        }
        for o in old.ports() {
            if self.port_by_name(&o.name).is_none() {
                d.removed.push(o.clone());
            }
        }
        d
    }

    /// A port's firewall (None: it has none).
    #[inline]
    pub fn firewall(&self, no: PortNo) -> Option<&Arc<CompiledFirewall>> {
        self.firewalls
            .get(usize::from(no.0))
            .and_then(|s| s.as_ref())
    }

    // ---- crate-internal accessors for the pipeline ----

    /// What the switch's DHCP server hands VM port `no`; None: it answers no DHCP there (no
    /// fixed IPv4 address on an enable_dhcp subnet of its network, or not a VM port).
    #[inline]
    pub fn dhcp(&self, no: PortNo) -> Option<&PortDhcp> {
        self.dhcp.get(usize::from(no.0)).and_then(|s| s.as_ref())
    }

    /// What the metadata service serves VM port `no`; None: the port's frames to
    /// 169.254.169.254 are not answered (no fixed IPv4 address, or not a VM port).
    #[inline]
    pub fn metadata(&self, no: PortNo) -> Option<&PortMetadata> {
        self.metadata
            .get(usize::from(no.0))
            .and_then(|s| s.as_ref())
    }

    #[inline]
    pub(crate) fn security(&self, no: PortNo) -> Option<&PortSecurity> {
        self.security
            .get(usize::from(no.0))
            .and_then(|s| s.as_ref())
    }

    #[inline]
    pub(crate) fn uplink(&self, no: PortNo) -> Option<&UplinkRt> {
        self.uplinks.get(usize::from(no.0)).and_then(|s| s.as_ref())
    }

    #[inline]
    pub(crate) fn vlan(&self, vlan: u16) -> Option<&VlanEntry> {
        self.vlans.get(usize::from(vlan)).and_then(|v| v.as_ref())
    }

    #[inline]
    pub(crate) fn static_mac(&self, vlan: u16, mac: MacAddr) -> Option<PortNo> {
        if self.static_macs.is_empty() {
            return None;
        }
        self.static_macs.get(&vlan_mac_key(vlan, mac)).copied()
    }

    pub(crate) fn static_macs(&self) -> impl Iterator<Item = (u16, MacAddr, PortNo)> + '_ {
        self.static_macs.iter().map(|(&k, &p)| {
            let b = k.to_be_bytes();
            (
                (k >> 48) as u16,
                MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]),
                p,
            )
        })
    }

    /// The member entry of `port` in `vlan`'s flood set.
    #[inline]
    pub(crate) fn member(&self, vlan: u16, port: PortNo) -> Option<&Member> {
        let v = self.vlan(vlan)?;
        if let Some(m) = v.uplink.and_then(|i| v.members.get(i)) {
            if m.port == port {
                return Some(m);
            }
        }
        v.members
            .binary_search_by_key(&port, |m| m.port)
            .ok()
            .map(|i| &v.members[i])
    }
}

#[inline]
fn vlan_mac_key(vlan: u16, mac: MacAddr) -> u64 {
    (u64::from(vlan) << 48) | mac.to_u64()
}
