//! The compiled pipeline: an immutable snapshot of ports, local VLANs, uplink segment maps,
//! flood sets and per-port security, built from a [`SwitchConfig`]. Port numbers and local
//! VLANs stay stable across recompiles for ports/networks whose names are unchanged.

use crate::config::{ConfigError, NetworkType, PortKind, SwitchConfig};
use crate::dhcp::PortDhcp;
use crate::hash::FxBuild;
use crate::mac::MacAddr;
use crate::metadata::PortMetadata;
use crate::secgroup::{CompiledFirewall, Members};
use crate::verdict::{EgressEdit, PortNo, MAX_PORTS};
use epochs::Epochs;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) mod epochs;

/// Local VLAN ids are allocated from 1..=MAX_LOCAL_VLAN (4095 is reserved).
pub const MAX_LOCAL_VLAN: u16 = 4094;

static GENERATION: AtomicU64 = AtomicU64::new(1);

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

fn compile_err(message: String) -> ConfigError {
    ConfigError {
        source_name: "config".into(),
        line: None,
        path: String::new(),
        message,
    }
}

/// The tables indexed by port number, filled in while compiling: uplinks first, then VM ports.
struct PortTables {
    ports: Vec<Option<PortInfo>>,
    security: Vec<Option<PortSecurity>>,
    dhcp: Vec<Option<PortDhcp>>,
    metadata: Vec<Option<PortMetadata>>,
    firewalls: Vec<Option<Arc<CompiledFirewall>>>,
    uplinks: Vec<Option<UplinkRt>>,
    by_name: HashMap<String, PortNo>,
    static_macs: HashMap<u64, PortNo, FxBuild>,
}

/// The networks compiled: their infos, the flood set of each local VLAN, and each name's index.
struct CompiledNetworks<'c> {
    networks: Vec<NetworkInfo>,
    vlans: Vec<Option<VlanEntry>>,
    index: HashMap<&'c str, usize>,
}

impl PortTables {
    fn new(len: usize) -> PortTables {
        PortTables {
            ports: vec![None; len],
            security: vec![None; len],
            dhcp: vec![None; len],
            metadata: vec![None; len],
            firewalls: vec![None; len],
            uplinks: vec![None; len],
            by_name: HashMap::new(),
            static_macs: HashMap::default(),
        }
    }

