//! Desired host state -> switch config, as a pure function.
//!
//! The output is the switch's typed [`SwitchConfig`]: the host's own config
//! (its `[switch]` settings, `[[physnet]]` bridge mappings and `[tunnel]`
//! endpoint, as the host file gives them) plus the networks, ports and other
//! hosts' tunnel endpoints that come from ctrl. The switch validates it with
//! the rules of its config file ([`SwitchConfig::validated`]).
//!
//! vxlan networks become switch vxlan networks with their VNI when the host
//! has a `[tunnel] local_ip`, else host-local (on one host that is all they
//! need). geneve networks are wired host-local: the datapath has no Geneve
//! endpoint.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use weft_datapath::config::{
    AddressPair, NetworkConfig, NetworkType, PortConfig, PortKind, RuleConfig, RuleRemote,
    SecurityGroupConfig, SubnetConfig, SwitchConfig,
};
use weft_datapath::metadata::InstanceMetadata;
use weft_datapath::secgroup::{Direction, Family};
use weft_datapath::MacAddr;
use weft_proto::{HostNetwork, HostPort, HostRule, HostSecurityGroup, HostState, HostSubnet};

/// How the host state maps onto this switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The switch config; Err when a value from ctrl cannot be a switch value
    /// (the agent then leaves the switch as it is, as when the switch refuses one).
    pub config: Result<SwitchConfig, String>,
    /// Port id -> interface name, for ports the switch will carry.
    pub wired: BTreeMap<String, String>,
    /// Ports bound here that cannot be wired (unknown physnet, admin down), with why.
    pub unwired: BTreeMap<String, String>,
}

/// A network type the datapath carries here, before its segment is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    Flat,
    Vlan(Option<u32>),
    Vxlan(u32),
    Local,
}

/// The datapath's type for a network segment, or why it cannot carry it here.
fn datapath_type(
    n: &HostNetwork,
    physnets: &BTreeSet<String>,
    tunnel: bool,
) -> Result<(Carried, Option<String>), String> {
    let need_physnet = |p: &Option<String>| match p {
        Some(p) if physnets.contains(p) => Ok(p.clone()),
        Some(p) => Err(format!("physical network {p} is not mapped on this host")),
        None => Err("network has no physical network".to_string()),
    };
    match n.network_type.as_str() {
        "flat" => Ok((Carried::Flat, Some(need_physnet(&n.physical_network)?))),
        "vlan" => Ok((
            Carried::Vlan(n.segmentation_id),
            Some(need_physnet(&n.physical_network)?),
        )),
        "vxlan" if tunnel => match n.segmentation_id {
            Some(vni) => Ok((Carried::Vxlan(vni), None)),
            None => Err("vxlan network has no segmentation id".to_string()),
        },
        // Without a tunnel endpoint (vxlan) or a datapath for it (geneve), an overlay is
        // wired host-local: ports on this host reach each other and nothing else.
        "local" | "vxlan" | "geneve" => Ok((Carried::Local, None)),
        other => Err(format!(
            "network type {other} is not supported by this datapath"
        )),
    }
}

/// The switch network for a carried segment. A VLAN id is range-checked by the switch; one
/// that does not even fit 12 bits' container, or a missing one, is refused here in its words.
fn network_config(
    id: &str,
    ty: Carried,
    physnet: &Option<String>,
    mtu: Option<u32>,
) -> Result<NetworkConfig, String> {
    let network_type = match ty {
        Carried::Flat => NetworkType::Flat,
        Carried::Local => NetworkType::Local,
        Carried::Vxlan(vni) => NetworkType::Vxlan {
            segmentation_id: vni,
        },
        Carried::Vlan(None) => {
            return Err(format!(
                "network {id:?}: segmentation_id: a vlan network needs segmentation_id (1..=4094)"
            ))
        }
        Carried::Vlan(Some(v)) => NetworkType::Vlan {
            segmentation_id: u16::try_from(v).map_err(|_| {
                format!("network {id:?}: segmentation_id: VLAN id {v} is out of range 1..=4094")
            })?,
        },
    };
    Ok(NetworkConfig {
        name: id.to_string(),
        network_type,
        physnet: physnet.clone(),
        mtu,
    })
}

