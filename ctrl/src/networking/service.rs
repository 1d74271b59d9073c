//! The networking service: pure functions from (state, caller, request) to
//! (result, changes). No I/O here: storage commits the changes, the HTTP
//! layer renders the result. Time and identifiers come in through `Env`.

use super::body::{
    FixedIpReq, NetworkReq, PairReq, PoolReq, PortReq, RouteReq, RuleReq, SecurityGroupReq,
    SubnetReq,
};
use super::config::{Segments, MAX_VNI};
use super::error::{NetError, NetResult};
use super::ipam::{self, Cidr, Range};
use super::model::*;
use super::state::{Change, Kind, State};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use weft_identity::policy::Credentials;

/// The caller, as the token says.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller's user id.
    pub user_id: String,
    /// The token's project: what it owns.
    pub project_id: Option<String>,
    /// Neutron's `context.is_admin`: the caller holds the admin role.
    pub is_admin: bool,
    /// The whole credentials, for policy rules.
    pub creds: Credentials,
}

impl Ctx {
    /// The caller of a validated token.
    pub fn new(creds: Credentials) -> Ctx {
        Ctx {
            user_id: creds.user_id.clone(),
            project_id: creds.project_id.clone(),
            is_admin: creds.roles.iter().any(|r| r == "admin"),
            creds,
        }
    }

    fn owns(&self, project_id: &str) -> bool {
        self.is_admin || self.project_id.as_deref() == Some(project_id)
    }
}

/// Policy check for one action against its target (see `policy.rs`).
pub trait Authz {
    /// Ok when policy allows `action` on `target` for the caller, else 403 (or 404 to hide it).
    fn check(&self, ctx: &Ctx, action: &str, target: &Value) -> NetResult<()>;
}

/// Where new identifiers and MACs come from (random in the server, fixed in tests).
pub trait Ids {
    /// A new resource id (a UUID).
    fn uuid(&mut self) -> String;
    /// Three random bytes for the `fa:16:3e` MAC prefix.
    fn mac_tail(&mut self) -> [u8; 3];
}

/// Random ids and MACs: the server's [`Ids`].
pub struct RandomIds;

impl Ids for RandomIds {
    fn uuid(&mut self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
    fn mac_tail(&mut self) -> [u8; 3] {
        rand::random()
    }
}

/// Everything a write needs besides the state: clock, ids, policy, segment config.
pub struct Env<'a> {
    /// Now, as the records' timestamps take it.
    pub now: String,
    /// Where new ids and MACs come from.
    pub ids: &'a mut dyn Ids,
    /// The policy checks.
    pub authz: &'a dyn Authz,
    /// The segment ranges tenant networks draw from.
    pub segs: &'a Segments,
}

/// A write's answer and the changes to commit for it.
pub type Write<T> = NetResult<(T, Vec<Change>)>;

// ---------------------------------------------------------------- visibility

/// Neutron's `get_network`: the owner's, shared, or external (every
/// project may see the networks its routers' gateways go to).
pub fn network_visible(ctx: &Ctx, n: &Network) -> bool {
    ctx.owns(&n.project_id) || n.shared || n.router_external
}

/// Neutron's `get_subnet`: the owner's, or on a network the caller owns or
/// that is shared. An external network's subnets stay hidden (tempest's
/// test_external_network_visibility).
pub fn subnet_visible(st: &State, ctx: &Ctx, s: &Subnet) -> bool {
    ctx.owns(&s.project_id)
        || st
            .networks
            .get(&s.network_id)
            .is_some_and(|n| ctx.owns(&n.project_id) || n.shared)
}

/// Whether the caller may see the port: its owner, the network's owner, or an admin.
pub fn port_visible(st: &State, ctx: &Ctx, p: &Port) -> bool {
    ctx.owns(&p.project_id)
        || st
            .networks
            .get(&p.network_id)
            .is_some_and(|n| ctx.owns(&n.project_id))
}

/// Whether the caller may see the security group: its owner or an admin.
pub fn sg_visible(ctx: &Ctx, g: &SecurityGroup) -> bool {
    ctx.owns(&g.project_id)
}

/// The network, or 404 when absent or not visible to the caller.
pub fn get_network<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s Network> {
    st.networks
        .get(id)
        .filter(|n| network_visible(ctx, n))
        .ok_or_else(|| NetError::not_found("Network", id))
}

/// The subnet, or 404 when absent or not visible to the caller.
pub fn get_subnet<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s Subnet> {
    st.subnets
        .get(id)
        .filter(|s| subnet_visible(st, ctx, s))
        .ok_or_else(|| NetError::not_found("Subnet", id))
}

/// The port, or 404 when absent or not visible to the caller.
pub fn get_port<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s Port> {
    st.ports
        .get(id)
        .filter(|p| port_visible(st, ctx, p))
        .ok_or_else(|| NetError::not_found("Port", id))
}

/// The security group, or 404 when absent or not visible to the caller.
pub fn get_sg<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s SecurityGroup> {
    st.security_groups
        .get(id)
        .filter(|g| sg_visible(ctx, g))
        .ok_or_else(|| NetError::not_found("Security group", id))
}

/// The rule, or 404 when absent or not visible to the caller.
pub fn get_rule<'s>(st: &'s State, ctx: &Ctx, id: &str) -> NetResult<&'s SecurityGroupRule> {
    st.rules
        .get(id)
        .filter(|r| ctx.owns(&r.project_id))
        .ok_or_else(|| NetError::not_found("Security group rule", id))
}

// ---------------------------------------------------------------- helpers

/// `project_id`/`tenant_id` from the body, else the caller's project.
fn project_of(p: Option<String>, t: Option<String>, ctx: &Ctx) -> NetResult<String> {
    let chosen = match (p, t) {
        (Some(p), Some(t)) if p != t => {
            return Err(NetError::invalid(
                "project_id",
                "project_id and tenant_id do not match",
            ))
        }
        (Some(p), _) | (None, Some(p)) => {
            // Neutron's _validate_privileges: only an admin acts for
            // another project (and Neutron does not ask identity whether
            // that project exists).
            if !ctx.is_admin && ctx.project_id.as_deref() != Some(p.as_str()) {
                return Err(NetError::bad(
                    "HTTPBadRequest",
                    "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
                ));
            }
            Some(p)
        }
        (None, None) => ctx.project_id.clone(),
    };
    chosen.filter(|p| !p.is_empty()).ok_or_else(|| {
        NetError::invalid(
            "project_id",
            "a project is required (the token has no project scope)",
        )
    })
}

fn check_attrs(
    env: &Env,
    ctx: &Ctx,
    action: &str,
    has: impl Fn(&str) -> bool,
    attrs: &[&str],
    target: &Value,
) -> NetResult<()> {
    env.authz.check(ctx, action, target)?;
    for a in attrs {
        if has(a) {
            env.authz.check(ctx, &format!("{action}:{a}"), target)?;
        }
    }
    Ok(())
}

/// Attributes weft does not implement: accepted only when they ask for nothing.
fn accept_empty(field: &str, v: Option<Value>) -> NetResult<()> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(Value::Bool(false)) => Ok(()),
        Some(v) => Err(NetError::invalid(field, format!("'{v}' is not supported"))),
    }
}

/// Whether `s` is a MAC in `aa:bb:cc:dd:ee:ff` form.
pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
        && s != "00:00:00:00:00:00"
}

// ---------------------------------------------------------------- networks

const NET_PROVIDER: [&str; 3] = [
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
];

fn taken_segments(st: &State) -> HashSet<Segment> {
    st.networks.values().map(|n| n.segment.clone()).collect()
}

fn tenant_segment(st: &State, segs: &Segments) -> NetResult<Segment> {
    let taken = taken_segments(st);
    for t in &segs.tenant_types {
        let candidates: Vec<(Option<String>, (u32, u32))> = match t.as_str() {
            "vlan" => segs
                .vlan
                .iter()
                .filter_map(|r| r.range.map(|rg| (Some(r.physnet.clone()), rg)))
                .collect(),
            "vxlan" => segs.vxlan.iter().map(|r| (None, *r)).collect(),
            "geneve" => segs.geneve.iter().map(|r| (None, *r)).collect(),
            "local" => {
                return Ok(Segment {
                    network_type: "local".into(),
                    physical_network: None,
                    segmentation_id: None,
                })
            }
            _ => Vec::new(),
        };
        for (physnet, (lo, hi)) in candidates {
            for id in lo..=hi {
                let s = Segment {
                    network_type: t.clone(),
                    physical_network: physnet.clone(),
                    segmentation_id: Some(id),
                };
                if !taken.contains(&s) {
                    return Ok(s);
                }
            }
        }
    }
    Err(NetError::Unavailable {
        kind: "NoNetworkAvailable",
        message: "Unable to create the network. No tenant network is available for allocation."
            .into(),
    })
}

