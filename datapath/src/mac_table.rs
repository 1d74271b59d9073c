//! The learned MAC table, per local VLAN, shared by all workers.
//!
//! Entries live in a fixed array of slots; an index (VLAN, MAC) -> slot sits behind a RwLock
//! that only the slow path takes. A slot's `last_seen` is an atomic the flow cache refreshes
//! directly (no lock). Any change of mapping (new entry, move, removal) bumps `epoch`, which
//! invalidates flow cache entries that depended on the table.

use crate::hash::FxBuild;
use crate::mac::MacAddr;
use crate::verdict::PortNo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::RwLock;

/// A learned or static MAC entry, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    /// Local VLAN.
    pub vlan: u16,
    /// Address.
    pub mac: MacAddr,
    /// Port it was learned on.
    pub port: PortNo,
    /// Nanoseconds since last seen (0 for static entries).
    pub age_ns: u64,
    /// Configured port MAC (never ages, never moves).
    pub is_static: bool,
}

#[derive(Default)]
struct Slot {
    port: AtomicU32,
    last_seen: AtomicU64,
}

struct Index {
    map: HashMap<u64, u32, FxBuild>,
    free: Vec<u32>,
}

#[inline]
fn key(vlan: u16, mac: MacAddr) -> u64 {
    (u64::from(vlan) << 48) | mac.to_u64()
}

/// Result of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub port: PortNo,
    pub last_seen: u64,
}

pub(crate) struct MacTable {
    index: RwLock<Index>,
    slots: Box<[Slot]>,
    epoch: AtomicU64,
}

impl MacTable {
    pub fn new(capacity: usize) -> MacTable {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let slots: Vec<Slot> = (0..capacity).map(|_| Slot::default()).collect();
        MacTable {
            index: RwLock::new(Index {
                map: HashMap::with_capacity_and_hasher(capacity.min(1024), FxBuild),
                free: (0..capacity as u32).rev().collect(),
            }),
            slots: slots.into_boxed_slice(),
            epoch: AtomicU64::new(1),
        }
    }

    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh entry for (vlan, mac): seen within `aging_ns` of `now`.
    pub fn lookup(&self, vlan: u16, mac: MacAddr, now: u64, aging_ns: u64) -> Option<Found> {
        let idx = self.read();
        let &slot = idx.map.get(&key(vlan, mac))?;
        let s = &self.slots[slot as usize];
        let last_seen = s.last_seen.load(Relaxed);
        if now.saturating_sub(last_seen) > aging_ns {
            return None;
        }
        Some(Found {
            port: PortNo(s.port.load(Relaxed) as u16),
            last_seen,
        })
    }

    /// Learns (vlan, mac) on `port` at `now`; returns the slot, or None when the table is full.
    pub fn learn(&self, vlan: u16, mac: MacAddr, port: PortNo, now: u64) -> Option<u32> {
        let k = key(vlan, mac);
        {
            let idx = self.read();
            if let Some(&slot) = idx.map.get(&k) {
                let s = &self.slots[slot as usize];
                if s.port.load(Relaxed) == u32::from(port.0) {
                    s.last_seen.store(now, Relaxed);
                    return Some(slot);
                }
            }
        }
        let mut idx = self.write();
        let slot = match idx.map.get(&k) {
            Some(&slot) => slot,
            None => {
                let slot = idx.free.pop()?;
                idx.map.insert(k, slot);
                slot
            }
        };
        let s = &self.slots[slot as usize];
        s.port.store(u32::from(port.0), Relaxed);
        s.last_seen.store(now, Relaxed);
        drop(idx);
        self.bump();
        Some(slot)
    }

    /// Refreshes a slot's timestamp (flow cache hit). Skips the write when it is recent, to keep
    /// the cache line shared between cores.
    #[inline]
    pub fn touch(&self, slot: u32, now: u64) {
        if let Some(s) = self.slots.get(slot as usize) {
            let last = s.last_seen.load(Relaxed);
            if now > last.saturating_add(1_000_000) {
                s.last_seen.store(now, Relaxed);
            }
        }
    }

