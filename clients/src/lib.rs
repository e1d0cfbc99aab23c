//! Client API keys for infergate as an edge gateway (`[auth]`, `[clients.NAME]`): who may call,
//! which models each client may use, its OpenAI-style limits, and what it used.
//!
//! Keys are held as SHA-256 digests and compared in constant time ([`keys`]); limits are
//! `governor`'s GCRA budgets per minute plus a concurrency count ([`limits`]); token counts come
//! from the request size before and the model's `usage` after ([`usage`]). The table is built from
//! the config and swapped whole on reload; a client whose settings did not change keeps its
//! budgets and counters. LiteLLM's virtual keys and Envoy AI Gateway's per-key limits do the same
//! job; the error bodies and `x-ratelimit-*` headers are OpenAI's, so its clients understand them.

pub mod keys;
pub mod limits;
pub mod usage;

use infergate_config::{ClientConfig, Config};
use keys::Digest;
use limits::Limits;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why the table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// A client's `key_env` names a variable that is not set (or empty).
    #[error("clients.{client}.key_env: environment variable {var} is not set (it must hold the client's key)")]
    MissingKey {
        /// The client.
        client: String,
        /// The variable.
        var: String,
    },
    /// Two clients have the same key.
    #[error("clients.{client}: its key is the same as clients.{other}'s")]
    SameKey {
        /// The second client.
        client: String,
        /// The first.
        other: String,
    },
}

/// Why a request was not identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` or `api-key:` header.
    Missing,
    /// A key no client has.
    Unknown,
}

/// What a client did, for the admin API (Prometheus has the same, labelled by client).
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests admitted.
    pub requests: AtomicU64,
    /// Requests refused by a limit.
    pub rate_limited: AtomicU64,
    /// Prompt tokens (the model's count where it reported one, else the estimate).
    pub prompt_tokens: AtomicU64,
    /// Completion tokens the model reported.
    pub completion_tokens: AtomicU64,
}

/// One client.
pub struct Client {
    /// Its name (the Prometheus label).
    pub name: String,
    config: ClientConfig,
    digest: Digest,
    /// Deployment names it may use; `None`: all.
    deployments: Option<HashSet<String>>,
    /// Its limits and their state.
    pub limits: Limits,
    /// Its counters (kept across reloads).
    pub stats: Arc<ClientStats>,
    requests_metric: metrics::Counter,
    prompt_metric: metrics::Counter,
    completion_metric: metrics::Counter,
}

impl Client {
    /// Whether this client may use deployment `deployment` (by its name).
    pub fn may_use(&self, deployment: &str) -> bool {
        self.deployments
            .as_ref()
            .is_none_or(|allowed| allowed.contains(deployment))
    }

    /// Its settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Counts an admitted request.
    pub fn count_request(&self) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.requests_metric.increment(1);
    }

    /// Counts a request refused by `limit`.
    pub fn count_refused(&self, limit: limits::LimitKind) {
        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("infergate_client_rate_limited_total", "client" => self.name.clone(), "limit" => limit.name())
            .increment(1);
    }

    /// Counts a finished request's tokens: `prompt` (reported or estimated) and the
    /// `completion` the model reported, which also come off the token budget.
    pub fn count_tokens(&self, prompt: u32, completion: Option<u32>) {
        self.stats
            .prompt_tokens
            .fetch_add(u64::from(prompt), Ordering::Relaxed);
        self.prompt_metric.increment(u64::from(prompt));
        if let Some(c) = completion {
            self.stats
                .completion_tokens
                .fetch_add(u64::from(c), Ordering::Relaxed);
            self.completion_metric.increment(u64::from(c));
            self.limits.completion_tokens(c);
        }
    }
}

/// Every client, by key.
#[derive(Default)]
pub struct ClientTable {
    required: bool,
    clients: Vec<Arc<Client>>,
    digests: Vec<Digest>,
}

impl ClientTable {
    /// No authentication (`[auth] required = false`).
    pub fn open() -> Self {
        ClientTable::default()
    }

