//! Address lookup: a WGS84 point → parcel address, road address and building name, from an
//! address API. Each provider is one file in `providers/` and one line in its registry.
//!
//! One [`Lookup`] per provider and process does everything a row needs: it keeps to the
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
//! | `Found` | stored with the address | |
//! | `NoResult` | stored as `no_result` (the point is kept) | |
//! | `Rejected`, `Unparseable` ([`LookupError::is_permanent`]) | failed with the error text (dead letter) | |
//! | `Unavailable` | not stored | offsets not committed (redelivered); pause while [`Lookup::circuit_open`] |
//! | `InvalidKey`, `QuotaExhausted` ([`LookupError::stops_job`]) | not stored | the job stops (or waits for `resets_at_ms`) with the error text |
//!
//! Coordinates are WGS84 longitude/latitude: transform first.

pub mod budget;
mod circuit;
pub mod clean;
mod client;
mod config;
mod env;
mod error;
pub mod providers;

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use budget::{BudgetError, BudgetGate, LocalBudget, Slot};
pub use client::{default_user_agent, Lookup, LookupConfig, LookupStats, RetryPolicy};
pub use env::{cli_args, provider_env, LookupEnv};
pub use error::{AttemptError, ConfigError, LookupError, TransientKind};
pub use providers::{Answer, Found, ProviderSpec, Query, REVERSE_FIELDS};

use crate::options::JobOptions;
use crate::secret::scrub;
pub use crate::secret::Secret;

/// The columns a geocoding job adds after the position, in order.
pub const GEOCODE_COLUMNS: [&str; 4] = ["matched_address", "match_type", "provider", "candidates"];

/// A point as the cache keys it: WGS84 degrees rounded to 1e-7 (about 1 cm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PointKey {
    pub lon_e7: i64,
    pub lat_e7: i64,
}

impl PointKey {
    pub fn of(lon: f64, lat: f64) -> PointKey {
        PointKey {
            lon_e7: (lon * 1e7).round() as i64,
            lat_e7: (lat * 1e7).round() as i64,
        }
    }

    /// The rounded point, (lon, lat) in degrees.
    pub fn degrees(self) -> (f64, f64) {
        (self.lon_e7 as f64 / 1e7, self.lat_e7 as f64 / 1e7)
    }

    /// The cache's query text.
    pub fn query(self) -> String {
        format!("{},{}", self.lon_e7, self.lat_e7)
    }
}

/// What a reverse lookup found. Empty strings from the provider are `None`.
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

impl From<Answer> for LookupOutcome {
    fn from(a: Answer) -> LookupOutcome {
        match a {
            Answer::NoResult => LookupOutcome::NoResult,
            Answer::Found(mut f) => LookupOutcome::Found(Address {
                address: f.fields.remove("address"),
                road_address: f.fields.remove("road_address"),
                building_name: f.fields.remove("building_name"),
            }),
        }
    }
}

impl Lookup {
    /// The address at a WGS84 point.
    pub async fn lookup(&self, lon: f64, lat: f64) -> Result<LookupOutcome, LookupError> {
        self.ask(&Query::Point { lon, lat }).await.map(Into::into)
    }
}

/// The lookup a job asks for, configured with this process's keys and base URLs; None for a
/// job without one. Every inconsistency is an error here, naming what to set.
pub fn job_config(
    options: &JobOptions,
    env: &LookupEnv,
) -> Result<Option<LookupConfig>, ConfigError> {
    let Some(name) = options.lookup.as_deref() else {
        return Ok(None);
    };
    let provider =
        providers::find(name).ok_or_else(|| ConfigError::UnknownProvider(name.to_string()))?;
    let mut cfg = provider_config(provider, options, env)?;
    match (provider.takes_config(), &options.lookup_template) {
        (true, Some(t)) => cfg.config = Some(t.clone()),
        (true, None) => return Err(ConfigError::MissingConfig(provider.name())),
        (false, Some(_)) => return Err(ConfigError::ConfigNotUsed),
        (false, None) => {}
    }
    Ok(Some(cfg))
}

/// A provider with the job's budget and this process's key and base URL.
fn provider_config(
    provider: &'static dyn ProviderSpec,
    options: &JobOptions,
    env: &LookupEnv,
) -> Result<LookupConfig, ConfigError> {
    let mut cfg = LookupConfig::new(provider);
    if let Some(rate) = options.rate {
        cfg.rate_per_sec = rate;
    }
    cfg.daily_quota = options.daily_quota;
    cfg.base_url = env.base_url(provider);
    cfg.key = if provider.needs_key() {
        Some(env.required_key(provider)?)
    } else {
        env.key(provider)?
    };
    Ok(cfg)
}

