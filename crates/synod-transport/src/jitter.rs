//! Jitter for retries and redials: a splitmix64 stream seeded per process, so that peers and clients do not retry in step.

use std::time::Duration;

/// A splitmix64 stream seeded from the process's random hash keys and a salt.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A stream for `salt` (for example a link's ids, or the clock).
    pub fn new(salt: u64) -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        Jitter(h.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay drawn uniformly from `[d/2, d]`.
    pub fn around(&mut self, d: Duration) -> Duration {
        let half = d / 2;
        let nanos = half.as_nanos().min(u128::from(u64::MAX)) as u64;
        half + Duration::from_nanos(if nanos == 0 { 0 } else { self.next_u64() % (nanos + 1) })
    }
}
