//! [`FaultInjector`]: a [`Port`] wrapper for tests that damages what the port receives, the
//! way a bad link or a buggy guest would: it drops every Nth frame, cuts every Mth short and
//! flips a bit in every Kth. Which frames, and how short or which bit, follow from a seed, so a
//! failing run replays exactly. Tests put it on a port with
//! [`crate::daemon::SwitchOptions::wrap_port`] and check that the switch counts what it gets
//! and keeps forwarding the rest.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Port, PortCtx, RxBatch, TxFrame, TxScratch};

/// What to damage, counted over the frames the wrapped port receives (1-based: with
/// `drop_every = 3` the 3rd, 6th, ... frames are dropped). 0 turns a fault off. A frame picked
/// for several faults gets the first of drop, truncate, corrupt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Drop every Nth frame (the switch never sees it).
    pub drop_every: u64,
    /// Cut every Nth frame to a length below an Ethernet header (0..14 bytes, from the seed).
    pub truncate_every: u64,
    /// Flip one bit (position from the seed) of every Nth frame.
    pub corrupt_every: u64,
    /// Seeds the lengths and bit positions.
    pub seed: u64,
}

/// What a [`FaultInjector`] did so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Frames the wrapped port received.
    pub seen: AtomicU64,
    /// Frames dropped.
    pub dropped: AtomicU64,
    /// Frames cut short.
    pub truncated: AtomicU64,
    /// Frames with a bit flipped.
    pub corrupted: AtomicU64,
}

/// A port whose received frames are damaged as its [`FaultConfig`] says.
pub struct FaultInjector {
    inner: Arc<dyn Port>,
    cfg: FaultConfig,
    /// xorshift64* state.
    rng: Mutex<u64>,
    counts: Arc<FaultCounts>,
}

impl FaultInjector {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Port>, cfg: FaultConfig) -> FaultInjector {
        FaultInjector {
            inner,
            cfg,
            // xorshift must not start at 0.
            rng: Mutex::new(cfg.seed | 1),
            counts: Arc::default(),
        }
    }

    /// The counts, shared: a test keeps them after handing the injector to the switch.
    pub fn counts(&self) -> Arc<FaultCounts> {
        self.counts.clone()
    }
}

fn hits(every: u64, n: u64) -> bool {
    every != 0 && n.is_multiple_of(every)
}

fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl Port for FaultInjector {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn raw_fd(&self) -> RawFd {
        self.inner.raw_fd()
    }

    fn recv(&self, ctx: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
        let before = batch.len();
        let res = self.inner.recv(ctx, batch);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let c = &self.counts;
        let mut drop = Vec::new();
        for i in before..batch.len() {
            let n = c.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if hits(self.cfg.drop_every, n) {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                drop.push(i);
            } else if hits(self.cfg.truncate_every, n) {
                c.truncated.fetch_add(1, Ordering::Relaxed);
                batch.truncate_frame(i, (next(&mut rng) % 14) as usize);
            } else if hits(self.cfg.corrupt_every, n) {
                let f = batch.frame_mut(i);
                if !f.is_empty() {
                    c.corrupted.fetch_add(1, Ordering::Relaxed);
                    let bit = next(&mut rng) % (f.len() as u64 * 8);
                    f[(bit / 8) as usize] ^= 1 << (bit % 8);
                }
            }
        }
        if !drop.is_empty() {
            batch.retain(|i| !drop.contains(&i));
        }
        res
    }

    fn send(&self, ctx: &PortCtx<'_>, batch: &RxBatch, frames: &[TxFrame], s: &mut TxScratch) {
        self.inner.send(ctx, batch, frames, s);
    }

    fn rx_pending(&self) -> bool {
        self.inner.rx_pending()
    }

    fn still_usable(&self) -> bool {
        self.inner.still_usable()
    }

    fn take_kernel_drops(&self) -> u64 {
        self.inner.take_kernel_drops()
    }

    fn drop_counts(&self) -> Vec<(&'static str, u64)> {
        self.inner.drop_counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::IoCounters;
    use crate::{Snapshot, SwitchConfig};

    /// A port that receives `n` numbered 60-byte frames per call and sends nothing.
    struct Source(u8);

    impl Port for Source {
        fn name(&self) -> &str {
            "src"
        }
        fn raw_fd(&self) -> RawFd {
            -1
        }
        fn recv(&self, _: &PortCtx<'_>, batch: &mut RxBatch) -> io::Result<()> {
            for k in 0..self.0 {
                batch.push(&[], &[k; 60]);
            }
            Ok(())
        }
        fn send(&self, _: &PortCtx<'_>, _: &RxBatch, _: &[TxFrame], _: &mut TxScratch) {}
        fn still_usable(&self) -> bool {
            true
        }
    }

    fn run(cfg: FaultConfig) -> (Vec<Vec<u8>>, Arc<FaultCounts>) {
        let snap = Snapshot::compile(&SwitchConfig::from_toml("", "t").unwrap(), None).unwrap();
        let counters = IoCounters::default();
        let ctx = PortCtx {
            snap: &snap,
            now_ns: 0,
            counters: &counters,
        };
        let f = FaultInjector::new(Arc::new(Source(20)), cfg);
        let mut b = RxBatch::new();
        f.recv(&ctx, &mut b).unwrap();
        let frames = (0..b.len()).map(|i| b.frame(i).1.to_vec()).collect();
        (frames, f.counts())
    }

    #[test]
    fn faults_hit_the_frames_the_config_picks_and_replay_from_the_seed() {
        let cfg = FaultConfig {
            drop_every: 5,
            truncate_every: 3,
            corrupt_every: 4,
            seed: 42,
        };
        let (frames, c) = run(cfg);
        // Dropped: 5, 10, 15, 20. Truncated: 3, 6, 9, 12, 18 (15 was dropped).
        // Corrupted: 4, 8, 16 (12 truncated, 20 dropped).
        assert_eq!(c.seen.load(Ordering::Relaxed), 20);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(c.truncated.load(Ordering::Relaxed), 5);
        assert_eq!(c.corrupted.load(Ordering::Relaxed), 3);
        assert_eq!(frames.len(), 16);
        let kept: Vec<u8> = (1..=20u8).filter(|n| n % 5 != 0).collect();
        for (f, n) in frames.iter().zip(&kept) {
            let k = n - 1;
            if n % 3 == 0 {
                assert!(
                    f.len() < 14 && f.iter().all(|&b| b == k),
                    "frame {n}: {f:?}"
                );
            } else if n % 4 == 0 {
                assert_eq!(f.len(), 60);
                let diff: u32 = f.iter().map(|&b| (b ^ k).count_ones()).sum();
                assert_eq!(diff, 1, "frame {n}: one bit flipped");
            } else {
                assert_eq!(f, &vec![k; 60], "frame {n} untouched");
            }
        }
        // Same seed, same damage; another seed, other lengths or bits.
        assert_eq!(run(cfg).0, frames);
        assert_ne!(run(FaultConfig { seed: 7, ..cfg }).0, frames);
        // All off: nothing changes.
        let (clean, c) = run(FaultConfig::default());
        assert_eq!(clean.len(), 20);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 0);
    }
}