fn provider_segment(
    st: &State,
    segs: &Segments,
    ntype: Option<String>,
    physnet: Option<Option<String>>,
    seg_id: Option<Option<i64>>,
) -> NetResult<Segment> {
    let physnet = physnet.flatten().filter(|p| !p.is_empty());
    let seg_id = seg_id.flatten();
    let ntype = ntype.ok_or_else(|| {
        NetError::invalid(
            "provider:network_type",
            "provider:network_type is required when other provider attributes are set",
        )
    })?;
    let taken = taken_segments(st);
    let in_use = |s: &Segment, kind: &'static str, what: String| {
        if taken.contains(s) {
            Err(NetError::conflict(kind, what))
        } else {
            Ok(())
        }
    };
    match ntype.as_str() {
        "flat" => {
            let p = physnet.ok_or_else(|| {
                NetError::invalid(
                    "provider:physical_network",
                    "physical_network required for flat provider network",
                )
            })?;
            if seg_id.is_some() {
                return Err(NetError::invalid(
                    "provider:segmentation_id",
                    "segmentation_id not allowed for flat provider network",
                ));
            }
            if !segs.flat_allowed(&p) {
                return Err(NetError::invalid(
                    "provider:physical_network",
                    format!("physical_network '{p}' unknown for flat provider network"),
                ));
            }
            let s = Segment {
                network_type: ntype,
                physical_network: Some(p.clone()),
                segmentation_id: None,
            };
            in_use(
                &s,
                "FlatNetworkInUse",
                format!("Unable to create the flat network. Physical network {p} is in use."),
            )?;
            Ok(s)
        }
        "vlan" => {
            let p = physnet.ok_or_else(|| {
                NetError::invalid(
                    "provider:physical_network",
                    "physical_network required for VLAN provider network",
                )
            })?;
            if !segs.vlan_physnet_known(&p) {
                return Err(NetError::invalid(
                    "provider:physical_network",
                    format!("physical_network '{p}' unknown for VLAN provider network"),
                ));
            }
            let id = match seg_id {
                Some(v) => {
                    if !(1..=4094).contains(&v) {
                        return Err(NetError::invalid(
                            "provider:segmentation_id",
                            format!("segmentation_id {v} out of range (1 through 4094)"),
                        ));
                    }
                    v as u32
                }
                None => {
                    let range = segs
                        .vlan
                        .iter()
                        .find(|r| r.physnet == p)
                        .and_then(|r| r.range);
                    let Some((lo, hi)) = range else {
                        return Err(NetError::invalid(
                            "provider:segmentation_id",
                            format!("physical_network '{p}' has no VLAN range to allocate from; give a segmentation_id"),
                        ));
                    };
                    (lo..=hi)
                        .find(|id| {
                            !taken.contains(&Segment {
                                network_type: "vlan".into(),
                                physical_network: Some(p.clone()),
                                segmentation_id: Some(*id),
                            })
                        })
                        .ok_or_else(|| NetError::Unavailable {
                            kind: "NoNetworkAvailable",
                            message: format!("No VLAN is available on physical network {p}."),
                        })?
                }
            };
            let s = Segment {
                network_type: ntype,
                physical_network: Some(p.clone()),
                segmentation_id: Some(id),
            };
            in_use(&s, "VlanIdInUse", format!("Unable to create the network. The VLAN {id} on physical network {p} is in use."))?;
            Ok(s)
        }
        "vxlan" | "geneve" => {
            if physnet.is_some() {
                return Err(NetError::invalid(
                    "provider:physical_network",
                    format!("provider:physical_network specified for {ntype} network"),
                ));
            }
            let ranges = if ntype == "vxlan" {
                &segs.vxlan
            } else {
                &segs.geneve
            };
            let id = match seg_id {
                Some(v) => {
                    if !(1..=i64::from(MAX_VNI)).contains(&v) {
                        return Err(NetError::invalid(
                            "provider:segmentation_id",
                            format!("{ntype} network segmentation_id {v} out of range (1 through {MAX_VNI})"),
                        ));
                    }
                    v as u32
                }
                None => ranges
                    .iter()
                    .flat_map(|(lo, hi)| *lo..=*hi)
                    .find(|id| {
                        !taken.contains(&Segment {
                            network_type: ntype.clone(),
                            physical_network: None,
                            segmentation_id: Some(*id),
                        })
                    })
                    .ok_or_else(|| NetError::Unavailable {
                        kind: "NoNetworkAvailable",
                        message: format!("No {ntype} id is available."),
                    })?,
            };
            let s = Segment {
                network_type: ntype.clone(),
                physical_network: None,
                segmentation_id: Some(id),
            };
            in_use(
                &s,
                "TunnelIdInUse",
                format!("Unable to create the network. The tunnel ID {id} is in use."),
            )?;
            Ok(s)
        }
        "local" => {
            if physnet.is_some() || seg_id.is_some() {
                return Err(NetError::invalid(
                    "provider:network_type",
                    "local networks take no physical_network or segmentation_id",
                ));
            }
            Ok(Segment {
                network_type: ntype,
                physical_network: None,
                segmentation_id: None,
            })
        }
        other => Err(NetError::invalid(
            "provider:network_type",
            format!("network_type value '{other}' not supported"),
        )),
    }
}

/// The smallest MTU an IP version works over (RFC 791: 68; RFC 8200: 1280).
fn min_mtu(ip_version: u8) -> u32 {
    if ip_version == 6 {
        1280
    } else {
        68
    }
}

/// Neutron's NetworkMTUSubnetConflict (409): the network's MTU is below what
/// one of its subnets' IP versions needs (on subnet create and on MTU update).
fn mtu_too_small(network_id: &str, ip_version: u8) -> NetError {
    NetError::conflict(
        "NetworkMTUSubnetConflict",
        format!(
            "MTU of {network_id} is not valid, subnet requires a minimum of {}",
            min_mtu(ip_version)
        ),
    )
}

/// A requested MTU as Neutron's net-mtu-writable takes it: non-negative, 0
/// meaning the type's maximum, and no more than that maximum. A value below
/// an IP version's minimum is the network's to have; its subnets are what
/// refuse it (see [`mtu_too_small`]).
fn check_mtu(segs: &Segments, ntype: &str, mtu: Option<Option<i64>>) -> NetResult<Option<u32>> {
    match mtu.flatten() {
        None => Ok(None),
        Some(v) => {
            let max = segs.max_mtu(ntype);
            if v < 0 {
                Err(NetError::invalid(
                    "mtu",
                    format!("'{v}' should be non-negative"),
                ))
            } else if v > i64::from(max) {
                Err(NetError::invalid(
                    "mtu",
                    format!("Requested MTU is too big, maximum is {max} for a {ntype} network"),
                ))
            } else if v == 0 {
                Ok(Some(max))
            } else {
                Ok(Some(v as u32))
            }
        }
    }
}

