//! The packet worker's io_uring path (`[switch] io = "uring"`): plain taps are read a burst
//! per `io_uring_enter` and a round's unedited tap-bound frames go out in one more, instead
//! of one `read`/`writev` per frame. Waiting for input stays with the worker's epoll, and
//! every other port (and every frame that needs an edit) takes the [`Port`] path.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use crate::io::sys_uring::{ReadOutcome, TapRing};
use crate::io::{IoCounters, Port, RxBatch, TxFrame, TxScratch, RX_BATCH, VNET_HDR_LEN};
use crate::PortNo;

use super::PortTable;

/// Reads asked for in a port's first burst of a round when its last round found little.
const MIN_BURST: usize = 2;

/// A worker's ring and what it remembers between rounds.
pub(crate) struct UringState {
    pub(crate) ring: TapRing,
    reads: Vec<ReadOutcome>,
    /// Frames each tap gave in its last round: the next round asks for twice as many reads
    /// (at least [`MIN_BURST`]), so a sparse tap (ping, request/response) costs one or two
    /// reads that find the queue empty, as epoll's read-until-EAGAIN does, while a busy one
    /// reaches a whole batch in a few rounds.
    last: HashMap<PortNo, usize>,
}

impl UringState {
    /// A ring with `batch`'s buffer registered; without the registration (RLIMIT_MEMLOCK)
    /// reads and writes still go through the ring, unregistered.
    pub(crate) fn new(batch: &mut RxBatch) -> std::io::Result<UringState> {
        let mut ring = TapRing::new()?;
        if let Err(e) = ring.register(batch) {
            tracing::warn!("io_uring: cannot register the batch buffer ({e}); reads unregistered");
        }
        Ok(UringState {
            ring,
            reads: Vec::with_capacity(RX_BATCH),
            last: HashMap::new(),
        })
    }

    /// Reads tap `fd` (port `no`) into the empty `batch`: bursts of reads until one finds the
    /// queue empty or the batch is full. `Ok(Err)` is the tap failing (its netdev is gone);
    /// the outer `Err` is the ring failing (the worker then goes back to epoll).
    pub(crate) fn recv_tap(
        &mut self,
        no: PortNo,
        fd: std::os::fd::RawFd,
        batch: &mut RxBatch,
        counters: &IoCounters,
    ) -> std::io::Result<std::io::Result<()>> {
        let mut want = (self.last.get(&no).copied().unwrap_or(0) * 2).max(MIN_BURST);
        let mut slot = 0;
        let mut failed = None;
        while slot < RX_BATCH && failed.is_none() {
            let burst = want.min(RX_BATCH - slot);
            self.ring
                .read_burst(fd, batch, slot, burst, &mut self.reads)?;
            let mut empty = false;
            for (i, r) in self.reads.iter().enumerate() {
                match *r {
                    ReadOutcome::Frame(n) if n > VNET_HDR_LEN => batch.commit_slot(slot + i, n),
                    ReadOutcome::Frame(_) => {
                        counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    ReadOutcome::Empty => empty = true,
                    ReadOutcome::Failed(errno) => {
                        counters.rx_errors.fetch_add(1, Ordering::Relaxed);
                        failed = Some(std::io::Error::from_raw_os_error(errno));
                    }
                }
            }
            slot += burst;
            if empty {
                break;
            }
            want = burst * 2;
        }
        self.last.insert(no, batch.len());
        Ok(failed.map_or(Ok(()), Err))
    }
}

/// Hands the batch's copies to their ports like the epoll path's `send_grouped`, but queues
/// every unedited frame for a plain tap in the ring and submits them all at the end with one
/// `io_uring_enter`. Err when the ring failed (frames it had are counted as dropped).
pub(crate) fn send_grouped(
    st: &mut UringState,
    table: &PortTable,
    batch: &RxBatch,
    sends: &[TxFrame],
    tx: &mut TxScratch,
    mut send_other: impl FnMut(&dyn Port, &IoCounters, &[TxFrame], &mut TxScratch),
) -> std::io::Result<()> {
    let mut q = st.ring.writes();
    let mut failed = None;
    for group in sends.chunk_by(|a, b| a.port == b.port) {
        let Some(dst) = table.get(group[0].port) else {
            continue;
        };
        let Some(io) = dst.io.as_deref() else {
            dst.counters
                .tx_dropped
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            continue;
        };
        let fd = match io.tap_fd() {
            Some(fd)
                if failed.is_none() && group.iter().all(|t| t.edit == crate::EgressEdit::Keep) =>
            {
                fd
            }
            _ => {
                send_other(io, &dst.counters, group, tx);
                continue;
            }
        };
        for t in group {
            let bytes = batch.frame_whole(t.index);
            let tag = (u64::from(t.port.0) << 32) | (bytes.len() - VNET_HDR_LEN) as u64;
            if let Err(e) = q.push(fd, bytes, tag) {
                failed = Some(e);
                dst.counters.tx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let done = q.finish(|tag, res| {
        let Some(dst) = table.get(PortNo((tag >> 32) as u16)) else {
            return;
        };
        let c = &dst.counters;
        if res >= 0 {
            c.tx_frames.fetch_add(1, Ordering::Relaxed);
            c.tx_bytes.fetch_add(tag & 0xffff_ffff, Ordering::Relaxed);
        } else {
            c.tx_dropped.fetch_add(1, Ordering::Relaxed);
        }
    });
    failed.map_or(done, Err)
}
