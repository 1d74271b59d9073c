//! The pipeline's own view of a frame, parsed once: MACs, VLAN tags, ethertype, L3/L4 offsets and
//! the fields port security looks at. Parsing never panics; bad input is a typed [`ParseError`].

use crate::mac::MacAddr;
use crate::verdict::DropReason;
use std::net::{Ipv4Addr, Ipv6Addr};

/// 802.1Q C-tag TPID.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad S-tag TPID.
pub const TPID_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ TPID.
pub const TPID_9100: u16 = 0x9100;
/// ARP ethertype.
pub const ETH_P_ARP: u16 = 0x0806;
/// IPv4 ethertype.
pub const ETH_P_IPV4: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IP protocol numbers.
pub const IPPROTO_TCP: u8 = 6;
/// UDP
pub const IPPROTO_UDP: u8 = 17;
/// ICMP
pub const IPPROTO_ICMP: u8 = 1;
/// ICMPv6
pub const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 types port security cares about.
pub const ND_ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const ND_ROUTER_ADVERT: u8 = 134;
/// Neighbor solicitation.
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor advertisement.
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
/// Largest frame accepted: a 64 KiB IP packet (GSO) plus Ethernet header and two tags.
pub const MAX_FRAME_LEN: usize = 65535 + 14 + 8;

const ETH_HDR: usize = 14;
const MAX_IPV6_EXT_HEADERS: usize = 8;

/// Why a frame could not be parsed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParseError {
    /// Shorter than its headers say.
    Truncated,
    /// Nonsense header fields.
    Malformed,
    /// Longer than [`MAX_FRAME_LEN`].
    Oversized,
}

impl From<ParseError> for DropReason {
    fn from(e: ParseError) -> DropReason {
        match e {
            ParseError::Truncated => DropReason::Truncated,
            ParseError::Malformed => DropReason::Malformed,
            ParseError::Oversized => DropReason::Oversized,
        }
    }
}

/// A VLAN tag as found in the frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct VlanTag {
    /// 0x8100, 0x88a8 or 0x9100.
    pub tpid: u16,
    /// PCP(3) DEI(1) VID(12).
    pub tci: u16,
}

impl VlanTag {
    /// The 12-bit VLAN id.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
}

/// ARP fields (Ethernet/IPv4 ARP only).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct ArpFields {
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender hardware address.
    pub sha: MacAddr,
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: MacAddr,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

/// Neighbor discovery fields of an NS or NA.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct NdFields {
    /// Target address.
    pub target: Ipv6Addr,
    /// Source link-layer option (NS) or target link-layer option (NA).
    pub ll: Option<MacAddr>,
}

/// Layer 3 as the pipeline sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum L3 {
    /// Not ARP/IPv4/IPv6 (or below three tags).
    Other,
    /// ARP with a non-Ethernet/IPv4 format.
    ArpOther,
    /// Ethernet/IPv4 ARP.
    Arp(ArpFields),
    /// IPv4.
    Ipv4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Protocol.
        proto: u8,
    },
    /// IPv6.
    Ipv6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
        /// Upper-layer protocol after extension headers (59 if none).
        proto: u8,
    },
}

/// Layer 4 as the pipeline sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum L4 {
    /// None, unknown protocol, or a non-first fragment.
    None,
    /// UDP ports.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// TCP ports.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMPv4.
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
    },
    /// ICMPv6, with ND fields for NS/NA.
    Icmpv6 {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
        /// For NS (135) and NA (136).
        nd: Option<NdFields>,
    },
}

