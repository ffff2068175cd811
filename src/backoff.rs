//! One way to wait between tries: capped exponential backoff, optionally with full jitter.
//! The bus's start-up wait, the workers' store and engine retries, the lookup retries and the
//! outage wait all use it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: bool,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// `base`, doubling each time up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            jitter: false,
            attempt: 0,
            rng: seed(),
        }
    }

    /// Full jitter: each delay is uniform in [0, min(cap, base·2ⁿ)], so many callers that
    /// failed together do not come back together.
    pub fn full_jitter(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The ceiling of the next delay (without jitter: the delay itself).
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap)
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if self.jitter {
            ceiling.mul_f64(self.unit())
        } else {
            ceiling
        }
    }

    /// Sleeps the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// xorshift64*: uniform in [0, 1); quality enough for jitter.
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Different for every Backoff of the process, and between processes.
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
    (t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn full_jitter_spreads_under_the_ceiling() {
        for n in 0..10u32 {
            let ceiling = Duration::from_millis(200 * (1 << n)).min(Duration::from_secs(1));
            let draws: Vec<Duration> = (0..200)
                .map(|_| {
                    let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1))
                        .full_jitter();
                    for _ in 0..n {
                        b.next_delay();
                    }
                    b.next_delay()
                })
                .collect();
            assert!(draws.iter().all(|d| *d <= ceiling));
            // Spread over the range, not stuck at one end.
            assert!(draws.iter().any(|d| *d < ceiling / 4));
            assert!(draws.iter().any(|d| *d > ceiling * 3 / 4));
        }
    }
}
