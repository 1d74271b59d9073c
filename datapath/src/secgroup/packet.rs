//! [`Packet`]: the L3/L4 facts the firewall decides on, read from a frame the full parser has
//! already checked. Unlike the pipeline's [`crate::flow_key::FlowKey`] it keeps destination
//! address, ports, TCP sequence numbers and flags: connection tracking needs them per frame.

use crate::frame::{FrameView, L3, L4};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flags the tracker reads.
pub const TCP_FIN: u8 = 0x01;
/// SYN.
pub const TCP_SYN: u8 = 0x02;
/// RST.
pub const TCP_RST: u8 = 0x04;
/// ACK.
pub const TCP_ACK: u8 = 0x10;

/// An IP packet as the firewall sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol (after IPv6 extension headers).
    pub proto: u8,
    /// What follows the IP header.
    pub transport: Transport,
}

/// The transport header, as far as the firewall cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    /// A protocol with ports and no state the tracker follows (UDP, SCTP, DCCP, UDP-Lite).
    Ports {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// TCP.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte.
        flags: u8,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number (meaningful with ACK).
        ack: u32,
        /// Payload length.
        len: u32,
    },
    /// ICMP or ICMPv6.
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
        /// Echo identifier (0 for other messages).
        id: u16,
        /// For error messages: the offending packet's addresses and ports.
        inner: Option<Inner>,
    },
    /// Anything else, and non-first fragments.
    Other,
}

/// The header an ICMP error quotes: the packet as its sender (the error's receiver) sent it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Inner {
    /// Its source.
    pub src: IpAddr,
    /// Its destination.
    pub dst: IpAddr,
    /// Its protocol.
    pub proto: u8,
    /// Source port (ICMP echo: the identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: the identifier).
    pub dport: u16,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// ICMPv4 error types (destination unreachable, source quench, redirect, time exceeded,
/// parameter problem) and ICMPv6 error types (1-4): both quote the offending packet.
fn is_icmp_error(v6: bool, ty: u8) -> bool {
    if v6 {
        (1..=4).contains(&ty)
    } else {
        matches!(ty, 3 | 4 | 5 | 11 | 12)
    }
}

/// Echo request/reply types (carry an identifier).
pub fn is_echo(v6: bool, ty: u8) -> bool {
    if v6 {
        ty == 128 || ty == 129
    } else {
        ty == 8 || ty == 0
    }
}

/// The quoted header of an ICMP error (at `b`), or None if it is cut short.
fn inner(b: &[u8], v6: bool) -> Option<Inner> {
    let (src, dst, proto, l4) = if v6 {
        let s: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let d: [u8; 16] = b.get(24..40)?.try_into().ok()?;
        (
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(d)),
            *b.get(6)?,
            40,
        )
    } else {
        let ihl = usize::from(b.first()? & 0x0f) * 4;
        let s: [u8; 4] = b.get(12..16)?.try_into().ok()?;
        let d: [u8; 4] = b.get(16..20)?.try_into().ok()?;
        (
            IpAddr::V4(Ipv4Addr::from(s)),
            IpAddr::V4(Ipv4Addr::from(d)),
            *b.get(9)?,
            ihl.max(20),
        )
    };
    let (sport, dport) = match proto {
        1 | 58 => {
            let id = be16(b, l4 + 4)?;
            (id, id)
        }
        p if super::rules::has_ports(p) => (be16(b, l4)?, be16(b, l4 + 2)?),
        _ => (0, 0),
    };
    Some(Inner {
        src,
        dst,
        proto,
        sport,
        dport,
    })
}

impl Packet {
    /// The packet in `frame`, parsed as `v`; None for non-IP frames (ARP and others, which the
    /// firewall lets through as Neutron's does).
    pub fn parse(frame: &[u8], v: &FrameView) -> Option<Packet> {
        let (src, dst, proto, v6) = match v.l3 {
            L3::Ipv4 { src, dst, proto } => (IpAddr::V4(src), IpAddr::V4(dst), proto, false),
            L3::Ipv6 { src, dst, proto } => (IpAddr::V6(src), IpAddr::V6(dst), proto, true),
            _ => return None,
        };
        let l4 = frame.get(v.l4_offset..).unwrap_or(&[]);
        let transport = match v.l4 {
            L4::None => Transport::Other,
            L4::Udp { sport, dport } => Transport::Ports { sport, dport },
            L4::Tcp { sport, dport } => {
                // The IP payload's end: the parser has checked these lengths.
                let ip = &frame[v.l3_offset..];
                let end = if v6 {
                    match be16(ip, 4).unwrap_or(0) {
                        0 => frame.len(),
                        n => v.l3_offset + 40 + usize::from(n),
                    }
                } else {
                    v.l3_offset + usize::from(be16(ip, 2).unwrap_or(0))
                };
                let doff = usize::from(l4.get(12).copied().unwrap_or(0x50) >> 4) * 4;
                let len = end.saturating_sub(v.l4_offset + doff);
                Transport::Tcp {
                    sport,
                    dport,
                    flags: l4.get(13).copied().unwrap_or(0),
                    seq: be32(l4, 4).unwrap_or(0),
                    ack: be32(l4, 8).unwrap_or(0),
                    len: len as u32,
                }
            }
            L4::Icmp { ty, code } | L4::Icmpv6 { ty, code, .. } => Transport::Icmp {
                ty,
                code,
                id: if is_echo(v6, ty) {
                    be16(l4, 4).unwrap_or(0)
                } else {
                    0
                },
                inner: if is_icmp_error(v6, ty) {
                    l4.get(8..).and_then(|b| inner(b, v6))
                } else {
                    None
                },
            },
        };
        // Ports of SCTP/DCCP/UDP-Lite: the parser leaves them as L4::None.
        let transport = match transport {
            Transport::Other if super::rules::has_ports(proto) && v.l4_offset != 0 => {
                match (be16(l4, 0), be16(l4, 2)) {
                    (Some(sport), Some(dport)) => Transport::Ports { sport, dport },
                    _ => Transport::Other,
                }
            }
            t => t,
        };
        Some(Packet {
            src,
            dst,
            proto,
            transport,
        })
    }

    /// Source and destination ports (ICMP: the echo id twice; others 0).
    pub fn ports(&self) -> (u16, u16) {
        match self.transport {
            Transport::Ports { sport, dport } | Transport::Tcp { sport, dport, .. } => {
                (sport, dport)
            }
            Transport::Icmp { id, .. } => (id, id),
            Transport::Other => (0, 0),
        }
    }
}
