//! [`Datapath`]: the shared switch state (snapshot behind an atomic pointer, MAC table, counter
//! registry) and [`Worker`]: one per packet thread, owning a flow cache and a counter block.

use crate::counters::{CounterBlock, Counters};
use crate::describe::{self, DescribeError};
use crate::dhcp::{DhcpCounters, DhcpStats};
use crate::frame::FrameView;
use crate::mac_table::{MacEntry, MacTable};
use crate::metadata::{MetadataServer, MetadataStats};
use crate::pipeline::{self, Decision, FlowKey, Fwd, NoTrace, Recorder, TraceStep};
use crate::secgroup::ConnTable;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Stage, Verdict};
use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// The switch: share it (`Arc<Datapath>`) between worker threads and the control socket.
pub struct Datapath {
    snapshot: ArcSwap<Snapshot>,
    macs: MacTable,
    /// The firewall's connections, all ports together. Only frames that cross a firewalled
    /// port take the lock.
    conntrack: Mutex<ConnTable>,
    blocks: Mutex<Vec<Arc<CounterBlock>>>,
    dhcp: DhcpCounters,
    metadata: MetadataServer,
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
        let ct = snapshot.config().switch.conntrack_size;
        Datapath {
            conntrack: Mutex::new(ConnTable::new(ct)),
            snapshot: ArcSwap::from_pointee(snapshot),
            macs: MacTable::new(cap),
            blocks: Mutex::new(Vec::new()),
            dhcp: DhcpCounters::default(),
            metadata: MetadataServer::default(),
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
        // A port gone or no longer served loses its metadata stack (and its connections).
        self.metadata.retain(|p| new.metadata(p).is_some());
        crate::snapshot::reload_conntrack(&mut self.conntrack(), &old, &new);
        old
    }

    /// The connection table (lock it briefly: packet workers wait on it).
    pub fn conntrack(&self) -> std::sync::MutexGuard<'_, ConnTable> {
        self.conntrack.lock().unwrap_or_else(|e| e.into_inner())
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
            seen: self.snapshot(),
            snap: Cache::new(SnapshotOf(self.clone())),
            cache: FlowCache::new(),
            counters: block,
            scratch: Box::new(Scratch {
                keys: [FlowKey::default(); GROUP],
                hashes: [0; GROUP],
                errs: [None; GROUP],
                verdicts: [Verdict::Forward; GROUP],
                ends: [0; GROUP],
            }),
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

    /// What the switch's DHCP server did: replies sent, requests left unanswered by design
    /// (RELEASE, DECLINE, a REQUEST for another server), bad requests dropped.
    pub fn dhcp_stats(&self) -> DhcpStats {
        self.dhcp.stats()
    }

    /// What the metadata service answered, and how many ports hold a stack for it.
    pub fn metadata_stats(&self) -> (MetadataStats, usize) {
        (self.metadata.stats(), self.metadata.stacks())
    }

