//! The provider API key: kept out of `Debug`, `Display` and serialization so that it can only
//! leave the process in the `Authorization` header of a request to its own provider.

use http::HeaderValue;
use std::fmt;

/// An API key read from the environment.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: String) -> Self {
        ApiKey(key)
    }

    /// `Bearer <key>`, marked sensitive so HTTP libraries never log it.
    pub fn bearer(&self) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Replaces every occurrence of the key in `text` (a provider's error body may echo it).
    pub fn redact(&self, text: &[u8]) -> Vec<u8> {
        let key = self.0.as_bytes();
        if key.is_empty() || text.len() < key.len() {
            return text.to_vec();
        }
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(key) {
                out.extend_from_slice(b"[redacted]");
                i += key.len();
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        out
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_and_redacted_from_bodies() {
        let key = ApiKey::new("sk-secret-123".into());
        assert!(!format!("{key:?} {key}").contains("sk-secret"));
        assert!(key.bearer().unwrap().is_sensitive());
        let body = br#"{"error":"Incorrect API key provided: sk-secret-123."}"#;
        let clean = String::from_utf8(key.redact(body)).unwrap();
        assert_eq!(
            clean,
            r#"{"error":"Incorrect API key provided: [redacted]."}"#
        );
    }
}
