//! [`Port`]: one trait for "a place frames come from and go to", whatever is behind it (a tap,
//! an AF_PACKET-attached netdev, the VXLAN endpoint's socket), so that the packet workers drive
//! every port the same way and wrappers ([`super::capture::Capture`],
//! [`super::fault::FaultInjector`]) work over any of them.
//!
//! After smoltcp's `phy::Device`, but batched: a port fills a worker's [`RxBatch`] with a
//! burst of frames (the batch lends its buffer, so a tap reads straight into it), the core
//! decides them, and the port gets back the frames it must send as [`TxFrame`]s, indices
//! into that same batch with the egress edit the pipeline chose. A frame that crosses the
//! switch unedited from tap to tap is never copied.
//!
//! ```text
//!   port.recv(ctx, batch) ──> [vnet|frame][vnet|frame]...  (RxBatch, per worker, reused)
//!                                   │ Worker::process / process_batch
//!                                   v
//!   dst.send(ctx, batch, [TxFrame { index, edit }, ...], scratch)   (one call per destination)
//! ```

use std::io;
use std::os::fd::RawFd;

use super::{IoCounters, MAX_FRAME, VNET_HDR_LEN};
use crate::{EgressEdit, PortNo, Segments, Snapshot};

/// Frames read from one port per round before moving on (fairness), and so the most frames
/// one round delivers to a VM back to back. 32, as OVS's NETDEV_MAX_BURST: a receiving VM's
/// UDP socket (208 KiB default buffer) holds only a few bursts of small frames, so a larger
/// burst overflows it before the VM gets the core back. One-host 64 B UDP over alternating
/// runs (benches/RESULTS.md): bursts of 64 had 27-30 % of delivered datagrams dropped for a
/// full socket and 92-98 kpps received, 128 had 38-39 % and 80-87, 32 had 9-19 % and 98-117;
/// 16 and 24 made the receiver sleep 3-7 times as often and received less. TCP was unchanged.
pub const RX_BATCH: usize = 32;

/// Room for one largest frame with its vnet header, 64-byte aligned.
pub const RX_SLOT: usize = (MAX_FRAME + VNET_HDR_LEN + 63) & !63;

/// What a port needs from the switch for one call: the running snapshot (the tunnel endpoint
/// maps local VLANs to VNIs with it), the time, and the counters of the port being called.
pub struct PortCtx<'a> {
    /// The pipeline snapshot the worker is running.
    pub snap: &'a Snapshot,
    /// Monotonic nanoseconds (the tunnel's FDB learns and ages with it).
    pub now_ns: u64,
    /// The port's shell counters (rx errors, tx frames/bytes/drops).
    pub counters: &'a IoCounters,
}

/// One frame to send: which frame of the [`RxBatch`] and the edit the pipeline chose for this
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFrame {
    /// The destination port (the worker groups a batch's outputs by it).
    pub port: PortNo,
    /// Index of the frame in the batch.
    pub index: usize,
    /// Tag change for this destination.
    pub edit: EgressEdit,
}

/// A port: the switch's view of one tap, netdev or tunnel socket.
///
/// Implementations count what only they can see (read errors, refused datagrams, frames sent
/// and lost on the way out) in [`PortCtx::counters`]; the worker counts the frames it takes
/// from [`Port::recv`].
pub trait Port: Send + Sync {
    /// The interface (or switch port) name.
    fn name(&self) -> &str;

    /// The fd the worker polls (level-triggered EPOLLIN) for input.
    fn raw_fd(&self) -> RawFd;

    /// Appends what is queued, up to the batch's room, to `batch`: each frame starts at the
    /// Ethernet header, with its virtio-net header beside it. `Err` means the port is gone
    /// (its netdev was deleted): the worker stops polling it and the monitor reopens it.
    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()>;

