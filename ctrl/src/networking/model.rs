//! The resources as plain data. These structs are what storage keeps (as
//! JSON documents) and what the views render into Neutron's JSON.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A datapath agent as ctrl knows it: its host and the tunnel endpoint it reported
/// (Neutron's agent `configurations.tunneling_ip`). Other hosts' agents build VXLAN
/// tunnels to every reported endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The host name (also the record's id).
    pub id: String,
    /// Tunnel IP, None when the host has no tunnel endpoint.
    pub tunnel_ip: Option<String>,
    /// When the record last changed.
    pub updated_at: String,
    /// The agent's id in the agents API (a UUID, as Neutron's).
    #[serde(default)]
    pub agent_id: String,
    /// The last heartbeat (registration): `alive` is judged from it.
    #[serde(default)]
    pub heartbeat_at: String,
    #[serde(default)]
    /// When the agent first registered.
    pub created_at: String,
    #[serde(default = "yes")]
    /// Set by an admin (`openstack network agent set`); shown, not enforced.
    pub admin_state_up: bool,
    #[serde(default)]
    /// Set by an admin.
    pub description: String,
}

fn yes() -> bool {
    true
}

/// Standard attributes every Neutron resource carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Std {
    /// Free text.
    pub description: String,
    /// When it was created (Neutron's timestamp format).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Bumped on every change (Neutron's revision_number, for If-Match).
    pub revision_number: u64,
    #[serde(default)]
    /// Neutron tags, kept as given.
    pub tags: Vec<String>,
}

impl Std {
    /// Attributes of a resource created at `now`.
    pub fn new(now: &str, description: String) -> Std {
        Std {
            description,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            revision_number: 0,
            tags: Vec::new(),
        }
    }

    /// Marks a change at `now`: Neutron bumps `revision_number` on every update.
    pub fn touch(&mut self, now: &str) {
        self.updated_at = now.to_string();
        self.revision_number += 1;
    }

    fn render(&self, out: &mut serde_json::Map<String, Value>) {
        out.insert("description".into(), json!(self.description));
        out.insert("created_at".into(), json!(self.created_at));
        out.insert("updated_at".into(), json!(self.updated_at));
        out.insert("revision_number".into(), json!(self.revision_number));
        out.insert("tags".into(), json!(self.tags));
    }
}

/// A network segment: how the network appears on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// flat | vlan | vxlan | geneve | local
    pub network_type: String,
    /// The physnet of a flat or vlan segment.
    pub physical_network: Option<String>,
    /// VLAN id or VNI; None for flat and local.
    pub segmentation_id: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A Neutron network.
pub struct Network {
    /// Random UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The owning project.
    pub project_id: String,
    /// False: it carries no traffic (reported DOWN).
    pub admin_state_up: bool,
    /// Visible to and usable by every project.
    pub shared: bool,
    /// `router:external`.
    pub router_external: bool,
    /// Largest IP packet on it.
    pub mtu: u32,
    /// ACTIVE/DOWN as the agents report it.
    pub status: String,
    /// Anti-spoofing on (for a network: its ports' default).
    pub port_security_enabled: bool,
    /// How it appears on the wire.
    pub segment: Segment,
    /// Whether the segment came from the tenant pools (released on delete).
    pub tenant_segment: bool,
    /// Standard attributes.
    pub std: Std,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// An allocation pool of a subnet.
pub struct Pool {
    /// First address (inclusive).
    pub start: String,
    /// Last address (inclusive).
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// A host route of a subnet.
pub struct HostRoute {
    /// The route's prefix.
    pub destination: String,
    /// Its gateway.
    pub nexthop: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A Neutron subnet: a prefix of a network, with its IPAM settings.
pub struct Subnet {
    /// Random UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The network it is on.
    pub network_id: String,
    /// The owning project.
    pub project_id: String,
    /// 4 or 6.
    pub ip_version: u8,
    /// The prefix.
    pub cidr: String,
    /// The gateway; None: none.
    pub gateway_ip: Option<String>,
    /// Where addresses are allocated from.
    pub allocation_pools: Vec<Pool>,
    /// Whether DHCP serves it.
    pub enable_dhcp: bool,
    /// DNS servers handed to instances.
    pub dns_nameservers: Vec<String>,
    /// Extra routes handed to instances.
    pub host_routes: Vec<HostRoute>,
    /// IPv6 router advertisement mode.
    pub ipv6_ra_mode: Option<String>,
    /// IPv6 address mode.
    pub ipv6_address_mode: Option<String>,
    /// Standard attributes.
    pub std: Std,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// An address of a port.
pub struct FixedIp {
    /// The subnet the address is from.
    pub subnet_id: String,
    /// The address (a prefix, for an address pair).
    pub ip_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// An allowed address pair of a port.
pub struct AddressPair {
    /// The address (a prefix, for an address pair).
    pub ip_address: String,
    /// The MAC (empty in an address pair: the port's own).
    pub mac_address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A Neutron port.
pub struct Port {
    /// Random UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The network it is on.
    pub network_id: String,
    /// The owning project.
    pub project_id: String,
    /// The MAC (empty in an address pair: the port's own).
    pub mac_address: String,
    /// False: it carries no traffic (reported DOWN).
    pub admin_state_up: bool,
    /// ACTIVE/DOWN as the agents report it.
    pub status: String,
    /// Its addresses.
    pub fixed_ips: Vec<FixedIp>,
    /// What uses it (an instance id).
    pub device_id: String,
    /// What kind of thing uses it (`compute:nova`, `network:dhcp`).
    pub device_owner: String,
    /// `binding:host_id`: the host whose agent wires it; empty: unbound.
    pub binding_host_id: String,
    /// `binding:profile`, kept as given (`weft_port_kind`).
    pub binding_profile: Value,
    /// `binding:vnic_type`.
    pub binding_vnic_type: String,
    /// Anti-spoofing on (for a network: its ports' default).
    pub port_security_enabled: bool,
    /// Extra (address, MAC) pairs it may send from.
    pub allowed_address_pairs: Vec<AddressPair>,
    /// Its security groups' ids.
    pub security_groups: Vec<String>,
    /// Standard attributes.
    pub std: Std,
}

/// `binding:vif_type` for a bound port. Nova's libvirt driver handles
/// `tap` by creating the tap itself (`<interface type='ethernet'>` with
/// `target dev=tapXXXXXXXX-XX`) and plugging it into nothing, which is exactly
/// the netdev the weft agent attaches as a `system` port.
pub const VIF_TYPE: &str = "tap";

impl Port {
    /// `binding:vif_type`: `unbound` until a host is set.
    pub fn vif_type(&self) -> &'static str {
        if self.binding_host_id.is_empty() {
            "unbound"
        } else {
            VIF_TYPE
        }
    }

