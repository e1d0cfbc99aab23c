//! Fallback to external OpenAI-compatible providers (SPEC §6): the providers and their TLS client,
//! rewriting a request for a provider, circuit breaking a failing provider, and the gradual move
//! of traffic back to our replicas once they are ready.
//!
//! Nothing here decides *when* to fall back; the data plane does, from the deployment's state.

pub mod breaker;
pub mod headers;
pub mod loop_marker;
pub mod provider;
pub mod ramp;
pub mod rewrite;
pub mod secret;

pub use breaker::CircuitBreaker;
pub use headers::HOP_BY_HOP_REQUEST_HEADERS;
pub use loop_marker::{forwarded_by_us, marker_value, FORWARDED_MARKER};
pub use provider::{Provider, ProviderError, Providers};
pub use ramp::RampBack;
pub use secret::ApiKey;
