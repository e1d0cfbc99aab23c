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

/// Redacts a key from a body that arrives in chunks: bytes that could be the start of the key are
/// held back until the next chunk shows whether they are, so a key split across chunks is caught
/// and nothing else is delayed.
pub struct StreamRedactor {
    key: Option<ApiKey>,
    held: Vec<u8>,
}

impl StreamRedactor {
    /// A redactor for `key` (none: bytes pass unchanged).
    pub fn new(key: Option<ApiKey>) -> Self {
        StreamRedactor {
            key: key.filter(|k| !k.0.is_empty()),
            held: Vec::new(),
        }
    }

    /// The bytes of `chunk` (after what was held) that are safe to send now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(key) = &self.key else {
            return chunk.to_vec();
        };
        let mut text = std::mem::take(&mut self.held);
        text.extend_from_slice(chunk);
        let k = key.0.as_bytes();
        // The longest tail of `text` that is a proper prefix of the key waits for the next chunk.
        let keep = (1..k.len().min(text.len() + 1))
            .rev()
            .find(|&n| text.ends_with(&k[..n]))
            .unwrap_or(0);
        let tail = text.split_off(text.len() - keep);
        self.held = tail;
        key.redact(&text)
    }

    /// What was held back, at the end of the body.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
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

    #[test]
    fn a_key_split_across_chunks_is_redacted_and_other_bytes_pass() {
        let key = ApiKey::new("sk-secret-123".into());
        for split in 0..30 {
            let body = b"data: {\"k\":\"sk-secret-123\"} sk-se done";
            let (a, b) = body.split_at(split.min(body.len()));
            let mut r = StreamRedactor::new(Some(key.clone()));
            let mut out = r.push(a);
            out.extend(r.push(b));
            out.extend(r.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "data: {\"k\":\"[redacted]\"} sk-se done",
                "split at {split}"
            );
        }
        let mut plain = StreamRedactor::new(Some(key));
        assert_eq!(plain.push(b"hello"), b"hello");
    }
}
