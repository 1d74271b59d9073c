//! The switch's I/O shells: taps through /dev/net/tun with vnet headers,
//! existing netdevs through AF_PACKET with a memory-mapped rx ring, the
//! VXLAN endpoint's UDP socket, and QEMU guests' virtio rings over vhost-user
//! ([`VhostUserPort`]), all behind one [`Port`] trait. All of weft's own
//! syscalls (and all its `unsafe`) live in io/sys*.rs ([`sys`], and
//! `sys_udpgso` for the VXLAN endpoint's UDP_SEGMENT sends, `sys_handover` for
//! passing ports to a successor switch, `sys_uring` for tap reads and writes batched through
//! io_uring (`[switch] io = "uring"`), `sys_vhost` for the
//! vhost-user socket's descriptor passing; the mappings of
//! guest memory are made by the rust-vmm crates); the rest is safe glue that
//! moves frames in batches between the kernel and the sans-IO core.
//!
//! ```text
//!   tap fd ──read──┐                            ┌──writev──> tap fd
//!   AF_PACKET ring ┼─> RxBatch [vnet hdr|frame] ─┼─sendmmsg─> AF_PACKET
//!   UDP (VXLAN) ───┘   (VLAN tag re-inserted)    └─sendmmsg─> UDP peers
//! ```

mod capture;
mod counters;
mod fault;
mod handover;
mod port;
pub mod sys;
mod sys_handover;
mod sys_udpgro;
mod sys_udpgso;
pub(crate) mod sys_uring;
mod sys_vhost;
pub mod tunnel;
mod vhost;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::{apply_edit, complete_checksum, gso_segment, EgressEdit, VirtioNetHdr};

pub use capture::{Capture, PcapWriter};
pub use counters::IoCounters;
pub use fault::{FaultConfig, FaultCounts, FaultInjector};
pub use handover::RingPosition;
pub(crate) use handover::{recv_with_fds, same_netdev, send_fds};
pub use port::{Port, PortCtx, RxBatch, RxStep, TxFrame, TxScratch, RX_BATCH, RX_SLOT};
pub use sys::VNET_HDR_LEN;
pub use vhost::VhostUserPort;