/// A parsed frame. Built by [`FrameView::parse`]; every field is a plain value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameView {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// Up to two VLAN tags, outer first.
    pub tags: [VlanTag; 2],
    /// Number of VLAN tags (3 means "three or more"; then L3 is not parsed).
    pub tag_count: u8,
    /// Ethertype after the tags.
    pub ethertype: u16,
    /// Offset of the L3 header.
    pub l3_offset: usize,
    /// L3 fields.
    pub l3: L3,
    /// Offset of the L4 header (0 when none).
    pub l4_offset: usize,
    /// L4 fields.
    pub l4: L4,
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline]
fn mac_at(b: &[u8], at: usize) -> Option<MacAddr> {
    let s = b.get(at..at + 6)?;
    Some(MacAddr([s[0], s[1], s[2], s[3], s[4], s[5]]))
}

#[inline]
fn v4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s = b.get(at..at + 4)?;
    Some(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
}

#[inline]
fn v6_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let s: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(s))
}

fn is_tpid(t: u16) -> bool {
    t == TPID_8021Q || t == TPID_8021AD || t == TPID_9100
}

impl FrameView {
    /// Outer tag, if any.
    #[inline]
    pub fn outer_tag(&self) -> Option<VlanTag> {
        (self.tag_count > 0).then_some(self.tags[0])
    }

    /// Parses `frame` (starting at the Ethernet header, no vnet header).
    pub fn parse(frame: &[u8]) -> Result<FrameView, ParseError> {
        use ParseError::*;
        if frame.len() > MAX_FRAME_LEN {
            return Err(Oversized);
        }
        if frame.len() < ETH_HDR {
            return Err(Truncated);
        }
        let dst = mac_at(frame, 0).ok_or(Truncated)?;
        let src = mac_at(frame, 6).ok_or(Truncated)?;
        let mut ethertype = be16(frame, 12).ok_or(Truncated)?;
        let mut off = ETH_HDR;
        let mut tags = [VlanTag::default(); 2];
        let mut tag_count = 0u8;
        while is_tpid(ethertype) {
            if tag_count == 2 {
                tag_count = 3;
                break;
            }
            let tci = be16(frame, off).ok_or(Truncated)?;
            tags[tag_count as usize] = VlanTag {
                tpid: ethertype,
                tci,
            };
            tag_count += 1;
            ethertype = be16(frame, off + 2).ok_or(Truncated)?;
            off += 4;
        }
        let mut v = FrameView {
            dst,
            src,
            tags,
            tag_count,
            ethertype,
            l3_offset: off,
            l3: L3::Other,
            l4_offset: 0,
            l4: L4::None,
        };
        if tag_count > 2 {
            return Ok(v);
        }
        let l3 = &frame[off..];
        match ethertype {
            ETH_P_ARP => v.l3 = parse_arp(l3)?,
            ETH_P_IPV4 => parse_ipv4(l3, off, &mut v)?,
            ETH_P_IPV6 => parse_ipv6(l3, off, &mut v)?,
            _ => {}
        }
        Ok(v)
    }
}

fn parse_arp(b: &[u8]) -> Result<L3, ParseError> {
    if b.len() < 8 {
        return Err(ParseError::Truncated);
    }
    let htype = be16(b, 0).ok_or(ParseError::Truncated)?;
    let ptype = be16(b, 2).ok_or(ParseError::Truncated)?;
    if htype != 1 || ptype != ETH_P_IPV4 || b[4] != 6 || b[5] != 4 {
        return Ok(L3::ArpOther);
    }
    if b.len() < 28 {
        return Err(ParseError::Truncated);
    }
    let t = ParseError::Truncated;
    Ok(L3::Arp(ArpFields {
        op: be16(b, 6).ok_or(t)?,
        sha: mac_at(b, 8).ok_or(t)?,
        spa: v4_at(b, 14).ok_or(t)?,
        tha: mac_at(b, 18).ok_or(t)?,
        tpa: v4_at(b, 24).ok_or(t)?,
    }))
}

