//! Hardening at the edge, fallback side (issue 11): a provider stream that fails mid-way must
//! look failed to the client (official Python client, HTTP/1.1 and h2c), fallback streams count
//! for the shutdown grace, no client credential reaches a provider, headers named in
//! `Connection` are not forwarded, and a provider answer that echoes our key is redacted.

use crate::clients::{python, run_python};
use crate::fake_upstream::FakeUpstream;
use crate::harness::{sim_deployment, Proxy};
use std::time::Duration;

const KEY: &str = "sk-edge-provider-key-5e1d0b";

/// A proxy whose deployment `d` (aliases = the fake upstream's behaviours) never gets a ready
/// replica, so every request goes to the fake provider.
fn proxy_over(provider: &FakeUpstream, server: &str) -> Proxy {
    let deployments = format!(
        "{}\n[providers.fake]\nbase_url = \"{}/v1\"\napi_key_env = \"EDGE_KEY\"\ntimeout = \"1s\"\n",
        sim_deployment(
            "d",
            "aliases = [\"reset\", \"close\", \"stall\", \"ok\", \"echo-key\", \"length\"]\nfallback = { providers = [\"fake\"] }",
            "--cold-start 600s"
        ),
        provider.url()
    );
    Proxy::start_with_env(server, &deployments, &[("EDGE_KEY", KEY)])
}

