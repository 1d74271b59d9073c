//! Packet workers: each owns the rx side of a share of the ports, drains
//! them in batches on epoll wakeups, runs frames through the core and hands
//! the copies to their destination ports, all through the [`Port`] trait
//! (each port applies the egress edit and finishes the offloads it cannot
//! take).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::io::sys::{Epoll, EventFd};
use crate::io::{Port, PortCtx, RxBatch, TxFrame, TxScratch};
use crate::{FrameResult, Output, PortNo, Verdict};

use super::poll::{SpinPolicy, Wait};
use super::uring::{self, UringState};
use super::{now_ns, LivePort, PortTable, Shared};

const WAKE_TOKEN: u64 = u64::MAX;

/// Extra rounds for one ready port that says it still holds frames ([`Port::rx_pending`]).
const MAX_PENDING_ROUNDS: usize = 128;

pub(crate) struct PacketThread {
    pub(crate) index: usize,
    pub(crate) count: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) wake: Arc<EventFd>,
    pub(crate) core: crate::Worker,
    /// Niceness to run at (`[switch] worker_nice`).
    pub(crate) nice: i32,
    /// Keep polling at most this long after a wakeup that moved frames (`[switch]
    /// busy_poll_us`; 0: sleep at once); see [`SpinPolicy`].
    pub(crate) busy_poll_ns: u64,
    /// Give the core away between two empty polls of a spin (`[switch] busy_poll_yield`).
    pub(crate) spin_yield: bool,
    /// Read and write plain taps through an io_uring (`[switch] io`, after the switch's
    /// probe said io_uring works here).
    pub(crate) uring: bool,
}

/// A worker's reusable buffers: one rx batch, the verdicts and outputs the core decided for
/// it, and the tx scratch every port's `send` borrows. Allocated once per thread.
struct Buffers {
    batch: RxBatch,
    results: Vec<FrameResult>,
    outs: Vec<Output>,
    sends: Vec<TxFrame>,
    tx: TxScratch,
    /// The ring, with `batch`'s buffer registered, when taps go through io_uring.
    uring: Option<UringState>,
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
        let mut bufs = Buffers {
            batch: RxBatch::new(),
            results: Vec::with_capacity(crate::io::RX_BATCH),
            outs: Vec::with_capacity(64),
            sends: Vec::with_capacity(64),
            tx: TxScratch::new(),
            uring: None,
        };
        if self.uring {
            match UringState::new(&mut bufs.batch) {
                Ok(u) => bufs.uring = Some(u),
                Err(e) => {
                    tracing::warn!("worker {}: no io_uring ({e}); taps via epoll", self.index)
                }
            }
        }
        let mut enters_reported = 0u64;
        let mut ready = [(0u64, false); 64];
        let mut policy = SpinPolicy::new(self.busy_poll_ns);
        let mut reported = (0u64, 0u64);
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            let g = self.shared.port_gen.load(Ordering::Acquire);
            if g != gen {
                gen = g;
                self.refresh(&epoll, &mut mine);
            }
            let wait = policy.next_wait(now_ns());
            if wait == Wait::Sleep {
                self.shared.poll.sleeps.fetch_add(1, Ordering::Relaxed);
                self.report_outcomes(&policy, &mut reported);
                if let Some(u) = &bufs.uring {
                    let e = u.ring.enters;
                    let p = &self.shared.poll;
                    p.uring_enters
                        .fetch_add(e - enters_reported, Ordering::Relaxed);
                    enters_reported = e;
                }
            }
            let n = match epoll.wait(&mut ready, if wait == Wait::Spin { 0 } else { 200 }) {
                Ok(n) => n,
                Err(_) => continue,
            };
            if n == 0 {
                if wait == Wait::Spin {
                    if self.spin_yield {
                        // On cores shared with the VMs, a spin that does not yield takes
                        // the core from the very process whose answer it waits for.
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                continue;
            }
            if ready[..n].iter().any(|&(tok, _)| tok == WAKE_TOKEN) {
                // The port set changed (or we are stopping): take the new one before reading
                // any port, so that nothing is read through a port's old wrappers (a capture
                // just removed) once apply() has returned.
                self.wake.drain();
                let g = self.shared.port_gen.load(Ordering::Acquire);
                if g != gen {
                    gen = g;
                    self.refresh(&epoll, &mut mine);
                }
            }
            let mut moved = 0usize;
            let table = self.shared.ports.load();
            for &(tok, bad) in &ready[..n] {
                if tok == WAKE_TOKEN {
                    continue;
                }
                let Some(port) = mine.get(&PortNo(tok as u16)) else {
                    continue;
                };
                let Some(io) = port.io.as_deref() else {
                    continue;
                };
                if bad && !io.still_usable() {
                    // The netdev is gone (deleted, or its namespace was):
                    // stop polling it; the monitor reopens or re-creates it.
                    mark_dead(&epoll, port, io);
                    continue;
                }
                // A port that took more from the kernel than one batch holds (a tunnel
                // socket's UDP_GRO messages: up to 32 x 64 datagrams) is read on at once; the
                // bound only guards against a port that would never say it is done.
                let mut res = self.round(port, io, &table, &mut bufs);
                for _ in 0..MAX_PENDING_ROUNDS {
                    match res {
                        Ok(m) if io.rx_pending() => {
                            moved += m;
                            res = self.round(port, io, &table, &mut bufs);
                        }
                        _ => break,
                    }
                }
                if let Ok(m) = res {
                    moved += m;
                }
                if res.is_err() {
                    mark_dead(&epoll, port, io);
                }
            }
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
            policy.after_round(now_ns(), moved);
        }
    }

