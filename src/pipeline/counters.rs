//! What this process counts; `/metrics` shows it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the transform latency buckets: a builtin batch takes well under a
/// millisecond, a PostGIS or lookup batch up to seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram that worker tasks update without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (the last is +Inf), and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len());
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            buckets.push((*b, cumulative));
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, cumulative, sum)
    }
}

/// Counters this process keeps.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows_read: AtomicU64,
    pub rows_published: AtomicU64,
    pub rows_converted: AtomicU64,
    pub rows_failed: AtomicU64,
    /// Rows a worker received but found already stored (redelivery after a crash).
    pub rows_skipped: AtomicU64,
    pub batches: AtomicU64,
    pub jobs_merged: AtomicU64,
    /// Rows whose address came from the lookup cache (or an identical point in the batch).
    pub lookup_cache_hits: AtomicU64,
    pub transform_seconds: Histogram,
}

pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(5));
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets.last().unwrap().1, 2);
        assert_eq!(count, 3);
        assert!((sum - 5.0303).abs() < 1e-6);
    }
}
