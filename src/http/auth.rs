//! Bearer tokens: every route but `/healthz` and the page (`/` and `/assets/…`, static, no
//! data: it asks for the token) needs the API token when one is set; `/metrics` its own token when one is set (else
//! the API token).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::secret::Secret;

/// The tokens a request may need.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub api: Option<Secret>,
    pub metrics: Option<Secret>,
}

pub(super) async fn require_token(
    State(tokens): State<std::sync::Arc<Tokens>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let needed = match path {
        "/healthz" | "/" => None,
        p if p.starts_with("/assets/") => None,
        "/metrics" => tokens.metrics.as_ref().or(tokens.api.as_ref()),
        _ => tokens.api.as_ref(),
    };
    let Some(needed) = needed else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if same_secret(given, needed.expose()) => next.run(request).await,
        _ => {
            let mut res = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this route needs the API token: Authorization: Bearer <token>",
            )
            .into_response();
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
    }
}

/// Compares the two in time that depends on neither (their digests, byte by byte, all bytes).
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", "abc"));
        assert!(!same_secret("abcd", "abc"));
    }
}
