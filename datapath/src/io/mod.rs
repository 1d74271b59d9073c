//! The switch's I/O shells: taps through /dev/net/tun with vnet headers, and
//! existing netdevs through AF_PACKET with a memory-mapped rx ring. All
//! syscalls (and all `unsafe`) live in [`sys`]; the rest is safe glue that
//! moves frames in batches between the kernel and the sans-IO core.
//!
//! ```text
//!   tap fd ──read──┐                          ┌──writev──> tap fd
//!                  ├─> [vnet hdr|frame] batch ─┤
//!   AF_PACKET ring ┘   (VLAN tag re-inserted)  └─sendmmsg─> AF_PACKET
//! ```

pub mod sys;
pub mod tunnel;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::VirtioNetHdr;

pub use sys::VNET_HDR_LEN;

/// TUN_F_* offloads a tap announces: the namespace/guest side may then send
/// CHECKSUM_PARTIAL and TSO (64 KiB) frames, and accepts them from us.
pub const TAP_OFFLOADS: u32 =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// Largest frame we accept from a port: a 64 KiB GSO frame plus a tag.
pub const MAX_FRAME: usize = 65536 + 4 + 14;

/// A tap weft created and owns (kind = "tap").
pub struct TapPort {
    fd: OwnedFd,
    name: String,
}

