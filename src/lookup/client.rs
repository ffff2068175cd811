//! The lookup client: one provider, paced by the budget, retried, behind a circuit breaker.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;

use super::budget::{BudgetError, BudgetGate};
use super::circuit::{Admission, Circuit, ProbeGuard};
pub use super::config::{default_user_agent, LookupConfig, RetryPolicy};
use super::providers::{self, Answer, EndpointSetup, ProviderSpec, Query};
use super::{redact_url, snippet, AttemptError, ConfigError, LookupError, TransientKind};
use crate::backoff::Backoff;
use crate::secret::scrub;

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LookupStats {
    /// Requests sent (first attempts, retries and probes).
    pub requests: u64,
    pub retries: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// 5xx answers (and provider-reported system errors).
    pub server_errors: u64,
    pub timeouts: u64,
    pub connect_errors: u64,
    /// Budget slots given up because this process was too late to use them.
    pub slots_forfeited: u64,
    /// Times the circuit opened.
    pub circuit_opens: u64,
    /// Lookups refused at once because the circuit was open.
    pub fast_failures: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    timeouts: AtomicU64,
    connect_errors: AtomicU64,
    slots_forfeited: AtomicU64,
    fast_failures: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Asks one provider. `Send + Sync`: share one among all worker tasks of a process
/// (`Arc<Lookup>`), with the process's (or the cluster's) budget gate.
pub struct Lookup {
    provider: &'static dyn ProviderSpec,
    identity: String,
    endpoint: Box<dyn providers::Endpoint>,
    /// For scrubbing texts; empty without a key.
    key: String,
    client: reqwest::Client,
    budget: Arc<dyn BudgetGate>,
    /// Milliseconds between two slots of the budget (margin included).
    interval_ms: f64,
    /// A slot used later than this after its time is given up (see `pace`).
    late_tolerance: Duration,
    daily_quota: Option<u64>,
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    retry: RetryPolicy,
    circuit: Circuit,
    /// No request before this (a `Retry-After` applies to every caller, not just the one that
    /// received it).
    hold_until: Mutex<Option<Instant>>,
    counters: Counters,
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lookup")
            .field("provider", &self.provider.name())
            .field("interval_ms", &self.interval_ms)
            .field("daily_quota", &self.daily_quota)
            .finish_non_exhaustive()
    }
}

impl Lookup {
    pub fn new(cfg: LookupConfig, budget: Arc<dyn BudgetGate>) -> Result<Lookup, ConfigError> {
        let provider = cfg.provider;
        if !(cfg.rate_per_sec.is_finite() && cfg.rate_per_sec > 0.0) {
            return Err(ConfigError::BadRate(cfg.rate_per_sec));
        }
        let key = cfg.key.clone().filter(|k| !k.is_empty());
        if provider.needs_key() && key.is_none() {
            return Err(ConfigError::MissingKey(provider.name()));
        }
        if cfg.config.is_some() && !provider.takes_config() {
            return Err(ConfigError::ConfigNotUsed);
        }
        let base = cfg
            .base_url
            .clone()
            .or_else(|| provider.default_base_url().map(str::to_string))
            .unwrap_or_default();
        if !base.is_empty()
            && reqwest::Url::parse(&base).map_or(true, |u| !u.scheme().starts_with("http"))
        {
            return Err(ConfigError::BadBaseUrl(base));
        }
        let identity = cfg.identity();
        let endpoint = provider.endpoint(EndpointSetup {
            base_url: base.trim_end_matches('/').to_string(),
            key: key.clone(),
            config: cfg.config.as_ref(),
        })?;
        let client = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Client(e.without_url().to_string()))?;

