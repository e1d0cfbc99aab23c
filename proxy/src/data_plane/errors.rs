//! Every error a client can get from the proxy, with its HTTP status and an OpenAI-style JSON body
//! (`{"error": {"message", "type", "param", "code"}}`), so OpenAI client libraries surface it well.

use bytes::Bytes;
use std::time::Duration;

/// An error answered by the proxy itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The requested model is not served here.
    #[error("The model `{0}` does not exist or is not served by this proxy. GET /v1/models lists the models served.")]
    ModelNotFound(String),
    /// The request names no model and no route matched.
    #[error("No model given: put a `model` field in the JSON body, or an `x-infergate-deployment` header.")]
    ModelRequired,
    /// The JSON body could not be parsed.
    #[error("We could not parse the JSON body of your request: {0}")]
    BadJson(String),
    /// The body is over the configured limit.
    #[error("Request body is larger than the limit of {limit} bytes (server.max_body_size).")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The client sent its body too slowly (`server.body_read_timeout`, `server.min_body_rate`).
    #[error("The request body arrived too slowly: {received} bytes in {waited:?} (server.body_read_timeout, server.min_body_rate).")]
    BodyTimeout {
        /// Bytes received.
        received: u64,
        /// Time spent reading.
        waited: Duration,
    },
    /// The request body could not be read from the client.
    #[error("Could not read the request body: {0}")]
    BadBody(String),
    /// Nothing is served at this path.
    #[error("Unknown request URL: {method} {path}.")]
    NoRoute {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The deployment's queue is full.
    #[error("Deployment `{deployment}` has {waiting} requests waiting already (queue.max_waiting); retry later.")]
    QueueFull {
        /// Deployment name.
        deployment: String,
        /// Requests waiting.
        waiting: u64,
    },
    /// This client holds its share of the deployment's queue already.
    #[error("You already have {waiting} requests waiting for deployment `{deployment}` (queue.max_waiting_per_client); retry later.")]
    ClientQueueFull {
        /// Deployment name.
        deployment: String,
        /// The client's requests waiting.
        waiting: u64,
    },
    /// No replica could take the request within `queue.max_wait`.
    #[error("Deployment `{deployment}` had no replica able to take the request within {waited:?} (queue.max_wait).")]
    QueueTimeout {
        /// Deployment name.
        deployment: String,
        /// How long it waited.
        waited: Duration,
    },
    /// Nothing can answer for now (replicas keep failing to start, no static replica is
    /// healthy, no fallback); retried in the background.
    #[error("Deployment `{deployment}` cannot answer now: {reason}")]
    Unavailable {
        /// Deployment name.
        deployment: String,
        /// The last failure.
        reason: String,
        /// Seconds before a retry makes sense.
        retry_after: u64,
    },
    /// The fallback provider refused infergate's own API key.
    #[error("Fallback provider `{provider}` refused infergate's API key (HTTP {status}); the operator must fix providers.{provider}.api_key_env.")]
    ProviderRefusedKey {
        /// Provider name.
        provider: String,
        /// Its status (401 or 403).
        status: u16,
    },
    /// The proxy is shutting down or the deployment was removed.
    #[error("The proxy is shutting down; retry against another instance.")]
    ShuttingDown,
    /// No replica accepted a connection.
    #[error("Could not connect to any replica of deployment `{0}`.")]
    UpstreamConnect(String),
    /// The replica failed before sending a response.
    #[error("The replica of deployment `{deployment}` failed before responding: {reason}")]
    UpstreamFailed {
        /// Deployment name.
        deployment: String,
        /// What went wrong.
        reason: String,
    },
    /// The replica sent no response headers within `upstream.response_timeout`.
    #[error(
        "The replica of deployment `{0}` did not respond in time (upstream.response_timeout)."
    )]
    UpstreamTimeout(String),
    /// The replica answered with a server error before any byte reached the client (kept back so
    /// the fallback can answer instead).
    #[error("The replica of deployment `{deployment}` answered HTTP {status}.")]
    ReplicaStatus {
        /// Deployment name.
        deployment: String,
        /// The replica's status.
        status: u16,
    },
    /// The deployment was deactivated after a long time without traffic.
    #[error("Deployment `{0}` is deactivated after a long time without traffic (deactivate_after). Activate it with `infergate activate {0}` or `POST /admin/v1/deployments/{0}/activate` on the admin listener; requests are refused until then.")]
    Deactivated(String),
    /// The path is not one a client may reach on a replica (`/v1/*` or `route.passthrough`).
    #[error("{path} is not forwarded to deployment `{deployment}`: only /v1/* and the paths listed in its route.passthrough reach a replica.")]
    PathNotForwarded {
        /// Deployment name.
        deployment: String,
        /// The path as the replica would have seen it.
        path: String,
    },
    /// A method the proxy never forwards (CONNECT, TRACE).
    #[error("Method {0} is not allowed here.")]
    MethodNotAllowed(String),
    /// A request body in a content coding the proxy cannot decode.
    #[error("Request bodies with Content-Encoding `{0}` are not supported; send gzip, deflate or an uncompressed body.")]
    UnsupportedEncoding(String),
    /// `[auth] required = true` and the request carried no key, or one no client has.
    #[error("{}", if *missing { "You didn't provide an API key. Send it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY) or in an api-key header." } else { "Incorrect API key provided. Ask the operator of this gateway for a valid key." })]
    InvalidApiKey {
        /// No key at all (else: an unknown one).
        missing: bool,
    },
    /// The client is over one of its limits (`clients.NAME.requests_per_minute`, …).
    #[error("Rate limit reached for client `{client}` on {}: limit {}. Please try again in {}.", .refused.kind.name(), .refused.limit, infergate_clients::limits::openai_duration(.refused.retry_after))]
    RateLimited {
        /// The client's name.
        client: String,
        /// Which limit, and the budgets' state.
        refused: infergate_clients::limits::Refused,
    },
    /// The request was already forwarded by an infergate and came back: a routing loop.
    #[error("Loop detected: this request was already forwarded by this infergate (header x-infergate-forwarded). Check that no replica URL or fallback provider leads back to this proxy.")]
    LoopDetected,
}

