//! SaaS fallback through the real binary: a fake provider (the simulated server behind real TLS
//! with a certificate made here, requiring its bearer key) answers while our replica cold-starts,
//! then traffic moves back gradually; streaming through the official Python client; circuit
//! breaking; waiting when every provider is down; replica errors, overload and maintenance;
//! loop refusal; and the provider key never leaking.

use crate::clients::{python, run_python};
use crate::harness::{chat, scratch_dir, sim_deployment, Proxy, SimServer, BIN};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "sk-infergate-test-3f9a7c1e";

/// The simulated server behind HTTPS with a certificate signed by a CA made for the test.
pub struct FakeSaas {
    _sim: SimServer,
    /// `https://localhost:PORT/v1`
    url: String,
    ca_file: PathBuf,
}

pub fn fake_saas(sim_args: &str) -> FakeSaas {
    let dir = scratch_dir();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "infergate test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let (ca_file, cert, key) = (
        dir.join("ca.pem"),
        dir.join("saas.pem"),
        dir.join("saas.key"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    let sim = SimServer::start(&format!(
        "--tls-cert {} --tls-key {} --api-key {KEY} --ttft 1ms --tokens-per-s 2000 {sim_args}",
        cert.display(),
        key.display()
    ));
    let url = format!(
        "{}/v1",
        sim.url
            .replace("https://127.0.0.1", "https://localhost")
            .trim_end_matches('/')
    );
    FakeSaas {
        _sim: sim,
        url,
        ca_file,
    }
}

/// A `[providers.NAME]` table for the fake provider.
pub fn provider(name: &str, saas: &FakeSaas, extra: &str) -> String {
    format!(
        "\n[providers.{name}]\nbase_url = {:?}\napi_key_env = \"SAAS_KEY\"\nca_file = {:?}\nmodels = {{ chat = \"gpt-4o-mini\" }}\n{extra}\n",
        saas.url,
        saas.ca_file.display().to_string()
    )
}

/// A provider nobody listens on.
fn dead_provider(name: &str, extra: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        "\n[providers.{name}]\nbase_url = \"https://localhost:{port}/v1\"\napi_key_env = \"SAAS_KEY\"\npriority = 1\n{extra}\n"
    )
}

pub fn start(deployments: &str) -> Proxy {
    Proxy::start_with_env(
        "listeners = [{ address = \"127.0.0.1:0\" }]",
        deployments,
        &[("SAAS_KEY", KEY), ("WRONG_KEY", "sk-wrong-key-77d1")],
    )
}

/// One non-streaming chat request: (status, route header, reason header, body).
pub async fn ask(proxy: &Proxy, model: &str) -> (u16, String, String, Value) {
    let r = proxy.chat(model, false, 3).await;
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (route, reason) = (
        header("x-infergate-route"),
        header("x-infergate-fallback-reason"),
    );
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, route, reason, body)
}

