//! The circuit breaker: a sustained outage stops the requests instead of burning retries.
//!
//! Closed: lookups run. After `threshold` consecutive lookups that ended in a transient failure
//! (their retries spent), it opens for a cool-down: every lookup fails fast. When the cool-down
//! is over, the next lookup is the probe (half-open): one request, and the others wait for its
//! outcome. Success closes the circuit; failure opens it again for twice as long (up to the
//! maximum).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Clone, Copy, Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cooldown: Duration },
    HalfOpen,
}

pub(crate) struct Circuit {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    threshold: u32,
    base: Duration,
    max: Duration,
    pub(crate) opens: AtomicU64,
}

pub(crate) enum Admission<'a> {
    Closed,
    Probe(ProbeGuard<'a>),
    Open(Duration),
}

impl Circuit {
    pub(crate) fn new(threshold: u32, base: Duration, max: Duration) -> Circuit {
        Circuit {
            state: Mutex::new(State::Closed { failures: 0 }),
            changed: watch::channel(0).0,
            threshold: threshold.max(1),
            base,
            max: max.max(base),
            opens: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, state: &mut State, new: State) {
        if matches!(new, State::Open { .. }) && !matches!(*state, State::Open { .. }) {
            self.opens.fetch_add(1, Ordering::Relaxed);
        }
        *state = new;
        self.changed.send_modify(|n| *n += 1);
    }

    /// May a lookup run now? While a probe is in flight this waits for its outcome.
    pub(crate) async fn admit(&self) -> Admission<'_> {
        loop {
            let mut rx = self.changed.subscribe();
            {
                let mut state = self.lock();
                match *state {
                    State::Closed { .. } => return Admission::Closed,
                    State::Open { until, .. } => {
                        let now = Instant::now();
                        if now < until {
                            return Admission::Open(until - now);
                        }
                        let State::Open { cooldown, .. } = *state else {
                            unreachable!()
                        };
                        self.set(&mut state, State::HalfOpen);
                        return Admission::Probe(ProbeGuard {
                            circuit: self,
                            cooldown,
                            resolved: false,
                        });
                    }
                    State::HalfOpen => {}
                }
            }
            let _ = rx.changed().await;
        }
    }

    /// Open now or a probe in flight: consumers should pause.
    pub(crate) fn is_open(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => false,
            State::Open { until, .. } => Instant::now() < until,
            State::HalfOpen => true,
        }
    }

    /// How long the circuit stays open from now (zero when it is not open).
    pub(crate) fn open_for(&self) -> Duration {
        match *self.lock() {
            State::Open { until, .. } => until.saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        }
    }

    /// The provider answered (whatever the answer): the failure streak ends.
    pub(crate) fn record_success(&self) {
        let mut state = self.lock();
        if let State::Closed { failures } = &mut *state {
            *failures = 0;
        }
    }

    /// A lookup ended in a transient failure after its retries.
    pub(crate) fn record_failure(&self) {
        let mut state = self.lock();
        if let State::Closed { failures } = *state {
            let failures = failures + 1;
            if failures >= self.threshold {
                tracing::warn!(
                    "address provider failed {failures} lookups in a row; pausing for {:?}",
                    self.base
                );
                let new = State::Open {
                    until: Instant::now() + self.base,
                    cooldown: self.base,
                };
                self.set(&mut state, new);
            } else {
                *state = State::Closed { failures };
            }
        }
    }

    /// The provider asked for a pause (a long `Retry-After`): open for at least `pause`.
    pub(crate) fn trip_for(&self, pause: Duration) {
        let mut state = self.lock();
        let until = Instant::now() + pause;
        let new = match *state {
            State::Open { until: u, cooldown } => State::Open {
                until: u.max(until),
                cooldown,
            },
            _ => State::Open {
                until,
                cooldown: self.base,
            },
        };
        self.set(&mut state, new);
    }
}

/// The one request allowed while half-open. Dropped unresolved (the lookup was cancelled), it
/// lets the next lookup probe instead.
pub(crate) struct ProbeGuard<'a> {
    circuit: &'a Circuit,
    cooldown: Duration,
    resolved: bool,
}

impl ProbeGuard<'_> {
    pub(crate) fn succeeded(mut self) {
        self.resolved = true;
        let mut state = self.circuit.lock();
        tracing::info!("address provider answers again; resuming");
        self.circuit.set(&mut state, State::Closed { failures: 0 });
    }

    pub(crate) fn failed(mut self) {
        self.resolved = true;
        let cooldown = (self.cooldown * 2).min(self.circuit.max);
        let mut state = self.circuit.lock();
        tracing::warn!("address provider still failing; pausing for {cooldown:?}");
        self.circuit.set(
            &mut state,
            State::Open {
                until: Instant::now() + cooldown,
                cooldown,
            },
        );
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            let mut state = self.circuit.lock();
            if matches!(*state, State::HalfOpen) {
                let new = State::Open {
                    until: Instant::now(),
                    cooldown: self.cooldown,
                };
                self.circuit.set(&mut state, new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_after_the_threshold_and_a_probe_closes_it() {
        let ms = Duration::from_millis;
        let c = Circuit::new(3, ms(200), ms(1000));
        for _ in 0..2 {
            c.record_failure();
        }
        c.record_success();
        for _ in 0..2 {
            c.record_failure();
        }
        assert!(!c.is_open());
        c.record_failure();
        assert!(c.is_open());
        assert!(matches!(c.admit().await, Admission::Open(_)));
        tokio::time::sleep(ms(210)).await;
        assert!(!c.is_open());
        let Admission::Probe(probe) = c.admit().await else {
            panic!("expected a probe")
        };
        assert!(c.is_open());
        probe.failed();
        // Twice the cool-down now.
        assert!(matches!(c.admit().await, Admission::Open(left) if left > ms(210)));
        tokio::time::sleep(ms(410)).await;
        let Admission::Probe(probe) = c.admit().await else {
            panic!("expected a probe")
        };
        probe.succeeded();
        assert!(matches!(c.admit().await, Admission::Closed));
        assert_eq!(c.opens.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_cancelled_probe_lets_the_next_lookup_probe() {
        let c = Circuit::new(1, Duration::from_millis(1), Duration::from_millis(1));
        c.record_failure();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Admission::Probe(probe) = c.admit().await else {
            panic!("expected a probe")
        };
        drop(probe);
        assert!(matches!(c.admit().await, Admission::Probe(_)));
    }
}
