//! The OpenAI-compatible endpoints of the simulated server: chat and text completions (streamed
//! exactly as OpenAI streams them, ending with `data: [DONE]`) and embeddings.

use super::state::{RunGuard, SimState};
use super::{full, json_error, SimBody};
use base64::Engine;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Which generation endpoint was called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Completion,
}

const WORDS: [&str; 8] = [
    "Hello",
    " from",
    " a",
    " simulated",
    " model",
    " server",
    ",",
    " friend.",
];

/// The `i`-th generated token: the words over and over, a space before each new sentence.
pub(crate) fn token(i: u64) -> &'static str {
    let n = WORDS.len() as u64;
    if i >= n && i.is_multiple_of(n) {
        " Hello"
    } else {
        WORDS[(i % n) as usize]
    }
}
const MAX_BODY: usize = 256 * 1024 * 1024;

async fn read_json(req: Request<Incoming>) -> Result<Value, Box<Response<SimBody>>> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            Box::new(json_error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read body: {e}"),
                "invalid_request_error",
                "bad_body",
            ))
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(json_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON: {e}"),
            "invalid_request_error",
            "invalid_json",
        ))
    })
}

pub(crate) fn prompt_tokens(body: &Value) -> u64 {
    fn words(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(a) => a.iter().map(words).sum(),
            Value::Object(o) => o.get("content").map(words).unwrap_or(0),
            _ => 0,
        }
    }
    body.get("messages")
        .or_else(|| body.get("prompt"))
        .or_else(|| body.get("input"))
        .map(words)
        .unwrap_or(0)
}

/// Takes a processing slot when `--max-concurrency` is set, counting the wait as vLLM's queue.
pub(crate) async fn admit(state: &Arc<SimState>) -> Option<tokio::sync::SemaphorePermit<'_>> {
    let slots = state.slots.as_ref()?;
    state.waiting.fetch_add(1, Ordering::AcqRel);
    let permit = slots.acquire().await.ok();
    state.waiting.fetch_sub(1, Ordering::AcqRel);
    permit
}

fn should_fail(state: &SimState) -> bool {
    state.opts.fail_rate > 0.0 && rand::random::<f64>() < state.opts.fail_rate
}

pub(crate) fn with_seq(mut resp: Response<SimBody>, seq: u64) -> Response<SimBody> {
    if let Ok(v) = seq.to_string().parse() {
        resp.headers_mut().insert("x-sim-seq", v);
    }
    resp
}

/// Waits `d` — unless it is (next to) nothing: tokio's timer rounds every sleep up to its next
/// millisecond tick, which would put a 1 ms floor under a server configured to answer at once.
pub(crate) async fn pause(d: Duration) {
    if d >= Duration::from_micros(50) {
        tokio::time::sleep(d).await;
    }
}

/// What every generating endpoint does first: number and count the request, read its JSON,
/// fail it when `--fail-rate` says so; its sequence number, body and model.
pub(crate) async fn begin(
    state: &Arc<SimState>,
    req: Request<Incoming>,
) -> Result<(u64, Value, String), Box<Response<SimBody>>> {
    let seq = state.seq.fetch_add(1, Ordering::AcqRel);
    state.requests.fetch_add(1, Ordering::AcqRel);
    let body = read_json(req).await?;
    if should_fail(state) {
        state.failed.fetch_add(1, Ordering::AcqRel);
        return Err(Box::new(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated failure",
            "server_error",
            "simulated_failure",
        )));
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&state.opts.model)
        .to_string();
    Ok((seq, body, model))
}

