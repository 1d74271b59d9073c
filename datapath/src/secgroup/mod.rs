//! Security groups: the stateful firewall between port security and forwarding (Neutron's
//! openvswitch firewall tables 71-73 and 81-82), as a sans-IO core.
//!
//! ```text
//!  frame on a firewalled port (egress: it sent it; ingress: it is to receive it)
//!    |  Packet::parse (addresses, ports, TCP flags/seq/ack, ICMP quoted header)
//!    |  implicit rules (DHCP, ND, RA, MLD as the OVS firewall driver) -> allow, no state
//!    |  stateless port: RuleSet::first_match -> allow(rule) | drop(no rule)
//!    |  ConnTable::track(zone, port, packet, now)
//!    |     Established / Related -> allow (replies pass whatever the rules)
//!    |     Invalid               -> drop (counted)
//!    |     New -> RuleSet::first_match -> ConnTable::commit -> allow(rule) | drop(table full)
//!    v                                  \-> no rule -> drop
//! ```
//!
//! Non-IP frames (ARP) are not this stage's business: port security has vouched for them, and
//! Neutron's firewall lets them through.

pub mod conntrack;
pub mod packet;
pub mod rules;
#[cfg(test)]
mod tests;

pub use conntrack::{ConnKey, ConnState, ConnStats, ConnTable, Endpoint, Track};
pub use packet::{Packet, Transport};
pub use rules::{Family, Members, Remote, Rule, RuleSet};

use crate::verdict::PortNo;
use std::fmt;

/// Seen from the port: ingress is traffic it receives, egress traffic it sends.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Direction {
    /// To the port.
    Ingress,
    /// From the port.
    Egress,
}

impl Direction {
    /// `ingress` / `egress`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A port's firewall: its groups' rules, compiled, and whether its groups are stateful.
#[derive(Clone, Debug, Default)]
pub struct PortFirewall {
    /// Every rule of every group of the port.
    pub rules: RuleSet,
    /// Stateful (conntrack, replies pass) or stateless (each packet needs a rule).
    pub stateful: bool,
}

/// Why a packet passed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Allow {
    /// One of the driver's implicit rules (named).
    Implicit(&'static str),
    /// A rule admitted it (a new connection, or any packet of a stateless port).
    Rule(u32),
    /// It belongs to a connection a rule admitted.
    Established {
        /// The admitting rule.
        rule: u32,
        /// It goes the reply way.
        reply: bool,
    },
    /// An ICMP error about a connection a rule admitted.
    Related {
        /// The admitting rule.
        rule: u32,
    },
}

impl Allow {
    /// The rule to credit, if any.
    pub fn rule(self) -> Option<u32> {
        match self {
            Allow::Implicit(_) => None,
            Allow::Rule(r) | Allow::Established { rule: r, .. } | Allow::Related { rule: r } => {
                Some(r)
            }
        }
    }
}

/// Why a packet was dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Deny {
    /// No rule admits it.
    NoRule,
    /// Not valid in its connection's state (or a TCP segment with no connection).
    Invalid,
    /// A new connection the full table could not take.
    TableFull,
}

/// ICMPv6 types the OVS firewall driver lets a port send whatever its rules: MLD query, report
/// and done, MLDv2 report, router solicitation, neighbour solicitation and advertisement.
const ICMPV6_EGRESS: [u8; 7] = [130, 131, 132, 143, 133, 135, 136];
/// ICMPv6 types it lets a port receive: MLD query, router advertisement, NS and NA.
const ICMPV6_INGRESS: [u8; 4] = [130, 134, 135, 136];

/// The driver's implicit rules (port security has already stopped a VM acting as a DHCP server
/// or router): DHCP and DHCPv6 client requests out and server replies in, and the ICMPv6 the
/// neighbour discovery and multicast listener protocols need.
pub fn implicit(dir: Direction, p: &Packet) -> Option<&'static str> {
    match (p.transport, dir) {
        (
            Transport::Ports {
                sport: 68,
                dport: 67,
            },
            Direction::Egress,
        ) if p.proto == 17 => Some("dhcp client"),
        (
            Transport::Ports {
                sport: 546,
                dport: 547,
            },
            Direction::Egress,
        ) if p.proto == 17 => Some("dhcpv6 client"),
        (
            Transport::Ports {
                sport: 67,
                dport: 68,
            },
            Direction::Ingress,
        ) if p.proto == 17 => Some("dhcp server reply"),
        (
            Transport::Ports {
                sport: 547,
                dport: 546,
            },
            Direction::Ingress,
        ) if p.proto == 17 => Some("dhcpv6 server reply"),
        (Transport::Icmp { ty, .. }, Direction::Egress)
            if p.proto == 58 && ICMPV6_EGRESS.contains(&ty) =>
        {
            Some("icmpv6 nd/mld")
        }
        (Transport::Icmp { ty, .. }, Direction::Ingress)
            if p.proto == 58 && ICMPV6_INGRESS.contains(&ty) =>
        {
            Some("icmpv6 nd/ra/mld")
        }
        _ => None,
    }
}