impl ProxyError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::ModelNotFound(_)
            | ProxyError::NoRoute { .. }
            | ProxyError::PathNotForwarded { .. } => 404,
            ProxyError::MethodNotAllowed(_) => 405,
            ProxyError::UnsupportedEncoding(_) => 415,
            ProxyError::ModelRequired | ProxyError::BadJson(_) | ProxyError::BadBody(_) => 400,
            ProxyError::BodyTooLarge { .. } => 413,
            ProxyError::BodyTimeout { .. } => 408,
            ProxyError::QueueFull { .. }
            | ProxyError::ClientQueueFull { .. }
            | ProxyError::ShuttingDown
            | ProxyError::Unavailable { .. }
            | ProxyError::Deactivated(_) => 503,
            ProxyError::QueueTimeout { .. } | ProxyError::UpstreamTimeout(_) => 504,
            ProxyError::UpstreamConnect(_)
            | ProxyError::ProviderRefusedKey { .. }
            | ProxyError::UpstreamFailed { .. }
            | ProxyError::ReplicaStatus { .. } => 502,
            ProxyError::LoopDetected => 508,
            ProxyError::InvalidApiKey { .. } => 401,
            ProxyError::RateLimited { .. } => 429,
        }
    }

    /// Whether the replica failed before any byte reached the client (the `replica_error`
    /// fallback may answer instead).
    pub fn is_replica_error(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamConnect(_) | ProxyError::ReplicaStatus { .. }
        )
    }

    /// OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        if let ProxyError::RateLimited { refused, .. } = self {
            // OpenAI's rate-limit errors name the budget in `type`.
            return match refused.kind {
                infergate_clients::limits::LimitKind::Tokens => "tokens",
                _ => "requests",
            };
        }
        match self.status() {
            400 | 401 | 404 | 405 | 408 | 413 | 415 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::ModelNotFound(_) => "model_not_found",
            ProxyError::ModelRequired => "model_required",
            ProxyError::BadJson(_) => "invalid_json",
            ProxyError::BadBody(_) => "invalid_body",
            ProxyError::BodyTimeout { .. } => "request_timeout",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::NoRoute { .. } => "unknown_url",
            ProxyError::QueueFull { .. } | ProxyError::ClientQueueFull { .. } => "queue_full",
            ProxyError::QueueTimeout { .. } => "queue_timeout",
            ProxyError::ShuttingDown => "shutting_down",
            ProxyError::Unavailable { .. } => "deployment_unavailable",
            ProxyError::UpstreamConnect(_) => "upstream_unreachable",
            ProxyError::UpstreamFailed { .. } => "upstream_error",
            ProxyError::ProviderRefusedKey { .. } => "provider_auth_failed",
            ProxyError::UpstreamTimeout(_) => "upstream_timeout",
            ProxyError::ReplicaStatus { .. } => "upstream_error",
            ProxyError::LoopDetected => "loop_detected",
            ProxyError::PathNotForwarded { .. } => "path_not_forwarded",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::UnsupportedEncoding(_) => "unsupported_content_encoding",
            ProxyError::Deactivated(_) => "deployment_deactivated",
            ProxyError::InvalidApiKey { .. } => "invalid_api_key",
            ProxyError::RateLimited { .. } => "rate_limit_exceeded",
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::QueueFull { .. } | ProxyError::ClientQueueFull { .. } => Some(5),
            ProxyError::ShuttingDown => Some(1),
            ProxyError::Unavailable { retry_after, .. } => Some(*retry_after),
            ProxyError::RateLimited { refused, .. } => {
                Some(refused.retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        }
    }

    /// Headers the error answer carries besides `retry-after` (a rate limit's budgets).
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ProxyError::RateLimited { refused, .. } => refused.headers.pairs(),
            _ => Vec::new(),
        }
    }

    /// The OpenAI-style JSON body.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": if matches!(self, ProxyError::ModelNotFound(_) | ProxyError::ModelRequired) { Some("model") } else { None },
            "code": self.code(),
        }});
        Bytes::from(body.to_string())
    }
}

impl ProxyError {
    /// The error a request of `deployment` gets when its pool cannot give it a slot.
    pub fn from_acquire(deployment: &str, e: infergate_scaler::AcquireError) -> Self {
        use infergate_scaler::AcquireError;
        match e {
            AcquireError::QueueFull { waiting } => ProxyError::QueueFull {
                deployment: deployment.to_string(),
                waiting,
            },
            AcquireError::ClientShareFull { waiting } => ProxyError::ClientQueueFull {
                deployment: deployment.to_string(),
                waiting,
            },
            AcquireError::Timeout(waited) => ProxyError::QueueTimeout {
                deployment: deployment.to_string(),
                waited,
            },
            AcquireError::Closed => ProxyError::ShuttingDown,
            AcquireError::Unavailable(u) => ProxyError::Unavailable {
                deployment: deployment.to_string(),
                reason: u.reason,
                retry_after: u.retry_after_secs,
            },
        }
    }
}
