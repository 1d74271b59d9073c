//! A bounded userspace connection tracker, sans-IO: every call takes `now` (nanoseconds).
//!
//! Connections are keyed by zone (the network's local VLAN, as Neutron's OVS firewall uses the
//! network as conntrack zone), by the port whose rules admitted them, and by the 5-tuple with its
//! two ends in a canonical order, so that a reply finds its connection. Keeping the port in the
//! key gives each firewalled port its own view: two VMs of one host talking to each other are
//! checked against the sender's egress and the receiver's ingress rules separately, as on two
//! hosts.
//!
//! TCP tracking, deliberately simpler than Linux's `nf_conntrack_proto_tcp`:
//! - only a SYN without ACK starts a connection; the reply's SYN-ACK must acknowledge its ISN;
//! - states SYN_SENT -> SYN_RECV -> ESTABLISHED -> FIN_WAIT (one FIN) -> TIME_WAIT (both), and
//!   CLOSE after a RST; a new SYN after TIME_WAIT/CLOSE starts over;
//! - the window check: a segment's sequence number must lie within [`MAX_WINDOW`] (2^30, the
//!   largest window TCP can advertise with scale 14) of the highest sequence its sender has
//!   sent, and its acknowledgement must not cover data the peer never sent (nor lag more than
//!   `MAX_WINDOW` behind it). Advertised windows and scaling options are not read.
//!
//! Anything else (a mid-stream segment with no connection, a SYN-ACK that acknowledges the wrong
//! ISN, an ACK of unsent data) is invalid: dropped and counted.
//!
//! UDP and other protocols are flows with timeouts (shorter until a reply is seen); ICMP echo
//! flows are keyed by their identifier. ICMP errors quoting a tracked flow are "related".
//!
//! The table is bounded: when full, expired entries are reclaimed; if none, the new connection is
//! refused and counted. Established connections are never evicted to make room: under a SYN
//! flood, the half-open entries a flood creates hold the table until they time out, and the
//! connections that existed before keep passing. The refusals are reported at most once per
//! [`REFUSAL_LOG_INTERVAL`] ([`ConnTable::refusal_report`]), so a flood cannot flood the log.

use super::packet::{Packet, Transport, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::Direction;
use crate::verdict::PortNo;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// The largest TCP window (65535 << 14): the slack of the sequence check.
pub const MAX_WINDOW: u32 = 1 << 30;

const SEC: u64 = 1_000_000_000;

/// The least time between two reports of refused connections.
pub const REFUSAL_LOG_INTERVAL: u64 = 10 * SEC;

/// Timeouts, as Linux's defaults (`nf_conntrack_tcp_timeout_*`, `..._udp_timeout*`).
pub mod timeout {
    use super::SEC;
    /// TCP after the SYN.
    pub const SYN_SENT: u64 = 120 * SEC;
    /// TCP after the SYN-ACK.
    pub const SYN_RECV: u64 = 60 * SEC;
    /// TCP established (five days).
    pub const ESTABLISHED: u64 = 432_000 * SEC;
    /// TCP after one FIN.
    pub const FIN_WAIT: u64 = 120 * SEC;
    /// TCP after both FINs.
    pub const TIME_WAIT: u64 = 120 * SEC;
    /// TCP after a RST.
    pub const CLOSE: u64 = 10 * SEC;
    /// UDP (and other protocols) before a reply.
    pub const UNREPLIED: u64 = 30 * SEC;
    /// UDP (and other protocols) once replied.
    pub const REPLIED: u64 = 180 * SEC;
    /// ICMP echo.
    pub const ICMP: u64 = 30 * SEC;
}

/// One end of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Endpoint {
    /// Address.
    pub addr: IpAddr,
    /// Port (ICMP echo: identifier; 0 for protocols without ports).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A connection's key: zone, port, protocol, and the two ends in canonical (sorted) order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnKey {
    /// The network's local VLAN.
    pub zone: u16,
    /// The firewalled port.
    pub port: PortNo,
    /// IP protocol.
    pub proto: u8,
    /// The lower end.
    pub lo: Endpoint,
    /// The higher end.
    pub hi: Endpoint,
}

