//! A lock-free, fixed-bucket histogram of fsync (`persist(SyncData)`) latency.
//!
//! The writer thread records one observation per fsync: a few relaxed atomic adds,
//! no allocation, no lock. Monitoring reads a cumulative copy at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram's buckets, in seconds (0.1 ms to 1 s). Slower
/// fsyncs land only in the implicit `+Inf` bucket (the total count).
pub const FSYNC_BUCKETS_SECS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A point-in-time copy of the fsync histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsyncStats {
    /// `(upper bound in seconds, fsyncs at or below it)`, cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Total time spent in fsync, in seconds.
    pub sum_secs: f64,
    /// Number of fsyncs.
    pub count: u64,
}

/// The live histogram. Shared by the store and its writer thread.
#[derive(Debug, Default)]
pub(crate) struct FsyncHistogram {
    /// Per-bucket (not cumulative) counts; index `FSYNC_BUCKETS_SECS.len()` is `+Inf`.
    buckets: [AtomicU64; FSYNC_BUCKETS_SECS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl FsyncHistogram {
    /// Records one fsync that took `elapsed`.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = FSYNC_BUCKETS_SECS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(FSYNC_BUCKETS_SECS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A cumulative copy. Reads are not one atomic snapshot: a concurrent
    /// observation may show in the count and not yet in a bucket, so the count is
    /// taken as at least the last cumulative bucket.
    pub(crate) fn snapshot(&self) -> FsyncStats {
        let mut cumulative = 0u64;
        let buckets = FSYNC_BUCKETS_SECS
            .iter()
            .zip(&self.buckets)
            .map(|(&le, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (le, cumulative)
            })
            .collect();
        let total = cumulative + self.buckets[FSYNC_BUCKETS_SECS.len()].load(Ordering::Relaxed);
        FsyncStats {
            buckets,
            sum_secs: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed).max(total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = FsyncHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.len(), FSYNC_BUCKETS_SECS.len());
        assert_eq!(s.buckets[0], (0.0001, 1));
        let at = |le: f64| s.buckets.iter().find(|b| b.0 == le).map(|b| b.1);
        assert_eq!(at(0.0025), Some(1));
        assert_eq!(at(0.005), Some(2));
        assert_eq!(at(1.0), Some(2));
        assert!((s.sum_secs - 2.00305).abs() < 1e-9);
    }
}
