//! weft-proto: what ctrl and a host's agent say to each other, as plain serde structs.
//!
//! ```text
//!   agent ── PUT  /networking/agent/v1/hosts/{host}         AgentRegistration ──► ctrl
//!   agent ── GET  /networking/agent/v1/hosts/{host}/state?since=R&timeout=S  ──► ctrl
//!         ◄────────────────────────────────────────────────  HostState (at revision > R)
//!   agent ── POST /networking/agent/v1/hosts/{host}/status  StatusReport ─────► ctrl
//! ```
//!
//! The same types travel in-process when `weft serve` runs the agent itself.
//!
//! Non-goals: no HTTP, no service logic, no switch types. ctrl builds a [`HostState`] from its
//! state; the agent turns it into the switch's config. Both depend on this crate and on
//! nothing of each other.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod compute;
pub mod compute_actions;
pub mod compute_reconcile;

/// A network with ports on the host: its segment, as the switch must carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNetwork {
    /// Neutron network id: the switch names its network by it.
    pub id: String,
    /// `flat`, `vlan`, `vxlan`, `geneve` or `local` (Neutron's `provider:network_type`).
    pub network_type: String,
    /// The physnet of a flat or vlan network (the host maps it to an uplink).
    pub physical_network: Option<String>,
    /// VLAN id or VNI; None for flat and local networks.
    pub segmentation_id: Option<u32>,
    /// The network's MTU, given to the taps weft creates on it.
    pub mtu: u32,
    /// False: the host carries no traffic on it (ports report DOWN).
    pub admin_state_up: bool,
    /// Its subnets, for the DHCP server in the switch (absent from a ctrl that predates it).
    #[serde(default)]
    pub subnets: Vec<HostSubnet>,
}

/// A subnet of a [`HostNetwork`]: what the switch's DHCP server hands out on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSubnet {
    /// Neutron subnet id.
    pub id: String,
    /// Its prefix (`10.0.0.0/24`).
    pub cidr: String,
    /// The router address; None: no gateway.
    pub gateway_ip: Option<String>,
    /// DNS servers, in order.
    pub dns_nameservers: Vec<String>,
    /// Extra routes handed to guests.
    pub host_routes: Vec<HostSubnetRoute>,
    /// Whether guests on it get their addresses by DHCP.
    pub enable_dhcp: bool,
}

/// A subnet's host route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSubnetRoute {
    /// The route's prefix.
    pub destination: String,
    /// Its next hop.
    pub nexthop: String,
}

/// An extra (IP or prefix, MAC) a port may send from; an empty MAC is the port's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    /// An address or a CIDR prefix.
    pub ip_address: String,
    /// The MAC it may come from; empty: the port's own.
    pub mac_address: String,
}

/// A port bound to the host (`binding:host_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    /// Neutron port id: the status report names the port by it.
    pub id: String,
    /// The [`HostNetwork`] it is on.
    pub network_id: String,
    /// The port's MAC, which port security holds it to.
    pub mac_address: String,
    /// Its fixed IP addresses (no prefix), which port security holds it to.
    pub fixed_ips: Vec<String>,
    /// The port's and its network's admin state together.
    pub admin_state_up: bool,
    /// Anti-spoofing (MAC, IP, ARP, DHCP guard) on; off lets it send from anything.
    pub port_security_enabled: bool,
    /// Extra (address, MAC) pairs it may send from (a VRRP address, say).
    pub allowed_address_pairs: Vec<AddressPair>,
    /// Ids of its security groups (in [`HostState::security_groups`]).
    pub security_groups: Vec<String>,
    /// `tap` when the binding profile asks weft to create the tap
    /// (`{"weft_port_kind": "tap"}`), otherwise `system`: Nova's tap, attached by name.
    pub kind: String,
    /// The interface name (`tap` + the first 11 characters of the id, as Nova names it).
    pub devname: String,
    /// The status ctrl has, so that the agent reports only changes.
    pub status: String,
    /// Neutron's `dns_name`: the DHCP host name. None: `host-<ip>`, as Neutron without DNS
    /// integration names hosts.
    #[serde(default)]
    pub dns_name: Option<String>,
    /// The port's name (Neutron's `name`): the guest's DHCP host name when it has no
    /// dns_name and the name is a valid host name.
    #[serde(default)]
    pub name: String,
    /// The instance behind the port, for the metadata service at 169.254.169.254. None: no
    /// device_id, every metadata path is 404.
    #[serde(default)]
    pub instance: Option<HostInstance>,
}

