//! `[[network]]`: type and segment, physnet reference, unique names, segments and VNIs.

use super::{ConfigError, Ctx, Names};
use crate::config::raw::RawNetwork;
use crate::config::{NetworkConfig, NetworkType};
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

/// Segments and VNIs already taken, with the network that took them.
#[derive(Default)]
struct Taken {
    /// (physnet, VLAN id or None for the flat segment) -> network name.
    segments: HashMap<(String, Option<u16>), String>,
    /// VNI -> network name.
    vnis: HashMap<i64, String>,
}

/// Checks every `[[network]]`; `has_tunnel`: a `[tunnel]` section exists (vxlan needs it).
pub(super) fn networks(
    cx: &Ctx<'_>,
    raw: Vec<RawNetwork>,
    has_tunnel: bool,
    names: &mut Names,
) -> Result<Vec<NetworkConfig>, ConfigError> {
    let mut networks = Vec::new();
    let mut taken = Taken::default();
    for n in raw {
        let name = n.name.get_ref().clone();
        let obj = format!("network {name:?}");
        if name.is_empty() {
            return Err(cx.err(
                Some(n.name.span()),
                "network: name".into(),
                "must not be empty".into(),
            ));
        }
        if !names.networks.insert(name.clone()) {
            return Err(cx.err(
                Some(n.name.span()),
                format!("{obj}: name"),
                format!("duplicate network name {name:?}"),
            ));
        }
        let network_type = network_type(cx, &n, &obj, has_tunnel, &mut taken)?;
        let physnet = physnet(cx, &n, &obj, network_type, names, &mut taken)?;
        let mtu = n.mtu.as_ref().map(|m| mtu(cx, m, &obj)).transpose()?;
        networks.push(NetworkConfig {
            name,
            network_type,
            physnet,
            mtu,
        });
    }
    Ok(networks)
}

/// `mtu`: 68 (IPv4's minimum) ..= 65535, as a tap's.
fn mtu(cx: &Ctx<'_>, m: &Spanned<i64>, obj: &str) -> Result<u32, ConfigError> {
    u32::try_from(*m.get_ref())
        .ok()
        .filter(|v| (68..=65535).contains(v))
        .ok_or_else(|| {
            cx.err(
                Some(m.span()),
                format!("{obj}: mtu"),
                format!("{} is out of range 68..=65535", m.get_ref()),
            )
        })
}

/// The segmentation_id, range-checked for vlan (VLAN id) and vxlan (VNI), with its span.
fn segment(
    cx: &Ctx<'_>,
    n: &RawNetwork,
    obj: &str,
) -> Result<Option<(i64, Range<usize>)>, ConfigError> {
    let ty = n.network_type.get_ref().as_str();
    let Some(s) = &n.segmentation_id else {
        return Ok(None);
    };
    let v = *s.get_ref();
    if ty == "vlan" && !(1..=4094).contains(&v) {
        return Err(cx.err(
            Some(s.span()),
            format!("{obj}: segmentation_id"),
            format!("VLAN id {v} is out of range 1..=4094"),
        ));
    }
    if ty == "vxlan" && !(1..=i64::from(crate::tunnel::MAX_VNI)).contains(&v) {
        return Err(cx.err(
            Some(s.span()),
            format!("{obj}: segmentation_id"),
            format!("VNI {v} is out of range 1..=16777215"),
        ));
    }
    Ok(Some((v, s.span())))
}

