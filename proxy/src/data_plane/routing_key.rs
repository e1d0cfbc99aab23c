//! The keys `routing = "prefix"` and `"session"` route on, and a request's place in the queue
//! (band and client), read from the request already in memory.
//!
//! The prefix key hashes the first `routing_prefix_bytes` of the prompt text in order — for chat
//! the messages' contents from the first (system, then the first user turn, …), for completions
//! the prompt, for the Responses API the input — so requests sharing a system prompt, and every
//! turn of one conversation, share a key. It is found by a serde visitor that skips everything
//! else as it scans (no JSON tree is built).

use infergate_config::{DeploymentConfig, Priority, RoutingPolicy};
use infergate_scaler::affinity::{Affinity, RouteReason};
use infergate_scaler::pool::Ticket;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::hash::{Hash, Hasher};

/// The hash of `text`, as keys and clients are compared.
fn hash_of(text: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Prompt text gathered up to a limit.
struct Prefix {
    text: Vec<u8>,
    limit: usize,
}

impl Prefix {
    fn push(&mut self, s: &str) {
        let room = self.limit.saturating_sub(self.text.len());
        let bytes = s.as_bytes();
        self.text.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// The prompt-prefix key of a JSON body, or `None` without prompt text.
pub(crate) fn prefix_key(body: &[u8], limit: usize) -> Option<u64> {
    let mut prefix = Prefix {
        text: Vec::with_capacity(limit.min(4096)),
        limit,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    Top(&mut prefix).deserialize(&mut de).ok()?;
    (!prefix.text.is_empty()).then(|| hash_of(&prefix.text))
}

/// The top-level object: `messages`, `prompt` and `input` are read; the rest is skipped.
struct Top<'p>(&'p mut Prefix);

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "messages" | "prompt" | "input" => map.next_value_seed(Text(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Text wherever it is: a string, a list of strings or of parts (`{"text": …}`), messages
/// (`{"content": …}`), token ids.
struct Text<'p>(&'p mut Prefix);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("prompt text")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push(&v.to_string());
        self.0.push(" ");
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_u64(v.unsigned_abs())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Text(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "content" | "text" => map.next_value_seed(Text(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// What the pool needs of a request: its routing key (per the deployment's `routing`), its band
/// and its client. `session` is the `x-session-id` header, `user` the body's `user` field,
/// `client` the authenticated client's name and priority.
pub(crate) fn ticket(
    config: &DeploymentConfig,
    body: &[u8],
    session: Option<&str>,
    user: Option<&str>,
    priority_header: Option<&str>,
    client: Option<(&str, Priority)>,
) -> Ticket {
    let affinity = match config.routing {
        RoutingPolicy::LeastLoaded => None,
        RoutingPolicy::Prefix => {
            prefix_key(body, config.routing_prefix_bytes as usize).map(|key| Affinity {
                key,
                reason: RouteReason::Prefix,
                load_factor: config.routing_load_factor,
            })
        }
        RoutingPolicy::Session => session
            .filter(|s| !s.is_empty())
            .or(user.filter(|u| !u.is_empty()))
            .map(|s| Affinity {
                key: hash_of(s.as_bytes()),
                reason: RouteReason::Session,
                load_factor: config.routing_load_factor,
            }),
    };
    let asked = priority_header.and_then(Priority::parse);
    let priority = match client {
        // A client's own priority is its ceiling: the header may lower it, never raise it.
        Some((_, own)) => asked.map_or(own, |p| p.max(own)),
        None => asked.unwrap_or_default(),
    };
    let client = client
        .map(|(name, _)| hash_of(name.as_bytes()) | 1)
        .or(user
            .filter(|u| !u.is_empty())
            .map(|u| hash_of(u.as_bytes()) | 1))
        .unwrap_or(0);
    Ticket {
        affinity,
        priority,
        client,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_and_its_next_turn_share_the_key_of_their_system_prompt() {
        let system = "You are a helpful assistant. ".repeat(50);
        let turn1 = format!(
            r#"{{"model":"m","messages":[{{"role":"system","content":"{system}"}},{{"role":"user","content":"hi"}}],"temperature":0.5}}"#
        );
        let turn2 = format!(
            r#"{{"messages":[{{"role":"system","content":"{system}"}},{{"role":"user","content":"hi"}},{{"role":"assistant","content":"hello"}},{{"role":"user","content":"more"}}],"model":"m"}}"#
        );
        let other = r#"{"model":"m","messages":[{"role":"system","content":"Another prompt"}]}"#;
        let k1 = prefix_key(turn1.as_bytes(), 1024).unwrap();
        assert_eq!(Some(k1), prefix_key(turn2.as_bytes(), 1024));
        assert_ne!(Some(k1), prefix_key(other.as_bytes(), 1024));
        // Short prompts differ by their whole text.
        assert_ne!(
            prefix_key(turn1.as_bytes(), 8192),
            prefix_key(turn2.as_bytes(), 8192)
        );
    }

    #[test]
    fn completions_parts_and_responses_input_are_read() {
        let a = prefix_key(br#"{"prompt":"Once upon a time"}"#, 64);
        assert_eq!(a, prefix_key(br#"{"prompt":["Once upon a time"]}"#, 64));
        assert_eq!(
            prefix_key(br#"{"messages":[{"role":"user","content":[{"type":"text","text":"Once upon a time"}]}]}"#, 64),
            a
        );
        assert_eq!(prefix_key(br#"{"input":"Once upon a time"}"#, 64), a);
        assert_eq!(prefix_key(br#"{"model":"m"}"#, 64), None);
        assert_eq!(prefix_key(b"not json", 64), None);
    }

    #[test]
    fn the_client_is_the_key_else_the_user_and_its_priority_is_a_ceiling() {
        let config: DeploymentConfig =
            toml::from_str("backend = { type = \"static\", urls = [] }").unwrap();
        let anon = ticket(&config, b"{}", None, None, Some("high"), None);
        assert_eq!((anon.client, anon.priority), (0, Priority::High));
        let user = ticket(&config, b"{}", None, Some("alice"), None, None);
        assert_ne!(user.client, 0);
        let low = ticket(
            &config,
            b"{}",
            None,
            None,
            Some("high"),
            Some(("batch", Priority::Low)),
        );
        assert_eq!(low.priority, Priority::Low);
        let lowered = ticket(
            &config,
            b"{}",
            None,
            None,
            Some("low"),
            Some(("web", Priority::Normal)),
        );
        assert_eq!(lowered.priority, Priority::Low);
        assert!(anon.affinity.is_none(), "least_loaded has no key");
    }
}
