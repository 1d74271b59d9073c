//! Parsing: TOML text -> raw typed structs. Every value keeps its span so that validation can
//! name the line; a syntax error, an unknown key or a wrong type is reported here with the file,
//! the line and the table it falls in.

use super::error::{ConfigError, Ctx};
use serde::Deserialize;
use toml::Spanned;

/// Parses the text of `cx` into raw structs (no semantic checks).
pub(super) fn parse(cx: &Ctx<'_>) -> Result<RawFile, ConfigError> {
    toml::from_str(cx.text).map_err(|e| {
        let span = e.span();
        let table = span
            .as_ref()
            .map(|s| cx.table_at(s.start))
            .unwrap_or_default();
        cx.err(span, table, e.message().trim().to_string())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub switch: Option<RawSwitch>,
    #[serde(default)]
    pub physnet: Vec<RawPhysnet>,
    #[serde(default)]
    pub network: Vec<RawNetwork>,
    #[serde(default)]
    pub port: Vec<RawPort>,
    pub tunnel: Option<RawTunnel>,
    #[serde(default)]
    pub tunnel_peer: Vec<RawTunnelPeer>,
    #[serde(default)]
    pub subnet: Vec<RawSubnet>,
    #[serde(default)]
    pub security_group: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubnet {
    pub network: Spanned<String>,
    pub cidr: Spanned<String>,
    pub gateway_ip: Option<Spanned<String>>,
    #[serde(default)]
    pub dns_nameservers: Vec<Spanned<String>>,
    #[serde(default)]
    pub host_routes: Vec<RawRoute>,
    pub enable_dhcp: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub destination: Spanned<String>,
    pub nexthop: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub id: Spanned<String>,
    pub stateful: Option<Spanned<bool>>,
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    #[serde(default)]
    pub rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub local_ip: Spanned<String>,
    pub udp_port: Option<Spanned<i64>>,
    #[serde(default)]
    pub remote_ips: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnelPeer {
    pub ip: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwitch {
    pub control_socket: Option<Spanned<String>>,
    pub mac_aging_secs: Option<Spanned<i64>>,
    pub workers: Option<Spanned<i64>>,
    pub mac_table_size: Option<Spanned<i64>>,
    pub worker_nice: Option<Spanned<i64>>,
    pub busy_poll_us: Option<Spanned<i64>>,
    pub busy_poll_yield: Option<Spanned<bool>>,
    pub io: Option<Spanned<String>>,
    pub conntrack_size: Option<Spanned<i64>>,
    pub vhost_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhysnet {
    pub name: Spanned<String>,
    pub interface: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub network_type: Spanned<String>,
    pub physnet: Option<Spanned<String>>,
    pub segmentation_id: Option<Spanned<i64>>,
    pub mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPort {
    pub name: Spanned<String>,
    pub kind: Option<Spanned<String>>,
    pub network: Spanned<String>,
    pub mac: Option<Spanned<String>>,
    #[serde(default)]
    pub fixed_ips: Vec<Spanned<String>>,
    pub port_security: Option<Spanned<bool>>,
    #[serde(default)]
    pub allowed_address_pairs: Vec<RawPair>,
    pub mtu: Option<Spanned<i64>>,
    pub capture: Option<Spanned<String>>,
    pub dns_name: Option<Spanned<String>>,
    pub metadata: Option<Spanned<super::InstanceMetadata>>,
    pub security_groups: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub id: Spanned<String>,
    pub direction: Spanned<String>,
    pub ethertype: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    pub port_range_min: Option<Spanned<i64>>,
    pub port_range_max: Option<Spanned<i64>>,
    pub remote_ip_prefix: Option<Spanned<String>>,
    pub remote_group: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPair {
    pub mac: Option<Spanned<String>>,
    pub ip_address: Spanned<String>,
}

/// A value of a config built in code: it has no place in any text.
fn unplaced<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

impl RawFile {
    /// The raw form of a typed config, for [`super::SwitchConfig::validated`]: every value
    /// as the TOML reader would have found it, so that one validator checks both.
    pub(super) fn from_config(c: &super::SwitchConfig) -> RawFile {
        let s = &c.switch;
        RawFile {
            switch: Some(RawSwitch {
                control_socket: Some(unplaced(s.control_socket.to_string_lossy().into_owned())),
                mac_aging_secs: Some(unplaced(clamp_i64(s.mac_aging_secs))),
                workers: s.workers.map(|w| unplaced(clamp_i64(w as u64))),
                mac_table_size: Some(unplaced(clamp_i64(s.mac_table_size as u64))),
                worker_nice: Some(unplaced(i64::from(s.worker_nice))),
                busy_poll_us: Some(unplaced(clamp_i64(s.busy_poll_us))),
                busy_poll_yield: Some(unplaced(s.busy_poll_yield)),
                io: Some(unplaced(s.io.as_str().to_string())),
                conntrack_size: Some(unplaced(clamp_i64(s.conntrack_size as u64))),
                vhost_dir: Some(unplaced(s.vhost_dir.to_string_lossy().into_owned())),
            }),
            physnet: c
                .physnets
                .iter()
                .map(|p| RawPhysnet {
                    name: unplaced(p.name.clone()),
                    interface: unplaced(p.interface.clone()),
                })
                .collect(),
            network: c.networks.iter().map(RawNetwork::from_config).collect(),
            port: c.ports.iter().map(RawPort::from_config).collect(),
            tunnel: c.tunnel.as_ref().map(|t| RawTunnel {
                local_ip: unplaced(t.local_ip.to_string()),
                udp_port: Some(unplaced(i64::from(t.udp_port))),
                remote_ips: t.peers.iter().map(|p| unplaced(p.to_string())).collect(),
            }),
            tunnel_peer: Vec::new(),
            subnet: c
                .subnets
                .iter()
                .map(|s| RawSubnet {
                    network: unplaced(s.network.clone()),
                    cidr: unplaced(s.cidr.to_string()),
                    gateway_ip: s.gateway_ip.map(|g| unplaced(g.to_string())),
                    dns_nameservers: s
                        .dns_nameservers
                        .iter()
                        .map(|d| unplaced(d.to_string()))
                        .collect(),
                    host_routes: s
                        .host_routes
                        .iter()
                        .map(|(d, n)| RawRoute {
                            destination: unplaced(d.to_string()),
                            nexthop: unplaced(n.to_string()),
                        })
                        .collect(),
                    enable_dhcp: Some(unplaced(s.enable_dhcp)),
                })
                .collect(),
            security_group: c
                .security_groups
                .iter()
                .map(RawGroup::from_config)
                .collect(),
        }
    }
}

/// A u64 setting as TOML's integer; one past i64 stays out of range for the range checks.
fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl RawNetwork {
    fn from_config(n: &super::NetworkConfig) -> RawNetwork {
        use super::NetworkType;
        let (ty, seg) = match n.network_type {
            NetworkType::Flat => ("flat", None),
            NetworkType::Vlan { segmentation_id } => ("vlan", Some(i64::from(segmentation_id))),
            NetworkType::Local => ("local", None),
            NetworkType::Vxlan { segmentation_id } => ("vxlan", Some(i64::from(segmentation_id))),
        };
        RawNetwork {
            name: unplaced(n.name.clone()),
            network_type: unplaced(ty.to_string()),
            physnet: n.physnet.clone().map(unplaced),
            segmentation_id: seg.map(unplaced),
            mtu: n.mtu.map(|m| unplaced(i64::from(m))),
        }
    }
}

impl RawPort {
    fn from_config(p: &super::PortConfig) -> RawPort {
        RawPort {
            name: unplaced(p.name.clone()),
            kind: Some(unplaced(p.kind.to_string())),
            network: unplaced(p.network.clone()),
            mac: p.mac.map(|m| unplaced(m.to_string())),
            fixed_ips: p
                .fixed_ips
                .iter()
                .map(|ip| unplaced(ip.to_string()))
                .collect(),
            port_security: Some(unplaced(p.port_security)),
            allowed_address_pairs: p
                .allowed_address_pairs
                .iter()
                .map(|a| RawPair {
                    mac: a.mac.map(|m| unplaced(m.to_string())),
                    ip_address: unplaced(a.ip.to_string()),
                })
                .collect(),
            mtu: p.mtu.map(|m| unplaced(i64::from(m))),
            capture: p
                .capture
                .as_ref()
                .map(|c| unplaced(c.display().to_string())),
            dns_name: p.dns_name.clone().map(unplaced),
            metadata: p.metadata.clone().map(unplaced),
            security_groups: p
                .security_groups
                .as_ref()
                .map(|g| unplaced(g.iter().map(|id| unplaced(id.clone())).collect())),
        }
    }
}

impl RawGroup {
    fn from_config(g: &super::SecurityGroupConfig) -> RawGroup {
        use super::RuleRemote;
        use crate::secgroup::Family;
        RawGroup {
            id: unplaced(g.id.clone()),
            stateful: Some(unplaced(g.stateful)),
            members: g.members.iter().map(|m| unplaced(m.to_string())).collect(),
            rule: g
                .rules
                .iter()
                .map(|r| RawRule {
                    id: unplaced(r.id.clone()),
                    direction: unplaced(r.direction.name().to_string()),
                    ethertype: unplaced(
                        match r.family {
                            Family::V4 => "IPv4",
                            Family::V6 => "IPv6",
                        }
                        .to_string(),
                    ),
                    protocol: r.protocol.map(|p| unplaced(p.to_string())),
                    port_range_min: r.port_min.map(|v| unplaced(i64::from(v))),
                    port_range_max: r.port_max.map(|v| unplaced(i64::from(v))),
                    remote_ip_prefix: match &r.remote {
                        RuleRemote::Prefix(n) => Some(unplaced(n.to_string())),
                        _ => None,
                    },
                    remote_group: match &r.remote {
                        RuleRemote::Group(id) => Some(unplaced(id.clone())),
                        _ => None,
                    },
                })
                .collect(),
        }
    }
}