impl ConnKey {
    /// The key of a packet with these ends (either direction gives the same key).
    pub fn new(zone: u16, port: PortNo, proto: u8, a: Endpoint, b: Endpoint) -> ConnKey {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ConnKey {
            zone,
            port,
            proto,
            lo,
            hi,
        }
    }

    /// The key of `p` seen on `port` in `zone`.
    pub fn of(zone: u16, port: PortNo, p: &Packet) -> ConnKey {
        let (sport, dport) = p.ports();
        ConnKey::new(
            zone,
            port,
            p.proto,
            Endpoint {
                addr: p.src,
                port: sport,
            },
            Endpoint {
                addr: p.dst,
                port: dport,
            },
        )
    }
}

/// Where a connection stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnState {
    /// TCP: SYN seen.
    SynSent,
    /// TCP: SYN-ACK seen.
    SynRecv,
    /// TCP: handshake done.
    Established,
    /// TCP: one side sent FIN.
    FinWait,
    /// TCP: both sides sent FIN.
    TimeWait,
    /// TCP: reset.
    Close,
    /// Not TCP, no reply yet.
    Unreplied,
    /// Not TCP, replied.
    Replied,
}

impl ConnState {
    /// Name, as `conntrack -L` prints it.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::SynSent => "SYN_SENT",
            ConnState::SynRecv => "SYN_RECV",
            ConnState::Established => "ESTABLISHED",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::Unreplied => "UNREPLIED",
            ConnState::Replied => "REPLIED",
        }
    }
}

/// The sequence space one side has used.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Side {
    /// One past the highest sequence number sent (SYN and FIN count one).
    end: u32,
    /// Whether `end` is known (the side has sent).
    seen: bool,
    /// Whether it sent a FIN.
    fin: bool,
}

/// A tracked connection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Conn {
    /// Its key.
    pub key: ConnKey,
    /// The end that opened it.
    pub origin: Endpoint,
    /// The direction of the opening packet, seen from the port.
    pub direction: Direction,
    /// Index of the rule that admitted it (in the port's rule set).
    pub rule: u32,
    /// State.
    pub state: ConnState,
    /// When it expires (ns).
    pub expires: u64,
    /// ICMP type and code of the opening packet (for re-checking it against new rules).
    icmp: (u8, u8),
    /// [original, reply] sequence spaces (TCP only).
    sides: [Side; 2],
}

impl Conn {
    /// The far end (not the opener).
    pub fn responder(&self) -> Endpoint {
        if self.key.lo == self.origin {
            self.key.hi
        } else {
            self.key.lo
        }
    }

    /// The packet that opened the connection, as far as rules look at it.
    pub fn opening_packet(&self) -> Packet {
        let r = self.responder();
        let transport = match self.key.proto {
            6 => Transport::Tcp {
                sport: self.origin.port,
                dport: r.port,
                flags: TCP_SYN,
                seq: 0,
                ack: 0,
                len: 0,
            },
            1 | 58 => Transport::Icmp {
                ty: self.icmp.0,
                code: self.icmp.1,
                id: self.origin.port,
                inner: None,
            },
            p if super::rules::has_ports(p) => Transport::Ports {
                sport: self.origin.port,
                dport: r.port,
            },
            _ => Transport::Other,
        };
        Packet {
            src: self.origin.addr,
            dst: r.addr,
            proto: self.key.proto,
            transport,
        }
    }
}

/// The tracker's verdict on a packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Track {
    /// Belongs to a tracked connection (`reply`: it goes the reverse way).
    Established {
        /// The admitting rule's index.
        rule: u32,
        /// Going the reply way.
        reply: bool,
    },
    /// An ICMP error about a tracked connection.
    Related {
        /// The admitting rule's index.
        rule: u32,
    },
    /// No connection: the rules must admit it as new.
    New,
    /// Not acceptable in the connection's state (or a TCP segment that cannot start one).
    Invalid,
}

