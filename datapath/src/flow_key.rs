//! [`FlowKey`]: everything the pipeline stages read about a frame, packed into eight words.
//!
//! The stages decide from the key alone, so a decision cached per key is exact. Fields no stage
//! reads (destination IP, TCP ports, payload) are left out so that flows share entries. The key
//! is built either from a [`FrameView`] (trace, rare frames) or straight from the bytes by
//! [`FlowKey::extract`], a one-pass parser for common frames that falls back to the full parser
//! for anything else; a property test checks both paths always agree.

use crate::frame::{
    FrameView, ParseError, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP,
    IPPROTO_UDP, L3, L4, MAX_FRAME_LEN, TPID_8021AD, TPID_8021Q, TPID_9100,
};
use crate::mac::MacAddr;
use crate::verdict::PortNo;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) const L3_OTHER: u8 = 0;
pub(crate) const L3_ARP_OTHER: u8 = 1;
pub(crate) const L3_ARP: u8 = 2;
pub(crate) const L3_V4: u8 = 3;
pub(crate) const L3_V6: u8 = 4;

pub(crate) const L4_NONE: u8 = 0;
pub(crate) const L4_UDP: u8 = 1;
pub(crate) const L4_ICMP6: u8 = 2;

pub(crate) const DHCP_SERVER: u16 = 67;
pub(crate) const DHCP_CLIENT: u16 = 68;
pub(crate) const DHCP6_CLIENT: u16 = 546;
pub(crate) const DHCP6_SERVER: u16 = 547;

#[inline]
fn dhcp_port(p: u16) -> u16 {
    // The DHCP guard compares ports only against these; others become 0 so that ordinary UDP
    // flows of one host share a cache entry. Branch-free: 67/68 and 546/547 are two pairs.
    const _: () = assert!(DHCP_CLIENT == DHCP_SERVER + 1 && DHCP6_SERVER == DHCP6_CLIENT + 1);
    let keep = (p.wrapping_sub(DHCP_SERVER) < 2) | (p.wrapping_sub(DHCP6_CLIENT) < 2);
    p & 0u16.wrapping_sub(u16::from(keep))
}

/// The metadata address 169.254.169.254 as the flow key compares it (one `u32` compare of the
/// destination's bytes, read as they lie in the frame).
const METADATA_BE: u32 = u32::from_be_bytes([169, 254, 169, 254]);
/// w0 bit: the IPv4 destination, or the ARP target, is 169.254.169.254 (the metadata stage
/// reads it; every other frame pays only the compare that clears it).
const META_BIT: u32 = 26;

#[inline(always)]
fn meta_bit(dst: [u8; 4]) -> u64 {
    u64::from(u32::from_be_bytes(dst) == METADATA_BE) << META_BIT
}

#[inline]
fn tpid_kind(t: u16) -> u64 {
    match t {
        TPID_8021Q => 1,
        TPID_8021AD => 2,
        TPID_9100 => 3,
        _ => 0,
    }
}

#[inline]
fn mac48(b: [u8; 6]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
}

#[inline]
fn unmac48(w: u64) -> MacAddr {
    let b = w.to_le_bytes();
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

const MASK48: u64 = (1 << 48) - 1;

/// Packed key. w0: in_port[0..16] tag_count[16..18] tpid_kind[18..20] l3_kind[20..23]
/// l4_kind[23..25] has_ll[25] for_metadata[26] outer_vid[32..44] ethertype[48..64]; w1: dst | sub<<48;
/// w2: src | sport<<48; w3: l2addr | dport<<48; w4,w5: IP source; w6,w7: ND target.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct FlowKey {
    w: [u64; 8],
}

impl PartialEq for FlowKey {
    /// Branch-free: the derived version calls memcmp, which dominated the cached path.
    #[inline]
    fn eq(&self, o: &FlowKey) -> bool {
        let mut d = 0u64;
        for i in 0..8 {
            d |= self.w[i] ^ o.w[i];
        }
        d == 0
    }
}

impl Eq for FlowKey {}

impl FlowKey {
    /// For cache prefetching.
    #[inline]
    pub fn first_word(&self) -> u64 {
        self.w[0]
    }