/// TUN_F_* offloads a tap announces: the namespace/guest side may then send
/// CHECKSUM_PARTIAL and TSO (64 KiB) frames, and accepts them from us.
pub(crate) const TAP_OFFLOADS: u32 =
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
    /// With `mac`, the kernel side of the tap (the VM's side) gets that
    /// address before it goes up.
    pub fn create(name: &str, mac: Option<[u8; 6]>) -> io::Result<TapPort> {
        let fd = sys::open_tap(name, TAP_OFFLOADS)?;
        // The kernel side starts with a random MAC, and once up it sends IPv6
        // DAD, MLD reports and router solicitations from it at once: each was
        // a mac_spoof drop on the port. So give it the port's MAC first.
        // (Only while the tap is down: a tap re-attached while up and in use
        // keeps the address its owner gave it.)
        if let Some(mac) = mac {
            if !sys::link_is_up(name).unwrap_or(true) {
                let _ = sys::set_link_mac(name, mac);
            }
        }
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
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match sys::read(self.fd.as_raw_fd(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes one frame: its vnet header then the frame's parts.
    pub fn write_frame(&self, parts: &[&[u8]]) -> io::Result<()> {
        sys::writev(self.fd.as_raw_fd(), parts).map(|_| ())
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
        let mut failed = None;
        // A tap hands over one frame per read, straight into the batch's buffer.
        batch.fill(|slot| match self.read_frame(slot) {
            Ok(Some(len)) if len > VNET_HDR_LEN => RxStep::Frame(len),
            Ok(Some(_)) => {
                ctx.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                RxStep::Skip
            }
            Ok(None) => RxStep::Empty,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => RxStep::Skip,
            Err(e) => {
                ctx.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                failed = Some(e);
                RxStep::Empty
            }
        });
        failed.map_or(Ok(()), Err)
    }

    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], s: &mut TxScratch) {
        let c = ctx.counters;
        for t in frames {
            let (vnet, frame) = batch.frame(t.index);
            // Tap to tap without a tag change (the common VM-to-VM case): no copy, the vnet
            // header (GSO, partial checksum) passes through as is.
            let sent = if t.edit == EgressEdit::Keep {
                self.write_frame(&[vnet, frame]).map(|()| frame.len())
            } else {
                let mut hdr = VirtioNetHdr::parse(vnet, VNET_HDR_LEN).unwrap_or_default();
                s.edited.clear();
                match apply_edit(t.edit, frame, Some(&mut hdr), &mut s.edited) {
                    Ok(()) => self
                        .write_frame(&[&hdr_bytes(&hdr), &s.edited])
                        .map(|()| s.edited.len()),
                    Err(_) => Err(io::Error::from(io::ErrorKind::InvalidData)),
                }
            };
            match sent {
                Ok(len) => {
                    c.tx_frames.fetch_add(1, Ordering::Relaxed);
                    c.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    c.tx_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn still_usable(&self) -> bool {
        // A tap fd reports errors only once its netdev is gone.
        false
    }

    fn tap_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

/// A vnet header as bytes.
pub(crate) fn hdr_bytes(h: &VirtioNetHdr) -> [u8; VNET_HDR_LEN] {
    let mut b = [0u8; VNET_HDR_LEN];
    // Only fails for a wrong length, and VNET_HDR_LEN is the right one.
    let _ = h.write(&mut b, VNET_HDR_LEN);
    b
}

/// Rx ring geometry for AF_PACKET ports.
#[derive(Debug, Clone, Copy)]
pub struct PacketConfig {
    /// Use PACKET_VNET_HDR so GSO/partial-checksum frames cross whole.
    pub vnet_hdr: bool,
    /// Ring slots, each sized for one MTU-sized frame (2 KiB up to MTU
    /// ~1900); larger frames go through the socket queue instead (see
    /// `sys::open_packet`).
    pub frames: u32,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            vnet_hdr: true,
            // 8 MiB of ring at MTU 1500: ~40 ms of 64-byte frames at 100 kpps.
            frames: 4096,
        }
    }
}

/// Ring blocks are this big (or one slot, when a slot is bigger).
const RING_BLOCK: usize = 128 * 1024;

/// Most memory an rx ring takes (jumbo MTUs get fewer, bigger slots).
const RING_MAX_BYTES: usize = 16 << 20;

/// (slot size, block size, slots) of the rx ring for a netdev of `mtu` when
/// `frames` slots are asked for: whole blocks, at most [`RING_MAX_BYTES`].
pub(crate) fn ring_geometry(mtu: u32, frames: u32) -> (usize, usize, u32) {
    let frame_size = ring_slot_size(mtu);
    let block_size = RING_BLOCK.max(frame_size);
    let per_block = (block_size / frame_size) as u32;
    let max = (RING_MAX_BYTES / frame_size) as u32;
    let frames = frames.clamp(per_block, max.max(per_block));
    (frame_size, block_size, frames / per_block * per_block)
}

/// Slot size for frames of up to `mtu` bytes of payload: the frame with a
/// tag, the tpacket2 header, sockaddr_ll and vnet header in front of it, as
/// a power of two (so that slots tile blocks exactly), at least 2 KiB.
pub(crate) fn ring_slot_size(mtu: u32) -> usize {
    (mtu as usize + 18 + 128).next_power_of_two().max(2048)
}

/// An existing netdev attached through AF_PACKET (kind = "system", physnet uplinks).
pub struct PacketPort {
    fd: OwnedFd,
    ifindex: u32,
    /// The ring, a buffer for frames too big for a slot, and one for re-tagged frames.
    ring: Mutex<(sys::RxRing, Vec<u8>, Vec<u8>)>,
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
        // A slot holds one MTU-sized frame; GSO frames (with vnet headers
        // they arrive whole, up to 64 KiB) come through the socket queue.
        let (frame_size, block_size, frames) = ring_geometry(mtu, cfg.frames);
        let (fd, ring) = sys::open_packet(
            ifindex,
            sys::PacketOpts {
                vnet_hdr: cfg.vnet_hdr,
                frame_size: frame_size as u32,
                frame_nr: frames,
                block_size: block_size as u32,
            },
        )?;
        Ok(PacketPort {
            fd,
            ifindex,
            ring: Mutex::new((
                ring,
                vec![0u8; MAX_FRAME + VNET_HDR_LEN + 64],
                Vec::with_capacity(MAX_FRAME),
            )),
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
    /// `frame` has the kernel-stripped VLAN tag put back. Frames too big for
    /// a slot are read whole from the socket queue. `f` gets None for frames
    /// that were truncated (too big, and the socket queue was full).
    pub fn drain(&self, max: usize, mut f: impl FnMut(Option<(&[u8], &[u8])>)) -> usize {
        let mut guard = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let (ring, big, scratch) = &mut *guard;
        let fd = self.fd.as_raw_fd();
        let vlen = if self.vnet_hdr { VNET_HDR_LEN } else { 0 };
        ring.drain(max, |fr| {
            let (vnet, data): (&[u8], &[u8]) = if fr.copied {
                // The queue holds exactly the frames whose slots say COPY, in
                // ring order, so this is this slot's frame; the length check
                // guards against reading another's.
                // A mismatch means an older copy was left behind (never seen
                // in practice): skip past it to this slot's frame.
                let mut got = None;
                for _ in 0..8 {
                    match sys::recv(fd, big) {
                        Ok(n) if n >= vlen && n - vlen == fr.len => {
                            got = Some(n);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                match got {
                    Some(n) if fr.len >= 12 => {
                        if vlen == 0 {
                            (&[0u8; VNET_HDR_LEN], &big[..n])
                        } else {
                            (&big[..vlen], &big[vlen..n])
                        }
                    }
                    _ => {
                        f(None);
                        return;
                    }
                }
            } else if fr.truncated || fr.data.len() < 12 {
                f(None);
                return;
            } else {
                (fr.vnet.unwrap_or(&[0u8; VNET_HDR_LEN]), fr.data)
            };
            match fr.vlan_tci {
                None => f(Some((vnet, data))),
                Some(tci) => {
                    let vb = reinsert_tag(vnet, data, fr.vlan_tpid, tci, scratch);
                    f(Some((&vb, &scratch[..])))
                }
            }
        })
    }

    /// Frames the kernel dropped because the rx ring was full, since the last
    /// call: the switch did not drain the ring fast enough.
    pub fn take_ring_drops(&self) -> u64 {
        sys::packet_ring_drops(self.fd.as_raw_fd())
    }
}

impl Port for PacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
        // The batch has room for `room()` frames of any size, so none is lost here.
        self.drain(batch.room(), |fr| match fr {
            Some((vnet, frame)) if batch.push(vnet, frame) => {}
            _ => {
                ctx.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(())
    }

    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], s: &mut TxScratch) {
        s.arena.clear();
        s.queue.clear();
        let mut dropped = 0u64;
        for t in frames {
            let (vnet, frame) = batch.frame(t.index);
            if self.queue_frame(vnet, frame, t.edit, s).is_err() {
                dropped += 1;
            }
        }
        let (sent, bytes) = sys::send_batch(self.fd.as_raw_fd(), &s.arena, &s.queue);
        let c = ctx.counters;
        c.tx_frames.fetch_add(sent as u64, Ordering::Relaxed);
        c.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        c.tx_dropped
            .fetch_add(dropped + (s.queue.len() - sent) as u64, Ordering::Relaxed);
    }

    fn still_usable(&self) -> bool {
        let _ = self.take_error();
        self.still_attached()
    }

    fn take_kernel_drops(&self) -> u64 {
        self.take_ring_drops()
    }

    fn ring_position(&self) -> Option<RingPosition> {
        Some(self.position())
    }
}

impl PacketPort {
    /// Appends one edited frame to the send arena: with its vnet header when the socket takes
    /// one, else segmented (GSO) or checksummed here, since the wire gets plain frames.
    fn queue_frame(
        &self,
        vnet: &[u8],
        frame: &[u8],
        edit: EgressEdit,
        s: &mut TxScratch,
    ) -> Result<(), ()> {
        let mut hdr = VirtioNetHdr::parse(vnet, VNET_HDR_LEN).unwrap_or_default();
        let start = s.arena.len();
        let vlen = if self.vnet_hdr { VNET_HDR_LEN } else { 0 };
        s.arena.resize(start + vlen, 0);
        if apply_edit(edit, frame, Some(&mut hdr), &mut s.arena).is_err() {
            s.arena.truncate(start);
            return Err(());
        }
        let body = start + vlen..s.arena.len();
        if self.vnet_hdr {
            s.arena[start..body.start].copy_from_slice(&hdr_bytes(&hdr));
        } else if hdr.is_gso() {
            // The socket takes no offload metadata: segment here.
            s.segs.clear();
            let ok = gso_segment(&s.arena[body.clone()], &hdr, &mut s.segs).is_ok();
            s.arena.truncate(start);
            if !ok {
                return Err(());
            }
            for seg in s.segs.iter() {
                let at = s.arena.len();
                s.arena.extend_from_slice(seg);
                s.queue.push((at..at, at..s.arena.len()));
            }
            return Ok(());
        } else if complete_checksum(&mut s.arena[body.clone()], &mut hdr).is_err() {
            s.arena.truncate(start);
            return Err(());
        }
        s.queue.push((start..body.start, body));
        Ok(())
    }
}

pub(crate) use sys::NetdevProbe;

/// Puts back the 802.1Q tag the kernel moved into the packet metadata
/// (`tp_vlan_tci`): writes the tagged frame into `out` and returns the vnet
/// header adjusted for it. The kernel reports checksum/GSO offsets for the
/// untagged frame, so they move by the 4 bytes put back.
pub(crate) fn reinsert_tag(
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
    fn ring_slots_fit_an_mtu_frame_and_tile_blocks() {
        // 1500: a 2 KiB slot holds tpacket2 hdr + sockaddr_ll + vnet hdr (76) + 1518.
        assert_eq!(ring_geometry(1500, 4096), (2048, 128 * 1024, 4096));
        assert_eq!(ring_geometry(1600, 4096).0, 2048);
        assert_eq!(ring_geometry(2000, 4096).0, 4096);
        // Jumbo frames: bigger slots, ring capped at 16 MiB.
        assert_eq!(ring_geometry(9000, 4096), (16384, 128 * 1024, 1024));
        // Few slots asked: still one whole block; odd counts round down to blocks.
        assert_eq!(ring_geometry(1500, 1), (2048, 128 * 1024, 64));
        assert_eq!(ring_geometry(1500, 100), (2048, 128 * 1024, 64));
        // An MTU bigger than a block: one slot per block.
        let (f, b, n) = ring_geometry(65535, 4);
        assert_eq!((f, b, n), (128 * 1024, 128 * 1024, 4));
        for mtu in [68u32, 576, 1280, 1500, 1600, 4000, 9000, 9216, 65535] {
            let (f, b, n) = ring_geometry(mtu, 4096);
            assert!(f >= mtu as usize + 18 + 76, "mtu {mtu}: slot {f}");
            assert_eq!(b % f, 0);
            assert_eq!(b % 4096, 0);
            assert_eq!(n as usize % (b / f), 0);
            assert!(n as usize * f <= RING_MAX_BYTES.max(b));
        }
    }

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