fn mac(obj: &str, field: &str, s: &str) -> Result<MacAddr, String> {
    s.parse()
        .map_err(|e: weft_datapath::mac::MacParseError| format!("{obj}: {field}: {e}"))
}

/// An IP address (a host prefix) or a CIDR, as the switch reads `ip_address`.
fn ip_or_cidr(obj: &str, s: &str) -> Result<IpNet, String> {
    net(obj, "allowed_address_pairs: ip_address", s)
}

/// An address or prefix (host bits cleared); errors name `obj` and `field`.
fn net(obj: &str, field: &str, s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| format!("{obj}: {field}: invalid IP address or CIDR {s:?}"))
}

/// A security group from ctrl as a switch `[[security_group]]`: its members (fixed IPs, and
/// allowed address pairs where ctrl lists them) for the rules of other groups that name it.
fn group_config(g: &HostSecurityGroup) -> Result<SecurityGroupConfig, String> {
    let obj = format!("security group {:?}", g.id);
    Ok(SecurityGroupConfig {
        id: g.id.clone(),
        stateful: g.stateful,
        members: g
            .member_ips
            .iter()
            .map(|m| net(&obj, "member_ips", m))
            .collect::<Result<_, _>>()?,
        rules: g
            .rules
            .iter()
            .map(|r| rule_config(&obj, r))
            .collect::<Result<_, _>>()?,
    })
}

fn rule_config(obj: &str, r: &HostRule) -> Result<RuleConfig, String> {
    let obj = format!("{obj}: rule {:?}", r.id);
    let port = |v: Option<u32>, field: &str| {
        v.map(|v| u16::try_from(v).map_err(|_| format!("{obj}: {field}: {v} is out of range")))
            .transpose()
    };
    let family = match r.ethertype.as_str() {
        "IPv4" => Family::V4,
        "IPv6" => Family::V6,
        o => return Err(format!("{obj}: ethertype: {o:?} is not IPv4 or IPv6")),
    };
    let protocol = match &r.protocol {
        None => None,
        Some(p) => weft_datapath::secgroup::rules::protocol(p)
            .map_err(|e| format!("{obj}: protocol: {e}"))?,
    };
    // Networking refuses these; a state that has one anyway is refused here, by name, rather
    // than by the switch's validation of the whole config.
    if protocol == Some(weft_datapath::secgroup::rules::PROTO_ICMPV6) && family == Family::V4 {
        return Err(format!("{obj}: protocol: ICMPv6 in an IPv4 rule"));
    }
    Ok(RuleConfig {
        id: r.id.clone(),
        direction: match r.direction.as_str() {
            "ingress" => Direction::Ingress,
            "egress" => Direction::Egress,
            o => return Err(format!("{obj}: direction: {o:?} is not ingress or egress")),
        },
        family,
        protocol,
        port_min: port(r.port_range_min, "port_range_min")?,
        port_max: port(r.port_range_max, "port_range_max")?,
        remote: match (&r.remote_ip_prefix, &r.remote_group_id) {
            (Some(p), _) => RuleRemote::Prefix(net(&obj, "remote_ip_prefix", p)?),
            (None, Some(g)) => RuleRemote::Group(g.clone()),
            (None, None) => RuleRemote::Any,
        },
    })
}