/// Asserts the provider key appears nowhere a client or operator can see.
async fn assert_key_never_leaked(proxy: &Proxy, seen_bodies: &[String]) {
    let log = proxy.log();
    assert!(!log.contains(KEY), "the key is in the log");
    let admin = proxy
        .admin_get("/admin/v1/deployments")
        .await
        .text()
        .await
        .unwrap();
    assert!(!admin.contains(KEY), "the key is in the admin API");
    for body in seen_bodies {
        assert!(!body.contains(KEY), "the key is in a response: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_is_answered_by_the_provider_then_traffic_ramps_back_to_the_replica() {
    let saas = fake_saas("");
    let proxy = start(&format!(
        "{}{}",
        sim_deployment(
            "chat",
            "min_replicas = 1\nfallback = { providers = [\"saas\"], ramp_back = \"4s\" }",
            "--cold-start 2s --ttft 1ms"
        ),
        provider("saas", &saas, ""),
    ));
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut bodies = Vec::new();
    while start.elapsed() < Duration::from_secs(12) {
        let (status, route, reason, body) = ask(&proxy, "chat").await;
        assert_eq!(status, 200, "{route} {body}");
        if route.starts_with("fallback/") {
            assert_eq!(route, "fallback/saas");
            assert_eq!(
                body["model"], "gpt-4o-mini",
                "model mapped for the provider"
            );
            assert!(reason == "cold_start" || reason == "ramp_back", "{reason}");
        } else {
            assert_eq!(route, "replica/chat-0");
            assert_eq!(body["model"], "chat");
        }
        bodies.push(body.to_string());
        seen.push((start.elapsed(), route, reason));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let is_replica = |r: &str| r.starts_with("replica/");
    assert_eq!(
        (seen[0].1.as_str(), seen[0].2.as_str()),
        ("fallback/saas", "cold_start"),
        "the first request went to the provider"
    );
    assert!(is_replica(&seen.last().unwrap().1), "traffic moved back");
    // Gradual: from the first request after the replica became ready (no longer a cold start)
    // to the last one the provider took, both answered, and the replica's share grew.
    let ramp_start = seen.iter().position(|s| s.2 != "cold_start").unwrap();
    let last_fallback = seen.iter().rposition(|s| !is_replica(&s.1)).unwrap();
    assert!(
        seen[ramp_start..]
            .iter()
            .all(|s| is_replica(&s.1) || s.2 == "ramp_back"),
        "after the replica was ready the provider only took the ramp's share"
    );
    let ramp = &seen[ramp_start..=last_fallback];
    assert!(ramp.len() >= 10, "ramp too short to judge: {ramp:?}");
    let third = ramp.len() / 3;
    let share = |part: &[(Duration, String, String)]| {
        part.iter().filter(|s| is_replica(&s.1)).count() as f64 / part.len().max(1) as f64
    };
    let (early, late) = (share(&ramp[..third]), share(&ramp[ramp.len() - third..]));
    eprintln!(
        "ramp: {} requests over {:.1} s, replica share {early:.2} in the first third, {late:.2} in the last; provider answered {} of {}",
        ramp.len(),
        (ramp[ramp.len() - 1].0 - ramp[0].0).as_secs_f64(),
        seen.iter().filter(|s| !is_replica(&s.1)).count(),
        seen.len()
    );
    assert!(early < late, "replica share must grow: {early} then {late}");
    let state = proxy.state("chat").await;
    assert_eq!(state["fallback_engaged"], false, "{state:#}");
    assert_eq!(state["fallback_requests_in_flight"], 0);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"infergate_fallback_requests_total{deployment="chat",provider="saas",reason="cold_start"}"#),
        "{metrics}"
    );
    assert!(!metrics.contains(KEY));
    bodies.push(metrics);
    let kinds = proxy
        .event_types("type=fallback_engaged,fallback_released")
        .await;
    assert_eq!(kinds, vec!["fallback_engaged", "fallback_released"]);
    let events = proxy
        .admin_get("/admin/v1/events")
        .await
        .text()
        .await
        .unwrap();
    bodies.push(events);
    assert_key_never_leaked(&proxy, &bodies).await;
}

const PY_STREAM: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="client-side-key")
stream = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                        max_tokens=6, stream=True)
route = stream.response.headers.get("x-infergate-route")
parts, models = [], set()
for chunk in stream:
    models.add(chunk.model)
    for c in chunk.choices:
        parts.append(c.delta.content or "")