    /// Puts back a MAC learned `age_ns` ago on `port` (a switch restart with handover passes
    /// the table on, so the new process does not flood every frame until it relearns).
    pub fn restore_mac(
        &self,
        vlan: u16,
        mac: crate::MacAddr,
        port: PortNo,
        age_ns: u64,
        now_ns: u64,
    ) {
        let _ = self
            .macs
            .learn(vlan, mac, port, now_ns.saturating_sub(age_ns));
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
        let mut outs = Vec::new();
        let mut drop = d.drop;
        if drop.is_none() {
            pipeline::expand(&snap, in_port, d.fwd, &mut outs);
            if d.firewall {
                let ct = self.conntrack();
                drop = crate::pipeline::firewall_trace::trace(
                    &snap, &ct, in_port, frame, &view, now_ns, &mut outs, &mut steps,
                );
            }
        }
        let last = match drop {
            Some(r) => format!("Datapath actions: drop ({r})"),
            None if d.fwd == Fwd::Dhcp => {
                "Datapath actions: answered by the switch's DHCP server on the ingress port".into()
            }
            None if d.fwd == Fwd::Metadata => {
                "Datapath actions: answered by the switch's metadata service (169.254.169.254) on the ingress port".into()
            }
            None => {
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

/// Entries per worker (128 bytes each).
const FLOW_CACHE_SIZE: usize = 8192;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheEntry {
    key: FlowKey,
    /// Snapshot generation; 0 marks an empty entry (generations start at 1).
    generation: u64,
    mac_epoch: u64,
    decision: Decision,
    /// The decision when it is a plain unicast with nothing else to do (no drop, no MAC to
    /// refresh): the whole hit path is then one push.
    unicast: Option<Output>,
}

// Two cache lines per entry, as before the firewall flag joined the decision.
const _: () = assert!(std::mem::size_of::<CacheEntry>() == 128);

/// Exact-match flow cache, 4-way set associative, owned by one worker (no sharing, no locks).
struct FlowCache {
    sets: Box<[[CacheEntry; WAYS]; SETS]>,
}

const WAYS: usize = 4;
const SETS: usize = FLOW_CACHE_SIZE / WAYS;
const _: () = assert!(SETS.is_power_of_two());

impl FlowCache {
    fn new() -> FlowCache {
        let empty = CacheEntry {
            key: FlowKey::default(),
            generation: 0,
            mac_epoch: 0,
            decision: Decision::EMPTY,
            unicast: None,
        };
        let sets: Box<[[CacheEntry; WAYS]]> = vec![[empty; WAYS]; SETS].into_boxed_slice();
        FlowCache {
            sets: sets
                .try_into()
                .unwrap_or_else(|_| unreachable!("SETS sets")),
        }
    }

    /// The set of a hash: its top bits (the best mixed ones), so always in bounds.
    #[inline(always)]
    fn index(h: u64) -> usize {
        (h >> (64 - SETS.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn set(&self, h: u64) -> &[CacheEntry; WAYS] {
        &self.sets[Self::index(h)]
    }

    #[inline(always)]
    fn get(
        &self,
        key: &FlowKey,
        h: u64,
        generation: u64,
        epoch: u64,
        now: u64,
    ) -> Option<&CacheEntry> {
        for e in self.set(h) {
            if e.key == *key {
                let fresh = ((e.generation ^ generation) | (e.mac_epoch ^ epoch)) == 0;
                return (fresh & (now <= e.decision.valid_until)).then_some(e);
            }
        }
        None
    }

    /// After a reload from `old` to `new`: restamps the entries decided under `old` that
    /// `new` leaves valid, and empties the others (and any older ones). Out of line: once per
    /// reload per worker, a walk of the cache.
    #[cold]
    #[inline(never)]
    fn revalidate(&mut self, old: &Snapshot, new: &Snapshot) {
        let (from, to) = (old.generation(), new.generation());
        for e in self.sets.iter_mut().flatten() {
            if e.generation == 0 {
                continue;
            }
            let keep = e.generation == from
                && crate::snapshot::epochs::still_valid(old, new, e.key.in_port(), e.decision.vlan);
            e.generation = if keep { to } else { 0 };
        }
    }

    /// Loads the first way of a set (both of its cache lines) without using the result, so that
    /// a batch can have all its entries' loads in flight at once (a software prefetch in safe
    /// code).
    #[inline(always)]
    fn touch(&self, h: u64) -> u64 {
        let e = &self.set(h)[0];
        e.key.first_word() ^ e.generation
    }

    #[inline]
    fn put(&mut self, key: FlowKey, h: u64, generation: u64, epoch: u64, d: Decision) {
        let set = &mut self.sets[Self::index(h)];
        let unicast = match d {
            Decision {
                drop: None,
                fwd: Fwd::Unicast(o),
                learn_slot: None,
                firewall: false,
                ..
            } => Some(o),
            _ => None,
        };
        let entry = CacheEntry {
            key,
            generation,
            mac_epoch: epoch,
            decision: d,
            unicast,
        };
        // Same key or an empty way: take it. Otherwise shift the set down (the oldest falls off)
        // and put the newest first.
        for e in set.iter_mut() {
            if e.key == key || e.generation == 0 {
                *e = entry;
                return;
            }
        }
        set.copy_within(0..WAYS - 1, 1);
        set[0] = entry;
    }
}

/// Frames taken at once by [`Worker::process_batch`]: keys and hashes of a group are computed
/// first, then the flow cache is consulted, so that memory loads of different frames overlap.
const GROUP: usize = 32;

/// Per-group scratch space, kept in the worker so that a batch does not initialise it.
struct Scratch {
    keys: [FlowKey; GROUP],
    hashes: [u64; GROUP],
    errs: [Option<DropReason>; GROUP],
    verdicts: [Verdict; GROUP],
    /// End of each frame's outputs in `out`.
    ends: [usize; GROUP],
}

/// Counter updates of one batch, added to the worker's block once at its end: flow cache hits
/// and misses, and transmitted copies as runs of the same egress port.
struct Tally {
    hits: u64,
    misses: u64,
    tx_port: PortNo,
    tx_n: u64,
}

impl Tally {
    const NEW: Tally = Tally {
        hits: 0,
        misses: 0,
        tx_port: PortNo(0),
        tx_n: 0,
    };

    #[inline(always)]
    fn tx(&mut self, counters: &CounterBlock, port: PortNo) {
        if port != self.tx_port {
            self.flush_tx(counters);
            self.tx_port = port;
        }
        self.tx_n += 1;
    }

    #[inline]
    fn flush_tx(&mut self, counters: &CounterBlock) {
        if self.tx_n != 0 {
            counters.tx_n(self.tx_port, self.tx_n);
            self.tx_n = 0;
        }
    }

    #[inline]
    fn flush(&mut self, counters: &CounterBlock) {
        self.flush_tx(counters);
        counters.cache_n(self.hits, self.misses);
        self.hits = 0;
        self.misses = 0;
    }
}

/// A datapath's snapshot pointer, for the worker's [`Cache`].
struct SnapshotOf(Arc<Datapath>);

impl std::ops::Deref for SnapshotOf {
    type Target = ArcSwap<Snapshot>;
    fn deref(&self) -> &ArcSwap<Snapshot> {
        &self.0.snapshot
    }
}

/// One packet thread's handle: owns a flow cache and its counters. `Send`, not shared.
pub struct Worker {
    dp: Arc<Datapath>,
    /// The running snapshot, re-read only when the datapath's pointer changed (one relaxed
    /// load per call instead of an `ArcSwap::load`).
    snap: Cache<SnapshotOf, Arc<Snapshot>>,
    /// The snapshot the flow cache's entries were decided (or last revalidated) under.
    seen: Arc<Snapshot>,
    cache: FlowCache,
    counters: Arc<CounterBlock>,
    scratch: Box<Scratch>,
}

impl Worker {
    /// The datapath this worker belongs to.
    pub fn datapath(&self) -> &Arc<Datapath> {
        &self.dp
    }

    /// The reply to a frame that got [`Verdict::Dhcp`] from `in_port`, to send back out of
    /// `in_port` (and nowhere else); None when the request gets no answer (RELEASE, a REQUEST
    /// for another server) or is malformed, which is counted ([`Datapath::dhcp_stats`]) and
    /// dropped. Uses the running snapshot, so a reload that changed the port's fixed IP or
    /// its subnet's options is in the very next answer.
    pub fn answer_dhcp(&mut self, in_port: PortNo, frame: &[u8]) -> Option<Vec<u8>> {
        let snap: &Snapshot = self.snap.load();
        let port = snap.dhcp(in_port)?;
        self.dp.dhcp.count(crate::dhcp::answer(frame, port))
    }

    /// The frames the metadata service sends back out of `in_port` after a frame that got
    /// [`Verdict::Metadata`] (a SYN-ACK, an HTTP answer, an ARP reply or request; often
    /// none). The answers come from the running snapshot's data for `in_port`, so the
    /// guest only ever reads its own port's instance, and a reload is in the next answer.
    pub fn answer_metadata(&mut self, in_port: PortNo, frame: &[u8], now_ns: u64) -> Vec<Vec<u8>> {
        let snap: &Snapshot = self.snap.load();
        match snap.metadata(in_port) {
            Some(m) => self.dp.metadata.handle(in_port, m, frame, now_ns),
            None => Vec::new(),
        }
    }

    /// Runs one frame received on `in_port` at `now_ns`. Outputs are appended to `out`.
    pub fn process(
        &mut self,
        in_port: PortNo,
        frame: &[u8],
        now_ns: u64,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let Worker {
            dp,
            snap,
            seen,
            cache,
            counters,
            ..
        } = self;
        let snap: &Snapshot = running(snap, seen, cache);
        let macs = &dp.macs;
        counters.rx(in_port, 1);
        let mut tally = Tally::NEW;
        let mut key = FlowKey::default();
        let verdict = match FlowKey::extract_hashed(in_port, frame, &mut key) {
            Ok(h) => decide_and_emit(
                cache,
                counters,
                &mut tally,
                snap,
                dp,
                &key,
                frame,
                h,
                snap.generation(),
                &mut macs.epoch(),
                now_ns,
                out,
            ),
            Err(e) => dropped(counters, in_port, DropReason::from(e)),
        };
        tally.flush(counters);
        verdict
    }

    /// Runs a batch of frames received on `in_port`. For each frame a [`FrameResult`] is appended
    /// to `results`, whose `outputs` range indexes `out`. The snapshot is loaded once per batch.
    /// Frames are taken in groups of 32: keys and hashes of a group are computed first, then the
    /// flow cache is consulted, so that memory loads of different frames overlap.
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
        let Worker {
            dp,
            snap,
            seen,
            cache,
            counters,
            scratch,
        } = self;
        let snap: &Snapshot = running(snap, seen, cache);
        let macs = &dp.macs;
        let generation = snap.generation();
        let Scratch {
            keys,
            hashes,
            errs,
            verdicts,
            ends,
        } = &mut **scratch;
        let mut it = frames.into_iter();
        let mut group: [&[u8]; GROUP] = [&[]; GROUP];
        let mut total = 0u64;
        let mut tally = Tally::NEW;
        loop {
            let mut n = 0;
            while n < GROUP {
                let Some(frame) = it.next() else { break };
                group[n] = frame;
                match FlowKey::extract_hashed(in_port, frame, &mut keys[n]) {
                    Ok(h) => {
                        hashes[n] = h;
                        errs[n] = None;
                    }
                    Err(e) => errs[n] = Some(DropReason::from(e)),
                }
                n += 1;
            }
            if n == 0 {
                break;
            }
            total += n as u64;
            let mut sink = 0u64;
            for (h, e) in hashes[..n].iter().zip(&errs[..n]) {
                if e.is_none() {
                    sink ^= cache.touch(*h);
                }
            }
            std::hint::black_box(sink);
            let mut epoch = macs.epoch();
            let first = out.len();
            for i in 0..n {
                verdicts[i] = match errs[i] {
                    Some(reason) => dropped(counters, in_port, reason),
                    None => decide_and_emit(
                        cache, counters, &mut tally, snap, dp, &keys[i], group[i], hashes[i],
                        generation, &mut epoch, now_ns, out,
                    ),
                };
                ends[i] = out.len();
            }
            // One reservation for the group's results instead of a capacity check per frame.
            results.extend((0..n).map(|i| FrameResult {
                verdict: verdicts[i],
                outputs: if i == 0 { first } else { ends[i - 1] }..ends[i],
            }));
        }
        tally.flush(counters);
        counters.rx(in_port, total);
    }
}

/// The running snapshot; when it is not the one the flow cache was filled under, the cache
/// first keeps only the entries the reload left valid ([`crate::snapshot::epochs`]).
#[inline(always)]
fn running<'s>(
    snap: &'s mut Cache<SnapshotOf, Arc<Snapshot>>,
    seen: &mut Arc<Snapshot>,
    cache: &mut FlowCache,
) -> &'s Arc<Snapshot> {
    let s = snap.load();
    if !Arc::ptr_eq(s, seen) {
        cache.revalidate(seen, s);
        *seen = s.clone();
    }
    s
}

/// Flow cache lookup (or full pipeline on a miss), counters, outputs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decide_and_emit(
    cache: &mut FlowCache,
    counters: &CounterBlock,
    tally: &mut Tally,
    snap: &Snapshot,
    dp: &Datapath,
    key: &FlowKey,
    frame: &[u8],
    h: u64,
    generation: u64,
    epoch: &mut u64,
    now: u64,
    out: &mut Vec<Output>,
) -> Verdict {
    let macs = &dp.macs;
    let d = match cache.get(key, h, generation, *epoch, now) {
        Some(e) => {
            tally.hits += 1;
            if let Some(o) = e.unicast {
                out.push(o);
                tally.tx(counters, o.port);
                return Verdict::Forward;
            }
            let d = e.decision;
            if let Some(slot) = d.learn_slot {
                macs.touch(slot, now);
            }
            d
        }
        None => {
            tally.misses += 1;
            miss(cache, snap, macs, key, h, generation, epoch, now)
        }
    };
    if let Some(reason) = d.drop {
        return dropped(counters, key.in_port(), reason);
    }
    if d.firewall {
        return firewall_emit(counters, tally, snap, dp, key, d.fwd, frame, now, out);
    }
    match d.fwd {
        Fwd::Unicast(o) => {
            out.push(o);
            tally.tx(counters, o.port);
        }
        Fwd::Dhcp => return Verdict::Dhcp,
        Fwd::Metadata => return Verdict::Metadata,
        f => {
            let start = out.len();
            pipeline::expand(snap, key.in_port(), f, out);
            for o in &out[start..] {
                tally.tx(counters, o.port);
            }
        }
    }
    Verdict::Forward
}

/// The firewall stage for one frame that crosses a firewalled port (out of line: ports without
/// security groups never come here): egress rules of the sending port, then the outputs, each
/// kept only if its port's ingress rules admit the frame. Denials are counted on the port whose
/// rules denied; the frame is dropped when no output is left.
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn firewall_emit(
    counters: &CounterBlock,
    tally: &mut Tally,
    snap: &Snapshot,
    dp: &Datapath,
    key: &FlowKey,
    fwd: Fwd,
    frame: &[u8],
    now: u64,
    out: &mut Vec<Output>,
) -> Verdict {
    use crate::secgroup::{self, Direction, Packet};
    let in_port = key.in_port();
    let start = out.len();
    match fwd {
        Fwd::Unicast(o) => out.push(o),
        f => {
            pipeline::expand(snap, in_port, f, out);
        }
    }
    // Non-IP frames (ARP) pass, as in Neutron's firewall; port security has checked them.
    let pkt = FrameView::parse(frame)
        .ok()
        .and_then(|v| Packet::parse(frame, &v));
    let Some(pkt) = pkt else {
        for o in &out[start..] {
            tally.tx(counters, o.port);
        }
        return Verdict::Forward;
    };
    let mut ct = dp.conntrack();
    let zone = |p: PortNo| snap.port(p).map_or(0, |i| i.local_vlan);
    if let Some(fw) = snap.firewall(in_port) {
        match secgroup::check(
            &mut ct,
            &fw.fw,
            zone(in_port),
            in_port,
            Direction::Egress,
            &pkt,
            now,
        ) {
            Ok(a) => {
                if let Some(r) = a.rule() {
                    fw.hit(r);
                }
            }
            Err(deny) => {
                out.truncate(start);
                if deny == secgroup::Deny::TableFull {
                    report_refusals(&mut ct, now);
                }
                return dropped(counters, in_port, secgroup::drop_reason(deny));
            }
        }
    }
    let mut kept = start;
    let mut last = None;
    for i in start..out.len() {
        let o = out[i];
        if let Some(fw) = snap.firewall(o.port) {
            match secgroup::check(
                &mut ct,
                &fw.fw,
                zone(o.port),
                o.port,
                Direction::Ingress,
                &pkt,
                now,
            ) {
                Ok(a) => {
                    if let Some(r) = a.rule() {
                        fw.hit(r);
                    }
                }
                Err(deny) => {
                    if deny == secgroup::Deny::TableFull {
                        report_refusals(&mut ct, now);
                    }
                    let reason = secgroup::drop_reason(deny);
                    counters.dropped(o.port, reason);
                    last = Some(reason);
                    continue;
                }
            }
        }
        out[kept] = o;
        kept += 1;
        tally.tx(counters, o.port);
    }
    out.truncate(kept);
    match last {
        Some(reason) if kept == start => Verdict::Drop { reason },
        _ => Verdict::Forward,
    }
}

/// Logs the connections the full table refused, at most once per
/// [`crate::secgroup::conntrack::REFUSAL_LOG_INTERVAL`] (the core keeps the limit): a SYN flood
/// is visible in the log without writing a line per packet.
pub(crate) fn report_refusals(ct: &mut ConnTable, now: u64) {
    if let Some(n) = ct.refusal_report(now) {
        tracing::warn!(
            refused = n,
            capacity = ct.capacity(),
            "connection table full: new connections refused (a flood, or [switch] \
             conntrack_size too small)"
        );
    }
}

/// Counts a drop (out of line: the hot loop stays small).
#[cold]
#[inline(never)]
fn dropped(counters: &CounterBlock, port: PortNo, reason: DropReason) -> Verdict {
    counters.dropped(port, reason);
    Verdict::Drop { reason }
}

/// The full pipeline for a key the flow cache does not hold (fresh); the decision is cached.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn miss(
    cache: &mut FlowCache,
    snap: &Snapshot,
    macs: &MacTable,
    key: &FlowKey,
    h: u64,
    generation: u64,
    epoch: &mut u64,
    now: u64,
) -> Decision {
    // Read the epoch before deciding: if the table changes meanwhile (our own learning
    // included) the entry is stale at once and recomputed next time.
    let before = macs.epoch();
    let d = pipeline::decide(snap, macs, key, now, true, &mut NoTrace);
    cache.put(*key, h, generation, before, d);
    // Later frames of the batch must see changes this frame made to the table.
    *epoch = macs.epoch();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::FrameBuilder;
    use crate::mac::MacAddr;
    use crate::SwitchConfig;

    const CFG: &str = r#"
[[physnet]]
name = "physnet"
interface = "eth1"

[[network]]
name = "n1"
type = "vlan"
physnet = "physnet"
segmentation_id = 100

[[port]]
name = "vm1"
network = "n1"
mac = "fa:16:3e:00:00:01"
fixed_ips = ["10.0.0.1"]

[[port]]
name = "vm2"
network = "n1"
mac = "fa:16:3e:00:00:02"
fixed_ips = ["10.0.0.2"]

[[port]]
name = "vm3"
network = "n1"
mac = "fa:16:3e:00:00:03"
port_security = false
"#;

    fn m(i: u8) -> MacAddr {
        MacAddr([0xfa, 0x16, 0x3e, 0, 0, i])
    }

    /// Frames of every kind the batch path handles differently: straight-line IPv4, general
    /// parser, parse errors, spoofs, floods, unicast to a VM and to the uplink.
    fn mixed(n: usize) -> Vec<Vec<u8>> {
        let remote = MacAddr([0x52, 0x54, 0, 0, 0, 9]);
        (0..n)
            .map(|i| match i % 9 {
                0 => {
                    FrameBuilder::udp4(m(1), m(2), [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2)
                        .build()
                }
                1 => FrameBuilder::udp4(
                    m(1),
                    remote,
                    [10, 0, 0, 1].into(),
                    [10, 0, 0, 2].into(),
                    1,
                    2,
                )
                .build(),
                2 => FrameBuilder::arp(m(1), 1, [10, 0, 0, 1].into(), [10, 0, 0, 2].into()).build(),
                3 => vec![0u8; 10 + i % 5],
                4 => {
                    FrameBuilder::udp4(m(1), m(2), [10, 0, 0, 9].into(), [10, 0, 0, 2].into(), 1, 2)
                        .build()
                }
                5 => FrameBuilder::udp4(
                    m(1),
                    m(2),
                    [10, 0, 0, 1].into(),
                    [10, 0, 0, 2].into(),
                    67,
                    68,
                )
                .build(),
                6 => {
                    FrameBuilder::udp4(m(1), m(3), [10, 0, 0, 1].into(), [10, 0, 0, 3].into(), 5, 6)
                        .dot1q(7)
                        .build()
                }
                7 => {
                    FrameBuilder::udp4(m(9), m(2), [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, 2)
                        .build()
                }
                _ => FrameBuilder::udp4(
                    m(1),
                    MacAddr::BROADCAST,
                    [10, 0, 0, 1].into(),
                    [10, 0, 0, 255].into(),
                    1,
                    i as u16,
                )
                .build(),
            })
            .collect()
    }

    fn host() -> (Arc<Datapath>, PortNo, PortNo) {
        let cfg = SwitchConfig::from_toml(CFG, "t.toml").unwrap();
        let dp = Arc::new(Datapath::new(Snapshot::compile(&cfg, None).unwrap()));
        let snap = dp.snapshot();
        let vm1 = snap.port_by_name("vm1").unwrap().no;
        let up = snap.port_by_name("eth1").unwrap().no;
        // vm2 is learned where it is; the remote MAC behind the uplink.
        let mut w = dp.worker();
        let mut out = Vec::new();
        let f = FrameBuilder::udp4(
            MacAddr([0x52, 0x54, 0, 0, 0, 9]),
            MacAddr::BROADCAST,
            [10, 9, 0, 1].into(),
            [10, 9, 0, 2].into(),
            1,
            2,
        )
        .dot1q(100)
        .build();
        assert_eq!(w.process(up, &f, 0, &mut out), Verdict::Forward);
        (dp, vm1, up)
    }

    #[test]
    fn a_batch_decides_and_counts_like_single_frames() {
        // 100 frames: more than one group, the last one partial; every frame kind repeated so
        // that later copies hit the flow cache.
        let frames = mixed(100);
        let (dp_a, vm1, _) = host();
        let mut wa = dp_a.worker();
        let mut single = Vec::new();
        let mut single_out = Vec::new();
        for f in &frames {
            let mut o = Vec::new();
            let v = wa.process(vm1, f, 1, &mut o);
            single.push(v);
            single_out.push(o);
        }
        let (dp_b, vm1b, _) = host();
        assert_eq!(vm1, vm1b);
        let mut wb = dp_b.worker();
        let mut out = Vec::new();
        let mut res = Vec::new();
        wb.process_batch(
            vm1,
            frames.iter().map(|f| f.as_slice()),
            1,
            &mut out,
            &mut res,
        );
        assert_eq!(res.len(), frames.len());
        let mut end = 0;
        for (i, r) in res.iter().enumerate() {
            assert_eq!(r.verdict, single[i], "frame {i}");
            assert_eq!(r.outputs.start, end, "frame {i}");
            assert_eq!(
                &out[r.outputs.clone()],
                single_out[i].as_slice(),
                "frame {i}"
            );
            end = r.outputs.end;
        }
        assert_eq!(end, out.len());
        assert!(single.contains(&Verdict::Forward));
        assert!(single.iter().any(|v| matches!(v, Verdict::Drop { .. })));
        let (ca, cb) = (dp_a.counters(), dp_b.counters());
        assert_eq!(ca.ports, cb.ports);
        assert_eq!(ca.stage_drops, cb.stage_drops);
        assert_eq!(ca.processed, cb.processed);
        assert_eq!(
            ca.flow_cache_hits + ca.flow_cache_misses,
            cb.flow_cache_hits + cb.flow_cache_misses
        );
        assert!(cb.flow_cache_hits > 50, "{cb:?}");
        // Same again on the warm cache: every fresh frame is now a hit.
        let hits = cb.flow_cache_hits;
        out.clear();
        res.clear();
        wb.process_batch(
            vm1,
            frames.iter().map(|f| f.as_slice()),
            2,
            &mut out,
            &mut res,
        );
        let parsed = frames.iter().filter(|f| f.len() >= 14).count() as u64;
        assert_eq!(dp_b.counters().flow_cache_hits - hits, parsed);
        for (i, r) in res.iter().enumerate() {
            assert_eq!(r.verdict, single[i], "frame {i}");
        }
    }
}
