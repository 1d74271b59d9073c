//! [`Snapshot::compile`]: a config becomes the tables the pipeline reads, keeping the port
//! numbers and local VLANs of names the previous snapshot already had (so learned MACs, flow
//! cache entries and the agent's view of the ports survive a reload).

use super::firewall::{firewall, group_members};
use super::{
    vlan_mac_key, Epochs, Member, NetworkInfo, PortInfo, PortRole, PortSecurity, Snapshot,
    TunnelInfo, UplinkRt, VlanEntry, MAX_LOCAL_VLAN,
};
use crate::config::{ConfigError, NetworkType, PortKind, SwitchConfig};
use crate::dhcp::PortDhcp;
use crate::hash::FxBuild;
use crate::metadata::PortMetadata;
use crate::secgroup::{CompiledFirewall, Members};
use crate::verdict::{EgressEdit, PortNo, MAX_PORTS};
use ipnet::{IpNet, Ipv6Net};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static GENERATION: AtomicU64 = AtomicU64::new(1);

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