/// `POST /networks`: checks policy and provider attributes, draws a tenant segment when none is given.
pub fn create_network(st: &State, env: &mut Env, ctx: &Ctx, req: &NetworkReq) -> Write<Network> {
    let f = req.clone();
    let project = project_of(f.project_id, f.tenant_id, ctx)?;
    let target = json!({"project_id": project, "tenant_id": project});
    check_attrs(
        env,
        ctx,
        "create_network",
        |a| req.has(a),
        &[
            "shared",
            "router:external",
            NET_PROVIDER[0],
            NET_PROVIDER[1],
            NET_PROVIDER[2],
        ],
        &target,
    )?;
    let name = f.name.unwrap_or_default();
    let description = f.description.unwrap_or_default();
    let admin_state_up = f.admin_state_up.unwrap_or(true);
    let shared = f.shared.unwrap_or(false);
    let router_external = f.router_external.unwrap_or(false);
    let port_security_enabled = f.port_security_enabled.unwrap_or(true);
    let mtu = f.mtu;
    accept_empty("availability_zone_hints", f.availability_zone_hints)?;
    let ntype = f.network_type;
    let physnet = f.physical_network;
    let seg_id = f.segmentation_id;
    let (segment, tenant_segment) =
        if ntype.is_none() && physnet.clone().flatten().is_none() && seg_id.flatten().is_none() {
            (self::tenant_segment(st, env.segs)?, true)
        } else {
            (
                provider_segment(st, env.segs, ntype, physnet, seg_id)?,
                false,
            )
        };
    let mtu = check_mtu(env.segs, &segment.network_type, mtu)?
        .unwrap_or_else(|| env.segs.max_mtu(&segment.network_type));
    // The project's first network write brings its default group (as Neutron's
    // network BEFORE_CREATE handler does), in the same commit.
    let (_, mut changes) = ensure_default_sg(st, env, &project);
    let n = Network {
        id: env.ids.uuid(),
        name,
        project_id: project,
        admin_state_up,
        shared,
        router_external,
        mtu,
        status: "ACTIVE".into(),
        port_security_enabled,
        segment,
        tenant_segment,
        std: Std::new(&env.now, description),
    };
    changes.push(Change::Network(n.clone()));
    Ok((n, changes))
}

/// `PUT /networks/{id}`.
pub fn update_network(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    req: &NetworkReq,
) -> Write<Network> {
    let old = get_network(st, ctx, id)?;
    let f = req.clone();
    let target =
        json!({"project_id": old.project_id, "tenant_id": old.project_id, "shared": old.shared});
    check_attrs(
        env,
        ctx,
        "update_network",
        |a| req.has(a),
        &[
            "shared",
            "router:external",
            NET_PROVIDER[0],
            NET_PROVIDER[1],
            NET_PROVIDER[2],
        ],
        &target,
    )?;
    let mut n = old.clone();
    if let Some(v) = f.name {
        n.name = v;
    }
    if let Some(v) = f.description {
        n.std.description = v;
    }
    if let Some(v) = f.admin_state_up {
        n.admin_state_up = v;
    }
    if let Some(v) = f.shared {
        if !v && n.shared {
            let foreign = st
                .ports
                .values()
                .any(|p| p.network_id == n.id && p.project_id != n.project_id);
            if foreign {
                return Err(NetError::conflict(
                    "InvalidSharedSetting",
                    format!("Unable to reconfigure sharing settings for network {}. Multiple tenants are using it.", n.id),
                ));
            }
        }
        n.shared = v;
    }
    if let Some(v) = f.router_external {
        n.router_external = v;
    }
    if let Some(v) = f.port_security_enabled {
        n.port_security_enabled = v;
    }
    if let Some(v) = check_mtu(env.segs, &n.segment.network_type, f.mtu)? {
        if let Some(s) = st.subnets_of(&n.id).find(|s| v < min_mtu(s.ip_version)) {
            return Err(mtu_too_small(&n.id, s.ip_version));
        }
        n.mtu = v;
    }
    accept_empty("availability_zone_hints", f.availability_zone_hints)?;
    let t = f.network_type;
    let p = f.physical_network;
    let s = f.segmentation_id;
    let same = t.is_none_or(|t| t == n.segment.network_type)
        && p.is_none_or(|p| p == n.segment.physical_network)
        && s.is_none_or(|s| s.map(|v| v as u32) == n.segment.segmentation_id);
    if !same {
        return Err(NetError::invalid(
            "provider:network_type",
            "Plugin does not support updating provider attributes",
        ));
    }
    n.std.touch(&env.now);
    Ok((n.clone(), vec![Change::Network(n)]))
}

/// `DELETE /networks/{id}`: refused (409) while ports other than the network's own use it; releases a tenant segment.
pub fn delete_network(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let n = get_network(st, ctx, id)?;
    env.authz.check(
        ctx,
        "delete_network",
        &json!({"project_id": n.project_id, "tenant_id": n.project_id}),
    )?;
    let ports: Vec<&Port> = st.ports.values().filter(|p| p.network_id == n.id).collect();
    if ports
        .iter()
        .any(|p| !p.device_owner.starts_with("network:dhcp"))
    {
        return Err(NetError::conflict(
            "NetworkInUse",
            format!("Unable to complete operation on network {id}. There are one or more ports still in use on the network."),
        ));
    }
    let mut changes: Vec<Change> = ports
        .iter()
        .map(|p| Change::Delete(Kind::Port, p.id.clone()))
        .collect();
    changes.extend(
        st.subnets_of(id)
            .map(|s| Change::Delete(Kind::Subnet, s.id.clone())),
    );
    changes.push(Change::Delete(Kind::Network, id.to_string()));
    Ok(((), changes))
}

// ---------------------------------------------------------------- subnets

fn parse_pools(cidr: &Cidr, v: &[PoolReq]) -> NetResult<Vec<Range>> {
    v.iter()
        .map(|item| {
            let (start, end) = (item.start.as_str(), item.end.as_str());
            let parse = |s: &str| {
                ipam::parse_ip(s)
                    .filter(|(ver, _)| *ver == cidr.version)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        NetError::invalid(
                            "allocation_pools",
                            format!("'{s}' is not a valid IPv{} address", cidr.version),
                        )
                    })
            };
            Ok(Range {
                start: parse(start)?,
                end: parse(end)?,
            })
        })
        .collect()
}

fn pools_json(version: u8, pools: &[Range]) -> Vec<Pool> {
    pools
        .iter()
        .map(|r| Pool {
            start: ipam::fmt_ip(version, r.start),
            end: ipam::fmt_ip(version, r.end),
        })
        .collect()
}

fn stored_pools(s: &Subnet) -> Vec<Range> {
    s.allocation_pools
        .iter()
        .filter_map(|p| {
            Some(Range {
                start: ipam::parse_ip(&p.start)?.1,
                end: ipam::parse_ip(&p.end)?.1,
            })
        })
        .collect()
}

fn parse_gateway(cidr: &Cidr, v: &str) -> NetResult<u128> {
    let (ver, g) = ipam::parse_ip(v).ok_or_else(|| {
        NetError::invalid("gateway_ip", format!("'{v}' is not a valid IP address"))
    })?;
    if ver != cidr.version || !cidr.contains(ver, g) {
        return Err(NetError::invalid(
            "gateway_ip",
            format!("Gateway ip {v} is not in subnet {cidr}"),
        ));
    }
    if cidr.version == 4 && cidr.prefix < 31 && (g == cidr.first() || g == cidr.last()) {
        return Err(NetError::invalid(
            "gateway_ip",
            format!("Gateway ip {v} is the network or broadcast address of {cidr}"),
        ));
    }
    Ok(g)
}

fn parse_dns(version_hint: u8, v: Vec<String>) -> NetResult<Vec<String>> {
    let _ = version_hint;
    let mut seen = BTreeSet::new();
    for s in &v {
        if ipam::parse_ip(s).is_none() {
            return Err(NetError::invalid(
                "dns_nameservers",
                format!("'{s}' is not a valid nameserver"),
            ));
        }
        if !seen.insert(s.clone()) {
            return Err(NetError::invalid(
                "dns_nameservers",
                format!("Duplicate nameserver '{s}'"),
            ));
        }
    }
    Ok(v)
}

fn parse_routes(cidr: &Cidr, v: &[RouteReq]) -> NetResult<Vec<HostRoute>> {
    v.iter()
        .map(|item| {
            let (dest, hop) = (item.destination.as_str(), item.nexthop.as_str());
            let d = Cidr::parse(dest).map_err(|e| NetError::invalid("host_routes", e))?;
            let h = ipam::parse_ip(hop).ok_or_else(|| {
                NetError::invalid("host_routes", format!("'{hop}' is not a valid nexthop"))
            })?;
            if d.version != cidr.version || h.0 != cidr.version {
                return Err(NetError::invalid(
                    "host_routes",
                    format!("route {dest} via {hop} is not IPv{}", cidr.version),
                ));
            }
            Ok(HostRoute {
                destination: dest.to_string(),
                nexthop: hop.to_string(),
            })
        })
        .collect()
}