/// `/v1/chat/completions` and `/v1/completions`.
pub(crate) async fn generate(
    state: Arc<SimState>,
    req: Request<Incoming>,
    kind: Kind,
) -> Response<SimBody> {
    let (seq, body, model) = match begin(&state, req).await {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let max_tokens = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(state.opts.default_max_tokens.into())
        .clamp(1, 100_000);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prompt = prompt_tokens(&body);
    let ttft = state.ttft_for(&body);
    let created = SimState::now_unix();
    let id = match kind {
        Kind::Chat => format!("chatcmpl-sim{seq}"),
        Kind::Completion => format!("cmpl-sim{seq}"),
    };
    let per_token = Duration::from_secs_f64(1.0 / state.opts.tokens_per_s.max(0.001));
    if !stream {
        let permit = admit(&state).await;
        let guard = RunGuard::new(state.clone());
        pause(ttft + per_token * (max_tokens.saturating_sub(1) as u32)).await;
        let text: String = (0..max_tokens).map(token).collect();
        let choice = match kind {
            Kind::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "length"})
            }
            Kind::Completion => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": "length"})
            }
        };
        let object = if kind == Kind::Chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        let out = json!({
            "id": id, "object": object, "created": created, "model": model, "choices": [choice],
            "usage": {"prompt_tokens": prompt, "completion_tokens": max_tokens, "total_tokens": prompt + max_tokens}
        });
        guard.finish();
        drop(permit);
        return with_seq(
            full(StatusCode::OK, "application/json", out.to_string()),
            seq,
        );
    }

    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let producer_state = state.clone();
    tokio::spawn(async move {
        let state = producer_state;
        let _permit = admit(&state).await;
        let guard = RunGuard::new(state.clone());
        let chunk = |choice: Value| {
            let object = if kind == Kind::Chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
            Bytes::from(format!("data: {v}\n\n"))
        };
        pause(ttft).await;
        if kind == Kind::Chat
            && tx
                .send(chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})))
                .await
                .is_err()
        {
            return;
        }
        for i in 0..max_tokens {
            if i > 0 {
                pause(per_token).await;
            }
            let word = token(i);
            let choice = match kind {
                Kind::Chat => {
                    json!({"index": 0, "delta": {"content": word}, "logprobs": null, "finish_reason": null})
                }
                Kind::Completion => {
                    json!({"index": 0, "text": word, "logprobs": null, "finish_reason": null})
                }
            };
            if tx.send(chunk(choice)).await.is_err() {
                return; // client went away: RunGuard counts the cancellation
            }
        }
        let last = match kind {
            Kind::Chat => {
                json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"})
            }
            Kind::Completion => {
                json!({"index": 0, "text": "", "logprobs": null, "finish_reason": "length"})
            }
        };
        if tx.send(chunk(last)).await.is_err() {
            return;
        }
        if include_usage {
            let object = if kind == Kind::Chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": max_tokens, "total_tokens": prompt + max_tokens}});
            if tx
                .send(Bytes::from(format!("data: {v}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
        if tx
            .send(Bytes::from_static(b"data: [DONE]\n\n"))
            .await
            .is_ok()
        {
            guard.finish();
        }
    });
    let body = StreamBody::new(stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut resp = Response::new(BodyExt::boxed(body));
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    with_seq(resp, seq)
}

/// `/v1/embeddings`: deterministic vectors, as floats or base64 (the Python client's default).
pub(crate) async fn embeddings(state: Arc<SimState>, req: Request<Incoming>) -> Response<SimBody> {
    let seq = state.seq.fetch_add(1, Ordering::AcqRel);
    state.requests.fetch_add(1, Ordering::AcqRel);
    let body = match read_json(req).await {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().map(|v| v.to_string()).collect(),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "'input' is required",
                "invalid_request_error",
                "missing_input",
            );
        }
    };
    let permit = admit(&state).await;
    let guard = RunGuard::new(state.clone());
    pause(state.opts.ttft).await;
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let dim = state.opts.embedding_dim.max(1);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut h: u64 = 1469598103934665603;
            let vector: Vec<f32> = (0..dim)
                .map(|_| {
                    for b in text.bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
                    }
                    h = h.rotate_left(7);
                    ((h % 2000) as f32 / 1000.0) - 1.0
                })
                .collect();
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = prompt_tokens(&body);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(&state.opts.model);
    let out = json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    guard.finish();
    drop(permit);
    with_seq(
        full(StatusCode::OK, "application/json", out.to_string()),
        seq,
    )
}
