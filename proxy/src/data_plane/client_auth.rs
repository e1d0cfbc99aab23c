//! Phase 1, authenticate (only with `[auth] required = true`): the client's key — from
//! `Authorization: Bearer …` or, as Azure OpenAI clients send it, `api-key:` — names a configured
//! client (401 otherwise); once routed, the client must be allowed the deployment (404, as OpenAI
//! answers for a model a key cannot use) and be under its limits (429 with `Retry-After` and the
//! `x-ratelimit-*` headers). The key itself is never forwarded: `upstream::request` drops both
//! headers for an authenticated request, and providers never get a client's credentials.

use crate::data_plane::errors::ProxyError;
use infergate_clients::limits::{InFlight, RateHeaders};
use infergate_clients::usage::{estimate_prompt_tokens, UsageScanner};
use infergate_clients::{AuthError, Client, ClientTable};
use pingora::http::RequestHeader;
use std::sync::Arc;

/// The key a request presents, if any.
fn presented_key(req: &RequestHeader) -> Option<&[u8]> {
    if let Some(v) = req.headers.get(http::header::AUTHORIZATION) {
        let v = v.as_bytes();
        let scheme = v.get(..7)?;
        return scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| v[7..].trim_ascii());
    }
    req.headers
        .get("api-key")
        .map(|v| v.as_bytes().trim_ascii())
}

/// The client a request comes from: `Ok(None)` when authentication is off.
pub(crate) fn authenticate(
    req: &RequestHeader,
    table: &ClientTable,
) -> Result<Option<Arc<Client>>, ProxyError> {
    if !table.required() {
        return Ok(None);
    }
    match table.identify(presented_key(req)) {
        Ok(client) => Ok(Some(client)),
        Err(e) => {
            tracing::info!(
                missing = e == AuthError::Missing,
                "request refused: no valid API key"
            );
            Err(ProxyError::InvalidApiKey {
                missing: e == AuthError::Missing,
            })
        }
    }
}

/// An admitted request of a client: its place in the client's concurrency, the budgets' state
/// for the response headers, and the tokens to count when it ends.
pub(crate) struct Admitted {
    client: Arc<Client>,
    _in_flight: InFlight,
    /// `x-ratelimit-*` for the response.
    pub(crate) headers: RateHeaders,
    estimated_prompt: u32,
    /// Finds the model's `usage` in the response as it streams past.
    pub(crate) usage: UsageScanner,
}

/// Checks that `client` may use `deployment` (named `model` by the request) and is under its
/// limits for a request with a body of `body_len` bytes.
pub(crate) fn admit(
    client: Arc<Client>,
    deployment: &str,
    model: Option<&str>,
    body_len: usize,
) -> Result<Admitted, ProxyError> {
    if !client.may_use(deployment) {
        tracing::info!(client = %client.name, deployment, "request refused: the client may not use this model");
        return Err(ProxyError::ModelNotFound(
            model.unwrap_or(deployment).to_string(),
        ));
    }
    let estimated_prompt = estimate_prompt_tokens(body_len);
    match client.limits.admit(estimated_prompt) {
        Ok((in_flight, headers)) => {
            client.count_request();
            Ok(Admitted {
                client,
                _in_flight: in_flight,
                headers,
                estimated_prompt,
                usage: UsageScanner::default(),
            })
        }
        Err(refused) => {
            client.count_refused(refused.kind);
            tracing::info!(client = %client.name, limit = refused.kind.name(), retry_after_ms = refused.retry_after.as_millis() as u64, "request refused: over the client's limit");
            Err(ProxyError::RateLimited {
                client: client.name.clone(),
                refused,
            })
        }
    }
}

impl Admitted {
    /// The client's name and queue priority.
    pub(crate) fn client(&self) -> (&str, infergate_config::Priority) {
        (&self.client.name, self.client.config().priority)
    }

    /// The request is over: its tokens are counted (the model's own counts where it gave them).
    pub(crate) fn finish(self) {
        let prompt = self.usage.prompt.unwrap_or(self.estimated_prompt);
        self.client.count_tokens(prompt, self.usage.completion);
    }
}