/// The geocoding chain a job asks for, each provider configured with this process's keys and
/// base URLs and its own budget; empty for a job without geocoding.
pub fn geocode_configs(
    options: &JobOptions,
    env: &LookupEnv,
) -> Result<Vec<LookupConfig>, ConfigError> {
    if !options.is_geocode() {
        return Ok(Vec::new());
    }
    options
        .geocoders()
        .into_iter()
        .map(|name| {
            let provider = providers::find(name)
                .ok_or_else(|| ConfigError::UnknownProvider(name.to_string()))?;
            if !provider.geocodes() {
                return Err(ConfigError::NotAGeocoder(
                    provider.name(),
                    providers::geocoder_names().join(", "),
                ));
            }
            provider_config(provider, options, env)
        })
        .collect()
}

/// Checks a job's lookup as far as this process can: the provider, its key (a missing one is
/// named by its variable), its configuration and base URL.
pub fn check_job(options: &JobOptions, env: &LookupEnv) -> Result<(), ConfigError> {
    let configs = job_config(options, env)?
        .into_iter()
        .chain(geocode_configs(options, env)?);
    for cfg in configs {
        let provider = cfg.provider;
        match Lookup::new(cfg, std::sync::Arc::new(LocalBudget::new())) {
            Ok(_) => {}
            Err(ConfigError::MissingKey(_)) => env.required_key(provider).map(|_| ())?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

/// `Retry-After`: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        // An absurd value (1e300) is not a Duration: ignore it rather than panic.
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
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
    use crate::options::{JobSpec, OptionContext, Origin};
    use reqwest::header::HeaderMap;

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
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = LookupError::InvalidKey {
            provider: "vworld",
            status: 200,
            code: Some("INVALID_KEY".into()),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "vworld refused the API key (HTTP 200, INVALID_KEY); check the configured key"
        );
        let e = LookupError::QuotaExhausted {
            provider: "kakao",
            resets_at_ms: 86_400_000,
        };
        assert_eq!(
            e.to_string(),
            "daily quota of kakao spent; resets at Fri, 02 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        for bad in ["soon", "1e300", "-5", "NaN"] {
            h.insert("retry-after", bad.parse().unwrap());
            assert_eq!(retry_after(&h), None, "{bad}");
        }
    }

    fn options(fields: &[(&str, &str)]) -> JobOptions {
        JobSpec::from_fields(fields.iter().copied())
            .unwrap()
            .validate(&OptionContext {
                origin: Origin::Form,
                providers: providers::names(),
                templates: Default::default(),
            })
            .unwrap()
    }

    /// The job's lookup is checked against this process's keys and base URLs.
    #[test]
    fn job_lookups_are_checked_against_this_process() {
        let env = LookupEnv::default();
        assert!(job_config(&options(&[]), &env).unwrap().is_none());
        let kakao = options(&[("lookup", "kakao"), ("rate", "4"), ("daily_quota", "100")]);
        let err = check_job(&kakao, &env).unwrap_err().to_string();
        assert!(err.contains("KAKAO_REST_API_KEY"), "{err}");
        let mut providers = crate::settings::ProviderEnv::default();
        providers.keys.insert("kakao".into(), Secret::new("K"));
        providers
            .base_urls
            .insert("kakao".into(), "http://127.0.0.1:9".into());
        let env = LookupEnv::new(providers, None);
        let cfg = job_config(&kakao, &env).unwrap().unwrap();
        assert_eq!(cfg.rate_per_sec, 4.0);
        assert_eq!(cfg.daily_quota, Some(100));
        assert_eq!(cfg.base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(cfg.key.as_ref().map(|k| k.expose()), Some("K"));
        check_job(&kakao, &env).unwrap();
        // The key never goes with the job.
        let json = serde_json::to_string(&kakao).unwrap();
        assert!(!json.contains("\"K\""), "{json}");
        let err = job_config(&options(&[("lookup", "template")]), &env).unwrap_err();
        assert!(matches!(err, ConfigError::MissingConfig(_)));
    }

    /// A provider that lives in one test-only file (`providers/echo.rs`) plus its registry
    /// line is a working provider: options accept it, and it answers through the client.
    #[tokio::test]
    async fn a_provider_is_one_file_and_a_registry_line() {
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/echo",
            get(
                |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    axum::Json(serde_json::json!({"echo": format!("{},{}", q["lon"], q["lat"])}))
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let opts = options(&[("lookup", "echo")]);
        let mut providers = crate::settings::ProviderEnv::default();
        providers.base_urls.insert("echo".into(), base);
        let env = LookupEnv::new(providers, None);
        check_job(&opts, &env).unwrap();
        let cfg = job_config(&opts, &env).unwrap().unwrap();
        let lookup = Lookup::new(cfg, std::sync::Arc::new(LocalBudget::new())).unwrap();
        let got = lookup.lookup(126.9785, 37.5665).await.unwrap();
        assert_eq!(
            got,
            LookupOutcome::Found(Address {
                address: Some("126.9785,37.5665".into()),
                ..Address::default()
            })
        );
        assert!(cli_args()
            .iter()
            .any(|a| a.get_long() == Some("echo-base-url")));
    }
}
