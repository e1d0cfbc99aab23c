//! Client API keys (`[auth]`, `[clients.NAME]`): who may use the proxy as an edge gateway, which
//! models each may use, and its OpenAI-style limits. Keys are stored as SHA-256 digests (or read
//! from the environment at start), never in plain text in the file.

use crate::validate::FieldError;
use crate::DeploymentConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every request (but `/health`) needs a key of a configured client; off by default.
    pub required: bool,
}

/// One client (`[clients.NAME]`): its key, the models it may use and its limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Hex SHA-256 digest of the key (`printf %s "$KEY" | sha256sum`).
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// Environment variable holding the key (read at start and on reload).
    #[serde(default)]
    pub key_env: Option<String>,
    /// Deployments or aliases this client may use (a deployment allowed by any of its names is
    /// allowed by all); none: every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Requests per minute (none: unlimited).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute: prompt tokens estimated from the body, completion tokens counted from
    /// the response's `usage` (none: unlimited).
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    /// Requests in flight at once (none: unlimited).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// The queue band of its requests (`high`, `normal`, `low`) when they wait; a request's
    /// `x-infergate-priority` header may lower it, never raise it.
    #[serde(default)]
    pub priority: crate::Priority,
}

/// Whether `name` can be an environment variable's name.
fn env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What is wrong with `[auth]` and `[clients]`, each naming its field.
pub(crate) fn problems(
    auth: &AuthConfig,
    clients: &BTreeMap<String, ClientConfig>,
    deployments: &BTreeMap<String, DeploymentConfig>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut fail = |field: String, message: String| errors.push(FieldError { field, message });
    if auth.required && clients.is_empty() {
        fail(
            "auth.required".into(),
            "is true but no [clients.NAME] is defined: no request could pass".into(),
        );
    }
    let names: Vec<&str> = deployments
        .iter()
        .flat_map(|(name, d)| d.names(name))
        .collect();
    let mut digests: HashMap<String, &str> = HashMap::new();
    for (name, c) in clients {
        let path = format!("clients.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            fail(
                path.clone(),
                "a client name may hold only letters, digits and . _ - (it is a Prometheus label)"
                    .into(),
            );
        }
        match (&c.key_sha256, &c.key_env) {
            (Some(_), Some(_)) | (None, None) => fail(
                path.clone(),
                "needs exactly one of key_sha256 (hex SHA-256 of the key) or key_env (the variable holding it)".into(),
            ),
            (Some(hex), None) => {
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    fail(
                        format!("{path}.key_sha256"),
                        format!("must be 64 hex digits (printf %s \"$KEY\" | sha256sum), got {} characters", hex.len()),
                    );
                } else if let Some(other) = digests.insert(hex.to_ascii_lowercase(), name) {
                    fail(
                        format!("{path}.key_sha256"),
                        format!("is the same key as clients.{other}"),
                    );
                }
            }
            (None, Some(var)) => {
                if !env_name(var) {
                    fail(
                        format!("{path}.key_env"),
                        format!("must be an environment variable name like TEAM_A_KEY, got {var:?}"),
                    );
                }
            }
        }
        for (i, model) in c.models.iter().flatten().enumerate() {
            if !names.contains(&model.as_str()) {
                fail(
                    format!("{path}.models[{i}]"),
                    format!("no deployment or alias named {model:?} (defined: {names:?})"),
                );
            }
        }
        for (field, value, max) in [
            (
                "requests_per_minute",
                c.requests_per_minute,
                1_000_000_000u64,
            ),
            (
                "tokens_per_minute",
                c.tokens_per_minute,
                u64::from(u32::MAX),
            ),
            ("max_concurrency", c.max_concurrency, 1_000_000),
        ] {
            if let Some(v) = value.filter(|v| *v == 0 || u64::from(*v) > max) {
                fail(
                    format!("{path}.{field}"),
                    format!("must be between 1 and {max} (leave it out for no limit), got {v}"),
                );
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const DEPLOYMENT: &str = "[deployments.llama]\naliases = [\"l\"]\nbackend = { type = \"static\", urls = [\"http://127.0.0.1:9\"] }\n";
    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn errors(toml: &str) -> String {
        Config::from_toml_str(&format!("{DEPLOYMENT}{toml}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_client_with_a_digest_models_and_limits_is_accepted() {
        let c = Config::from_toml_str(&format!(
            "{DEPLOYMENT}[auth]\nrequired = true\n[clients.team-a]\nkey_sha256 = \"{DIGEST}\"\nmodels = [\"l\"]\nrequests_per_minute = 60\ntokens_per_minute = 10000\nmax_concurrency = 2\n"
        ))
        .unwrap();
        assert!(c.auth.required);
        assert_eq!(c.clients["team-a"].requests_per_minute, Some(60));
    }

    #[test]
    fn each_mistake_names_its_field() {
        let e = errors("[auth]\nrequired = true\n");
        assert!(e.contains("auth.required"), "{e}");
        let e = errors("[clients.a]\nmodels = [\"nope\"]\nrequests_per_minute = 0\n");
        assert!(
            e.contains("clients.a: needs exactly one of key_sha256"),
            "{e}"
        );
        assert!(
            e.contains("clients.a.models[0]: no deployment or alias named \"nope\""),
            "{e}"
        );
        assert!(
            e.contains("clients.a.requests_per_minute: must be between 1"),
            "{e}"
        );
        let e = errors("[clients.a]\nkey_sha256 = \"abc\"\n");
        assert!(
            e.contains("clients.a.key_sha256: must be 64 hex digits"),
            "{e}"
        );
        let e = errors("[clients.a]\nkey_env = \"1-x\"\n");
        assert!(e.contains("clients.a.key_env"), "{e}");
        let e = errors(&format!(
            "[clients.a]\nkey_sha256 = \"{DIGEST}\"\n[clients.b]\nkey_sha256 = \"{}\"\n",
            DIGEST.to_uppercase()
        ));
        assert!(
            e.contains("clients.b.key_sha256: is the same key as clients.a"),
            "{e}"
        );
    }
}
