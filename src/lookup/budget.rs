//! The provider budget: how many requests per second (and per UTC day) one provider may receive
//! from the whole cluster.
//!
//! # How it works
//!
//! A GCRA (generic cell rate algorithm) over one shared clock. For each provider the gate keeps
//! the *theoretical arrival time* (TAT): the earliest instant the next request may be sent.
//! Reserving a slot is one atomic step:
//!
//! ```text
//! slot = max(tat, now)
//! tat  = slot + interval
//! ```
//!
//! and the caller waits until `slot` before it sends. Slots handed out are therefore at least
//! `interval` apart whichever process asked for them, so when every process reserves through
//! the same gate the provider never sees more than the budget. Each process also paces itself
//! locally (governor, in [`super::Lookup`]) so that it asks the gate at most at the budget's
//! rate and never hammers it.
//!
//! [`LocalBudget`] is the in-process gate: one `Mutex`ed map. It makes the budget hold for every
//! `Lookup` of one process (one per worker, or one shared by all).
//!
//! # The cluster-wide gate on the result store
//!
//! For several processes, the same two lines run in the database, which is the clock and the
//! lock every process shares. One row per provider:
//!
//! ```sql
//! CREATE TABLE provider_budget (
//!     provider TEXT PRIMARY KEY,
//!     tat_ms   DOUBLE PRECISION NOT NULL,  -- theoretical arrival time, unix ms (REAL in SQLite)
//!     seen_ms  DOUBLE PRECISION NOT NULL,  -- the database's clock at the last reservation
//!     day      BIGINT NOT NULL,            -- UTC day number (unix ms / 86 400 000) of `used`
//!     used     BIGINT NOT NULL             -- requests reserved on `day`
//! );
//! ```
//!
//! `reserve(provider, interval_ms, daily_quota)` is then two statements (in autocommit; the
//! first only makes sure the row exists):
//!
//! SQLite (3.35+ for `RETURNING`, 3.33+ for `UPDATE … FROM`; the bundled one is newer). A
//! single statement is atomic, and `'now'` is the same value everywhere within one statement:
//!
//! ```sql
//! INSERT INTO provider_budget (provider, tat_ms, seen_ms, day, used)
//! VALUES (?1, 0, 0, 0, 0) ON CONFLICT (provider) DO NOTHING;
//!
//! UPDATE provider_budget AS b
//! SET used    = CASE WHEN b.day = c.day THEN b.used + 1 ELSE 1 END,
//!     day     = c.day,
//!     tat_ms  = max(b.tat_ms, c.now_ms) + ?2,
//!     seen_ms = c.now_ms
//! FROM (SELECT now_ms, CAST(now_ms / 86400000 AS INTEGER) AS day
//!       FROM (SELECT (julianday('now') - 2440587.5) * 86400000.0 AS now_ms)) AS c
//! WHERE b.provider = ?1
//!   AND (?3 IS NULL OR b.day <> c.day OR b.used < ?3)
//! RETURNING tat_ms - ?2 AS slot_ms, seen_ms AS now_ms, day;
//! ```
//!
//! PostgreSQL (the `UPDATE` takes the row lock; a concurrent reservation waits for it and then
//! re-reads the row, so slots stay `interval` apart; its `now_ms` may be a little old then,
//! which only makes its wait longer, never shorter):
//!
//! ```sql
//! INSERT INTO provider_budget (provider, tat_ms, seen_ms, day, used)
//! VALUES ($1, 0, 0, 0, 0) ON CONFLICT (provider) DO NOTHING;
//!
//! UPDATE provider_budget AS b
//! SET used    = CASE WHEN b.day = c.day THEN b.used + 1 ELSE 1 END,
//!     day     = c.day,
//!     tat_ms  = GREATEST(b.tat_ms, c.now_ms) + $2,
//!     seen_ms = c.now_ms
//! FROM (SELECT now_ms, floor(now_ms / 86400000)::bigint AS day
//!       FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms) AS t) AS c
//! WHERE b.provider = $1
//!   AND ($3::bigint IS NULL OR b.day <> c.day OR b.used < $3)
//! RETURNING b.tat_ms - $2 AS slot_ms, b.seen_ms AS now_ms, b.day;
//! ```
//!
//! One returned row: `Slot { at_ms: slot_ms, wait: slot_ms - now_ms }` (both on the database's
//! clock, so clock skew between machines does not matter). No row: the daily quota is spent;
//! `resets_at_ms = (current UTC day + 1) * 86 400 000`. A database error maps to
//! [`BudgetError::Unavailable`] (the lookup is then retried later, not failed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use futures::future::BoxFuture;

use crate::store::ResultStore;
pub use crate::store::DAY_MS;

/// A reserved request slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    /// When the request may be sent: unix milliseconds on the gate's clock.
    pub at_ms: f64,
    /// How long after the gate answered that is (measured on the gate's clock, so a caller on
    /// another machine needs no synchronised clock: it sleeps `wait` from the answer).
    pub wait: Duration,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// Every request of today's quota is taken.
    #[error("daily quota spent; resets at {}", super::fmt_unix_ms(*resets_at_ms))]
    QuotaExhausted { resets_at_ms: i64 },
    /// The shared gate cannot be reached (store down): try again later.
    #[error("provider budget unavailable: {0}")]
    Unavailable(String),
}