    // ---- accessors (the only way the stages read a frame) ----
    #[inline]
    pub fn in_port(&self) -> PortNo {
        PortNo(self.w[0] as u16)
    }
    #[inline]
    pub fn tag_count(&self) -> u8 {
        ((self.w[0] >> 16) & 3) as u8
    }
    #[inline]
    pub fn outer_tpid(&self) -> u16 {
        match (self.w[0] >> 18) & 3 {
            1 => TPID_8021Q,
            2 => TPID_8021AD,
            3 => TPID_9100,
            _ => 0,
        }
    }
    #[inline]
    pub fn l3_kind(&self) -> u8 {
        ((self.w[0] >> 20) & 7) as u8
    }
    #[inline]
    pub fn l4_kind(&self) -> u8 {
        ((self.w[0] >> 23) & 3) as u8
    }
    #[inline]
    pub fn has_ll(&self) -> bool {
        (self.w[0] >> 25) & 1 == 1
    }
    /// IPv4 to, or ARP for, 169.254.169.254: the metadata service's.
    #[inline]
    pub fn for_metadata(&self) -> bool {
        (self.w[0] >> META_BIT) & 1 == 1
    }
    #[inline]
    pub fn outer_vid(&self) -> u16 {
        ((self.w[0] >> 32) & 0xfff) as u16
    }
    #[inline]
    pub fn ethertype(&self) -> u16 {
        (self.w[0] >> 48) as u16
    }
    #[inline]
    pub fn dst(&self) -> MacAddr {
        unmac48(self.w[1])
    }
    /// ARP op or ICMPv6 type.
    #[inline]
    pub fn sub(&self) -> u16 {
        (self.w[1] >> 48) as u16
    }
    #[inline]
    pub fn src(&self) -> MacAddr {
        unmac48(self.w[2])
    }
    #[inline]
    pub fn sport(&self) -> u16 {
        (self.w[2] >> 48) as u16
    }
    /// ARP sha or ND link-layer option.
    #[inline]
    pub fn l2addr(&self) -> MacAddr {
        unmac48(self.w[3])
    }
    #[inline]
    pub fn dport(&self) -> u16 {
        (self.w[3] >> 48) as u16
    }
    /// IPv4 source or ARP spa.
    #[inline]
    pub fn ip4(&self) -> Ipv4Addr {
        Ipv4Addr::from((self.w[4] as u32).to_le_bytes())
    }
    #[inline]
    pub fn ip6(&self) -> Ipv6Addr {
        Ipv6Addr::from(Self::words_to_v6(self.w[4], self.w[5]))
    }
    #[inline]
    pub fn nd_target(&self) -> Ipv6Addr {
        Ipv6Addr::from(Self::words_to_v6(self.w[6], self.w[7]))
    }

