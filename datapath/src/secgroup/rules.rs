//! Security-group rules as Neutron stores them, and their compiled per-port form.
//!
//! Neutron's matching semantics, which both the compiled [`RuleSet`] and the reference evaluator
//! of the property test follow:
//! - a rule matches only its own direction (seen from the port) and its own family;
//! - `protocol` None matches any protocol; ICMP given for IPv6 means ICMPv6 (58), as Neutron
//!   maps it;
//! - for the port-carrying protocols (tcp, udp, sctp, dccp, udplite) `port_range_min..=max`
//!   bounds the *destination* port of the connection's first packet; other protocols ignore it;
//! - for ICMP/ICMPv6 `port_range_min` is the type and `port_range_max` the code (each None: any);
//! - the remote (prefix or group members) is the peer: the source for ingress, the destination
//!   for egress.

use super::{Direction, Packet, Transport};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// Protocol numbers the rules treat specially.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// DCCP (ports).
pub const PROTO_DCCP: u8 = 33;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// SCTP (ports).
pub const PROTO_SCTP: u8 = 132;
/// UDP-Lite (ports).
pub const PROTO_UDPLITE: u8 = 136;

/// Whether Neutron applies a port range to this protocol.
pub fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        PROTO_TCP | PROTO_UDP | PROTO_DCCP | PROTO_SCTP | PROTO_UDPLITE
    )
}

/// Whether the protocol is ICMP of either family (type/code in the port fields).
pub fn is_icmp(proto: u8) -> bool {
    proto == PROTO_ICMP || proto == PROTO_ICMPV6
}

/// IPv4 or IPv6.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Family {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(a: IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// The peer a rule admits.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Remote {
    /// Anywhere.
    Any,
    /// `remote_ip_prefix`.
    Prefix(IpNet),
    /// `remote_group_id`, resolved by the agent to the member ports' addresses (fixed IPs and
    /// allowed address pairs, which may be prefixes).
    Group {
        /// The group's id (for traces).
        id: String,
        /// Its members' addresses.
        members: Vec<IpNet>,
    },
}

/// One security-group rule, as the switch config carries it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Rule {
    /// Neutron rule id (traces, hit counters).
    pub id: String,
    /// Seen from the port.
    pub direction: Direction,
    /// `ethertype`.
    pub family: Family,
    /// IP protocol number; None: any.
    pub protocol: Option<u8>,
    /// Lowest destination port, or ICMP type.
    pub port_min: Option<u16>,
    /// Highest destination port, or ICMP code.
    pub port_max: Option<u16>,
    /// The peer.
    pub remote: Remote,
}

/// A rule in matching form: addresses as (value, mask) over 128 bits, ranges closed.
#[derive(Clone, Debug)]
struct Compiled {
    /// Index into [`RuleSet::ids`].
    index: u32,
    /// Protocol (None: any), ICMP already mapped to the rule's family.
    proto: Option<u8>,
    /// Inclusive destination-port range (for protocols with ports).
    ports: (u16, u16),
    /// ICMP type and code (None: any).
    icmp: (Option<u8>, Option<u8>),
    /// Peer prefixes; empty means anywhere.
    remotes: Box<[(u128, u128)]>,
    /// True when the rule can match nothing (a group without members of its family).
    never: bool,
}

/// A port's rules compiled for matching: split by direction and family so that a packet only
/// walks the rules that can apply to it.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// Rule ids, by index (the index is what entries and counters keep).
    ids: Vec<Arc<str>>,
    /// [ingress v4, ingress v6, egress v4, egress v6].
    lists: [Vec<Compiled>; 4],
}

fn slot(dir: Direction, fam: Family) -> usize {
    (match dir {
        Direction::Ingress => 0,
        Direction::Egress => 2,
    }) + match fam {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// An address widened to 128 bits (IPv4 in the low 32) and a prefix mask of the same width.
fn wide(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn net_mask(n: &IpNet) -> (u128, u128) {
    let (bits, len) = match n {
        IpNet::V4(v) => (32u32, v.prefix_len()),
        IpNet::V6(v) => (128u32, v.prefix_len()),
    };
    let host_bits = bits - u32::from(len);
    let full = if bits == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let mask = if host_bits >= 128 {
        0
    } else {
        full & !((1u128 << host_bits) - 1)
    };
    (wide(n.addr()) & mask, mask)
}

impl RuleSet {
    /// Compiles `rules` (order kept: the first matching rule is the one reported). Addresses of
    /// the other family in a prefix or group are ignored, as Neutron does.
    pub fn compile(rules: &[Rule]) -> RuleSet {
        let mut set = RuleSet::default();
        for (i, r) in rules.iter().enumerate() {
            set.ids.push(Arc::from(r.id.as_str()));
            let proto = r.protocol.map(|p| match (p, r.family) {
                (PROTO_ICMP, Family::V6) => PROTO_ICMPV6,
                (p, _) => p,
            });
            // A group with no member of the rule's family, or a prefix of the other family
            // (validation refuses those), matches nothing.
            let (remotes, never): (Vec<_>, bool) = match &r.remote {
                Remote::Any => (Vec::new(), false),
                Remote::Prefix(n) => (vec![net_mask(n)], Family::of(n.addr()) != r.family),
                Remote::Group { members, .. } => {
                    let v: Vec<_> = members
                        .iter()
                        .filter(|n| Family::of(n.addr()) == r.family)
                        .map(net_mask)
                        .collect();
                    let empty = v.is_empty();
                    (v, empty)
                }
            };
            set.lists[slot(r.direction, r.family)].push(Compiled {
                index: i as u32,
                proto,
                ports: (r.port_min.unwrap_or(0), r.port_max.unwrap_or(u16::MAX)),
                icmp: (
                    r.port_min.and_then(|v| u8::try_from(v).ok()),
                    r.port_max.and_then(|v| u8::try_from(v).ok()),
                ),
                remotes: remotes.into_boxed_slice(),
                never,
            });
        }
        set
    }

    /// Number of rules (including ones that can never match).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True with no rules at all (everything but the implicit rules is dropped).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of rule `index`.
    pub fn id(&self, index: u32) -> &str {
        self.ids.get(index as usize).map_or("?", |s| s)
    }

    /// The first rule (its index) that admits `p` starting a connection in direction `dir`.
    pub fn first_match(&self, dir: Direction, p: &Packet) -> Option<u32> {
        let fam = Family::of(p.src);
        let peer = wide(match dir {
            Direction::Ingress => p.src,
            Direction::Egress => p.dst,
        });
        let (dport, icmp) = match p.transport {
            Transport::Ports { dport, .. } | Transport::Tcp { dport, .. } => (Some(dport), None),
            Transport::Icmp { ty, code, .. } => (None, Some((ty, code))),
            Transport::Other => (None, None),
        };
        self.lists[slot(dir, fam)]
            .iter()
            .find(|c| {
                if let Some(proto) = c.proto {
                    if proto != p.proto {
                        return false;
                    }
                    if has_ports(proto) {
                        let d = dport.unwrap_or(0);
                        if d < c.ports.0 || d > c.ports.1 {
                            return false;
                        }
                    } else if is_icmp(proto) {
                        let (ty, code) = icmp.unwrap_or((0, 0));
                        if c.icmp.0.is_some_and(|t| t != ty) || c.icmp.1.is_some_and(|k| k != code)
                        {
                            return false;
                        }
                    }
                }
                !c.never && (c.remotes.is_empty() || c.remotes.iter().any(|(v, m)| peer & m == *v))
            })
            .map(|c| c.index)
    }
}