    /// One uplink per physnet (its NIC); returns the port of each physnet by name.
    fn add_physnet_uplinks<'c>(
        &mut self,
        cfg: &'c SwitchConfig,
        no_of: &HashMap<&str, PortNo>,
    ) -> HashMap<&'c str, PortNo> {
        let mut uplink_of_physnet = HashMap::new();
        for p in &cfg.physnets {
            let no = no_of[p.interface.as_str()];
            uplink_of_physnet.insert(p.name.as_str(), no);
            self.by_name.insert(p.interface.clone(), no);
            let mut info = uplink_port(no, &p.interface, PortKind::System);
            info.physnet = Some(p.name.clone());
            self.ports[usize::from(no.0)] = Some(info);
            self.uplinks[usize::from(no.0)] = Some(UplinkRt::default());
        }
        uplink_of_physnet
    }

    /// The VXLAN endpoint's port, when the config has a `[tunnel]`; its VNI maps are filled
    /// in with the networks.
    fn add_tunnel(
        &mut self,
        cfg: &SwitchConfig,
        name: Option<&str>,
        no_of: &HashMap<&str, PortNo>,
    ) -> Option<TunnelInfo> {
        let (t, name) = (cfg.tunnel.as_ref()?, name?);
        let no = no_of[name];
        self.by_name.insert(name.to_string(), no);
        let mut info = uplink_port(no, name, PortKind::Vxlan);
        info.tunnel_endpoint = Some(SocketAddr::new(t.local_ip, t.udp_port));
        self.ports[usize::from(no.0)] = Some(info);
        self.uplinks[usize::from(no.0)] = Some(UplinkRt::default());
        Some(TunnelInfo {
            port: no,
            local_ip: t.local_ip,
            udp_port: t.udp_port,
            peers: t.peers.clone(),
            vni_to_vlan: HashMap::new(),
            vlan_to_vni: HashMap::new(),
        })
    }

    /// Each network with its local VLAN, and its uplink (or tunnel) as the first member of
    /// the VLAN's flood set; records the segments in the uplinks' maps.
    fn add_networks<'c>(
        &mut self,
        cfg: &'c SwitchConfig,
        vlan_of: &HashMap<&str, u16>,
        uplink_of_physnet: &HashMap<&str, PortNo>,
        mut tunnel: Option<&mut TunnelInfo>,
    ) -> CompiledNetworks<'c> {
        let mut out = CompiledNetworks {
            networks: Vec::new(),
            vlans: vec![None; usize::from(MAX_LOCAL_VLAN) + 1],
            index: HashMap::new(),
        };
        for n in &cfg.networks {
            let local_vlan = vlan_of[n.name.as_str()];
            let uplink = match n.network_type {
                NetworkType::Vxlan { .. } => tunnel.as_ref().map(|t| t.port),
                _ => n
                    .physnet
                    .as_deref()
                    .and_then(|p| uplink_of_physnet.get(p).copied()),
            };
            let idx = out.networks.len();
            out.index.insert(&n.name, idx);
            let mut members = Vec::new();
            if let Some(up) = uplink {
                let rt = self.uplinks[usize::from(up.0)].get_or_insert_with(UplinkRt::default);
                let (edit_untagged, edit_tagged) =
                    uplink_edits(n.network_type, local_vlan, rt, tunnel.as_deref_mut());
                members.push(Member {
                    port: up,
                    edit_untagged,
                    edit_tagged,
                });
            }
            out.vlans[usize::from(local_vlan)] = Some(VlanEntry {
                network: idx,
                members,
                uplink: None,
                firewalled: false,
            });
            out.networks.push(NetworkInfo {
                name: n.name.clone(),
                network_type: n.network_type,
                physnet: n.physnet.clone(),
                local_vlan,
                uplink,
            });
        }
        out
    }

    /// A VM port: an access member of its network's VLAN, with its static MAC, port security,
    /// firewall, DHCP and metadata.
    fn add_vm_port(
        &mut self,
        cfg: &SwitchConfig,
        p: &crate::config::PortConfig,
        no: PortNo,
        nets: &mut CompiledNetworks,
        groups: &HashMap<String, Arc<Members>>,
        prev: Option<&Snapshot>,
    ) {
        let local_vlan = nets.networks[nets.index[p.network.as_str()]].local_vlan;
        self.by_name.insert(p.name.clone(), no);
        self.ports[usize::from(no.0)] = Some(PortInfo {
            no,
            name: p.name.clone(),
            kind: p.kind,
            role: PortRole::Vm,
            network: Some(p.network.clone()),
            physnet: None,
            local_vlan,
            mac: p.mac,
            port_security: p.port_security,
            tunnel_endpoint: None,
            mtu: p.mtu,
            capture: p.capture.clone(),
        });
        let mut vlan = nets.vlans[usize::from(local_vlan)].as_mut();
        if let Some(v) = vlan.as_deref_mut() {
            v.members.push(Member {
                port: no,
                edit_untagged: EgressEdit::Keep,
                edit_tagged: EgressEdit::StripTag,
            });
        }
        if let Some(mac) = p.mac {
            // Configured MACs are static entries: they never age and never move.
            self.static_macs
                .entry(vlan_mac_key(local_vlan, mac))
                .or_insert(no);
        }
        if p.port_security {
            self.security[usize::from(no.0)] = Some(build_security(p));
            if let Some(ids) = &p.security_groups {
                let fw = firewall(cfg, groups, ids, no, &p.name, local_vlan, prev);
                self.firewalls[usize::from(no.0)] = Some(fw);
                if let Some(v) = vlan {
                    v.firewalled = true;
                }
            }
        }
        let dhcp = crate::dhcp::for_port(cfg, p);
        self.metadata[usize::from(no.0)] =
            PortMetadata::for_port(p, cfg.guest_mtu(p), dhcp.as_ref());
        self.dhcp[usize::from(no.0)] = dhcp;
    }
}

impl CompiledNetworks<'_> {
    /// Flood sets sorted by port (members are looked up by binary search), each with the
    /// index of its network's uplink member.
    fn finish_vlans(&mut self) {
        for v in self.vlans.iter_mut().flatten() {
            v.members.sort_by_key(|m| m.port);
            let up = self.networks[v.network].uplink;
            v.uplink = v.members.iter().position(|m| Some(m.port) == up);
        }
    }
}

