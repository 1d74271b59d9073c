//! [`Datapath`]: the shared switch state (snapshot behind an atomic pointer, MAC table, counter
//! registry) and [`Worker`]: one per packet thread, owning a flow cache and a counter block.

use crate::counters::{CounterBlock, Counters};
use crate::describe::{self, DescribeError};
use crate::frame::FrameView;
use crate::mac_table::{MacEntry, MacTable};
use crate::pipeline::{self, Decision, FlowKey, Fwd, NoTrace, Recorder, TraceStep};
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Stage, Verdict};
use arc_swap::ArcSwap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// The switch: share it (`Arc<Datapath>`) between worker threads and the control socket.
pub struct Datapath {
    snapshot: ArcSwap<Snapshot>,
    macs: MacTable,
    blocks: Mutex<Vec<Arc<CounterBlock>>>,
}

/// Result of one frame of a batch: its verdict and its outputs' range in the output vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameResult {
    /// Forward or drop.
    pub verdict: Verdict,
    /// Indices into the `out` vector passed to [`Worker::process_batch`].
    pub outputs: Range<usize>,
}

impl Datapath {
    /// A datapath running `snapshot`, with a MAC table sized by its config.
    pub fn new(snapshot: Snapshot) -> Datapath {
        let cap = snapshot.config().switch.mac_table_size;
        Datapath {
            snapshot: ArcSwap::from_pointee(snapshot),
            macs: MacTable::new(cap),
            blocks: Mutex::new(Vec::new()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Atomically replaces the snapshot (workers pick it up at their next frame). Learned MACs of
    /// ports that are gone or moved to another local VLAN are flushed. Returns the old snapshot.
    pub fn swap_snapshot(&self, new: Snapshot) -> Arc<Snapshot> {
        let new = Arc::new(new);
        let old = self.snapshot.swap(new.clone());
        self.macs
            .remove_where(|vlan, port, _| match new.port(port) {
                None => true,
                Some(p) => match p.role {
                    crate::snapshot::PortRole::Vm => p.local_vlan != vlan,
                    crate::snapshot::PortRole::Uplink => new.member(vlan, port).is_none(),
                },
            });
        old
    }

    /// A worker for one packet thread.
    pub fn worker(self: &Arc<Self>) -> Worker {
        let block = Arc::new(CounterBlock::default());
        self.blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(block.clone());
        Worker {
            dp: self.clone(),
            cache: FlowCache::new(FLOW_CACHE_SIZE),
            counters: block,
        }
    }

    /// Learned (fresh) and static MAC entries, sorted by (VLAN, MAC).
    pub fn mac_table(&self, now_ns: u64) -> Vec<MacEntry> {
        let snap = self.snapshot.load();
        let mut v = self.macs.entries(now_ns, snap.mac_aging_ns());
        v.extend(snap.static_macs().map(|(vlan, mac, port)| MacEntry {
            vlan,
            mac,
            port,
            age_ns: 0,
            is_static: true,
        }));
        v.sort_by_key(|e| (e.vlan, e.mac, !e.is_static));
        v
    }

    /// Number of learned (dynamic) MAC entries, fresh or not yet aged out.
    pub fn learned_mac_count(&self) -> usize {
        self.macs.len()
    }

    /// Forgets learned MACs older than the aging time. Call periodically (e.g. every second).
    pub fn age_macs(&self, now_ns: u64) -> usize {
        let aging = self.snapshot.load().mac_aging_ns();
        self.macs.age(now_ns, aging)
    }

    /// Sum of all workers' counters, with port names from the current snapshot.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        for b in self.blocks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            b.add_into(&mut c);
        }
        let snap = self.snapshot.load();
        for p in c.ports.iter_mut() {
            if let Some(i) = snap.port(p.port) {
                p.name = i.name.clone();
            }
        }
        c
    }

    /// What the pipeline would do with `frame` on `in_port`, stage by stage (no learning, no
    /// counting). The last step gives the outputs or the drop reason.
    pub fn trace(&self, in_port: PortNo, frame: &[u8], now_ns: u64) -> Vec<TraceStep> {
        let snap = self.snapshot.load();
        let mut rec = Recorder(Vec::new());
        let view = match FrameView::parse(frame) {
            Ok(v) => v,
            Err(e) => {
                let r = DropReason::from(e);
                rec.0.push(TraceStep {
                    stage: Stage::Parse,
                    decision: format!("{} frame ({} bytes): drop ({r})", r, frame.len()),
                });
                return rec.0;
            }
        };
        rec.0.push(TraceStep {
            stage: Stage::Parse,
            decision: describe::summarize(&view),
        });
        let key = FlowKey::from_view(in_port, &view);
        let d = pipeline::decide(&snap, &self.macs, &key, now_ns, false, &mut rec);
        let mut steps = rec.0;
        let last = match d.drop {
            Some(r) => format!("Datapath actions: drop ({r})"),
            None => {
                let mut outs = Vec::new();
                pipeline::expand(&snap, in_port, d.fwd, &mut outs);
                let list: Vec<String> = outs
                    .iter()
                    .map(|o| {
                        let name = snap
                            .port(o.port)
                            .map(|p| p.name.clone())
                            .unwrap_or_else(|| o.port.to_string());
                        format!("{name}({})", o.edit)
                    })
                    .collect();
                format!("Datapath actions: output to {}", list.join(", "))
            }
        };
        steps.push(TraceStep {
            stage: Stage::Uplink,
            decision: last,
        });
        steps
    }

    /// Parses a frame description (see [`describe::parse_description`]) and traces it.
    pub fn trace_description(
        &self,
        desc: &str,
        now_ns: u64,
    ) -> Result<Vec<TraceStep>, DescribeError> {
        let snap = self.snapshot.load();
        let (port, frame) = describe::parse_description(desc, &snap)?;
        Ok(self.trace(port, &frame, now_ns))
    }
}

const FLOW_CACHE_SIZE: usize = 4096;

#[derive(Clone, Copy)]
struct CacheEntry {
    key: FlowKey,
    generation: u64,
    mac_epoch: u64,
    decision: Decision,
}

/// Exact-match flow cache, 2-way set associative, owned by one worker (no sharing, no locks).
struct FlowCache {
    entries: Box<[Option<CacheEntry>]>,
    mask: usize,
}

impl FlowCache {
    fn new(size: usize) -> FlowCache {
        let size = size.next_power_of_two().max(2);
        FlowCache {
            entries: vec![None; size].into_boxed_slice(),
            mask: size - 1,
        }
    }

