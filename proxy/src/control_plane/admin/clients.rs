//! `GET /admin/v1/clients`: every configured client with its models, limits and what it used
//! (the same counts Prometheus has as `infergate_client_*{client}`). Keys never appear.

use infergate_clients::ClientTable;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// The clients as JSON.
pub fn list(table: &ClientTable) -> Value {
    let clients: Vec<Value> = table
        .clients()
        .iter()
        .map(|c| {
            let config = c.config();
            let s = &c.stats;
            json!({
                "name": c.name,
                "key": if config.key_env.is_some() { "key_env" } else { "key_sha256" },
                "models": config.models,
                "requests_per_minute": config.requests_per_minute,
                "tokens_per_minute": config.tokens_per_minute,
                "max_concurrency": config.max_concurrency,
                "in_flight": c.limits.in_flight(),
                "requests": s.requests.load(Ordering::Relaxed),
                "rate_limited": s.rate_limited.load(Ordering::Relaxed),
                "prompt_tokens": s.prompt_tokens.load(Ordering::Relaxed),
                "completion_tokens": s.completion_tokens.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({"auth_required": table.required(), "clients": clients})
}