impl TapPort {
    /// Creates (or attaches to) tap `name` with vnet headers and offloads on.
    pub fn create(name: &str) -> io::Result<TapPort> {
        let fd = sys::open_tap(name, TAP_OFFLOADS)?;
        // Up in our namespace; whoever moves it to another netns sets it up there.
        let _ = sys::set_link_up(name);
        Ok(TapPort {
            fd,
            name: name.to_string(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one `[vnet hdr | frame]` into `buf`; None when nothing is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match sys::read(self.fd.as_raw_fd(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one frame: its vnet header then the frame's parts.
    pub fn send(&self, parts: &[&[u8]]) -> io::Result<()> {
        sys::writev(self.fd.as_raw_fd(), parts).map(|_| ())
    }
}

/// Rx ring geometry for AF_PACKET ports.
#[derive(Debug, Clone, Copy)]
pub struct PacketConfig {
    /// Use PACKET_VNET_HDR so GSO/partial-checksum frames cross whole.
    pub vnet_hdr: bool,
    /// Ring slots.
    pub frames: u32,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            vnet_hdr: true,
            frames: 256,
        }
    }
}

/// An existing netdev attached through AF_PACKET (kind = "system", physnet uplinks).
pub struct PacketPort {
    fd: OwnedFd,
    ifindex: u32,
    ring: Mutex<sys::RxRing>,
    name: String,
    vnet_hdr: bool,
    mtu: u32,
}

impl PacketPort {
    /// Attaches to netdev `name`; fails with NotFound when it does not exist.
    pub fn open(name: &str, cfg: PacketConfig) -> io::Result<PacketPort> {
        let ifindex = sys::if_index(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no netdev named {name}"))
        })?;
        let _ = sys::set_link_up(name);
        let mtu = sys::link_mtu(name).unwrap_or(1500);
        // With vnet headers GSO frames arrive whole, so a slot must hold 64 KiB;
        // without, a slot holds one MTU-sized frame (rounded to pages).
        let need = if cfg.vnet_hdr {
            MAX_FRAME + 128
        } else {
            mtu as usize + 18 + 128
        };
        let frame_size = need.div_ceil(4096) * 4096;
        let frames = if cfg.vnet_hdr {
            cfg.frames.min(64)
        } else {
            cfg.frames
        };
        let (fd, ring) = sys::open_packet(
            ifindex,
            sys::PacketOpts {
                vnet_hdr: cfg.vnet_hdr,
                frame_size: frame_size as u32,
                frame_nr: frames,
            },
        )?;
        Ok(PacketPort {
            fd,
            ifindex,
            ring: Mutex::new(ring),
            name: name.to_string(),
            vnet_hdr: cfg.vnet_hdr,
            mtu,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether frames carry a vnet header on this socket.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Whether the netdev this socket is bound to is still there under its
    /// name (it may have been deleted, or deleted and re-created).
    pub fn still_attached(&self) -> bool {
        sys::if_index(&self.name) == Some(self.ifindex)
    }

    /// Clears a pending socket error (e.g. ENETDOWN after a link flap).
    pub fn take_error(&self) -> Option<io::Error> {
        sys::take_socket_error(self.fd.as_raw_fd())
    }

    /// The netdev's MTU (for deciding when to segment).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Drains up to `max` frames from the ring into `f(vnet, frame)`, where
    /// `frame` has the kernel-stripped VLAN tag put back. `f` gets None for
    /// frames that were truncated.
    pub fn drain(
        &self,
        max: usize,
        scratch: &mut Vec<u8>,
        mut f: impl FnMut(Option<(&[u8], &[u8])>),
    ) -> usize {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.drain(max, |fr| {
            if fr.truncated || fr.data.len() < 12 {
                f(None);
                return;
            }
            let vnet = fr.vnet.unwrap_or(&[0u8; VNET_HDR_LEN]);
            match fr.vlan_tci {
                None => f(Some((vnet, fr.data))),
                Some(tci) => {
                    let vb = reinsert_tag(vnet, fr.data, fr.vlan_tpid, tci, scratch);
                    f(Some((&vb, scratch)))
                }
            }
        })
    }

    /// Frames the kernel dropped because the rx ring was full, since the last
    /// call: the switch did not drain the ring fast enough.
    pub fn take_ring_drops(&self) -> u64 {
        sys::packet_ring_drops(self.fd.as_raw_fd())
    }

    /// Sends frames (each as [vnet hdr, mac hdr, tag, rest] slices; the
    /// vnet slice is left out by the caller when the socket has none).
    pub fn send_batch(&self, frames: &[[&[u8]; 4]]) -> (usize, usize) {
        sys::send_batch(self.fd.as_raw_fd(), frames)
    }
}

/// A port's I/O, whatever its kind.
pub enum PortIo {
    /// A tap we own.
    Tap(TapPort),
    /// An AF_PACKET-attached netdev.
    Packet(PacketPort),
    /// The VXLAN endpoint's UDP socket.
    Tunnel(tunnel::TunnelPort),
}

impl PortIo {
    /// The fd to poll for input.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            PortIo::Tap(t) => t.fd.as_raw_fd(),
            PortIo::Packet(p) => p.fd.as_raw_fd(),
            PortIo::Tunnel(t) => t.raw_fd(),
        }
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        match self {
            PortIo::Tap(t) => t.name(),
            PortIo::Packet(p) => p.name(),
            PortIo::Tunnel(t) => t.name(),
        }
    }
}

/// True when netdev `name` exists in our namespace.
pub fn netdev_exists(name: &str) -> bool {
    sys::if_index(name).is_some()
}

pub use sys::NetdevProbe;

/// Puts back the 802.1Q tag the kernel moved into the packet metadata
/// (`tp_vlan_tci`): writes the tagged frame into `out` and returns the vnet
/// header adjusted for it. The kernel reports checksum/GSO offsets for the
/// untagged frame, so they move by the 4 bytes put back.
pub fn reinsert_tag(
    vnet: &[u8],
    data: &[u8],
    tpid: u16,
    tci: u16,
    out: &mut Vec<u8>,
) -> [u8; VNET_HDR_LEN] {
    let mut hdr = VirtioNetHdr::parse(vnet, VNET_HDR_LEN).unwrap_or_default();
    if hdr.needs_csum() {
        hdr.csum_start = hdr.csum_start.saturating_add(4);
    }
    if hdr.hdr_len != 0 {
        hdr.hdr_len = hdr.hdr_len.saturating_add(4);
    }
    let mut vb = [0u8; VNET_HDR_LEN];
    // Cannot fail: the buffer has the header's length.
    let _ = hdr.write(&mut vb, VNET_HDR_LEN);
    out.clear();
    let split = data.len().min(12);
    out.extend_from_slice(&data[..split]);
    out.extend_from_slice(&tpid.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&data[split..]);
    vb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::VIRTIO_NET_HDR_F_NEEDS_CSUM;

    #[test]
    fn reinserted_tag_moves_offload_offsets() {
        let mut frame = vec![0u8; 60];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: crate::offload::VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let mut vb = [0u8; VNET_HDR_LEN];
        hdr.write(&mut vb, VNET_HDR_LEN).unwrap();
        let mut out = Vec::new();
        let nb = reinsert_tag(&vb, &frame, 0x8100, 0x2064, &mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&out[16..], &frame[12..]);
        let h = VirtioNetHdr::parse(&nb, VNET_HDR_LEN).unwrap();
        assert_eq!(
            (h.csum_start, h.hdr_len, h.gso_size, h.csum_offset),
            (38, 58, 1448, 16)
        );
        // No offload requested: offsets stay zero.
        let nb = reinsert_tag(&[0; VNET_HDR_LEN], &frame, 0x88a8, 5, &mut out);
        assert_eq!(nb, [0; VNET_HDR_LEN]);
        assert_eq!(&out[12..16], &[0x88, 0xa8, 0, 5]);
    }
}