    fn words_to_v6(a: u64, b: u64) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..8].copy_from_slice(&a.to_le_bytes());
        o[8..].copy_from_slice(&b.to_le_bytes());
        o
    }

    fn v6_words(b: [u8; 16]) -> (u64, u64) {
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        y.copy_from_slice(&b[8..]);
        (u64::from_le_bytes(x), u64::from_le_bytes(y))
    }

    #[inline]
    fn v4_word(b: [u8; 4]) -> u64 {
        u64::from(u32::from_le_bytes(b))
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn head(
        in_port: PortNo,
        tag_count: u8,
        tpid: u16,
        vid: u16,
        l3: u8,
        l4: u8,
        has_ll: bool,
        et: u16,
    ) -> u64 {
        u64::from(in_port.0)
            | u64::from(tag_count & 3) << 16
            | tpid_kind(tpid) << 18
            | u64::from(l3 & 7) << 20
            | u64::from(l4 & 3) << 23
            | u64::from(has_ll) << 25
            | u64::from(vid & 0xfff) << 32
            | u64::from(et) << 48
    }

    /// The key of a parsed frame.
    pub fn from_view(in_port: PortNo, v: &FrameView) -> FlowKey {
        let (tpid, vid) = if v.tag_count > 0 {
            (v.tags[0].tpid, v.tags[0].vid())
        } else {
            (0, 0)
        };
        let mut l3 = L3_OTHER;
        let mut l4 = L4_NONE;
        let mut sub = 0u16;
        let mut l2addr = 0u64;
        let mut has_ll = false;
        let (mut w4, mut w5, mut w6, mut w7) = (0, 0, 0, 0);
        let (mut sport, mut dport) = (0u16, 0u16);
        let mut meta = 0;
        match v.l3 {
            L3::Other => {}
            L3::ArpOther => l3 = L3_ARP_OTHER,
            L3::Arp(a) => {
                l3 = L3_ARP;
                sub = a.op;
                l2addr = mac48(a.sha.0);
                w4 = Self::v4_word(a.spa.octets());
                meta = meta_bit(a.tpa.octets());
            }
            L3::Ipv4 { src, dst, .. } => {
                l3 = L3_V4;
                w4 = Self::v4_word(src.octets());
                meta = meta_bit(dst.octets());
            }
            L3::Ipv6 { src, .. } => {
                l3 = L3_V6;
                (w4, w5) = Self::v6_words(src.octets());
            }
        }
        match v.l4 {
            L4::Udp { sport: s, dport: d } => {
                l4 = L4_UDP;
                sport = dhcp_port(s);
                dport = dhcp_port(d);
            }
            L4::Icmpv6 { ty, nd, .. } => {
                l4 = L4_ICMP6;
                sub = u16::from(ty);
                if let Some(nd) = nd {
                    (w6, w7) = Self::v6_words(nd.target.octets());
                    if let Some(ll) = nd.ll {
                        has_ll = true;
                        l2addr = mac48(ll.0);
                    }
                }
            }
            _ => {}
        }
        FlowKey {
            w: [
                Self::head(in_port, v.tag_count, tpid, vid, l3, l4, has_ll, v.ethertype) | meta,
                mac48(v.dst.0) | u64::from(sub) << 48,
                mac48(v.src.0) | u64::from(sport) << 48,
                l2addr | u64::from(dport) << 48,
                w4,
                w5,
                w6,
                w7,
            ],
        }
    }

    /// Builds the key straight from the bytes for common frames (untagged or one tag; ARP, IPv4
    /// without options/fragments, IPv6 UDP/TCP without extension headers, other ethertypes);
    /// anything else goes through [`FrameView::parse`]. Same result as
    /// `FrameView::parse(frame).map(|v| FlowKey::from_view(in_port, &v))`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn extract(in_port: PortNo, f: &[u8]) -> Result<FlowKey, ParseError> {
        let mut k = FlowKey::default();
        Self::extract_hashed(in_port, f, &mut k)?;
        Ok(k)
    }

    /// [`FlowKey::extract`] into a caller's slot (a batch's key array), without a copy; returns
    /// the key's [`FlowKey::hash`] (computed from registers on the straight-line path).
    #[inline(always)]
    pub fn extract_hashed(in_port: PortNo, f: &[u8], out: &mut FlowKey) -> Result<u64, ParseError> {
        match Self::untagged_v4(in_port, f, out) {
            Some(h) => Ok(h),
            None => {
                *out = Self::extract_general(in_port, f)?;
                Ok(out.hash())
            }
        }
    }

    /// Everything but the straight-line case of [`FlowKey::untagged_v4`]: kept out of line so
    /// that the common case inlines into the batch loop.
    #[inline(never)]
    fn extract_general(in_port: PortNo, f: &[u8]) -> Result<FlowKey, ParseError> {
        match Self::fast(in_port, f) {
            Some(k) => Ok(k),
            None => FrameView::parse(f).map(|v| FlowKey::from_view(in_port, &v)),
        }
    }

    /// The most common frame from a VM, with as few branches as possible: untagged IPv4 without
    /// options or fragments, at least 42 bytes. Writes the same key as [`FlowKey::fast`] (and
    /// so as the full parser) to `out` and returns its hash, or returns None (`out` untouched)
    /// to let it decide.
    #[inline(always)]
    fn untagged_v4(in_port: PortNo, f: &[u8], out: &mut FlowKey) -> Option<u64> {
        // One bounds check for every byte read below.
        let h = f.first_chunk::<42>()?;
        let rd = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        let total = usize::from(rd(16));
        // Ethertype IPv4 + version/IHL 0x45 in one compare.
        if u32::from_be_bytes([h[12], h[13], h[14], 0]) != 0x0800_4500
            || f.len() > MAX_FRAME_LEN
            || total < 20
            || total > f.len() - 14
            || rd(20) & 0x1fff != 0
        {
            return None;
        }
        let (l4, sport, dport) = match h[23] {
            IPPROTO_UDP if total >= 28 => (L4_UDP, dhcp_port(rd(34)), dhcp_port(rd(36))),
            IPPROTO_UDP => return None,
            IPPROTO_TCP if total < 40 => return None,
            IPPROTO_ICMP if total < 24 => return None,
            _ => (L4_NONE, 0, 0),
        };
        let w = |at: usize| {
            u64::from_le_bytes([
                h[at],
                h[at + 1],
                h[at + 2],
                h[at + 3],
                h[at + 4],
                h[at + 5],
                h[at + 6],
                h[at + 7],
            ])
        };
        let k = [
            Self::head(in_port, 0, 0, 0, L3_V4, l4, false, ETH_P_IPV4)
                | meta_bit([h[30], h[31], h[32], h[33]]),
            w(0) & MASK48,
            (w(6) & MASK48) | u64::from(sport) << 48,
            u64::from(dport) << 48,
            Self::v4_word([h[26], h[27], h[28], h[29]]),
        ];
        out.w = [k[0], k[1], k[2], k[3], k[4], 0, 0, 0];
        Some(Self::hash5(k))
    }

    #[inline]
    fn fast(in_port: PortNo, f: &[u8]) -> Option<FlowKey> {
        if f.len() > MAX_FRAME_LEN || f.len() < 14 {
            return None;
        }
        let rd16 =
            |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?])) };
        let w8 = |at: usize| -> Option<u64> {
            let s: [u8; 8] = f.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(s))
        };
        let dst = w8(0)? & MASK48;
        let src = w8(6)? & MASK48;
        let mut et = rd16(12)?;
        let mut off = 14;
        let (mut tags, mut tpid, mut vid) = (0u8, 0u16, 0u16);
        if tpid_kind(et) != 0 {
            tpid = et;
            vid = rd16(14)? & 0xfff;
            et = rd16(16)?;
            off = 18;
            tags = 1;
            if tpid_kind(et) != 0 {
                return None;
            }
        }
        let b = &f[off..];
        let mut k = [0u64; 8];
        let (l3, l4);
        let mut sub = 0u16;
        let (mut sport, mut dport) = (0u16, 0u16);
        let mut meta = 0;
        match et {
            ETH_P_IPV4 => {
                if b.len() < 20 || b[0] != 0x45 {
                    return None;
                }
                let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
                if total < 20 || total > b.len() || u16::from_be_bytes([b[6], b[7]]) & 0x1fff != 0 {
                    return None;
                }
                l3 = L3_V4;
                k[4] = Self::v4_word([b[12], b[13], b[14], b[15]]);
                meta = meta_bit([b[16], b[17], b[18], b[19]]);
                match b[9] {
                    IPPROTO_UDP => {
                        if total < 28 {
                            return None;
                        }
                        l4 = L4_UDP;
                        sport = dhcp_port(u16::from_be_bytes([b[20], b[21]]));
                        dport = dhcp_port(u16::from_be_bytes([b[22], b[23]]));
                    }
                    IPPROTO_TCP if total < 40 => return None,
                    IPPROTO_ICMP if total < 24 => return None,
                    _ => l4 = L4_NONE,
                }
            }
            ETH_P_ARP => {
                if b.len() < 28 || b[..6] != [0, 1, 0x08, 0x00, 6, 4] {
                    return None;
                }
                l3 = L3_ARP;
                l4 = L4_NONE;
                sub = u16::from_be_bytes([b[6], b[7]]);
                k[3] = mac48([b[8], b[9], b[10], b[11], b[12], b[13]]);
                k[4] = Self::v4_word([b[14], b[15], b[16], b[17]]);
                meta = meta_bit([b[24], b[25], b[26], b[27]]);
            }
            ETH_P_IPV6 => {
                if b.len() < 40 || b[0] >> 4 != 6 {
                    return None;
                }
                let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
                if plen == 0 || 40 + plen > b.len() {
                    return None;
                }
                l3 = L3_V6;
                let src6: [u8; 16] = b[8..24].try_into().ok()?;
                (k[4], k[5]) = Self::v6_words(src6);
                match b[6] {
                    IPPROTO_UDP if plen >= 8 => {
                        l4 = L4_UDP;
                        sport = dhcp_port(u16::from_be_bytes([b[40], b[41]]));
                        dport = dhcp_port(u16::from_be_bytes([b[42], b[43]]));
                    }
                    IPPROTO_TCP if plen >= 20 => l4 = L4_NONE,
                    _ => return None,
                }
            }
            _ => {
                l3 = L3_OTHER;
                l4 = L4_NONE;
            }
        }
        k[0] = Self::head(in_port, tags, tpid, vid, l3, l4, false, et) | meta;
        k[1] = dst | u64::from(sub) << 48;
        k[2] = src | u64::from(sport) << 48;
        k[3] |= u64::from(dport) << 48;
        Some(FlowKey { w: k })
    }

    /// Hash for the flow cache index: two multiplies, whose top bits (the ones the cache uses)
    /// depend on every input bit. Words 5..7 are zero for everything but IPv6 and ND.
    #[inline]
    pub fn hash(&self) -> u64 {
        let w = &self.w;
        let five = Self::hash5([w[0], w[1], w[2], w[3], w[4]]);
        if (w[5] | w[6] | w[7]) == 0 {
            return five;
        }
        five ^ (w[5] ^ w[7].rotate_left(37)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
            ^ w[6].wrapping_mul(0x1656_67b1_9e37_79f9)
    }

    /// The hash of a key whose words 5..7 are zero (all but IPv6 and ND).
    #[inline(always)]
    fn hash5(w: [u64; 5]) -> u64 {
        let a = w[0] ^ w[2].rotate_left(23) ^ w[4].rotate_left(47);
        let b = w[1] ^ w[3].rotate_left(31);
        a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xf135_7aea_2e62_a9c5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use proptest::prelude::*;

    fn seeds() -> Vec<Vec<u8>> {
        let m1: MacAddr = "fa:16:3e:00:00:01".parse().unwrap();
        let m2: MacAddr = "fa:16:3e:00:00:02".parse().unwrap();
        let mut v = vec![
            FrameBuilder::udp4(
                m1,
                m2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                68,
                67,
            )
            .build(),
            FrameBuilder::udp4(
                m1,
                m2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                1,
                2,
            )
            .dot1q(100)
            .build(),
            FrameBuilder::arp(
                m1,
                1,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
            )
            .build(),
            FrameBuilder::arp(
                m1,
                2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
            )
            .dot1q(5)
            .build(),
            FrameBuilder::nd(m1, 136, m1.ipv6_link_local(), Some(m1)).build(),
            FrameBuilder::ip(
                m1,
                m2,
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                crate::build::SpecL4::Udp {
                    sport: 546,
                    dport: 547,
                },
            )
            .build(),
            FrameBuilder::ip(
                m1,
                m2,
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                crate::build::SpecL4::Tcp {
                    sport: 1,
                    dport: 2,
                    flags: 2,
                },
            )
            .build(),
            FrameBuilder::ip(
                m1,
                m2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                crate::build::SpecL4::Tcp {
                    sport: 1,
                    dport: 2,
                    flags: 2,
                },
            )
            .vlan(0x88a8, 7)
            .build(),
            FrameBuilder::ip(
                m1,
                m2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                crate::build::SpecL4::Icmp { ty: 8, code: 0 },
            )
            .build(),
        ];
        // Untagged IPv4 TCP and non-DHCP UDP: the straight-line path of `untagged_v4`.
        v.push(
            FrameBuilder::ip(
                m1,
                m2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                crate::build::SpecL4::Tcp {
                    sport: 68,
                    dport: 546,
                    flags: 2,
                },
            )
            .build(),
        );
        v.push(
            FrameBuilder::ip(
                m1,
                m2,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                crate::build::SpecL4::Udp {
                    sport: 4000,
                    dport: 547,
                },
            )
            .payload(18)
            .build(),
        );
        let mut qinq = v[0].clone();
        qinq.splice(12..12, [0x88, 0xa8, 0, 1, 0x81, 0, 0, 2]);
        v.push(qinq);
        v
    }

    #[test]
    fn dhcp_port_keeps_only_the_dhcp_ports() {
        for p in 0..=u16::MAX {
            let want = match p {
                DHCP_SERVER | DHCP_CLIENT | DHCP6_CLIENT | DHCP6_SERVER => p,
                _ => 0,
            };
            assert_eq!(dhcp_port(p), want, "{p}");
        }
    }

    #[test]
    fn seeds_cover_the_fast_paths() {
        let n = seeds().len();
        assert_eq!(n, 12, "update the proptest's seed range");
        let straight = seeds()
            .iter()
            .filter(|f| FlowKey::untagged_v4(PortNo(1), f, &mut FlowKey::default()).is_some())
            .count();
        assert!(straight >= 3, "{straight}");
    }

    fn agree(p: PortNo, f: &[u8]) {
        let slow = FrameView::parse(f).map(|v| FlowKey::from_view(p, &v));
        assert_eq!(FlowKey::extract(p, f), slow, "{f:02x?}");
        // The hash handed out with the key is the key's hash, whichever path built it.
        let mut k = FlowKey::default();
        if let Ok(h) = FlowKey::extract_hashed(p, f, &mut k) {
            assert_eq!(h, k.hash(), "{f:02x?}");
        }
    }

    #[test]
    fn fast_path_agrees_on_seeds_and_all_cuts() {
        for s in seeds() {
            for cut in 0..=s.len() {
                agree(PortNo(3), &s[..cut]);
            }
        }
    }

    #[test]
    fn accessors_roundtrip() {
        let m1: MacAddr = "fa:16:3e:00:00:01".parse().unwrap();
        let f = FrameBuilder::arp(
            m1,
            2,
            "10.1.2.3".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        )
        .dot1q(100)
        .build();
        let k = FlowKey::extract(PortNo(7), &f).unwrap();
        assert_eq!(k.in_port(), PortNo(7));
        assert_eq!(
            (k.tag_count(), k.outer_tpid(), k.outer_vid()),
            (1, TPID_8021Q, 100)
        );
        assert_eq!(k.ethertype(), ETH_P_ARP);
        assert_eq!(k.l3_kind(), L3_ARP);
        assert_eq!(k.sub(), 2);
        assert_eq!(k.l2addr(), m1);
        assert_eq!(k.src(), m1);
        assert_eq!(k.dst(), MacAddr::BROADCAST);
        assert_eq!(k.ip4(), "10.1.2.3".parse::<Ipv4Addr>().unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]
        #[test]
        fn fast_path_agrees_with_full_parser(
            i in 0usize..12,
            flips in proptest::collection::vec((0usize..90, any::<u8>()), 0..6),
            cut in 0usize..100,
            raw in proptest::collection::vec(any::<u8>(), 0..80),
            use_raw in any::<bool>(),
        ) {
            let mut f = if use_raw { raw } else { seeds()[i].clone() };
            for (at, v) in flips {
                if at < f.len() { f[at] = v; }
            }
            if cut < f.len() && cut % 2 == 0 { f.truncate(cut); }
            let slow = FrameView::parse(&f).map(|v| FlowKey::from_view(PortNo(9), &v));
            prop_assert_eq!(FlowKey::extract(PortNo(9), &f), slow);
            let mut k = FlowKey::default();
            if let Ok(h) = FlowKey::extract_hashed(PortNo(9), &f, &mut k) {
                prop_assert_eq!(h, k.hash());
            }
        }
    }
}
