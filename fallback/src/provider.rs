//! Providers: an OpenAI-compatible endpoint each, reached over HTTPS (rustls, system roots plus an
//! optional extra CA) or plain HTTP, with its API key, model mapping, priority, timeout and circuit.

use crate::breaker::CircuitBreaker;
use crate::headers::{connection_tokens, is_hop_by_hop, provider_may_receive};
use crate::loop_marker::{marker_value, FORWARDED_MARKER};
use crate::rewrite::{provider_path, with_model};
use crate::secret::{ApiKey, StreamRedactor};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use infergate_config::{Config, ProviderConfig, ProviderUrl};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a provider could not be set up or did not answer usefully.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider settings cannot be used.
    #[error("provider {provider}: {reason}")]
    Setup {
        /// Provider name.
        provider: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting, TLS or sending failed.
    #[error("provider {provider} unreachable: {reason}")]
    Unreachable {
        /// Provider name.
        provider: String,
        /// The error (never contains the key).
        reason: String,
    },
    /// No response headers within the provider's timeout.
    #[error("provider {provider} did not answer within {timeout:?}")]
    Timeout {
        /// Provider name.
        provider: String,
        /// The limit.
        timeout: Duration,
    },
}

/// One external provider.
pub struct Provider {
    /// Name from the config (`[providers.NAME]`).
    pub name: String,
    url: ProviderUrl,
    key: Option<ApiKey>,
    models: BTreeMap<String, String>,
    /// Lower is tried first.
    pub priority: u32,
    /// Longest wait for response headers, and between body chunks.
    pub timeout: Duration,
    breaker: CircuitBreaker,
    cool_down: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The settings it was built from, to keep it (and its circuit) across an unchanged reload.
    settings: String,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("key", &self.key)
            .field("priority", &self.priority)
            .finish()
    }
}

