//! Software GRO for frames that reach the switch already cut to the wire's MTU (the VXLAN
//! endpoint's datagrams): consecutive TCP/IPv4 segments of one flow are merged back into one
//! GSO frame with a virtio-net header, so that the switch and the receiving tap handle one
//! 64 KiB frame instead of ~45. Pure code over byte slices; the tunnel shell feeds it.
//!
//! Rules, as Linux's TCP GRO keeps them: only in-order segments with the same L2 header,
//! addresses, ports, ACK, window, TTL/TOS and TCP options; only pure ACK segments (PSH ends a
//! frame; SYN, FIN, RST, URG, ECE, CWR never merge); a segment shorter than the first ends
//! the frame; at most 64 segments and 65535 bytes of IP packet. Every segment's TCP checksum
//! is verified before it merges (the merged frame goes on with CHECKSUM_PARTIAL, so a bad one
//! would otherwise be blessed); a segment that fails is passed on as it is.

use std::net::{IpAddr, Ipv4Addr};

use crate::csum;
use crate::offload::{VirtioNetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4};

/// Most segments merged into one frame.
const MAX_SEGS: u16 = 64;

/// TCP flags byte: ACK and PSH are the only flags a mergeable segment may carry.
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Offsets and keys of one TCP/IPv4 segment, computed once.
#[derive(Clone, Copy)]
struct Seg {
    /// IPv4 header offset (after Ethernet and any 802.1Q tags).
    l3: usize,
    /// TCP header offset.
    l4: usize,
    /// End of the TCP header (payload offset).
    hdr_end: usize,
    /// End of the IP packet (Ethernet padding excluded).
    end: usize,
    seq: u32,
    flags: u8,
}

impl Seg {
    fn payload(&self) -> usize {
        self.end - self.hdr_end
    }
}

/// Parses a mergeable segment: TCP over IPv4 without fragmentation, ACK (PSH allowed), with
/// payload and a valid checksum.
fn parse(f: &[u8]) -> Option<Seg> {
    let mut l3 = 14;
    let mut ty = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    while ty == 0x8100 || ty == 0x88a8 {
        ty = u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?]);
        l3 += 4;
    }
    let ip = f.get(l3..l3 + 20)?;
    if ty != 0x0800 || ip[0] >> 4 != 4 || ip[9] != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    // MF or a fragment offset: not a whole segment.
    if ihl < 20 || frag & 0x3fff != 0 || l3 + total > f.len() || total < ihl + 20 {
        return None;
    }
    let l4 = l3 + ihl;
    let end = l3 + total;
    let doff = usize::from(f[l4 + 12] >> 4) * 4;
    let flags = f[l4 + 13];
    if doff < 20 || l4 + doff >= end || flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    let sum = csum::add(
        csum::pseudo_header(
            src_ip(f, l3).into(),
            dst_ip(f, l3).into(),
            6,
            (end - l4) as u32,
        ),
        &f[l4..end],
    );
    if csum::fold(sum) != 0xffff {
        return None;
    }
    Some(Seg {
        l3,
        l4,
        hdr_end: l4 + doff,
        end,
        seq: u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]),
        flags,
    })
}

fn src_ip(f: &[u8], l3: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[l3 + 12], f[l3 + 13], f[l3 + 14], f[l3 + 15])
}

fn dst_ip(f: &[u8], l3: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[l3 + 16], f[l3 + 17], f[l3 + 18], f[l3 + 19])
}

/// Bytes kept free in front of the pending frame, for an 802.1Q tag put in at the end.
const HEAD: usize = 4;

/// The frame being merged: the first segment's headers and every merged payload.
#[derive(Default)]
pub struct TcpGro {
    /// [`HEAD`] free bytes, then the frame as offered (untagged when `tag` is set).
    buf: Vec<u8>,
    /// The 802.1Q tag (VLAN id) the merged frame gets in front of its ethertype.
    tag: Option<u16>,
    first: Option<Seg>,
    /// Payload size of the first segment: the merged frame's MSS.
    mss: usize,
    next_seq: u32,
    segs: u16,
    /// PSH or a short segment seen: nothing more may follow.
    closed: bool,
    psh: bool,
}

impl TcpGro {
    /// Nothing pending.
    pub fn new() -> TcpGro {
        TcpGro::default()
    }

    /// True while no frame is pending.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Takes `frame` into the pending one (or starts one with it): true when taken. False
    /// when it cannot follow what is pending, or is no mergeable segment; the caller then
    /// [`finish`](Self::finish)es the pending frame and offers it again, or passes it on.
    pub fn offer(&mut self, frame: &[u8]) -> bool {
        self.offer_tagged(frame, None)
    }