    /// The netdev Nova creates for this port: `tap` + the first 11 characters of its id.
    pub fn devname(&self) -> String {
        format!("tap{}", self.id.chars().take(11).collect::<String>())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A Neutron security group.
pub struct SecurityGroup {
    /// Random UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The owning project.
    pub project_id: String,
    /// Stateful (replies allowed back) or stateless.
    pub stateful: bool,
    /// Standard attributes.
    pub std: Std,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A rule of a security group.
pub struct SecurityGroupRule {
    /// Random UUID.
    pub id: String,
    /// The group it belongs to.
    pub security_group_id: String,
    /// The owning project.
    pub project_id: String,
    /// ingress | egress
    pub direction: String,
    /// IPv4 | IPv6
    pub ethertype: String,
    /// tcp, udp, icmp or a number; None: any.
    pub protocol: Option<String>,
    /// Lowest port (ICMP: type); None: any.
    pub port_range_min: Option<u32>,
    /// Highest port (ICMP: code); None: any.
    pub port_range_max: Option<u32>,
    /// The remote end's prefix; None: anywhere.
    pub remote_ip_prefix: Option<String>,
    /// The remote end is any member of this group.
    pub remote_group_id: Option<String>,
    /// Standard attributes.
    pub std: Std,
}

fn with_project(out: &mut serde_json::Map<String, Value>, project_id: &str) {
    out.insert("project_id".into(), json!(project_id));
    out.insert("tenant_id".into(), json!(project_id));
}

/// Neutron's network JSON.
pub fn network_view(n: &Network, subnet_ids: Vec<String>) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(n.id));
    o.insert("name".into(), json!(n.name));
    with_project(&mut o, &n.project_id);
    o.insert("admin_state_up".into(), json!(n.admin_state_up));
    o.insert("shared".into(), json!(n.shared));
    o.insert("router:external".into(), json!(n.router_external));
    o.insert("mtu".into(), json!(n.mtu));
    o.insert("status".into(), json!(n.status));
    o.insert("subnets".into(), json!(subnet_ids));
    o.insert(
        "port_security_enabled".into(),
        json!(n.port_security_enabled),
    );
    o.insert(
        "provider:network_type".into(),
        json!(n.segment.network_type),
    );
    o.insert(
        "provider:physical_network".into(),
        json!(n.segment.physical_network),
    );
    o.insert(
        "provider:segmentation_id".into(),
        json!(n.segment.segmentation_id),
    );
    o.insert("availability_zone_hints".into(), json!([]));
    o.insert("availability_zones".into(), json!([]));
    o.insert("ipv4_address_scope".into(), Value::Null);
    o.insert("ipv6_address_scope".into(), Value::Null);
    o.insert("is_default".into(), json!(false));
    o.insert("l2_adjacency".into(), json!(true));
    n.std.render(&mut o);
    Value::Object(o)
}

/// Neutron's subnet JSON; `shared` is its network's.
pub fn subnet_view(s: &Subnet, shared: bool) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("shared".into(), json!(shared));
    o.insert("id".into(), json!(s.id));
    o.insert("name".into(), json!(s.name));
    o.insert("network_id".into(), json!(s.network_id));
    with_project(&mut o, &s.project_id);
    o.insert("ip_version".into(), json!(s.ip_version));
    o.insert("cidr".into(), json!(s.cidr));
    o.insert("gateway_ip".into(), json!(s.gateway_ip));
    o.insert("allocation_pools".into(), json!(s.allocation_pools));
    o.insert("enable_dhcp".into(), json!(s.enable_dhcp));
    o.insert("dns_nameservers".into(), json!(s.dns_nameservers));
    o.insert("host_routes".into(), json!(s.host_routes));
    o.insert("ipv6_ra_mode".into(), json!(s.ipv6_ra_mode));
    o.insert("ipv6_address_mode".into(), json!(s.ipv6_address_mode));
    o.insert("subnetpool_id".into(), Value::Null);
    o.insert("segment_id".into(), Value::Null);
    o.insert("service_types".into(), json!([]));
    s.std.render(&mut o);
    Value::Object(o)
}

/// The port as the API shows it.
pub fn port_view(p: &Port) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(p.id));
    o.insert("name".into(), json!(p.name));
    o.insert("network_id".into(), json!(p.network_id));
    with_project(&mut o, &p.project_id);
    o.insert("mac_address".into(), json!(p.mac_address));
    o.insert("admin_state_up".into(), json!(p.admin_state_up));
    o.insert("status".into(), json!(p.status));
    o.insert("fixed_ips".into(), json!(p.fixed_ips));
    o.insert("device_id".into(), json!(p.device_id));
    o.insert("device_owner".into(), json!(p.device_owner));
    o.insert("binding:host_id".into(), json!(p.binding_host_id));
    o.insert("binding:profile".into(), p.binding_profile.clone());
    o.insert("binding:vnic_type".into(), json!(p.binding_vnic_type));
    o.insert("binding:vif_type".into(), json!(p.vif_type()));
    let details = if p.binding_host_id.is_empty() {
        json!({})
    } else {
        json!({"port_filter": true, "connectivity": "l2", "devname": p.devname()})
    };
    o.insert("binding:vif_details".into(), details);
    o.insert(
        "port_security_enabled".into(),
        json!(p.port_security_enabled),
    );
    o.insert(
        "allowed_address_pairs".into(),
        json!(p.allowed_address_pairs),
    );
    o.insert("security_groups".into(), json!(p.security_groups));
    o.insert("extra_dhcp_opts".into(), json!([]));
    p.std.render(&mut o);
    Value::Object(o)
}

/// The network a stored `remote_ip_prefix` falls in (Neutron's
/// `normalized_cidr`): its host bits cleared.
pub fn normalized_cidr(prefix: &str) -> Option<String> {
    let (addr, len) = prefix.split_once('/')?;
    let (ver, v) = crate::networking::ipam::parse_ip(addr)?;
    let len: u32 = len.parse().ok()?;
    let bits: u32 = if ver == 4 { 32 } else { 128 };
    let host = match bits.checked_sub(len)? {
        0 => 0,
        128 => u128::MAX,
        n => (1u128 << n) - 1,
    };
    Some(format!(
        "{}/{len}",
        crate::networking::ipam::fmt_ip(ver, v & !host)
    ))
}

/// The rule as the API shows it.
pub fn rule_view(r: &SecurityGroupRule) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(r.id));
    o.insert("security_group_id".into(), json!(r.security_group_id));
    with_project(&mut o, &r.project_id);
    o.insert("direction".into(), json!(r.direction));
    o.insert("ethertype".into(), json!(r.ethertype));
    o.insert("protocol".into(), json!(r.protocol));
    o.insert("port_range_min".into(), json!(r.port_range_min));
    o.insert("port_range_max".into(), json!(r.port_range_max));
    o.insert("remote_ip_prefix".into(), json!(r.remote_ip_prefix));
    o.insert("remote_group_id".into(), json!(r.remote_group_id));
    o.insert("remote_address_group_id".into(), Value::Null);
    o.insert(
        "normalized_cidr".into(),
        json!(r.remote_ip_prefix.as_deref().and_then(normalized_cidr)),
    );
    r.std.render(&mut o);
    Value::Object(o)
}

/// The group as the API shows it, with its rules.
pub fn sg_view(g: &SecurityGroup, rules: &[&SecurityGroupRule]) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(g.id));
    o.insert("name".into(), json!(g.name));
    with_project(&mut o, &g.project_id);
    o.insert("stateful".into(), json!(g.stateful));
    o.insert("shared".into(), json!(false));
    o.insert(
        "security_group_rules".into(),
        Value::Array(rules.iter().map(|r| rule_view(r)).collect()),
    );
    g.std.render(&mut o);
    Value::Object(o)
}