/// Counters of the tracker.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ConnStats {
    /// Connections created.
    pub created: u64,
    /// Packets found invalid.
    pub invalid: u64,
    /// New connections refused because the table was full.
    pub refused_full: u64,
    /// Entries removed on timeout.
    pub expired: u64,
}

/// The table: bounded, keyed per zone and port.
#[derive(Debug)]
pub struct ConnTable {
    map: HashMap<ConnKey, Conn>,
    capacity: usize,
    stats: ConnStats,
    /// The next time a full table may be swept for expired entries (a flood must not cost a
    /// sweep per packet).
    next_sweep: u64,
    /// Refusals not reported yet, and the earliest time the next report may be made.
    unreported: u64,
    next_report: u64,
}

/// seq a is after b (serial number arithmetic).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The signed distance from b to a.
fn dist(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

impl ConnTable {
    /// An empty table holding at most `capacity` connections.
    pub fn new(capacity: usize) -> ConnTable {
        ConnTable {
            map: HashMap::new(),
            capacity,
            stats: ConnStats::default(),
            next_sweep: 0,
            unreported: 0,
            next_report: 0,
        }
    }

    /// Number of entries (expired ones not yet reclaimed included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the bound (a config reload); entries beyond it stay until they expire.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Counters.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// Counts an invalid packet found by the caller.
    pub fn count_invalid(&mut self) {
        self.stats.invalid += 1;
    }

    /// Looks `p` up for `port` in `zone` and advances the connection's state. Invalid packets
    /// are counted here.
    pub fn track(&mut self, zone: u16, port: PortNo, p: &Packet, now: u64) -> Track {
        let key = ConnKey::of(zone, port, p);
        let t = match self.map.get_mut(&key) {
            Some(c) if now <= c.expires => advance(c, p, now),
            Some(_) => {
                self.map.remove(&key);
                self.stats.expired += 1;
                fresh(p)
            }
            None => match related(&self.map, zone, port, p, now) {
                Some(rule) => Track::Related { rule },
                None => fresh(p),
            },
        };
        if t == Track::Invalid {
            self.stats.invalid += 1;
        }
        t
    }

    /// What [`ConnTable::track`] would say, changing nothing (for traces).
    pub fn probe(&self, zone: u16, port: PortNo, p: &Packet, now: u64) -> Track {
        let key = ConnKey::of(zone, port, p);
        match self.map.get(&key) {
            Some(c) if now <= c.expires => advance(&mut c.clone(), p, now),
            Some(_) => fresh(p),
            None => match related(&self.map, zone, port, p, now) {
                Some(rule) => Track::Related { rule },
                None => fresh(p),
            },
        }
    }

    /// The refusals (table full) since the last report, when there are some and the last report
    /// is at least [`REFUSAL_LOG_INTERVAL`] old; the caller logs them. Rate-limited here, in the
    /// core, so that every caller (packet path, periodic sweep) shares one limit.
    pub fn refusal_report(&mut self, now: u64) -> Option<u64> {
        if self.unreported == 0 || now < self.next_report {
            return None;
        }
        self.next_report = now.saturating_add(REFUSAL_LOG_INTERVAL);
        Some(std::mem::take(&mut self.unreported))
    }

    /// Whether a new connection would be refused at `now`: the table is at its bound and none
    /// of its entries has expired (read-only, for traces; walks the table).
    pub fn would_refuse(&self, now: u64) -> bool {
        self.map.len() >= self.capacity && self.map.values().all(|c| now <= c.expires)
    }

    /// Records a new connection opened by `p` (which [`ConnTable::track`] found `New` and a rule
    /// admitted). False (and counted) when the table is full of live connections.
    pub fn commit(
        &mut self,
        zone: u16,
        port: PortNo,
        dir: Direction,
        rule: u32,
        p: &Packet,
        now: u64,
    ) -> bool {
        let key = ConnKey::of(zone, port, p);
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            if now >= self.next_sweep {
                self.next_sweep = now.saturating_add(SEC);
                self.expire(now);
            }
            if self.map.len() >= self.capacity {
                self.stats.refused_full += 1;
                self.unreported += 1;
                return false;
            }
        }
        let (sport, _) = p.ports();
        let mut c = Conn {
            key,
            origin: Endpoint {
                addr: p.src,
                port: sport,
            },
            direction: dir,
            rule,
            state: ConnState::Unreplied,
            expires: 0,
            icmp: match p.transport {
                Transport::Icmp { ty, code, .. } => (ty, code),
                _ => (0, 0),
            },
            sides: [Side::default(); 2],
        };
        match p.transport {
            Transport::Tcp { seq, len, .. } => {
                c.state = ConnState::SynSent;
                c.sides[0] = Side {
                    end: seq.wrapping_add(len).wrapping_add(1),
                    seen: true,
                    fin: false,
                };
                c.expires = now.saturating_add(timeout::SYN_SENT);
            }
            Transport::Icmp { .. } => c.expires = now.saturating_add(timeout::ICMP),
            _ => c.expires = now.saturating_add(timeout::UNREPLIED),
        }
        self.map.insert(key, c);
        self.stats.created += 1;
        true
    }

    /// Removes expired entries; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, c| now <= c.expires);
        let n = before - self.map.len();
        self.stats.expired += n as u64;
        n
    }

    /// Keeps only the entries for which `keep` is true; returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&Conn) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, c| keep(c));
        before - self.map.len()
    }

    /// Re-checks `port`'s connections: `admit(direction, opening packet)` gives the rule that
    /// admits it now (kept, credited to that rule) or None (cut). Returns how many were cut.
    pub fn recheck(
        &mut self,
        port: PortNo,
        mut admit: impl FnMut(Direction, &Packet) -> Option<u32>,
    ) -> usize {
        let before = self.map.len();
        self.map.retain(|k, c| {
            if k.port != port {
                return true;
            }
            match admit(c.direction, &c.opening_packet()) {
                Some(rule) => {
                    c.rule = rule;
                    true
                }
                None => false,
            }
        });
        before - self.map.len()
    }

    /// The entries, sorted by key (for listing).
    pub fn entries(&self) -> Vec<Conn> {
        let mut v: Vec<Conn> = self.map.values().cloned().collect();
        v.sort_by_key(|c| (c.key.zone, c.key.port, c.key.proto, c.key.lo, c.key.hi));
        v
    }
}

