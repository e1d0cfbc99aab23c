//! A minimal `/v1/responses` (OpenAI's Responses API): text in, one assistant message out, whole
//! or as the typed SSE events the official clients read (`response.created`,
//! `response.output_text.delta`, `response.output_text.done`, `response.completed`).

use super::openai::{admit, begin, pause, prompt_tokens, token, with_seq};
use super::state::{RunGuard, SimState};
use super::{full, SimBody};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The response object, `status` and `text` as given.
fn response_object(
    id: &str,
    model: &str,
    created: u64,
    status: &str,
    text: &str,
    usage: Value,
) -> Value {
    let output = if text.is_empty() && status != "completed" {
        json!([])
    } else {
        json!([{
            "type": "message", "id": format!("msg_{id}"), "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }])
    };
    json!({
        "id": id, "object": "response", "created_at": created, "status": status, "model": model,
        "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "text": {"format": {"type": "text"}}, "usage": usage, "error": null,
        "incomplete_details": null, "instructions": null, "metadata": {},
    })
}

fn event(kind: &str, data: Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// `POST /v1/responses`.
pub(crate) async fn create(state: Arc<SimState>, req: Request<Incoming>) -> Response<SimBody> {
    let (seq, body, model) = match begin(&state, req).await {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let max_tokens = body
        .get("max_output_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(state.opts.default_max_tokens.into())
        .clamp(1, 100_000);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let prompt = prompt_tokens(&body);
    let ttft = state.ttft_for(&body);
    let usage = json!({
        "input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": max_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + max_tokens,
    });
    let id = format!("resp_sim{seq}");
    let created = SimState::now_unix();
    let per_token = Duration::from_secs_f64(1.0 / state.opts.tokens_per_s.max(0.001));
    let text: String = (0..max_tokens).map(token).collect();
    if !stream {
        let permit = admit(&state).await;
        let guard = RunGuard::new(state.clone());
        pause(ttft + per_token * (max_tokens.saturating_sub(1) as u32)).await;
        let out = response_object(&id, &model, created, "completed", &text, usage);
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
        let mut n = 0u64;
        let mut next = |kind: &str, mut data: Value| {
            data["sequence_number"] = json!(n);
            data["type"] = json!(kind);
            n += 1;
            event(kind, data)
        };
        let item = format!("msg_{id}");
        let start = response_object(&id, &model, created, "in_progress", "", Value::Null);
        let mut events = vec![next("response.created", json!({"response": start}))];
        pause(ttft).await;
        for i in 0..max_tokens {
            events.push(next(
                "response.output_text.delta",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "delta": token(i)}),
            ));
            for e in events.drain(..) {
                if tx.send(e).await.is_err() {
                    return; // client went away: RunGuard counts the cancellation
                }
            }
            pause(per_token).await;
        }
        let done = response_object(&id, &model, created, "completed", &text, usage);
        for e in [
            next(
                "response.output_text.done",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "text": text}),
            ),
            next("response.completed", json!({"response": done})),
        ] {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        guard.finish();
    });
    let body = StreamBody::new(stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    with_seq(resp, seq)
}
