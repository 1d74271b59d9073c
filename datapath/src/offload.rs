//! virtio-net header and the offloads the switch completes in software when a destination cannot
//! take them: CHECKSUM_PARTIAL -> full checksum, and GSO (TCPv4/TCPv6 TSO, UDP_L4) -> segments.
//! Pure functions over byte slices; an 802.1Q tag in front of the IP header is fine.

use crate::csum;
use crate::frame::{FrameView, IPPROTO_TCP, IPPROTO_UDP, L3};
use std::net::IpAddr;
use std::ops::Range;

/// `flags`: the checksum from csum_start to the end must be completed.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum has been validated.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: not a GSO frame.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCPv4 TSO.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UFO (IP fragmentation of a UDP datagram; not supported here).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCPv6 TSO.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation (USO, Linux UDP_SEGMENT).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: ECN (CWR seen).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// Errors of the offload functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Buffer shorter than the header or the offsets it names.
    #[error("truncated")]
    Truncated,
    /// Offsets or types that do not match the frame.
    #[error("malformed offload request")]
    Malformed,
    /// A GSO type this switch does not segment (UFO).
    #[error("unsupported GSO type {0}")]
    Unsupported(u8),
}

/// `struct virtio_net_hdr` (10 bytes) / `virtio_net_hdr_mrg_rxbuf` (12 bytes), little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VirtioNetHdr {
    /// NEEDS_CSUM / DATA_VALID.
    pub flags: u8,
    /// GSO type (+ ECN bit).
    pub gso_type: u8,
    /// Length of the headers (Ethernet to L4 inclusive); a hint.
    pub hdr_len: u16,
    /// Segment payload size (MSS).
    pub gso_size: u16,
    /// Where checksumming starts (offset from the Ethernet header).
    pub csum_start: u16,
    /// Where to store the checksum, relative to csum_start.
    pub csum_offset: u16,
    /// Only in the 12-byte form.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Size of the basic header.
    pub const LEN: usize = 10;
    /// Size with `num_buffers` (IFF_VNET_HDR with TUNSETVNETHDRSZ 12, virtio 1.0).
    pub const LEN_MRG: usize = 12;

    /// Parses a header of `len` bytes (10 or 12) from the start of `b`.
    pub fn parse(b: &[u8], len: usize) -> Result<VirtioNetHdr, OffloadError> {
        if len != Self::LEN && len != Self::LEN_MRG {
            return Err(OffloadError::Malformed);
        }
        if b.len() < len {
            return Err(OffloadError::Truncated);
        }
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: if len == Self::LEN_MRG { u(10) } else { 0 },
        })
    }

    /// Writes the header as `len` (10 or 12) bytes at the start of `out`.
    pub fn write(&self, out: &mut [u8], len: usize) -> Result<(), OffloadError> {
        if len != Self::LEN && len != Self::LEN_MRG {
            return Err(OffloadError::Malformed);
        }
        if out.len() < len {
            return Err(OffloadError::Truncated);
        }
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        if len == Self::LEN_MRG {
            out[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        }
        Ok(())
    }

    /// The header as bytes (10 or 12).
    pub fn to_vec(&self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        // Only fails for a bad len, where an empty header is the honest answer.
        if self.write(&mut v, len).is_err() {
            v.clear();
        }
        v
    }

    /// CHECKSUM_PARTIAL: the receiver must complete the checksum.
    pub fn needs_csum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// A GSO frame (must be segmented for a destination without the offload).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !VIRTIO_NET_HDR_GSO_ECN != VIRTIO_NET_HDR_GSO_NONE
    }
}

/// Segments produced by [`gso_segment`], stored back to back in one reusable buffer.
#[derive(Default, Debug, Clone)]
pub struct Segments {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Segments {
    /// An empty set.
    pub fn new() -> Segments {
        Segments::default()
    }
    /// Forget previous segments (keeps capacity).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ranges.clear();
    }
    /// Number of segments.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    /// No segments.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// Segment `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.ranges.get(i).map(|r| &self.buf[r.clone()])
    }
    /// All segments in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|r| &self.buf[r.clone()])
    }
}