    #[inline]
    fn get(
        &self,
        key: &FlowKey,
        h: u64,
        generation: u64,
        epoch: u64,
        now: u64,
    ) -> Option<Decision> {
        let i = (h as usize) & self.mask;
        for j in [i, i ^ 1] {
            if let Some(e) = &self.entries[j] {
                if e.key == *key {
                    if e.generation == generation
                        && e.mac_epoch == epoch
                        && now <= e.decision.valid_until
                    {
                        return Some(e.decision);
                    }
                    return None;
                }
            }
        }
        None
    }

    #[inline]
    fn put(&mut self, key: FlowKey, h: u64, generation: u64, epoch: u64, d: Decision) {
        let i = (h as usize) & self.mask;
        // Reuse the way holding this key, else an empty one, else evict the second way.
        let j = match (&self.entries[i], &self.entries[i ^ 1]) {
            (Some(e), _) if e.key == key => i,
            (_, Some(e)) if e.key == key => i ^ 1,
            (None, _) => i,
            (_, None) => i ^ 1,
            _ => {
                // Move the first way to the second, newest in the first.
                self.entries[i ^ 1] = self.entries[i];
                i
            }
        };
        self.entries[j] = Some(CacheEntry {
            key,
            generation,
            mac_epoch: epoch,
            decision: d,
        });
    }
}

/// One packet thread's handle: owns a flow cache and its counters. `Send`, not shared.
pub struct Worker {
    dp: Arc<Datapath>,
    cache: FlowCache,
    counters: Arc<CounterBlock>,
}

impl Worker {
    /// The datapath this worker belongs to.
    pub fn datapath(&self) -> &Arc<Datapath> {
        &self.dp
    }

    /// Runs one frame received on `in_port` at `now_ns`. Outputs are appended to `out`.
    pub fn process(
        &mut self,
        in_port: PortNo,
        frame: &[u8],
        now_ns: u64,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let dp = self.dp.clone();
        let snap = dp.snapshot.load();
        self.counters.rx(in_port, 1);
        self.one(&snap, &dp.macs, in_port, frame, now_ns, out)
    }

    /// Runs a batch of frames received on `in_port`. For each frame a [`FrameResult`] is appended
    /// to `results`, whose `outputs` range indexes `out`. The snapshot is loaded once per batch.
    pub fn process_batch<'f, I>(
        &mut self,
        in_port: PortNo,
        frames: I,
        now_ns: u64,
        out: &mut Vec<Output>,
        results: &mut Vec<FrameResult>,
    ) where
        I: IntoIterator<Item = &'f [u8]>,
    {
        let dp = self.dp.clone();
        let snap = dp.snapshot.load();
        let mut n = 0;
        for frame in frames {
            let start = out.len();
            let verdict = self.one(&snap, &dp.macs, in_port, frame, now_ns, out);
            results.push(FrameResult {
                verdict,
                outputs: start..out.len(),
            });
            n += 1;
        }
        self.counters.rx(in_port, n);
    }

    #[inline]
    fn one(
        &mut self,
        snap: &Snapshot,
        macs: &MacTable,
        in_port: PortNo,
        frame: &[u8],
        now: u64,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let view = match FrameView::parse(frame) {
            Ok(v) => v,
            Err(e) => {
                let reason = DropReason::from(e);
                self.counters.dropped(in_port, reason);
                return Verdict::Drop { reason };
            }
        };
        let key = FlowKey::from_view(in_port, &view);
        let h = key.hash();
        let generation = snap.generation();
        let epoch = macs.epoch();
        let d = match self.cache.get(&key, h, generation, epoch, now) {
            Some(d) => {
                self.counters.cache(true);
                if let Some(slot) = d.learn_slot {
                    macs.touch(slot, now);
                }
                d
            }
            None => {
                self.counters.cache(false);
                let d = pipeline::decide(snap, macs, &key, now, true, &mut NoTrace);
                self.cache.put(key, h, generation, epoch, d);
                d
            }
        };
        if let Some(reason) = d.drop {
            self.counters.dropped(in_port, reason);
            return Verdict::Drop { reason };
        }
        let start = out.len();
        match d.fwd {
            Fwd::Unicast(o) => {
                out.push(o);
                self.counters.tx(o.port);
            }
            f => {
                pipeline::expand(snap, in_port, f, out);
                for o in &out[start..] {
                    self.counters.tx(o.port);
                }
            }
        }
        Verdict::Forward
    }
}
