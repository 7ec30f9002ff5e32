//! The cells a worker counts in. Each is written by one thread only (the worker that
//! owns its shard) and read by the scrape: a plain load and store, never a
//! read-modify-write, so counting takes no lock prefix and its cache line moves to
//! another core only when a scrape reads it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// A count that only grows.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this: two writers would lose counts.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A count that goes up and down (open connections). One worker's value may be
/// negative for a moment when a connection moves; only the sum over workers means
/// anything.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n`, which may be negative. Only the owning worker calls this.
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets the value. Only the owning worker calls this.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A histogram of durations: a count per bucket (not cumulative: the scrape adds them
/// up) and the sum, in nanoseconds.
#[derive(Debug)]
pub struct Histogram {
    /// One per bound, then the one above the last bound (`+Inf`).
    buckets: Box<[Counter]>,
    sum_nanos: Counter,
}

impl Histogram {
    pub fn new(bounds: usize) -> Self {
        Self {
            buckets: (0..=bounds).map(|_| Counter::default()).collect(),
            sum_nanos: Counter::default(),
        }
    }

    /// Counts one observation of `nanos` against `bounds` (nanoseconds, ascending):
    /// a scan, as there are a dozen bounds and most requests fall in the first few.
    #[inline]
    pub fn observe(&self, bounds: &[u64], nanos: u64) {
        let i = bounds
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(bounds.len());
        self.buckets[i].add(1);
        self.sum_nanos.add(nanos);
    }

    /// Adds this histogram's buckets into `into` and returns its sum.
    pub fn merge_into(&self, into: &mut [u64]) -> u64 {
        for (total, bucket) in into.iter_mut().zip(self.buckets.iter()) {
            *total += bucket.get();
        }
        self.sum_nanos.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_in_the_first_bucket_that_holds_them() {
        let bounds = [1_000, 10_000];
        let histogram = Histogram::new(bounds.len());
        for nanos in [0, 1_000, 1_001, 10_000, 10_001, u64::MAX / 4] {
            histogram.observe(&bounds, nanos);
        }
        let mut buckets = [0; 3];
        let sum = histogram.merge_into(&mut buckets);
        assert_eq!(buckets, [2, 2, 2]);
        assert_eq!(sum, 1_000 + 1_001 + 10_000 + 10_001 + u64::MAX / 4);
    }
}