fn ipv6_mode(v: Option<Option<String>>, field: &str, version: u8) -> NetResult<Option<String>> {
    let v = v.flatten();
    if let Some(m) = &v {
        if version != 6 {
            return Err(NetError::invalid(
                field,
                format!("{field} set on an IPv4 subnet"),
            ));
        }
        if !["slaac", "dhcpv6-stateful", "dhcpv6-stateless"].contains(&m.as_str()) {
            return Err(NetError::invalid(
                field,
                format!("'{m}' is not in [slaac, dhcpv6-stateful, dhcpv6-stateless]"),
            ));
        }
    }
    Ok(v)
}

/// Neutron's checks of an IPv6 subnet's modes together: the router
/// advertisements and the address assignment must agree when both are given
/// (radvd and dnsmasq cannot be told different things), either needs DHCP
/// on, and automatic (EUI-64) addresses need a /64.
fn check_ipv6_modes(
    ra: Option<&str>,
    am: Option<&str>,
    enable_dhcp: bool,
    cidr: &Cidr,
) -> NetResult<()> {
    let bad =
        |m: String| NetError::bad("InvalidInput", format!("Invalid input for operation: {m}."));
    if (ra.is_some() || am.is_some()) && !enable_dhcp {
        return Err(bad(
            "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False"
                .into(),
        ));
    }
    if let (Some(r), Some(a)) = (ra, am) {
        if r != a {
            return Err(bad(format!(
                "ipv6_ra_mode set to '{r}' with ipv6_address_mode set to '{a}' is not valid. If both attributes are set, they must be the same value"
            )));
        }
    }
    if auto_address(ra, am) && cidr.prefix != 64 {
        return Err(bad(format!(
            "Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64"
        )));
    }
    Ok(())
}

/// Whether hosts on a subnet with these modes configure their own addresses
/// (SLAAC or DHCPv6-stateless; Neutron's `is_auto_address_subnet`).
fn auto_address(ra: Option<&str>, am: Option<&str>) -> bool {
    let auto = |m: Option<&str>| matches!(m, Some("slaac" | "dhcpv6-stateless"));
    auto(am) || (am.is_none() && auto(ra))
}

/// The network `id` with its revision bumped: a subnet's create, update and
/// delete revise its network, as Neutron's `revises_on_change`.
fn revise_network(st: &State, env: &Env, id: &str) -> Option<Change> {
    let mut n = st.networks.get(id)?.clone();
    n.std.touch(&env.now);
    Some(Change::Network(n))
}

/// `POST /subnets`: checks the prefix, gateway and pools against the network's other subnets.
pub fn create_subnet(st: &State, env: &mut Env, ctx: &Ctx, req: &SubnetReq) -> Write<Subnet> {
    let f = req.clone();
    let network_id = f
        .network_id
        .ok_or_else(|| NetError::invalid("network_id", "network_id is required"))?;
    let net = get_network(st, ctx, &network_id)?;
    let project = project_of(f.project_id, f.tenant_id, ctx)?;
    env.authz.check(
        ctx,
        "create_subnet",
        &json!({"project_id": project, "tenant_id": project, "network_project_id": net.project_id}),
    )?;
    let ip_version = match f.ip_version.flatten() {
        None => 4,
        Some(4) => 4u8,
        Some(6) => 6u8,
        Some(v) => {
            return Err(NetError::invalid(
                "ip_version",
                format!("'{v}' is not in [4, 6]"),
            ))
        }
    };
    if net.mtu < min_mtu(ip_version) {
        return Err(mtu_too_small(&net.id, ip_version));
    }
    let cidr_s = f.cidr.ok_or_else(|| {
        NetError::invalid("cidr", "cidr is required (subnet pools are not supported)")
    })?;
    let cidr = Cidr::parse(&cidr_s).map_err(|e| NetError::invalid("cidr", e))?;
    if cidr.version != ip_version {
        return Err(NetError::invalid(
            "ip_version",
            format!("cidr '{cidr}' does not match ip_version {ip_version}"),
        ));
    }
    for other in st.subnets_of(&network_id) {
        if Cidr::parse(&other.cidr).is_ok_and(|o| o.overlaps(&cidr)) {
            return Err(NetError::invalid(
                "cidr",
                format!("Requested subnet with cidr: {cidr} for network: {network_id} overlaps with another subnet"),
            ));
        }
    }
    let gateway = match f.gateway_ip {
        Some(None) => None,
        Some(Some(g)) => Some(parse_gateway(&cidr, &g)?),
        None => {
            let first = cidr.usable().start;
            (cidr.usable().end > first || cidr.prefix == 32 || cidr.prefix == 128).then_some(first)
        }
    };
    let pools = match f.allocation_pools {
        Some(v) if !v.is_empty() => {
            let pools = parse_pools(&cidr, &v)?;
            ipam::validate_pools(&cidr, &pools, gateway)
                .map_err(|(field, r)| NetError::invalid(&field, r))?;
            pools
        }
        _ => ipam::default_pools(&cidr, gateway),
    };
    let name = f.name.unwrap_or_default();
    let description = f.description.unwrap_or_default();
    let enable_dhcp = f.enable_dhcp.unwrap_or(true);
    let dns = parse_dns(ip_version, f.dns_nameservers.unwrap_or_default())?;
    let routes = parse_routes(&cidr, &f.host_routes.unwrap_or_default())?;
    let ra = ipv6_mode(f.ipv6_ra_mode, "ipv6_ra_mode", ip_version)?;
    let am = ipv6_mode(f.ipv6_address_mode, "ipv6_address_mode", ip_version)?;
    check_ipv6_modes(ra.as_deref(), am.as_deref(), enable_dhcp, &cidr)?;
    accept_empty("subnetpool_id", f.subnetpool_id)?;
    accept_empty("segment_id", f.segment_id)?;
    accept_empty("service_types", f.service_types)?;
    accept_empty("use_default_subnetpool", f.use_default_subnetpool)?;
    let s = Subnet {
        id: env.ids.uuid(),
        name,
        network_id,
        project_id: project,
        ip_version,
        cidr: cidr.to_string(),
        gateway_ip: gateway.map(|g| ipam::fmt_ip(ip_version, g)),
        allocation_pools: pools_json(ip_version, &pools),
        enable_dhcp,
        dns_nameservers: dns,
        host_routes: routes,
        ipv6_ra_mode: ra,
        ipv6_address_mode: am,
        std: Std::new(&env.now, description),
    };
    let mut changes = vec![Change::Subnet(s.clone())];
    changes.extend(revise_network(st, env, &s.network_id));
    Ok((s, changes))
}

/// `PUT /subnets/{id}`.
pub fn update_subnet(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    req: &SubnetReq,
) -> Write<Subnet> {
    let old = get_subnet(st, ctx, id)?;
    let net_project = st
        .networks
        .get(&old.network_id)
        .map(|n| n.project_id.clone())
        .unwrap_or_default();
    env.authz.check(
        ctx,
        "update_subnet",
        &json!({"project_id": old.project_id, "tenant_id": old.project_id, "network_project_id": net_project}),
    )?;
    let f = req.clone();
    let cidr =
        Cidr::parse(&old.cidr).map_err(|e| NetError::Internal(format!("stored cidr: {e}")))?;
    let mut s = old.clone();
    if let Some(v) = f.name {
        s.name = v;
    }
    if let Some(v) = f.description {
        s.std.description = v;
    }
    if let Some(v) = f.enable_dhcp {
        s.enable_dhcp = v;
    }
    let mut gateway = s
        .gateway_ip
        .as_deref()
        .and_then(ipam::parse_ip)
        .map(|x| x.1);
    if let Some(g) = f.gateway_ip {
        gateway = match g {
            None => None,
            Some(g) => Some(parse_gateway(&cidr, &g)?),
        };
    }
    let mut pools = stored_pools(&s);
    if let Some(v) = f.allocation_pools {
        pools = parse_pools(&cidr, &v)?;
    }
    ipam::validate_pools(&cidr, &pools, gateway)
        .map_err(|(field, r)| NetError::invalid(&field, r))?;
    s.gateway_ip = gateway.map(|g| ipam::fmt_ip(cidr.version, g));
    s.allocation_pools = pools_json(cidr.version, &pools);
    if let Some(v) = f.dns_nameservers {
        s.dns_nameservers = parse_dns(cidr.version, v)?;
    }
    if let Some(v) = f.host_routes {
        s.host_routes = parse_routes(&cidr, &v)?;
    }
    for (field, v) in [
        ("ipv6_ra_mode", &f.ipv6_ra_mode),
        ("ipv6_address_mode", &f.ipv6_address_mode),
    ] {
        if v.is_some() {
            return Err(NetError::invalid(field, "cannot be updated"));
        }
    }
    accept_empty("subnetpool_id", f.subnetpool_id)?;
    accept_empty("segment_id", f.segment_id)?;
    accept_empty("service_types", f.service_types)?;
    accept_empty("use_default_subnetpool", f.use_default_subnetpool)?;
    s.std.touch(&env.now);
    let mut changes = vec![Change::Subnet(s.clone())];
    changes.extend(revise_network(st, env, &s.network_id));
    Ok((s, changes))
}