assert route == "fallback/saas", route
assert "".join(parts) == "Hello from a simulated model server", parts
assert models == {"gpt-4o-mini"}, models
print("python-stream-through-fallback-ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_openai_client_streams_through_the_fallback_unchanged() {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let saas = fake_saas("");
    let proxy = start(&format!(
        "{}{}",
        sim_deployment(
            "chat",
            "min_replicas = 1\nfallback = { providers = [\"saas\"] }",
            "--cold-start 120s"
        ),
        provider("saas", &saas, ""),
    ));
    let base = proxy.url("/v1");
    let out = run_python(py, PY_STREAM, &[&base], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("python-stream-through-fallback-ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_key_never_leaked(&proxy, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_provider_is_cooled_down_next_one_answers_and_all_down_waits_for_the_replica() {
    let saas = fake_saas("");
    let deployments = [
        sim_deployment(
            "two",
            "min_replicas = 1\nfallback = { providers = [\"dead\", \"saas\"] }",
            "--cold-start 120s",
        ),
        sim_deployment(
            "alldown",
            "min_replicas = 1\nfallback = { providers = [\"dead2\"] }",
            "--cold-start 2s --ttft 1ms",
        ),
        sim_deployment(
            "badkey",
            "min_replicas = 1\nfallback = { providers = [\"wrongkey\"] }",
            "--cold-start 120s",
        ),
        dead_provider("dead", "failures_to_cool_down = 2\ncool_down = \"60s\""),
        dead_provider("dead2", ""),
        provider("saas", &saas, "priority = 2"),
        provider("wrongkey", &saas, "").replace("SAAS_KEY", "WRONG_KEY"),
    ];
    let proxy = start(&deployments.concat());
    let mut bodies = Vec::new();

    // "dead" (priority 1) fails twice, is cooled down, and "saas" answers every request.
    for _ in 0..6 {
        let (status, route, reason, body) = ask(&proxy, "two").await;
        assert_eq!(
            (status, route.as_str(), reason.as_str()),
            (200, "fallback/saas", "cold_start")
        );
        bodies.push(body.to_string());
    }
    let log = proxy.log();
    let dead_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("provider=dead ") && l.contains("provider"))
        .collect();
    assert_eq!(
        dead_lines.len(),
        2,
        "tried twice, then skipped: {dead_lines:#?}"
    );
    assert!(dead_lines[1].contains("cooling it down"), "{dead_lines:#?}");

    // Every provider down: the request waits for our replica and succeeds.
    let (status, route, _, body) = ask(&proxy, "alldown").await;
    assert_eq!(
        (status, route.as_str()),
        (200, "replica/alldown-0"),
        "{body}"
    );
    assert!(proxy
        .log()
        .contains("no fallback provider available; waiting for a replica"));

    // A provider rejecting our key: a provider failure (cool-down), and the client gets a 502
    // naming the provider, not the provider's 401 (which echoes the key it got).
    let r = proxy.chat("badkey", false, 2).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "provider_auth_failed", "{text}");
    assert!(text.contains("`wrongkey`"), "{text}");
    assert!(!text.contains("sk-wrong-key-77d1"), "{text}");
    assert!(proxy
        .log()
        .contains("refused infergate's API key (HTTP 401)"));
    bodies.push(text);
    assert!(!proxy.log().contains("sk-wrong-key-77d1"));
    assert_key_never_leaked(&proxy, &bodies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_errors_overload_and_maintenance_go_to_the_fallback() {
    let saas = fake_saas("");
    let proxy = start(&format!(
        "{}{}{}{}",
        // Always answers 500.
        sim_deployment(
            "broken",
            "min_replicas = 1\nfallback = { providers = [\"saas\"], when = [\"replica_error\"] }",
            "--fail-rate 1.0 --ttft 1ms"
        ),
        // One request at a time; a second waits 300 ms, then goes to the provider.
        sim_deployment(
            "busy",
            "min_replicas = 1\nreplica_concurrency = 1\nfallback = { providers = [\"saas\"], when = [\"overloaded\"], fallback_after = \"300ms\" }",
            "--ttft 1ms --tokens-per-s 10"
        ),
        sim_deployment(
            "maint",
            "min_replicas = 1\nfallback = { providers = [\"saas\"], when = [\"maintenance\"] }",
            "--ttft 1ms"
        ),
        provider("saas", &saas, ""),
    ));
    for name in ["broken", "busy", "maint"] {
        proxy.wait_ready(name, 1).await;
    }
    let (status, route, reason, _) = ask(&proxy, "broken").await;
    assert_eq!(
        (status, route.as_str(), reason.as_str()),
        (200, "fallback/saas", "replica_error")
    );

    let long = {
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&chat("busy", false, 20))
                .send()
                .await
                .unwrap()
        })
    };
    proxy
        .wait_state("busy", Duration::from_secs(5), |s| s["in_flight"] == 1)
        .await;
    let (status, route, reason, _) = ask(&proxy, "busy").await;
    assert_eq!(
        (status, route.as_str(), reason.as_str()),
        (200, "fallback/saas", "overloaded")
    );
    let long = long.await.unwrap();
    assert_eq!(long.headers()["x-infergate-route"], "replica/busy-0");

    let (_, route, _, _) = ask(&proxy, "maint").await;
    assert_eq!(route, "replica/maint-0");
    let switch = |on: &str| {
        let path = format!("/admin/v1/deployments/maint/maintenance/{on}");
        let proxy = &proxy;
        async move { proxy.admin_post(&path).await }
    };
    let state: Value = switch("on").await.json().await.unwrap();
    assert_eq!(state["maintenance"], true);
    let (status, route, reason, _) = ask(&proxy, "maint").await;
    assert_eq!(
        (status, route.as_str(), reason.as_str()),
        (200, "fallback/saas", "maintenance")
    );
    switch("off").await;
    let (_, route, _, _) = ask(&proxy, "maint").await;
    assert_eq!(route, "replica/maint-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_pointing_at_the_proxy_is_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = scratch_dir();
    let config = dir.join("loop.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisteners = [{{ address = \"127.0.0.1:{port}\" }}]\n{}\n[providers.self]\nbase_url = \"http://localhost:{port}/v1\"\n",
            sim_deployment("m", "fallback = { providers = [\"self\"] }", "")
        ),
    )
    .unwrap();
    let expected = format!(
        "providers.self.base_url: resolves to 127.0.0.1:{port}, one of this proxy's own listeners"
    );
    let validate = Command::new(BIN)
        .arg("validate")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!validate.status.success());
    assert!(String::from_utf8_lossy(&validate.stderr).contains(&expected));
    let serve = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains(&expected));
    // A request marked by this very instance is refused: edge_loops.rs.
}