    /// [`offer`](Self::offer) for an untagged frame that leaves with an 802.1Q tag of `tag`
    /// (the VXLAN endpoint's decapsulated frames get their network's local VLAN): the tag is
    /// put in when the frame is finished, so that each datagram's inner frame is copied
    /// once, straight from the receive buffer. Frames with different tags never merge.
    pub fn offer_tagged(&mut self, frame: &[u8], tag: Option<u16>) -> bool {
        let Some(s) = parse(frame) else { return false };
        let Some(first) = self.first else {
            self.buf.clear();
            self.buf.resize(HEAD, 0);
            self.buf.extend_from_slice(&frame[..s.end]);
            self.tag = tag;
            self.first = Some(s);
            self.mss = s.payload();
            self.next_seq = s.seq.wrapping_add(s.payload() as u32);
            self.segs = 1;
            self.psh = s.flags & TCP_PSH != 0;
            self.closed = self.psh;
            return true;
        };
        if self.closed
            || tag != self.tag
            || self.segs >= MAX_SEGS
            || s.seq != self.next_seq
            || s.payload() > self.mss
            || self.buf.len() - HEAD - first.l3 + s.payload() > 65535
            || !self.same_flow(&first, frame, &s)
        {
            return false;
        }
        self.buf.extend_from_slice(&frame[s.hdr_end..s.end]);
        self.next_seq = s.seq.wrapping_add(s.payload() as u32);
        self.segs += 1;
        self.psh = s.flags & TCP_PSH != 0;
        self.closed = self.psh || s.payload() < self.mss;
        true
    }

    /// Same headers but for what differs between segments of one send: IP total length,
    /// id and checksum; TCP sequence number, checksum and PSH.
    fn same_flow(&self, first: &Seg, f: &[u8], s: &Seg) -> bool {
        let b = &self.buf[HEAD..];
        if (s.l3, s.l4, s.hdr_end) != (first.l3, first.l4, first.hdr_end) {
            return false;
        }
        let (l3, l4) = (s.l3, s.l4);
        b[..l3] == f[..l3]
            && b[l3..l3 + 2] == f[l3..l3 + 2] // version, IHL, TOS
            && b[l3 + 6..l3 + 10] == f[l3 + 6..l3 + 10] // flags/fragment, TTL, protocol
            && b[l3 + 12..l4] == f[l3 + 12..l4] // addresses, options
            && b[l4..l4 + 4] == f[l4..l4 + 4] // ports
            && b[l4 + 8..l4 + 13] == f[l4 + 8..l4 + 13] // ack, data offset
            && b[l4 + 14..l4 + 16] == f[l4 + 14..l4 + 16] // window
            && b[l4 + 18..s.hdr_end] == f[l4 + 18..s.hdr_end] // urgent pointer, options
    }

    /// Ends the pending frame and hands it out with its virtio-net header: a lone segment as
    /// it came (no offload asked), several as one TCPv4 GSO frame with a partial checksum;
    /// tagged if it was offered with a tag.
    pub fn finish(&mut self) -> Option<(VirtioNetHdr, &[u8])> {
        let s = self.first.take()?;
        let b = &mut self.buf;
        if self.segs > 1 {
            fix_headers(&mut b[HEAD..], &s, self.psh);
        }
        // The tag goes between the MAC addresses and the ethertype: the addresses move into
        // the free bytes in front, and every later header is 4 bytes further in.
        let (start, shift) = match self.tag {
            Some(vlan) => {
                b.copy_within(HEAD..HEAD + 12, 0);
                b[12..14].copy_from_slice(&crate::frame::TPID_8021Q.to_be_bytes());
                b[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
                (0, HEAD)
            }
            None => (HEAD, 0),
        };
        if self.segs == 1 {
            return Some((VirtioNetHdr::default(), &self.buf[start..]));
        }
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: (s.hdr_end + shift) as u16,
            gso_size: self.mss as u16,
            csum_start: (s.l4 + shift) as u16,
            csum_offset: 16,
            num_buffers: 0,
        };
        Some((hdr, &self.buf[start..]))
    }
}