    /// Builds the table from the config, reading `key_env` keys from the environment; a client
    /// of `previous` whose settings and key are unchanged is kept as it is (budgets, counters).
    pub fn build(config: &Config, previous: Option<&ClientTable>) -> Result<Self, ClientsError> {
        let mut table = ClientTable {
            required: config.auth.required,
            ..ClientTable::default()
        };
        let mut seen: HashMap<Digest, &str> = HashMap::new();
        for (name, c) in &config.clients {
            let digest = match (&c.key_sha256, &c.key_env) {
                (Some(hex), _) => keys::parse_hex(hex),
                (None, Some(var)) => match std::env::var(var).ok().filter(|k| !k.is_empty()) {
                    Some(key) => Some(keys::digest_of(key.as_bytes())),
                    None => {
                        return Err(ClientsError::MissingKey {
                            client: name.clone(),
                            var: var.clone(),
                        })
                    }
                },
                (None, None) => None,
            };
            let Some(digest) = digest else { continue }; // refused by validation already
            if let Some(other) = seen.insert(digest, name) {
                return Err(ClientsError::SameKey {
                    client: name.clone(),
                    other: other.to_string(),
                });
            }
            let kept = previous
                .and_then(|p| p.clients.iter().find(|k| k.name == *name))
                .filter(|k| k.config == *c && k.digest == digest);
            let client = match kept {
                Some(k) => k.clone(),
                None => Arc::new(Client {
                    name: name.clone(),
                    config: c.clone(),
                    digest,
                    deployments: c.models.as_ref().map(|models| {
                        models
                            .iter()
                            .filter_map(|m| deployment_of(config, m))
                            .collect()
                    }),
                    limits: Limits::new(
                        c.requests_per_minute,
                        c.tokens_per_minute,
                        c.max_concurrency,
                    ),
                    stats: previous
                        .and_then(|p| p.clients.iter().find(|k| k.name == *name))
                        .map(|k| k.stats.clone())
                        .unwrap_or_default(),
                    requests_metric: metrics::counter!("infergate_client_requests_total", "client" => name.clone()),
                    prompt_metric: metrics::counter!("infergate_client_tokens_total", "client" => name.clone(), "kind" => "prompt"),
                    completion_metric: metrics::counter!("infergate_client_tokens_total", "client" => name.clone(), "kind" => "completion"),
                }),
            };
            table.digests.push(digest);
            table.clients.push(client);
        }
        Ok(table)
    }

    /// Whether requests need a key.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The client whose key was presented.
    pub fn identify(&self, presented: Option<&[u8]>) -> Result<Arc<Client>, AuthError> {
        let key = presented
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        let digest = keys::digest_of(key);
        keys::find(&self.digests, &digest)
            .and_then(|i| self.clients.get(i).cloned())
            .ok_or(AuthError::Unknown)
    }

    /// Every client, in name order.
    pub fn clients(&self) -> &[Arc<Client>] {
        &self.clients
    }
}

/// The deployment a model name or alias belongs to.
fn deployment_of(config: &Config, model: &str) -> Option<String> {
    config
        .deployments
        .iter()
        .find(|(name, d)| d.names(name).any(|n| n == model))
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "[deployments.llama]\naliases = [\"l\"]\nbackend = {{ type = \"static\", urls = [\"http://127.0.0.1:9\"] }}\n[deployments.qwen]\nbackend = {{ type = \"static\", urls = [\"http://127.0.0.1:9\"] }}\n[auth]\nrequired = true\n{extra}"
        ))
        .unwrap()
    }

    const TEST_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_key_identifies_its_client_and_an_alias_allows_its_deployment() {
        let c = config(&format!(
            "[clients.a]\nkey_sha256 = \"{TEST_DIGEST}\"\nmodels = [\"l\"]\n"
        ));
        let table = ClientTable::build(&c, None).unwrap();
        assert!(table.required());
        let client = table.identify(Some(b"test")).unwrap();
        assert_eq!(client.name, "a");
        assert!(client.may_use("llama"));
        assert!(!client.may_use("qwen"));
        assert_eq!(
            table.identify(Some(b"nope")).err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(table.identify(None).err(), Some(AuthError::Missing));
    }

    #[test]
    fn key_env_is_read_at_build_and_a_missing_one_names_the_field() {
        let c = config("[clients.b]\nkey_env = \"INFERGATE_TEST_KEY_B\"\n");
        let e = ClientTable::build(&c, None).err().unwrap().to_string();
        assert!(
            e.starts_with(
                "clients.b.key_env: environment variable INFERGATE_TEST_KEY_B is not set"
            ),
            "{e}"
        );
        std::env::set_var("INFERGATE_TEST_KEY_B", "sk-b");
        let table = ClientTable::build(&c, None).unwrap();
        assert_eq!(table.identify(Some(b"sk-b")).unwrap().name, "b");
    }

    #[test]
    fn an_unchanged_client_keeps_its_budget_across_a_rebuild() {
        let c = config(&format!(
            "[clients.a]\nkey_sha256 = \"{TEST_DIGEST}\"\nrequests_per_minute = 1\n"
        ));
        let first = ClientTable::build(&c, None).unwrap();
        let held = first
            .identify(Some(b"test"))
            .unwrap()
            .limits
            .admit(1)
            .unwrap();
        drop(held);
        let second = ClientTable::build(&c, Some(&first)).unwrap();
        let client = second.identify(Some(b"test")).unwrap();
        assert!(
            client.limits.admit(1).is_err(),
            "the minute's one request is spent"
        );
        // Changed limits: a new budget (the counters stay).
        let raised = config(&format!(
            "[clients.a]\nkey_sha256 = \"{TEST_DIGEST}\"\nrequests_per_minute = 5\n"
        ));
        client.count_request();
        let third = ClientTable::build(&raised, Some(&second)).unwrap();
        let client = third.identify(Some(b"test")).unwrap();
        assert!(client.limits.admit(1).is_ok());
        assert_eq!(client.stats.requests.load(Ordering::Relaxed), 1);
    }
}