/// What a packet with no connection is: TCP must be a bare SYN to start one.
fn fresh(p: &Packet) -> Track {
    match p.transport {
        Transport::Tcp { flags, .. }
            if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN =>
        {
            Track::Invalid
        }
        _ => Track::New,
    }
}

/// The rule of the tracked connection an ICMP error quotes, if any.
fn related(
    map: &HashMap<ConnKey, Conn>,
    zone: u16,
    port: PortNo,
    p: &Packet,
    now: u64,
) -> Option<u32> {
    let Transport::Icmp { inner: Some(i), .. } = p.transport else {
        return None;
    };
    let key = ConnKey::new(
        zone,
        port,
        i.proto,
        Endpoint {
            addr: i.src,
            port: i.sport,
        },
        Endpoint {
            addr: i.dst,
            port: i.dport,
        },
    );
    // The error must travel towards the quoted packet's sender.
    map.get(&key)
        .filter(|c| now <= c.expires && p.dst == i.src)
        .map(|c| c.rule)
}

/// Advances a live connection with `p`.
fn advance(c: &mut Conn, p: &Packet, now: u64) -> Track {
    let (sport, _) = p.ports();
    let reply = !(c.origin.addr == p.src && c.origin.port == sport);
    let rule = c.rule;
    let Transport::Tcp {
        flags,
        seq,
        ack,
        len,
        ..
    } = p.transport
    else {
        if reply && c.state == ConnState::Unreplied {
            c.state = ConnState::Replied;
        }
        let t = match (p.transport, c.state) {
            (Transport::Icmp { .. }, _) => timeout::ICMP,
            (_, ConnState::Replied) => timeout::REPLIED,
            _ => timeout::UNREPLIED,
        };
        c.expires = now.saturating_add(t);
        return Track::Established { rule, reply };
    };
    match tcp(c, reply, flags, seq, ack, len) {
        Ok(()) => {
            let t = match c.state {
                ConnState::SynSent => timeout::SYN_SENT,
                ConnState::SynRecv => timeout::SYN_RECV,
                ConnState::Established => timeout::ESTABLISHED,
                ConnState::FinWait => timeout::FIN_WAIT,
                ConnState::TimeWait => timeout::TIME_WAIT,
                _ => timeout::CLOSE,
            };
            c.expires = now.saturating_add(t);
            Track::Established { rule, reply }
        }
        Err(Restart) => fresh(p),
        Err(_) => Track::Invalid,
    }
}

