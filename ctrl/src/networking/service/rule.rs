//! Security group rules: Neutron's attribute conversions, then its checks,
//! in Neutron's order, so the first error a bad body meets is the one
//! Neutron would answer with, under the same exception name and message.

use super::protocol;
use super::{accept_empty, get_rule, get_sg, project_of, Ctx, Env, Write};
use crate::networking::body::RuleReq;
use crate::networking::error::{NetError, NetResult};
use crate::networking::ipam;
use crate::networking::model::*;
use crate::networking::state::{Change, Kind, State};
use serde_json::{json, Value};

/// `POST /security-group-rules`: refused (409) when the group already has
/// a rule for the same traffic.
pub fn create_rule(
    st: &State,
    env: &mut Env,
    ctx: &Ctx,
    req: &RuleReq,
) -> Write<SecurityGroupRule> {
    let f = req.clone();
    // Neutron's API layer first: required attributes and conversions.
    let sg_id = f
        .security_group_id
        .ok_or_else(|| NetError::invalid("security_group_id", "security_group_id is required"))?;
    let remote_group_id = f.remote_group_id.flatten();
    let direction = rule_direction(f.direction)?;
    let protocol = protocol::convert(f.protocol.as_ref())?;
    let min = port_value(f.port_range_min.as_ref())?;
    let max = port_value(f.port_range_max.as_ref())?;
    let ethertype = rule_ethertype(f.ethertype)?;
    let remote_ip_prefix = rule_remote_ip_prefix(f.remote_ip_prefix.flatten())?;
    accept_empty("remote_address_group_id", f.remote_address_group_id)?;
    let g = get_sg(st, ctx, &sg_id)?;
    let _ = project_of(f.project_id, f.tenant_id, ctx)?;
    env.authz.check(
        ctx,
        "create_security_group_rule",
        &json!({"project_id": g.project_id, "tenant_id": g.project_id}),
    )?;
    // Then the plugin's `_validate_security_group_rule`.
    let protocol = protocol::canonical(&ethertype, protocol);
    let (min, max) = canonical_port_range(min, max);
    check_port_range(protocol.as_deref(), min, max)?;
    check_prefix_ethertype(remote_ip_prefix.as_deref(), &ethertype)?;
    protocol::check_ethertype(&ethertype, protocol.as_deref())?;
    check_remote_group(
        st,
        ctx,
        remote_group_id.as_deref(),
        remote_ip_prefix.is_some(),
    )?;
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
        std: Std::new(&env.now, f.description.unwrap_or_default()),
    };
    check_not_duplicate(st, &sg_id, &r)?;
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

/// A rule's `direction`: required, `ingress` or `egress`.
fn rule_direction(direction: Option<String>) -> NetResult<String> {
    let direction =
        direction.ok_or_else(|| NetError::invalid("direction", "direction is required"))?;
    if direction != "ingress" && direction != "egress" {
        return Err(NetError::invalid(
            "direction",
            format!("'{direction}' is not in ['ingress', 'egress']"),
        ));
    }
    Ok(direction)
}

/// A rule's `ethertype`: `IPv4` (the default) or `IPv6`, in any case
/// (Neutron's `convert_ethertype_to_case_insensitive`), stored as spelled here.
fn rule_ethertype(ethertype: Option<String>) -> NetResult<String> {
    let Some(given) = ethertype else {
        return Ok("IPv4".into());
    };
    ["IPv4", "IPv6"]
        .into_iter()
        .find(|e| e.eq_ignore_ascii_case(&given))
        .map(str::to_string)
        .ok_or_else(|| {
            NetError::bad(
                "SecurityGroupRuleInvalidEtherType",
                format!(
                    "Security group rule for ethertype '{given}' not supported. \
                     Allowed values are ['IPv4', 'IPv6']."
                ),
            )
        })
}

/// Neutron's `convert_validate_port_value`: null, or a port 0..65535 given
/// as a JSON integer or as text. Whatever the protocol: an ICMP type of -1
/// is refused here too.
fn port_value(v: Option<&Value>) -> NetResult<Option<i64>> {
    let refuse = |shown: &dyn std::fmt::Display| {
        NetError::bad(
            "SecurityGroupInvalidPortValue",
            format!("Invalid value for port {shown}"),
        )
    };
    let port = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| refuse(n))?,
        Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| refuse(s))?,
        Some(other) => return Err(refuse(other)),
    };
    if !(0..=65535).contains(&port) {
        return Err(refuse(&port));
    }
    Ok(Some(port))
}