    /// Sends `frames` (all for this port) taken from `batch`, applying each one's edit and
    /// finishing offloads this port cannot take. Frames that cannot be sent are counted in
    /// `tx_dropped`, never reported as an error: one bad frame must not stop the rest.
    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], scratch: &mut TxScratch);

    /// True when the last [`recv`](Self::recv) stopped at the batch's room with frames it had
    /// already taken from the kernel (a tunnel socket's UDP_GRO message holds up to 64
    /// datagrams): the fd's readiness no longer says so, so the worker calls `recv` again.
    fn rx_pending(&self) -> bool {
        false
    }

    /// After EPOLLERR/EPOLLHUP: clears the error and answers whether the port is still worth
    /// polling (a tunnel socket's ICMP unreachable is transient; a tap's error is not).
    fn still_usable(&self) -> bool;

    /// Frames the kernel dropped before the switch read them, since the last call (an
    /// AF_PACKET rx ring that overflowed). Read when counters are shown.
    fn take_kernel_drops(&self) -> u64 {
        0
    }

    /// Drops this port counts by its own reasons (the tunnel endpoint's refused datagrams),
    /// as (reason name, count), only reasons with a count. Read when counters are shown.
    fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// A plain tap's fd, which a worker running `[switch] io = "uring"` reads and writes
    /// itself through its ring instead of calling `recv`/`send` (vnet header and frame are
    /// passed through as they are either way). None for every other port, and for wrappers
    /// (captures, fault injection), which must see each frame.
    fn tap_fd(&self) -> Option<RawFd> {
        None
    }

    /// An AF_PACKET port's rx ring position, which a switch restart with fd handover passes
    /// to the next process; None for ports without a ring.
    fn ring_position(&self) -> Option<super::RingPosition> {
        None
    }
}

/// Frames read from one port, `[vnet hdr | frame]` back to back in one buffer that each
/// worker allocates once. Reading a whole burst before processing it means the receiving
/// VM's socket gets the burst in one go (one wakeup of the reader for many frames) instead of
/// one frame per read/write round trip.
pub struct RxBatch {
    buf: Vec<u8>,
    /// (offset, length with the vnet header) of each frame.
    frames: Vec<(usize, usize)>,
    /// Where the next frame goes.
    end: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch::new()
    }
}

/// What one read into an [`RxBatch`] slot gave (see [`RxBatch::fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStep {
    /// A frame of this many bytes (vnet header included).
    Frame(usize),
    /// Nothing usable this time (a runt, EINTR): try again.
    Skip,
    /// The queue is empty (or the port failed): stop reading.
    Empty,
}

impl RxBatch {
    /// Room for [`RX_BATCH`] largest frames, so that a batch with fewer than [`RX_BATCH`]
    /// frames always has room for one more of any size.
    pub fn new() -> RxBatch {
        RxBatch {
            buf: vec![0u8; RX_BATCH * RX_SLOT],
            frames: Vec::with_capacity(RX_BATCH),
            end: 0,
        }
    }

    /// Forgets the frames (the buffer stays).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.end = 0;
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// True while another frame of any size fits.
    pub fn has_room(&self) -> bool {
        self.frames.len() < RX_BATCH && self.end + RX_SLOT <= self.buf.len()
    }

    /// Frames that may still be added.
    pub fn room(&self) -> usize {
        if self.has_room() {
            RX_BATCH - self.frames.len()
        } else {
            0
        }
    }

    /// Reads frames with `read` (which gets a slot for one largest frame with its vnet header)
    /// until it says the queue is empty, the batch is full, or [`RX_BATCH`] reads were tried.
    /// Returns the frames added.
    pub fn fill(&mut self, mut read: impl FnMut(&mut [u8]) -> RxStep) -> usize {
        let before = self.frames.len();
        let mut tries = 0;
        while self.has_room() && tries < RX_BATCH {
            tries += 1;
            match read(&mut self.buf[self.end..self.end + RX_SLOT]) {
                RxStep::Frame(len) => self.commit(len.min(RX_SLOT)),
                RxStep::Skip => {}
                RxStep::Empty => break,
            }
        }
        self.frames.len() - before
    }

