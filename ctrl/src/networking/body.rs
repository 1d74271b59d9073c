//! Request bodies: typed structs read with serde_path_to_error, so every
//! 400 names the path of the bad field.

use super::error::{NetError, NetResult};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Reads a typed request body; a bad field's 400 names its path
/// (`Invalid input for ports.<id>: ...`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> NetResult<T> {
    if bytes.is_empty() {
        return Err(NetError::bad("HTTPBadRequest", "Resource body required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, T>(de).map_err(path_error)
}

/// Reads a typed value out of an already parsed body; `prefix` is its path.
pub fn typed<T: DeserializeOwned>(v: &Value, prefix: &str) -> NetResult<T> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        NetError::invalid(&field, e.into_inner())
    })
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> NetError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        NetError::bad("HTTPBadRequest", format!("Malformed request body: {inner}"))
    } else if path == "." {
        NetError::bad("HTTPBadRequest", format!("Invalid request body: {inner}"))
    } else {
        NetError::invalid(&path, inner)
    }
}

/// The agent sync bodies are the wire's (weft-proto).
pub use weft_proto::{AgentRegistration, PortStatus, StatusReport};

/// One resource's attributes found at `path` (`port`, `ports[1]`).
pub fn attrs_at<T: DeserializeOwned + Attrs>(inner: &Value, path: &str, op: &str) -> NetResult<T> {
    if !inner.is_object() {
        return Err(NetError::invalid(path, "must be a JSON object"));
    }
    check_names::<T>(inner, T::read_only(op), op)?;
    typed(inner, path)
}

/// A request's attributes.
pub trait Attrs {
    /// Attributes Neutron returns but never accepts in this operation.
    fn read_only(op: &str) -> &'static [&'static str];
}

/// Read-only attributes -> "not allowed in POST", anything else the struct
/// does not know -> "Unrecognized attribute(s)", as Neutron words them.
fn check_names<'de, T: Deserialize<'de>>(
    obj: &Value,
    read_only: &[&str],
    op: &str,
) -> NetResult<()> {
    let Value::Object(m) = obj else {
        return Ok(());
    };
    if let Some(ro) = read_only.iter().find(|k| m.contains_key(**k)) {
        return Err(NetError::bad(
            "HTTPBadRequest",
            format!("Attribute '{ro}' not allowed in {op}"),
        ));
    }
    let known = field_names::<T>();
    let unknown: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(NetError::bad(
        "HTTPBadRequest",
        format!("Unrecognized attribute(s) '{}'", unknown.join(", ")),
    ))
}

/// The field names (after renames) serde derives for struct `T`: asks its
/// `Deserialize` impl, which hands them to `deserialize_struct`.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut n = Names(None);
    let _ = T::deserialize(&mut n);
    n.0.unwrap_or(&[])
}

mod de {
    //! Neutron's attribute conversions as serde `deserialize_with` helpers:
    //! booleans also from "true"/"false", integers also from numeric strings,
    //! strings of at most 255 characters, null where Neutron allows it.
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn string(v: Value) -> Result<String, String> {
        match v {
            Value::String(s) if s.chars().count() > 255 => {
                Err(format!("'{s}' exceeds maximum length of 255"))
            }
            Value::String(s) => Ok(s),
            v => Err(format!("'{v}' is not a valid string")),
        }
    }

    pub fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        string(Value::deserialize(d)?)
            .map(Some)
            .map_err(D::Error::custom)
    }

    pub fn name_or_null<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(Some(None)),
            v => string(v).map(|s| Some(Some(s))).map_err(D::Error::custom),
        }
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Some(b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            v => Err(D::Error::custom(format!(
                "'{v}' cannot be converted to boolean"
            ))),
        }
    }

    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(Some(None)),
            Value::Number(n) if n.is_i64() => Ok(Some(n.as_i64())),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(|v| Some(Some(v)))
                .map_err(|_| D::Error::custom(format!("'{s}' is not an integer"))),
            v => Err(D::Error::custom(format!("'{v}' is not an integer"))),
        }
    }

    /// A list; null is the empty list.
    pub fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        Ok(Some(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default()))
    }

    /// Present (possibly null) vs absent.
    pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// `{"start", "end"}` of an allocation pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolReq {
    /// First address of the pool.
    pub start: String,
    /// Last address of the pool (inclusive).
    pub end: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `{"destination", "nexthop"}` of a subnet's host route.
pub struct RouteReq {
    /// The route's prefix (CIDR).
    pub destination: String,
    /// The gateway for it.
    pub nexthop: String,
}

/// One requested fixed IP: a subnet, an address, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedIpReq {
    #[serde(default)]
    /// The subnet to take an address from.
    pub subnet_id: Option<String>,
    #[serde(default)]
    /// The address asked for (policy decides who may pick one).
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// `{"ip_address", "mac_address"}` of an allowed address pair.
pub struct PairReq {
    /// An address or a CIDR prefix the port may also send from.
    pub ip_address: String,
    #[serde(default)]
    /// The MAC that goes with it; absent: the port's own.
    pub mac_address: Option<String>,
}

