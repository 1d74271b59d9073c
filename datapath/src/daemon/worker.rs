//! Packet workers: each owns the rx side of a share of the ports, drains
//! them in batches on epoll wakeups, runs frames through the core and sends
//! the copies out, completing checksums / segmenting where the egress port
//! cannot take offloaded frames.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::io::sys::{Epoll, EventFd};
use crate::io::{PortIo, MAX_FRAME, VNET_HDR_LEN};
use crate::{
    apply_edit, complete_checksum, gso_segment, EgressEdit, Output, PortNo, Segments, VirtioNetHdr,
};

use super::{now_ns, LivePort, Shared};

/// Frames drained from one port per round before moving on (fairness), and
/// so the most frames one round delivers to a VM back to back. 32, as OVS's
/// NETDEV_MAX_BURST: a receiving VM's UDP socket (208 KiB default buffer)
/// holds only a few bursts of small frames, so a larger burst overflows it
/// before the VM gets the core back. One-host 64 B UDP over alternating
/// runs (benches/RESULTS.md): bursts of 64 had 27-30 % of delivered
/// datagrams dropped for a full socket and 92-98 kpps received, 128 had
/// 38-39 % and 80-87, 32 had 9-19 % and 98-117; 16 and 24 made the
/// receiver sleep 3-7 times as often and received less. TCP was unchanged.
pub(crate) const RX_BATCH: usize = 32;

const WAKE_TOKEN: u64 = u64::MAX;

pub(crate) struct PacketThread {
    pub(crate) index: usize,
    pub(crate) count: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) wake: Arc<EventFd>,
    pub(crate) core: crate::Worker,
    /// Niceness to run at (`[switch] worker_nice`).
    pub(crate) nice: i32,
    /// Keep polling this long after a wakeup that moved frames (`[switch] busy_poll_us`;
    /// 0: sleep at once).
    pub(crate) busy_poll_ns: u64,
}

/// One frame to send on an AF_PACKET port, owned until the batch is flushed.
struct PendingTx {
    vnet: [u8; VNET_HDR_LEN],
    body: Vec<u8>,
}