/// The shared budget of every provider. Implementations must be atomic across every process
/// that uses the same provider (see the module docs for the store-backed one).
pub trait BudgetGate: Send + Sync {
    /// Reserves the next request slot of `provider`: slots are at least `interval_ms` apart.
    /// With `daily_quota`, at most that many slots are handed out per UTC day; after that,
    /// `QuotaExhausted`. Every request sent, retries included, takes one slot.
    fn reserve<'a>(
        &'a self,
        provider: &'a str,
        interval_ms: f64,
        daily_quota: Option<u64>,
    ) -> BoxFuture<'a, Result<Slot, BudgetError>>;
}

/// The in-process gate: the budget holds across every `Lookup` of this process.
#[derive(Debug, Default)]
pub struct LocalBudget {
    providers: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    tat_ms: f64,
    day: i64,
    used: u64,
}

impl LocalBudget {
    pub fn new() -> LocalBudget {
        LocalBudget::default()
    }

    /// The reservation at `now_ms` (unix ms); separate from the clock for tests.
    pub fn reserve_at(
        &self,
        provider: &str,
        interval_ms: f64,
        daily_quota: Option<u64>,
        now_ms: f64,
    ) -> Result<Slot, BudgetError> {
        let mut map = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(provider.to_string()).or_default();
        let day = (now_ms / DAY_MS as f64).floor() as i64;
        if entry.day != day {
            entry.day = day;
            entry.used = 0;
        }
        if daily_quota.is_some_and(|q| entry.used >= q) {
            return Err(BudgetError::QuotaExhausted {
                resets_at_ms: (day + 1) * DAY_MS,
            });
        }
        entry.used += 1;
        let at_ms = entry.tat_ms.max(now_ms);
        entry.tat_ms = at_ms + interval_ms.max(0.0);
        Ok(Slot {
            at_ms,
            wait: Duration::from_secs_f64(((at_ms - now_ms) / 1000.0).max(0.0)),
        })
    }

    /// Requests reserved today (UTC) for `provider`.
    pub fn used_today(&self, provider: &str) -> u64 {
        let day = (unix_ms() / DAY_MS as f64).floor() as i64;
        let map = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(provider)
            .filter(|e| e.day == day)
            .map_or(0, |e| e.used)
    }
}

impl BudgetGate for LocalBudget {
    fn reserve<'a>(
        &'a self,
        provider: &'a str,
        interval_ms: f64,
        daily_quota: Option<u64>,
    ) -> BoxFuture<'a, Result<Slot, BudgetError>> {
        let result = self.reserve_at(provider, interval_ms, daily_quota, unix_ms());
        Box::pin(std::future::ready(result))
    }
}

/// The budget of every provider kept in the store: shared by every process that opens it.
impl BudgetGate for ResultStore {
    fn reserve<'a>(
        &'a self,
        provider: &'a str,
        interval_ms: f64,
        daily_quota: Option<u64>,
    ) -> BoxFuture<'a, Result<Slot, BudgetError>> {
        Box::pin(async move {
            match self
                .reserve_budget_slot(provider, interval_ms, daily_quota)
                .await
            {
                Ok(Ok(r)) => Ok(Slot {
                    at_ms: r.at_ms,
                    wait: r.wait,
                }),
                Ok(Err(spent)) => Err(BudgetError::QuotaExhausted {
                    resets_at_ms: spent.resets_at_ms,
                }),
                Err(e) => Err(BudgetError::Unavailable(e.to_string())),
            }
        })
    }
}

/// Now, in unix milliseconds (fractional).
pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_an_interval_apart_and_idle_time_is_not_banked() {
        let gate = LocalBudget::new();
        let t0 = 1_000_000.0;
        let a = gate.reserve_at("p", 100.0, None, t0).unwrap();
        let b = gate.reserve_at("p", 100.0, None, t0).unwrap();
        let c = gate.reserve_at("p", 100.0, None, t0 + 10.0).unwrap();
        assert_eq!(a.at_ms, t0);
        assert_eq!(a.wait, Duration::ZERO);
        assert_eq!(b.at_ms, t0 + 100.0);
        assert_eq!(c.at_ms, t0 + 200.0);
        assert_eq!(c.wait, Duration::from_millis(190));
        // A long idle period gives no burst afterwards.
        let d = gate.reserve_at("p", 100.0, None, t0 + 10_000.0).unwrap();
        let e = gate.reserve_at("p", 100.0, None, t0 + 10_000.0).unwrap();
        assert_eq!(d.at_ms, t0 + 10_000.0);
        assert_eq!(e.at_ms, t0 + 10_100.0);
        // Providers are independent.
        let other = gate.reserve_at("q", 100.0, None, t0 + 10_000.0).unwrap();
        assert_eq!(other.wait, Duration::ZERO);
    }

    #[test]
    fn the_daily_quota_counts_per_utc_day() {
        let gate = LocalBudget::new();
        let day = 20_000i64;
        let t = (day * DAY_MS) as f64 + 3_600_000.0;
        for _ in 0..3 {
            gate.reserve_at("p", 0.0, Some(3), t).unwrap();
        }
        assert_eq!(
            gate.reserve_at("p", 0.0, Some(3), t + 1.0),
            Err(BudgetError::QuotaExhausted {
                resets_at_ms: (day + 1) * DAY_MS
            })
        );
        // The next UTC day starts afresh.
        let next = ((day + 1) * DAY_MS) as f64;
        assert!(gate.reserve_at("p", 0.0, Some(3), next).is_ok());
    }
}
