//! What one host must wire, computed from the state: the ports bound there,
//! their networks' segments and their security groups. Sent to agents as a
//! whole at a revision; the agent diffs against what it has applied.

use super::model::{AddressPair, SecurityGroupRule};
use super::state::State;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNetwork {
    pub id: String,
    pub network_type: String,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<u32>,
    pub mtu: u32,
    pub admin_state_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    pub id: String,
    pub network_id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<String>,
    pub admin_state_up: bool,
    pub port_security_enabled: bool,
    pub allowed_address_pairs: Vec<AddressPair>,
    pub security_groups: Vec<String>,
    /// `tap` when the binding profile asks weft to create the tap
    /// (`{"weft_port_kind": "tap"}`), otherwise `system`: Nova's tap, attached by name.
    pub kind: String,
    pub devname: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRule {
    pub id: String,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<String>,
    pub port_range_min: Option<u32>,
    pub port_range_max: Option<u32>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSecurityGroup {
    pub id: String,
    pub stateful: bool,
    pub rules: Vec<HostRule>,
    /// Addresses of every port in the group (any host), for remote_group_id rules.
    pub member_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    pub host: String,
    pub revision: u64,
    pub networks: Vec<HostNetwork>,
    pub ports: Vec<HostPort>,
    pub security_groups: Vec<HostSecurityGroup>,
    /// Tunnel endpoints of the other hosts' agents: this host's VXLAN peers.
    #[serde(default)]
    pub tunnel_peers: Vec<String>,
}

fn rule(r: &SecurityGroupRule) -> HostRule {
    HostRule {
        id: r.id.clone(),
        direction: r.direction.clone(),
        ethertype: r.ethertype.clone(),
        protocol: r.protocol.clone(),
        port_range_min: r.port_range_min,
        port_range_max: r.port_range_max,
        remote_ip_prefix: r.remote_ip_prefix.clone(),
        remote_group_id: r.remote_group_id.clone(),
    }
}

pub fn host_state(st: &State, host: &str) -> HostState {
    let mut ports = Vec::new();
    let mut nets = BTreeSet::new();
    let mut sgs = BTreeSet::new();
    for p in st.ports_on_host(host) {
        let Some(net) = st.networks.get(&p.network_id) else {
            continue;
        };
        nets.insert(net.id.clone());
        sgs.extend(p.security_groups.iter().cloned());
        let kind = match p
            .binding_profile
            .get("weft_port_kind")
            .and_then(|v| v.as_str())
        {
            Some("tap") => "tap",
            _ => "system",
        };
        ports.push(HostPort {
            id: p.id.clone(),
            network_id: p.network_id.clone(),
            mac_address: p.mac_address.clone(),
            fixed_ips: p.fixed_ips.iter().map(|f| f.ip_address.clone()).collect(),
            admin_state_up: p.admin_state_up && net.admin_state_up,
            port_security_enabled: p.port_security_enabled,
            allowed_address_pairs: p.allowed_address_pairs.clone(),
            security_groups: p.security_groups.clone(),
            kind: kind.into(),
            devname: p.devname(),
            status: p.status.clone(),
        });
    }
    let networks = nets
        .iter()
        .filter_map(|id| st.networks.get(id))
        .map(|n| HostNetwork {
            id: n.id.clone(),
            network_type: n.segment.network_type.clone(),
            physical_network: n.segment.physical_network.clone(),
            segmentation_id: n.segment.segmentation_id,
            mtu: n.mtu,
            admin_state_up: n.admin_state_up,
        })
        .collect();
    // Members of the groups (and of groups their rules name as remote).
    let mut wanted: BTreeSet<String> = sgs.clone();
    for r in st.rules.values() {
        if sgs.contains(&r.security_group_id) {
            if let Some(rg) = &r.remote_group_id {
                wanted.insert(rg.clone());
            }
        }
    }
    let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    if wanted.len() > sgs.len() || !sgs.is_empty() {
        for p in st.ports.values() {
            for g in &p.security_groups {
                if wanted.contains(g) {
                    members
                        .entry(g.as_str())
                        .or_default()
                        .extend(p.fixed_ips.iter().map(|f| f.ip_address.clone()));
                }
            }
        }
    }
    let mut rules_by_group: BTreeMap<&str, Vec<HostRule>> = BTreeMap::new();
    for r in st.rules.values() {
        if sgs.contains(&r.security_group_id) {
            rules_by_group
                .entry(r.security_group_id.as_str())
                .or_default()
                .push(rule(r));
        }
    }
    let security_groups = wanted
        .iter()
        .filter_map(|id| st.security_groups.get(id))
        .map(|g| HostSecurityGroup {
            id: g.id.clone(),
            stateful: g.stateful,
            rules: rules_by_group.remove(g.id.as_str()).unwrap_or_default(),
            member_ips: members.remove(g.id.as_str()).unwrap_or_default(),
        })
        .collect();
    // Every other endpoint, as the OVS agent without l2population keeps a tunnel to each.
    let own = st.agents.get(host).and_then(|a| a.tunnel_ip.as_deref());
    let tunnel_peers: Vec<String> = st
        .agents
        .values()
        .filter(|a| a.id != host)
        .filter_map(|a| a.tunnel_ip.clone())
        .filter(|ip| Some(ip.as_str()) != own)
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    HostState {
        host: host.to_string(),
        revision: st.revision,
        networks,
        ports,
        security_groups,
        tunnel_peers,
    }
}