impl PacketThread {
    pub(crate) fn run(mut self) {
        if let Err(e) = crate::io::sys::set_thread_nice(self.nice) {
            // Raising priority needs CAP_SYS_NICE; the switch works without it.
            tracing::warn!(
                "worker {}: cannot set niceness {}: {e}",
                self.index,
                self.nice
            );
        }
        let Ok(epoll) = Epoll::new() else {
            tracing::error!("worker {}: epoll_create failed", self.index);
            return;
        };
        if epoll.add(self.wake.raw(), WAKE_TOKEN).is_err() {
            return;
        }
        let mut mine: HashMap<PortNo, Arc<LivePort>> = HashMap::new();
        let mut gen = u64::MAX;
        let mut rx_arena = RxArena::new();
        let mut scratch = Vec::with_capacity(MAX_FRAME);
        let mut outs: Vec<Output> = Vec::with_capacity(16);
        let mut tunnel_tx = crate::io::tunnel::TunnelTx::new();
        let mut pending: HashMap<PortNo, Vec<PendingTx>> = HashMap::new();
        let mut ready = [(0u64, false); 64];
        let mut txs = TxScratch::new();
        let mut dead: Vec<PortNo> = Vec::new();
        let busy_poll = self.busy_poll_ns;
        let mut poll_until = 0u64;
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let g = self.shared.port_gen.load(Ordering::Acquire);
            if g != gen {
                gen = g;
                self.refresh(&epoll, &mut mine);
            }
            let polling = poll_until != 0 && now_ns() < poll_until;
            let n = match epoll.wait(&mut ready, if polling { 0 } else { 200 }) {
                Ok(n) => n,
                Err(_) => continue,
            };
            if n == 0 {
                if polling {
                    std::hint::spin_loop();
                } else {
                    poll_until = 0;
                }
                continue;
            }
            let mut moved = 0usize;
            let table = self.shared.ports.load();
            for &(tok, bad) in &ready[..n] {
                if tok == WAKE_TOKEN {
                    self.wake.drain();
                    continue;
                }
                let no = PortNo(tok as u16);
                let Some(port) = mine.get(&no) else { continue };
                let Some(io) = port.io.as_deref() else {
                    continue;
                };
                // The tunnel shell maps local VLANs <-> VNIs with the running snapshot.
                let snap = self.shared.dp.snapshot();
                if bad && !still_usable(io) {
                    // The netdev is gone (deleted, or its namespace was):
                    // stop polling it; the monitor reopens or re-creates it.
                    mark_dead(&epoll, port, io);
                    continue;
                }
                let now = now_ns();
                let core = &mut self.core;
                let mut handle = |vnet: &[u8], frame: &[u8], outs: &mut Vec<Output>| {
                    moved += 1;
                    port.counters.rx_frames.fetch_add(1, Ordering::Relaxed);
                    port.counters
                        .rx_bytes
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                    outs.clear();
                    let verdict = core.process(no, frame, now, outs);
                    if !matches!(verdict, crate::Verdict::Forward) {
                        return;
                    }
                    for out in outs.iter() {
                        if let Some(dst) = table.get(out.port) {
                            if let Some(PortIo::Tunnel(t)) = dst.io.as_deref() {
                                t.transmit(
                                    &dst.counters,
                                    &snap,
                                    now,
                                    vnet,
                                    frame,
                                    out.edit,
                                    &mut tunnel_tx,
                                );
                                continue;
                            }
                            transmit(dst, vnet, frame, out.edit, &mut pending, &mut txs);
                        }
                    }
                };
                match io {
                    PortIo::Tap(tap) => {
                        let n = rx_arena.fill(|slot| match tap.recv(slot) {
                            Ok(Some(len)) if len > VNET_HDR_LEN => RxStep::Frame(len),
                            Ok(Some(_)) => {
                                port.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                                RxStep::Skip
                            }
                            Ok(None) => RxStep::Empty,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => RxStep::Skip,
                            Err(_) => {
                                port.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                                dead.push(no);
                                RxStep::Empty
                            }
                        });
                        for i in 0..n {
                            let (vnet, frame) = rx_arena.frame(i).split_at(VNET_HDR_LEN);
                            handle(vnet, frame, &mut outs);
                        }
                    }
                    PortIo::Tunnel(t) => {
                        t.drain(
                            RX_BATCH,
                            &snap,
                            now,
                            &port.counters,
                            &mut scratch,
                            |vnet, frame| handle(vnet, frame, &mut outs),
                        );
                    }
                    PortIo::Packet(pp) => {
                        pp.drain(RX_BATCH, &mut scratch, |fr| match fr {
                            Some((vnet, frame)) => handle(vnet, frame, &mut outs),
                            None => {
                                port.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                }
            }
            if let Some(no) = tunnel_tx.pending_port() {
                match table.get(no).map(|p| (p, p.io.as_deref())) {
                    Some((p, Some(PortIo::Tunnel(t)))) => t.flush(&p.counters, &mut tunnel_tx),
                    _ => tunnel_tx.clear(),
                }
            }
            flush(&table, &mut pending);
            if moved > 0 {
                // Let whatever is waiting for this core run before the next
                // round: when the switch shares cores with the VMs (the
                // 2-core bench machine), that is usually the VM we just
                // delivered to, which then drains its socket while the next
                // burst gathers. One-host 64 B UDP over alternating runs:
                // 70-76 kpps received without, 84-102 with; the receiver
                // slept 93-117 times per 1000 packets without, 20-54 with.
                // TCP and ping unchanged. A no-op when nothing else is
                // runnable here (a switch with cores of its own).
                std::thread::yield_now();
            }
            if moved > 0 && busy_poll > 0 {
                poll_until = now_ns() + busy_poll;
            }
            for no in dead.drain(..) {
                if let Some(port) = mine.get(&no) {
                    if let Some(io) = port.io.as_deref() {
                        mark_dead(&epoll, port, io);
                    }
                }
            }
        }
    }

    fn refresh(&self, epoll: &Epoll, mine: &mut HashMap<PortNo, Arc<LivePort>>) {
        let table = self.shared.ports.load();
        let mut keep: HashMap<PortNo, Arc<LivePort>> = HashMap::new();
        for lp in table.iter() {
            if usize::from(lp.no.0) % self.count != self.index || lp.io.is_none() {
                continue;
            }
            keep.insert(lp.no, lp.clone());
        }
        for (no, old) in mine.iter() {
            let same = keep.get(no).is_some_and(|n| Arc::ptr_eq(n, old));
            if !same {
                if let Some(io) = &old.io {
                    let _ = epoll.del(io.raw_fd());
                }
            }
        }
        for (no, new) in keep.iter() {
            let same = mine.get(no).is_some_and(|o| Arc::ptr_eq(o, new));
            if !same {
                if let Some(io) = &new.io {
                    let _ = epoll.add(io.raw_fd(), u64::from(no.0));
                }
            }
        }
        *mine = keep;
    }
}

/// What one read into an [`RxArena`] slot gave.
enum RxStep {
    /// A frame of this many bytes (vnet header included).
    Frame(usize),
    /// Nothing usable this time (a runt, EINTR): try again.
    Skip,
    /// The queue is empty (or the port failed): stop reading.
    Empty,
}

/// Frames read from one tap before any of them is processed, packed back to
/// back. Reading the whole burst first and then sending it means the
/// receiving VM's socket gets the burst in one go (one wakeup of the reader
/// for many frames) instead of one frame per read/write round trip.
struct RxArena {
    buf: Vec<u8>,
    /// (offset, length) of each frame read this round.
    frames: Vec<(usize, usize)>,
}

/// Room for one largest frame with its vnet header, 64-byte aligned.
const RX_SLOT: usize = (MAX_FRAME + VNET_HDR_LEN + 63) & !63;

impl RxArena {
    fn new() -> RxArena {
        RxArena {
            // A burst of RX_BATCH small frames, or eight 64 KiB GSO frames.
            buf: vec![0u8; 8 * RX_SLOT],
            frames: Vec::with_capacity(RX_BATCH),
        }
    }

    /// Reads with `read` until the queue is empty, RX_BATCH frames, or no
    /// room is left for another largest frame. Returns the frame count.
    fn fill(&mut self, mut read: impl FnMut(&mut [u8]) -> RxStep) -> usize {
        self.frames.clear();
        let mut off = 0;
        let mut tries = 0;
        while self.frames.len() < RX_BATCH && tries < RX_BATCH && off + RX_SLOT <= self.buf.len() {
            tries += 1;
            match read(&mut self.buf[off..off + RX_SLOT]) {
                RxStep::Frame(len) => {
                    self.frames.push((off, len));
                    // Keep each frame 64-byte aligned.
                    off += (len + 63) & !63;
                }
                RxStep::Skip => {}
                RxStep::Empty => break,
            }
        }
        self.frames.len()
    }

    fn frame(&self, i: usize) -> &[u8] {
        let (off, len) = self.frames[i];
        &self.buf[off..off + len]
    }
}

/// After EPOLLERR/EPOLLHUP: is the port's I/O still worth polling?
fn still_usable(io: &PortIo) -> bool {
    match io {
        // A tap fd reports errors only once its netdev is gone.
        PortIo::Tap(_) => false,
        // A UDP socket's error (an ICMP unreachable from a peer) is transient.
        PortIo::Tunnel(t) => {
            let _ = t.take_error();
            true
        }
        PortIo::Packet(pp) => {
            let _ = pp.take_error();
            pp.still_attached()
        }
    }
}

fn mark_dead(epoll: &Epoll, port: &LivePort, io: &PortIo) {
    if !port.dead.swap(true, Ordering::AcqRel) {
        tracing::warn!(port = %port.info.name, "port's netdev went away; will reattach");
    }
    let _ = epoll.del(io.raw_fd());
}

/// Per-thread scratch buffers for egress.
pub(crate) struct TxScratch {
    edited: Vec<u8>,
    segs: Segments,
}

impl TxScratch {
    pub(crate) fn new() -> TxScratch {
        TxScratch {
            edited: Vec::with_capacity(MAX_FRAME + 4),
            segs: Segments::new(),
        }
    }
}

fn transmit(
    dst: &LivePort,
    vnet: &[u8],
    frame: &[u8],
    edit: EgressEdit,
    pending: &mut HashMap<PortNo, Vec<PendingTx>>,
    scratch: &mut TxScratch,
) {
    let drop = || {
        dst.counters.tx_dropped.fetch_add(1, Ordering::Relaxed);
    };
    let Some(io) = dst.io.as_deref() else {
        return drop();
    };
    let mut hdr = VirtioNetHdr::parse(vnet, VNET_HDR_LEN).unwrap_or_default();
    // Tap to tap without a tag change (the common VM-to-VM case): no copy,
    // the vnet header (GSO, partial checksum) passes through as is.
    if let (PortIo::Tap(tap), EgressEdit::Keep) = (io, edit) {
        return match tap.send(&[vnet, frame]) {
            Ok(()) => {
                dst.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
                dst.counters
                    .tx_bytes
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
            Err(_) => drop(),
        };
    }
    scratch.edited.clear();
    if apply_edit(edit, frame, Some(&mut hdr), &mut scratch.edited).is_err() {
        return drop();
    }
    let out = &mut scratch.edited;
    match io {
        PortIo::Tap(tap) => {
            let vb = hdr_bytes(&hdr);
            match tap.send(&[&vb, out]) {
                Ok(()) => {
                    dst.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
                    dst.counters
                        .tx_bytes
                        .fetch_add(out.len() as u64, Ordering::Relaxed);
                }
                Err(_) => drop(),
            }
        }
        // Handled by the caller (it needs the snapshot for VNIs).
        PortIo::Tunnel(_) => drop(),
        PortIo::Packet(pp) => {
            let q = pending.entry(dst.no).or_default();
            if pp.vnet_hdr() {
                q.push(PendingTx {
                    vnet: hdr_bytes(&hdr),
                    body: out.clone(),
                });
            } else if hdr.is_gso() {
                // The socket takes no offload metadata: segment here.
                scratch.segs.clear();
                if gso_segment(out, &hdr, &mut scratch.segs).is_err() {
                    return drop();
                }
                for seg in scratch.segs.iter() {
                    q.push(PendingTx {
                        vnet: [0; VNET_HDR_LEN],
                        body: seg.to_vec(),
                    });
                }
            } else {
                if complete_checksum(out, &mut hdr).is_err() {
                    return drop();
                }
                q.push(PendingTx {
                    vnet: [0; VNET_HDR_LEN],
                    body: out.clone(),
                });
            }
        }
    }
}

fn hdr_bytes(h: &VirtioNetHdr) -> [u8; VNET_HDR_LEN] {
    let mut b = [0u8; VNET_HDR_LEN];
    // Only fails for a wrong length, and VNET_HDR_LEN is the right one.
    let _ = h.write(&mut b, VNET_HDR_LEN);
    b
}

fn flush(table: &super::PortTable, pending: &mut HashMap<PortNo, Vec<PendingTx>>) {
    for (no, q) in pending.iter_mut() {
        if q.is_empty() {
            continue;
        }
        let Some(dst) = table.get(*no) else {
            q.clear();
            continue;
        };
        let Some(PortIo::Packet(pp)) = dst.io.as_deref() else {
            q.clear();
            continue;
        };
        let vnet = pp.vnet_hdr();
        let empty: &[u8] = &[];
        let slices: Vec<[&[u8]; 4]> = q
            .iter()
            .map(|p| {
                [
                    if vnet { &p.vnet[..] } else { empty },
                    &p.body[..],
                    empty,
                    empty,
                ]
            })
            .collect();
        let (sent, bytes) = pp.send_batch(&slices);
        dst.counters
            .tx_frames
            .fetch_add(sent as u64, Ordering::Relaxed);
        dst.counters
            .tx_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        dst.counters
            .tx_dropped
            .fetch_add((q.len() - sent) as u64, Ordering::Relaxed);
        q.clear();
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

    #[test]
    fn arena_reads_a_burst_until_the_queue_is_empty() {
        let mut a = RxArena::new();
        assert_eq!(a.fill(reader(vec![70, 0, 1500, 12 + 60])), 3);
        assert_eq!(a.frame(0), &[1u8; 70][..]);
        assert_eq!(a.frame(1), &[2u8; 1500][..]);
        assert_eq!(a.frame(2), &[3u8; 72][..]);
        // The next round starts over.
        assert_eq!(a.fill(reader(vec![])), 0);
    }

    #[test]
    fn arena_stops_at_the_batch_size() {
        let mut a = RxArena::new();
        assert_eq!(a.fill(reader(vec![80; RX_BATCH + 10])), RX_BATCH);
        for i in 0..RX_BATCH {
            assert_eq!(a.frame(i).len(), 80);
            assert!(a.frame(i).iter().all(|&b| b == (i + 1) as u8));
        }
    }

    #[test]
    fn arena_stops_when_no_room_is_left_for_a_largest_frame() {
        let mut a = RxArena::new();
        let n = a.fill(reader(vec![RX_SLOT; 20]));
        assert_eq!(n, 8);
        for i in 0..n {
            assert_eq!(a.frame(i).len(), RX_SLOT);
            assert!(a.frame(i).iter().all(|&b| b == (i + 1) as u8));
        }
    }
}
