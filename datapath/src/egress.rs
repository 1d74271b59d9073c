//! Applying an [`EgressEdit`] to a frame, keeping a virtio-net header consistent.

use crate::frame::{TPID_8021AD, TPID_8021Q, TPID_9100};
use crate::offload::VirtioNetHdr;
use crate::verdict::EgressEdit;

/// Why an edit could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Shorter than an Ethernet header (+ tag).
    #[error("frame too short for the edit")]
    Truncated,
    /// Strip/rewrite asked for an untagged frame.
    #[error("frame has no VLAN tag")]
    NoTag,
    /// The vnet header offsets point into the removed tag.
    #[error("virtio-net header offsets inside the VLAN tag")]
    BadVnetHdr,
}

fn has_tag(frame: &[u8]) -> bool {
    frame.len() >= 18 && {
        let t = u16::from_be_bytes([frame[12], frame[13]]);
        t == TPID_8021Q || t == TPID_8021AD || t == TPID_9100
    }
}

fn shift(v: u16, grow: bool) -> Option<u16> {
    if grow {
        v.checked_add(4)
    } else {
        v.checked_sub(4)
    }
}

fn fix_vnet(hdr: Option<&mut VirtioNetHdr>, grow: bool) -> Result<(), EditError> {
    let Some(h) = hdr else { return Ok(()) };
    if h.needs_csum() {
        if !grow && h.csum_start < 18 {
            return Err(EditError::BadVnetHdr);
        }
        h.csum_start = shift(h.csum_start, grow).ok_or(EditError::BadVnetHdr)?;
    }
    if h.hdr_len != 0 {
        if !grow && h.hdr_len < 18 {
            return Err(EditError::BadVnetHdr);
        }
        h.hdr_len = shift(h.hdr_len, grow).ok_or(EditError::BadVnetHdr)?;
    }
    Ok(())
}

/// Appends `frame` with `edit` applied to `out`. When the frame carries a virtio-net header
/// (passed separately as `vnet`), its `csum_start`/`hdr_len` are moved by the 4 bytes a tag push or
/// strip adds/removes, so checksum and GSO offloads stay valid.
pub fn apply_edit(
    edit: EgressEdit,
    frame: &[u8],
    vnet: Option<&mut VirtioNetHdr>,
    out: &mut Vec<u8>,
) -> Result<(), EditError> {
    if frame.len() < 14 {
        return Err(EditError::Truncated);
    }
    match edit {
        EgressEdit::Keep => out.extend_from_slice(frame),
        EgressEdit::PushTag(vid) => {
            fix_vnet(vnet, true)?;
            out.reserve(frame.len() + 4);
            out.extend_from_slice(&frame[..12]);
            out.extend_from_slice(&TPID_8021Q.to_be_bytes());
            out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
            out.extend_from_slice(&frame[12..]);
        }
        EgressEdit::StripTag => {
            if !has_tag(frame) {
                return Err(EditError::NoTag);
            }
            fix_vnet(vnet, false)?;
            out.extend_from_slice(&frame[..12]);
            out.extend_from_slice(&frame[16..]);
        }
        EgressEdit::RewriteVid(vid) => {
            if !has_tag(frame) {
                return Err(EditError::NoTag);
            }
            let start = out.len();
            out.extend_from_slice(frame);
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            let tci = (tci & 0xf000) | (vid & 0x0fff);
            out[start + 14..start + 16].copy_from_slice(&tci.to_be_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::VIRTIO_NET_HDR_F_NEEDS_CSUM;

    fn frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f
    }

    #[test]
    fn push_strip_rewrite_roundtrip() {
        let f = frame();
        let mut h = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            hdr_len: 54,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let mut tagged = Vec::new();
        apply_edit(EgressEdit::PushTag(100), &f, Some(&mut h), &mut tagged).unwrap();
        assert_eq!(tagged.len(), 64);
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&tagged[16..], &f[12..]);
        assert_eq!((h.csum_start, h.hdr_len), (38, 58));
        let mut rewritten = Vec::new();
        let mut t2 = tagged.clone();
        t2[14] |= 0xe0; // PCP 7 is kept by a rewrite
        apply_edit(EgressEdit::RewriteVid(200), &t2, None, &mut rewritten).unwrap();
        assert_eq!(
            u16::from_be_bytes([rewritten[14], rewritten[15]]),
            0xe000 | 200
        );
        let mut back = Vec::new();
        apply_edit(EgressEdit::StripTag, &tagged, Some(&mut h), &mut back).unwrap();
        assert_eq!(back, f);
        assert_eq!((h.csum_start, h.hdr_len), (34, 54));
        let mut o = Vec::new();
        assert_eq!(
            apply_edit(EgressEdit::StripTag, &f, None, &mut o),
            Err(EditError::NoTag)
        );
        assert_eq!(
            apply_edit(EgressEdit::Keep, &f[..10], None, &mut o),
            Err(EditError::Truncated)
        );
        let mut bad = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 14,
            ..Default::default()
        };
        assert_eq!(
            apply_edit(EgressEdit::StripTag, &tagged, Some(&mut bad), &mut o),
            Err(EditError::BadVnetHdr)
        );
    }
}
