//! IP protocols as security group rules name them: Neutron's table of
//! names (neutron-lib's `IP_PROTOCOL_MAP`), its `protocol` conversion, and
//! the per-ethertype rules it applies to them. Pure data and functions.

use crate::networking::error::{NetError, NetResult};
use serde_json::Value;

/// Every name a rule's `protocol` may take, with its IP protocol number.
/// `icmpv6` is the legacy alias of `ipv6-icmp`; `ip` and `hopopt` both are 0.
const NAMES: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ip", 0),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// ICMP and ICMPv6: `port_range_min`/`max` carry the type and code.
pub const ICMP: [u8; 2] = [1, 58];

/// The protocols whose rules may carry a port range (Neutron's
/// `SG_PORT_PROTO_NUMS`: dccp, sctp, tcp, udp, udplite).
pub const WITH_PORTS: [u8; 5] = [33, 132, 6, 17, 136];

/// Protocols that only exist over IPv6: a rule naming one (by name or
/// number) with ethertype IPv4 is refused.
const IPV6_ONLY: [&str; 7] = [
    "ipv6-encap",
    "ipv6-frag",
    "ipv6-icmp",
    "icmpv6",
    "ipv6-nonxt",
    "ipv6-opts",
    "ipv6-route",
];

/// The IP protocol number of a stored `protocol` (a name of [`NAMES`] or a
/// number 0..255 as text); None for anything else.
pub fn number(protocol: &str) -> Option<u8> {
    NAMES
        .iter()
        .find(|(n, _)| *n == protocol)
        .map(|(_, v)| *v)
        .or_else(|| protocol.parse().ok())
}

/// Neutron's `convert_protocol`: absent, null or `any` mean every protocol
/// (None); a name is kept lowercase; a number 0..255, as JSON number or
/// text, is kept as its decimal text. Anything else is refused with
/// Neutron's SecurityGroupRuleInvalidProtocol, which lists what is accepted.
pub fn convert(protocol: Option<&Value>) -> NetResult<Option<String>> {
    let refuse = |shown: &dyn std::fmt::Display| {
        let names: Vec<String> = NAMES.iter().map(|(n, _)| format!("'{n}'")).collect();
        NetError::bad(
            "SecurityGroupRuleInvalidProtocol",
            format!(
                "Security group rule protocol {shown} not supported. Only protocol values \
                 (None, 'any', {}) and integer representations [0 to 255] are supported.",
                names.join(", ")
            ),
        )
    };
    match protocol {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "any" => Ok(None),
        Some(Value::String(s)) => {
            if let Ok(v) = s.trim().parse::<i64>() {
                return match u8::try_from(v) {
                    Ok(v) => Ok(Some(v.to_string())),
                    Err(_) => Err(refuse(s)),
                };
            }
            let lower = s.to_lowercase();
            if NAMES.iter().any(|(n, _)| *n == lower) {
                Ok(Some(lower))
            } else {
                Err(refuse(s))
            }
        }
        Some(Value::Number(n)) => match n.as_u64().and_then(|v| u8::try_from(v).ok()) {
            Some(v) => Ok(Some(v.to_string())),
            None => Err(refuse(n)),
        },
        Some(v) => Err(refuse(v)),
    }
}

/// Neutron's `_make_canonical_ipv6_icmp_protocol`: in an IPv6 rule the
/// legacy ICMP spellings (`icmp`, `icmpv6`, and number 1) become
/// `ipv6-icmp` (58), which is what the rule then stores and returns.
pub fn canonical(ethertype: &str, protocol: Option<String>) -> Option<String> {
    let p = protocol?;
    if ethertype != "IPv6" {
        return Some(p);
    }
    Some(match p.as_str() {
        "icmp" | "icmpv6" => "ipv6-icmp".into(),
        "1" => "58".into(),
        _ => p,
    })
}

/// Neutron's `_validate_ethertype_and_protocol`: an IPv4 rule may not name
/// an IPv6-only protocol, by name or by number.
pub fn check_ethertype(ethertype: &str, protocol: Option<&str>) -> NetResult<()> {
    let Some(p) = protocol else {
        return Ok(());
    };
    let v6_only = IPV6_ONLY.contains(&p)
        || p.parse::<u8>()
            .is_ok_and(|v| IPV6_ONLY.iter().any(|n| number(n) == Some(v)));
    if ethertype == "IPv4" && v6_only {
        return Err(NetError::bad(
            "SecurityGroupEthertypeConflictWithProtocol",
            format!("Invalid ethertype {ethertype} for protocol {p}."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_numbers_convert_as_neutron() {
        let c = |v: Value| convert(Some(&v)).map_err(|e| e.to_string());
        assert_eq!(c(json!("TCP")).unwrap().as_deref(), Some("tcp"));
        assert_eq!(c(json!("udplite")).unwrap().as_deref(), Some("udplite"));
        assert_eq!(c(json!("dccp")).unwrap().as_deref(), Some("dccp"));
        assert_eq!(c(json!("icmpv6")).unwrap().as_deref(), Some("icmpv6"));
        assert_eq!(c(json!(6)).unwrap().as_deref(), Some("6"));
        assert_eq!(c(json!("58")).unwrap().as_deref(), Some("58"));
        assert_eq!(c(json!(0)).unwrap().as_deref(), Some("0"));
        assert_eq!(c(json!(255)).unwrap().as_deref(), Some("255"));
        assert_eq!(c(json!("any")).unwrap(), None);
        assert_eq!(c(Value::Null).unwrap(), None);
        assert_eq!(convert(None).unwrap(), None);
        for bad in [
            json!(256),
            json!(-1),
            json!("256"),
            json!("-1"),
            json!(""),
            json!("carrier-pigeon"),
            json!(true),
            json!(6.5),
            json!(["tcp"]),
        ] {
            let e = c(bad.clone()).expect_err(&bad.to_string());
            assert!(e.contains("not supported"), "{e}");
        }
    }

    #[test]
    fn every_name_has_its_number() {
        for (name, num) in NAMES {
            assert_eq!(number(name), Some(*num));
            assert_eq!(number(&num.to_string()), Some(*num));
        }
        assert_eq!(number("bogus"), None);
    }

    #[test]
    fn ipv6_rules_store_the_canonical_icmp() {
        let c = |e: &str, p: &str| canonical(e, Some(p.to_string())).unwrap();
        assert_eq!(c("IPv6", "icmp"), "ipv6-icmp");
        assert_eq!(c("IPv6", "icmpv6"), "ipv6-icmp");
        assert_eq!(c("IPv6", "1"), "58");
        assert_eq!(c("IPv6", "tcp"), "tcp");
        assert_eq!(c("IPv4", "icmp"), "icmp");
        assert_eq!(c("IPv4", "icmpv6"), "icmpv6");
        assert_eq!(canonical("IPv6", None), None);
    }

    #[test]
    fn ipv6_only_protocols_are_refused_in_ipv4_rules() {
        for p in [
            "ipv6-encap",
            "ipv6-frag",
            "ipv6-icmp",
            "icmpv6",
            "ipv6-nonxt",
            "ipv6-opts",
            "ipv6-route",
            "41",
            "44",
            "58",
            "59",
            "60",
            "43",
        ] {
            assert!(check_ethertype("IPv4", Some(p)).is_err(), "{p}");
            assert!(check_ethertype("IPv6", Some(p)).is_ok(), "{p}");
        }
        for p in ["icmp", "tcp", "1", "6", "udplite"] {
            assert!(check_ethertype("IPv4", Some(p)).is_ok(), "{p}");
        }
        assert!(check_ethertype("IPv4", None).is_ok());
    }
}