/// Neutron's ROUTER_INTERFACE_OWNERS: ports that are a router's leg on a subnet.
const ROUTER_INTERFACE_OWNERS: &[&str] = &[
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
];

/// `DELETE /subnets/{id}`: refused (409) while non-DHCP ports hold addresses
/// in it, except on SLAAC/DHCPv6-stateless subnets, whose addresses are
/// withdrawn from the ports.
pub fn delete_subnet(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let s = get_subnet(st, ctx, id)?;
    let net_project = st
        .networks
        .get(&s.network_id)
        .map(|n| n.project_id.clone())
        .unwrap_or_default();
    env.authz.check(
        ctx,
        "delete_subnet",
        &json!({"project_id": s.project_id, "tenant_id": s.project_id, "network_project_id": net_project}),
    )?;
    // As Neutron's _remove_subnet_ip_allocations_from_ports: a router's
    // interface always keeps the subnet; other ports keep it unless their
    // addresses are automatic (SLAAC, DHCPv6-stateless), which are simply
    // withdrawn from the ports; DHCP ports' addresses go with the subnet.
    let holders: Vec<&Port> = st
        .ports
        .values()
        .filter(|p| p.fixed_ips.iter().any(|f| f.subnet_id == id))
        .collect();
    let auto = auto_address(s.ipv6_ra_mode.as_deref(), s.ipv6_address_mode.as_deref());
    let blocks = |p: &&Port| {
        ROUTER_INTERFACE_OWNERS.contains(&p.device_owner.as_str())
            || (!auto && p.device_owner != "network:dhcp")
    };
    if holders.iter().any(blocks) {
        return Err(NetError::conflict(
            "SubnetInUse",
            format!("Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."),
        ));
    }
    let mut changes: Vec<Change> = holders
        .into_iter()
        .map(|p| {
            let mut p = p.clone();
            p.fixed_ips.retain(|f| f.subnet_id != id);
            p.std.touch(&env.now);
            Change::Port(p)
        })
        .collect();
    changes.push(Change::Delete(Kind::Subnet, id.to_string()));
    changes.extend(revise_network(st, env, &s.network_id));
    Ok(((), changes))
}

// ---------------------------------------------------------------- security groups

fn default_rules(env: &mut Env, sg: &SecurityGroup, with_ingress: bool) -> Vec<SecurityGroupRule> {
    let mut out = Vec::new();
    for ethertype in ["IPv4", "IPv6"] {
        let mut dirs = vec!["egress"];
        if with_ingress {
            dirs.push("ingress");
        }
        for direction in dirs {
            out.push(SecurityGroupRule {
                id: env.ids.uuid(),
                security_group_id: sg.id.clone(),
                project_id: sg.project_id.clone(),
                direction: direction.into(),
                ethertype: ethertype.into(),
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote_ip_prefix: None,
                remote_group_id: (direction == "ingress").then(|| sg.id.clone()),
                std: Std::new(&env.now, String::new()),
            });
        }
    }
    out
}

/// The project's `default` group: its id, and the changes that create it
/// when the project has none yet. Only writes call this (network, port and
/// security group creates); listing groups never creates one.
pub fn ensure_default_sg(st: &State, env: &mut Env, project: &str) -> (String, Vec<Change>) {
    if let Some(g) = st
        .security_groups
        .values()
        .find(|g| g.project_id == project && g.name == "default")
    {
        return (g.id.clone(), Vec::new());
    }
    let g = SecurityGroup {
        id: env.ids.uuid(),
        name: "default".into(),
        project_id: project.to_string(),
        stateful: true,
        std: Std::new(&env.now, "Default security group".into()),
    };
    let mut changes = vec![Change::SecurityGroup(g.clone())];
    changes.extend(default_rules(env, &g, true).into_iter().map(Change::Rule));
    (g.id, changes)
}

/// `POST /security-groups`: a new group gets Neutron's two egress rules.
pub fn create_sg(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &SecurityGroupReq,
) -> Write<SecurityGroup> {
    let f = req.clone();
    let project = project_of(f.project_id, f.tenant_id, ctx)?;
    env.authz.check(
        ctx,
        "create_security_group",
        &json!({"project_id": project, "tenant_id": project}),
    )?;
    let name = f.name.unwrap_or_default();
    let description = f.description.unwrap_or_default();
    let stateful = f.stateful.unwrap_or(true);
    let (_, mut changes) = ensure_default_sg(st, env, &project);
    if name == "default" {
        return Err(NetError::conflict(
            "SecurityGroupDefaultAlreadyExists",
            "Default security group already exists.",
        ));
    }
    let g = SecurityGroup {
        id: env.ids.uuid(),
        name,
        project_id: project,
        stateful,
        std: Std::new(&env.now, description),
    };
    changes.push(Change::SecurityGroup(g.clone()));
    changes.extend(default_rules(env, &g, false).into_iter().map(Change::Rule));
    Ok((g, changes))
}

/// `PUT /security-groups/{id}`.
pub fn update_sg(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    id: &str,
    req: &SecurityGroupReq,
) -> Write<SecurityGroup> {
    let old = get_sg(st, ctx, id)?;
    env.authz.check(
        ctx,
        "update_security_group",
        &json!({"project_id": old.project_id, "tenant_id": old.project_id}),
    )?;
    let f = req.clone();
    let mut g = old.clone();
    if let Some(v) = f.name {
        if old.name == "default" && v != "default" {
            return Err(NetError::conflict(
                "SecurityGroupCannotUpdateDefault",
                "Updating default security group not allowed.",
            ));
        }
        g.name = v;
    }
    if let Some(v) = f.description {
        g.std.description = v;
    }
    if let Some(v) = f.stateful {
        g.stateful = v;
    }
    g.std.touch(&env.now);
    Ok((g.clone(), vec![Change::SecurityGroup(g)]))
}

/// `DELETE /security-groups/{id}`: refused (409) while a port uses it; the default group cannot be deleted.
pub fn delete_sg(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let g = get_sg(st, ctx, id)?;
    env.authz.check(
        ctx,
        "delete_security_group",
        &json!({"project_id": g.project_id, "tenant_id": g.project_id}),
    )?;
    if g.name == "default" && !ctx.is_admin {
        return Err(NetError::conflict(
            "SecurityGroupCannotRemoveDefault",
            "Insufficient rights for removing default security group.",
        ));
    }
    if st
        .ports
        .values()
        .any(|p| p.security_groups.iter().any(|s| s == id))
    {
        return Err(NetError::conflict(
            "SecurityGroupInUse",
            format!("Security Group {id} in use."),
        ));
    }
    let mut changes: Vec<Change> = st
        .rules
        .values()
        .filter(|r| r.security_group_id == id || r.remote_group_id.as_deref() == Some(id))
        .map(|r| Change::Delete(Kind::Rule, r.id.clone()))
        .collect();
    changes.push(Change::Delete(Kind::SecurityGroup, id.to_string()));
    Ok(((), changes))
}

fn protocol_number(p: &str) -> Option<u8> {
    Some(match p {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "vrrp" => 112,
        other => other.parse().ok()?,
    })
}