impl Provider {
    /// Builds a provider: reads its key from the environment and its extra CA file.
    pub fn from_config(name: &str, config: &ProviderConfig) -> Result<Provider, ProviderError> {
        let setup = |reason: String| ProviderError::Setup {
            provider: name.to_string(),
            reason,
        };
        let url = ProviderUrl::parse(&config.base_url)
            .ok_or_else(|| setup(format!("base_url {:?} is not a URL", config.base_url)))?;
        let key = match &config.api_key_env {
            Some(var) => {
                Some(ApiKey::new(std::env::var(var).map_err(|_| {
                    setup(format!("environment variable {var} is not set"))
                })?))
            }
            None => None,
        };
        let tls = client_tls(config.ca_file.as_deref()).map_err(setup)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout.get().min(Duration::from_secs(10))));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Provider {
            name: name.to_string(),
            url,
            key,
            models: config.models.clone(),
            priority: config.priority,
            timeout: config.timeout.get(),
            breaker: CircuitBreaker::new(config.failures_to_cool_down, config.cool_down.get()),
            cool_down: config.cool_down.get(),
            client,
            settings: format!("{config:?}"),
        })
    }

    /// How long this provider is skipped once its circuit opens.
    pub fn breaker_cool_down(&self) -> Duration {
        self.cool_down
    }

    /// This provider's circuit.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The provider's model for a request naming `requested` (or nothing) to `deployment`.
    pub fn model_for(&self, deployment: &str, requested: Option<&str>) -> Option<String> {
        requested
            .and_then(|m| self.models.get(m))
            .or_else(|| self.models.get(deployment))
            .cloned()
            .or_else(|| requested.map(str::to_string))
    }

    /// The request for this provider: its URL, Host and key, the model mapped, a loop marker, the
    /// client's allowlisted headers (see [`crate::headers`]) and the body otherwise unchanged.
    pub fn request(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &Bytes,
        model: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, ProviderError> {
        let body = match model {
            Some(m) => with_model(body, m),
            None => body.clone(),
        };
        let scheme = if self.url.tls { "https" } else { "http" };
        let uri = format!(
            "{scheme}://{}{}",
            self.url.authority(),
            provider_path(&self.url.base_path, path_and_query)
        );
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if let Some(h) = builder.headers_mut() {
            // An allowlist: the client's credentials and cookies never reach a third party.
            let connection = connection_tokens(headers);
            for (name, value) in headers {
                if provider_may_receive(name) && !is_hop_by_hop(name, &connection) {
                    h.append(name.clone(), value.clone());
                }
            }
            if let Some(bearer) = self.key.as_ref().and_then(ApiKey::bearer) {
                h.insert(header::AUTHORIZATION, bearer);
            }
            h.insert(FORWARDED_MARKER, marker_value(headers));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        builder
            .body(Full::new(body))
            .map_err(|e| ProviderError::Unreachable {
                provider: self.name.clone(),
                reason: e.to_string(),
            })
    }

    /// Sends a request built by [`Provider::request`]; waits for the headers up to `timeout`.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ProviderError> {
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(ProviderError::Unreachable {
                provider: self.name.clone(),
                reason: error_chain(&e),
            }),
            Err(_) => Err(ProviderError::Timeout {
                provider: self.name.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// Removes this provider's key from bytes about to leave the proxy (error bodies).
    pub fn redact(&self, text: &[u8]) -> Vec<u8> {
        match &self.key {
            Some(key) => key.redact(text),
            None => text.to_vec(),
        }
    }

    /// Whether requests carry our key (so answers must be cleaned of it).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// A redactor for a streamed body of this provider (the key may straddle two chunks).
    pub fn stream_redactor(&self) -> StreamRedactor {
        StreamRedactor::new(self.key.clone())
    }
}

/// An error with its sources, `a: b: c` (hyper's top-level messages alone say little).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// rustls client settings: the system roots plus the certificates of `extra_ca` (PEM).
fn client_tls(extra_ca: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {path:?}: {e}"))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("ca_file {path:?}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {path:?}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("ca_file {path:?} holds no PEM certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every configured provider, by name.
pub struct Providers {
    by_name: HashMap<String, Arc<Provider>>,
    epoch: Instant,
}

impl Providers {
    /// Builds every provider of the config.
    pub fn from_config(config: &Config) -> Result<Providers, ProviderError> {
        let mut by_name = HashMap::new();
        for (name, p) in &config.providers {
            by_name.insert(name.clone(), Arc::new(Provider::from_config(name, p)?));
        }
        Ok(Providers {
            by_name,
            epoch: Instant::now(),
        })
    }

    /// The providers of a reloaded config: unchanged ones are kept as they are (an open circuit
    /// stays open, a cooling-down provider keeps cooling down), changed and new ones are built.
    /// The clock of the circuits carries over.
    pub fn rebuild(&self, config: &Config) -> Result<Providers, ProviderError> {
        let mut by_name = HashMap::new();
        for (name, p) in &config.providers {
            let provider = match self.by_name.get(name) {
                Some(old) if old.settings == format!("{p:?}") => old.clone(),
                _ => Arc::new(Provider::from_config(name, p)?),
            };
            by_name.insert(name.clone(), provider);
        }
        Ok(Providers {
            by_name,
            epoch: self.epoch,
        })
    }

    /// No providers.
    pub fn none() -> Providers {
        Providers {
            by_name: HashMap::new(),
            epoch: Instant::now(),
        }
    }

    /// Time since this registry was built: the clock of every circuit.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The providers named in `names`, by priority (then list order).
    pub fn ordered(&self, names: &[String]) -> Vec<Arc<Provider>> {
        let mut list: Vec<(usize, Arc<Provider>)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.by_name.get(n).map(|p| (i, p.clone())))
            .collect();
        list.sort_by_key(|(i, p)| (p.priority, *i));
        list.into_iter().map(|(_, p)| p).collect()
    }
}