    /// Copies one frame in (from a ring slot or a decapsulation buffer), with its vnet header
    /// (zero-padded or cut to [`VNET_HDR_LEN`]). False when the batch is full or the frame is
    /// larger than a slot.
    pub fn push(&mut self, vnet: &[u8], frame: &[u8]) -> bool {
        let len = VNET_HDR_LEN + frame.len();
        if !self.has_room() || len > RX_SLOT {
            return false;
        }
        let at = self.end;
        let v = vnet.len().min(VNET_HDR_LEN);
        self.buf[at..at + v].copy_from_slice(&vnet[..v]);
        self.buf[at + v..at + VNET_HDR_LEN].fill(0);
        self.buf[at + VNET_HDR_LEN..at + len].copy_from_slice(frame);
        self.commit(len);
        true
    }

    /// The whole buffer, for a ring that reads a burst straight into it (io/sys_uring.rs):
    /// slot `i` starts at `i * RX_SLOT`; [`RxBatch::commit_slot`] then takes what was read.
    pub(crate) fn raw_buf(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Takes the `len` bytes read into slot `slot` of [`RxBatch::raw_buf`] as the next frame.
    /// Slots are taken in increasing order, after the frames already held.
    pub(crate) fn commit_slot(&mut self, slot: usize, len: usize) {
        let at = slot * RX_SLOT;
        debug_assert!(at >= self.end && slot < RX_BATCH);
        self.end = at;
        self.commit(len.min(RX_SLOT));
    }

    /// Frame `i` with its vnet header in front, as one slice (what a tap write takes).
    pub(crate) fn frame_whole(&self, i: usize) -> &[u8] {
        let (off, len) = self.frames[i];
        &self.buf[off..off + len]
    }

    fn commit(&mut self, len: usize) {
        self.frames.push((self.end, len));
        // Keep each frame 64-byte aligned.
        self.end += (len + 63) & !63;
    }

    /// Frame `i` as `(vnet header, frame from its Ethernet header)`. Frames shorter than a
    /// vnet header are never stored.
    pub fn frame(&self, i: usize) -> (&[u8], &[u8]) {
        let (off, len) = self.frames[i];
        self.buf[off..off + len].split_at(VNET_HDR_LEN.min(len))
    }

    /// Frame `i` from its Ethernet header, writable (for wrappers that alter frames).
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let (off, len) = self.frames[i];
        let start = off + VNET_HDR_LEN.min(len);
        &mut self.buf[start..off + len]
    }

    /// Cuts frame `i` to its first `len` bytes (from the Ethernet header).
    pub fn truncate_frame(&mut self, i: usize, len: usize) {
        let f = &mut self.frames[i];
        f.1 = f.1.min(VNET_HDR_LEN + len);
    }

    /// Keeps only the frames for which `keep(index)` is true (indices as before the call).
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut i = 0;
        self.frames.retain(|_| {
            let k = keep(i);
            i += 1;
            k
        });
    }

    /// Total frame bytes held (without vnet headers): what rx_bytes counts.
    pub fn frame_bytes(&self) -> usize {
        self.frames
            .iter()
            .map(|&(_, len)| len.saturating_sub(VNET_HDR_LEN))
            .sum()
    }
}

/// Per-worker buffers for [`Port::send`]: reused across calls so sending allocates nothing once
/// warm.
pub struct TxScratch {
    /// One edited frame (tag pushed, stripped or rewritten).
    pub(crate) edited: Vec<u8>,
    /// GSO segments of one frame.
    pub(crate) segs: Segments,
    /// Frames to send with one sendmmsg, back to back.
    pub(crate) arena: Vec<u8>,
    /// (vnet header range, frame range) of each frame in `arena`.
    pub(crate) queue: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// The tunnel endpoint's encapsulation buffers.
    pub(crate) tunnel: super::tunnel::TunnelTx,
}

impl Default for TxScratch {
    fn default() -> Self {
        TxScratch::new()
    }
}

