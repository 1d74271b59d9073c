//! `[[port]]`: names (unique, not an uplink's or the tunnel's), kind, network reference, MAC,
//! fixed IPs, allowed address pairs, MTU, capture file and security groups.

use super::{check_ifname, parse_ip_or_cidr, ConfigError, Ctx, Names};
use crate::config::raw::{RawPair, RawPort};
use crate::config::{AddressPair, PortConfig, PortKind, SecurityGroupConfig, TunnelConfig};
use crate::mac::MacAddr;
use std::collections::HashSet;
use std::net::IpAddr;
use toml::Spanned;

/// Checks every `[[port]]` against the physnets, networks and tunnel already validated.
pub(super) fn ports(
    cx: &Ctx<'_>,
    raw: Vec<RawPort>,
    tunnel: Option<&TunnelConfig>,
    names: &Names,
    groups: &[SecurityGroupConfig],
) -> Result<Vec<PortConfig>, ConfigError> {
    let mut ports = Vec::new();
    let mut port_names = HashSet::new();
    for p in raw {
        let name = p.name.get_ref().clone();
        let obj = format!("port {name:?}");
        check_name(cx, &p, &obj, tunnel, names, &mut port_names)?;
        let kind = kind(cx, &p, &obj)?;
        if !names.networks.contains(p.network.get_ref()) {
            return Err(cx.err(
                Some(p.network.span()),
                format!("{obj}: network"),
                format!("unknown network {:?}", p.network.get_ref()),
            ));
        }
        let port_security = p
            .port_security
            .as_ref()
            .map(|s| *s.get_ref())
            .unwrap_or(true);
        let mac = p.mac.as_ref().map(|m| mac(cx, m, &obj)).transpose()?;
        if mac.is_none() && port_security {
            return Err(cx.err(
                Some(p.name.span()),
                format!("{obj}: mac"),
                "required when port_security = true".into(),
            ));
        }
        let mut fixed_ips = Vec::new();
        for ip in &p.fixed_ips {
            let addr: IpAddr = ip.get_ref().parse().map_err(|_| {
                cx.err(
                    Some(ip.span()),
                    format!("{obj}: fixed_ips"),
                    format!("invalid IP address {:?}", ip.get_ref()),
                )
            })?;
            fixed_ips.push(addr);
        }
        let allowed_address_pairs = p
            .allowed_address_pairs
            .iter()
            .map(|pair| address_pair(cx, pair, mac, &obj))
            .collect::<Result<Vec<_>, _>>()?;
        let mtu = p.mtu.as_ref().map(|m| mtu(cx, m, kind, &obj)).transpose()?;
        let capture = p
            .capture
            .as_ref()
            .map(|c| capture(cx, c, &obj))
            .transpose()?;
        let dns_name = p
            .dns_name
            .as_ref()
            .map(|n| dns_name(cx, n, &obj))
            .transpose()?
            .flatten();
        let metadata = match p.metadata {
            None => None,
            Some(m) => {
                if let Err(e) = m.get_ref().validate() {
                    return Err(cx.err(Some(m.span()), format!("{obj}: metadata"), e));
                }
                Some(m.into_inner())
            }
        };
        let security_groups = p
            .security_groups
            .as_ref()
            .map(|g| security_groups(cx, g, port_security, groups, &obj))
            .transpose()?;
        ports.push(PortConfig {
            metadata,
            dns_name,
            security_groups,
            mtu,
            capture,
            name,
            kind,
            network: p.network.into_inner(),
            mac,
            fixed_ips,
            port_security,
            allowed_address_pairs,
        });
    }
    Ok(ports)
}

/// A valid interface name, unique among ports, not an uplink's nor the tunnel endpoint's.
fn check_name(
    cx: &Ctx<'_>,
    p: &RawPort,
    obj: &str,
    tunnel: Option<&TunnelConfig>,
    names: &Names,
    port_names: &mut HashSet<String>,
) -> Result<(), ConfigError> {
    let name = p.name.get_ref();
    check_ifname(name).map_err(|m| cx.err(Some(p.name.span()), format!("{obj}: name"), m))?;
    if !port_names.insert(name.clone()) {
        return Err(cx.err(
            Some(p.name.span()),
            format!("{obj}: name"),
            format!("duplicate port name {name:?}"),
        ));
    }
    if let Some(other) = names.interfaces.get(name) {
        return Err(cx.err(
            Some(p.name.span()),
            format!("{obj}: name"),
            format!("{name:?} is the uplink interface of {other}"),
        ));
    }
    if let Some(t) = tunnel {
        if *name == t.port_name() {
            return Err(cx.err(
                Some(p.name.span()),
                format!("{obj}: name"),
                format!("{name:?} is the name of the tunnel endpoint"),
            ));
        }
    }
    Ok(())
}

/// `kind`: tap (the default), system or vhostuser.
fn kind(cx: &Ctx<'_>, p: &RawPort, obj: &str) -> Result<PortKind, ConfigError> {
    let Some(k) = &p.kind else {
        return Ok(PortKind::Tap);
    };
    match k.get_ref().as_str() {
        "tap" => Ok(PortKind::Tap),
        "system" => Ok(PortKind::System),
        "vhostuser" => Ok(PortKind::VhostUser),
        other => Err(cx.err(
            Some(k.span()),
            format!("{obj}: kind"),
            format!("unknown port kind {other:?} (expected tap, system or vhostuser)"),
        )),
    }
}

