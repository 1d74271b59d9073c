//! [`Datapath`]: the shared switch state (snapshot behind an atomic pointer, MAC table, counter
//! registry) and [`Worker`]: one per packet thread, owning a flow cache and a counter block.
//!
//! ```text
//!  Datapath (shared: snapshot, MAC table, conntrack, counter blocks)   trace: weft trace
//!     │ worker()
//!     ▼
//!  Worker (one per thread) ── process / process_batch ──► emit: flow_cache hit, or the
//!                                                         pipeline on a miss; firewall stage
//! ```

use crate::counters::{CounterBlock, Counters};
use crate::dhcp::{DhcpCounters, DhcpStats};
use crate::mac_table::{MacEntry, MacTable};
use crate::metadata::{MetadataServer, MetadataStats};
use crate::secgroup::ConnTable;
use crate::snapshot::Snapshot;
use crate::verdict::{PortNo, Verdict};
use arc_swap::ArcSwap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

mod emit;
mod flow_cache;
mod trace;
mod worker;

pub(crate) use emit::report_refusals;
pub use worker::Worker;

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
        Worker::new(self, block)
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
}
