//! Each worker's exact-match flow cache: a decision per flow key, stamped with the snapshot
//! generation and MAC-table epoch it was made under, so a reload or a MAC move makes it stale
//! without touching other threads.

use crate::pipeline::{Decision, FlowKey, Fwd};
use crate::snapshot::Snapshot;
use crate::verdict::Output;

/// Entries per worker (128 bytes each).
const FLOW_CACHE_SIZE: usize = 8192;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct CacheEntry {
    key: FlowKey,
    /// Snapshot generation; 0 marks an empty entry (generations start at 1).
    generation: u64,
    mac_epoch: u64,
    pub(super) decision: Decision,
    /// The decision when it is a plain unicast with nothing else to do (no drop, no MAC to
    /// refresh): the whole hit path is then one push.
    pub(super) unicast: Option<Output>,
}

// Two cache lines per entry, as before the firewall flag joined the decision.
const _: () = assert!(std::mem::size_of::<CacheEntry>() == 128);

/// Exact-match flow cache, 4-way set associative, owned by one worker (no sharing, no locks).
pub(super) struct FlowCache {
    sets: Box<[[CacheEntry; WAYS]; SETS]>,
}

const WAYS: usize = 4;
const SETS: usize = FLOW_CACHE_SIZE / WAYS;
const _: () = assert!(SETS.is_power_of_two());

impl FlowCache {
    pub(super) fn new() -> FlowCache {
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
    pub(super) fn get(
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
    pub(super) fn revalidate(&mut self, old: &Snapshot, new: &Snapshot) {
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
    pub(super) fn touch(&self, h: u64) -> u64 {
        let e = &self.set(h)[0];
        e.key.first_word() ^ e.generation
    }

    #[inline]
    pub(super) fn put(&mut self, key: FlowKey, h: u64, generation: u64, epoch: u64, d: Decision) {
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