impl Snapshot {
    /// Compiles a config. With `prev`, port numbers and local VLANs of unchanged names are kept.
    pub fn compile(cfg: &SwitchConfig, prev: Option<&Snapshot>) -> Result<Snapshot, ConfigError> {
        let vlan_of = local_vlans(cfg, prev)?;

        // Port numbers: uplinks (one per physnet) then VM ports; keep previous numbers by name.
        let tunnel_name = cfg.tunnel.as_ref().map(|t| t.port_name());
        let mut names: Vec<&str> = cfg.physnets.iter().map(|p| p.interface.as_str()).collect();
        names.extend(tunnel_name.as_deref());
        names.extend(cfg.ports.iter().map(|p| p.name.as_str()));
        let (no_of, table_len) = port_numbers(&names, prev)?;

        let mut t = PortTables::new(table_len);
        let uplink_of_physnet = t.add_physnet_uplinks(cfg, &no_of);
        let mut tunnel = t.add_tunnel(cfg, tunnel_name.as_deref(), &no_of);
        let mut nets = t.add_networks(cfg, &vlan_of, &uplink_of_physnet, tunnel.as_mut());
        let groups = group_members(cfg, prev);
        for p in &cfg.ports {
            t.add_vm_port(cfg, p, no_of[p.name.as_str()], &mut nets, &groups, prev);
        }
        nets.finish_vlans();

        let mut snap = Snapshot {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            config: cfg.clone(),
            ports: t.ports,
            security: t.security,
            dhcp: t.dhcp,
            metadata: t.metadata,
            firewalls: t.firewalls,
            groups,
            uplinks: t.uplinks,
            by_name: t.by_name,
            networks: nets.networks,
            vlans: nets.vlans,
            static_macs: t.static_macs,
            tunnel,
            epochs: Epochs::default(),
        };
        snap.epochs = Epochs::assign(&snap, prev);
        Ok(snap)
    }

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

/// An uplink port (a physnet's NIC, or the tunnel endpoint): a trunk without port security.
fn uplink_port(no: PortNo, name: &str, kind: PortKind) -> PortInfo {
    PortInfo {
        no,
        name: name.to_string(),
        kind,
        role: PortRole::Uplink,
        network: None,
        physnet: None,
        local_vlan: 0,
        mac: None,
        port_security: false,
        tunnel_endpoint: None,
        mtu: None,
        capture: None,
    }
}

/// Local VLANs: previous allocations kept by network name, then the lowest free ids.
fn local_vlans<'c>(
    cfg: &'c SwitchConfig,
    prev: Option<&Snapshot>,
) -> Result<HashMap<&'c str, u16>, ConfigError> {
    let mut used_vlans = BTreeSet::new();
    let mut vlan_of: HashMap<&str, u16> = HashMap::new();
    if let Some(p) = prev {
        for n in &cfg.networks {
            if let Some(old) = p.network(&n.name) {
                vlan_of.insert(&n.name, old.local_vlan);
                used_vlans.insert(old.local_vlan);
            }
        }
    }
    let mut next_vlan = 1u16;
    for n in &cfg.networks {
        if vlan_of.contains_key(n.name.as_str()) {
            continue;
        }
        while used_vlans.contains(&next_vlan) {
            next_vlan += 1;
        }
        if next_vlan > MAX_LOCAL_VLAN {
            return Err(compile_err(format!(
                "too many networks: no local VLAN left for network {:?}",
                n.name
            )));
        }
        vlan_of.insert(&n.name, next_vlan);
        used_vlans.insert(next_vlan);
    }
    Ok(vlan_of)
}

/// Port numbers for `names`: previous numbers kept by name, then the lowest free ones. Also
/// returns the length of a table indexed by port number.
fn port_numbers<'n>(
    names: &[&'n str],
    prev: Option<&Snapshot>,
) -> Result<(HashMap<&'n str, PortNo>, usize), ConfigError> {
    let mut used_ports = BTreeSet::new();
    let mut no_of: HashMap<&str, PortNo> = HashMap::new();
    if let Some(p) = prev {
        for n in names {
            if let Some(&no) = p.by_name.get(*n) {
                no_of.insert(n, no);
                used_ports.insert(no.0);
            }
        }
    }
    let mut next_port = 1u16;
    for n in names {
        if no_of.contains_key(n) {
            continue;
        }
        while used_ports.contains(&next_port) {
            next_port += 1;
        }
        if usize::from(next_port) >= MAX_PORTS {
            return Err(compile_err(format!(
                "too many ports: no port number left for {n:?} (limit {})",
                MAX_PORTS - 1
            )));
        }
        no_of.insert(n, PortNo(next_port));
        used_ports.insert(next_port);
    }
    let table_len = used_ports
        .iter()
        .next_back()
        .map(|&m| usize::from(m) + 1)
        .unwrap_or(1);
    Ok((no_of, table_len))
}

