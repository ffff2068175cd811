//! Why a lookup gave no answer, and why a lookup cannot be set up. No text here ever contains
//! a key: every error is scrubbed before it leaves the client.

use std::time::Duration;

use crate::secret::scrub;

/// Why a lookup gave no answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LookupError {
    /// The provider refused the key: nothing will work until it is fixed; stop the job.
    #[error(
        "{provider} refused the API key (HTTP {status}{}); {}",
        code.as_deref().map(|c| format!(", {c}")).unwrap_or_default(),
        hint.as_deref().unwrap_or("check the configured key")
    )]
    InvalidKey {
        provider: &'static str,
        status: u16,
        code: Option<String>,
        /// What to do, when the provider's answer says more than "wrong key".
        hint: Option<String>,
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
    #[error("daily quota of {provider} spent; resets at {}", super::fmt_unix_ms(*resets_at_ms))]
    QuotaExhausted {
        provider: &'static str,
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

    pub(super) fn scrub(self, key: &str) -> LookupError {
        let s = |t: String| scrub(&t, key);
        match self {
            LookupError::InvalidKey {
                provider,
                status,
                code,
                hint,
            } => LookupError::InvalidKey {
                provider,
                status,
                code: code.map(s),
                hint,
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

/// One attempt that did not give an answer.
#[derive(Debug)]
pub enum AttemptError {
    /// Not worth repeating.
    Permanent(LookupError),
    /// Worth repeating after a pause.
    Transient {
        kind: TransientKind,
        reason: String,
        retry_after: Option<Duration>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransientKind {
    RateLimited,
    Server,
    Timeout,
    Connect,
    Other,
}

/// The configuration cannot make a working lookup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("lookup {0} needs an API key")]
    MissingKey(&'static str),
    #[error("lookup {0} needs option lookup_template (its provider description)")]
    MissingConfig(&'static str),
    #[error("option lookup_template is only for lookup template")]
    ConfigNotUsed,
    #[error("{0}")]
    Template(String),
    #[error("lookup base URL {0:?} is not an http(s) URL")]
    BadBaseUrl(String),
    #[error("lookup rate must be a positive number of requests per second, not {0}")]
    BadRate(f64),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("unknown lookup provider {0:?}")]
    UnknownProvider(String),
    #[error("provider {0} does not geocode addresses; the geocoding providers are {1}")]
    NotAGeocoder(&'static str, String),
    #[error("{0}; the job is not accepted: fix the key, then submit it again")]
    KeyRefused(String),
    #[error(
        "lookup {provider} needs an API key: set {var} (or {}, a file holding it) for every \
         geobatch process",
        crate::settings::KEY_FILE_ENV
    )]
    KeyNotSet {
        provider: &'static str,
        var: &'static str,
    },
    #[error("{} {path}: {reason}", crate::settings::KEY_FILE_ENV)]
    KeyFile { path: String, reason: String },
}

impl ConfigError {
    /// True when the job's options (or this process's setup the user controls) are at fault,
    /// not the service.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, ConfigError::Client(_))
    }
}