    /// Adds the spin windows' outcomes since the last call to the switch's counters (called
    /// when the worker is about to block, not per frame).
    fn report_outcomes(&self, policy: &SpinPolicy, reported: &mut (u64, u64)) {
        let (hits, misses) = policy.outcomes();
        let p = &self.shared.poll;
        p.spin_hits.fetch_add(hits - reported.0, Ordering::Relaxed);
        p.spin_misses
            .fetch_add(misses - reported.1, Ordering::Relaxed);
        *reported = (hits, misses);
    }

    /// One round for one ready port: read a batch, decide it, send the copies, grouped by
    /// destination port (one `send` per destination, so AF_PACKET and tunnel ports send the
    /// group with one sendmmsg). Returns the frames read; `Err` when the port is gone.
    fn round(
        &mut self,
        port: &LivePort,
        io: &dyn Port,
        table: &PortTable,
        bufs: &mut Buffers,
    ) -> std::io::Result<usize> {
        // The tunnel endpoint maps local VLANs <-> VNIs with the running snapshot.
        let snap = self.shared.dp.snapshot();
        let now = now_ns();
        let ctx = PortCtx {
            snap: &snap,
            now_ns: now,
            counters: &port.counters,
        };
        bufs.batch.clear();
        let read = match (bufs.uring.as_mut(), io.tap_fd()) {
            (Some(u), Some(fd)) => match u.recv_tap(port.no, fd, &mut bufs.batch, &port.counters) {
                Ok(r) => r,
                Err(e) => {
                    ring_failed(&mut bufs.uring, &e);
                    bufs.batch.clear();
                    io.recv(&ctx, &mut bufs.batch)
                }
            },
            _ => io.recv(&ctx, &mut bufs.batch),
        };
        let n = bufs.batch.len();
        if n > 0 {
            let c = &port.counters;
            c.rx_frames.fetch_add(n as u64, Ordering::Relaxed);
            c.rx_bytes
                .fetch_add(bufs.batch.frame_bytes() as u64, Ordering::Relaxed);
            self.decide(port.no, now, bufs);
            send_grouped(table, &snap, now, bufs);
        }
        read.map(|()| n)
    }

