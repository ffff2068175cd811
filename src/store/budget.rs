//! The providers' budget (the GCRA of `lookup::budget`), kept in the store so that every
//! process on it shares one clock and one lock.

use std::time::Duration;

use super::{on_pool, Backend, Result, ResultStore};

/// Milliseconds in one UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// A reserved request slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reservation {
    /// When the request may be sent: unix milliseconds on the database's clock.
    pub at_ms: f64,
    /// How long after the database answered that is.
    pub wait: Duration,
}

/// Every request of today's quota is taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaSpent {
    pub resets_at_ms: i64,
}

/// The budget reservation: one statement, atomic in either database.
const BUDGET_UPDATE_SQLITE: &str = "UPDATE provider_budget AS b \
     SET used = CASE WHEN b.day = c.day THEN b.used + 1 ELSE 1 END, \
         day = c.day, \
         tat_ms = max(b.tat_ms, c.now_ms) + $2, \
         seen_ms = c.now_ms \
     FROM (SELECT now_ms, CAST(now_ms / 86400000 AS INTEGER) AS day \
           FROM (SELECT (julianday('now') - 2440587.5) * 86400000.0 AS now_ms)) AS c \
     WHERE b.provider = $1 AND ($3 IS NULL OR b.day <> c.day OR b.used < $3) \
     RETURNING tat_ms - $2 AS slot_ms, seen_ms AS now_ms";

const BUDGET_UPDATE_POSTGRES: &str = "UPDATE provider_budget AS b \
     SET used = CASE WHEN b.day = c.day THEN b.used + 1 ELSE 1 END, \
         day = c.day, \
         tat_ms = GREATEST(b.tat_ms, c.now_ms) + $2, \
         seen_ms = c.now_ms \
     FROM (SELECT now_ms, floor(now_ms / 86400000)::bigint AS day \
           FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms) AS t) AS c \
     WHERE b.provider = $1 AND ($3::bigint IS NULL OR b.day <> c.day OR b.used < $3) \
     RETURNING b.tat_ms - $2 AS slot_ms, b.seen_ms AS now_ms";

impl ResultStore {
    /// One slot of `provider`'s budget: slots are at least `interval_ms` apart whichever
    /// process asks; with `daily_quota`, at most that many per UTC day.
    pub async fn reserve_budget_slot(
        &self,
        provider: &str,
        interval_ms: f64,
        daily_quota: Option<u64>,
    ) -> Result<Result<Reservation, QuotaSpent>> {
        let quota = daily_quota.map(|q| q.min(i64::MAX as u64) as i64);
        let update = match self.backend {
            Backend::Sqlite(_) => BUDGET_UPDATE_SQLITE,
            Backend::Postgres(_) => BUDGET_UPDATE_POSTGRES,
        };
        let reserved: Option<(f64, f64)> = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO provider_budget (provider, tat_ms, seen_ms, day, used) \
                 VALUES ($1, 0, 0, 0, 0) ON CONFLICT (provider) DO NOTHING",
            )
            .bind(provider)
            .execute(pool)
            .await?;
            sqlx::query_as(update)
                .bind(provider)
                .bind(interval_ms.max(0.0))
                .bind(quota)
                .fetch_optional(pool)
                .await?
        });
        if let Some((slot_ms, now_ms)) = reserved {
            return Ok(Ok(Reservation {
                at_ms: slot_ms,
                wait: Duration::from_secs_f64(((slot_ms - now_ms) / 1000.0).max(0.0)),
            }));
        }
        // No row updated: today's quota is spent (the row's day is today).
        let day: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT day FROM provider_budget WHERE provider = $1")
                .bind(provider)
                .fetch_one(pool)
                .await?
        });
        Ok(Err(QuotaSpent {
            resets_at_ms: (day + 1) * DAY_MS,
        }))
    }
}
