//! `[[security_group]]`: groups, members and rules, checked as Neutron's API checks them (so
//! that a rule the switch cannot enforce exactly is refused, never half applied).

use super::{parse_ip_or_cidr, ConfigError, Ctx};
use crate::config::raw::{RawGroup, RawRule};
use crate::config::{RuleConfig, RuleRemote, SecurityGroupConfig};
use crate::secgroup::rules::{has_ports, is_icmp, protocol, PROTO_ICMPV6};
use crate::secgroup::{Direction, Family};
use std::collections::HashSet;
use toml::Spanned;

/// Every `[[security_group]]`: unique ids, members, rules; a `remote_group` must name one of
/// them.
pub(super) fn groups(
    cx: &Ctx<'_>,
    raw: &[RawGroup],
) -> Result<Vec<SecurityGroupConfig>, ConfigError> {
    let mut ids = HashSet::new();
    for g in raw {
        if g.id.get_ref().is_empty() || !ids.insert(g.id.get_ref().as_str()) {
            return Err(cx.err(
                Some(g.id.span()),
                format!("security_group {:?}: id", g.id.get_ref()),
                "empty or duplicate security group id".into(),
            ));
        }
    }
    raw.iter()
        .map(|g| {
            let obj = format!("security_group {:?}", g.id.get_ref());
            let members = g
                .members
                .iter()
                .map(|m| {
                    parse_ip_or_cidr(m.get_ref())
                        .map_err(|e| cx.err(Some(m.span()), format!("{obj}: members"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let rules = g
                .rule
                .iter()
                .map(|r| rule(cx, r, &obj, &ids))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SecurityGroupConfig {
                id: g.id.get_ref().clone(),
                stateful: g.stateful.as_ref().map(|s| *s.get_ref()).unwrap_or(true),
                members,
                rules,
            })
        })
        .collect()
}

fn rule(
    cx: &Ctx<'_>,
    r: &RawRule,
    obj: &str,
    groups: &HashSet<&str>,
) -> Result<RuleConfig, ConfigError> {
    let id = r.id.get_ref();
    let at = |field: &str| format!("{obj}: rule {id:?}: {field}");
    let bad = |s: &Spanned<String>, field: &str, m: String| cx.err(Some(s.span()), at(field), m);
    if id.is_empty() {
        return Err(bad(&r.id, "id", "must not be empty".into()));
    }
    let direction = match r.direction.get_ref().as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        o => {
            return Err(bad(
                &r.direction,
                "direction",
                format!("{o:?} is not ingress or egress"),
            ))
        }
    };
    let family = match r.ethertype.get_ref().as_str() {
        "IPv4" => Family::V4,
        "IPv6" => Family::V6,
        o => {
            return Err(bad(
                &r.ethertype,
                "ethertype",
                format!("{o:?} is not IPv4 or IPv6"),
            ))
        }
    };
    let protocol = match &r.protocol {
        None => None,
        Some(p) => protocol(p.get_ref()).map_err(|m| bad(p, "protocol", m))?,
    };
    if protocol == Some(PROTO_ICMPV6) && family == Family::V4 {
        let p = r.protocol.as_ref().unwrap_or(&r.ethertype);
        return Err(bad(p, "protocol", "ICMPv6 in an IPv4 rule".into()));
    }
    let (port_min, port_max) = ports(cx, r, protocol, &at)?;
    let remote = remote(cx, r, family, groups, &at)?;
    Ok(RuleConfig {
        id: id.clone(),
        direction,
        family,
        protocol,
        port_min,
        port_max,
        remote,
    })
}

/// Port ranges: both or neither, 1..=65535 and min <= max for the protocols with ports; ICMP
/// type (min) and code (max) 0..=255, a code only with a type; nothing for other protocols.
fn ports(
    cx: &Ctx<'_>,
    r: &RawRule,
    protocol: Option<u8>,
    at: &dyn Fn(&str) -> String,
) -> Result<(Option<u16>, Option<u16>), ConfigError> {
    let (min, max) = (&r.port_range_min, &r.port_range_max);
    let err = |v: &Spanned<i64>, field: &str, m: String| cx.err(Some(v.span()), at(field), m);
    let range = |v: &Option<Spanned<i64>>, field: &str, lo: i64, hi: i64| {
        v.as_ref()
            .map(|v| {
                let n = *v.get_ref();
                if (lo..=hi).contains(&n) {
                    Ok(n as u16)
                } else {
                    Err(err(v, field, format!("{n} is out of range {lo}..={hi}")))
                }
            })
            .transpose()
    };
    match protocol {
        Some(p) if has_ports(p) => {
            let a = range(min, "port_range_min", 1, 65535)?;
            let b = range(max, "port_range_max", 1, 65535)?;
            match (a, b, min, max) {
                (Some(a), Some(b), Some(v), _) if a > b => Err(err(
                    v,
                    "port_range_min",
                    format!("{a} is above port_range_max {b}"),
                )),
                (Some(_), None, Some(v), _) | (None, Some(_), _, Some(v)) => Err(err(
                    v,
                    "port_range_min",
                    "give port_range_min and port_range_max together".into(),
                )),
                _ => Ok((a, b)),
            }
        }
        Some(p) if is_icmp(p) => {
            let ty = range(min, "port_range_min", 0, 255)?;
            let code = range(max, "port_range_max", 0, 255)?;
            match (ty, max) {
                (None, Some(v)) => Err(err(
                    v,
                    "port_range_max",
                    "an ICMP code (port_range_max) needs a type (port_range_min)".into(),
                )),
                _ => Ok((ty, code)),
            }
        }
        _ => match min.as_ref().or(max.as_ref()) {
            Some(v) => Err(err(
                v,
                "port_range_min",
                "port ranges need a protocol with ports (tcp, udp, sctp, dccp, udplite) or ICMP"
                    .into(),
            )),
            None => Ok((None, None)),
        },
    }
}

/// `remote_ip_prefix` (of the rule's family) or `remote_group` (a known group), not both.
fn remote(
    cx: &Ctx<'_>,
    r: &RawRule,
    family: Family,
    groups: &HashSet<&str>,
    at: &dyn Fn(&str) -> String,
) -> Result<RuleRemote, ConfigError> {
    let bad = |s: &Spanned<String>, field: &str, m: String| cx.err(Some(s.span()), at(field), m);
    match (&r.remote_ip_prefix, &r.remote_group) {
        (Some(p), Some(_)) => Err(bad(
            p,
            "remote_ip_prefix",
            "give remote_ip_prefix or remote_group, not both".into(),
        )),
        (Some(p), None) => {
            let net = parse_ip_or_cidr(p.get_ref()).map_err(|m| bad(p, "remote_ip_prefix", m))?;
            if Family::of(net.addr()) != family {
                return Err(bad(
                    p,
                    "remote_ip_prefix",
                    format!("{net} is not of the rule's ethertype"),
                ));
            }
            Ok(RuleRemote::Prefix(net))
        }
        (None, Some(g)) if !groups.contains(g.get_ref().as_str()) => Err(bad(
            g,
            "remote_group",
            format!("unknown security group {:?}", g.get_ref()),
        )),
        (None, Some(g)) => Ok(RuleRemote::Group(g.get_ref().clone())),
        (None, None) => Ok(RuleRemote::Any),
    }
}
