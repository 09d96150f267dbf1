//! Engine histograms: single-writer (the shard's core), plain `Cell`s, snapshot on demand.
//!
//! The engine measures in its own terms (nanoseconds of a device read or an fdatasync, entries
//! per group commit); whoever exports them decides names and units.

use std::cell::Cell;

/// Latency bucket upper bounds, ns: fine below 1 ms (a 4 KiB NVMe read is 10-100 µs), coarse
/// above. The last bucket (above the last bound) is implicit.
pub const LATENCY_BOUNDS_NS: &[u64] = &[
    25_000,
    50_000,
    75_000,
    100_000,
    150_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// Entries-per-group-commit bucket upper bounds.
pub const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// Largest number of buckets a histogram may have (bounds + 1).
pub const MAX_BUCKETS: usize = 32;
const _: () = assert!(LATENCY_BOUNDS_NS.len() < MAX_BUCKETS && BATCH_BOUNDS.len() < MAX_BUCKETS);

/// Index of the bucket `v` falls in: the first bound `>= v`, else the overflow bucket.
#[inline]
pub fn bucket_of(bounds: &[u64], v: u64) -> usize {
    bounds.partition_point(|&b| b < v)
}

/// A histogram written by one thread only.
pub struct LocalHist {
    bounds: &'static [u64],
    counts: [Cell<u64>; MAX_BUCKETS],
    sum: Cell<u64>,
}

impl LocalHist {
    pub fn new(bounds: &'static [u64]) -> LocalHist {
        assert!(bounds.len() < MAX_BUCKETS && bounds.windows(2).all(|w| w[0] < w[1]));
        LocalHist {
            bounds,
            counts: Default::default(),
            sum: Cell::new(0),
        }
    }

    #[inline]
    pub fn record(&self, v: u64) {
        let c = &self.counts[bucket_of(self.bounds, v)];
        c.set(c.get() + 1);
        self.sum.set(self.sum.get().wrapping_add(v));
    }

    pub fn snapshot(&self) -> HistSnapshot {
        HistSnapshot {
            bounds: self.bounds,
            counts: self.counts[..=self.bounds.len()]
                .iter()
                .map(Cell::get)
                .collect(),
            sum: self.sum.get(),
        }
    }
}

/// A copy of a histogram: per-bucket (not cumulative) counts, one more than `bounds`.
#[derive(Debug, Clone, Default)]
pub struct HistSnapshot {
    pub bounds: &'static [u64],
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_inclusive() {
        let b = LATENCY_BOUNDS_NS;
        assert_eq!(bucket_of(b, 0), 0);
        assert_eq!(bucket_of(b, 25_000), 0);
        assert_eq!(bucket_of(b, 25_001), 1);
        assert_eq!(bucket_of(b, 99_999), 3);
        assert_eq!(bucket_of(b, 10_000_000_000), b.len() - 1);
        assert_eq!(bucket_of(b, u64::MAX), b.len());
        let h = LocalHist::new(BATCH_BOUNDS);
        for v in [1, 1, 3, 1000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts.len(), BATCH_BOUNDS.len() + 1);
        assert_eq!((s.counts[0], s.counts[2], s.counts[10]), (2, 1, 1));
        assert_eq!((s.count(), s.sum), (4, 1005));
    }
}