/// Why a TCP segment is not accepted as part of its connection.
#[derive(Debug)]
enum TcpReject {
    Restart,
    Invalid,
}
use TcpReject::{Invalid, Restart};

/// The TCP state machine and window check for one segment (see the module doc).
fn tcp(
    c: &mut Conn,
    reply: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    len: u32,
) -> Result<(), TcpReject> {
    let syn = flags & TCP_SYN != 0;
    let has_ack = flags & TCP_ACK != 0;
    let (me, peer) = if reply { (1, 0) } else { (0, 1) };
    if syn {
        return match (reply, has_ack, c.state) {
            // A new connection reusing the ports of a finished one: the caller starts over.
            (false, false, ConnState::TimeWait | ConnState::Close) => Err(Restart),
            // SYN retransmitted.
            (false, false, ConnState::SynSent) if seq.wrapping_add(1) == c.sides[0].end => Ok(()),
            // The SYN-ACK must acknowledge the ISN.
            (true, true, ConnState::SynSent | ConnState::SynRecv)
                if ack == c.sides[0].end && flags & TCP_RST == 0 =>
            {
                c.sides[1] = Side {
                    end: seq.wrapping_add(len).wrapping_add(1),
                    seen: true,
                    fin: false,
                };
                c.state = ConnState::SynRecv;
                Ok(())
            }
            _ => Err(Invalid),
        };
    }
    if !c.sides[me].seen {
        // The reply side speaks before its SYN-ACK.
        return Err(Invalid);
    }
    if matches!(c.state, ConnState::Close | ConnState::SynSent) {
        // Nothing but the handshake before the SYN-ACK; nothing after a RST.
        return Err(Invalid);
    }
    // The window check.
    if dist(seq, c.sides[me].end).unsigned_abs() > u64::from(MAX_WINDOW) {
        return Err(Invalid);
    }
    if has_ack {
        if !c.sides[peer].seen {
            return Err(Invalid);
        }
        let d = dist(ack, c.sides[peer].end);
        if d > 0 || d < -i64::from(MAX_WINDOW) {
            return Err(Invalid);
        }
    }
    if flags & TCP_RST != 0 {
        c.state = ConnState::Close;
        return Ok(());
    }
    let fin = flags & TCP_FIN != 0;
    let end = seq.wrapping_add(len).wrapping_add(u32::from(fin));
    if after(end, c.sides[me].end) {
        c.sides[me].end = end;
    }
    if fin {
        c.sides[me].fin = true;
    }
    c.state = match c.state {
        ConnState::SynRecv if !reply && has_ack => ConnState::Established,
        s => s,
    };
    if c.sides[0].fin && c.sides[1].fin {
        c.state = ConnState::TimeWait;
    } else if fin && matches!(c.state, ConnState::Established | ConnState::SynRecv) {
        c.state = ConnState::FinWait;
    }
    Ok(())
}
