//! Address lookup: a WGS84 point → parcel address, road address and building name, from an
//! address API (Kakao Local, VWorld, Nominatim, or one described by a template file).
//!
//! One [`Lookup`] per process (or per worker) does everything a row needs: it keeps to the
//! provider's budget (local pacing with governor, then a slot from the shared [`BudgetGate`],
//! which makes the budget hold across every process using the same gate), retries transient
//! failures with exponential backoff and full jitter (obeying `Retry-After`), and stops sending
//! during a sustained outage (a circuit breaker: [`Lookup::circuit_open`] tells consumers to
//! pause). Failures that repeating cannot fix come back at once, classified ([`LookupError`]).
//!
//! The API key is a [`Secret`]: it is sent in the header or query the provider wants and
//! nowhere else; it never appears in `Debug`/`Display`, errors or logs (URLs are logged with
//! key parameters redacted, and every error text is scrubbed of the key).
//!
//! What a worker does with each outcome:
//!
//! | outcome | the row | the batch / job |
//! |---|---|---|
//! | `Found(address)` | stored with the address | |
//! | `NoResult` | failed, "no address at this point" (dead letter) | |
//! | `Rejected`, `Unparseable` ([`LookupError::is_permanent`]) | failed with the error text (dead letter) | |
//! | `Unavailable` | not stored | offsets not committed (redelivered); pause while [`Lookup::circuit_open`] |
//! | `InvalidKey`, `QuotaExhausted` ([`LookupError::stops_job`]) | not stored | the job stops (or waits for `resets_at_ms`) with the error text |
//!
//! Coordinates are WGS84 longitude/latitude: transform first.

pub mod budget;
mod circuit;
mod env;
mod provider;

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

pub use budget::{BudgetError, BudgetGate, LocalBudget, Slot};
pub use env::{LookupEnv, KEY_FILE_ENV};
pub use provider::TemplateConfig;

use circuit::{Admission, Circuit};
use provider::{AttemptError, Endpoint, TransientKind};

/// Which address API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Kakao,
    Vworld,
    Nominatim,
    Template,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Kakao,
        Provider::Vworld,
        Provider::Nominatim,
        Provider::Template,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Kakao => "kakao",
            Provider::Vworld => "vworld",
            Provider::Nominatim => "nominatim",
            Provider::Template => "template",
        }
    }

    /// The provider's name in messages: "Kakao", "VWorld", …
    pub fn title(self) -> &'static str {
        match self {
            Provider::Kakao => "Kakao",
            Provider::Vworld => "VWorld",
            Provider::Nominatim => "Nominatim",
            Provider::Template => "the template's provider",
        }
    }

    /// The public service; `None` for a template (its URL says where).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::Kakao => Some("https://dapi.kakao.com"),
            Provider::Vworld => Some("https://api.vworld.kr"),
            Provider::Nominatim => Some("https://nominatim.openstreetmap.org"),
            Provider::Template => None,
        }
    }

    /// The environment variable that overrides the base URL.
    pub fn base_url_env(self) -> Option<&'static str> {
        match self {
            Provider::Kakao => Some("GEOBATCH_KAKAO_BASE_URL"),
            Provider::Vworld => Some("GEOBATCH_VWORLD_BASE_URL"),
            Provider::Nominatim => Some("GEOBATCH_NOMINATIM_BASE_URL"),
            Provider::Template => None,
        }
    }

    /// Requests per second when none is configured (Nominatim's usage policy: at most 1/s).
    pub fn default_rate_per_sec(self) -> f64 {
        match self {
            Provider::Nominatim => 1.0,
            _ => 10.0,
        }
    }

    pub fn needs_key(self) -> bool {
        matches!(self, Provider::Kakao | Provider::Vworld)
    }

    /// The environment variable holding the provider's own key.
    pub fn key_env(self) -> Option<&'static str> {
        match self {
            Provider::Kakao => Some("KAKAO_REST_API_KEY"),
            Provider::Vworld => Some("VWORLD_API_KEY"),
            Provider::Nominatim | Provider::Template => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Provider, String> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown lookup provider {s:?}; one of kakao, vworld, nominatim, template")
            })
    }
}

