//! `queue.heartbeat` through the real binary: a streaming request held through a 5 s cold
//! start gets its 200 and SSE comment lines, then the replica's events; a wait that times out
//! ends with an OpenAI error event that the official Python client raises on; a non-streaming
//! request is unchanged (but says it waited for a cold start).

use crate::clients::{node_openai, python, run_node, run_python};
use crate::harness::{sim_deployment, Proxy};

const WAITING: &str = ": infergate: waiting for a replica of chat";

/// A deployment whose first replica (started with the proxy) takes `cold_start` to load.
fn start(cold_start: &str, queue: &str) -> Proxy {
    Proxy::start(&sim_deployment(
        "chat",
        &format!("min_replicas = 0\nqueue = {{ heartbeat = \"1s\"{queue} }}"),
        &format!("--cold-start {cold_start} --ttft 5ms"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_held_through_a_cold_start_gets_heartbeats_then_the_replicas_events() {
    let proxy = start("5s", "");
    let response = proxy.chat("chat", true, 8).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-infergate-cold-start"], "true");
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let first_data = lines.iter().position(|l| l.starts_with("data:")).unwrap();
    let comments: Vec<&&str> = lines[..first_data]
        .iter()
        .filter(|l| l.starts_with(WAITING))
        .collect();
    assert!(comments.len() >= 3, "{text}");
    assert!(comments[0].contains("cold start in progress"), "{text}");
    assert_eq!(
        first_data,
        comments.len(),
        "only comments before the first event: {text}"
    );
    assert_eq!(lines.last(), Some(&"data: [DONE]"), "{text}");
    // The replica's events follow unchanged.
    let chunk: serde_json::Value =
        serde_json::from_str(lines[first_data].trim_start_matches("data: ")).unwrap();
    assert_eq!(chunk["object"], "chat.completion.chunk");

    // A non-streaming request is answered as always (a replica is ready now).
    let plain = proxy.chat("chat", false, 4).await;
    assert_eq!(plain.headers()["content-type"], "application/json");
    assert!(plain.headers().get("x-infergate-cold-start").is_none());
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
}

const PY_STREAM: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
try:
    stream = client.chat.completions.create(model="chat", stream=True, max_tokens=6,
        messages=[{"role": "user", "content": "hi"}])
    text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
    print("python-stream-ok", len(text) > 0)
except openai.APIError as e:
    print("python-raised", type(e).__name__, e)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_reads_a_held_stream_and_raises_when_the_wait_times_out() {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let proxy = start("3s", "");
    let base = proxy.url("/v1");
    let out = run_python(py.clone(), PY_STREAM, &[&base], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("python-stream-ok True"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Never ready within max_wait: heartbeats, then the error event, and the client raises.
    let slow = start("60s", ", max_wait = \"3500ms\"");
    let raw = slow.chat("chat", true, 4).await;
    assert_eq!(raw.status(), 200);
    let (text, clean) = read_all(raw).await;
    assert!(
        !clean,
        "a failed wait must not end like a whole stream: {text}"
    );
    assert!(text.matches(WAITING).count() >= 3, "{text}");
    let last = text.lines().rfind(|l| !l.is_empty()).unwrap();
    let error: serde_json::Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(error["error"]["code"], "queue_timeout", "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    let out = run_python(py, PY_STREAM, &[&slow.url("/v1")], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("python-raised"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NODE_STREAM: &str = r#"
const OpenAI = require("openai");
const client = new OpenAI({ baseURL: process.argv[process.argv.length - 1], apiKey: "unused", maxRetries: 0 });
(async () => {
  try {
    const stream = await client.chat.completions.create({ model: "chat", stream: true, max_tokens: 6,
      messages: [{ role: "user", content: "hi" }] });
    let text = "";
    for await (const c of stream) { if (c.choices.length) text += c.choices[0].delta.content || ""; }
    console.log("node-stream-ok", text.length > 0);
  } catch (e) {
    console.log("node-raised", e.constructor.name, String(e.message).slice(0, 200));
  }
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_reads_a_held_stream_and_raises_when_the_wait_times_out() {
    let dir = tokio::task::spawn_blocking(node_openai).await.unwrap();
    let proxy = start("3s", "");
    let out = run_node(dir.clone(), NODE_STREAM, &[&proxy.url("/v1")]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node-stream-ok true"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slow = start("60s", ", max_wait = \"2500ms\"");
    let out = run_node(dir, NODE_STREAM, &[&slow.url("/v1")]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node-raised"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The body as far as it came, and whether it ended cleanly.
async fn read_all(response: reqwest::Response) -> (String, bool) {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(_) => return (String::from_utf8_lossy(&body).into_owned(), false),
        }
    }
    (String::from_utf8_lossy(&body).into_owned(), true)
}