    /// Removes entries not seen within `aging_ns`. Returns how many.
    pub fn age(&self, now: u64, aging_ns: u64) -> usize {
        self.remove_where(|_, _, last| now.saturating_sub(last) > aging_ns)
    }

    /// Removes entries for which `f(vlan, port, last_seen)` is true.
    pub fn remove_where(&self, mut f: impl FnMut(u16, PortNo, u64) -> bool) -> usize {
        let mut idx = self.write();
        let mut gone = Vec::new();
        for (&k, &slot) in idx.map.iter() {
            let s = &self.slots[slot as usize];
            let vlan = (k >> 48) as u16;
            if f(
                vlan,
                PortNo(s.port.load(Relaxed) as u16),
                s.last_seen.load(Relaxed),
            ) {
                gone.push((k, slot));
            }
        }
        for (k, slot) in &gone {
            idx.map.remove(k);
            idx.free.push(*slot);
        }
        drop(idx);
        if !gone.is_empty() {
            self.bump();
        }
        gone.len()
    }

    /// All fresh entries.
    pub fn entries(&self, now: u64, aging_ns: u64) -> Vec<MacEntry> {
        let idx = self.read();
        let mut v: Vec<MacEntry> = idx
            .map
            .iter()
            .filter_map(|(&k, &slot)| {
                let s = &self.slots[slot as usize];
                let age = now.saturating_sub(s.last_seen.load(Relaxed));
                (age <= aging_ns).then(|| {
                    let b = k.to_be_bytes();
                    MacEntry {
                        vlan: (k >> 48) as u16,
                        mac: MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]),
                        port: PortNo(s.port.load(Relaxed) as u16),
                        age_ns: age,
                        is_static: false,
                    }
                })
            })
            .collect();
        v.sort_by_key(|e| (e.vlan, e.mac));
        v
    }

    pub fn len(&self) -> usize {
        self.read().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, i])
    }

    #[test]
    fn learn_lookup_move_age() {
        let t = MacTable::new(4);
        let e0 = t.epoch();
        let s = t.learn(1, m(1), PortNo(3), 100).unwrap();
        assert!(t.epoch() > e0);
        assert_eq!(t.lookup(1, m(1), 150, 1000).unwrap().port, PortNo(3));
        assert_eq!(t.lookup(2, m(1), 150, 1000), None, "per-VLAN");
        let e1 = t.epoch();
        assert_eq!(t.learn(1, m(1), PortNo(3), 200), Some(s));
        assert_eq!(t.epoch(), e1, "refresh does not bump");
        t.learn(1, m(1), PortNo(4), 300);
        assert!(t.epoch() > e1, "move bumps");
        assert_eq!(t.lookup(1, m(1), 300, 1000).unwrap().port, PortNo(4));
        assert_eq!(t.lookup(1, m(1), 1301, 1000), None, "stale");
        assert_eq!(t.age(1301, 1000), 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn full_table_refuses() {
        let t = MacTable::new(2);
        assert!(t.learn(1, m(1), PortNo(1), 0).is_some());
        assert!(t.learn(1, m(2), PortNo(1), 0).is_some());
        assert!(t.learn(1, m(3), PortNo(1), 0).is_none());
        t.remove_where(|_, p, _| p == PortNo(1));
        assert!(t.learn(1, m(3), PortNo(1), 0).is_some());
    }

    #[test]
    fn touch_refreshes() {
        let t = MacTable::new(2);
        let s = t.learn(1, m(1), PortNo(1), 0).unwrap();
        t.touch(s, 5_000_000);
        assert_eq!(
            t.lookup(1, m(1), 5_000_000, 10).unwrap().last_seen,
            5_000_000
        );
    }
}
