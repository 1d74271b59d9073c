//! Ports: MACs, fixed IPs drawn from the subnets' pools, security, binding and status.

use super::security_group::ensure_default_sg;
use super::subnet::stored_pools;
use super::{
    accept_empty, check_attrs, get_network, get_port, project_of, sg_visible, valid_mac, Ctx, Env,
    Write,
};
use crate::networking::body::{FixedIpReq, PairReq, PortReq};
use crate::networking::error::{NetError, NetResult};
use crate::networking::ipam::{self, Cidr};
use crate::networking::model::*;
use crate::networking::state::{Change, Kind, State};
use serde_json::{json, Value};
use std::collections::BTreeSet;

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

/// Neutron's `uuid_list` validation of a port's `security_groups`, which
/// runs before anything else looks at the request: a group named twice is
/// a 400, not a silent merge.
fn check_sg_list(ids: Option<&[String]>) -> NetResult<()> {
    let Some(ids) = ids else {
        return Ok(());
    };
    let mut dups: Vec<&str> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) && !dups.contains(&id.as_str()) {
            dups.push(id);
        }
    }
    if dups.is_empty() {
        return Ok(());
    }
    Err(NetError::invalid(
        "security_groups",
        format!("Duplicate items in the list: '{}'", dups.join(", ")),
    ))
}

/// The port's groups: each one the port's project (or an admin) may use
/// (404 naming the missing ones, as Neutron), and either all stateful or
/// all stateless: one port's firewall either tracks connections or it
/// does not (Neutron's SecurityGroupConflict, 409).
fn check_sgs(st: &State, ctx: &Ctx, ids: &[String], project: &str) -> NetResult<()> {
    let mut groups = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match st
            .security_groups
            .get(id)
            .filter(|g| g.project_id == project || ctx.is_admin || sg_visible(ctx, g))
        {
            Some(g) => groups.push(g),
            None => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(NetError::not_found("Security group", &missing.join(", ")));
    }
    if groups.iter().any(|g| g.stateful) && groups.iter().any(|g| !g.stateful) {
        return Err(NetError::conflict(
            "SecurityGroupConflict",
            "Error Cannot apply both stateful and stateless security groups on the same \
             port at the same time while attempting the operation.",
        ));
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
    check_sg_list(req.security_groups.as_deref())?;
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
    check_sg_list(req.security_groups.as_deref())?;
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
    // A port write brings back the project's default group if an admin
    // deleted it (Neutron's port BEFORE_UPDATE handler); only the project
    // itself or an admin makes one for it.
    let mut changes = if ctx.is_admin || ctx.project_id.as_deref() == Some(&old.project_id) {
        ensure_default_sg(st, env, &old.project_id).1
    } else {
        Vec::new()
    };
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
    changes.push(Change::Port(p.clone()));
    Ok((p, changes))
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
