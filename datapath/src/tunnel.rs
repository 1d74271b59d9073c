//! VXLAN (RFC 7348) as the tunnel bridge of the switch, sans-IO: header encode/decode, the
//! decision what to do with a datagram that arrived on the tunnel socket, and the per-VNI
//! forwarding table of remote VTEPs (inner MAC -> the tunnel endpoint it was last seen behind).
//!
//! The pipeline sees the tunnel endpoint as one trunk port (like br-int's `patch-tun`) that
//! carries each tunnel network tagged with its *local* VLAN. This module is `br-tun`: it maps
//! VNI <-> local VLAN at the edge and chooses the remote VTEP(s).
//!
//! ```text
//!  UDP payload [VXLAN hdr | inner frame] --decap--> [inner dst,src | 8100 local_vlan | rest] -> pipeline
//!  pipeline --(local_vlan, untagged inner frame)--> encap --> [VXLAN hdr(vni) | inner frame] -> peer(s)
//! ```
//!
//! The outer IP/UDP headers are the kernel's: the shell sends the VXLAN payload on a UDP socket
//! bound to the host's tunnel IP, so what leaves is ordinary VXLAN any capture tool decodes.

use crate::frame::{TPID_8021AD, TPID_8021Q, TPID_9100};
use crate::mac::MacAddr;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// IANA port for VXLAN.
pub const VXLAN_UDP_PORT: u16 = 4789;
/// Bytes of the VXLAN header.
pub const VXLAN_HDR_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const VXLAN_FLAG_I: u8 = 0x08;
/// Highest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Bytes a VXLAN-over-IPv4 tunnel adds to an inner IP packet: outer IPv4 (20) + UDP (8) +
/// VXLAN (8) + inner Ethernet (14). A 1500-byte physical MTU leaves 1450 for the tenant network,
/// as Neutron computes it.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// The same over IPv6 (outer header 40 bytes).
pub const VXLAN_OVERHEAD_V6: u32 = 70;
/// Ethernet header without tags.
const ETH_HLEN: usize = 14;

/// Why a datagram from the tunnel socket was dropped (counted per reason by the shell).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum TunnelDrop {
    /// Shorter than a VXLAN header plus an Ethernet header.
    Truncated = 0,
    /// The I flag is not set (no valid VNI).
    BadFlags,
    /// A VNI with no network on this host.
    UnknownVni,
    /// The inner frame carries a VLAN tag (tenant networks are untagged; no VLAN hopping).
    InnerTagged,
    /// The inner source MAC is a group address.
    InnerMulticastSource,
    /// The datagram came from an address that is not a configured tunnel peer.
    UnknownPeer,
}

impl TunnelDrop {
    /// Number of reasons.
    pub const COUNT: usize = 6;
    /// All reasons.
    pub const ALL: [TunnelDrop; TunnelDrop::COUNT] = [
        TunnelDrop::Truncated,
        TunnelDrop::BadFlags,
        TunnelDrop::UnknownVni,
        TunnelDrop::InnerTagged,
        TunnelDrop::InnerMulticastSource,
        TunnelDrop::UnknownPeer,
    ];

    /// Name in counters and `weft ctl`.
    pub fn name(self) -> &'static str {
        match self {
            TunnelDrop::Truncated => "vxlan_truncated",
            TunnelDrop::BadFlags => "vxlan_bad_flags",
            TunnelDrop::UnknownVni => "vxlan_unknown_vni",
            TunnelDrop::InnerTagged => "vxlan_inner_tagged",
            TunnelDrop::InnerMulticastSource => "vxlan_inner_multicast_source",
            TunnelDrop::UnknownPeer => "vxlan_unknown_peer",
        }
    }
}

