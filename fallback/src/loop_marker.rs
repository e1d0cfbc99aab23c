//! Loop detection across hops: every request infergate forwards (to a replica or a provider)
//! carries `x-infergate-forwarded` with the ids of the infergate instances it went through; an
//! instance that finds its own id there refuses the request (508) instead of sending it round
//! again. Other infergates in a chain (an edge gateway in front of a sidecar) pass it on,
//! adding their id, like HTTP's `Via` (RFC 9110 §7.6.3).

use http::{HeaderMap, HeaderValue};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// Request header that lists the infergate instances a request went through.
pub const FORWARDED_MARKER: &str = "x-infergate-forwarded";

/// This process's id, random per start (`ig-` and 16 hex digits).
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        // std's RandomState is seeded from the OS: a random u64 without another crate.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("ig-{:016x}", h.finish())
    })
}

/// Whether this instance already forwarded the request (a loop).
pub fn forwarded_by_us(headers: &HeaderMap) -> bool {
    forwarded_by(headers, instance_id())
}

fn forwarded_by(headers: &HeaderMap, id: &str) -> bool {
    headers
        .get_all(FORWARDED_MARKER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| hop.trim() == id)
}

/// The marker to send on: the hops so far plus this instance.
pub fn marker_value(headers: &HeaderMap) -> HeaderValue {
    if !headers.contains_key(FORWARDED_MARKER) {
        // The common case, on every request: a shared value, no allocation.
        static OWN: OnceLock<HeaderValue> = OnceLock::new();
        return OWN
            .get_or_init(|| {
                HeaderValue::from_str(instance_id()).unwrap_or(HeaderValue::from_static("ig"))
            })
            .clone();
    }
    let mut hops: Vec<&str> = headers
        .get_all(FORWARDED_MARKER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .take(32)
        .collect();
    hops.push(instance_id());
    HeaderValue::from_str(&hops.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("ig"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_id_is_a_loop_other_ids_pass_and_are_kept() {
        let mut h = HeaderMap::new();
        assert!(!forwarded_by_us(&h));
        h.insert(FORWARDED_MARKER, HeaderValue::from_static("ig-other"));
        assert!(!forwarded_by_us(&h));
        let next = marker_value(&h);
        assert_eq!(
            next.to_str().unwrap(),
            format!("ig-other, {}", instance_id())
        );
        h.insert(FORWARDED_MARKER, next);
        assert!(forwarded_by_us(&h));
        assert!(instance_id().starts_with("ig-") && instance_id().len() == 19);
    }
}
