//! What one host must wire, computed from the state: the ports bound there,
//! their networks' segments and their security groups. Sent to agents as a
//! whole at a revision; the agent diffs against what it has applied. The
//! types are the wire's (weft-proto).

use super::model::{normalized_cidr, SecurityGroupRule};
use super::state::State;
use std::collections::{BTreeMap, BTreeSet};
pub use weft_proto::{
    AddressPair, HostNetwork, HostPort, HostRule, HostSecurityGroup, HostState, HostSubnet,
    HostSubnetRoute,
};

fn rule(r: &SecurityGroupRule) -> HostRule {
    HostRule {
        id: r.id.clone(),
        direction: r.direction.clone(),
        ethertype: r.ethertype.clone(),
        protocol: r.protocol.clone(),
        port_range_min: r.port_range_min,
        port_range_max: r.port_range_max,
        // The network, not the prefix as the user wrote it: a rule for
        // 10.0.0.34/24 lets 10.0.0.0/24 in, as Neutron's firewalls read it.
        remote_ip_prefix: r
            .remote_ip_prefix
            .as_deref()
            .map(|p| normalized_cidr(p).unwrap_or_else(|| p.to_string())),
        remote_group_id: r.remote_group_id.clone(),
    }
}

/// The instance behind a port, for the switch's metadata service: until compute sets
/// servers' keys and user data, the port's device_id is the instance id and its name the
/// instance's name and host name. A port with no device_id has no instance (404).
fn instance(p: &crate::networking::model::Port) -> Option<weft_proto::HostInstance> {
    if p.device_id.is_empty() {
        return None;
    }
    Some(weft_proto::HostInstance {
        uuid: p.device_id.clone(),
        name: p.name.clone(),
        hostname: p.name.clone(),
        project_id: p.project_id.clone(),
        ..Default::default()
    })
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
            allowed_address_pairs: p
                .allowed_address_pairs
                .iter()
                .map(|a| AddressPair {
                    ip_address: a.ip_address.clone(),
                    mac_address: a.mac_address.clone(),
                })
                .collect(),
            security_groups: p.security_groups.clone(),
            kind: kind.into(),
            devname: p.devname(),
            status: p.status.clone(),
            // weft stores no dns_name yet (no DNS integration): the host name is the port's
            // name (the agent falls back to `host-<ip>` when that is no host name).
            dns_name: None,
            name: p.name.clone(),
            instance: instance(p),
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
            subnets: st
                .subnets_of(&n.id)
                .map(|s| HostSubnet {
                    id: s.id.clone(),
                    cidr: s.cidr.clone(),
                    gateway_ip: s.gateway_ip.clone(),
                    dns_nameservers: s.dns_nameservers.clone(),
                    host_routes: s
                        .host_routes
                        .iter()
                        .map(|r| HostSubnetRoute {
                            destination: r.destination.clone(),
                            nexthop: r.nexthop.clone(),
                        })
                        .collect(),
                    enable_dhcp: s.enable_dhcp,
                })
                .collect(),
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
