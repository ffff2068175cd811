//! Why a batch of lookups cannot be stored yet (or ever), and what the job is told.

use std::time::Duration;

use crate::lookup::{self, Lookup, LookupError};
use crate::settings::KEY_FILE_ENV;

/// Why a batch's results cannot be stored yet (or ever).
pub(super) enum Halt {
    /// The provider refused the key: the job fails with this text.
    InvalidKey(String),
    /// The daily quota is spent; nothing is sent before this. `message` is what the paused
    /// job shows.
    Quota { resets_at_ms: i64, message: String },
    /// The provider (or the store) cannot answer now: the batch is retried, not before
    /// `wait` (an open circuit's rest). `message`: "Kakao unavailable (…)".
    Unavailable { message: String, wait: Duration },
}

/// The batch waits for the provider: at least as long as its circuit stays open.
pub(super) fn unavailable(lookup: &Lookup, reason: &str) -> Halt {
    Halt::Unavailable {
        message: format!("{} unavailable ({reason})", lookup.provider().title()),
        wait: lookup.circuit_open_for(),
    }
}

/// What a job that was running is told of a refused key.
pub(super) fn invalid_key_message(lookup: &Lookup, e: &LookupError) -> String {
    format!(
        "{}: set a valid key for every geobatch worker and retry the job; no more addresses \
         are requested for it",
        key_refusal(lookup, e)
    )
}

/// "KAKAO_REST_API_KEY was refused by Kakao (HTTP 401, -401)", with the provider's hint.
pub(super) fn key_refusal(lookup: &Lookup, e: &LookupError) -> String {
    let provider = lookup.provider();
    let var = provider.key_env().unwrap_or(KEY_FILE_ENV);
    let detail = match e {
        LookupError::InvalidKey {
            status, code, hint, ..
        } => format!(
            "HTTP {status}{}{}",
            code.as_deref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default(),
            hint.as_deref()
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    };
    format!("{var} was refused by {} ({detail})", provider.title())
}

/// The text a paused job shows.
pub(super) fn quota_message(
    lookup: &Lookup,
    daily_quota: Option<u64>,
    resets_at_ms: i64,
) -> String {
    let quota = daily_quota
        .map(|q| format!("daily quota of {q} requests"))
        .unwrap_or_else(|| "daily quota".into());
    format!(
        "{quota} for {} is spent; resumes at {}",
        lookup.provider().name(),
        lookup::fmt_unix_ms(resets_at_ms)
    )
}