/// `POST /security-group-rules`: refused (409) when the same rule exists.
pub fn create_rule(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &RuleReq,
) -> Write<SecurityGroupRule> {
    let f = req.clone();
    let sg_id = f
        .security_group_id
        .ok_or_else(|| NetError::invalid("security_group_id", "security_group_id is required"))?;
    let g = get_sg(st, ctx, &sg_id)?;
    let _ = project_of(f.project_id, f.tenant_id, ctx)?;
    env.authz.check(
        ctx,
        "create_security_group_rule",
        &json!({"project_id": g.project_id, "tenant_id": g.project_id}),
    )?;
    let direction = f
        .direction
        .ok_or_else(|| NetError::invalid("direction", "direction is required"))?;
    if direction != "ingress" && direction != "egress" {
        return Err(NetError::invalid(
            "direction",
            format!("'{direction}' is not in ['ingress', 'egress']"),
        ));
    }
    let ethertype = f.ethertype.unwrap_or_else(|| "IPv4".into());
    if ethertype != "IPv4" && ethertype != "IPv6" {
        return Err(NetError::invalid(
            "ethertype",
            format!("'{ethertype}' is not in ['IPv4', 'IPv6']"),
        ));
    }
    let protocol = match f.protocol {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() || s == "any" => None,
        Some(Value::String(s)) => {
            let lower = s.to_lowercase();
            protocol_number(&lower).ok_or_else(|| {
                NetError::invalid("protocol", format!("protocol '{s}' is not supported"))
            })?;
            Some(lower)
        }
        Some(Value::Number(n)) => {
            let v = n.as_u64().filter(|v| *v <= 255).ok_or_else(|| {
                NetError::invalid("protocol", format!("protocol {n} is not in 0..255"))
            })?;
            Some(v.to_string())
        }
        Some(v) => {
            return Err(NetError::invalid(
                "protocol",
                format!("'{v}' is not a valid protocol"),
            ))
        }
    };
    let min = f.port_range_min.flatten();
    let max = f.port_range_max.flatten();
    let pnum = protocol.as_deref().and_then(protocol_number);
    match pnum {
        Some(6) | Some(17) | Some(132) => {
            for (field, v) in [("port_range_min", min), ("port_range_max", max)] {
                if let Some(v) = v {
                    if !(1..=65535).contains(&v) {
                        return Err(NetError::invalid(
                            field,
                            format!("Invalid value for port {v}"),
                        ));
                    }
                }
            }
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(NetError::invalid(
                        "port_range_min",
                        "port_range_min must be <= port_range_max",
                    ));
                }
            }
            if min.is_some() != max.is_some() {
                let missing = if min.is_none() {
                    "port_range_min"
                } else {
                    "port_range_max"
                };
                return Err(NetError::invalid(
                    missing,
                    "both ends of the port range are required",
                ));
            }
        }
        Some(1) | Some(58) => {
            for (field, v) in [("port_range_min", min), ("port_range_max", max)] {
                if let Some(v) = v {
                    if !(0..=255).contains(&v) {
                        return Err(NetError::invalid(
                            field,
                            format!("Invalid value for ICMP {field}: {v}"),
                        ));
                    }
                }
            }
            if max.is_some() && min.is_none() {
                return Err(NetError::invalid(
                    "port_range_max",
                    "ICMP code given without type (port_range_min)",
                ));
            }
        }
        _ => {
            if min.is_some() || max.is_some() {
                let field = if min.is_some() {
                    "port_range_min"
                } else {
                    "port_range_max"
                };
                return Err(NetError::invalid(
                    field,
                    "a port range needs protocol tcp, udp, sctp or icmp",
                ));
            }
        }
    }
    let remote_ip_prefix = match f.remote_ip_prefix.flatten() {
        None => None,
        Some(s) => {
            let (addr, len) = match s.split_once('/') {
                Some((a, l)) => (a.to_string(), l.to_string()),
                None => (s.clone(), String::new()),
            };
            let (ver, v) = ipam::parse_ip(&addr).ok_or_else(|| {
                NetError::invalid(
                    "remote_ip_prefix",
                    format!("'{s}' is not a valid IP prefix"),
                )
            })?;
            let len: u8 = if len.is_empty() {
                if ver == 4 {
                    32
                } else {
                    128
                }
            } else {
                len.parse()
                    .ok()
                    .filter(|l| *l <= if ver == 4 { 32 } else { 128 })
                    .ok_or_else(|| {
                        NetError::invalid(
                            "remote_ip_prefix",
                            format!("'{s}' is not a valid IP prefix"),
                        )
                    })?
            };
            if (ver == 4) != (ethertype == "IPv4") {
                return Err(NetError::invalid(
                    "remote_ip_prefix",
                    format!("Conflicting value ethertype {ethertype} for CIDR {s}"),
                ));
            }
            // Neutron normalises host bits away rather than refusing them.
            let bits = if ver == 4 { 32 } else { 128 };
            let host = if bits - len >= 128 {
                u128::MAX
            } else {
                (1u128 << (bits - len)) - 1
            };
            Some(format!("{}/{}", ipam::fmt_ip(ver, v & !host), len))
        }
    };
    let remote_group_id = f.remote_group_id.flatten();
    if let Some(rg) = &remote_group_id {
        get_sg(st, ctx, rg)?;
        if remote_ip_prefix.is_some() {
            return Err(NetError::invalid(
                "remote_group_id",
                "Only remote_ip_prefix or remote_group_id may be provided",
            ));
        }
    }
    let description = f.description.unwrap_or_default();
    accept_empty("remote_address_group_id", f.remote_address_group_id)?;
    let r = SecurityGroupRule {
        id: env.ids.uuid(),
        security_group_id: sg_id.clone(),
        project_id: g.project_id.clone(),
        direction,
        ethertype,
        protocol,
        port_range_min: min.map(|v| v as u32),
        port_range_max: max.map(|v| v as u32),
        remote_ip_prefix,
        remote_group_id,
        std: Std::new(&env.now, description),
    };
    if let Some(dup) = st
        .rules_of(&sg_id)
        .into_iter()
        .find(|o| o.identity() == r.identity())
    {
        return Err(NetError::conflict(
            "SecurityGroupRuleExists",
            format!("Security group rule already exists. Rule id is {}.", dup.id),
        ));
    }
    Ok((r.clone(), vec![Change::Rule(r)]))
}

/// `DELETE /security-group-rules/{id}`.
pub fn delete_rule(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let r = get_rule(st, ctx, id)?;
    env.authz.check(
        ctx,
        "delete_security_group_rule",
        &json!({"project_id": r.project_id, "tenant_id": r.project_id}),
    )?;
    Ok(((), vec![Change::Delete(Kind::Rule, id.to_string())]))
}

// ---------------------------------------------------------------- ports

const PORT_ATTRS: [&str; 8] = [
    "mac_address",
    "fixed_ips",
    "fixed_ips:ip_address",
    "binding:host_id",
    "binding:profile",
    "port_security_enabled",
    "allowed_address_pairs",
    "device_owner",
];

/// Random MACs drawn for a new port before giving up (Neutron's
/// `mac_generation_retries` default): with 2^24 MACs per network a miss
/// this many times means the space is as good as full.
const MAC_GENERATION_RETRIES: usize = 16;

/// Whether a port with this `device_owner` is one of the network's own
/// devices (DHCP, router interface...): Neutron's `rule:network_device`.
fn is_network_device(device_owner: Option<&str>) -> bool {
    device_owner.is_some_and(|o| o.starts_with("network:"))
}

/// Neutron's `check_subnet_ip`: inside the subnet, and never its network
/// address, nor in IPv4 its broadcast address (point-to-point /31 and /32
/// excepted). In IPv6 the network address is the subnet-router anycast
/// address: only the network's own router and DHCP ports may hold it.
fn ip_valid_on_subnet(cidr: &Cidr, version: u8, ip: u128, device_owner: &str) -> bool {
    if !cidr.contains(version, ip) {
        return false;
    }
    if cidr.version == 4 {
        cidr.prefix >= 31 || (ip != cidr.first() && ip != cidr.last())
    } else {
        ip != cidr.first()
            || device_owner == "network:dhcp"
            || device_owner.starts_with("network:router")
            || device_owner == "network:ha_router_replicated_interface"
    }
}