const PY_STREAM: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="client-key", max_retries=0)
for model in sys.argv[2:]:
    parts = []
    try:
        for chunk in client.chat.completions.create(model=model, stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
            parts.append(chunk)
        print(model, "CLEAN", len(parts))
    except Exception as e:
        print(model, "RAISED", type(e).__name__)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_stream_that_resets_closes_or_stalls_makes_the_python_client_raise() {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let provider = FakeUpstream::start().await;
    let proxy = proxy_over(&provider, "listeners = [{ address = \"127.0.0.1:0\" }]");
    let base = proxy.url("/v1");
    let out = run_python(
        py,
        PY_STREAM,
        &[&base, "reset", "close", "stall", "ok"],
        None,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |m: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{m} ")))
            .unwrap_or_default()
            .to_string()
    };
    for broken in ["reset", "close", "stall"] {
        assert!(
            line(broken).contains("RAISED"),
            "a {broken} mid-stream looked complete to the client:\n{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
    }
    assert!(line("ok").contains("CLEAN"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_h2c_a_broken_provider_stream_is_reset_not_ended() {
    let provider = FakeUpstream::start().await;
    let proxy = proxy_over(
        &provider,
        "listeners = [{ address = \"127.0.0.1:0\", h2c = true }]",
    );
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (model, broken) in [
        ("reset", true),
        ("close", true),
        ("stall", true),
        ("ok", false),
    ] {
        let r = client
            .post(proxy.url("/v1/chat/completions"))
            .json(&crate::harness::chat(model, true, 4))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{model}");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        let body = r.bytes().await;
        assert_eq!(body.is_err(), broken, "{model}: {body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_answers_are_framed_never_close_delimited() {
    let provider = FakeUpstream::start().await;
    let proxy = proxy_over(&provider, "listeners = [{ address = \"127.0.0.1:0\" }]");
    // Raw HTTP/1.1 so the framing itself is visible.
    for (model, framing) in [
        ("ok", "transfer-encoding: chunked"),
        ("length", "transfer-encoding: chunked"),
    ] {
        let head = raw_head(&proxy, model).await;
        assert!(head.contains(framing), "{model}: {head}");
        assert!(!head.contains("connection: close"), "{model}: {head}");
    }
}

/// Sends one chat request over a raw socket and returns the response head, lower-cased.
async fn raw_head(proxy: &Proxy, model: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_string(&crate::harness::chat(model, true, 2)).unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response head");
        buf.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_credential_or_connection_named_header_reaches_a_provider() {
    let provider = FakeUpstream::start().await;
    let proxy = proxy_over(&provider, "listeners = [{ address = \"127.0.0.1:0\" }]");
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-secret-1")
        .header("cookie", "session=client-secret-2")
        .header("x-api-key", "client-secret-3")
        .header("api-key", "client-secret-4")
        .header("proxy-authorization", "Basic client-secret-5")
        .header("x-custom-token", "client-secret-6")
        .header("connection", "keep-alive, x-hop-only")
        .header("x-hop-only", "client-secret-7")
        .header("openai-organization", "org-kept")
        .header("x-stainless-lang", "python")
        .header("x-request-id", "req-kept-1")
        .json(&crate::harness::chat("ok", true, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-infergate-route"], "fallback/fake");
    let _ = r.bytes().await.unwrap();
    let seen = provider.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = &seen[0];
    assert!(
        !head.contains("client-secret"),
        "a client credential reached the provider:\n{head}"
    );
    assert!(
        head.contains(&format!(
            "authorization: bearer {}",
            KEY.to_ascii_lowercase()
        )),
        "{head}"
    );
    for kept in [
        "openai-organization: org-kept",
        "x-stainless-lang: python",
        "x-request-id: req-kept-1",
        "content-type: application/json",
    ] {
        assert!(head.contains(kept), "{kept} missing:\n{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_provider_answer_that_echoes_our_key_is_redacted() {
    let provider = FakeUpstream::start().await;
    let proxy = proxy_over(&provider, "listeners = [{ address = \"127.0.0.1:0\" }]");
    let r = proxy.chat("echo-key", true, 2).await;
    assert_eq!(r.status(), 200);
    let header = r.headers()["x-echo"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(
        !header.contains(KEY) && header.contains("[redacted]"),
        "{header}"
    );
    assert!(!body.contains(KEY) && body.contains("[redacted]"), "{body}");
    assert!(body.contains("data: [DONE]"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_fallback_streams_finish_within_the_grace() {
    // The simulated provider streams 2,000 tokens/s: 8,000 tokens last ~4 s.
    let saas = crate::fallback::fake_saas("");
    let deployments = format!(
        "{}{}",
        sim_deployment(
            "chat",
            "fallback = { providers = [\"saas\"] }",
            "--cold-start 600s"
        ),
        crate::fallback::provider("saas", &saas, "")
    );
    let mut proxy = crate::fallback::start(&deployments);
    let mut streams = Vec::new();
    for _ in 0..5 {
        let r = proxy.chat("chat", true, 8000).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-infergate-route"], "fallback/saas");
        streams.push(tokio::spawn(async move { r.text().await }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = proxy.child.id();
    let status = tokio::task::spawn_blocking(move || {
        let s = proxy.terminate();
        (s, proxy)
    });
    for s in streams {
        let body = s
            .await
            .unwrap()
            .expect("a fallback stream was cut by SIGTERM");
        assert!(
            body.trim_end().ends_with("data: [DONE]"),
            "cut short (pid {pid}): {body}"
        );
    }
    let (status, _proxy) = status.await.unwrap();
    assert!(status.success(), "{status:?}");
}

/// A provider that accepts connections and closes them at once, counting them.
async fn slamming_provider() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_cool_down_of_an_unchanged_provider() {
    let (bad_url, attempts) = slamming_provider().await;
    let good = FakeUpstream::start().await;
    let deployments = format!(
        "{}\n[providers.bad]\nbase_url = \"{bad_url}\"\npriority = 1\nfailures_to_cool_down = 1\ncool_down = \"10m\"\n[providers.good]\nbase_url = \"{}/v1\"\npriority = 2\n",
        sim_deployment("d", "aliases = [\"ok\"]\nfallback = { providers = [\"bad\", \"good\"] }", "--cold-start 600s"),
        good.url()
    );
    let proxy = Proxy::start(&deployments);
    let ask = || async {
        let r = proxy.chat("ok", true, 2).await;
        let route = r.headers()["x-infergate-route"]
            .to_str()
            .unwrap()
            .to_string();
        let _ = r.bytes().await;
        route
    };
    assert_eq!(ask().await, "fallback/good");
    let tried = attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried >= 1, "the failing provider was not tried first");
    assert_eq!(ask().await, "fallback/good");
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        tried,
        "cooling down: skipped"
    );
    // Reload with another deployment added; the providers are unchanged.
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(
        &proxy.config_path,
        format!("{text}\n{}", sim_deployment("extra", "", "--ttft 1ms")),
    )
    .unwrap();
    crate::harness::kill(proxy.child.id(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while proxy
        .admin_get("/admin/v1/deployments/extra")
        .await
        .status()
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "reload not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ask().await, "fallback/good");
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        tried,
        "the reload reset the cool-down of an unchanged provider"
    );
}