macro_rules! attrs {
    ($t:ty, post: $post:expr, put: $put:expr) => {
        impl Attrs for $t {
            fn read_only(op: &str) -> &'static [&'static str] {
                if op == "PUT" {
                    $put
                } else {
                    $post
                }
            }
        }
    };
}

/// `POST /networks` and `PUT /networks/{id}` attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkReq {
    #[serde(default, deserialize_with = "de::name")]
    /// Display name (at most 255 characters).
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// Free text (at most 255 characters).
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner; only an admin may name another project.
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner under its legacy name; must agree with `project_id`.
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// False: the network carries no traffic (its ports report DOWN).
    pub admin_state_up: Option<bool>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// Visible to and usable by every project (admin only).
    pub shared: Option<bool>,
    #[serde(default, rename = "router:external", deserialize_with = "de::boolean")]
    /// `router:external` (admin only).
    pub router_external: Option<bool>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// The default of its ports' `port_security_enabled`.
    pub port_security_enabled: Option<bool>,
    #[serde(default, deserialize_with = "de::int")]
    /// The MTU; null: derived from the segment.
    pub mtu: Option<Option<i64>>,
    #[serde(default)]
    /// Accepted for clients that send it; weft has one zone.
    pub availability_zone_hints: Option<Value>,
    #[serde(
        default,
        rename = "provider:network_type",
        deserialize_with = "de::name"
    )]
    /// `provider:network_type` (admin only): flat, vlan, vxlan, geneve or local.
    pub network_type: Option<String>,
    #[serde(
        default,
        rename = "provider:physical_network",
        deserialize_with = "de::name_or_null"
    )]
    /// `provider:physical_network` (admin only); null: none.
    pub physical_network: Option<Option<String>>,
    #[serde(
        default,
        rename = "provider:segmentation_id",
        deserialize_with = "de::int"
    )]
    /// `provider:segmentation_id` (admin only): VLAN id or VNI; null: allocated.
    pub segmentation_id: Option<Option<i64>>,
}
attrs!(NetworkReq, post: &["id", "status", "subnets"],
       put: &["id", "status", "subnets", "project_id", "tenant_id"]);

/// `POST /subnets` and `PUT /subnets/{id}` attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubnetReq {
    #[serde(default, deserialize_with = "de::name")]
    /// The network (required on create, fixed after).
    pub network_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// Display name (at most 255 characters).
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// Free text (at most 255 characters).
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner; only an admin may name another project.
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner under its legacy name; must agree with `project_id`.
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de::int")]
    /// 4 or 6; null is refused.
    pub ip_version: Option<Option<i64>>,
    #[serde(default, deserialize_with = "de::name")]
    /// The subnet's prefix (required on create, fixed after).
    pub cidr: Option<String>,
    #[serde(default, deserialize_with = "de::name_or_null")]
    /// The gateway; null: none; absent: the first address.
    pub gateway_ip: Option<Option<String>>,
    #[serde(default, deserialize_with = "de::list")]
    /// Where addresses are allocated from; absent: the whole prefix but the gateway.
    pub allocation_pools: Option<Vec<PoolReq>>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// Whether DHCP serves the subnet.
    pub enable_dhcp: Option<bool>,
    #[serde(default, deserialize_with = "de::list")]
    /// DNS servers handed to instances.
    pub dns_nameservers: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::list")]
    /// Extra routes handed to instances.
    pub host_routes: Option<Vec<RouteReq>>,
    #[serde(default, deserialize_with = "de::name_or_null")]
    /// IPv6 router advertisement mode; null: none.
    pub ipv6_ra_mode: Option<Option<String>>,
    #[serde(default, deserialize_with = "de::name_or_null")]
    /// IPv6 address mode; null: none.
    pub ipv6_address_mode: Option<Option<String>>,
    #[serde(default)]
    /// Accepted only as null: weft has no subnet pools.
    pub subnetpool_id: Option<Value>,
    #[serde(default)]
    /// Accepted only as null: weft has no routed segments.
    pub segment_id: Option<Value>,
    #[serde(default)]
    /// Accepted only as empty: weft has no service subnets.
    pub service_types: Option<Value>,
    #[serde(default)]
    /// Accepted only as false: weft has no subnet pools.
    pub use_default_subnetpool: Option<Value>,
}
attrs!(SubnetReq, post: &["id"],
       put: &["id", "cidr", "ip_version", "network_id", "project_id", "tenant_id"]);