/// Resolves requested fixed_ips (or the defaults) to concrete addresses for
/// a port whose device_owner is `device_owner`.
fn allocate_ips(
    st: &State,
    net: &Network,
    requested: Option<Vec<FixedIpReq>>,
    keep: &[FixedIp],
    device_owner: &str,
) -> NetResult<Vec<FixedIp>> {
    let subnets: Vec<&Subnet> = st.subnets_of(&net.id).collect();
    let mut local_taken: Vec<(String, u128)> = Vec::new();
    let is_taken = |subnet: &str, v: u128, local: &[(String, u128)]| {
        let kept = keep.iter().any(|k| {
            k.subnet_id == subnet && ipam::parse_ip(&k.ip_address).map(|x| x.1) == Some(v)
        });
        (!kept && st.taken_ips(subnet).is_some_and(|t| t.contains(&v)))
            || local.iter().any(|(s, x)| s == subnet && *x == v)
    };
    let alloc_from = |s: &Subnet, local: &[(String, u128)]| -> NetResult<u128> {
        let empty = BTreeSet::new();
        let taken = st.taken_ips(&s.id).unwrap_or(&empty);
        let freed: Vec<u128> = keep
            .iter()
            .filter(|k| k.subnet_id == s.id)
            .filter_map(|k| ipam::parse_ip(&k.ip_address).map(|x| x.1))
            .collect();
        let extra: Vec<u128> = local
            .iter()
            .filter(|(sid, _)| *sid == s.id)
            .map(|(_, v)| *v)
            .collect();
        ipam::first_free_except(&stored_pools(s), taken, &freed, &extra).ok_or_else(|| {
            NetError::conflict(
                "IpAddressGenerationFailure",
                format!("No more IP addresses available on network {}.", net.id),
            )
        })
    };
    let mut out = Vec::new();
    match requested {
        None => {
            // One address from the first subnet of each family.
            for version in [4u8, 6u8] {
                if let Some(s) = subnets.iter().find(|s| s.ip_version == version) {
                    let v = alloc_from(s, &local_taken)?;
                    local_taken.push((s.id.clone(), v));
                    out.push(FixedIp {
                        subnet_id: s.id.clone(),
                        ip_address: ipam::fmt_ip(version, v),
                    });
                }
            }
        }
        Some(items) => {
            for item in &items {
                let subnet_id = item.subnet_id.as_deref();
                let ip = item.ip_address.as_deref();
                if subnet_id.is_none() && ip.is_none() {
                    return Err(NetError::invalid(
                        "fixed_ips",
                        "each entry needs a subnet_id or an ip_address",
                    ));
                }
                let parsed = match ip {
                    Some(ip) => Some(ipam::parse_ip(ip).ok_or_else(|| {
                        NetError::invalid("fixed_ips", format!("'{ip}' is not a valid IP address"))
                    })?),
                    None => None,
                };
                let subnet = match subnet_id {
                    Some(sid) => *subnets.iter().find(|s| s.id == sid).ok_or_else(|| {
                        NetError::invalid(
                            "fixed_ips",
                            format!("subnet {sid} is not on network {}", net.id),
                        )
                    })?,
                    None => {
                        let (ver, v) = parsed.unwrap_or((0, 0));
                        *subnets
                            .iter()
                            .find(|s| Cidr::parse(&s.cidr).is_ok_and(|c| c.contains(ver, v)))
                            .ok_or_else(|| {
                                NetError::invalid(
                                    "fixed_ips",
                                    format!(
                                        "no subnet of network {} contains {}",
                                        net.id,
                                        ip.unwrap_or("")
                                    ),
                                )
                            })?
                    }
                };
                let v = match parsed {
                    Some((ver, v)) => {
                        let cidr = Cidr::parse(&subnet.cidr).map_err(NetError::Internal)?;
                        if !ip_valid_on_subnet(&cidr, ver, v, device_owner) {
                            return Err(NetError::bad(
                                "InvalidIpForSubnet",
                                format!(
                                    "IP address {} is not a valid IP for the specified subnet.",
                                    ip.unwrap_or("")
                                ),
                            ));
                        }
                        if is_taken(&subnet.id, v, &local_taken)
                            || subnet.gateway_ip.as_deref() == ip
                        {
                            return Err(NetError::conflict(
                                "IpAddressAlreadyAllocated",
                                format!(
                                    "IP address {} already allocated in subnet {}",
                                    ip.unwrap_or(""),
                                    subnet.id
                                ),
                            ));
                        }
                        v
                    }
                    None => alloc_from(subnet, &local_taken)?,
                };
                local_taken.push((subnet.id.clone(), v));
                out.push(FixedIp {
                    subnet_id: subnet.id.clone(),
                    ip_address: ipam::fmt_ip(subnet.ip_version, v),
                });
            }
        }
    }
    Ok(out)
}

fn parse_pairs(v: &[PairReq]) -> NetResult<Vec<AddressPair>> {
    let mut out: Vec<AddressPair> = Vec::new();
    for item in v {
        let ip = item.ip_address.as_str();
        let ok = match ip.split_once('/') {
            Some(_) => Cidr::parse(ip).is_ok(),
            None => ipam::parse_ip(ip).is_some(),
        };
        if !ok {
            return Err(NetError::invalid(
                "allowed_address_pairs",
                format!("'{ip}' is not a valid IP address or prefix"),
            ));
        }
        let mac = item.mac_address.as_deref().unwrap_or("");
        if !mac.is_empty() && !valid_mac(mac) {
            return Err(NetError::invalid(
                "allowed_address_pairs",
                format!("'{mac}' is not a valid MAC address"),
            ));
        }
        let pair = AddressPair {
            ip_address: ip.to_string(),
            mac_address: mac.to_lowercase(),
        };
        if out.contains(&pair) {
            return Err(NetError::invalid(
                "allowed_address_pairs",
                "Duplicate address pair",
            ));
        }
        out.push(pair);
    }
    Ok(out)
}

fn check_sgs(st: &State, ctx: &Ctx, ids: &[String], project: &str) -> NetResult<()> {
    for id in ids {
        let g = st
            .security_groups
            .get(id)
            .filter(|g| g.project_id == project || ctx.is_admin || sg_visible(ctx, g))
            .ok_or_else(|| NetError::not_found("Security group", id))?;
        let _ = g;
    }
    Ok(())
}

/// `binding:profile`: an object; null resets it to `{}`.
fn profile(v: Option<Option<serde_json::Map<String, Value>>>) -> Option<Value> {
    v.map(|m| Value::Object(m.unwrap_or_default()))
}

fn vnic(v: Option<String>) -> NetResult<Option<String>> {
    if let Some(t) = &v {
        if t != "normal" {
            return Err(NetError::invalid(
                "binding:vnic_type",
                format!("'{t}' is not supported (only 'normal')"),
            ));
        }
    }
    Ok(v)
}

/// Final consistency of a port's security settings (create and update).
/// `disabling`: this request turns port security off on a port that had
/// it; groups left on the port then conflict with its state (Neutron's
/// PortSecurityPortHasSecurityGroup, 409) rather than make the request
/// invalid (PortSecurityAndIPRequiredForSecurityGroups, 400).
fn check_port_security(p: &Port, disabling: bool) -> NetResult<()> {
    if !p.port_security_enabled {
        if !p.security_groups.is_empty() && disabling {
            return Err(NetError::conflict(
                "PortSecurityPortHasSecurityGroup",
                "Port has security group associated. Cannot disable port security or IP address until security group is removed.",
            ));
        }
        if !p.security_groups.is_empty() {
            return Err(NetError::bad(
                "PortSecurityAndIPRequiredForSecurityGroups",
                "Port security must be enabled and port must have an IP address in order to use security groups.",
            ));
        }
        if !p.allowed_address_pairs.is_empty() {
            return Err(NetError::conflict(
                "AddressPairAndPortSecurityRequired",
                "Port Security must be enabled in order to have allowed address pairs on a port.",
            ));
        }
    }
    Ok(())
}

