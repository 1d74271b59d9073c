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
use std::collections::HashSet;
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

/// Protocol names Neutron accepts (`neutron_lib.constants.IP_PROTOCOL_MAP`), and their numbers.
const PROTOCOLS: [(&str, u8); 23] = [
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("icmp", 1),
    ("icmpv6", 58),
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
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

/// A protocol as Neutron's API stores it: a name of its table (any case), or a number 0..=255 as
/// text. `any`, an empty string, and protocol 0 (`0`, `ip`, `hopopt`, which the API also
/// accepts) are no protocol: Linux's firewalls, Neutron's iptables driver among them, read
/// protocol 0 as every protocol, and a rule the API accepted must never fail a host's whole
/// config.
pub fn protocol(s: &str) -> Result<Option<u8>, String> {
    let s = s.trim().to_ascii_lowercase();
    if s.is_empty() || s == "any" || s == "ip" || s == "hopopt" {
        return Ok(None);
    }
    if let Some((_, n)) = PROTOCOLS.iter().find(|(name, _)| *name == s) {
        return Ok(Some(*n));
    }
    match s.parse::<u8>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(format!(
            "unknown protocol {s:?} (a name such as tcp, or 0..=255)"
        )),
    }
}

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
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
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
        /// Its members' addresses, compiled once per group and shared by every rule naming it.
        members: Arc<Members>,
    },
}

/// A security group's member addresses, compiled for lookup: host addresses in a hash set (a
/// default group of thousands of ports costs one probe per new connection), prefixes (allowed
/// address pairs) in a list. Built once per group per snapshot, shared by every rule and port.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Members {
    nets: Vec<IpNet>,
    hosts: HashSet<(bool, u128)>,
    prefixes: Vec<(bool, u128, u128)>,
    /// [has an IPv4 member, has an IPv6 member].
    families: [bool; 2],
}

impl Members {
    /// Compiles a member list (duplicates and both families allowed).
    pub fn new(nets: Vec<IpNet>) -> Members {
        let mut hosts = HashSet::new();
        let mut prefixes = Vec::new();
        let mut families = [false; 2];
        for n in &nets {
            let v6 = matches!(n, IpNet::V6(_));
            families[usize::from(v6)] = true;
            if n.prefix_len() == n.max_prefix_len() {
                hosts.insert((v6, wide(n.addr())));
            } else {
                let (v, m) = net_mask(n);
                prefixes.push((v6, v, m));
            }
        }
        Members {
            nets,
            hosts,
            prefixes,
            families,
        }
    }

    /// The addresses as given.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    fn has_family(&self, fam: Family) -> bool {
        self.families[usize::from(fam == Family::V6)]
    }

    fn contains(&self, v6: bool, addr: u128) -> bool {
        self.hosts.contains(&(v6, addr))
            || self
                .prefixes
                .iter()
                .any(|&(f, v, m)| f == v6 && addr & m == v)
    }
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
    /// Peer prefix (`remote_ip_prefix`); None and no group: anywhere.
    prefix: Option<(u128, u128)>,
    /// Peer group (`remote_group_id`).
    group: Option<Arc<Members>>,
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
            let (prefix, group, never) = match &r.remote {
                Remote::Any => (None, None, false),
                Remote::Prefix(n) => (Some(net_mask(n)), None, Family::of(n.addr()) != r.family),
                Remote::Group { members, .. } => {
                    (None, Some(members.clone()), !members.has_family(r.family))
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
                prefix,
                group,
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
        let v6 = fam == Family::V6;
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
                !c.never
                    && c.prefix.is_none_or(|(v, m)| peer & m == v)
                    && c.group.as_ref().is_none_or(|g| g.contains(v6, peer))
            })
            .map(|c| c.index)
    }
}
