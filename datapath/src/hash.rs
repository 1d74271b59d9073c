//! A small, fast, non-cryptographic hasher for switch-internal tables (keys are not
//! attacker-chosen in a way that matters: tables are bounded and collisions only cost time).

use std::hash::{BuildHasher, Hasher};

const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Mixes one word into a running hash.
#[inline]
pub(crate) fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(26)
}

/// Final avalanche so low bits (used for indexing) depend on all input bits.
#[inline]
pub(crate) fn finish(h: u64) -> u64 {
    let h = h ^ (h >> 32);
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29)
}

/// Hasher for `HashMap`s keyed by integers.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        finish(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.0 = mix(self.0, u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = mix(self.0, i);
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = mix(self.0, u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.0 = mix(self.0, u64::from(i));
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = mix(self.0, u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = mix(self.0, i as u64);
    }
}

/// `BuildHasher` for [`FxHasher`].
#[derive(Default, Clone, Copy)]
pub(crate) struct FxBuild;

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}