/// `POST /ports` and `PUT /ports/{id}` attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortReq {
    #[serde(default, deserialize_with = "de::name")]
    /// The network (required on create, fixed after).
    pub network_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// Display name (at most 255 characters).
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// Free text (at most 255 characters).
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner; only an admin may name another project.
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner under its legacy name; must agree with `project_id`.
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The MAC; absent: generated.
    pub mac_address: Option<String>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// False: the port carries no traffic (it reports DOWN).
    pub admin_state_up: Option<bool>,
    #[serde(default, deserialize_with = "de::list")]
    /// The addresses asked for; absent: one from each subnet of the network.
    pub fixed_ips: Option<Vec<FixedIpReq>>,
    #[serde(default, deserialize_with = "de::name")]
    /// What uses the port (an instance id).
    pub device_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// What kind of thing uses it (`compute:nova`, `network:dhcp`).
    pub device_owner: Option<String>,
    #[serde(default, rename = "binding:host_id", deserialize_with = "de::name")]
    /// `binding:host_id`: the host whose agent wires the port.
    pub binding_host_id: Option<String>,
    /// null resets it to `{}`.
    #[serde(default, rename = "binding:profile", deserialize_with = "de::present")]
    pub binding_profile: Option<Option<Map<String, Value>>>,
    #[serde(default, rename = "binding:vnic_type", deserialize_with = "de::name")]
    /// `binding:vnic_type`: only `normal` is carried.
    pub binding_vnic_type: Option<String>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// Anti-spoofing on; absent: the network's setting.
    pub port_security_enabled: Option<bool>,
    #[serde(default, deserialize_with = "de::list")]
    /// Its security groups; absent: the project's default group.
    pub security_groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::list")]
    /// Extra (address, MAC) pairs it may send from.
    pub allowed_address_pairs: Option<Vec<PairReq>>,
    #[serde(default)]
    /// Accepted for clients that send it; weft runs no DHCP agent.
    pub extra_dhcp_opts: Option<Value>,
}
attrs!(PortReq, post: &["id", "status", "binding:vif_type", "binding:vif_details"],
       put: &["id", "status", "network_id", "project_id", "tenant_id",
              "binding:vif_type", "binding:vif_details"]);

impl PortReq {
    /// The attributes of `PORT_ATTRS`-style policy checks that the request sets
    /// (`fixed_ips:ip_address`: some entry asks for a specific address).
    pub fn has(&self, attr: &str) -> bool {
        match attr {
            "mac_address" => self.mac_address.is_some(),
            "fixed_ips" => self.fixed_ips.is_some(),
            "fixed_ips:ip_address" => self
                .fixed_ips
                .as_ref()
                .is_some_and(|ips| ips.iter().any(|f| f.ip_address.is_some())),
            "binding:host_id" => self.binding_host_id.is_some(),
            "binding:profile" => self.binding_profile.is_some(),
            "port_security_enabled" => self.port_security_enabled.is_some(),
            "allowed_address_pairs" => self.allowed_address_pairs.is_some(),
            "device_owner" => self.device_owner.is_some(),
            _ => false,
        }
    }
}

impl NetworkReq {
    /// Whether the request sets `attr` (for policy rules on attributes).
    pub fn has(&self, attr: &str) -> bool {
        match attr {
            "shared" => self.shared.is_some(),
            "router:external" => self.router_external.is_some(),
            "provider:network_type" => self.network_type.is_some(),
            "provider:physical_network" => self.physical_network.is_some(),
            "provider:segmentation_id" => self.segmentation_id.is_some(),
            _ => false,
        }
    }
}

/// `POST /security-groups` and `PUT /security-groups/{id}` attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecurityGroupReq {
    #[serde(default, deserialize_with = "de::name")]
    /// Display name (at most 255 characters).
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// Free text (at most 255 characters).
    pub description: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner; only an admin may name another project.
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner under its legacy name; must agree with `project_id`.
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de::boolean")]
    /// Stateful (replies allowed back) or stateless.
    pub stateful: Option<bool>,
}
attrs!(SecurityGroupReq, post: &["id"], put: &["id", "project_id", "tenant_id"]);

/// `POST /security-group-rules` attributes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleReq {
    #[serde(default, deserialize_with = "de::name")]
    /// The group the rule belongs to (required).
    pub security_group_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner; only an admin may name another project.
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// The owner under its legacy name; must agree with `project_id`.
    pub tenant_id: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// `ingress` or `egress` (required).
    pub direction: Option<String>,
    #[serde(default, deserialize_with = "de::name")]
    /// `IPv4` (default) or `IPv6`; must agree with the remote prefix.
    pub ethertype: Option<String>,
    /// A name ("tcp"), a number (6 or "6"), or null / "" / "any" for any.
    #[serde(default)]
    pub protocol: Option<Value>,
    /// Lowest port (ICMP: type), an integer or its text; null: any. Read by
    /// the service, which words a bad value as Neutron does.
    #[serde(default)]
    pub port_range_min: Option<Value>,
    /// Highest port (ICMP: code), as `port_range_min`.
    #[serde(default)]
    pub port_range_max: Option<Value>,
    #[serde(default, deserialize_with = "de::name_or_null")]
    /// The remote end's prefix; null: anywhere.
    pub remote_ip_prefix: Option<Option<String>>,
    #[serde(default, deserialize_with = "de::name_or_null")]
    /// The remote end is any member of this group.
    pub remote_group_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "de::name")]
    /// Free text (at most 255 characters).
    pub description: Option<String>,
    #[serde(default)]
    /// Accepted only as null: weft has no address groups.
    pub remote_address_group_id: Option<Value>,
}
attrs!(RuleReq, post: &["id"], put: &["id"]);