/// An API key. Shown as `***` by `Debug` and `Display`; not serializable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The key in environment variable `var`, if it is set and not empty.
    pub fn from_env(var: &str) -> Option<Secret> {
        std::env::var(var)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(Secret)
    }

    /// The key in a file (its first line; surrounding whitespace dropped).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Secret> {
        let text = std::fs::read_to_string(path)?;
        let key = text.lines().next().unwrap_or("").trim();
        if key.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: no key in the file", path.display()),
            ));
        }
        Ok(Secret(key.to_string()))
    }

    /// The key itself, for the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Retries and the circuit breaker.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt for a transient failure.
    pub max_retries: u32,
    /// Backoff before retry n (from 0): a random duration in [0, min(cap, base·2ⁿ)].
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A `Retry-After` longer than this is not slept through: the lookup fails `Unavailable`
    /// and the circuit opens for that long.
    pub max_retry_after: Duration,
    /// Consecutive lookups failing transiently (after their retries) that open the circuit.
    pub circuit_threshold: u32,
    /// First open period; doubled after each failed probe, up to `circuit_cooldown_max`.
    pub circuit_cooldown: Duration,
    pub circuit_cooldown_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            circuit_threshold: 5,
            circuit_cooldown: Duration::from_secs(5),
            circuit_cooldown_max: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LookupConfig {
    pub provider: Provider,
    /// None: the provider's public service (a template's URL may be absolute instead).
    pub base_url: Option<String>,
    pub key: Option<Secret>,
    /// The cluster-wide budget, requests per second.
    pub rate_per_sec: f64,
    /// Fraction of the budget kept unused so that scheduling jitter never pushes more than
    /// `rate_per_sec` requests into one second at the provider (0.03: 9.7/s of 10/s).
    pub rate_margin: f64,
    /// Requests per UTC day for the whole cluster, if the provider has a daily quota.
    pub daily_quota: Option<u64>,
    /// Per request, connect to last byte.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub template: Option<TemplateConfig>,
    pub user_agent: String,
}

impl LookupConfig {
    /// The provider's defaults; set `key` (and anything else) before `Lookup::new`.
    pub fn new(provider: Provider) -> LookupConfig {
        LookupConfig {
            provider,
            base_url: None,
            key: None,
            rate_per_sec: provider.default_rate_per_sec(),
            rate_margin: 0.03,
            daily_quota: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            template: None,
            user_agent: default_user_agent(),
        }
    }
}

/// `geobatch/<version>`; Nominatim's policy wants a contact too: append one
/// (`geobatch/0.1.0 (+mailto:ops@example.kr)`).
pub fn default_user_agent() -> String {
    format!("geobatch/{}", env!("CARGO_PKG_VERSION"))
}

/// What a lookup found. Empty strings from the provider are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Parcel (지번) address, or the provider's full display name.
    pub address: Option<String>,
    /// Road-name (도로명) address.
    pub road_address: Option<String>,
    pub building_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupOutcome {
    Found(Address),
    /// The provider knows no address there (the sea, an unmapped area).
    NoResult,
}

/// Why a lookup gave no answer. None of these texts contains the key.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LookupError {
    /// The provider refused the key: nothing will work until it is fixed; stop the job.
    #[error(
        "{provider} refused the API key (HTTP {status}{}); check the configured key",
        code.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
    )]
    InvalidKey {
        provider: Provider,
        status: u16,
        code: Option<String>,
    },
    /// The provider refused this request (a 4xx other than the key): permanent for the row.
    #[error("address provider rejected the request (HTTP {status}): {reason}")]
    Rejected { status: u16, reason: String },
    /// An answer that cannot be read: permanent for the row.
    #[error("unreadable address provider answer: {reason}")]
    Unparseable { reason: String },
    /// Transient failures outlasted the retries, or the circuit is open: try the row later.
    #[error("address provider unavailable: {reason}")]
    Unavailable { reason: String },
    /// The daily quota is spent (ours, or the provider says so).
    #[error("daily quota of {provider} spent; resets at {}", fmt_unix_ms(*resets_at_ms))]
    QuotaExhausted {
        provider: Provider,
        resets_at_ms: i64,
    },
}

