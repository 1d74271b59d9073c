//! Counters: each worker owns a block it alone writes (relaxed load+store, no locked
//! instructions on the hot path); readers sum all blocks.

use crate::verdict::{DropReason, PortNo, Stage, MAX_PORTS};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

const CHUNK: usize = 64;
const CHUNKS: usize = MAX_PORTS / CHUNK;

#[inline]
fn bump(a: &AtomicU64, n: u64) {
    // Single writer: a plain load/store pair is enough and avoids a locked add.
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

#[derive(Default)]
pub(crate) struct PortSlot {
    rx: AtomicU64,
    tx: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
}

pub(crate) struct CounterBlock {
    ports: [OnceLock<Box<[PortSlot; CHUNK]>>; CHUNKS],
    stage_drops: [AtomicU64; Stage::COUNT],
    processed: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl Default for CounterBlock {
    fn default() -> Self {
        CounterBlock {
            ports: std::array::from_fn(|_| OnceLock::new()),
            stage_drops: Default::default(),
            processed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        }
    }
}

impl CounterBlock {
    #[inline]
    fn port(&self, p: PortNo) -> Option<&PortSlot> {
        let i = usize::from(p.0);
        if i >= MAX_PORTS {
            return None;
        }
        let chunk = self.ports[i / CHUNK]
            .get_or_init(|| Box::new(std::array::from_fn(|_| PortSlot::default())));
        Some(&chunk[i % CHUNK])
    }

    #[inline]
    pub fn rx(&self, p: PortNo, n: u64) {
        bump(&self.processed, n);
        if let Some(s) = self.port(p) {
            bump(&s.rx, n);
        }
    }

    /// `n` copies sent to `p`.
    #[inline]
    pub fn tx_n(&self, p: PortNo, n: u64) {
        if let Some(s) = self.port(p) {
            bump(&s.tx, n);
        }
    }

    #[inline]
    pub fn dropped(&self, p: PortNo, r: DropReason) {
        bump(&self.stage_drops[r.stage() as usize], 1);
        if let Some(s) = self.port(p) {
            bump(&s.drops[r as usize], 1);
        }
    }

    /// Flow cache hits and misses.
    #[inline]
    pub fn cache_n(&self, hits: u64, misses: u64) {
        bump(&self.cache_hits, hits);
        bump(&self.cache_misses, misses);
    }

    pub fn add_into(&self, acc: &mut Counters) {
        acc.processed += self.processed.load(Relaxed);
        acc.flow_cache_hits += self.cache_hits.load(Relaxed);
        acc.flow_cache_misses += self.cache_misses.load(Relaxed);
        for (i, s) in acc.stage_drops.iter_mut().enumerate() {
            *s += self.stage_drops[i].load(Relaxed);
        }
        for (c, chunk) in self.ports.iter().enumerate() {
            let Some(chunk) = chunk.get() else { continue };
            for (j, slot) in chunk.iter().enumerate() {
                let no = PortNo((c * CHUNK + j) as u16);
                let rx = slot.rx.load(Relaxed);
                let tx = slot.tx.load(Relaxed);
                let drops: [u64; DropReason::COUNT] =
                    std::array::from_fn(|k| slot.drops[k].load(Relaxed));
                if rx == 0 && tx == 0 && drops.iter().all(|&d| d == 0) {
                    continue;
                }
                let e = acc.port_entry(no);
                e.rx += rx;
                e.tx += tx;
                for (k, d) in drops.iter().enumerate() {
                    e.drops[k] += d;
                }
            }
        }
    }
}

/// Counters of one port, summed over workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortCounters {
    /// Port number.
    pub port: PortNo,
    /// Port name in the current snapshot ("" if the port is gone).
    pub name: String,
    /// Frames received.
    pub rx: u64,
    /// Frames sent (copies the pipeline emitted to this port).
    pub tx: u64,
    /// Drops of frames received on this port, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl PortCounters {
    /// Drops for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    /// All drops.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// Per-stage counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageCounters {
    /// Stage.
    pub stage: Stage,
    /// Frames that reached the stage.
    pub entered: u64,
    /// Frames the stage dropped.
    pub dropped: u64,
}

/// A point-in-time sum of all counters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// Frames handed to the pipeline.
    pub processed: u64,
    /// Flow cache hits.
    pub flow_cache_hits: u64,
    /// Flow cache misses (full pipeline runs).
    pub flow_cache_misses: u64,
    /// Ports with any activity, by number.
    pub ports: Vec<PortCounters>,
    /// Drops per stage, indexed by `Stage as usize`.
    pub stage_drops: [u64; Stage::COUNT],
}

impl Counters {
    fn port_entry(&mut self, no: PortNo) -> &mut PortCounters {
        let i = match self.ports.binary_search_by_key(&no, |p| p.port) {
            Ok(i) => i,
            Err(i) => {
                self.ports.insert(
                    i,
                    PortCounters {
                        port: no,
                        name: String::new(),
                        rx: 0,
                        tx: 0,
                        drops: [0; DropReason::COUNT],
                    },
                );
                i
            }
        };
        &mut self.ports[i]
    }

    /// Counters of a port (by number).
    pub fn port(&self, no: PortNo) -> Option<&PortCounters> {
        self.ports.iter().find(|p| p.port == no)
    }

    /// Counters of a port (by name).
    pub fn port_by_name(&self, name: &str) -> Option<&PortCounters> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Per-stage entered/dropped, in pipeline order.
    pub fn stages(&self) -> Vec<StageCounters> {
        let mut entered = self.processed;
        Stage::ALL
            .iter()
            .map(|&s| {
                let dropped = self.stage_drops[s as usize];
                let c = StageCounters {
                    stage: s,
                    entered,
                    dropped,
                };
                entered = entered.saturating_sub(dropped);
                c
            })
            .collect()
    }

    /// Total drops for a reason, over all ports.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.ports.iter().map(|p| p.drops[r as usize]).sum()
    }
}