/// `type` with its segment: vlan and vxlan need one, flat and local have none; a VNI is used
/// by one network only.
fn network_type(
    cx: &Ctx<'_>,
    n: &RawNetwork,
    obj: &str,
    has_tunnel: bool,
    taken: &mut Taken,
) -> Result<NetworkType, ConfigError> {
    let ty = n.network_type.get_ref().as_str();
    let seg = segment(cx, n, obj)?;
    match ty {
        "vlan" => match seg {
            Some((v, _)) => Ok(NetworkType::Vlan {
                segmentation_id: v as u16,
            }),
            None => Err(cx.err(
                Some(n.name.span()),
                format!("{obj}: segmentation_id"),
                "a vlan network needs segmentation_id (1..=4094)".into(),
            )),
        },
        "vxlan" => {
            let Some((v, span)) = seg else {
                return Err(cx.err(
                    Some(n.name.span()),
                    format!("{obj}: segmentation_id"),
                    "a vxlan network needs segmentation_id (the VNI, 1..=16777215)".into(),
                ));
            };
            if !has_tunnel {
                return Err(cx.err(
                    Some(n.network_type.span()),
                    format!("{obj}: type"),
                    "a vxlan network needs a [tunnel] section with local_ip".into(),
                ));
            }
            if let Some(other) = taken.vnis.insert(v, n.name.get_ref().clone()) {
                return Err(cx.err(
                    Some(span),
                    format!("{obj}: segmentation_id"),
                    format!("VNI {v} is already used by network {other:?}"),
                ));
            }
            Ok(NetworkType::Vxlan {
                segmentation_id: v as u32,
            })
        }
        "geneve" | "gre" => Err(cx.err(
            Some(n.network_type.span()),
            format!("{obj}: type"),
            format!("network type {ty:?} is not supported by this switch (vxlan is)"),
        )),
        "flat" | "local" => {
            if let Some((_, span)) = seg {
                return Err(cx.err(
                    Some(span),
                    format!("{obj}: segmentation_id"),
                    format!("a {ty} network has no segmentation_id"),
                ));
            }
            Ok(if ty == "flat" {
                NetworkType::Flat
            } else {
                NetworkType::Local
            })
        }
        other => Err(cx.err(
            Some(n.network_type.span()),
            format!("{obj}: type"),
            format!("unknown network type {other:?} (expected flat, vlan, vxlan or local)"),
        )),
    }
}

/// `physnet`: none for local and vxlan; a known physnet for flat and vlan, whose segment (the
/// VLAN id, or the untagged flat segment) no other network uses.
fn physnet(
    cx: &Ctx<'_>,
    n: &RawNetwork,
    obj: &str,
    network_type: NetworkType,
    names: &Names,
    taken: &mut Taken,
) -> Result<Option<String>, ConfigError> {
    let ty = n.network_type.get_ref().as_str();
    let p = match (&network_type, &n.physnet) {
        (NetworkType::Local | NetworkType::Vxlan { .. }, None) => return Ok(None),
        (NetworkType::Local | NetworkType::Vxlan { .. }, Some(p)) => {
            return Err(cx.err(
                Some(p.span()),
                format!("{obj}: physnet"),
                format!("a {ty} network has no physnet"),
            ))
        }
        (_, None) => {
            return Err(cx.err(
                Some(n.name.span()),
                format!("{obj}: physnet"),
                format!("a {ty} network needs a physnet"),
            ))
        }
        (_, Some(p)) => p,
    };
    if !names.physnets.contains(p.get_ref()) {
        return Err(cx.err(
            Some(p.span()),
            format!("{obj}: physnet"),
            format!("unknown physnet {:?}", p.get_ref()),
        ));
    }
    let key = (
        p.get_ref().clone(),
        match network_type {
            NetworkType::Vlan { segmentation_id } => Some(segmentation_id),
            _ => None,
        },
    );
    if let Some(other) = taken.segments.insert(key.clone(), n.name.get_ref().clone()) {
        let what = match key.1 {
            Some(v) => format!("VLAN {v} on physnet {:?}", key.0),
            None => format!("the flat segment of physnet {:?}", key.0),
        };
        let span = n
            .segmentation_id
            .as_ref()
            .map(|s| s.span())
            .unwrap_or_else(|| p.span());
        let field = if key.1.is_some() {
            "segmentation_id"
        } else {
            "physnet"
        };
        return Err(cx.err(
            Some(span),
            format!("{obj}: {field}"),
            format!("{what} is already used by network {other:?}"),
        ));
    }
    Ok(Some(p.get_ref().clone()))
}