/// Neutron's `_make_canonical_port_range`: 1..65535 is every port, stored as
/// no range at all (whatever the protocol, as Neutron does).
fn canonical_port_range(min: Option<i64>, max: Option<i64>) -> (Option<i64>, Option<i64>) {
    if min == Some(1) && max == Some(65535) {
        (None, None)
    } else {
        (min, max)
    }
}

/// Neutron's `_validate_port_range`, on converted values (0..65535): a
/// range needs a protocol; dccp, sctp, tcp, udp and udplite take both ends,
/// ordered, never port 0; ICMP takes a type and code 0..255, no code
/// without a type; no other protocol takes a range.
fn check_port_range(protocol: Option<&str>, min: Option<i64>, max: Option<i64>) -> NetResult<()> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(p) = protocol else {
        return Err(NetError::bad(
            "SecurityGroupProtocolRequiredWithPorts",
            "Must also specify protocol if port range is given.",
        ));
    };
    let num = protocol::number(p).ok_or_else(|| {
        NetError::Internal(format!("protocol {p} passed conversion without a number"))
    })?;
    if protocol::WITH_PORTS.contains(&num) {
        if min == Some(0) || max == Some(0) {
            return Err(NetError::bad(
                "SecurityGroupInvalidPortValue",
                "Invalid value for port 0",
            ));
        }
        return match (min, max) {
            (Some(a), Some(b)) if a <= b => Ok(()),
            _ => Err(NetError::bad(
                "SecurityGroupInvalidPortRange",
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            )),
        };
    }
    if protocol::ICMP.contains(&num) {
        for (attr, field, v) in [
            ("port_range_min", "type", min),
            ("port_range_max", "code", max),
        ] {
            if let Some(v) = v.filter(|v| !(0..=255).contains(v)) {
                return Err(NetError::bad(
                    "SecurityGroupInvalidIcmpValue",
                    format!("Invalid value for ICMP {field} ({attr}) {v}. It must be 0 to 255."),
                ));
            }
        }
        if let (None, Some(code)) = (min, max) {
            return Err(NetError::bad(
                "SecurityGroupMissingIcmpType",
                format!(
                    "ICMP code (port-range-max) {code} is provided but ICMP type \
                     (port-range-min) is missing."
                ),
            ));
        }
        return Ok(());
    }
    Err(NetError::bad(
        "SecurityGroupInvalidProtocolForPort",
        format!(
            "Ports cannot be specified for protocol {num}. Ports are only supported \
             for DCCP, SCTP, TCP, UDP, UDPLITE."
        ),
    ))
}

/// Neutron's `convert_ip_prefix_to_cidr`: empty is none; an address gets
/// its full-length prefix; host bits are kept as given (the rule's
/// `normalized_cidr` shows the network they fall in).
fn rule_remote_ip_prefix(prefix: Option<String>) -> NetResult<Option<String>> {
    let Some(s) = prefix.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let refuse = || {
        NetError::bad(
            "InvalidCIDR",
            format!("Invalid CIDR {s} given as IP prefix."),
        )
    };
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s.as_str(), None),
    };
    let (ver, v) = ipam::parse_ip(addr).ok_or_else(refuse)?;
    let bits = if ver == 4 { 32 } else { 128 };
    let len: u8 = match len {
        None => bits,
        Some(l) => l.parse().ok().filter(|l| *l <= bits).ok_or_else(refuse)?,
    };
    Ok(Some(format!("{}/{len}", ipam::fmt_ip(ver, v))))
}

/// Neutron's `_validate_ip_prefix`: the prefix's family is the rule's ethertype.
fn check_prefix_ethertype(prefix: Option<&str>, ethertype: &str) -> NetResult<()> {
    let Some(p) = prefix else {
        return Ok(());
    };
    let v4 = !p.contains(':');
    if v4 != (ethertype == "IPv4") {
        return Err(NetError::bad(
            "SecurityGroupRuleParameterConflict",
            format!("Conflicting value ethertype {ethertype} for CIDR {p}"),
        ));
    }
    Ok(())
}

/// One remote (a prefix or a group, never both), and a remote group the
/// caller sees.
fn check_remote_group(
    st: &State,
    ctx: &Ctx,
    remote_group_id: Option<&str>,
    has_prefix: bool,
) -> NetResult<()> {
    let Some(rg) = remote_group_id else {
        return Ok(());
    };
    if has_prefix {
        return Err(NetError::bad(
            "SecurityGroupMultipleRemoteEntites",
            "Only one of remote_ip_prefix or remote_group_id or \
             remote_address_group_id may be provided.",
        ));
    }
    get_sg(st, ctx, rg)?;
    Ok(())
}