/// The egress edits of a network's uplink member (frame entered untagged, tagged), recording
/// the segment in the uplink's map and, for vxlan, the VNI in the tunnel's.
fn uplink_edits(
    network_type: NetworkType,
    local_vlan: u16,
    rt: &mut UplinkRt,
    tunnel: Option<&mut TunnelInfo>,
) -> (EgressEdit, EgressEdit) {
    match network_type {
        NetworkType::Vlan { segmentation_id } => {
            rt.segments.insert(segmentation_id, local_vlan);
            (
                EgressEdit::PushTag(segmentation_id),
                EgressEdit::RewriteVid(segmentation_id),
            )
        }
        NetworkType::Flat => {
            rt.flat_vlan = Some(local_vlan);
            (EgressEdit::Keep, EgressEdit::StripTag)
        }
        NetworkType::Vxlan { segmentation_id } => {
            // The tunnel trunk carries the local VLAN itself; the shell maps it to
            // the VNI. Config validation guarantees a [tunnel] for vxlan networks.
            rt.segments.insert(local_vlan, local_vlan);
            if let Some(t) = tunnel {
                t.vni_to_vlan.insert(segmentation_id, local_vlan);
                t.vlan_to_vni.insert(local_vlan, segmentation_id);
            }
            (
                EgressEdit::PushTag(local_vlan),
                EgressEdit::RewriteVid(local_vlan),
            )
        }
        NetworkType::Local => unreachable_local(),
    }
}

fn unreachable_local() -> (EgressEdit, EgressEdit) {
    // Config validation guarantees local networks have no physnet; be safe anyway:
    // a local network never gets an uplink member (never leaves the host).
    (EgressEdit::Keep, EgressEdit::Keep)
}

fn build_security(p: &crate::config::PortConfig) -> PortSecurity {
    let mut s = PortSecurity::default();
    let Some(mac) = p.mac else {
        return s;
    };
    s.macs.push(mac);
    for ip in &p.fixed_ips {
        match IpNet::from(*ip) {
            IpNet::V4(n) => s.v4.push((mac, n)),
            IpNet::V6(n) => s.v6.push((mac, n)),
        }
    }
    for pair in &p.allowed_address_pairs {
        let m = pair.mac.unwrap_or(mac);
        if !s.macs.contains(&m) {
            s.macs.push(m);
        }
        match pair.ip {
            IpNet::V4(n) => s.v4.push((m, n)),
            IpNet::V6(n) => s.v6.push((m, n)),
        }
    }
    // Every MAC the port may use may also use its EUI-64 link-local address (SLAAC/ND).
    for m in s.macs.clone() {
        if let Ok(n) = Ipv6Net::new(m.ipv6_link_local(), 128) {
            s.v6.push((m, n));
        }
    }
    s
}