impl fmt::Display for TunnelDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The VXLAN header for `vni` (flags = I, reserved bits zero).
#[inline]
pub fn vxlan_header(vni: u32) -> [u8; VXLAN_HDR_LEN] {
    let v = (vni & MAX_VNI).to_be_bytes();
    [VXLAN_FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Reads a VXLAN header: the VNI and the inner frame. Reserved bits are ignored on receipt
/// (RFC 7348 section 5); a header without the I flag carries no VNI and is refused.
#[inline]
pub fn parse_vxlan(payload: &[u8]) -> Result<(u32, &[u8]), TunnelDrop> {
    if payload.len() < VXLAN_HDR_LEN + ETH_HLEN {
        return Err(TunnelDrop::Truncated);
    }
    if payload[0] & VXLAN_FLAG_I == 0 {
        return Err(TunnelDrop::BadFlags);
    }
    let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    Ok((vni, &payload[VXLAN_HDR_LEN..]))
}

/// A datagram accepted by [`decap`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decapped {
    /// Its VNI.
    pub vni: u32,
    /// The local VLAN the VNI maps to (the tag now on the frame).
    pub local_vlan: u16,
    /// Inner source MAC (to learn behind the sending VTEP).
    pub inner_src: MacAddr,
}

/// Decapsulates a VXLAN payload from `remote` into `out` as the frame the pipeline expects from
/// the tunnel port: the inner frame with an 802.1Q tag carrying the network's local VLAN.
/// `vlan_of_vni` maps a VNI to its local VLAN; `is_peer` says whether `remote` is a tunnel peer.
pub fn decap(
    payload: &[u8],
    remote: IpAddr,
    is_peer: impl Fn(IpAddr) -> bool,
    vlan_of_vni: impl Fn(u32) -> Option<u16>,
    out: &mut Vec<u8>,
) -> Result<Decapped, TunnelDrop> {
    let (d, inner) = accept(payload, remote, is_peer, vlan_of_vni)?;
    push_tagged(inner, d.local_vlan, out);
    Ok(d)
}

/// [`decap`]'s checks without the copy: what the datagram is and its untagged inner frame,
/// for a caller that copies it once, where it is going (the software GRO buffer).
pub fn accept(
    payload: &[u8],
    remote: IpAddr,
    is_peer: impl Fn(IpAddr) -> bool,
    vlan_of_vni: impl Fn(u32) -> Option<u16>,
) -> Result<(Decapped, &[u8]), TunnelDrop> {
    if !is_peer(remote) {
        return Err(TunnelDrop::UnknownPeer);
    }
    let (vni, inner) = parse_vxlan(payload)?;
    let local_vlan = vlan_of_vni(vni).ok_or(TunnelDrop::UnknownVni)?;
    let ethertype = u16::from_be_bytes([inner[12], inner[13]]);
    if matches!(ethertype, TPID_8021Q | TPID_8021AD | TPID_9100) {
        return Err(TunnelDrop::InnerTagged);
    }
    let mut src = [0u8; 6];
    src.copy_from_slice(&inner[6..12]);
    let inner_src = MacAddr(src);
    if inner_src.is_multicast() {
        return Err(TunnelDrop::InnerMulticastSource);
    }
    let d = Decapped {
        vni,
        local_vlan,
        inner_src,
    };
    Ok((d, inner))
}

/// Writes `inner` into `out` with an 802.1Q tag of `vlan` after its MAC addresses.
pub fn push_tagged(inner: &[u8], vlan: u16, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(inner.len() + 4);
    out.extend_from_slice(&inner[..12]);
    out.extend_from_slice(&TPID_8021Q.to_be_bytes());
    out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    out.extend_from_slice(&inner[12..]);
}

/// Writes `[VXLAN header(vni) | inner]` into `out` (the UDP payload to send).
#[inline]
pub fn encap(vni: u32, inner: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(VXLAN_HDR_LEN + inner.len());
    out.extend_from_slice(&vxlan_header(vni));
    out.extend_from_slice(inner);
}

/// Where an encapsulated frame goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TunnelDest {
    /// The VTEP the destination MAC was learned behind.
    Unicast(IpAddr),
    /// Every peer (broadcast, multicast, unknown unicast), as the OVS agent's flood-to-tunnels
    /// table does without l2population.
    Flood,
}

/// One learned (VNI, MAC) -> VTEP entry, for `weft ctl`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FdbEntry {
    /// VNI.
    pub vni: u32,
    /// Inner MAC.
    pub mac: MacAddr,
    /// Remote VTEP.
    pub remote: IpAddr,
    /// Nanoseconds since last seen.
    pub age_ns: u64,
}

/// Learned inner MAC -> remote VTEP per VNI, with aging (the tunnel's MAC table). Bounded: when
/// full, new MACs are not learned and their frames flood, which stays correct.
#[derive(Debug, Clone)]
pub struct TunnelFdb {
    entries: HashMap<(u32, MacAddr), (IpAddr, u64)>,
    capacity: usize,
}

