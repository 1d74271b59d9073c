//! Frames in and out of a guest's split virtqueues, over guest memory the switch has mapped:
//! the part of a vhost-user port that knows the virtio-net wire format and nothing of sockets,
//! so that it is tested on queues built in plain memory (see the tests below).
//!
//! ```text
//!   TX queue (guest -> switch): [virtio_net_hdr | frame] in one or more readable descriptors
//!       take_tx ──> RxBatch slot [weft vnet hdr (zeroed) | frame]
//!   RX queue (switch -> guest): writable buffers the guest posted
//!       put_rx  <── frame; header with num_buffers, spread over several buffers with MRG_RXBUF
//! ```
//!
//! The first 10 bytes of the guest's header are weft's vnet header (flags, GSO type and
//! size, checksum offsets): with checksum/TSO offloads negotiated they cross as they are,
//! both ways, as with a tap; without, the guest's is ignored (zeroed) and the guest gets a
//! zeroed one (but for `num_buffers`).

use std::io::{Read, Write};

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use crate::io::VNET_HDR_LEN;

/// The guest's memory as the vhost-user backend maps it (no dirty-page bitmap: no live
/// migration through the switch).
pub(crate) type GuestMem = GuestMemoryMmap<()>;

/// Most buffers one received frame may take with MRG_RXBUF: a 64 KiB frame over 1.5 KiB
/// buffers (the smallest a Linux guest posts) takes 43.
const MAX_RX_BUFFERS: usize = 64;

/// The guest's virtio-net header with `num_buffers` (`virtio_net_hdr_mrg_rxbuf`); weft's own
/// batches carry the 10-byte one ([`VNET_HDR_LEN`]), as taps do.
const MODERN_HDR_LEN: usize = 12;

/// The shortest frame taken from a guest: an Ethernet header.
const MIN_FRAME: usize = 14;

/// Length of the virtio-net header in the guest's buffers: 12 bytes (with `num_buffers`)
/// under VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF, the legacy 10 otherwise.
pub(crate) fn guest_hdr_len(acked_features: u64) -> usize {
    let modern = 1u64 << VIRTIO_F_VERSION_1 | 1u64 << VIRTIO_NET_F_MRG_RXBUF;
    if acked_features & modern != 0 {
        MODERN_HDR_LEN
    } else {
        VNET_HDR_LEN
    }
}

/// Why a frame did not reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RxError {
    /// The guest has not posted enough receive buffers (it is not reading, or is slow).
    NoBuffers,
    /// The frame does not fit the buffers (without MRG_RXBUF, one buffer must hold it).
    TooBig,
    /// A descriptor points outside the guest's memory: the guest's bug; the buffer is
    /// returned unused.
    BadDescriptor,
}

/// Takes the guest's next TX chain into `slot` as `[weft's 10-byte vnet header | frame]` and
/// returns the chain to the guest at once (used, length 0: nothing was written to it). The
/// header is the guest's with `keep_hdr` (offloads negotiated), else zeroed. None when the
/// queue is empty; Some(Err) for a chain that held no usable frame (too short, too long for
/// the slot, or outside guest memory).
pub(crate) fn take_tx(
    q: &mut Queue,
    mem: &GuestMem,
    hdr_len: usize,
    keep_hdr: bool,
    slot: &mut [u8],
) -> Option<Result<usize, ()>> {
    let chain = q.pop_descriptor_chain(mem)?;
    let head = chain.head_index();
    let got = read_frame(chain, mem, hdr_len, keep_hdr, slot);
    // A used ring outside guest memory is the guest's bug; its frames still count.
    let _ = q.add_used(mem, head, 0);
    Some(got)
}

fn read_frame(
    chain: virtio_queue::DescriptorChain<&GuestMem>,
    mem: &GuestMem,
    hdr_len: usize,
    keep_hdr: bool,
    slot: &mut [u8],
) -> Result<usize, ()> {
    let mut rd = chain.reader(mem).map_err(|_| ())?;
    let flen = rd.available_bytes().checked_sub(hdr_len).ok_or(())?;
    if flen < MIN_FRAME || VNET_HDR_LEN + flen > slot.len() {
        return Err(());
    }
    let mut hdr = [0u8; MODERN_HDR_LEN];
    rd.read_exact(&mut hdr[..hdr_len]).map_err(|_| ())?;
    if keep_hdr {
        slot[..VNET_HDR_LEN].copy_from_slice(&hdr[..VNET_HDR_LEN]);
    } else {
        slot[..VNET_HDR_LEN].fill(0);
    }
    rd.read_exact(&mut slot[VNET_HDR_LEN..VNET_HDR_LEN + flen])
        .map_err(|_| ())?;
    Ok(VNET_HDR_LEN + flen)
}

