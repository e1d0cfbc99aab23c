//! Client API keys (issue 17 item 1) through the real binary: `[auth] required = true` refuses a
//! missing or unknown key with 401 `invalid_api_key` (the health check stays open); a client sees
//! and uses only its models (404 `model_not_found` for the others, as OpenAI answers); over a
//! limit it gets 429 `rate_limit_exceeded` with `Retry-After` and OpenAI's `x-ratelimit-*`
//! headers; its key never reaches a replica (which gets `backend.api_key_env` instead); usage is
//! counted per client in Prometheus and the admin API; keys and limits hot-reload.

use crate::clients::{assert_python_printed, python, run_python};
use crate::harness::{kill, sim_deployment, Proxy};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::{Duration, Instant};

const KEY_A: &str = "sk-team-a-0123456789";
const KEY_B: &str = "sk-team-b-abcdef";
const KEY_C: &str = "sk-team-c-slow";
const KEY_D: &str = "sk-team-d-new";
const REPLICA_KEY: &str = "sk-replica-own";

fn sha256_hex(key: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(key.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

fn clients(team_a_rpm: u32, with_d: bool) -> String {
    let mut text = format!(
        r#"
[auth]
required = true

[clients.team-a]
key_sha256 = "{}"
models = ["chat"]
requests_per_minute = {team_a_rpm}

[clients.team-b]
key_env = "E2E_TEAM_B_KEY"
models = ["chat", "headers"]
tokens_per_minute = 200

[clients.team-c]
key_sha256 = "{}"
max_concurrency = 1
"#,
        sha256_hex(KEY_A),
        sha256_hex(KEY_C)
    );
    if with_d {
        text.push_str(&format!(
            "\n[clients.team-d]\nkey_sha256 = \"{}\"\n",
            sha256_hex(KEY_D)
        ));
    }
    text
}

fn deployments() -> String {
    format!(
        "{}api_key_env = \"E2E_REPLICA_KEY\"\n{}{}",
        sim_deployment(
            "chat",
            "min_replicas = 1",
            &format!("--ttft 1ms --tokens-per-s 100000 --api-key {REPLICA_KEY}"),
        ),
        sim_deployment(
            "headers",
            "min_replicas = 1\nroute = { passthrough = [\"/sim/headers\"] }",
            "--ttft 1ms",
        ),
        sim_deployment("slow", "min_replicas = 1", "--ttft 1ms --tokens-per-s 4"),
    )
}

fn start() -> Proxy {
    Proxy::start_with_env(
        "",
        &format!("{}{}", clients(3, false), deployments()),
        &[("E2E_TEAM_B_KEY", KEY_B), ("E2E_REPLICA_KEY", REPLICA_KEY)],
    )
}

async fn chat(
    proxy: &Proxy,
    key: Option<(&str, &str)>,
    model: &str,
    max_tokens: u32,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&crate::harness::chat(model, false, max_tokens));
    if let Some((header, value)) = key {
        req = req.header(header, value);
    }
    req.send().await.unwrap()
}

fn bearer(key: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {key}")))
}

async fn error_code(r: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    (status, headers, body)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_models_limits_and_reload_through_the_real_binary() {
    let proxy = start();
    for d in ["chat", "headers", "slow"] {
        proxy.wait_ready(d, 1).await;
    }
    let a = bearer(KEY_A).unwrap();
    let a = Some((a.0, a.1.as_str()));

    // No key, a wrong key: 401 invalid_api_key. The health check needs none.
    for key in [
        None,
        Some(("authorization", "Bearer sk-wrong")),
        Some(("api-key", "sk-wrong")),
    ] {
        let (status, _, body) = error_code(chat(&proxy, key, "chat", 2).await).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(
            !body.to_string().contains("sk-wrong"),
            "the key is not echoed: {body}"
        );
    }
    assert_eq!(
        reqwest::get(proxy.url("/health")).await.unwrap().status(),
        200
    );

    // team-a: only its model, listed and usable; the replica gets its own key, not the client's.
    let models: Value = reqwest::Client::new()
        .get(proxy.url("/v1/models"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat"]);
    let (status, _, body) = error_code(chat(&proxy, a, "slow", 2).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{body}"
    );
    let mut remaining = Vec::new();
    for _ in 0..2 {
        let r = chat(&proxy, a, "chat", 2).await;
        assert_eq!(r.status(), 200, "the replica accepted its own key");
        assert_eq!(header(r.headers(), "x-ratelimit-limit-requests"), "3");
        remaining.push(header(r.headers(), "x-ratelimit-remaining-requests").to_string());
    }
    // Access is checked before the limits: the 404 above spent nothing.
    assert_eq!(remaining, ["2", "1"]);
    assert_eq!(chat(&proxy, a, "chat", 2).await.status(), 200);
    let (status, h, body) = error_code(chat(&proxy, a, "chat", 2).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    assert!(header(&h, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&h, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&h, "x-ratelimit-remaining-requests"), "0");
    assert!(
        header(&h, "x-ratelimit-reset-requests").ends_with('s'),
        "{h:?}"
    );

    // team-b (key from the environment, sent as `api-key`): its key is not forwarded.
    let seen: Value = reqwest::Client::new()
        .get(proxy.url("/sim/headers"))
        .header("api-key", KEY_B)
        .header("authorization", format!("Bearer {KEY_B}"))
        .header("x-infergate-deployment", "headers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !seen.to_string().contains(KEY_B),
        "the client's key reached the replica: {seen}"
    );
    assert!(
        seen.get("authorization").is_none() && seen.get("api-key").is_none(),
        "{seen}"
    );
    // Its tokens: 190 completion tokens on a 200-per-minute budget leave too little for the
    // next request.
    let b = Some(("api-key", KEY_B));
    let r = chat(&proxy, b, "chat", 190).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "x-ratelimit-limit-tokens"), "200");
    let (status, h, body) = error_code(chat(&proxy, b, "chat", 2).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "tokens");
    assert_eq!(header(&h, "x-ratelimit-remaining-tokens"), "0");
    assert!(!header(&h, "x-ratelimit-reset-tokens").is_empty());

    // team-c: one request at a time. Its stream is admitted (headers in) before the probe.
    let (admitted_tx, admitted_rx) = tokio::sync::oneshot::channel();
    let slow = tokio::spawn({
        let url = proxy.url("/v1/chat/completions");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(KEY_C)
                .json(&crate::harness::chat("slow", true, 20))
                .send()
                .await
                .unwrap();
            let _ = admitted_tx.send(r.status().as_u16());
            r.text().await.unwrap()
        }
    });
    assert_eq!(admitted_rx.await.unwrap(), 200);
    let c = bearer(KEY_C).unwrap();
    let (status, _, refused) =
        error_code(chat(&proxy, Some((c.0, c.1.as_str())), "chat", 2).await).await;
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_concurrency"),
        "{refused}"
    );
    assert!(slow.await.unwrap().contains("[DONE]"));

    // The official Python client with team-a's key after a reload that raised its limit.
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(
        &proxy.config_path,
        text.replace(&clients(3, false), &clients(100, true)),
    )
    .unwrap();
    kill(proxy.child.id(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while chat(
        &proxy,
        Some(("authorization", &format!("Bearer {KEY_D}"))),
        "chat",
        2,
    )
    .await
    .status()
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "reload not applied: {}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let out = run_python(py, PY_SCRIPT, &[&proxy.url("/v1"), KEY_A], None).await;
    assert_python_printed(&out, "python-keys-ok", &proxy);

    // Counted per client, in Prometheus and the admin API; no key in either.
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("infergate_client_requests_total{client=\"team-a\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "infergate_client_rate_limited_total{client=\"team-b\",limit=\"tokens_per_minute\"}"
    ));
    assert!(
        metrics
            .contains("infergate_client_tokens_total{client=\"team-b\",kind=\"completion\"} 190"),
        "{metrics}"
    );
    let listed: Value = proxy
        .admin_get("/admin/v1/clients")
        .await
        .json()
        .await
        .unwrap();
    let team_b = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "team-b")
        .unwrap()
        .clone();
    assert_eq!(team_b["completion_tokens"], 190, "{listed}");
    assert_eq!(team_b["rate_limited"], 1);
    assert!(!listed.to_string().contains(KEY_B) && !metrics.contains(KEY_A));
}

const PY_SCRIPT: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
assert r.choices[0].message.content, r
assert [m.id for m in client.models.list().data] == ["chat"]
try:
    client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("a model the key may not use was served")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err
bad = openai.OpenAI(base_url=sys.argv[1], api_key="sk-nope", max_retries=0)
try:
    bad.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("an unknown key was accepted")
except openai.AuthenticationError as err:
    assert err.code == "invalid_api_key", err
print("python-keys-ok")
"#;
