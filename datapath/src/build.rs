//! Building frames from a description: used by `weft trace`, tests and benches.
//! Checksums are filled in; frames are padded to the 60-byte Ethernet minimum.

use crate::csum;
use crate::frame::{
    ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    ND_NEIGHBOR_SOLICIT, TPID_8021Q,
};
use crate::mac::MacAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Layer 4 of a frame to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecL4 {
    /// No L4 header (the IP protocol number is still set).
    None(u8),
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// TCP (20-byte header).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flags byte (0x02 SYN, 0x10 ACK, ...).
        flags: u8,
    },
    /// ICMP (v4) echo-style header.
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
    },
    /// ICMPv6; with `nd_target` for NS/NA, `ll` as the SLL (NS) / TLL (NA) option.
    Icmpv6 {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
        /// NS/NA target.
        nd_target: Option<Ipv6Addr>,
        /// Link-layer address option.
        ll: Option<MacAddr>,
    },
}

/// Layer 3 of a frame to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecL3 {
    /// A bare ethertype with zero payload.
    Raw(u16),
    /// Ethernet/IPv4 ARP.
    Arp {
        /// Operation.
        op: u16,
        /// Sender MAC.
        sha: MacAddr,
        /// Sender IP.
        spa: Ipv4Addr,
        /// Target MAC.
        tha: MacAddr,
        /// Target IP.
        tpa: Ipv4Addr,
    },
    /// IP (v4 or v6 by address family of `src`).
    Ip {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
        /// L4.
        l4: SpecL4,
    },
}

/// A frame description that builds to bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameBuilder {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// VLAN tags, outer first: (TPID, TCI).
    pub tags: Vec<(u16, u16)>,
    /// L3 and below.
    pub l3: SpecL3,
    /// Extra payload bytes after the L4 header.
    pub payload_len: usize,
}

impl FrameBuilder {
    /// An IPv4/UDP frame.
    pub fn udp4(
        src: MacAddr,
        dst: MacAddr,
        sip: Ipv4Addr,
        dip: Ipv4Addr,
        sport: u16,
        dport: u16,
    ) -> Self {
        FrameBuilder {
            dst,
            src,
            tags: Vec::new(),
            l3: SpecL3::Ip {
                src: sip.into(),
                dst: dip.into(),
                l4: SpecL4::Udp { sport, dport },
            },
            payload_len: 0,
        }
    }

    /// An IP frame with the given L4.
    pub fn ip(src: MacAddr, dst: MacAddr, sip: IpAddr, dip: IpAddr, l4: SpecL4) -> Self {
        FrameBuilder {
            dst,
            src,
            tags: Vec::new(),
            l3: SpecL3::Ip {
                src: sip,
                dst: dip,
                l4,
            },
            payload_len: 0,
        }
    }