impl LookupError {
    /// Repeating the same lookup now cannot succeed (the row is marked failed).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            LookupError::Rejected { .. } | LookupError::Unparseable { .. }
        )
    }

    /// No lookup can succeed until someone acts (key) or the quota resets: stop or pause the
    /// job rather than failing its rows one by one.
    pub fn stops_job(&self) -> bool {
        matches!(
            self,
            LookupError::InvalidKey { .. } | LookupError::QuotaExhausted { .. }
        )
    }

    fn scrub(self, key: &str) -> LookupError {
        let s = |t: String| scrub(&t, key);
        match self {
            LookupError::InvalidKey {
                provider,
                status,
                code,
            } => LookupError::InvalidKey {
                provider,
                status,
                code: code.map(s),
            },
            LookupError::Rejected { status, reason } => LookupError::Rejected {
                status,
                reason: s(reason),
            },
            LookupError::Unparseable { reason } => LookupError::Unparseable { reason: s(reason) },
            LookupError::Unavailable { reason } => LookupError::Unavailable { reason: s(reason) },
            e @ LookupError::QuotaExhausted { .. } => e,
        }
    }
}

/// The configuration cannot make a working lookup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--lookup {0} needs an API key")]
    MissingKey(Provider),
    #[error("--lookup template needs a template file")]
    MissingTemplate,
    #[error("{0}")]
    Template(String),
    #[error("lookup base URL {0:?} is not an http(s) URL")]
    BadBaseUrl(String),
    #[error("lookup rate must be a positive number of requests per second, not {0}")]
    BadRate(f64),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(
        "--lookup {provider} needs an API key: set {var} (or {}, a file holding it) \
         for every geobatch process",
        env::KEY_FILE_ENV
    )]
    KeyNotSet {
        provider: Provider,
        var: &'static str,
    },
    #[error("{} {path}: {reason}", env::KEY_FILE_ENV)]
    KeyFile { path: String, reason: String },
    #[error("{0} needs --lookup")]
    NeedsLookup(&'static str),
    #[error("--lookup-template is only for --lookup template")]
    TemplateNotUsed,
}

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

/// Looks addresses up at one provider. `Send + Sync`: share one among all worker tasks of a
/// process (`Arc<Lookup>`), with the process's (or the cluster's) budget gate.
pub struct Lookup {
    endpoint: Endpoint,
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
    rng: AtomicU64,
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lookup")
            .field("endpoint", &self.endpoint)
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
        let key = cfg.key.filter(|k| !k.expose().is_empty());
        if provider.needs_key() && key.is_none() {
            return Err(ConfigError::MissingKey(provider));
        }
        let template = match provider {
            Provider::Template => {
                let t = cfg.template.ok_or(ConfigError::MissingTemplate)?;
                t.validate().map_err(ConfigError::Template)?;
                if t.uses_key() && key.is_none() {
                    return Err(ConfigError::MissingKey(provider));
                }
                if t.url.starts_with('/') && cfg.base_url.is_none() {
                    return Err(ConfigError::Template(
                        "template url is relative (starts with /) but no base URL is set".into(),
                    ));
                }
                Some(t)
            }
            _ => None,
        };
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
        let late_tolerance = Duration::from_secs_f64(slack_ms * 0.8 / 1000.0);
        let quota = Quota::with_period(Duration::from_secs_f64(interval_ms / 1000.0))
            .expect("interval is positive")
            .allow_burst(NonZeroU32::MIN);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            ^ (&cfg.user_agent as *const String as u64);

