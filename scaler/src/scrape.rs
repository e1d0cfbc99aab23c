//! Reads a replica's Prometheus endpoint for the queue and KV-cache gauges the `queue_depth` and
//! `kv_cache_usage` metrics scale on, under each model server's own names. Runs off the request path, with a timeout and a size cap.

use crate::health::send_get;
use crate::load::ReplicaMetrics;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Largest metrics page read (vLLM's, with histograms, is a few hundred KiB).
const MAX_PAGE: u64 = 8 << 20;

/// Why a replica's metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Connect, write or read failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The metrics path.
        path: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("no answer from {path} within {timeout:?}")]
    Timeout {
        /// The metrics path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// The answer was not a 2xx.
    #[error("{path} answered {status_line:?}")]
    Status {
        /// The metrics path.
        path: String,
        /// The status line received.
        status_line: String,
    },
    /// The page holds none of the gauges we scale on.
    #[error("{path} exports no queue or KV-cache gauge infergate knows (vllm:num_requests_waiting, vllm:kv_cache_usage_perc, sglang:num_queue_reqs, sglang:token_usage, llamacpp:requests_deferred, llamacpp:kv_cache_usage_ratio, tgi_queue_size, te_queue_size)")]
    NoGauges {
        /// The metrics path.
        path: String,
    },
}

/// Fetches and parses `GET path` on `addr` within `timeout`.
pub async fn scrape(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<ReplicaMetrics, ScrapeError> {
    let page = tokio::time::timeout(timeout, fetch(addr, path))
        .await
        .map_err(|_| ScrapeError::Timeout {
            path: path.to_string(),
            timeout,
        })?
        .map_err(|source| ScrapeError::Io {
            path: path.to_string(),
            source,
        })?;
    let (head, body) = page.split_once("\r\n\r\n").unwrap_or((&page, ""));
    let status_line = head.lines().next().unwrap_or_default();
    if !(status_line.starts_with("HTTP/1.") && status_line.as_bytes().get(9) == Some(&b'2')) {
        return Err(ScrapeError::Status {
            path: path.to_string(),
            status_line: status_line.to_string(),
        });
    }
    let metrics = parse_metrics(body);
    if metrics.num_requests_waiting.is_none() && metrics.kv_cache_usage.is_none() {
        return Err(ScrapeError::NoGauges {
            path: path.to_string(),
        });
    }
    Ok(metrics)
}

async fn fetch(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let stream = send_get(addr, path, "infergate-metrics").await?;
    let mut page = Vec::new();
    stream.take(MAX_PAGE).read_to_end(&mut page).await?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// Picks the queue and KV-cache gauges out of a Prometheus text page, under each model server's
/// own names: vLLM `vllm:num_requests_waiting` / `vllm:kv_cache_usage_perc` (or the older
/// `vllm:gpu_cache_usage_perc`), SGLang `sglang:num_queue_reqs` / `sglang:token_usage`, llama.cpp
/// `llamacpp:requests_deferred` / `llamacpp:kv_cache_usage_ratio`, TGI `tgi_queue_size`, TEI
/// `te_queue_size`. Several series of one gauge (one per model or engine) are summed for the
/// queue and the fullest is taken for the KV cache.
pub fn parse_metrics(page: &str) -> ReplicaMetrics {
    let (mut waiting, mut kv, mut old_kv) = (None::<f64>, None::<f64>, None::<f64>);
    let fullest = |slot: &mut Option<f64>, value: f64| {
        *slot = Some(slot.map_or(value, |k| k.max(value)));
    };
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = sample(line) else {
            continue;
        };
        match name {
            "vllm:num_requests_waiting"
            | "sglang:num_queue_reqs"
            | "llamacpp:requests_deferred"
            | "tgi_queue_size"
            | "te_queue_size" => *waiting.get_or_insert(0.0) += value,
            "vllm:kv_cache_usage_perc" | "sglang:token_usage" | "llamacpp:kv_cache_usage_ratio" => {
                fullest(&mut kv, value)
            }
            "vllm:gpu_cache_usage_perc" => fullest(&mut old_kv, value),
            _ => {}
        }
    }
    ReplicaMetrics {
        num_requests_waiting: waiting,
        kv_cache_usage: kv.or(old_kv),
    }
}

/// Splits `name{labels} value [timestamp]` into name and value.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let rest = &line[name_end..];
    let rest = if rest.starts_with('{') {
        &rest[rest.rfind('}')? + 1..]
    } else {
        rest
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vllm_gauges_with_labels() {
        let page = "# HELP vllm:num_requests_waiting x\n# TYPE vllm:num_requests_waiting gauge\n\
            vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 3.0\n\
            vllm:num_requests_waiting{model_name=\"m\",engine=\"1\"} 2\n\
            vllm:kv_cache_usage_perc{model_name=\"m\"} 0.25\n\
            vllm:kv_cache_usage_perc{model_name=\"m\",engine=\"1\"} 0.75 1700000000\n\
            vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.1\n\
            vllm:num_requests_running{model_name=\"m\"} 7\n";
        let m = parse_metrics(page);
        assert_eq!(m.num_requests_waiting, Some(5.0));
        assert_eq!(m.kv_cache_usage, Some(0.75));
    }

    #[test]
    fn older_vllm_gpu_cache_name_is_used_when_alone() {
        let m = parse_metrics("vllm:gpu_cache_usage_perc 0.5\n");
        assert_eq!(m.kv_cache_usage, Some(0.5));
        assert_eq!(m.num_requests_waiting, None);
    }

    #[test]
    fn each_servers_own_names_are_read() {
        let sglang = parse_metrics(
            "sglang:num_queue_reqs{model_name=\"m\"} 4\nsglang:token_usage{model_name=\"m\"} 0.6\n",
        );
        assert_eq!(
            (sglang.num_requests_waiting, sglang.kv_cache_usage),
            (Some(4.0), Some(0.6))
        );
        let llama = parse_metrics("llamacpp:requests_deferred 2\nllamacpp:kv_cache_usage_ratio 0.3\nllamacpp:requests_processing 1\n");
        assert_eq!(
            (llama.num_requests_waiting, llama.kv_cache_usage),
            (Some(2.0), Some(0.3))
        );
        let tgi = parse_metrics("tgi_queue_size 7\n");
        assert_eq!(
            (tgi.num_requests_waiting, tgi.kv_cache_usage),
            (Some(7.0), None)
        );
        let tei = parse_metrics("te_queue_size 3\n");
        assert_eq!(tei.num_requests_waiting, Some(3.0));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let m = parse_metrics("vllm:num_requests_waiting{a=\"}\"} NaN\nnonsense\n{}\n");
        assert_eq!(m.num_requests_waiting, None);
    }
}
