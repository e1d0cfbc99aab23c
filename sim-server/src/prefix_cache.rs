//! A model server's prefix cache, modelled: the server remembers the prompt prefixes it served
//! (an LRU of their hashes, `--prefix-cache-size` entries), and a request whose prefix it holds
//! starts faster (its time to first token × `--prefix-hit-ttft-factor`), as vLLM and SGLang reuse
//! the KV cache of a shared prefix. Hits and queries are exported under vLLM's names
//! (`vllm:prefix_cache_hits_total`, `vllm:prefix_cache_queries_total`), counted per request here
//! (vLLM counts tokens), so hit rates can be read off `/metrics`.

use serde_json::Value;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The prompt text a prefix is made of, in order, up to `limit` bytes: the messages' contents
/// (strings or `text` parts), the prompt, or the Responses API's input.
pub(crate) fn prefix_text(body: &Value, limit: usize) -> Vec<u8> {
    fn walk(v: &Value, out: &mut Vec<u8>, limit: usize) {
        if out.len() >= limit {
            return;
        }
        match v {
            Value::String(s) => {
                let room = limit - out.len();
                out.extend_from_slice(&s.as_bytes()[..s.len().min(room)]);
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out, limit)),
            Value::Object(o) => {
                for key in ["content", "text"] {
                    if let Some(inner) = o.get(key) {
                        walk(inner, out, limit);
                    }
                }
            }
            Value::Number(n) => {
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b' ');
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for key in ["messages", "prompt", "input"] {
        if let Some(v) = body.get(key) {
            walk(v, &mut out, limit);
        }
    }
    out
}

/// The cache of one replica.
pub(crate) struct PrefixCache {
    capacity: usize,
    recent: Mutex<VecDeque<u64>>,
    /// Requests whose prefix was held.
    pub hits: AtomicU64,
    /// Requests looked up.
    pub queries: AtomicU64,
}

impl PrefixCache {
    /// A cache of `capacity` prefixes (0: none, every request misses and nothing is counted).
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            capacity,
            recent: Mutex::new(VecDeque::new()),
            hits: AtomicU64::new(0),
            queries: AtomicU64::new(0),
        }
    }

    /// Looks the request's prefix up and remembers it; true on a hit.
    pub fn lookup(&self, text: &[u8]) -> bool {
        if self.capacity == 0 || text.is_empty() {
            return false;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let key = h.finish();
        self.queries.fetch_add(1, Ordering::AcqRel);
        let Ok(mut recent) = self.recent.lock() else {
            return false;
        };
        let hit = match recent.iter().position(|k| *k == key) {
            Some(i) => {
                recent.remove(i);
                true
            }
            None => false,
        };
        recent.push_front(key);
        recent.truncate(self.capacity);
        if hit {
            self.hits.fetch_add(1, Ordering::AcqRel);
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_prefix_seen_before_hits_and_the_oldest_is_forgotten() {
        let cache = PrefixCache::new(2);
        assert!(!cache.lookup(b"a"));
        assert!(cache.lookup(b"a"));
        assert!(!cache.lookup(b"b"));
        assert!(!cache.lookup(b"c")); // evicts a
        assert!(!cache.lookup(b"a"));
        assert_eq!(cache.hits.load(Ordering::Acquire), 1);
        assert_eq!(cache.queries.load(Ordering::Acquire), 5);
    }

    #[test]
    fn the_prefix_is_the_conversation_from_its_first_message() {
        let body = json!({"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        assert_eq!(prefix_text(&body, 100), b"syshi");
        assert_eq!(prefix_text(&body, 2), b"sy");
        assert_eq!(prefix_text(&json!({"prompt": "p"}), 10), b"p");
    }
}