/// What the metadata service tells a port's guest about its instance. ctrl fills it from the
/// port today (device_id, name, project); compute fills in the rest (key, user data, server
/// metadata) once it exists. Every field but `uuid` is optional on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInstance {
    /// Instance id: the server's id (the port's device_id).
    pub uuid: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Availability zone (empty: `nova`).
    #[serde(default)]
    pub availability_zone: String,
    /// Owning project.
    #[serde(default)]
    pub project_id: String,
    /// Index within a multi-instance boot.
    #[serde(default)]
    pub launch_index: u32,
    /// Key pair name -> OpenSSH public key.
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    /// Server metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// User data, base64.
    #[serde(default)]
    pub user_data: Option<String>,
}

/// A security group rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRule {
    /// Neutron rule id.
    pub id: String,
    /// `ingress` or `egress`, seen from the port.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// `tcp`, `udp`, `icmp`, a protocol number; None: any.
    pub protocol: Option<String>,
    /// Lowest port (ICMP: type); None: any.
    pub port_range_min: Option<u32>,
    /// Highest port (ICMP: code); None: any.
    pub port_range_max: Option<u32>,
    /// The remote end's prefix; None (and no group): anywhere.
    pub remote_ip_prefix: Option<String>,
    /// The remote end is any member of this group.
    pub remote_group_id: Option<String>,
}

/// A security group used by the host's ports (or named as remote by their rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSecurityGroup {
    /// Neutron security group id.
    pub id: String,
    /// Stateful (replies allowed back) or stateless.
    pub stateful: bool,
    /// Its rules; traffic that matches none is dropped.
    pub rules: Vec<HostRule>,
    /// Addresses of every port in the group (any host), for remote_group_id rules.
    pub member_ips: Vec<String>,
}

/// What one host must wire at one revision, sent whole; the agent diffs against what it has
/// applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostState {
    /// The host (`binding:host_id`) it is for.
    pub host: String,
    /// ctrl's revision it was read at: the agent's next long-poll asks for a later one.
    pub revision: u64,
    /// Networks with ports on the host.
    pub networks: Vec<HostNetwork>,
    /// Ports bound to the host.
    pub ports: Vec<HostPort>,
    /// Security groups its ports use or name as remote.
    pub security_groups: Vec<HostSecurityGroup>,
    /// Tunnel endpoints of the other hosts' agents: this host's VXLAN peers.
    #[serde(default)]
    pub tunnel_peers: Vec<String>,
}

/// `PUT /networking/agent/v1/hosts/{host}`: an agent registers its tunnel endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRegistration {
    /// Neutron's agent-API shape: the fields under `agent`.
    pub agent: AgentFields,
}

/// The body of an [`AgentRegistration`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFields {
    /// None (or absent): the host has no tunnel endpoint.
    #[serde(default)]
    pub tunnel_ip: Option<String>,
}

/// `POST /networking/agent/v1/hosts/{host}/status`: `{"ports": {"<port id>": "ACTIVE"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// Port id -> `ACTIVE` or `DOWN`.
    pub ports: BTreeMap<String, String>,
}

/// `POST /networking/agent/v1/hosts/{host}/ports/{id}/status`: `{"status": "ACTIVE"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortStatus {
    /// `ACTIVE` or `DOWN`.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies keep the JSON shapes that agents of earlier builds send.
    #[test]
    fn wire_shapes() {
        let r = AgentRegistration {
            agent: AgentFields {
                tunnel_ip: Some("192.0.2.1".into()),
            },
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"agent":{"tunnel_ip":"192.0.2.1"}}"#
        );
        let none: AgentRegistration = serde_json::from_str(r#"{"agent": {}}"#).unwrap();
        assert_eq!(none.agent.tunnel_ip, None);
        assert!(serde_json::from_str::<AgentRegistration>(r#"{"agent": {"x": 1}}"#).is_err());
        let s: StatusReport = serde_json::from_str(r#"{"ports": {"p1": "ACTIVE"}}"#).unwrap();
        assert_eq!(s.ports["p1"], "ACTIVE");
        // A state from a ctrl that predates tunnel peers still reads.
        let st: HostState = serde_json::from_str(
            r#"{"host":"h","revision":3,"networks":[],"ports":[],"security_groups":[]}"#,
        )
        .unwrap();
        assert!(st.tunnel_peers.is_empty());
        // A network and a port from a ctrl that predates the switch's DHCP server still read.
        let n: HostNetwork = serde_json::from_str(
            r#"{"id":"n","network_type":"local","physical_network":null,"segmentation_id":null,"mtu":1500,"admin_state_up":true}"#,
        )
        .unwrap();
        assert!(n.subnets.is_empty());
        let p: HostPort = serde_json::from_str(
            r#"{"id":"p","network_id":"n","mac_address":"fa:16:3e:00:00:01","fixed_ips":[],"admin_state_up":true,"port_security_enabled":true,"allowed_address_pairs":[],"security_groups":[],"kind":"tap","devname":"tapp","status":"DOWN"}"#,
        )
        .unwrap();
        assert_eq!(p.dns_name, None);
    }
}