/// A port's compiled firewall: the previous snapshot's (same port, name, local VLAN and config)
/// when the reload left it alone, so that its hit counters carry on and the datapath can tell
/// by pointer which ports' firewalls changed.
fn firewall(
    cfg: &SwitchConfig,
    members: &HashMap<String, Arc<Members>>,
    ids: &[String],
    no: PortNo,
    name: &str,
    vlan: u16,
    prev: Option<&Snapshot>,
) -> Arc<CompiledFirewall> {
    use crate::config::RuleRemote;
    use crate::secgroup::{Remote, Rule};
    let groups: Vec<_> = ids
        .iter()
        .filter_map(|id| cfg.security_groups.iter().find(|g| g.id == *id))
        .collect();
    // Validation refuses a port mixing stateful and stateless groups.
    let stateful = groups.first().is_none_or(|g| g.stateful);
    let rules: Vec<Rule> = groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .map(|r| Rule {
            id: r.id.clone(),
            direction: r.direction,
            family: r.family,
            protocol: r.protocol,
            port_min: r.port_min,
            port_max: r.port_max,
            remote: match &r.remote {
                RuleRemote::Any => Remote::Any,
                RuleRemote::Prefix(n) => Remote::Prefix(*n),
                RuleRemote::Group(id) => Remote::Group {
                    id: id.clone(),
                    members: members.get(id).cloned().unwrap_or_default(),
                },
            },
        })
        .collect();
    // Members are shared Arcs reused across snapshots, so this compares pointers, not lists.
    prev.filter(|s| {
        s.port(no)
            .is_some_and(|p| p.name == name && p.local_vlan == vlan)
    })
    .and_then(|s| s.firewall(no))
    .filter(|c| c.fw.stateful == stateful && c.source == rules)
    .cloned()
    .unwrap_or_else(|| Arc::new(CompiledFirewall::new(stateful, rules)))
}

/// Every group's members, compiled; the previous snapshot's when its list is unchanged.
fn group_members(cfg: &SwitchConfig, prev: Option<&Snapshot>) -> HashMap<String, Arc<Members>> {
    cfg.security_groups
        .iter()
        .map(|g| {
            let m = prev
                .and_then(|s| s.groups.get(&g.id))
                .filter(|m| m.nets() == g.members.as_slice())
                .cloned()
                .unwrap_or_else(|| Arc::new(Members::new(g.members.clone())));
            (g.id.clone(), m)
        })
        .collect()
}