/// End of the IP packet (excluding Ethernet padding), from the parsed view.
fn l3_end(frame: &[u8], v: &FrameView) -> Option<usize> {
    let l3 = v.l3_offset;
    match v.l3 {
        L3::Ipv4 { .. } => {
            let tot = usize::from(u16::from_be_bytes([
                *frame.get(l3 + 2)?,
                *frame.get(l3 + 3)?,
            ]));
            Some(l3 + tot)
        }
        L3::Ipv6 { .. } => {
            let pl = usize::from(u16::from_be_bytes([
                *frame.get(l3 + 4)?,
                *frame.get(l3 + 5)?,
            ]));
            if pl == 0 {
                Some(frame.len())
            } else {
                Some(l3 + 40 + pl)
            }
        }
        _ => None,
    }
}

/// Completes a CHECKSUM_PARTIAL frame in place: sums from `csum_start` to the end of the packet
/// (the field already holds the pseudo-header sum) and stores the complement at
/// `csum_start + csum_offset`, as Linux `skb_checksum_help` does. Clears NEEDS_CSUM.
pub fn complete_checksum(frame: &mut [u8], hdr: &mut VirtioNetHdr) -> Result<(), OffloadError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    let end = FrameView::parse(frame)
        .ok()
        .and_then(|v| l3_end(frame, &v))
        .unwrap_or(frame.len())
        .min(frame.len());
    if start >= end || at + 2 > end {
        return Err(OffloadError::Malformed);
    }
    let sum = csum::add(0, &frame[start..end]);
    let mut ck = !csum::fold(sum);
    if ck == 0 {
        ck = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&ck.to_be_bytes());
    hdr.flags &= !VIRTIO_NET_HDR_F_NEEDS_CSUM;
    Ok(())
}

/// Splits a GSO frame (TCPv4/TCPv6 TSO or UDP_L4) into frames carrying `gso_size` bytes of payload
/// each, appended to `out`. Each segment gets correct IP total/payload length, IPv4 id (+1 per
/// segment) and header checksum, TCP sequence number and full L4 checksum. TCP FIN/PSH stay only
/// on the last segment and CWR only on the first, as Linux does. A frame with no GSO type is
/// copied as one segment with its checksum completed.
pub fn gso_segment(
    frame: &[u8],
    hdr: &VirtioNetHdr,
    out: &mut Segments,
) -> Result<(), OffloadError> {
    segment_behind(frame, hdr, &[], &mut out.buf, &mut out.ranges)
}

