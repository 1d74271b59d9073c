//! [`Worker`]: one per packet thread. It owns a flow cache and a counter block, so the packet
//! path shares nothing but the snapshot pointer and the MAC table with other threads.

use super::emit::{decide_and_emit, dropped, Tally};
use super::flow_cache::FlowCache;
use super::{Datapath, FrameResult};
use crate::counters::CounterBlock;
use crate::pipeline::FlowKey;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Verdict};
use arc_swap::cache::Cache;
use arc_swap::ArcSwap;
use std::sync::Arc;

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
    /// A worker of `dp` counting into `counters` (a block the datapath already sums).
    pub(super) fn new(dp: &Arc<Datapath>, counters: Arc<CounterBlock>) -> Worker {
        Worker {
            dp: dp.clone(),
            seen: dp.snapshot(),
            snap: Cache::new(SnapshotOf(dp.clone())),
            cache: FlowCache::new(),
            counters,
            scratch: Box::new(Scratch {
                keys: [FlowKey::default(); GROUP],
                hashes: [0; GROUP],
                errs: [None; GROUP],
                verdicts: [Verdict::Forward; GROUP],
                ends: [0; GROUP],
            }),
        }
    }

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
