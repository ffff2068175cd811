//! Secrets (API keys, tokens): printed as `***`, never serialized, and scrubbed from texts that
//! might quote them.

use std::fmt;

/// A secret value. Shown as `***` by `Debug` and `Display`; not serializable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value in a file (its first line; surrounding whitespace dropped).
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

    /// The value itself, for the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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

/// `text` with every occurrence of `secret` (as is, and percent-encoded) replaced by `***`.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    let mut out = text.replace(secret, "***");
    let encoded = percent_encode(secret);
    if encoded != secret {
        out = out.replace(&encoded, "***");
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars_and_are_scrubbed() {
        let s = Secret::new("abc123");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(scrub("a k%2F1 b k/1", "k/1"), "a *** b ***");
        assert_eq!(scrub("nothing", ""), "nothing");
    }
}