impl TunnelFdb {
    /// An empty table holding at most `capacity` entries.
    pub fn new(capacity: usize) -> TunnelFdb {
        TunnelFdb {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// True when learning `(vni, mac)` behind `remote` at `now` would change nothing but the
    /// timestamp (so a shell can take a read lock for the common case).
    pub fn is_current(&self, vni: u32, mac: MacAddr, remote: IpAddr) -> bool {
        self.entries
            .get(&(vni, mac))
            .is_some_and(|(r, _)| *r == remote)
    }

    /// Learns (or moves, or refreshes) `mac` of `vni` behind `remote`.
    pub fn learn(&mut self, vni: u32, mac: MacAddr, remote: IpAddr, now: u64) {
        if mac.is_multicast() {
            return;
        }
        let len = self.entries.len();
        match self.entries.get_mut(&(vni, mac)) {
            Some(e) => *e = (remote, now),
            None if len < self.capacity => {
                self.entries.insert((vni, mac), (remote, now));
            }
            None => {}
        }
    }

    /// The VTEP for `mac` in `vni`, unless unknown or older than `aging_ns`.
    pub fn lookup(&self, vni: u32, mac: MacAddr, now: u64, aging_ns: u64) -> Option<IpAddr> {
        self.entries
            .get(&(vni, mac))
            .filter(|(_, seen)| now.saturating_sub(*seen) < aging_ns)
            .map(|(r, _)| *r)
    }

    /// Where a frame for `dst` in `vni` goes.
    pub fn dest(&self, vni: u32, dst: MacAddr, now: u64, aging_ns: u64) -> TunnelDest {
        if dst.is_multicast() {
            return TunnelDest::Flood;
        }
        match self.lookup(vni, dst, now, aging_ns) {
            Some(r) => TunnelDest::Unicast(r),
            None => TunnelDest::Flood,
        }
    }

    /// Forgets entries older than `aging_ns`, and those whose VTEP is not in `keep_peer` or
    /// whose VNI is not in `keep_vni` (peers and networks removed by a reload). Returns how many.
    pub fn age(
        &mut self,
        now: u64,
        aging_ns: u64,
        keep_peer: impl Fn(IpAddr) -> bool,
        keep_vni: impl Fn(u32) -> bool,
    ) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(vni, _), (r, seen)| {
            now.saturating_sub(*seen) < aging_ns && keep_peer(*r) && keep_vni(*vni)
        });
        before - self.entries.len()
    }

    /// Fresh entries, sorted by (VNI, MAC).
    pub fn entries(&self, now: u64, aging_ns: u64) -> Vec<FdbEntry> {
        let mut v: Vec<FdbEntry> = self
            .entries
            .iter()
            .filter(|(_, (_, seen))| now.saturating_sub(*seen) < aging_ns)
            .map(|(&(vni, mac), &(remote, seen))| FdbEntry {
                vni,
                mac,
                remote,
                age_ns: now.saturating_sub(seen),
            })
            .collect();
        v.sort_by_key(|e| (e.vni, e.mac));
        v
    }

    /// Number of entries (fresh or not yet aged out).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use proptest::prelude::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));

    fn mac(b: u8) -> MacAddr {
        MacAddr([0xfa, 0x16, 0x3e, 0, 0, b])
    }

    fn inner() -> Vec<u8> {
        FrameBuilder::udp4(
            mac(1),
            mac(2),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            1000,
            2000,
        )
        .payload(100)
        .build()
    }

    fn vlan_of(vni: u32) -> Option<u16> {
        (vni == 1001).then_some(7)
    }

    fn is_peer(ip: IpAddr) -> bool {
        ip == PEER
    }