impl TxScratch {
    /// Empty buffers, sized for one largest frame.
    pub fn new() -> TxScratch {
        TxScratch {
            edited: Vec::with_capacity(MAX_FRAME + 4),
            segs: Segments::new(),
            arena: Vec::new(),
            queue: Vec::new(),
            tunnel: super::tunnel::TunnelTx::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake tap queue: frames of the given lengths, then empty.
    fn reader(lens: Vec<usize>) -> impl FnMut(&mut [u8]) -> RxStep {
        let mut q = lens.into_iter();
        let mut k = 0u8;
        move |slot: &mut [u8]| match q.next() {
            Some(0) => RxStep::Skip,
            Some(len) => {
                k += 1;
                slot[..len].fill(k);
                RxStep::Frame(len)
            }
            None => RxStep::Empty,
        }
    }

    fn whole(b: &RxBatch, i: usize) -> Vec<u8> {
        let (v, f) = b.frame(i);
        [v, f].concat()
    }

    #[test]
    fn batch_reads_a_burst_until_the_queue_is_empty() {
        let mut a = RxBatch::new();
        assert_eq!(a.fill(reader(vec![70, 0, 1500, 12 + 60])), 3);
        assert_eq!(whole(&a, 0), vec![1u8; 70]);
        assert_eq!(whole(&a, 1), vec![2u8; 1500]);
        assert_eq!(whole(&a, 2), vec![3u8; 72]);
        assert_eq!(a.frame(0).0.len(), VNET_HDR_LEN);
        assert_eq!(a.frame_bytes(), 60 + 1490 + 62);
        // The next round starts over.
        a.clear();
        assert_eq!(a.fill(reader(vec![])), 0);
        assert!(a.is_empty());
    }

    #[test]
    fn batch_stops_at_the_batch_size_even_with_largest_frames() {
        let mut a = RxBatch::new();
        assert_eq!(a.fill(reader(vec![80; RX_BATCH + 10])), RX_BATCH);
        for i in 0..RX_BATCH {
            assert_eq!(whole(&a, i).len(), 80);
            assert!(whole(&a, i).iter().all(|&b| b == (i + 1) as u8));
        }
        assert!(!a.has_room());
        assert!(!a.push(&[0; VNET_HDR_LEN], &[1; 60]));
        let mut a = RxBatch::new();
        assert_eq!(a.fill(reader(vec![RX_SLOT; RX_BATCH + 3])), RX_BATCH);
        assert!(whole(&a, RX_BATCH - 1).iter().all(|&b| b == RX_BATCH as u8));
    }

    #[test]
    fn committed_slots_are_frames_in_order_with_room_after_them() {
        let mut a = RxBatch::new();
        a.raw_buf()[..70].fill(1);
        a.raw_buf()[2 * RX_SLOT..2 * RX_SLOT + 90].fill(3);
        a.commit_slot(0, 70);
        a.commit_slot(2, 90);
        assert_eq!(a.len(), 2);
        assert_eq!(a.frame_whole(0), &[1u8; 70][..]);
        assert_eq!(a.frame_whole(1), &[3u8; 90][..]);
        assert_eq!(a.frame(1).1.len(), 90 - VNET_HDR_LEN);
        // A reply pushed after them lands after the last slot taken, not over it.
        assert!(a.push(&[0; VNET_HDR_LEN], &[9; 60]));
        assert_eq!(a.frame_whole(1), &[3u8; 90][..]);
        assert_eq!(a.frame(2).1, &[9u8; 60][..]);
    }

    #[test]
    fn pushed_frames_can_be_cut_altered_and_dropped() {
        let mut a = RxBatch::new();
        for k in 0..4u8 {
            assert!(a.push(&[k; VNET_HDR_LEN], &[k; 100]));
        }
        assert_eq!(a.room(), RX_BATCH - 4);
        a.truncate_frame(1, 10);
        a.frame_mut(2)[0] = 0xee;
        a.retain(|i| i != 0);
        assert_eq!(a.len(), 3);
        assert_eq!(a.frame(0), (&[1u8; VNET_HDR_LEN][..], &[1u8; 10][..]));
        assert_eq!(a.frame(1).1[0], 0xee);
        assert_eq!(a.frame(2).0, &[3u8; VNET_HDR_LEN][..]);
        assert!(!a.push(&[0; VNET_HDR_LEN], &vec![0; RX_SLOT]));
    }
}
