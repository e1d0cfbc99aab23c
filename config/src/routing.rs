//! How a deployment picks the replica for a request (`routing`): least loaded (power of two
//! choices), by prompt prefix (so requests sharing a system prompt or a conversation reach the
//! replica whose KV cache holds it), or by session — and the priority bands of the queue.

use serde::{Deserialize, Serialize};

/// The replica-choice policy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// Power of two choices on requests in flight.
    #[default]
    LeastLoaded,
    /// A hash of the first `routing_prefix_bytes` of the prompt, on a consistent hash with
    /// bounded loads (`routing_load_factor`).
    Prefix,
    /// The `x-session-id` header, else the request's `user` field; least loaded without either.
    Session,
}

/// A request's priority band in the queue (`x-infergate-priority`, or its client's `priority`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Served first.
    High,
    /// The default.
    #[default]
    Normal,
    /// Served when nothing else waits.
    Low,
}

impl Priority {
    /// Parses `high`, `normal` or `low` (a header's value).
    pub fn parse(text: &str) -> Option<Priority> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("high") => Some(Priority::High),
            t if t.eq_ignore_ascii_case("normal") => Some(Priority::Normal),
            t if t.eq_ignore_ascii_case("low") => Some(Priority::Low),
            _ => None,
        }
    }

    /// The band's index: 0 (high) to 2 (low).
    pub fn band(self) -> usize {
        self as usize
    }
}

pub(crate) mod defaults {
    pub fn prefix_bytes() -> u32 {
        1024
    }
    pub fn load_factor() -> f64 {
        1.25
    }
}