    #[test]
    fn header_layout_is_rfc7348() {
        assert_eq!(vxlan_header(1001), [0x08, 0, 0, 0, 0x00, 0x03, 0xe9, 0]);
        assert_eq!(vxlan_header(MAX_VNI), [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
        // Bits above 24 never leak into the reserved byte.
        assert_eq!(vxlan_header(0x0100_0001)[7], 0);
    }

    #[test]
    fn encap_then_decap_gives_the_tagged_inner_frame() {
        let f = inner();
        let mut wire = Vec::new();
        encap(1001, &f, &mut wire);
        assert_eq!(&wire[..8], &vxlan_header(1001));
        assert_eq!(&wire[8..], &f[..]);
        let mut out = Vec::new();
        let d = decap(&wire, PEER, is_peer, vlan_of, &mut out).unwrap();
        assert_eq!(
            d,
            Decapped {
                vni: 1001,
                local_vlan: 7,
                inner_src: mac(1)
            }
        );
        assert_eq!(&out[..12], &f[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x07]);
        assert_eq!(&out[16..], &f[12..]);
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let mut wire = Vec::new();
        encap(1001, &inner(), &mut wire);
        wire[0] |= 0xf7;
        wire[1] = 0xff;
        wire[7] = 0xff;
        let mut out = Vec::new();
        assert_eq!(
            decap(&wire, PEER, is_peer, vlan_of, &mut out).map(|d| d.vni),
            Ok(1001)
        );
    }

    #[test]
    fn bad_datagrams_are_refused_with_their_reason() {
        let mut out = Vec::new();
        let mut wire = Vec::new();
        encap(1001, &inner(), &mut wire);
        let d = |w: &[u8], from: IpAddr, out: &mut Vec<u8>| {
            decap(w, from, is_peer, vlan_of, out).map(|d| d.vni)
        };
        assert_eq!(d(&wire[..21], PEER, &mut out), Err(TunnelDrop::Truncated));
        assert_eq!(d(&[], PEER, &mut out), Err(TunnelDrop::Truncated));
        assert_eq!(d(&wire, OTHER, &mut out), Err(TunnelDrop::UnknownPeer));
        let mut noi = wire.clone();
        noi[0] = 0;
        assert_eq!(d(&noi, PEER, &mut out), Err(TunnelDrop::BadFlags));
        let mut other_vni = Vec::new();
        encap(1002, &inner(), &mut other_vni);
        assert_eq!(d(&other_vni, PEER, &mut out), Err(TunnelDrop::UnknownVni));
        for tpid in [TPID_8021Q, TPID_8021AD, TPID_9100] {
            let tagged = FrameBuilder::udp4(
                mac(1),
                mac(2),
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                1,
                2,
            )
            .vlan(tpid, 5)
            .build();
            encap(1001, &tagged, &mut wire);
            assert_eq!(d(&wire, PEER, &mut out), Err(TunnelDrop::InnerTagged));
        }
        let mut mcast = inner();
        mcast[6] = 0x01;
        encap(1001, &mcast, &mut wire);
        assert_eq!(
            d(&wire, PEER, &mut out),
            Err(TunnelDrop::InnerMulticastSource)
        );
    }

    #[test]
    fn fdb_learns_moves_ages_and_floods_the_unknown() {
        let aging = 300_000_000_000;
        let mut fdb = TunnelFdb::new(2);
        assert_eq!(fdb.dest(1001, mac(1), 0, aging), TunnelDest::Flood);
        fdb.learn(1001, mac(1), PEER, 10);
        assert!(fdb.is_current(1001, mac(1), PEER));
        assert!(!fdb.is_current(1001, mac(1), OTHER));
        assert_eq!(fdb.dest(1001, mac(1), 20, aging), TunnelDest::Unicast(PEER));
        // Per VNI: the same MAC in another VNI is unknown there.
        assert_eq!(fdb.dest(1002, mac(1), 20, aging), TunnelDest::Flood);
        assert_eq!(
            fdb.dest(1001, MacAddr::BROADCAST, 20, aging),
            TunnelDest::Flood
        );
        // Moves to another VTEP.
        fdb.learn(1001, mac(1), OTHER, 30);
        assert_eq!(fdb.lookup(1001, mac(1), 40, aging), Some(OTHER));
        // Group addresses are never learned; capacity bounds the table.
        fdb.learn(1001, MacAddr::BROADCAST, PEER, 30);
        fdb.learn(1001, mac(2), PEER, 30);
        fdb.learn(1001, mac(3), PEER, 30);
        assert_eq!(fdb.len(), 2);
        assert_eq!(fdb.lookup(1001, mac(3), 40, aging), None);
        // Stale entries are not used, then aged out.
        assert_eq!(fdb.lookup(1001, mac(2), 30 + aging, aging), None);
        assert_eq!(fdb.age(30 + aging, aging, |_| true, |_| true), 2);
        assert!(fdb.is_empty());
        // A removed peer's entries go at once.
        fdb.learn(1001, mac(1), PEER, 0);
        fdb.learn(1001, mac(2), OTHER, 0);
        assert_eq!(fdb.age(1, aging, |r| r == PEER, |_| true), 1);
        assert_eq!(
            fdb.entries(1, aging),
            vec![FdbEntry {
                vni: 1001,
                mac: mac(1),
                remote: PEER,
                age_ns: 1
            }]
        );
        assert_eq!(fdb.age(1, aging, |_| true, |v| v != 1001), 1);
    }

    proptest! {
        #[test]
        fn decap_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..200),
                              known in any::<bool>()) {
            let mut out = Vec::new();
            let from = if known { PEER } else { OTHER };
            if let Ok(d) = decap(&payload, from, is_peer, |v| Some((v & 0xfff) as u16), &mut out) {
                // Accepted: the output is the inner frame plus exactly one tag.
                prop_assert_eq!(out.len(), payload.len() - VXLAN_HDR_LEN + 4);
                prop_assert_eq!(d.local_vlan, (d.vni & 0xfff) as u16);
                prop_assert!(known);
            }
        }

        #[test]
        fn encap_decap_roundtrip(vni in 0u32..=MAX_VNI,
                                 body in proptest::collection::vec(any::<u8>(), 14..300)) {
            let mut body = body;
            body[6] &= 0xfe; // unicast source
            body[12] = 0x08; // untagged IPv4 ethertype
            body[13] = 0x00;
            let mut wire = Vec::new();
            encap(vni, &body, &mut wire);
            let (v, inner) = parse_vxlan(&wire).unwrap();
            prop_assert_eq!(v, vni);
            prop_assert_eq!(inner, &body[..]);
        }
    }
}