/// Makes the merged frame `b` (headers of segment `s`, every payload) one IP packet: total
/// length and header checksum, PSH if any segment had it, and the TCP checksum field set for
/// CHECKSUM_PARTIAL (the pseudo-header sum, not complemented).
fn fix_headers(b: &mut [u8], s: &Seg, psh: bool) {
    let (l3, l4) = (s.l3, s.l4);
    let total = (b.len() - l3) as u16;
    b[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    b[l3 + 10..l3 + 12].fill(0);
    let ipsum = csum::checksum(&b[l3..l4]);
    b[l3 + 10..l3 + 12].copy_from_slice(&ipsum.to_be_bytes());
    if psh {
        b[l4 + 13] |= TCP_PSH;
    }
    let pseudo = csum::pseudo_header(
        IpAddr::V4(src_ip(b, l3)),
        IpAddr::V4(dst_ip(b, l3)),
        6,
        (b.len() - l4) as u32,
    );
    b[l4 + 16..l4 + 18].copy_from_slice(&csum::fold(pseudo).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{FrameBuilder, SpecL4};
    use crate::offload::{gso_segment, Segments};
    use crate::MacAddr;

    /// A TSO frame of `payload` bytes (ACK|PSH) and its vnet header, optionally tagged.
    fn tso(payload: usize, tag: Option<u16>, sport: u16) -> (Vec<u8>, VirtioNetHdr) {
        tso_mss(payload, tag, sport, 1398)
    }

    fn tso_mss(payload: usize, tag: Option<u16>, sport: u16, mss: u16) -> (Vec<u8>, VirtioNetHdr) {
        let mut b = FrameBuilder::ip(
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            SpecL4::Tcp {
                sport,
                dport: 5201,
                flags: TCP_ACK | TCP_PSH,
            },
        )
        .payload(payload);
        if let Some(v) = tag {
            b = b.dot1q(v);
        }
        let l3 = if tag.is_some() { 18 } else { 14 };
        let f = b.build();
        let h = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: (l3 + 40) as u16,
            gso_size: mss,
            csum_start: (l3 + 20) as u16,
            csum_offset: 16,
            num_buffers: 0,
        };
        (f, h)
    }

    fn segments(f: &[u8], h: &VirtioNetHdr) -> Vec<Vec<u8>> {
        let mut s = Segments::new();
        gso_segment(f, h, &mut s).unwrap();
        s.iter().map(<[u8]>::to_vec).collect()
    }

    /// Feeds `segs` as the tunnel shell does; returns what it hands on, cut up again.
    fn merge_all(segs: &[Vec<u8>]) -> (usize, Vec<Vec<u8>>) {
        let mut g = TcpGro::new();
        let mut out: Vec<(VirtioNetHdr, Vec<u8>)> = Vec::new();
        for s in segs {
            if !g.offer(s) {
                if let Some((h, f)) = g.finish() {
                    out.push((h, f.to_vec()));
                }
                if !g.offer(s) {
                    out.push((VirtioNetHdr::default(), s.clone()));
                }
            }
        }
        if let Some((h, f)) = g.finish() {
            out.push((h, f.to_vec()));
        }
        let frames = out.len();
        let mut again = Vec::new();
        for (h, f) in out {
            if h.is_gso() {
                again.extend(segments(&f, &h));
            } else {
                again.push(f);
            }
        }
        (frames, again)
    }

    #[test]
    fn segments_of_one_tso_frame_merge_back_into_it() {
        for tag in [None, Some(7)] {
            let (f, h) = tso(60_000, tag, 40000);
            let segs = segments(&f, &h);
            assert_eq!(segs.len(), 43);
            let (frames, again) = merge_all(&segs);
            assert_eq!(frames, 1, "tag {tag:?}");
            assert_eq!(
                again, segs,
                "tag {tag:?}: merged frame cuts into other segments"
            );
        }
    }

    #[test]
    fn merged_frame_has_the_gso_header_and_fixed_ip_header() {
        let (f, h) = tso(10 * 1398, None, 40000);
        let segs = segments(&f, &h);
        let mut g = TcpGro::new();
        assert!(segs.iter().all(|s| g.offer(s)));
        let (mh, m) = g.finish().unwrap();
        assert_eq!(m.len(), f.len());
        assert_eq!((mh.gso_type, mh.gso_size, mh.hdr_len), (1, 1398, 54));
        assert_eq!((mh.csum_start, mh.csum_offset), (34, 16));
        assert_eq!(u16::from_be_bytes([m[16], m[17]]) as usize, f.len() - 14);
        assert_eq!(csum::checksum(&m[14..34]), 0, "IP header checksum");
        // Completing the partial checksum (what a NIC or the receiving kernel does) gives the
        // whole packet's valid TCP checksum.
        let (mut full, mut fh) = (m.to_vec(), mh);
        crate::complete_checksum(&mut full, &mut fh).unwrap();
        let ip = |o: usize| {
            IpAddr::V4(Ipv4Addr::new(
                full[o],
                full[o + 1],
                full[o + 2],
                full[o + 3],
            ))
        };
        let pseudo = csum::pseudo_header(ip(26), ip(30), 6, (full.len() - 34) as u32);
        assert_eq!(
            csum::fold(csum::add(pseudo, &full[34..])),
            0xffff,
            "TCP checksum"
        );
        assert!(g.is_empty() && g.finish().is_none());
    }

    #[test]
    fn what_may_not_merge_is_passed_on_unchanged_and_in_order() {
        let (f, h) = tso(6 * 1398, None, 40000);
        let segs = segments(&f, &h);
        // Out of order: the run breaks where the sequence jumps.
        let mut swapped = segs.clone();
        swapped.swap(2, 3);
        let (frames, again) = merge_all(&swapped);
        assert!(frames >= 3, "{frames}");
        assert_eq!(again, swapped);
        // Another flow in between: three runs.
        let (f2, h2) = tso(3 * 1398, None, 40001);
        let other = segments(&f2, &h2);
        let mut mixed = segs[..3].to_vec();
        mixed.push(other[0].clone());
        mixed.extend_from_slice(&segs[3..]);
        let (frames, again) = merge_all(&mixed);
        assert_eq!(frames, 3);
        assert_eq!(again, mixed);
        // A corrupted payload byte (bad TCP checksum) never merges: the receiver drops it.
        let mut bad = segs.clone();
        let last = bad[1].len() - 1;
        bad[1][last] ^= 0xff;
        let (frames, again) = merge_all(&bad);
        assert_eq!(frames, 3);
        assert_eq!(again, bad);
        // Not TCP, or a SYN: passed on as is.
        let udp = FrameBuilder::udp4(
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            MacAddr([0xfa, 0x16, 0x3e, 0, 0, 2]),
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            1,
            2,
        )
        .payload(100)
        .build();
        assert!(!TcpGro::new().offer(&udp));
        let mut syn = segs[0].clone();
        syn[14 + 20 + 13] = 0x02;
        assert!(!TcpGro::new().offer(&syn));
        // A lone segment comes out as it went in, with no offload asked.
        let mut g = TcpGro::new();
        assert!(g.offer(&segs[0]));
        let (lh, lone) = g.finish().unwrap();
        assert_eq!((lh, lone), (VirtioNetHdr::default(), &segs[0][..]));
    }

    /// Untagged segments offered with a tag merge into exactly the frame that the same
    /// segments, tagged beforehand, merge into (the tag is put in at the end); a lone one
    /// comes out tagged too, and segments of one flow under two tags never merge.
    #[test]
    fn a_tag_put_in_at_the_end_gives_the_frame_tagged_beforehand() {
        let (f, h) = tso(20 * 1398 + 100, None, 40000);
        let segs = segments(&f, &h);
        let (ft, ht) = tso(20 * 1398 + 100, Some(42), 40000);
        let tagged = segments(&ft, &ht);
        let (mut a, mut b) = (TcpGro::new(), TcpGro::new());
        assert!(segs.iter().all(|s| a.offer_tagged(s, Some(42))));
        assert!(tagged.iter().all(|s| b.offer(s)));
        let (ha, ma) = a.finish().unwrap();
        let (hb, mb) = b.finish().unwrap();
        assert_eq!((ha, ma), (hb, mb));
        assert_eq!(segments(ma, &ha), tagged);
        // A lone segment: tagged, no offload.
        assert!(a.offer_tagged(&segs[0], Some(42)));
        let (hl, lone) = a.finish().unwrap();
        assert_eq!((hl, lone), (VirtioNetHdr::default(), &tagged[0][..]));
        // Another tag (another network) right after: a new frame, never a merge.
        assert!(a.offer_tagged(&segs[0], Some(42)));
        assert!(!a.offer_tagged(&segs[1], Some(43)));
        assert!(!a.offer_tagged(&segs[1], None));
        assert!(a.offer_tagged(&segs[1], Some(42)));
    }

    #[test]
    fn at_most_64_segments_merge() {
        let (f, h) = tso_mss(60_000, None, 40000, 536);
        let segs = segments(&f, &h);
        assert_eq!(segs.len(), 112);
        let mut g = TcpGro::new();
        let taken = segs.iter().take_while(|s| g.offer(s)).count();
        assert_eq!(taken, 64);
        let (frames, again) = merge_all(&segs);
        assert_eq!(frames, 2);
        assert_eq!(again, segs);
    }
}
