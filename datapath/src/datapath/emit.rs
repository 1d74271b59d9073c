//! One frame's decision (flow cache hit, or the full pipeline on a miss) turned into outputs and
//! counters, with the firewall stage for frames crossing a firewalled port. Shared by
//! [`super::Worker::process`] and [`super::Worker::process_batch`].

use super::flow_cache::FlowCache;
use super::Datapath;
use crate::counters::CounterBlock;
use crate::frame::FrameView;
use crate::mac_table::MacTable;
use crate::pipeline::{self, Decision, FlowKey, Fwd, NoTrace};
use crate::secgroup::ConnTable;
use crate::snapshot::Snapshot;
use crate::verdict::{DropReason, Output, PortNo, Verdict};

/// Counter updates of one batch, added to the worker's block once at its end: flow cache hits
/// and misses, and transmitted copies as runs of the same egress port.
pub(super) struct Tally {
    pub(super) hits: u64,
    pub(super) misses: u64,
    tx_port: PortNo,
    tx_n: u64,
}

impl Tally {
    pub(super) const NEW: Tally = Tally {
        hits: 0,
        misses: 0,
        tx_port: PortNo(0),
        tx_n: 0,
    };

    #[inline(always)]
    pub(super) fn tx(&mut self, counters: &CounterBlock, port: PortNo) {
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
    pub(super) fn flush(&mut self, counters: &CounterBlock) {
        self.flush_tx(counters);
        counters.cache_n(self.hits, self.misses);
        self.hits = 0;
        self.misses = 0;
    }
}

/// Flow cache lookup (or full pipeline on a miss), counters, outputs.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn decide_and_emit(
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
pub(super) fn dropped(counters: &CounterBlock, port: PortNo, reason: DropReason) -> Verdict {
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