/// `POST /ports`: MAC, fixed IPs (IPAM), security groups and binding.
pub fn create_port(st: &State, env: &mut Env, ctx: &Ctx, req: &PortReq) -> Write<Port> {
    let f = req.clone();
    let network_id = f
        .network_id
        .ok_or_else(|| NetError::invalid("network_id", "network_id is required"))?;
    let net = get_network(st, ctx, &network_id)?;
    let project = project_of(f.project_id, f.tenant_id, ctx)?;
    // Neutron's _validate_network_tenant_ownership: a network the caller
    // sees but does not own (an external one) is not its to plug into
    // unless it is shared.
    if !ctx.is_admin && !net.shared && net.project_id != project {
        return Err(NetError::Forbidden {
            message: format!("Tenant {project} not allowed to create port on this network"),
        });
    }
    let target = json!({"project_id": project, "tenant_id": project, "network_project_id": net.project_id,
                        "network:shared": net.shared,
                        "network_device": is_network_device(f.device_owner.as_deref())});
    check_attrs(
        env,
        ctx,
        "create_port",
        |a| req.has(a),
        &PORT_ATTRS,
        &target,
    )?;
    // The project's first port write brings its default group, whether this
    // port uses it or not (Neutron's port BEFORE_CREATE handler).
    let (default_sg, mut changes) = ensure_default_sg(st, env, &project);
    let mac_address = match f.mac_address {
        Some(m) => {
            let m = m.to_lowercase();
            if !valid_mac(&m) {
                return Err(NetError::invalid(
                    "mac_address",
                    format!("'{m}' is not a valid MAC address"),
                ));
            }
            if st.mac_owner(&network_id, &m).is_some() {
                return Err(NetError::conflict(
                    "MacAddressInUse",
                    format!("Unable to complete operation for network {network_id}. The mac address {m} is in use."),
                ));
            }
            m
        }
        None => (0..MAC_GENERATION_RETRIES)
            .map(|_| {
                let t = env.ids.mac_tail();
                format!("fa:16:3e:{:02x}:{:02x}:{:02x}", t[0], t[1], t[2])
            })
            .find(|m| st.mac_owner(&network_id, m).is_none())
            .ok_or_else(|| NetError::Unavailable {
                kind: "MacAddressGenerationFailure",
                message: format!("Unable to generate unique mac on network {network_id}."),
            })?,
    };
    let device_owner = f.device_owner.unwrap_or_default();
    let fixed_ips = allocate_ips(st, net, f.fixed_ips, &[], &device_owner)?;
    let port_security_enabled = f.port_security_enabled.unwrap_or(net.port_security_enabled);
    let security_groups = match f.security_groups {
        Some(ids) => {
            check_sgs(st, ctx, &ids, &project)?;
            ids
        }
        None if port_security_enabled && !device_owner.starts_with("network:") => {
            vec![default_sg]
        }
        None => Vec::new(),
    };
    let pairs = parse_pairs(&f.allowed_address_pairs.unwrap_or_default())?;
    accept_empty("extra_dhcp_opts", f.extra_dhcp_opts)?;
    let p = Port {
        id: env.ids.uuid(),
        name: f.name.unwrap_or_default(),
        network_id: network_id.clone(),
        project_id: project,
        mac_address,
        admin_state_up: f.admin_state_up.unwrap_or(true),
        status: "DOWN".into(),
        fixed_ips,
        device_id: f.device_id.unwrap_or_default(),
        device_owner,
        binding_host_id: f.binding_host_id.unwrap_or_default(),
        binding_profile: profile(f.binding_profile).unwrap_or_else(|| json!({})),
        binding_vnic_type: vnic(f.binding_vnic_type)?.unwrap_or_else(|| "normal".into()),
        port_security_enabled,
        allowed_address_pairs: pairs,
        security_groups,
        std: Std::new(&env.now, f.description.unwrap_or_default()),
    };
    check_port_security(&p, false)?;
    changes.push(Change::Port(p.clone()));
    Ok((p, changes))
}

/// `PUT /ports/{id}`.
pub fn update_port(st: &State, env: &mut Env, ctx: &Ctx, id: &str, req: &PortReq) -> Write<Port> {
    let old = get_port(st, ctx, id)?;
    let net = st
        .networks
        .get(&old.network_id)
        .ok_or_else(|| NetError::not_found("Network", &old.network_id))?;
    let f = req.clone();
    let target = json!({"project_id": old.project_id, "tenant_id": old.project_id, "network_project_id": net.project_id,
                        "network_device": is_network_device(req.device_owner.as_deref())});
    check_attrs(
        env,
        ctx,
        "update_port",
        |a| req.has(a),
        &PORT_ATTRS,
        &target,
    )?;
    let mut p = old.clone();
    if let Some(m) = f.mac_address {
        let m = m.to_lowercase();
        if !valid_mac(&m) {
            return Err(NetError::invalid(
                "mac_address",
                format!("'{m}' is not a valid MAC address"),
            ));
        }
        if st.mac_owner(&p.network_id, &m).is_some_and(|o| o != p.id) {
            return Err(NetError::conflict(
                "MacAddressInUse",
                format!(
                    "Unable to complete operation for network {}. The mac address {m} is in use.",
                    p.network_id
                ),
            ));
        }
        p.mac_address = m;
    }
    if let Some(ips) = f.fixed_ips {
        let owner = f.device_owner.as_deref().unwrap_or(&old.device_owner);
        p.fixed_ips = allocate_ips(st, net, Some(ips), &old.fixed_ips, owner)?;
    }
    if let Some(v) = f.name {
        p.name = v;
    }
    if let Some(v) = f.description {
        p.std.description = v;
    }
    if let Some(v) = f.admin_state_up {
        p.admin_state_up = v;
        // Shut down: DOWN at once, not when the agent gets round to it.
        if !v {
            p.status = "DOWN".into();
        }
    }
    if let Some(v) = f.device_id {
        p.device_id = v;
    }
    if let Some(v) = f.device_owner {
        p.device_owner = v;
    }
    if let Some(v) = f.binding_host_id {
        if v != p.binding_host_id {
            p.status = "DOWN".into();
        }
        p.binding_host_id = v;
    }
    if let Some(v) = profile(f.binding_profile) {
        p.binding_profile = v;
    }
    if let Some(v) = vnic(f.binding_vnic_type)? {
        p.binding_vnic_type = v;
    }
    if let Some(v) = f.port_security_enabled {
        p.port_security_enabled = v;
    }
    if let Some(ids) = f.security_groups {
        check_sgs(st, ctx, &ids, &p.project_id)?;
        p.security_groups = ids;
    }
    if let Some(v) = f.allowed_address_pairs {
        p.allowed_address_pairs = parse_pairs(&v)?;
    }
    accept_empty("extra_dhcp_opts", f.extra_dhcp_opts)?;
    check_port_security(&p, old.port_security_enabled && !p.port_security_enabled)?;
    p.std.touch(&env.now);
    Ok((p.clone(), vec![Change::Port(p)]))
}

/// `DELETE /ports/{id}`: its addresses return to the pools.
pub fn delete_port(st: &State, env: &mut Env, ctx: &Ctx, id: &str) -> Write<()> {
    let p = get_port(st, ctx, id)?;
    let net_project = st
        .networks
        .get(&p.network_id)
        .map(|n| n.project_id.clone())
        .unwrap_or_default();
    env.authz.check(
        ctx,
        "delete_port",
        &json!({"project_id": p.project_id, "tenant_id": p.project_id, "network_project_id": net_project}),
    )?;
    Ok(((), vec![Change::Delete(Kind::Port, id.to_string())]))
}

/// An agent's report: the port is wired (ACTIVE) or not (DOWN) on `host`.
pub fn set_port_status(
    st: &State,
    now: &str,
    host: &str,
    id: &str,
    status: &str,
) -> NetResult<Vec<Change>> {
    if status != "ACTIVE" && status != "DOWN" && status != "BUILD" && status != "ERROR" {
        return Err(NetError::invalid(
            "status",
            format!("'{status}' is not in [ACTIVE, DOWN, BUILD, ERROR]"),
        ));
    }
    let p = st
        .ports
        .get(id)
        .ok_or_else(|| NetError::not_found("Port", id))?;
    if p.binding_host_id != host {
        return Err(NetError::conflict(
            "PortBoundElsewhere",
            format!(
                "Port {id} is bound to host '{}', not '{host}'",
                p.binding_host_id
            ),
        ));
    }
    // An administratively down port is DOWN whatever a report sent before
    // the agent saw the change says.
    let status = if p.admin_state_up { status } else { "DOWN" };
    if p.status == status {
        return Ok(Vec::new());
    }
    let mut p = p.clone();
    p.status = status.to_string();
    p.std.touch(now);
    Ok(vec![Change::Port(p)])
}