/// After a snapshot swap: the table takes the new bound, and each port whose firewall changed
/// (other rules, removed, or the port gone) has its connections re-checked against its new
/// rules, or dropped when it has none. Ports whose firewall is the same compiled one (the
/// snapshot reuses it when their config did not change) are not touched.
pub fn reload_conntrack(ct: &mut crate::secgroup::ConnTable, old: &Snapshot, new: &Snapshot) {
    ct.set_capacity(new.config().switch.conntrack_size);
    for p in old.ports() {
        let Some(before) = old.firewall(p.no) else {
            continue;
        };
        match new.firewall(p.no) {
            Some(after) if std::sync::Arc::ptr_eq(before, after) => {}
            Some(after) => {
                crate::secgroup::recheck(ct, p.no, &after.fw);
            }
            None => {
                ct.retain(|c| c.key.port != p.no);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::build::FrameBuilder;
    use crate::{Datapath, EgressEdit, Output, SwitchConfig, Verdict};
    use std::sync::Arc;

    const CFG: &str = r#"
[tunnel]
local_ip = "192.0.2.1"
remote_ips = ["192.0.2.2"]

[[network]]
name = "other"
type = "local"

[[network]]
name = "vx"
type = "vxlan"
segmentation_id = 1001

[[port]]
name = "tap1"
network = "vx"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1"]
"#;

    #[test]
    fn vxlan_network_is_a_trunk_member_tagged_with_its_local_vlan() {
        let cfg = SwitchConfig::from_toml(CFG, "t.toml").unwrap();
        let snap = super::Snapshot::compile(&cfg, None).unwrap();
        let tn = snap.tunnel().unwrap().clone();
        let tport = snap.port_by_name("vxlan-4789").unwrap().clone();
        assert_eq!(tport.no, tn.port);
        assert_eq!(tport.kind, crate::PortKind::Vxlan);
        assert_eq!(
            tport.tunnel_endpoint,
            Some("192.0.2.1:4789".parse().unwrap())
        );
        let vlan = snap.network("vx").unwrap().local_vlan;
        assert_eq!(tn.vlan_of_vni(1001), Some(vlan));
        assert_eq!(tn.vni_of_vlan(vlan), Some(1001));
        assert_eq!(
            tn.vni_of_vlan(snap.network("other").unwrap().local_vlan),
            None
        );
        let tap1 = snap.port_by_name("tap1").unwrap().no;

        let dp = Arc::new(Datapath::new(snap));
        let mut w = dp.worker();
        let mut out = Vec::new();
        // VM -> broadcast: to the tunnel, tagged with the local VLAN for the shell to map.
        let arp = FrameBuilder::arp(
            "fa:16:3e:00:00:01".parse().unwrap(),
            1,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        );
        assert_eq!(w.process(tap1, &arp.build(), 0, &mut out), Verdict::Forward);
        assert_eq!(
            out,
            vec![Output {
                port: tn.port,
                edit: EgressEdit::PushTag(vlan)
            }]
        );
        // From the tunnel, tagged with the local VLAN: to the VM, untagged.
        out.clear();
        let remote = FrameBuilder::arp(
            "fa:16:3e:00:00:02".parse().unwrap(),
            2,
            "10.0.0.2".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
        );
        let mut reply = remote.clone();
        reply.dst = "fa:16:3e:00:00:01".parse().unwrap();
        let v = w.process(tn.port, &reply.clone().dot1q(vlan).build(), 1, &mut out);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(
            out,
            vec![Output {
                port: tap1,
                edit: EgressEdit::StripTag
            }]
        );
        // Now learned behind the tunnel: unicast back goes there.
        out.clear();
        let mut to_remote = arp.clone();
        to_remote.dst = "fa:16:3e:00:00:02".parse().unwrap();
        w.process(tap1, &to_remote.build(), 2, &mut out);
        assert_eq!(out[0].port, tn.port);
        // Untagged, or tagged with another network's local VLAN: dropped.
        out.clear();
        assert!(matches!(
            w.process(tn.port, &reply.build(), 3, &mut out),
            Verdict::Drop { .. }
        ));
        let other = dp.snapshot().network("other").unwrap().local_vlan;
        assert!(matches!(
            w.process(tn.port, &reply.clone().dot1q(other).build(), 3, &mut out),
            Verdict::Drop { .. }
        ));
        assert!(out.is_empty());
        // The trace names the VNI and the peers.
        let steps = dp.trace(tap1, &arp.build(), 4);
        let last: String = steps
            .iter()
            .map(|s| s.to_string())
            .find(|s| s.contains("tunnel"))
            .unwrap_or_default();
        assert!(last.contains("VXLAN VNI 1001 from 192.0.2.1"), "{last}");
        assert!(last.contains("192.0.2.2"), "{last}");
    }

    #[test]
    fn member_finds_the_uplink_and_vm_ports_of_a_vlan_only() {
        let cfg = SwitchConfig::from_toml(
            r#"
[[physnet]]
name = "physnet"
interface = "eth1"

[[network]]
name = "a"
type = "vlan"
physnet = "physnet"
segmentation_id = 100

[[network]]
name = "b"
type = "local"

[[port]]
name = "tap1"
network = "a"
port_security = false

[[port]]
name = "tap2"
network = "b"
port_security = false
"#,
            "t.toml",
        )
        .unwrap();
        let snap = super::Snapshot::compile(&cfg, None).unwrap();
        let no = |n: &str| snap.port_by_name(n).unwrap().no;
        let (up, tap1, tap2) = (no("eth1"), no("tap1"), no("tap2"));
        let a = snap.network("a").unwrap().local_vlan;
        let b = snap.network("b").unwrap().local_vlan;
        let m = snap.member(a, up).unwrap();
        assert_eq!(
            (m.port, m.edit_untagged, m.edit_tagged),
            (up, EgressEdit::PushTag(100), EgressEdit::RewriteVid(100))
        );
        assert_eq!(
            snap.member(a, tap1).unwrap().edit_untagged,
            EgressEdit::Keep
        );
        assert!(snap.member(a, tap2).is_none());
        assert!(
            snap.member(b, up).is_none(),
            "a local network has no uplink"
        );
        assert_eq!(snap.member(b, tap2).unwrap().port, tap2);
        assert!(snap.member(b, tap1).is_none());
    }

    #[test]
    fn changing_local_ip_reattaches_the_endpoint() {
        let a = SwitchConfig::from_toml(CFG, "t.toml").unwrap();
        let b = SwitchConfig::from_toml(&CFG.replace("192.0.2.1", "192.0.2.7"), "t.toml").unwrap();
        let sa = super::Snapshot::compile(&a, None).unwrap();
        let sb = super::Snapshot::compile(&b, Some(&sa)).unwrap();
        let d = sb.diff(&sa);
        assert_eq!(d.reattached.len(), 1);
        assert_eq!(d.reattached[0].name, "vxlan-4789");
        assert!(sb
            .diff(&super::Snapshot::compile(&b, Some(&sb)).unwrap())
            .reattached
            .is_empty());
    }
}