fn parse_ipv4(b: &[u8], l3_off: usize, v: &mut FrameView) -> Result<(), ParseError> {
    use ParseError::*;
    if b.len() < 20 {
        return Err(Truncated);
    }
    if b[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    let total = usize::from(be16(b, 2).ok_or(Truncated)?);
    if ihl < 20 || total < ihl {
        return Err(Malformed);
    }
    if total > b.len() {
        return Err(Truncated);
    }
    let frag = be16(b, 6).ok_or(Truncated)?;
    let proto = b[9];
    v.l3 = L3::Ipv4 {
        src: v4_at(b, 12).ok_or(Truncated)?,
        dst: v4_at(b, 16).ok_or(Truncated)?,
        proto,
    };
    if frag & 0x1fff != 0 {
        // Non-first fragment: no L4 header here.
        return Ok(());
    }
    let payload = &b[ihl..total];
    v.l4_offset = l3_off + ihl;
    v.l4 = parse_l4(proto, payload, false)?;
    Ok(())
}

fn parse_ipv6(b: &[u8], l3_off: usize, v: &mut FrameView) -> Result<(), ParseError> {
    use ParseError::*;
    if b.len() < 40 {
        return Err(Truncated);
    }
    if b[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let plen = usize::from(be16(b, 4).ok_or(Truncated)?);
    let mut next = b[6];
    let end = if plen == 0 && next == 0 {
        b.len() // jumbogram-style (BIG TCP): the frame bounds the payload
    } else {
        40 + plen
    };
    if end > b.len() {
        return Err(Truncated);
    }
    let src = v6_at(b, 8).ok_or(Truncated)?;
    let dst = v6_at(b, 24).ok_or(Truncated)?;
    let mut off = 40;
    let mut first_fragment = true;
    let mut n = 0;
    loop {
        match next {
            0 | 43 | 60 | 51 => {
                n += 1;
                if n > MAX_IPV6_EXT_HEADERS {
                    return Err(Malformed);
                }
                if off + 8 > end {
                    return Err(Truncated);
                }
                let len = if next == 51 {
                    (usize::from(b[off + 1]) + 2) * 4
                } else {
                    (usize::from(b[off + 1]) + 1) * 8
                };
                next = b[off];
                off += len;
                if off > end {
                    return Err(Truncated);
                }
            }
            44 => {
                n += 1;
                if n > MAX_IPV6_EXT_HEADERS {
                    return Err(Malformed);
                }
                if off + 8 > end {
                    return Err(Truncated);
                }
                let fo = be16(b, off + 2).ok_or(Truncated)?;
                if fo & 0xfff8 != 0 {
                    first_fragment = false;
                }
                next = b[off];
                off += 8;
            }
            _ => break,
        }
    }
    v.l3 = L3::Ipv6 {
        src,
        dst,
        proto: next,
    };
    if !first_fragment {
        return Ok(());
    }
    v.l4_offset = l3_off + off;
    v.l4 = parse_l4(next, &b[off..end], true)?;
    Ok(())
}

fn parse_l4(proto: u8, p: &[u8], v6: bool) -> Result<L4, ParseError> {
    use ParseError::*;
    Ok(match proto {
        IPPROTO_UDP => {
            if p.len() < 8 {
                return Err(Truncated);
            }
            L4::Udp {
                sport: be16(p, 0).ok_or(Truncated)?,
                dport: be16(p, 2).ok_or(Truncated)?,
            }
        }
        IPPROTO_TCP => {
            if p.len() < 20 {
                return Err(Truncated);
            }
            L4::Tcp {
                sport: be16(p, 0).ok_or(Truncated)?,
                dport: be16(p, 2).ok_or(Truncated)?,
            }
        }
        IPPROTO_ICMP if !v6 => {
            if p.len() < 4 {
                return Err(Truncated);
            }
            L4::Icmp {
                ty: p[0],
                code: p[1],
            }
        }
        IPPROTO_ICMPV6 if v6 => {
            if p.len() < 4 {
                return Err(Truncated);
            }
            let ty = p[0];
            let nd = if ty == ND_NEIGHBOR_SOLICIT || ty == ND_NEIGHBOR_ADVERT {
                if p.len() < 24 {
                    return Err(Truncated);
                }
                let target = v6_at(p, 8).ok_or(Truncated)?;
                let want = if ty == ND_NEIGHBOR_SOLICIT { 1 } else { 2 };
                let mut ll: Option<MacAddr> = None;
                let mut o = 24;
                while o < p.len() {
                    if o + 2 > p.len() {
                        return Err(Malformed);
                    }
                    let olen = usize::from(p[o + 1]) * 8;
                    if olen == 0 || o + olen > p.len() {
                        return Err(Malformed);
                    }
                    if p[o] == want {
                        let m = mac_at(p, o + 2).ok_or(Malformed)?;
                        match ll {
                            Some(prev) if prev != m => return Err(Malformed),
                            _ => ll = Some(m),
                        }
                    }
                    o += olen;
                }
                Some(NdFields { target, ll })
            } else {
                None
            };
            L4::Icmpv6 { ty, code: p[1], nd }
        }
        _ => L4::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;

    fn m(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_arp() {
        let f = FrameBuilder::arp(
            m("fa:16:3e:00:00:01"),
            1,
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        )
        .build();
        let v = FrameView::parse(&f).unwrap();
        assert_eq!(v.dst, MacAddr::BROADCAST);
        assert_eq!(v.ethertype, ETH_P_ARP);
        match v.l3 {
            L3::Arp(a) => {
                assert_eq!(a.op, 1);
                assert_eq!(a.sha, m("fa:16:3e:00:00:01"));
                assert_eq!(a.spa, Ipv4Addr::new(10, 0, 0, 1));
                assert_eq!(a.tpa, Ipv4Addr::new(10, 0, 0, 2));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_tags_and_udp() {
        let f = FrameBuilder::udp4(
            m("fa:16:3e:00:00:01"),
            m("fa:16:3e:00:00:02"),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            68,
            67,
        )
        .vlan(TPID_8021AD, 7)
        .vlan(TPID_8021Q, 100)
        .build();
        let v = FrameView::parse(&f).unwrap();
        assert_eq!(v.tag_count, 2);
        assert_eq!(v.tags[0].tpid, TPID_8021AD);
        assert_eq!(v.tags[0].vid(), 7);
        assert_eq!(v.tags[1].vid(), 100);
        assert_eq!(v.l3_offset, 22);
        assert_eq!(v.l4_offset, 42);
        assert_eq!(
            v.l4,
            L4::Udp {
                sport: 68,
                dport: 67
            }
        );
    }

    #[test]
    fn parses_nd() {
        let mac = m("fa:16:3e:00:00:01");
        let f = FrameBuilder::nd(mac, ND_NEIGHBOR_ADVERT, mac.ipv6_link_local(), Some(mac)).build();
        let v = FrameView::parse(&f).unwrap();
        match v.l4 {
            L4::Icmpv6 {
                ty, nd: Some(nd), ..
            } => {
                assert_eq!(ty, ND_NEIGHBOR_ADVERT);
                assert_eq!(nd.target, mac.ipv6_link_local());
                assert_eq!(nd.ll, Some(mac));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncations_are_typed() {
        assert_eq!(FrameView::parse(&[0u8; 13]), Err(ParseError::Truncated));
        let f = FrameBuilder::udp4(
            m("fa:16:3e:00:00:01"),
            m("fa:16:3e:00:00:02"),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            1,
            2,
        )
        .build();
        // 42 = Ethernet + IPv4 + UDP; the rest is padding to 60 bytes.
        assert!(FrameView::parse(&f[..42]).is_ok());
        for cut in 14..42 {
            assert!(FrameView::parse(&f[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = f.clone();
        bad[14] = 0x65; // version 6 in an IPv4 ethertype
        assert_eq!(FrameView::parse(&bad), Err(ParseError::Malformed));
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(FrameView::parse(&big), Err(ParseError::Oversized));
    }
}