    /// A broadcast ARP request/reply from `sha`/`spa` for `tpa`.
    pub fn arp(sha: MacAddr, op: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> Self {
        FrameBuilder {
            dst: MacAddr::BROADCAST,
            src: sha,
            tags: Vec::new(),
            l3: SpecL3::Arp {
                op,
                sha,
                spa,
                tha: MacAddr::ZERO,
                tpa,
            },
            payload_len: 0,
        }
    }

    /// An NS (to the solicited-node multicast group) or NA (to all-nodes) from `mac`'s link-local.
    pub fn nd(mac: MacAddr, ty: u8, target: Ipv6Addr, ll: Option<MacAddr>) -> Self {
        let (dst_ip, dst_mac) = if ty == ND_NEIGHBOR_SOLICIT {
            let t = target.octets();
            let ip = Ipv6Addr::from([
                0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
            ]);
            (ip, MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]))
        } else {
            (
                "ff02::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
                MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            )
        };
        FrameBuilder {
            dst: dst_mac,
            src: mac,
            tags: Vec::new(),
            l3: SpecL3::Ip {
                src: mac.ipv6_link_local().into(),
                dst: dst_ip.into(),
                l4: SpecL4::Icmpv6 {
                    ty,
                    code: 0,
                    nd_target: Some(target),
                    ll,
                },
            },
            payload_len: 0,
        }
    }

    /// Adds a VLAN tag inside the existing ones (call outer first).
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.tags.push((tpid, vid & 0x0fff));
        self
    }

    /// Adds an 802.1Q tag.
    pub fn dot1q(self, vid: u16) -> Self {
        self.vlan(TPID_8021Q, vid)
    }

    /// Sets the payload length after the L4 header.
    pub fn payload(mut self, len: usize) -> Self {
        self.payload_len = len;
        self
    }

    /// The frame bytes (padded to 60 bytes, no FCS).
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload_len);
        f.extend_from_slice(&self.dst.0);
        f.extend_from_slice(&self.src.0);
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        match &self.l3 {
            SpecL3::Raw(et) => {
                f.extend_from_slice(&et.to_be_bytes());
                f.resize(f.len() + self.payload_len, 0);
            }
            SpecL3::Arp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => {
                f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
                f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
                f.extend_from_slice(&op.to_be_bytes());
                f.extend_from_slice(&sha.0);
                f.extend_from_slice(&spa.octets());
                f.extend_from_slice(&tha.0);
                f.extend_from_slice(&tpa.octets());
            }
            SpecL3::Ip { src, dst, l4 } => {
                let mut l4b = Vec::with_capacity(32 + self.payload_len);
                let proto = match l4 {
                    SpecL4::None(p) => {
                        l4b.resize(self.payload_len, 0);
                        *p
                    }
                    SpecL4::Udp { sport, dport } => {
                        l4b.extend_from_slice(&sport.to_be_bytes());
                        l4b.extend_from_slice(&dport.to_be_bytes());
                        let len = (8 + self.payload_len) as u16;
                        l4b.extend_from_slice(&len.to_be_bytes());
                        l4b.extend_from_slice(&[0, 0]);
                        IPPROTO_UDP
                    }
                    SpecL4::Tcp {
                        sport,
                        dport,
                        flags,
                    } => {
                        l4b.extend_from_slice(&sport.to_be_bytes());
                        l4b.extend_from_slice(&dport.to_be_bytes());
                        l4b.extend_from_slice(&1u32.to_be_bytes());
                        l4b.extend_from_slice(&0u32.to_be_bytes());
                        l4b.extend_from_slice(&[0x50, *flags, 0xff, 0xff, 0, 0, 0, 0]);
                        IPPROTO_TCP
                    }
                    SpecL4::Icmp { ty, code } => {
                        l4b.extend_from_slice(&[*ty, *code, 0, 0, 0, 1, 0, 1]);
                        IPPROTO_ICMP
                    }
                    SpecL4::Icmpv6 {
                        ty,
                        code,
                        nd_target,
                        ll,
                    } => {
                        l4b.extend_from_slice(&[*ty, *code, 0, 0]);
                        match nd_target {
                            Some(t) => {
                                // NA: solicited + override flags
                                let flags = if *ty == ND_NEIGHBOR_SOLICIT { 0 } else { 0x60 };
                                l4b.extend_from_slice(&[flags, 0, 0, 0]);
                                l4b.extend_from_slice(&t.octets());
                                if let Some(m) = ll {
                                    let opt = if *ty == ND_NEIGHBOR_SOLICIT { 1 } else { 2 };
                                    l4b.extend_from_slice(&[opt, 1]);
                                    l4b.extend_from_slice(&m.0);
                                }
                            }
                            None => l4b.extend_from_slice(&[0, 0, 0, 1]),
                        }
                        IPPROTO_ICMPV6
                    }
                };
                if !matches!(l4, SpecL4::None(_) | SpecL4::Udp { .. }) {
                    l4b.resize(l4b.len() + self.payload_len, 0);
                } else if matches!(l4, SpecL4::Udp { .. }) {
                    l4b.resize(8 + self.payload_len, 0);
                }
                let ck_off = match l4 {
                    SpecL4::Udp { .. } => Some(6),
                    SpecL4::Tcp { .. } => Some(16),
                    SpecL4::Icmp { .. } | SpecL4::Icmpv6 { .. } => Some(2),
                    SpecL4::None(_) => None,
                };
                match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        f.extend_from_slice(&ETH_P_IPV4.to_be_bytes());
                        let total = (20 + l4b.len()) as u16;
                        let mut h = [0u8; 20];
                        h[0] = 0x45;
                        h[2..4].copy_from_slice(&total.to_be_bytes());
                        h[4..6].copy_from_slice(&1u16.to_be_bytes());
                        h[6] = 0x40; // DF
                        h[8] = 64;
                        h[9] = proto;
                        h[12..16].copy_from_slice(&s.octets());
                        h[16..20].copy_from_slice(&d.octets());
                        let ck = csum::checksum(&h);
                        h[10..12].copy_from_slice(&ck.to_be_bytes());
                        f.extend_from_slice(&h);
                    }
                    _ => {
                        f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                        let to6 = |a: &IpAddr| match a {
                            IpAddr::V6(x) => *x,
                            IpAddr::V4(x) => x.to_ipv6_mapped(),
                        };
                        let mut h = [0u8; 40];
                        h[0] = 0x60;
                        h[4..6].copy_from_slice(&(l4b.len() as u16).to_be_bytes());
                        h[6] = proto;
                        h[7] = 255;
                        h[8..24].copy_from_slice(&to6(src).octets());
                        h[24..40].copy_from_slice(&to6(dst).octets());
                        f.extend_from_slice(&h);
                    }
                }
                if let Some(o) = ck_off {
                    let sum = if proto == IPPROTO_ICMP {
                        csum::add(0, &l4b)
                    } else {
                        csum::add(
                            csum::pseudo_header(*src, *dst, proto, l4b.len() as u32),
                            &l4b,
                        )
                    };
                    let mut ck = !csum::fold(sum);
                    if proto == IPPROTO_UDP && ck == 0 {
                        ck = 0xffff;
                    }
                    l4b[o..o + 2].copy_from_slice(&ck.to_be_bytes());
                }
                f.extend_from_slice(&l4b);
            }
        }
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }
}
