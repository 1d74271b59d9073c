//! Subnets: prefixes, gateways, pools, DNS, host routes, IPv6 modes.

use super::network::{min_mtu, mtu_too_small};
use super::{accept_empty, get_network, get_subnet, project_of, Ctx, Env, Write};
use crate::networking::body::{PoolReq, RouteReq, SubnetReq};
use crate::networking::error::{NetError, NetResult};
use crate::networking::ipam::{self, Cidr, Range};
use crate::networking::model::*;
use crate::networking::state::{Change, Kind, State};
use serde_json::json;
use std::collections::BTreeSet;

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

pub(super) fn stored_pools(s: &Subnet) -> Vec<Range> {
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

/// The modes this deployment cannot serve are refused, never stored as a silent no-op: the
/// switch answers DHCPv4 only, so nothing would answer a guest's DHCPv6 (stateful addresses,
/// or stateless options). `slaac` is accepted: ports get their EUI-64 addresses from IPAM and
/// port security holds guests to them (the router advertisements themselves are not sent by
/// the switch; a guest configured with its port's address works).
fn refuse_dhcpv6(ra: Option<&str>, am: Option<&str>) -> NetResult<()> {
    for (field, mode) in [("ipv6_ra_mode", ra), ("ipv6_address_mode", am)] {
        if let Some(m @ ("dhcpv6-stateful" | "dhcpv6-stateless")) = mode {
            return Err(NetError::invalid(
                field,
                format!(
                    "'{m}' needs a DHCPv6 server, which this deployment does not run (the \
                     switch answers DHCPv4 only); use slaac or leave {field} unset"
                ),
            ));
        }
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
    refuse_dhcpv6(ra.as_deref(), am.as_deref())?;
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