/// The switch port for a port from ctrl; `mtu` is its network's.
fn port_config(
    p: &HostPort,
    mtu: Option<u32>,
    groups: &BTreeSet<&str>,
) -> Result<PortConfig, String> {
    let obj = format!("port {:?}", p.devname);
    let kind = match p.kind.as_str() {
        "tap" => PortKind::Tap,
        "system" => PortKind::System,
        other => {
            return Err(format!(
                "{obj}: kind: unknown port kind {other:?} (expected tap or system)"
            ))
        }
    };
    let fixed_ips = p
        .fixed_ips
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("{obj}: fixed_ips: invalid IP address {s:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_address_pairs = p
        .allowed_address_pairs
        .iter()
        .map(|a| {
            Ok(AddressPair {
                mac: match a.mac_address.as_str() {
                    "" => None,
                    m => Some(mac(&obj, "allowed_address_pairs: mac", m)?),
                },
                ip: ip_or_cidr(&obj, &a.ip_address)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(PortConfig {
        capture: None,
        // Neutron's semantics: a port with port security is firewalled by its groups (none:
        // only DHCP/ND pass); without port security it has no firewall at all. A group ctrl did
        // not send cannot admit anything, so leaving it out fails closed.
        security_groups: p.port_security_enabled.then(|| {
            p.security_groups
                .iter()
                .filter(|g| groups.contains(g.as_str()))
                .cloned()
                .collect()
        }),
        name: p.devname.clone(),
        kind,
        network: p.network_id.clone(),
        mac: Some(mac(&obj, "mac", &p.mac_address)?),
        fixed_ips,
        port_security: p.port_security_enabled,
        allowed_address_pairs,
        // A tap weft creates gets its network's MTU (1450 on vxlan), as os-vif sets Nova's taps.
        mtu: mtu.filter(|m| kind == PortKind::Tap && (68..=65535).contains(m)),
        // The server's hostname when the port is a server's (Nova names the guest, not the
        // port), else the port's name.
        dns_name: p
            .dns_name
            .clone()
            .or_else(|| p.instance.as_ref().and_then(|i| host_name(&i.hostname)))
            .or_else(|| host_name(&p.name)),
        metadata: p.instance.as_ref().and_then(instance_metadata),
    })
}

/// A port name usable as the guest's host name (the issue's "port name as host name"):
/// letters, digits and hyphens in dot-separated labels, as the switch's config accepts a
/// dns_name. Anything else (spaces, an empty name): None, and the guest is `host-<ip>`.
fn host_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then(|| name.to_string())
}

/// The switch's `[port.metadata]` for the instance behind a port. User data that is not
/// base64 within Nova's limit is left out rather than refusing the whole host's config (the
/// guest still gets its other metadata); an instance without an id has none.
fn instance_metadata(i: &weft_proto::HostInstance) -> Option<InstanceMetadata> {
    let mut m = InstanceMetadata {
        uuid: i.uuid.clone(),
        name: i.name.clone(),
        hostname: host_name(&i.hostname).unwrap_or_default(),
        availability_zone: i.availability_zone.clone(),
        project_id: i.project_id.clone(),
        launch_index: i.launch_index,
        public_keys: i.public_keys.clone(),
        meta: i.meta.clone(),
        user_data: i.user_data.clone(),
    };
    if m.validate().is_err() {
        m.user_data = None;
    }
    m.validate().is_ok().then_some(m)
}

/// The switch subnet for a subnet from ctrl (its DHCP server's options).
fn subnet_config(network: &str, s: &HostSubnet) -> Result<SubnetConfig, String> {
    let obj = format!("subnet {:?}", s.id);
    let ip = |field: &str, v: &str| {
        v.parse::<IpAddr>()
            .map_err(|_| format!("{obj}: {field}: invalid IP address {v:?}"))
    };
    let net = |field: &str, v: &str| {
        v.parse::<IpNet>()
            .map_err(|_| format!("{obj}: {field}: invalid CIDR {v:?}"))
    };
    Ok(SubnetConfig {
        network: network.to_string(),
        cidr: net("cidr", &s.cidr)?,
        gateway_ip: s
            .gateway_ip
            .as_deref()
            .map(|g| ip("gateway_ip", g))
            .transpose()?,
        dns_nameservers: s
            .dns_nameservers
            .iter()
            .map(|d| ip("dns_nameservers", d))
            .collect::<Result<_, _>>()?,
        host_routes: s
            .host_routes
            .iter()
            .map(|r| {
                Ok((
                    net("host_routes: destination", &r.destination)?,
                    ip("host_routes: nexthop", &r.nexthop)?,
                ))
            })
            .collect::<Result<_, String>>()?,
        enable_dhcp: s.enable_dhcp,
    })
}

/// The host's own config: kept as it is; ctrl's networks and ports are added to it.
#[derive(Debug, Clone)]
pub struct HostBase {
    /// The host's switch config, validated.
    pub config: SwitchConfig,
    /// Names of the `[[physnet]]` sections (the bridge mappings).
    pub physnets: BTreeSet<String>,
    /// `[tunnel] local_ip`: this host's VXLAN endpoint, reported to ctrl.
    pub tunnel_ip: Option<String>,
    /// Peers the host config lists itself (`remote_ips`, `[[tunnel_peer]]`).
    pub static_peers: BTreeSet<String>,
}

impl HostBase {
    /// The base for a host whose own switch config is `config`.
    pub fn new(config: SwitchConfig) -> HostBase {
        let physnets = config.physnets.iter().map(|p| p.name.clone()).collect();
        let tunnel_ip = config.tunnel.as_ref().map(|t| t.local_ip.to_string());
        let static_peers = config
            .tunnel
            .iter()
            .flat_map(|t| t.peers.iter().map(|p| p.to_string()))
            .collect();
        HostBase {
            config,
            physnets,
            tunnel_ip,
            static_peers,
        }
    }

    /// Reads a host config in the switch's TOML format.
    pub fn parse(text: &str) -> Result<HostBase, String> {
        SwitchConfig::from_toml(text, "host config")
            .map(HostBase::new)
            .map_err(|e| e.to_string())
    }
}

/// Builds the switch config for `st` on a host whose own config is `base`.
/// A resync of 10,000 ports must take milliseconds, not seconds: values are
/// converted once, with no text in between.
pub fn plan(base: &HostBase, st: &HostState) -> Plan {
    let mut unwired_nets = BTreeMap::new();
    let mut usable = BTreeMap::new();
    for n in &st.networks {
        match datapath_type(n, &base.physnets, base.tunnel_ip.is_some()) {
            Ok(t) => {
                usable.insert(n.id.as_str(), t);
            }
            Err(why) => {
                unwired_nets.insert(n.id.as_str(), why);
            }
        }
    }
    let mut cfg = base.config.clone();
    let mut used_networks = BTreeSet::new();
    let mut ports = Vec::with_capacity(st.ports.len());
    let mut wired = BTreeMap::new();
    let mut unwired = BTreeMap::new();
    let mut bad: Option<String> = None;
    let groups: BTreeSet<&str> = st.security_groups.iter().map(|g| g.id.as_str()).collect();
    for g in &st.security_groups {
        match group_config(g) {
            Ok(g) => cfg.security_groups.push(g),
            Err(e) => {
                bad.get_or_insert(e);
            }
        }
    }
    for p in &st.ports {
        if let Some(why) = unwired_nets.get(p.network_id.as_str()) {
            unwired.insert(p.id.clone(), why.clone());
            continue;
        }
        if !usable.contains_key(p.network_id.as_str()) {
            unwired.insert(p.id.clone(), "network missing from host state".into());
            continue;
        }
        if !p.admin_state_up {
            unwired.insert(p.id.clone(), "administratively down".into());
            continue;
        }
        used_networks.insert(p.network_id.as_str());
        wired.insert(p.id.clone(), p.devname.clone());
        let mtu = st
            .networks
            .iter()
            .find(|n| n.id == p.network_id)
            .map(|n| n.mtu);
        match port_config(p, mtu, &groups) {
            Ok(pc) => ports.push(pc),
            Err(e) => {
                bad.get_or_insert(e);
            }
        }
    }
    for (id, (ty, physnet)) in &usable {
        if !used_networks.contains(id) {
            continue;
        }
        let mtu = st
            .networks
            .iter()
            .find(|n| n.id == *id)
            .map(|n| n.mtu)
            .filter(|m| (68..=65535).contains(m));
        match network_config(id, *ty, physnet, mtu) {
            Ok(n) => cfg.networks.push(n),
            Err(e) => {
                bad.get_or_insert(e);
            }
        }
        // The network's subnets: the switch answers DHCP on the enable_dhcp ones.
        let subnets = st
            .networks
            .iter()
            .filter(|n| n.id == *id)
            .flat_map(|n| &n.subnets);
        for s in subnets {
            match subnet_config(id, s) {
                Ok(s) => cfg.subnets.push(s),
                Err(e) => {
                    bad.get_or_insert(e);
                }
            }
        }
    }
    cfg.ports.extend(ports);
    if let (Some(own), Some(tunnel)) = (&base.tunnel_ip, cfg.tunnel.as_mut()) {
        for peer in &st.tunnel_peers {
            let Ok(ip) = peer.parse::<IpAddr>() else {
                continue;
            };
            let canon = ip.to_string();
            // Skip our own address, peers the host lists itself, and other families.
            let family_ok = own.contains(':') == canon.contains(':');
            if &canon == own || base.static_peers.contains(&canon) || !family_ok {
                continue;
            }
            tunnel.peers.push(ip);
        }
    }
    Plan {
        config: match bad {
            Some(e) => Err(e),
            None => Ok(cfg),
        },
        wired,
        unwired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::AddressPair as WirePair;

    fn base() -> HostBase {
        HostBase::parse(
            r#"
[switch]
control_socket = "/run/weft/h1.sock"
[[physnet]]
name = "physnet"
interface = "eth1"
"#,
        )
        .unwrap()
    }

    fn net(id: &str, ty: &str, physnet: Option<&str>, seg: Option<u32>) -> HostNetwork {
        HostNetwork {
            id: id.into(),
            network_type: ty.into(),
            physical_network: physnet.map(String::from),
            segmentation_id: seg,
            mtu: 1500,
            admin_state_up: true,
            subnets: vec![],
        }
    }

    fn port(id: &str, net: &str) -> HostPort {
        HostPort {
            id: id.into(),
            network_id: net.into(),
            mac_address: "fa:16:3e:00:00:01".into(),
            fixed_ips: vec!["10.0.0.5".into()],
            admin_state_up: true,
            port_security_enabled: true,
            allowed_address_pairs: vec![WirePair {
                ip_address: "10.0.9.0/24".into(),
                mac_address: String::new(),
            }],
            security_groups: vec![],
            kind: "system".into(),
            devname: format!("tap{}", &id[..11]),
            status: "DOWN".into(),
            dns_name: None,
            name: String::new(),
            instance: None,
        }
    }

    fn state(networks: Vec<HostNetwork>, ports: Vec<HostPort>) -> HostState {
        HostState {
            host: "h1".into(),
            revision: 7,
            networks,
            ports,
            security_groups: vec![],
            tunnel_peers: vec![],
        }
    }

    /// The plan's config, checked by the switch's own rules (names, MACs, IPs, pairs).
    fn valid(p: &Plan) -> SwitchConfig {
        let c = p.config.clone().unwrap();
        assert_eq!(c.validated("plan").unwrap(), c);
        c
    }

    #[test]
    fn subnets_reach_the_switch_and_a_port_on_one_gets_dhcp() {
        let mut n = net("n1", "vlan", Some("physnet"), Some(100));
        n.subnets = vec![weft_proto::HostSubnet {
            id: "s1".into(),
            cidr: "10.0.0.0/24".into(),
            gateway_ip: Some("10.0.0.1".into()),
            dns_nameservers: vec!["10.0.0.53".into()],
            host_routes: vec![weft_proto::HostSubnetRoute {
                destination: "192.168.0.0/16".into(),
                nexthop: "10.0.0.254".into(),
            }],
            enable_dhcp: true,
        }];
        let mut p = port("aaaaaaaa-1111-2222", "n1");
        p.dns_name = Some("web-1".into());
        let c = valid(&plan(&base(), &state(vec![n.clone()], vec![p])));
        assert_eq!(c.subnets.len(), 1);
        assert_eq!(c.subnets[0].network, "n1");
        assert_eq!(c.subnets[0].host_routes[0].1.to_string(), "10.0.0.254");
        let snap = weft_datapath::Snapshot::compile(&c, None).unwrap();
        let d = snap
            .dhcp(snap.port_by_name("tapaaaaaaaa-11").unwrap().no)
            .unwrap();
        assert_eq!(d.address.to_string(), "10.0.0.5/24");
        assert_eq!(d.hostname, "web-1");
        // A subnet value that is no address is refused, naming the subnet and the field.
        n.subnets[0].gateway_ip = Some("10.0.0.x".into());
        let bad = plan(
            &base(),
            &state(vec![n], vec![port("aaaaaaaa-1111-2222", "n1")]),
        );
        assert_eq!(
            bad.config.unwrap_err(),
            "subnet \"s1\": gateway_ip: invalid IP address \"10.0.0.x\""
        );
    }

    #[test]
    fn port_name_is_the_host_name_and_the_instance_reaches_the_metadata_service() {
        let n = net("n1", "vlan", Some("physnet"), Some(100));
        let mut p = port("aaaaaaaa-1111-2222", "n1");
        // A server's port: the guest is named after the server, not the port.
        p.name = "srv-1-port".into();
        p.instance = Some(weft_proto::HostInstance {
            uuid: "srv-1".into(),
            name: "web 2".into(),
            hostname: "web-2".into(),
            project_id: "p1".into(),
            user_data: Some("aGk=".into()),
            ..Default::default()
        });
        let mut q = port("bbbbbbbb-1111-2222", "n1");
        q.mac_address = "fa:16:3e:00:00:02".into();
        q.fixed_ips = vec!["10.0.0.6".into()];
        q.name = "not a host name".into();
        q.instance = Some(weft_proto::HostInstance {
            uuid: "srv-2".into(),
            user_data: Some("not base64!".into()),
            ..Default::default()
        });
        let c = valid(&plan(&base(), &state(vec![n], vec![p, q])));
        let (a, b) = (&c.ports[0], &c.ports[1]);
        assert_eq!(a.dns_name.as_deref(), Some("web-2"));
        assert_eq!(b.dns_name, None, "an invalid name falls back to host-<ip>");
        let m = a.metadata.as_ref().unwrap();
        assert_eq!(
            (m.uuid.as_str(), m.name.as_str(), m.hostname.as_str()),
            ("srv-1", "web 2", "web-2")
        );
        assert_eq!(m.user_data_bytes().unwrap(), b"hi");
        // Bad user data is left out; the rest of the instance stays.
        let m = b.metadata.as_ref().unwrap();
        assert_eq!((m.uuid.as_str(), m.user_data.as_deref()), ("srv-2", None));
    }

    #[test]
    fn security_groups_become_the_ports_firewall() {
        use weft_datapath::config::{RuleRemote, SecurityGroupConfig};
        let net = || net("n1", "local", None, None);
        let mut a = port("aaaaaaaa-aaaa-aaaa", "n1");
        a.security_groups = vec!["web".into(), "gone".into()];
        let mut b = port("bbbbbbbb-bbbb-bbbb", "n1");
        b.mac_address = "fa:16:3e:00:00:02".into();
        b.fixed_ips = vec!["10.0.0.6".into()];
        b.port_security_enabled = false;
        b.security_groups = vec!["web".into()];
        b.allowed_address_pairs = vec![];
        let mut st = state(vec![net()], vec![a, b]);
        let rule = |id: &str, proto: Option<&str>, min, max, group: Option<&str>| HostRule {
            id: id.into(),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: proto.map(Into::into),
            port_range_min: min,
            port_range_max: max,
            remote_ip_prefix: None,
            remote_group_id: group.map(Into::into),
        };
        st.security_groups = vec![HostSecurityGroup {
            id: "web".into(),
            stateful: true,
            rules: vec![
                rule("ssh", Some("tcp"), Some(22), Some(22), None),
                rule("peers", Some("17"), None, None, Some("web")),
            ],
            member_ips: vec!["10.0.0.5".into(), "10.0.9.0/24".into()],
        }];
        let c = valid(&plan(&base(), &st));
        // The secured port gets its known groups; the unsecured one no firewall at all.
        assert_eq!(
            c.ports[0].security_groups.as_deref(),
            Some(&["web".to_string()][..])
        );
        assert_eq!(c.ports[1].security_groups, None);
        let g: &SecurityGroupConfig = &c.security_groups[0];
        assert_eq!(g.members.len(), 2);
        assert_eq!(g.rules[0].protocol, Some(6));
        assert_eq!(g.rules[0].port_min, Some(22));
        assert_eq!(g.rules[1].remote, RuleRemote::Group("web".into()));
        // A rule the switch cannot enforce refuses the state, naming it.
        st.security_groups[0].rules[0].port_range_max = Some(70000);
        let e = plan(&base(), &st).config.unwrap_err();
        assert!(e.contains("rule \"ssh\": port_range_max: 70000"), "{e}");
    }

    /// Every way networking stores a rule's protocol (Neutron's names, their legacy aliases,
    /// numbers as text, `any`, and protocol 0) reaches the switch as the protocol it means, for
    /// both ethertypes; none of them fails the host's config.
    #[test]
    fn protocols_by_name_or_number_reach_the_switch() {
        let cases: &[(&str, &str, Option<u8>)] = &[
            ("IPv4", "tcp", Some(6)),
            ("IPv4", "6", Some(6)),
            ("IPv6", "tcp", Some(6)),
            ("IPv4", "udp", Some(17)),
            ("IPv6", "17", Some(17)),
            ("IPv4", "icmp", Some(1)),
            ("IPv4", "1", Some(1)),
            ("IPv6", "ipv6-icmp", Some(58)),
            ("IPv6", "icmpv6", Some(58)),
            ("IPv6", "58", Some(58)),
            ("IPv4", "sctp", Some(132)),
            ("IPv4", "vrrp", Some(112)),
            ("IPv4", "112", Some(112)),
            ("IPv6", "ipv6-route", Some(43)),
            ("IPv4", "any", None),
            ("IPv4", "ip", None),
            ("IPv6", "hopopt", None),
            ("IPv4", "0", None),
        ];
        let mut a = port("aaaaaaaa-aaaa-aaaa", "n1");
        a.security_groups = vec!["g".into()];
        let mut st = state(vec![net("n1", "local", None, None)], vec![a]);
        st.security_groups = vec![HostSecurityGroup {
            id: "g".into(),
            stateful: true,
            rules: cases
                .iter()
                .enumerate()
                .map(|(i, (eth, proto, _))| HostRule {
                    id: format!("r{i}"),
                    direction: "ingress".into(),
                    ethertype: (*eth).into(),
                    protocol: Some((*proto).into()),
                    port_range_min: None,
                    port_range_max: None,
                    remote_ip_prefix: None,
                    remote_group_id: None,
                })
                .collect(),
            member_ips: vec![],
        }];
        let c = valid(&plan(&base(), &st));
        let got: Vec<Option<u8>> = c.security_groups[0]
            .rules
            .iter()
            .map(|r| r.protocol)
            .collect();
        let want: Vec<Option<u8>> = cases.iter().map(|c| c.2).collect();
        assert_eq!(got, want);
        // ICMPv6 by any of its names in an IPv4 rule is refused, naming the rule.
        for proto in ["ipv6-icmp", "icmpv6", "58"] {
            st.security_groups[0].rules[7].ethertype = "IPv4".into();
            st.security_groups[0].rules[7].protocol = Some(proto.into());
            let e = plan(&base(), &st).config.unwrap_err();
            assert!(e.contains("rule \"r7\""), "{proto}: {e}");
        }
    }

    #[test]
    fn inline_arrays_are_refused_in_the_host_config() {
        assert!(HostBase::parse("network = [\"x\"]").is_err());
    }

    #[test]
    fn vlan_port_becomes_system_port_on_mapped_physnet() {
        let st = state(
            vec![
                net("n1", "vlan", Some("physnet"), Some(100)),
                net("n2", "vlan", Some("elsewhere"), Some(101)),
                net("n3", "vxlan", None, Some(1001)),
            ],
            vec![
                port("aaaaaaaa-1111-2222", "n1"),
                port("bbbbbbbb-1111-2222", "n2"),
                port("cccccccc-1111-2222", "n3"),
            ],
        );
        let p = plan(&base(), &st);
        let cfg = valid(&p);
        assert_eq!(
            cfg.switch.control_socket,
            std::path::PathBuf::from("/run/weft/h1.sock")
        );
        assert_eq!(cfg.networks.len(), 2);
        assert_eq!(
            cfg.network("n1").unwrap().network_type,
            NetworkType::Vlan {
                segmentation_id: 100
            }
        );
        assert_eq!(
            cfg.network("n1").unwrap().physnet.as_deref(),
            Some("physnet")
        );
        assert_eq!(cfg.network("n3").unwrap().network_type, NetworkType::Local);
        assert_eq!(cfg.ports.len(), 2);
        assert_eq!(cfg.ports[0].name, "tapaaaaaaaa-11");
        assert_eq!(cfg.ports[0].kind, PortKind::System);
        assert_eq!(cfg.ports[0].mac, Some("fa:16:3e:00:00:01".parse().unwrap()));
        assert_eq!(
            cfg.ports[0].allowed_address_pairs,
            [AddressPair {
                mac: None,
                ip: "10.0.9.0/24".parse().unwrap()
            }]
        );
        assert!(p.unwired["bbbbbbbb-1111-2222"].contains("not mapped"));
        assert_eq!(p.wired.len(), 2);
    }

    #[test]
    fn vxlan_networks_tunnel_when_the_host_has_a_local_ip() {
        let tbase = HostBase::parse(
            r#"
[switch]
control_socket = "/run/weft/h1.sock"
[tunnel]
local_ip = "192.0.2.1"
remote_ips = ["192.0.2.7"]
"#,
        )
        .unwrap();
        assert_eq!(tbase.tunnel_ip.as_deref(), Some("192.0.2.1"));
        let mut st = state(
            vec![
                net("n3", "vxlan", None, Some(1001)),
                net("n4", "geneve", None, Some(7)),
            ],
            vec![
                port("cccccccc-1111-2222", "n3"),
                port("eeeeeeee-1111-2222", "n4"),
            ],
        );
        st.tunnel_peers = vec![
            "192.0.2.2".into(),
            "192.0.2.1".into(),   // our own: skipped
            "192.0.2.7".into(),   // listed by the host config: skipped
            "2001:db8::5".into(), // other family: skipped
        ];
        let p = plan(&tbase, &st);
        let c = valid(&p);
        assert_eq!(
            c.network("n3").unwrap().network_type,
            NetworkType::Vxlan {
                segmentation_id: 1001
            }
        );
        assert_eq!(c.network("n4").unwrap().network_type, NetworkType::Local);
        let t = c.tunnel.clone().unwrap();
        let peers: Vec<String> = t.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["192.0.2.7", "192.0.2.2"]);
        assert_eq!(p.wired.len(), 2);
        // System ports keep their netdev's MTU; a tap weft creates gets the network's.
        assert_eq!(c.ports[0].mtu, None);
        // ... and its guest is still told the network's, by DHCP and metadata.
        let net0 = st.networks.iter().find(|n| n.id == c.ports[0].network);
        assert_eq!(c.guest_mtu(&c.ports[0]), net0.map(|n| n.mtu));
        let mut tap_state = st.clone();
        tap_state.ports[0].kind = "tap".into();
        tap_state.networks[0].mtu = 1450;
        let c = valid(&plan(&tbase, &tap_state));
        assert_eq!(c.ports[0].mtu, Some(1450));

        // Without a local_ip the same state is wired host-local and no peers are written.
        let c = valid(&plan(&base(), &st));
        assert_eq!(c.network("n3").unwrap().network_type, NetworkType::Local);
        assert!(c.tunnel.is_none());
        assert!(HostBase::parse("[tunnel]\nlocal_ip = \"nope\"\n").is_err());
    }

    #[test]
    fn admin_down_ports_are_unplugged_and_output_is_deterministic() {
        let mut down = port("dddddddd-1111-2222", "n1");
        down.admin_state_up = false;
        let st = state(vec![net("n1", "flat", Some("physnet"), None)], vec![down]);
        let a = plan(&base(), &st);
        assert!(a.wired.is_empty());
        assert_eq!(a.unwired.len(), 1);
        assert_eq!(valid(&a), base().config);
        assert_eq!(a, plan(&base(), &st));
    }

    /// A value from ctrl the switch cannot take refuses the whole state, naming the port and
    /// field, as the switch refuses a config it cannot validate.
    #[test]
    fn a_bad_value_from_ctrl_refuses_the_state() {
        let mut bad = port("aaaaaaaa-1111-2222", "n1");
        bad.mac_address = "zz".into();
        let st = state(
            vec![net("n1", "vlan", Some("physnet"), Some(100))],
            vec![bad, port("bbbbbbbb-1111-2222", "n1")],
        );
        let e = plan(&base(), &st).config.unwrap_err();
        assert!(e.starts_with("port \"tapaaaaaaaa-11\": mac: "), "{e}");
        let st = state(
            vec![net("n1", "vlan", Some("physnet"), Some(70000))],
            vec![port("aaaaaaaa-1111-2222", "n1")],
        );
        let e = plan(&base(), &st).config.unwrap_err();
        assert!(e.contains("VLAN id 70000 is out of range"), "{e}");
        // One the types carry but the switch's rules refuse is refused when applied.
        let st = state(
            vec![net("n1", "vlan", Some("physnet"), Some(4095))],
            vec![port("aaaaaaaa-1111-2222", "n1")],
        );
        let c = plan(&base(), &st).config.unwrap();
        assert!(c
            .validated("plan")
            .unwrap_err()
            .to_string()
            .contains("VLAN id 4095 is out of range 1..=4094"));
    }
}