    /// Runs the batch through the core with one `process_batch` call (the snapshot loaded
    /// once, flow keys of the whole batch computed before the cache is probed, counters
    /// flushed once) and collects the copies to send. Measured against one `process` call per
    /// frame (`WEFT_PIPELINE_PER_FRAME=1 cargo bench --bench pipeline`, alternating rounds):
    /// 24-27 % more frames per core with cached and thrashing flows, 3 % with cold frames
    /// (benches/RESULTS.md, "Worker batch path").
    fn decide(&mut self, in_port: PortNo, now: u64, bufs: &mut Buffers) {
        bufs.sends.clear();
        bufs.outs.clear();
        bufs.results.clear();
        let batch = &bufs.batch;
        self.core.process_batch(
            in_port,
            (0..batch.len()).map(|i| batch.frame(i).1),
            now,
            &mut bufs.outs,
            &mut bufs.results,
        );
        let mut replies = Vec::new();
        for (index, r) in bufs.results.iter().enumerate() {
            match r.verdict {
                Verdict::Forward => {
                    bufs.sends
                        .extend(bufs.outs[r.outputs.clone()].iter().map(|o| TxFrame {
                            port: o.port,
                            index,
                            edit: o.edit,
                        }))
                }
                Verdict::Dhcp => {
                    replies.extend(self.core.answer_dhcp(in_port, batch.frame(index).1))
                }
                Verdict::Metadata => replies.extend(self.core.answer_metadata(
                    in_port,
                    batch.frame(index).1,
                    now,
                )),
                Verdict::Drop { .. } => {}
            }
        }
        // The switch's DHCP replies ride in the same batch, after the frames read, so that
        // they go out through the port's ordinary send (captures included). A batch that is
        // full loses the reply; the guest retransmits, as it would after any lost reply.
        for reply in replies {
            if bufs.batch.push(&[], &reply) {
                bufs.sends.push(TxFrame {
                    port: in_port,
                    index: bufs.batch.len() - 1,
                    edit: crate::EgressEdit::Keep,
                });
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

/// Hands the batch's copies to their ports, one `send` per destination. Sorting by (port,
/// frame index) keeps each port's frames in arrival order; the key is unique per copy, so the
/// unstable sort (which allocates nothing) is as good as a stable one.
fn send_grouped(table: &PortTable, snap: &crate::Snapshot, now: u64, bufs: &mut Buffers) {
    bufs.sends.sort_unstable_by_key(|t| (t.port, t.index));
    if let Some(u) = bufs.uring.as_mut() {
        let batch = &bufs.batch;
        let sent = uring::send_grouped(
            u,
            table,
            batch,
            &bufs.sends,
            &mut bufs.tx,
            |io, c, g, tx| {
                let ctx = PortCtx {
                    snap,
                    now_ns: now,
                    counters: c,
                };
                io.send(&ctx, batch, g, tx);
            },
        );
        if let Err(e) = sent {
            ring_failed(&mut bufs.uring, &e);
        }
        return;
    }
    for group in bufs.sends.chunk_by(|a, b| a.port == b.port) {
        let Some(dst) = table.get(group[0].port) else {
            continue;
        };
        let Some(io) = dst.io.as_deref() else {
            // Pending (its netdev is not there yet) or closed.
            dst.counters
                .tx_dropped
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            continue;
        };
        let ctx = PortCtx {
            snap,
            now_ns: now,
            counters: &dst.counters,
        };
        io.send(&ctx, &bufs.batch, group, &mut bufs.tx);
    }
}

/// The ring failed (not a tap: the ring itself): this worker goes on with epoll alone.
fn ring_failed(ring: &mut Option<UringState>, e: &std::io::Error) {
    tracing::error!("io_uring failed ({e}); this worker's taps go back to epoll");
    *ring = None;
}

fn mark_dead(epoll: &Epoll, port: &LivePort, io: &dyn Port) {
    if !port.dead.swap(true, Ordering::AcqRel) {
        tracing::warn!(port = %port.info.name, "port's netdev went away; will reattach");
    }
    let _ = epoll.del(io.raw_fd());
}
