//! Networks: provider and tenant segments, MTU, create, update, delete.

use super::security_group::ensure_default_sg;
use super::{accept_empty, check_attrs, get_network, project_of, Ctx, Env, Write};
use crate::networking::body::NetworkReq;
use crate::networking::config::{Segments, MAX_VNI};
use crate::networking::error::{NetError, NetResult};
use crate::networking::model::*;
use crate::networking::state::{Change, Kind, State};
use serde_json::json;
use std::collections::HashSet;

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

/// A network's segment from its provider attributes, checked against the
/// configured physical networks and ranges and the segments already taken.
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
    match ntype.as_str() {
        "flat" => flat_segment(&taken, segs, ntype, physnet, seg_id),
        "vlan" => vlan_segment(&taken, segs, ntype, physnet, seg_id),
        "vxlan" | "geneve" => tunnel_segment(&taken, segs, ntype, physnet, seg_id),
        "local" => local_segment(ntype, physnet, seg_id),
        other => Err(NetError::invalid(
            "provider:network_type",
            format!("network_type value '{other}' not supported"),
        )),
    }
}

/// Neutron's `*InUse` (409) when another network already has segment `s`.
fn check_free(
    taken: &HashSet<Segment>,
    s: &Segment,
    kind: &'static str,
    what: String,
) -> NetResult<()> {
    if taken.contains(s) {
        Err(NetError::conflict(kind, what))
    } else {
        Ok(())
    }
}

/// A flat network: a configured physical network, untagged, one network each.
fn flat_segment(
    taken: &HashSet<Segment>,
    segs: &Segments,
    ntype: String,
    physnet: Option<String>,
    seg_id: Option<i64>,
) -> NetResult<Segment> {
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
    check_free(
        taken,
        &s,
        "FlatNetworkInUse",
        format!("Unable to create the flat network. Physical network {p} is in use."),
    )?;
    Ok(s)
}

/// A VLAN network: a configured physical network and a VLAN id, given or
/// drawn from the physical network's range.
fn vlan_segment(
    taken: &HashSet<Segment>,
    segs: &Segments,
    ntype: String,
    physnet: Option<String>,
    seg_id: Option<i64>,
) -> NetResult<Segment> {
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
    check_free(
        taken,
        &s,
        "VlanIdInUse",
        format!("Unable to create the network. The VLAN {id} on physical network {p} is in use."),
    )?;
    Ok(s)
}

/// A VXLAN or Geneve network: a VNI, given or drawn from the type's ranges.
fn tunnel_segment(
    taken: &HashSet<Segment>,
    segs: &Segments,
    ntype: String,
    physnet: Option<String>,
    seg_id: Option<i64>,
) -> NetResult<Segment> {
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
                    format!(
                        "{ntype} network segmentation_id {v} out of range (1 through {MAX_VNI})"
                    ),
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
    check_free(
        taken,
        &s,
        "TunnelIdInUse",
        format!("Unable to create the network. The tunnel ID {id} is in use."),
    )?;
    Ok(s)
}

/// A local network: no physical network, no segmentation id.
fn local_segment(
    ntype: String,
    physnet: Option<String>,
    seg_id: Option<i64>,
) -> NetResult<Segment> {
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

/// The smallest MTU an IP version works over (RFC 791: 68; RFC 8200: 1280).
pub(super) fn min_mtu(ip_version: u8) -> u32 {
    if ip_version == 6 {
        1280
    } else {
        68
    }
}

/// Neutron's NetworkMTUSubnetConflict (409): the network's MTU is below what
/// one of its subnets' IP versions needs (on subnet create and on MTU update).
pub(super) fn mtu_too_small(network_id: &str, ip_version: u8) -> NetError {
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