        let margin = cfg.rate_margin.clamp(0.0, 0.5);
        let effective = cfg.rate_per_sec * (1.0 - margin);
        let interval_ms = 1000.0 / effective;
        // With slots `interval` apart, k+1 consecutive slots span k·interval, so a window of
        // one second sees at most k = floor(rate) requests as long as no request goes out
        // more than k·interval - 1000 ms (the slack: 31 ms at a 3 % margin) after its slot.
        // Our own lateness may use 80 % of it; the rest is for the way to the provider.
        let per_window = cfg.rate_per_sec.floor().max(1.0);
        let slack_ms = (per_window * interval_ms - 1000.0).max(interval_ms * margin);
        let late_tolerance = Duration::try_from_secs_f64(slack_ms * 0.8 / 1000.0)
            .map_err(|_| ConfigError::BadRate(cfg.rate_per_sec))?;
        let period = Duration::try_from_secs_f64(interval_ms / 1000.0)
            .map_err(|_| ConfigError::BadRate(cfg.rate_per_sec))?;
        let quota = Quota::with_period(period)
            .ok_or(ConfigError::BadRate(cfg.rate_per_sec))?
            .allow_burst(NonZeroU32::MIN);

        Ok(Lookup {
            provider,
            identity,
            endpoint,
            key: key.map(|k| k.expose().to_string()).unwrap_or_default(),
            client,
            budget,
            interval_ms,
            late_tolerance,
            daily_quota: cfg.daily_quota,
            limiter: RateLimiter::direct(quota),
            clock: DefaultClock::default(),
            circuit: Circuit::new(
                cfg.retry.circuit_threshold,
                cfg.retry.circuit_cooldown,
                cfg.retry.circuit_cooldown_max,
            ),
            retry: cfg.retry,
            hold_until: Mutex::new(None),
            counters: Counters::default(),
        })
    }

    pub fn provider(&self) -> &'static dyn ProviderSpec {
        self.provider
    }

    /// The provider's name and, for a configured one, its configuration's hash.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Asks the provider, with pacing, retries and the circuit.
    pub async fn ask(&self, query: &Query<'_>) -> Result<Answer, LookupError> {
        self.ask_inner(query).await.map_err(|e| e.scrub(&self.key))
    }

    async fn ask_inner(&self, query: &Query<'_>) -> Result<Answer, LookupError> {
        if let Query::Point { lon, lat } = *query {
            if !(lon.is_finite() && lat.is_finite()) {
                return Err(LookupError::Rejected {
                    status: 0,
                    reason: format!("not a coordinate: {lon}, {lat}"),
                });
            }
        }
        let name = self.provider.name();
        let mut probe = match self.circuit.admit().await {
            Admission::Closed => None,
            Admission::Probe(guard) => Some(guard),
            Admission::Open(left) => {
                bump(&self.counters.fast_failures);
                return Err(LookupError::Unavailable {
                    reason: format!(
                        "{name} failed repeatedly; paused for another {:.1} s",
                        left.as_secs_f64()
                    ),
                });
            }
        };
        let attempts = if probe.is_some() {
            1
        } else {
            1 + self.retry.max_retries
        };
        let mut backoff =
            Backoff::new(self.retry.backoff_base, self.retry.backoff_cap).full_jitter();
        let mut attempt = 0u32;
        loop {
            if attempt > 0 && self.circuit.is_open() {
                bump(&self.counters.fast_failures);
                return Err(LookupError::Unavailable {
                    reason: format!("{name} failed repeatedly; paused"),
                });
            }
            self.wait_hold().await;
            self.pace().await?;
            bump(&self.counters.requests);
            match self.attempt(query).await {
                Ok(answer) => {
                    self.answered(probe.take());
                    return Ok(answer);
                }
                Err(AttemptError::Permanent(e)) => {
                    // The provider answered: it is up, whatever it thinks of this request.
                    self.answered(probe.take());
                    return Err(e);
                }
                Err(AttemptError::Transient {
                    kind,
                    reason,
                    retry_after,
                }) => {
                    attempt += 1;
                    tracing::debug!(
                        provider = name,
                        attempt,
                        ?kind,
                        "address lookup failed: {reason}"
                    );
                    if let Some(pause) = retry_after {
                        if pause > self.retry.max_retry_after {
                            self.circuit.trip_for(pause);
                            drop(probe.take());
                            return Err(LookupError::Unavailable {
                                reason: format!(
                                    "{name} asks to wait {} s ({reason})",
                                    pause.as_secs()
                                ),
                            });
                        }
                        self.hold(pause);
                    }
                    if attempt >= attempts {
                        match probe.take() {
                            Some(p) => p.failed(),
                            None => self.circuit.record_failure(),
                        }
                        return Err(LookupError::Unavailable {
                            reason: format!(
                                "{reason} ({attempt} attempt{})",
                                if attempt == 1 { "" } else { "s" }
                            ),
                        });
                    }
                    bump(&self.counters.retries);
                    let delay = backoff.next_delay();
                    tokio::time::sleep(delay.max(retry_after.unwrap_or_default())).await;
                }
            }
        }
    }

    fn answered(&self, probe: Option<ProbeGuard<'_>>) {
        match probe {
            Some(p) => p.succeeded(),
            None => self.circuit.record_success(),
        }
    }

    /// Open (or probing): consumers should pause instead of sending rows that would fail fast.
    pub fn circuit_open(&self) -> bool {
        self.circuit.is_open()
    }

    /// How long the circuit stays open from now (zero when closed).
    pub fn circuit_open_for(&self) -> Duration {
        self.circuit.open_for()
    }

    pub fn stats(&self) -> LookupStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LookupStats {
            requests: get(&c.requests),
            retries: get(&c.retries),
            rate_limited: get(&c.rate_limited),
            server_errors: get(&c.server_errors),
            timeouts: get(&c.timeouts),
            connect_errors: get(&c.connect_errors),
            slots_forfeited: get(&c.slots_forfeited),
            circuit_opens: self.circuit.opens.load(Ordering::Relaxed),
            fast_failures: get(&c.fast_failures),
        }
    }

    /// One request, classified.
    async fn attempt(&self, query: &Query<'_>) -> Result<Answer, AttemptError> {
        let name = self.provider.name();
        let req = self.endpoint.request(query).ok_or_else(|| {
            AttemptError::Permanent(LookupError::Rejected {
                status: 0,
                reason: format!("{} cannot answer this kind of query", self.provider.title()),
            })
        })?;
        tracing::trace!(provider = name, url = %redact_url(&req.url, &self.key), "address lookup");
        let mut builder = self.client.get(&req.url);
        for (header, value) in &req.headers {
            builder = builder.header(header, value);
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(e)),
        };
        let status = response.status().as_u16();
        let retry_after = super::retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.transport_error(e)),
        };
        match status {
            200..=299 => {
                let result = self.endpoint.parse(query, status, &body);
                if let Err(AttemptError::Transient { kind, .. }) = &result {
                    if *kind == TransientKind::Server {
                        bump(&self.counters.server_errors);
                    }
                }
                result
            }
            401 | 403 => Err(AttemptError::Permanent(LookupError::InvalidKey {
                provider: name,
                status,
                code: self.endpoint.error_code(&body),
                hint: self.endpoint.key_hint(status, &body),
            })),
            429 => {
                bump(&self.counters.rate_limited);
                Err(AttemptError::Transient {
                    kind: TransientKind::RateLimited,
                    reason: format!("{name} answered HTTP 429 (too many requests)"),
                    retry_after,
                })
            }
            500..=599 => {
                bump(&self.counters.server_errors);
                Err(AttemptError::Transient {
                    kind: TransientKind::Server,
                    reason: format!("{name} answered HTTP {status}"),
                    retry_after,
                })
            }
            _ => Err(AttemptError::Permanent(LookupError::Rejected {
                status,
                reason: format!("{name}: {}", snippet(&body)),
            })),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> AttemptError {
        let name = self.provider.name();
        let kind = if e.is_timeout() {
            bump(&self.counters.timeouts);
            TransientKind::Timeout
        } else if e.is_connect() {
            bump(&self.counters.connect_errors);
            TransientKind::Connect
        } else {
            TransientKind::Other
        };
        // reqwest's text names the URL, which may hold the key: drop it, keep the causes.
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        let what = match kind {
            TransientKind::Timeout => format!("{name} did not answer in time"),
            TransientKind::Connect => format!("cannot connect to {name}"),
            _ => format!("connection to {name} failed"),
        };
        AttemptError::Transient {
            kind,
            reason: format!("{what} ({})", scrub(&reason, &self.key)),
            retry_after: None,
        }
    }

    /// Waits for a slot: local pacing first (so this process asks the shared gate at most at
    /// the budget's rate), then the gate's reservation. A slot this process could not use on
    /// time (the task was not scheduled for a while) is given up and another one taken: sent
    /// late, it could land in the same second as later slots and exceed the budget there.
    async fn pace(&self) -> Result<(), LookupError> {
        loop {
            while let Err(not_until) = self.limiter.check() {
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
            }
            let slot = self
                .budget
                .reserve(&self.identity, self.interval_ms, self.daily_quota)
                .await
                .map_err(|e| match e {
                    BudgetError::QuotaExhausted { resets_at_ms } => LookupError::QuotaExhausted {
                        provider: self.provider.name(),
                        resets_at_ms,
                    },
                    BudgetError::Unavailable(reason) => LookupError::Unavailable { reason },
                })?;
            let granted = Instant::now();
            if !slot.wait.is_zero() {
                tokio::time::sleep(slot.wait).await;
            }
            let late = granted.elapsed().saturating_sub(slot.wait);
            if late <= self.late_tolerance {
                return Ok(());
            }
            bump(&self.counters.slots_forfeited);
            tracing::debug!(
                late_ms = late.as_millis() as u64,
                "budget slot missed; taking another"
            );
        }
    }

    fn hold(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut hold = self.hold_until.lock().unwrap_or_else(|e| e.into_inner());
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
    }

    async fn wait_hold(&self) {
        let until = *self.hold_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::{LocalBudget, Secret};

    #[test]
    fn configs_print_without_their_key() {
        let mut cfg = LookupConfig::for_provider("kakao").unwrap();
        cfg.key = Some(Secret::new("abc123"));
        assert!(!format!("{cfg:?}").contains("abc123"));
    }

    #[test]
    fn config_errors() {
        let gate: Arc<dyn BudgetGate> = Arc::new(LocalBudget::new());
        let cfg = |name: &str| LookupConfig::for_provider(name).unwrap();
        assert!(matches!(
            Lookup::new(cfg("kakao"), gate.clone()),
            Err(ConfigError::MissingKey("kakao"))
        ));
        assert!(matches!(
            Lookup::new(cfg("template"), gate.clone()),
            Err(ConfigError::MissingConfig(_))
        ));
        for rate in [0.0, -1.0, f64::NAN, 1e-300, 1e308] {
            let mut c = cfg("nominatim");
            c.rate_per_sec = rate;
            assert!(
                matches!(Lookup::new(c, gate.clone()), Err(ConfigError::BadRate(_))),
                "{rate}"
            );
        }
        let mut c = cfg("nominatim");
        c.base_url = Some("ftp://x".into());
        assert!(matches!(
            Lookup::new(c, gate),
            Err(ConfigError::BadBaseUrl(_))
        ));
        assert!(LookupConfig::for_provider("google").is_err());
    }

    #[test]
    fn templates_have_an_identity_of_their_own() {
        let mut a = LookupConfig::for_provider("template").unwrap();
        a.config = Some(serde_json::json!({"url": "http://a/{lon}/{lat}", "address": "/a"}));
        let mut b = a.clone();
        b.config = Some(serde_json::json!({"url": "http://b/{lon}/{lat}", "address": "/a"}));
        assert_ne!(a.identity(), b.identity());
        assert!(a.identity().starts_with("template:"));
        assert_eq!(
            LookupConfig::for_provider("kakao").unwrap().identity(),
            "kakao"
        );
    }
}