/// What makes two rules the same rule (Neutron's `_rule_to_key`): the
/// protocol by number (`tcp` is `6`; in IPv6 `icmp` is `ipv6-icmp` is 58),
/// and a remote prefix of everything (`0.0.0.0/0`, `::/0`) the same as none.
fn rule_key(r: &SecurityGroupRule) -> impl PartialEq + '_ {
    let protocol = protocol::canonical(&r.ethertype, r.protocol.clone())
        .map(|p| protocol::number(&p).ok_or(p));
    let prefix = r
        .remote_ip_prefix
        .as_deref()
        .filter(|p| *p != "0.0.0.0/0" && *p != "::/0");
    (
        (&r.security_group_id, &r.direction, &r.ethertype),
        protocol,
        (r.port_range_min, r.port_range_max),
        prefix,
        &r.remote_group_id,
    )
}

/// Neutron's SecurityGroupRuleExists (409): group `sg_id` already has a rule
/// for the same traffic as `r`.
fn check_not_duplicate(st: &State, sg_id: &str, r: &SecurityGroupRule) -> NetResult<()> {
    let key = rule_key(r);
    if let Some(dup) = st.rules_of(sg_id).into_iter().find(|o| rule_key(o) == key) {
        return Err(NetError::conflict(
            "SecurityGroupRuleExists",
            format!("Security group rule already exists. Rule id is {}.", dup.id),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The rule checks on their own, each bound from both sides (the HTTP
    //! tests cover the rule API; these pin the edges).
    use super::*;

    fn refused(r: NetResult<impl std::fmt::Debug>, says: &str) {
        let e = r.expect_err("should be refused");
        assert!(e.to_string().contains(says), "{e} does not say {says}");
    }

    #[test]
    fn ports_convert_from_integers_or_text_in_0_to_65535() {
        assert_eq!(port_value(Some(&json!(0))).unwrap(), Some(0));
        assert_eq!(port_value(Some(&json!(65535))).unwrap(), Some(65535));
        assert_eq!(port_value(Some(&json!("22"))).unwrap(), Some(22));
        assert_eq!(port_value(Some(&Value::Null)).unwrap(), None);
        assert_eq!(port_value(None).unwrap(), None);
        refused(port_value(Some(&json!(-16))), "Invalid value for port -16");
        refused(
            port_value(Some(&json!(65536))),
            "Invalid value for port 65536",
        );
        refused(
            port_value(Some(&json!("ssh"))),
            "Invalid value for port ssh",
        );
        refused(port_value(Some(&json!(2.5))), "Invalid value for port 2.5");
        refused(port_value(Some(&json!(true))), "Invalid value for port");
    }

    #[test]
    fn port_protocols_take_both_ends_ordered_and_never_0() {
        for p in ["tcp", "udp", "sctp", "dccp", "udplite", "6", "136"] {
            assert!(check_port_range(Some(p), Some(1), Some(65535)).is_ok());
            assert!(check_port_range(Some(p), Some(22), Some(22)).is_ok());
            assert!(check_port_range(Some(p), None, None).is_ok());
            refused(
                check_port_range(Some(p), Some(0), Some(10)),
                "Invalid value for port 0",
            );
            refused(
                check_port_range(Some(p), Some(10), Some(0)),
                "Invalid value for port 0",
            );
            let order = "port_range_min must be <= port_range_max";
            refused(check_port_range(Some(p), Some(20), Some(10)), order);
            refused(check_port_range(Some(p), Some(22), None), order);
            refused(check_port_range(Some(p), None, Some(22)), order);
        }
    }

    #[test]
    fn icmp_type_and_code_are_0_to_255_and_a_code_needs_a_type() {
        for p in ["icmp", "ipv6-icmp", "icmpv6", "1", "58"] {
            assert!(check_port_range(Some(p), Some(0), Some(255)).is_ok());
            assert!(check_port_range(Some(p), Some(255), None).is_ok());
            refused(
                check_port_range(Some(p), Some(256), None),
                "Invalid value for ICMP type (port_range_min) 256",
            );
            refused(
                check_port_range(Some(p), Some(8), Some(256)),
                "Invalid value for ICMP code (port_range_max) 256",
            );
            refused(
                check_port_range(Some(p), None, Some(0)),
                "ICMP type (port-range-min) is missing",
            );
        }
    }

    #[test]
    fn other_protocols_and_no_protocol_take_no_range() {
        for p in ["gre", "112", "ah"] {
            assert!(check_port_range(Some(p), None, None).is_ok());
            refused(
                check_port_range(Some(p), Some(1), None),
                "Ports cannot be specified for protocol",
            );
            refused(
                check_port_range(Some(p), None, Some(1)),
                "Ports cannot be specified for protocol",
            );
        }
        assert!(check_port_range(None, None, None).is_ok());
        refused(
            check_port_range(None, Some(22), Some(22)),
            "Must also specify protocol",
        );
    }

    #[test]
    fn the_whole_port_range_is_no_range() {
        assert_eq!(canonical_port_range(Some(1), Some(65535)), (None, None));
        assert_eq!(
            canonical_port_range(Some(1), Some(65534)),
            (Some(1), Some(65534))
        );
        assert_eq!(canonical_port_range(None, Some(65535)), (None, Some(65535)));
    }

    #[test]
    fn remote_prefixes_keep_host_bits_and_normalise_beside() {
        let p = |s: &str| rule_remote_ip_prefix(Some(s.to_string()));
        assert_eq!(p("10.1.2.3/8").unwrap().as_deref(), Some("10.1.2.3/8"));
        assert_eq!(p("10.0.0.1").unwrap().as_deref(), Some("10.0.0.1/32"));
        assert_eq!(p("0.0.0.0/0").unwrap().as_deref(), Some("0.0.0.0/0"));
        assert_eq!(
            p("2001:DB8::1/32").unwrap().as_deref(),
            Some("2001:db8::1/32")
        );
        assert_eq!(p("").unwrap(), None);
        refused(p("10.0.0.0/33"), "Invalid CIDR 10.0.0.0/33");
        refused(p("nonsense"), "Invalid CIDR nonsense");
        refused(p("10.0.0.0/x"), "Invalid CIDR");
        let n = |s: &str| normalized_cidr(s).unwrap();
        assert_eq!(n("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(n("10.0.0.34/24"), "10.0.0.0/24");
        assert_eq!(n("10.0.0.1/32"), "10.0.0.1/32");
        assert_eq!(n("10.9.9.9/0"), "0.0.0.0/0");
        assert_eq!(n("2001:db8::1/32"), "2001:db8::/32");
        assert_eq!(n("2001:db8::1/128"), "2001:db8::1/128");
        assert_eq!(n("2001:db8::1/0"), "::/0");
        refused(
            check_prefix_ethertype(Some("10.0.0.0/8"), "IPv6"),
            "Conflicting value ethertype IPv6",
        );
        refused(
            check_prefix_ethertype(Some("::/0"), "IPv4"),
            "Conflicting value ethertype IPv4",
        );
        assert!(check_prefix_ethertype(Some("::/0"), "IPv6").is_ok());
    }

    #[test]
    fn ethertypes_in_any_case() {
        assert_eq!(rule_ethertype(Some("ipv6".into())).unwrap(), "IPv6");
        assert_eq!(rule_ethertype(None).unwrap(), "IPv4");
        refused(
            rule_ethertype(Some("IPX".into())),
            "ethertype 'IPX' not supported",
        );
    }

    fn rule(protocol: Option<&str>, ethertype: &str, prefix: Option<&str>) -> SecurityGroupRule {
        SecurityGroupRule {
            id: "r".into(),
            security_group_id: "g".into(),
            project_id: "p".into(),
            direction: "ingress".into(),
            ethertype: ethertype.into(),
            protocol: protocol.map(str::to_string),
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: prefix.map(str::to_string),
            remote_group_id: None,
            std: Std::default(),
        }
    }

    #[test]
    fn duplicates_compare_protocols_by_number_and_everything_as_none() {
        let same = |a: &SecurityGroupRule, b: &SecurityGroupRule| rule_key(a) == rule_key(b);
        let r = |p, e| rule(p, e, None);
        assert!(same(&r(Some("tcp"), "IPv4"), &r(Some("6"), "IPv4")));
        assert!(same(&r(Some("icmp"), "IPv6"), &r(Some("58"), "IPv6")));
        assert!(same(&r(Some("ipv6-icmp"), "IPv6"), &r(Some("1"), "IPv6")));
        assert!(!same(&r(Some("tcp"), "IPv4"), &r(Some("udp"), "IPv4")));
        assert!(!same(&r(Some("tcp"), "IPv4"), &r(None, "IPv4")));
        assert!(!same(&r(Some("tcp"), "IPv4"), &r(Some("tcp"), "IPv6")));
        assert!(same(
            &rule(None, "IPv4", Some("0.0.0.0/0")),
            &rule(None, "IPv4", None)
        ));
        assert!(same(
            &rule(None, "IPv6", Some("::/0")),
            &rule(None, "IPv6", None)
        ));
        assert!(!same(
            &rule(None, "IPv4", Some("10.0.0.0/8")),
            &rule(None, "IPv4", None)
        ));
        let mut ports = r(Some("tcp"), "IPv4");
        ports.port_range_min = Some(22);
        ports.port_range_max = Some(22);
        assert!(!same(&ports, &r(Some("tcp"), "IPv4")));
    }
}