/// `mac`: a unicast MAC address.
fn mac(cx: &Ctx<'_>, m: &Spanned<String>, obj: &str) -> Result<MacAddr, ConfigError> {
    let mac: MacAddr = m
        .get_ref()
        .parse()
        .map_err(|e: crate::mac::MacParseError| {
            cx.err(Some(m.span()), format!("{obj}: mac"), e.to_string())
        })?;
    if mac.is_multicast() || mac == MacAddr::ZERO {
        return Err(cx.err(
            Some(m.span()),
            format!("{obj}: mac"),
            format!("{mac} is not a unicast MAC address"),
        ));
    }
    Ok(mac)
}

/// One of `allowed_address_pairs`; without a MAC it takes the port's, which must then exist.
fn address_pair(
    cx: &Ctx<'_>,
    pair: &RawPair,
    port_mac: Option<MacAddr>,
    obj: &str,
) -> Result<AddressPair, ConfigError> {
    let pmac = match &pair.mac {
        None => None,
        Some(m) => Some(m.get_ref().parse::<MacAddr>().map_err(|e| {
            cx.err(
                Some(m.span()),
                format!("{obj}: allowed_address_pairs: mac"),
                e.to_string(),
            )
        })?),
    };
    if pmac.is_none() && port_mac.is_none() {
        return Err(cx.err(
            Some(pair.ip_address.span()),
            format!("{obj}: allowed_address_pairs: mac"),
            "required when the port has no mac".into(),
        ));
    }
    let ip = parse_ip_or_cidr(pair.ip_address.get_ref()).map_err(|m| {
        cx.err(
            Some(pair.ip_address.span()),
            format!("{obj}: allowed_address_pairs: ip_address"),
            m,
        )
    })?;
    Ok(AddressPair { mac: pmac, ip })
}

/// `capture`: an absolute path (the switch's working directory is nobody's business).
fn capture(
    cx: &Ctx<'_>,
    c: &Spanned<String>,
    obj: &str,
) -> Result<std::path::PathBuf, ConfigError> {
    let path = std::path::Path::new(c.get_ref());
    if !path.is_absolute() {
        return Err(cx.err(
            Some(c.span()),
            format!("{obj}: capture"),
            format!("{:?} is not an absolute path", c.get_ref()),
        ));
    }
    Ok(path.to_path_buf())
}

/// `mtu`: tap ports only, 68..=65535.
fn mtu(cx: &Ctx<'_>, m: &Spanned<i64>, kind: PortKind, obj: &str) -> Result<u32, ConfigError> {
    let v = *m.get_ref();
    if kind != PortKind::Tap {
        return Err(cx.err(
            Some(m.span()),
            format!("{obj}: mtu"),
            "only tap ports take an mtu (a system port keeps its netdev's)".into(),
        ));
    }
    if !(68..=65535).contains(&v) {
        return Err(cx.err(
            Some(m.span()),
            format!("{obj}: mtu"),
            format!("{v} is out of range 68..=65535"),
        ));
    }
    Ok(v as u32)
}

/// `dns_name`: a host name (letters, digits, hyphens, dots; at most 253 characters), as the
/// DHCP host name option carries it; empty is no name.
fn dns_name(cx: &Ctx<'_>, n: &Spanned<String>, obj: &str) -> Result<Option<String>, ConfigError> {
    let s = n.get_ref();
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !ok {
        return Err(cx.err(
            Some(n.span()),
            format!("{obj}: dns_name"),
            format!("invalid host name {s:?}"),
        ));
    }
    Ok(Some(s.clone()))
}

/// `security_groups`: known groups, each once, all stateful or all stateless (Neutron refuses
/// the mix), and only with port security.
fn security_groups(
    cx: &Ctx<'_>,
    list: &Spanned<Vec<Spanned<String>>>,
    port_security: bool,
    groups: &[SecurityGroupConfig],
    obj: &str,
) -> Result<Vec<String>, ConfigError> {
    let at = format!("{obj}: security_groups");
    if !port_security {
        return Err(cx.err(
            Some(list.span()),
            at,
            "security groups need port_security = true".into(),
        ));
    }
    let mut seen = HashSet::new();
    let mut stateful = None;
    for id in list.get_ref() {
        let Some(g) = groups.iter().find(|g| g.id == *id.get_ref()) else {
            return Err(cx.err(
                Some(id.span()),
                at,
                format!("unknown security group {:?}", id.get_ref()),
            ));
        };
        if !seen.insert(id.get_ref().as_str()) {
            return Err(cx.err(
                Some(id.span()),
                at,
                format!("security group {:?} given twice", id.get_ref()),
            ));
        }
        if *stateful.get_or_insert(g.stateful) != g.stateful {
            return Err(cx.err(
                Some(id.span()),
                at,
                "stateful and stateless security groups cannot be mixed on a port".into(),
            ));
        }
    }
    Ok(list.get_ref().iter().map(|s| s.get_ref().clone()).collect())
}