/// The firewall's verdict on `p` crossing `port` (in `zone`) in direction `dir` at `now`.
pub fn check(
    ct: &mut ConnTable,
    fw: &PortFirewall,
    zone: u16,
    port: PortNo,
    dir: Direction,
    p: &Packet,
    now: u64,
) -> Result<Allow, Deny> {
    if let Some(why) = implicit(dir, p) {
        return Ok(Allow::Implicit(why));
    }
    if !fw.stateful {
        return fw
            .rules
            .first_match(dir, p)
            .map(Allow::Rule)
            .ok_or(Deny::NoRule);
    }
    match ct.track(zone, port, p, now) {
        Track::Established { rule, reply } => Ok(Allow::Established { rule, reply }),
        Track::Related { rule } => Ok(Allow::Related { rule }),
        Track::Invalid => Err(Deny::Invalid),
        Track::New => {
            let rule = fw.rules.first_match(dir, p).ok_or(Deny::NoRule)?;
            // An ICMP error no connection explains passes on its rule but opens nothing.
            if matches!(p.transport, Transport::Icmp { inner: Some(_), .. }) {
                return Ok(Allow::Rule(rule));
            }
            if ct.commit(zone, port, dir, rule, p, now) {
                Ok(Allow::Rule(rule))
            } else {
                Err(Deny::TableFull)
            }
        }
    }
}

/// After `port`'s rules changed to `fw`: keeps the port's connections whose opening packet the
/// new rules still admit (crediting the rule that now does), and cuts the others, as Neutron
/// does when a rule is removed. Returns how many were cut.
pub fn recheck(ct: &mut ConnTable, port: PortNo, fw: &PortFirewall) -> usize {
    ct.recheck(port, |dir, p| {
        if fw.stateful {
            fw.rules.first_match(dir, p)
        } else {
            None
        }
    })
}

/// What the firewall would do, without changing any state (for `weft trace`): a new connection
/// a rule admits is reported refused when the table is at its bound with nothing expired to
/// reclaim, as [`check`] would refuse it.
pub fn probe(
    ct: &ConnTable,
    fw: &PortFirewall,
    zone: u16,
    port: PortNo,
    dir: Direction,
    p: &Packet,
    now: u64,
) -> Result<Allow, Deny> {
    if let Some(why) = implicit(dir, p) {
        return Ok(Allow::Implicit(why));
    }
    if !fw.stateful {
        return fw
            .rules
            .first_match(dir, p)
            .map(Allow::Rule)
            .ok_or(Deny::NoRule);
    }
    match ct.probe(zone, port, p, now) {
        Track::Established { rule, reply } => Ok(Allow::Established { rule, reply }),
        Track::Related { rule } => Ok(Allow::Related { rule }),
        Track::Invalid => Err(Deny::Invalid),
        Track::New => {
            let rule = fw.rules.first_match(dir, p).ok_or(Deny::NoRule)?;
            let opens = !matches!(p.transport, Transport::Icmp { inner: Some(_), .. });
            if opens && ct.would_refuse(now) {
                return Err(Deny::TableFull);
            }
            Ok(Allow::Rule(rule))
        }
    }
}

/// A port's firewall as a snapshot holds it: the config it came from (a reload compares it to
/// keep the same compiled firewall, and its hit counters, when nothing changed), the compiled
/// rules, and a hit counter per rule.
#[derive(Debug)]
pub struct CompiledFirewall {
    /// The rules of the port's groups, resolved (remote groups to their members).
    pub source: Vec<Rule>,
    /// Compiled.
    pub fw: PortFirewall,
    hits: Box<[std::sync::atomic::AtomicU64]>,
}

impl CompiledFirewall {
    /// Compiles a port's rules.
    pub fn new(stateful: bool, source: Vec<Rule>) -> CompiledFirewall {
        CompiledFirewall {
            fw: PortFirewall {
                rules: RuleSet::compile(&source),
                stateful,
            },
            hits: (0..source.len())
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            source,
        }
    }

    /// Credits rule `index` with one packet.
    #[inline]
    pub fn hit(&self, index: u32) {
        if let Some(h) = self.hits.get(index as usize) {
            h.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// (rule id, packets admitted by it), in rule order.
    pub fn hits(&self) -> Vec<(String, u64)> {
        self.source
            .iter()
            .zip(self.hits.iter())
            .map(|(r, h)| (r.id.clone(), h.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
    }
}

/// The drop reason a denial is counted under.
pub fn drop_reason(d: Deny) -> crate::verdict::DropReason {
    use crate::verdict::DropReason;
    match d {
        Deny::NoRule => DropReason::SecurityGroup,
        Deny::Invalid => DropReason::ConntrackInvalid,
        Deny::TableFull => DropReason::ConntrackFull,
    }
}
