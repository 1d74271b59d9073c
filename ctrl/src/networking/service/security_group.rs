//! Security groups and their rules, with each project's `default` group.

use super::{accept_empty, get_rule, get_sg, project_of, Ctx, Env, Write};
use crate::networking::body::{RuleReq, SecurityGroupReq};
use crate::networking::error::{NetError, NetResult};
use crate::networking::ipam;
use crate::networking::model::*;
use crate::networking::state::{Change, Kind, State};
use serde_json::{json, Value};

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
/// The checks run in Neutron's order, so the first error a bad body meets
/// is the one it answers with.
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
    let direction = rule_direction(f.direction)?;
    let ethertype = rule_ethertype(f.ethertype)?;
    let protocol = rule_protocol(f.protocol)?;
    let min = f.port_range_min.flatten();
    let max = f.port_range_max.flatten();
    check_port_range(protocol.as_deref(), min, max)?;
    let remote_ip_prefix = rule_remote_ip_prefix(f.remote_ip_prefix.flatten(), &ethertype)?;
    let remote_group_id = f.remote_group_id.flatten();
    check_remote_group(
        st,
        ctx,
        remote_group_id.as_deref(),
        remote_ip_prefix.is_some(),
    )?;
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
    check_not_duplicate(st, &sg_id, &r)?;
    Ok((r.clone(), vec![Change::Rule(r)]))
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

/// A rule's `ethertype`: `IPv4` (the default) or `IPv6`.
fn rule_ethertype(ethertype: Option<String>) -> NetResult<String> {
    let ethertype = ethertype.unwrap_or_else(|| "IPv4".into());
    if ethertype != "IPv4" && ethertype != "IPv6" {
        return Err(NetError::invalid(
            "ethertype",
            format!("'{ethertype}' is not in ['IPv4', 'IPv6']"),
        ));
    }
    Ok(ethertype)
}

/// A rule's `protocol`: absent, empty or `any` for every protocol; a name
/// Neutron knows (stored lowercase) or a number 0..255 (stored as text).
fn rule_protocol(protocol: Option<Value>) -> NetResult<Option<String>> {
    Ok(match protocol {
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
    })
}

/// `port_range_min`/`max` as the protocol reads them: a port range 1..65535
/// for TCP, UDP and SCTP (both ends or neither); ICMP type and code 0..255
/// (no code without a type); nothing for any other protocol.
fn check_port_range(protocol: Option<&str>, min: Option<i64>, max: Option<i64>) -> NetResult<()> {
    let pnum = protocol.and_then(protocol_number);
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
    Ok(())
}

/// A rule's `remote_ip_prefix`: an address or prefix of the rule's
/// ethertype, stored with its host bits cleared.
fn rule_remote_ip_prefix(prefix: Option<String>, ethertype: &str) -> NetResult<Option<String>> {
    Ok(match prefix {
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
    })
}

/// A rule's `remote_group_id`: a group the caller sees, and never together
/// with a `remote_ip_prefix`.
fn check_remote_group(
    st: &State,
    ctx: &Ctx,
    remote_group_id: Option<&str>,
    has_prefix: bool,
) -> NetResult<()> {
    if let Some(rg) = remote_group_id {
        get_sg(st, ctx, rg)?;
        if has_prefix {
            return Err(NetError::invalid(
                "remote_group_id",
                "Only remote_ip_prefix or remote_group_id may be provided",
            ));
        }
    }
    Ok(())
}

