//! Keys as the table holds them: SHA-256 digests, looked up in constant time.

use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// A key's SHA-256 digest.
pub type Digest = [u8; 32];

/// The digest of a presented key.
pub fn digest_of(key: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, key).as_ref());
    out
}

/// Parses a hex digest from the config (validated there: 64 hex digits).
pub fn parse_hex(hex: &str) -> Option<Digest> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The index of `presented` among `digests`, comparing every one in constant time (no early
/// exit: how long it takes says nothing about which key, or how much of one, matched).
pub fn find(digests: &[Digest], presented: &Digest) -> Option<usize> {
    let mut found = None;
    for (i, d) in digests.iter().enumerate() {
        if bool::from(d.ct_eq(presented)) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_matches_sha256sum() {
        // printf %s test | sha256sum
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(parse_hex(hex), Some(digest_of(b"test")));
        assert_eq!(parse_hex(&hex.to_uppercase()), Some(digest_of(b"test")));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn find_returns_the_matching_index_only() {
        let ds = [digest_of(b"a"), digest_of(b"b")];
        assert_eq!(find(&ds, &digest_of(b"b")), Some(1));
        assert_eq!(find(&ds, &digest_of(b"c")), None);
    }
}
