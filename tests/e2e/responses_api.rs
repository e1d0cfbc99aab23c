//! `/v1/responses` (issue 17 item 5): routed by `model` and passed through like the other
//! endpoints — whole and streamed — with the official Python client's `responses.create`
//! against the sim-server's minimal Responses API, through a cold start from zero.

use crate::clients::{assert_python_printed, python, run_python};
use crate::harness::{sim_deployment, Proxy};
use serde_json::{json, Value};

const PY: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
r = client.responses.create(model="chat", input="Say hello", max_output_tokens=5)
assert r.status == "completed", r
assert r.output_text == "Hello from a simulated model server"[: len(r.output_text)] and r.output_text, r.output_text
assert r.usage.output_tokens == 5, r.usage
deltas, final = [], None
for event in client.responses.create(model="chat-alias", input="Say hello", max_output_tokens=5, stream=True):
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
    elif event.type == "response.completed":
        final = event.response
assert "".join(deltas) == r.output_text, deltas
assert final is not None and final.output_text == r.output_text, final
try:
    client.responses.create(model="nope", input="x")
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err
print("python-responses-ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_clients_responses_create_goes_through_whole_and_streamed() {
    let proxy = Proxy::start(&sim_deployment(
        "chat",
        "aliases = [\"chat-alias\"]\nmin_replicas = 0",
        "--ttft 1ms --cold-start 500ms",
    ));
    // Raw: routed by the body's `model` to a replica, after a cold start from zero.
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/responses"))
        .json(&json!({"model": "chat", "input": "hi", "max_output_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let route = r.headers()["x-infergate-route"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(route.starts_with("replica/chat-"), "{route}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["output"][0]["content"][0]["type"], "output_text");
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let out = run_python(py, PY, &[&proxy.url("/v1")], None).await;
    assert_python_printed(&out, "python-responses-ok", &proxy);
}