/// Neutron's SecurityGroupRuleExists (409): group `sg_id` already has a rule
/// that matches the same traffic as `r`.
fn check_not_duplicate(st: &State, sg_id: &str, r: &SecurityGroupRule) -> NetResult<()> {
    if let Some(dup) = st
        .rules_of(sg_id)
        .into_iter()
        .find(|o| o.identity() == r.identity())
    {
        return Err(NetError::conflict(
            "SecurityGroupRuleExists",
            format!("Security group rule already exists. Rule id is {}.", dup.id),
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    //! The rule checks on their own, each bound from both sides (the HTTP
    //! tests cover the rule API; these pin the edges).
    use super::*;

    fn err_names(r: NetResult<impl std::fmt::Debug>, field: &str) {
        let e = r.expect_err("should be refused");
        assert!(e.to_string().contains(field), "{e} does not name {field}");
    }

    #[test]
    fn tcp_udp_sctp_ports_are_1_to_65535_both_ends_ordered() {
        for p in ["tcp", "udp", "sctp", "6"] {
            assert!(check_port_range(Some(p), Some(1), Some(65535)).is_ok());
            assert!(check_port_range(Some(p), None, None).is_ok());
            err_names(
                check_port_range(Some(p), Some(0), Some(10)),
                "port_range_min",
            );
            err_names(
                check_port_range(Some(p), Some(1), Some(65536)),
                "port_range_max",
            );
            err_names(
                check_port_range(Some(p), Some(20), Some(10)),
                "port_range_min",
            );
            err_names(check_port_range(Some(p), Some(22), None), "port_range_max");
            err_names(check_port_range(Some(p), None, Some(22)), "port_range_min");
        }
    }

    #[test]
    fn icmp_type_and_code_are_0_to_255_and_a_code_needs_a_type() {
        for p in ["icmp", "ipv6-icmp", "58"] {
            assert!(check_port_range(Some(p), Some(0), Some(255)).is_ok());
            assert!(check_port_range(Some(p), Some(255), None).is_ok());
            err_names(check_port_range(Some(p), Some(256), None), "port_range_min");
            err_names(
                check_port_range(Some(p), Some(8), Some(256)),
                "port_range_max",
            );
            err_names(check_port_range(Some(p), Some(-1), None), "port_range_min");
            err_names(check_port_range(Some(p), None, Some(0)), "port_range_max");
        }
    }

    #[test]
    fn other_protocols_take_no_port_range() {
        for p in [None, Some("gre"), Some("112")] {
            assert!(check_port_range(p, None, None).is_ok());
            err_names(check_port_range(p, Some(1), None), "port_range_min");
            err_names(check_port_range(p, None, Some(1)), "port_range_max");
        }
    }

    #[test]
    fn protocols_by_name_or_number() {
        assert_eq!(
            rule_protocol(Some(json!("TCP"))).unwrap().as_deref(),
            Some("tcp")
        );
        assert_eq!(rule_protocol(Some(json!(6))).unwrap().as_deref(), Some("6"));
        assert_eq!(
            rule_protocol(Some(json!(255))).unwrap().as_deref(),
            Some("255")
        );
        assert_eq!(rule_protocol(Some(json!("any"))).unwrap(), None);
        assert_eq!(rule_protocol(None).unwrap(), None);
        err_names(rule_protocol(Some(json!(256))), "protocol");
        err_names(rule_protocol(Some(json!("bogus"))), "protocol");
        err_names(rule_protocol(Some(json!(true))), "protocol");
    }

    #[test]
    fn remote_prefixes_lose_host_bits_and_match_the_ethertype() {
        let p = |s: &str, e: &str| rule_remote_ip_prefix(Some(s.to_string()), e);
        assert_eq!(
            p("10.1.2.3/8", "IPv4").unwrap().as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(
            p("10.0.0.1", "IPv4").unwrap().as_deref(),
            Some("10.0.0.1/32")
        );
        assert_eq!(
            p("0.0.0.0/0", "IPv4").unwrap().as_deref(),
            Some("0.0.0.0/0")
        );
        assert_eq!(
            p("2001:db8::1/32", "IPv6").unwrap().as_deref(),
            Some("2001:db8::/32")
        );
        assert_eq!(p("::/0", "IPv6").unwrap().as_deref(), Some("::/0"));
        err_names(p("10.0.0.0/33", "IPv4"), "remote_ip_prefix");
        err_names(p("10.0.0.0/8", "IPv6"), "remote_ip_prefix");
        err_names(p("nonsense", "IPv4"), "remote_ip_prefix");
    }
}