        Ok(Lookup {
            endpoint: Endpoint::new(provider, base, key, template),
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
            rng: AtomicU64::new(seed | 1),
        })
    }

    pub fn provider(&self) -> Provider {
        self.endpoint.provider
    }

    /// The address at a WGS84 point.
    pub async fn lookup(&self, lon: f64, lat: f64) -> Result<LookupOutcome, LookupError> {
        let key = self.endpoint_key();
        self.lookup_inner(lon, lat).await.map_err(|e| e.scrub(key))
    }

    fn endpoint_key(&self) -> &str {
        self.endpoint.key()
    }

    async fn lookup_inner(&self, lon: f64, lat: f64) -> Result<LookupOutcome, LookupError> {
        if !(lon.is_finite() && lat.is_finite()) {
            return Err(LookupError::Rejected {
                status: 0,
                reason: format!("not a coordinate: {lon}, {lat}"),
            });
        }
        let provider = self.provider();
        let mut probe = match self.circuit.admit().await {
            Admission::Closed => None,
            Admission::Probe(guard) => Some(guard),
            Admission::Open(left) => {
                bump(&self.counters.fast_failures);
                return Err(LookupError::Unavailable {
                    reason: format!(
                        "{provider} failed repeatedly; paused for another {:.1} s",
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
        let mut attempt = 0u32;
        loop {
            if attempt > 0 && self.circuit.is_open() {
                bump(&self.counters.fast_failures);
                return Err(LookupError::Unavailable {
                    reason: format!("{provider} failed repeatedly; paused"),
                });
            }
            self.wait_hold().await;
            self.pace().await?;
            bump(&self.counters.requests);
            match self.attempt(lon, lat).await {
                Ok(outcome) => {
                    self.answered(probe.take());
                    return Ok(outcome);
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
                    tracing::debug!(%provider, attempt, ?kind, "address lookup failed: {reason}");
                    if let Some(pause) = retry_after {
                        if pause > self.retry.max_retry_after {
                            self.circuit.trip_for(pause);
                            drop(probe.take());
                            return Err(LookupError::Unavailable {
                                reason: format!(
                                    "{provider} asks to wait {} s ({reason})",
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
                    let backoff = self.backoff(attempt - 1);
                    tokio::time::sleep(backoff.max(retry_after.unwrap_or_default())).await;
                }
            }
        }
    }

    fn answered(&self, probe: Option<circuit::ProbeGuard<'_>>) {
        match probe {
            Some(p) => p.succeeded(),
            None => self.circuit.record_success(),
        }
    }

    /// Open (or probing): consumers should pause instead of sending rows that would fail fast.
    pub fn circuit_open(&self) -> bool {
        self.circuit.is_open()
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
    async fn attempt(&self, lon: f64, lat: f64) -> Result<LookupOutcome, AttemptError> {
        let provider = self.provider();
        let req = self.endpoint.request(lon, lat);
        tracing::trace!(%provider, url = %redact_url(&req.url, self.endpoint_key()), "address lookup");
        let mut builder = self.client.get(&req.url);
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(e)),
        };
        let status = response.status().as_u16();
        let retry_after = provider::retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(self.transport_error(e)),
        };
        match status {
            200..=299 => {
                let result = self.endpoint.parse(status, &body);
                if let Err(AttemptError::Transient { kind, .. }) = &result {
                    if *kind == TransientKind::Server {
                        bump(&self.counters.server_errors);
                    }
                }
                result
            }
            401 | 403 => Err(AttemptError::Permanent(LookupError::InvalidKey {
                provider,
                status,
                code: self.endpoint.error_code(&body),
            })),
            429 => {
                bump(&self.counters.rate_limited);
                Err(AttemptError::Transient {
                    kind: TransientKind::RateLimited,
                    reason: format!("{provider} answered HTTP 429 (too many requests)"),
                    retry_after,
                })
            }
            500..=599 => {
                bump(&self.counters.server_errors);
                Err(AttemptError::Transient {
                    kind: TransientKind::Server,
                    reason: format!("{provider} answered HTTP {status}"),
                    retry_after,
                })
            }
            _ => Err(AttemptError::Permanent(LookupError::Rejected {
                status,
                reason: format!("{provider}: {}", snippet(&body)),
            })),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> AttemptError {
        let provider = self.provider();
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
            TransientKind::Timeout => format!("{provider} did not answer in time"),
            TransientKind::Connect => format!("cannot connect to {provider}"),
            _ => format!("connection to {provider} failed"),
        };
        AttemptError::Transient {
            kind,
            reason: format!("{what} ({})", scrub(&reason, self.endpoint_key())),
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
                .reserve(self.provider().as_str(), self.interval_ms, self.daily_quota)
                .await
                .map_err(|e| match e {
                    BudgetError::QuotaExhausted { resets_at_ms } => LookupError::QuotaExhausted {
                        provider: self.provider(),
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

    /// Full jitter: uniform in [0, min(cap, base·2ⁿ)].
    fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .retry
            .backoff_base
            .saturating_mul(1u32 << n.min(20))
            .min(self.retry.backoff_cap);
        ceiling.mul_f64(self.random_unit())
    }

    /// xorshift64*: uniform in [0, 1); quality enough for jitter.
    fn random_unit(&self) -> f64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next >> 12;
            next ^= next << 25;
            next ^= next >> 27;
            match self
                .rng
                .compare_exchange_weak(x, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let r = next.wrapping_mul(0x2545_F491_4F6C_DD1D);
                    return (r >> 11) as f64 / (1u64 << 53) as f64;
                }
                Err(current) => x = current,
            }
        }
    }
}

/// The first bytes of a body, as text, for an error message.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty answer)");
    }
    out
}

/// `text` with every occurrence of `key` replaced by `***`.
fn scrub(text: &str, key: &str) -> String {
    if key.is_empty() {
        return text.to_string();
    }
    let mut out = text.replace(key, "***");
    let encoded = provider::percent_encode(key);
    if encoded != key {
        out = out.replace(&encoded, "***");
    }
    out
}

/// A URL fit for a log line: values of key-like query parameters (`key`, `apikey`,
/// `serviceKey`, `token`, …) and the key itself, wherever it appears, become `***`.
pub fn redact_url(url: &str, key: &str) -> String {
    const SECRET_PARAMS: [&str; 9] = [
        "key",
        "apikey",
        "api_key",
        "servicekey",
        "appkey",
        "app_key",
        "token",
        "access_token",
        "client_secret",
    ];
    let (head, fragment) = match url.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (url, None),
    };
    let mut out = match head.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => head.to_string(),
    };
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    scrub(&out, key)
}

/// Unix milliseconds of the next midnight UTC.
pub fn next_utc_midnight_ms() -> i64 {
    let now = budget::unix_ms() as i64;
    (now.div_euclid(budget::DAY_MS) + 1) * budget::DAY_MS
}

/// Unix milliseconds as an HTTP date (`Tue, 02 Jan 2024 00:00:00 GMT`).
pub fn fmt_unix_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("abc123");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let mut cfg = LookupConfig::new(Provider::Kakao);
        cfg.key = Some(s);
        assert!(!format!("{cfg:?}").contains("abc123"));
    }

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redact_url("http://h/req?point=1,2&key=SECRET&format=json", "SECRET"),
            "http://h/req?point=1,2&key=***&format=json"
        );
        assert_eq!(
            redact_url("http://h/SECRET/r?serviceKey=x%2Fy#f", "SECRET"),
            "http://h/***/r?serviceKey=***#f"
        );
        assert_eq!(scrub("a k%2F1 b k/1", "k/1"), "a *** b ***");
    }

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let mut cfg = LookupConfig::new(Provider::Nominatim);
        cfg.retry.backoff_base = Duration::from_millis(200);
        cfg.retry.backoff_cap = Duration::from_secs(1);
        let l = Lookup::new(cfg, Arc::new(LocalBudget::new())).unwrap();
        for n in 0..10 {
            let ceiling = Duration::from_millis(200 * (1 << n)).min(Duration::from_secs(1));
            let draws: Vec<Duration> = (0..200).map(|_| l.backoff(n)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling));
            // Spread over the range, not stuck at one end.
            assert!(draws.iter().any(|d| *d < ceiling / 4));
            assert!(draws.iter().any(|d| *d > ceiling * 3 / 4));
        }
    }

    #[test]
    fn config_errors() {
        let gate: Arc<dyn BudgetGate> = Arc::new(LocalBudget::new());
        assert!(matches!(
            Lookup::new(LookupConfig::new(Provider::Kakao), gate.clone()),
            Err(ConfigError::MissingKey(Provider::Kakao))
        ));
        assert!(matches!(
            Lookup::new(LookupConfig::new(Provider::Template), gate.clone()),
            Err(ConfigError::MissingTemplate)
        ));
        let mut cfg = LookupConfig::new(Provider::Nominatim);
        cfg.rate_per_sec = 0.0;
        assert!(matches!(
            Lookup::new(cfg, gate.clone()),
            Err(ConfigError::BadRate(_))
        ));
        let mut cfg = LookupConfig::new(Provider::Nominatim);
        cfg.base_url = Some("ftp://x".into());
        assert!(matches!(
            Lookup::new(cfg, gate),
            Err(ConfigError::BadBaseUrl(_))
        ));
        assert_eq!("VWorld".parse::<Provider>(), Ok(Provider::Vworld));
        assert!("google".parse::<Provider>().is_err());
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = LookupError::InvalidKey {
            provider: Provider::Vworld,
            status: 200,
            code: Some("INVALID_KEY".into()),
        };
        assert_eq!(
            e.to_string(),
            "vworld refused the API key (HTTP 200, INVALID_KEY); check the configured key"
        );
        let e = LookupError::QuotaExhausted {
            provider: Provider::Kakao,
            resets_at_ms: 86_400_000,
        };
        assert_eq!(
            e.to_string(),
            "daily quota of kakao spent; resets at Fri, 02 Jan 1970 00:00:00 GMT"
        );
    }
}