/// [`gso_segment`] writing each segment behind a copy of `prefix` straight into `buf`, its
/// range (prefix excluded) appended to `ranges`: the VXLAN endpoint passes its header and
/// datagram arena, so that a segment is written once, where it is sent from, rather than
/// cut into a [`Segments`] and copied again. Nothing is appended on error.
pub(crate) fn segment_behind(
    frame: &[u8],
    hdr: &VirtioNetHdr,
    prefix: &[u8],
    buf: &mut Vec<u8>,
    ranges: &mut Vec<Range<usize>>,
) -> Result<(), OffloadError> {
    let ty = hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN;
    if ty == VIRTIO_NET_HDR_GSO_NONE {
        let before = buf.len();
        buf.extend_from_slice(prefix);
        let start = buf.len();
        buf.extend_from_slice(frame);
        let mut h = *hdr;
        let r = complete_checksum(&mut buf[start..], &mut h);
        if r.is_err() {
            buf.truncate(before);
            return r;
        }
        ranges.push(start..buf.len());
        return Ok(());
    }
    if ty == VIRTIO_NET_HDR_GSO_UDP {
        return Err(OffloadError::Unsupported(ty));
    }
    if ty != VIRTIO_NET_HDR_GSO_TCPV4
        && ty != VIRTIO_NET_HDR_GSO_TCPV6
        && ty != VIRTIO_NET_HDR_GSO_UDP_L4
    {
        return Err(OffloadError::Unsupported(ty));
    }
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::Malformed);
    }
    let v = FrameView::parse(frame).map_err(|_| OffloadError::Malformed)?;
    let (src, dst, proto, is_v4) = match v.l3 {
        L3::Ipv4 { src, dst, proto } => (IpAddr::V4(src), IpAddr::V4(dst), proto, true),
        L3::Ipv6 { src, dst, proto } => (IpAddr::V6(src), IpAddr::V6(dst), proto, false),
        _ => return Err(OffloadError::Malformed),
    };
    match (ty, proto, is_v4) {
        (VIRTIO_NET_HDR_GSO_TCPV4, IPPROTO_TCP, true)
        | (VIRTIO_NET_HDR_GSO_TCPV6, IPPROTO_TCP, false)
        | (VIRTIO_NET_HDR_GSO_UDP_L4, IPPROTO_UDP, _) => {}
        _ => return Err(OffloadError::Malformed),
    }
    let l3 = v.l3_offset;
    let l4 = v.l4_offset;
    if l4 == 0 {
        return Err(OffloadError::Malformed);
    }
    let end = l3_end(frame, &v)
        .ok_or(OffloadError::Malformed)?
        .min(frame.len());
    let l4_hdr = if proto == IPPROTO_TCP {
        let off = usize::from(*frame.get(l4 + 12).ok_or(OffloadError::Truncated)? >> 4) * 4;
        if off < 20 {
            return Err(OffloadError::Malformed);
        }
        off
    } else {
        8
    };
    let hdrs_end = l4 + l4_hdr;
    if hdrs_end > end {
        return Err(OffloadError::Truncated);
    }
    let payload = &frame[hdrs_end..end];
    let n = payload.len().div_ceil(mss).max(1);
    let ip_id0 = if is_v4 {
        u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]])
    } else {
        0
    };
    let seq0 = if proto == IPPROTO_TCP {
        u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]])
    } else {
        0
    };
    let flags0 = if proto == IPPROTO_TCP {
        frame[l4 + 13]
    } else {
        0
    };
    let ihl = if is_v4 {
        usize::from(frame[l3] & 0x0f) * 4
    } else {
        0
    };
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        buf.extend_from_slice(prefix);
        let start = buf.len();
        buf.extend_from_slice(&frame[..hdrs_end]);
        buf.extend_from_slice(chunk);
        let seg = &mut buf[start..];
        let l4_len = l4_hdr + chunk.len();
        if is_v4 {
            let tot = (hdrs_end - l3 + chunk.len()) as u16;
            seg[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
            seg[l3 + 4..l3 + 6].copy_from_slice(&ip_id0.wrapping_add(i as u16).to_be_bytes());
            seg[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let ck = csum::checksum(&seg[l3..l3 + ihl]);
            seg[l3 + 10..l3 + 12].copy_from_slice(&ck.to_be_bytes());
        } else {
            let pl = (hdrs_end - l3 - 40 + chunk.len()) as u16;
            seg[l3 + 4..l3 + 6].copy_from_slice(&pl.to_be_bytes());
        }
        let ck_at = if proto == IPPROTO_TCP {
            let seq = seq0.wrapping_add((i * mss) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let mut fl = flags0;
            if i + 1 < n {
                fl &= !(0x01 | 0x08); // FIN, PSH only on the last segment
            }
            if i > 0 {
                fl &= !0x80; // CWR only on the first
            }
            seg[l4 + 13] = fl;
            l4 + 16
        } else {
            seg[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4 + 6
        };
        seg[ck_at..ck_at + 2].copy_from_slice(&[0, 0]);
        let sum = csum::add(
            csum::pseudo_header(src, dst, proto, l4_len as u32),
            &seg[l4..l4 + l4_len],
        );
        let mut ck = !csum::fold(sum);
        if proto == IPPROTO_UDP && ck == 0 {
            ck = 0xffff;
        }
        seg[ck_at..ck_at + 2].copy_from_slice(&ck.to_be_bytes());
        ranges.push(start..buf.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = VirtioNetHdr {
            flags: 1,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        };
        let b = h.to_vec(12);
        assert_eq!(VirtioNetHdr::parse(&b, 12).unwrap(), h);
        let b10 = h.to_vec(10);
        assert_eq!(b10.len(), 10);
        assert_eq!(
            VirtioNetHdr::parse(&b10, 10).unwrap(),
            VirtioNetHdr {
                num_buffers: 0,
                ..h
            }
        );
        assert_eq!(
            VirtioNetHdr::parse(&b10[..9], 10),
            Err(OffloadError::Truncated)
        );
        assert_eq!(VirtioNetHdr::parse(&b10, 11), Err(OffloadError::Malformed));
        assert!(h.is_gso() && h.needs_csum());
    }
}
