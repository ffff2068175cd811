//! How a lookup is set up: the provider, where and with which key, its budget and retries.

use std::fmt;
use std::time::Duration;

use super::providers::{self, ProviderSpec};
use super::ConfigError;
use crate::secret::Secret;

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

#[derive(Clone)]
pub struct LookupConfig {
    pub provider: &'static dyn ProviderSpec,
    /// None: the provider's public service.
    pub base_url: Option<String>,
    pub key: Option<Secret>,
    /// The provider's configuration from the job (a template).
    pub config: Option<serde_json::Value>,
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
    pub user_agent: String,
}

impl fmt::Debug for LookupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupConfig")
            .field("provider", &self.provider.name())
            .field("base_url", &self.base_url)
            .field("key", &self.key)
            .field("rate_per_sec", &self.rate_per_sec)
            .field("daily_quota", &self.daily_quota)
            .finish_non_exhaustive()
    }
}

impl LookupConfig {
    /// The provider's defaults; set `key` (and anything else) before `Lookup::new`.
    pub fn new(provider: &'static dyn ProviderSpec) -> LookupConfig {
        LookupConfig {
            provider,
            base_url: None,
            key: None,
            config: None,
            rate_per_sec: provider.default_rate_per_sec(),
            rate_margin: 0.03,
            daily_quota: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            user_agent: default_user_agent(),
        }
    }

    /// The defaults of the provider called `name`.
    pub fn for_provider(name: &str) -> Result<LookupConfig, ConfigError> {
        providers::find(name)
            .map(LookupConfig::new)
            .ok_or_else(|| ConfigError::UnknownProvider(name.to_string()))
    }

    /// What identifies the answering service for the cache and the budget: the provider's
    /// name, and for a provider configured by the job a hash of that configuration (two
    /// templates never share answers).
    pub fn identity(&self) -> String {
        match &self.config {
            None => self.provider.name().to_string(),
            Some(c) => format!(
                "{}:{:016x}",
                self.provider.name(),
                fnv1a(c.to_string().as_bytes())
            ),
        }
    }
}

/// FNV-1a 64: a stable name for a configuration, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `geobatch/<version>`; Nominatim's policy wants a contact too: append one
/// (`geobatch/0.1.0 (+mailto:ops@example.kr)`).
pub fn default_user_agent() -> String {
    format!("geobatch/{}", env!("CARGO_PKG_VERSION"))
}