/// Writes `frame` into the guest's RX queue behind a virtio-net header of `hdr_len` bytes
/// (`vnet`, weft's 10 bytes, then `num_buffers`):
/// into one posted buffer, or with `mergeable` (MRG_RXBUF) over as many as it takes, the
/// header's `num_buffers` saying how many. The buffers are returned to the guest (used ring)
/// only once the whole frame is in; on any error none is, and the queue is left as it was.
/// The caller signals the guest once per batch.
pub(crate) fn put_rx(
    q: &mut Queue,
    mem: &GuestMem,
    hdr_len: usize,
    mergeable: bool,
    vnet: &[u8; VNET_HDR_LEN],
    frame: &[u8],
) -> Result<(), RxError> {
    let mut used = [(0u16, 0u32); MAX_RX_BUFFERS];
    let mut n = 0usize;
    let mut done = 0usize;
    let mut first = None;
    // With VERSION_1 the field is there even without MRG_RXBUF, and must say 1.
    let mut hdr = [0u8; MODERN_HDR_LEN];
    hdr[..VNET_HDR_LEN].copy_from_slice(vnet);
    hdr[10] = 1;
    let fail = |q: &mut Queue, popped: usize, e: RxError| {
        for _ in 0..popped {
            q.go_to_previous_position();
        }
        Err(e)
    };
    loop {
        let Some(chain) = q.pop_descriptor_chain(mem) else {
            return fail(q, n, RxError::NoBuffers);
        };
        let head = chain.head_index();
        if n == 0 {
            first = Some(chain.clone());
        }
        let Ok(mut w) = chain.writer(mem) else {
            return fail(q, n + 1, RxError::BadDescriptor);
        };
        let mut len = 0usize;
        if n == 0 {
            if w.available_bytes() < hdr_len || w.write_all(&hdr[..hdr_len]).is_err() {
                return fail(q, 1, RxError::TooBig);
            }
            len = hdr_len;
        }
        let take = w.available_bytes().min(frame.len() - done);
        if w.write_all(&frame[done..done + take]).is_err() {
            return fail(q, n + 1, RxError::BadDescriptor);
        }
        done += take;
        len += take;
        used[n] = (head, len as u32);
        n += 1;
        if done == frame.len() {
            break;
        }
        if !mergeable || n == MAX_RX_BUFFERS || take == 0 {
            return fail(q, n, RxError::TooBig);
        }
    }
    if n > 1 && hdr_len == MODERN_HDR_LEN {
        // Only now is the count known: rewrite the header in the first buffer.
        hdr[10..12].copy_from_slice(&(n as u16).to_le_bytes());
        let rewritten = first
            .and_then(|c| c.writer(mem).ok())
            .is_some_and(|mut w| w.write_all(&hdr).is_ok());
        if !rewritten {
            return fail(q, n, RxError::BadDescriptor);
        }
    }
    for &(head, len) in &used[..n] {
        if q.add_used(mem, head, len).is_err() {
            // The used ring is outside guest memory: nothing more can be returned.
            return Err(RxError::BadDescriptor);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const Z: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
    const WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
    const NEXT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;

    fn memory() -> GuestMem {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
    }

    /// Chains of descriptors (address, length, flags), one chain per inner list, posted in
    /// order on a fresh 64-entry queue.
    fn queue_with<'a>(
        mem: &'a GuestMem,
        chains: &[&[(u64, u32, u16)]],
    ) -> (MockSplitQueue<'a, GuestMem>, Queue) {
        let vq = MockSplitQueue::new(mem, 64);
        let mut descs = Vec::new();
        for chain in chains {
            for (i, &(addr, len, flags)) in chain.iter().enumerate() {
                let next = if i + 1 < chain.len() { NEXT } else { 0 };
                let idx = (descs.len() + 1) as u16;
                descs.push(RawDescriptor::from(SplitDescriptor::new(
                    addr,
                    len,
                    flags | next,
                    if next != 0 { idx } else { 0 },
                )));
            }
        }
        vq.build_multiple_desc_chains(&descs).unwrap();
        let q: Queue = vq.create_queue().unwrap();
        (vq, q)
    }

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn header_length_follows_the_negotiated_features() {
        assert_eq!(guest_hdr_len(0), 10);
        assert_eq!(guest_hdr_len(1 << VIRTIO_F_VERSION_1), 12);
        assert_eq!(guest_hdr_len(1 << VIRTIO_NET_F_MRG_RXBUF), 12);
    }

    #[test]
    fn a_tx_chain_becomes_a_batch_frame_with_a_zeroed_header() {
        let mem = memory();
        let f = frame(100);
        // The guest's header (with garbage flags: no offload was negotiated) in one
        // descriptor, the frame split over two more.
        mem.write_slice(&[0xff; 12], GuestAddress(0x10_0000))
            .unwrap();
        mem.write_slice(&f[..40], GuestAddress(0x20_0000)).unwrap();
        mem.write_slice(&f[40..], GuestAddress(0x30_0000)).unwrap();
        let (vq, mut q) = queue_with(
            &mem,
            &[&[(0x10_0000, 12, 0), (0x20_0000, 40, 0), (0x30_0000, 60, 0)]],
        );
        let mut slot = vec![0xaa; crate::io::RX_SLOT];
        let got = take_tx(&mut q, &mem, 12, false, &mut slot).unwrap();
        assert_eq!(got, Ok(VNET_HDR_LEN + 100));
        // Returned to the guest at once, with nothing written.
        let elem = vq.used().ring().ref_at(0).unwrap().load();
        assert_eq!((vq.used().idx().load(), elem.id(), elem.len()), (1, 0, 0));
        assert_eq!(&slot[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&slot[VNET_HDR_LEN..VNET_HDR_LEN + 100], &f[..]);
        assert!(take_tx(&mut q, &mem, 12, false, &mut slot).is_none());
    }

    #[test]
    fn with_offloads_the_guests_header_crosses_both_ways() {
        let mem = memory();
        let f = frame(200);
        // NEEDS_CSUM, GSO TCPv4, hdr_len 54, gso_size 1448, csum_start 34, csum_offset 16.
        let vnet = [1u8, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0];
        mem.write_slice(&vnet, GuestAddress(0x10_0000)).unwrap();
        mem.write_slice(&[9, 9], GuestAddress(0x10_0000 + 10))
            .unwrap();
        mem.write_slice(&f, GuestAddress(0x10_0000 + 12)).unwrap();
        let (_vq, mut q) = queue_with(&mem, &[&[(0x10_0000, 212, 0)], &[(0x10_0000, 212, 0)]]);
        let mut slot = vec![0; crate::io::RX_SLOT];
        assert_eq!(take_tx(&mut q, &mem, 12, true, &mut slot), Some(Ok(210)));
        assert_eq!(&slot[..VNET_HDR_LEN], &vnet);
        assert_eq!(&slot[VNET_HDR_LEN..210], &f[..]);
        // Without offloads the same chain's header is ignored.
        assert_eq!(take_tx(&mut q, &mem, 12, false, &mut slot), Some(Ok(210)));
        assert_eq!(&slot[..VNET_HDR_LEN], &Z);
        // Towards the guest: the header given, then num_buffers.
        let (_vq, mut q) = queue_with(&mem, &[&[(0x20_0000, 4096, WRITE)]]);
        put_rx(&mut q, &mem, 12, true, &vnet, &f).unwrap();
        let mut hdr = [0u8; 12];
        mem.read_slice(&mut hdr, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(&hdr[..10], &vnet);
        assert_eq!(&hdr[10..], &[1, 0]);
    }

    #[test]
    fn runt_tx_chains_are_refused_but_returned() {
        let mem = memory();
        let (vq, mut q) = queue_with(
            &mem,
            &[
                &[(0x10_0000, 12 + 13, 0)],
                &[(0x20_0000, 8, 0)],
                &[(0x2000_0000, 100, 0)],
            ],
        );
        let mut slot = vec![0; crate::io::RX_SLOT];
        for _ in 0..3 {
            assert_eq!(take_tx(&mut q, &mem, 12, false, &mut slot), Some(Err(())));
        }
        assert_eq!(vq.used().idx().load(), 3);
        // A legacy 10-byte header leaves 15 bytes of frame: taken.
        let (_vq, mut q) = queue_with(&mem, &[&[(0x10_0000, 25, 0)]]);
        assert_eq!(
            take_tx(&mut q, &mem, 10, false, &mut slot),
            Some(Ok(VNET_HDR_LEN + 15))
        );
    }

    #[test]
    fn a_frame_fills_one_rx_buffer_with_num_buffers_one() {
        let mem = memory();
        let (vq, mut q) = queue_with(&mem, &[&[(0x10_0000, 2048, WRITE)]]);
        let f = frame(1514);
        put_rx(&mut q, &mem, 12, true, &Z, &f).unwrap();
        let mut hdr = [0u8; 12];
        mem.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(hdr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let mut back = vec![0u8; 1514];
        mem.read_slice(&mut back, GuestAddress(0x10_0000 + 12))
            .unwrap();
        assert_eq!(back, f);
        // The used ring holds (head 0, 12 + 1514 bytes).
        let used = vq.used();
        assert_eq!(used.idx().load(), 1);
        let elem = used.ring().ref_at(0).unwrap().load();
        assert_eq!((elem.id(), elem.len()), (0, 1526));
        // No buffer left: refused, and the queue is as it was.
        assert_eq!(
            put_rx(&mut q, &mem, 12, true, &Z, &f),
            Err(RxError::NoBuffers)
        );
        assert_eq!(used.idx().load(), 1);
    }

    #[test]
    fn a_large_frame_spreads_over_mergeable_buffers() {
        let mem = memory();
        let (vq, mut q) = queue_with(
            &mem,
            &[
                &[(0x10_0000, 1000, WRITE)],
                &[(0x20_0000, 1000, WRITE)],
                &[(0x30_0000, 1000, WRITE)],
            ],
        );
        let f = frame(2500);
        put_rx(&mut q, &mem, 12, true, &Z, &f).unwrap();
        let mut hdr = [0u8; 12];
        mem.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 3);
        let mut got = vec![0u8; 988];
        mem.read_slice(&mut got, GuestAddress(0x10_0000 + 12))
            .unwrap();
        let mut rest = vec![0u8; 1000];
        mem.read_slice(&mut rest, GuestAddress(0x20_0000)).unwrap();
        got.extend_from_slice(&rest);
        let mut last = vec![0u8; 512];
        mem.read_slice(&mut last, GuestAddress(0x30_0000)).unwrap();
        got.extend_from_slice(&last);
        assert_eq!(got, f);
        let used = vq.used();
        assert_eq!(used.idx().load(), 3);
        let lens: Vec<u32> = (0..3)
            .map(|i| used.ring().ref_at(i).unwrap().load().len())
            .collect();
        assert_eq!(lens, vec![1000, 1000, 512]);
    }

    #[test]
    fn without_mergeable_buffers_a_frame_must_fit_one_and_nothing_is_consumed() {
        let mem = memory();
        let (vq, mut q) = queue_with(
            &mem,
            &[&[(0x10_0000, 1000, WRITE)], &[(0x20_0000, 2000, WRITE)]],
        );
        assert_eq!(
            put_rx(&mut q, &mem, 12, false, &Z, &frame(1500)),
            Err(RxError::TooBig)
        );
        assert_eq!(vq.used().idx().load(), 0);
        // Short of buffers with MRG_RXBUF: the two popped ones are given back too.
        assert_eq!(
            put_rx(&mut q, &mem, 12, true, &Z, &frame(5000)),
            Err(RxError::NoBuffers)
        );
        assert_eq!(vq.used().idx().load(), 0);
        // What fits still goes, into the first buffer again.
        put_rx(&mut q, &mem, 12, false, &Z, &frame(900)).unwrap();
        assert_eq!(vq.used().ring().ref_at(0).unwrap().load().id(), 0);
    }

    #[test]
    fn a_buffer_outside_guest_memory_is_refused() {
        let mem = memory();
        let (vq, mut q) = queue_with(&mem, &[&[(0x2000_0000, 2048, WRITE)]]);
        assert_eq!(
            put_rx(&mut q, &mem, 12, true, &Z, &frame(100)),
            Err(RxError::BadDescriptor)
        );
        assert_eq!(vq.used().idx().load(), 0);
    }
}
