//! Where a deployment's replicas export their Prometheus metrics and which model server wrote
//! them (`metrics = { path, server }`): the `queue_depth` and `kv_cache_usage` metrics read each
//! server's own names — vLLM `vllm:num_requests_waiting` / `vllm:kv_cache_usage_perc`, SGLang
//! `sglang:num_queue_reqs` / `sglang:token_usage`, llama.cpp `llamacpp:requests_deferred` /
//! `llamacpp:kv_cache_usage_ratio`, TGI `tgi_queue_size`, TEI `te_queue_size`; Ollama exports none.

use crate::Metric;
use serde::{Deserialize, Serialize};

/// The model server a deployment runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelServer {
    /// Any of them: every known name is read.
    #[default]
    Auto,
    /// vLLM (`vllm serve`).
    Vllm,
    /// SGLang (`python -m sglang.launch_server --enable-metrics`).
    Sglang,
    /// llama.cpp (`llama-server --metrics`).
    Llamacpp,
    /// Hugging Face Text Generation Inference.
    Tgi,
    /// Hugging Face Text Embeddings Inference.
    Tei,
    /// Ollama: no Prometheus metrics; concurrency only.
    Ollama,
}

impl ModelServer {
    /// The lower-case name, as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            ModelServer::Auto => "auto",
            ModelServer::Vllm => "vllm",
            ModelServer::Sglang => "sglang",
            ModelServer::Llamacpp => "llamacpp",
            ModelServer::Tgi => "tgi",
            ModelServer::Tei => "tei",
            ModelServer::Ollama => "ollama",
        }
    }

    /// Whether the server exports what `metric` scales on.
    pub fn supports(self, metric: Metric) -> bool {
        match metric {
            Metric::Concurrency => true,
            Metric::QueueDepth => self != ModelServer::Ollama,
            Metric::KvCacheUsage => !matches!(
                self,
                ModelServer::Ollama | ModelServer::Tgi | ModelServer::Tei
            ),
        }
    }
}

/// The `metrics` table of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Path of the replicas' Prometheus endpoint.
    pub path: String,
    /// Which model server they run (for validation: which metrics it has).
    pub server: ModelServer,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            path: "/metrics".into(),
            server: ModelServer::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn errors(settings: &str) -> String {
        Config::from_toml_str(&format!(
            "[deployments.x]\n{settings}\nbackend = {{ type = \"static\", urls = [\"http://127.0.0.1:9\"] }}\n"
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    }

    #[test]
    fn a_metric_the_server_does_not_export_is_refused_naming_the_field() {
        let e = errors("metric = \"queue_depth\"\nmetrics = { server = \"ollama\" }");
        assert!(
            e.contains(
                "deployments.x.metric: must be \"concurrency\" for metrics.server = \"ollama\""
            ),
            "{e}"
        );
        let e = errors("metric = \"kv_cache_usage\"\nmetrics = { server = \"tei\" }");
        assert!(e.contains("no KV-cache metric"), "{e}");
        assert_eq!(
            errors("metric = \"queue_depth\"\nmetrics = { server = \"tei\", path = \"/prom\" }"),
            ""
        );
        assert!(errors("metrics = { path = \"metrics\" }").contains("deployments.x.metrics.path"));
    }
}
