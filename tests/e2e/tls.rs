//! Downstream TLS through rustls with ALPN h2 (pingora's rustls support is marked experimental
//! upstream, so a real client covers it), and cleartext HTTP/2 with prior knowledge (h2c).

use crate::harness::{chat, scratch_dir, sim_deployment, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_alpn_h2_and_h2c_both_stream_responses() {
    let dir = scratch_dir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let server = format!(
        "listeners = [{{ address = \"127.0.0.1:0\" }}, {{ address = \"127.0.0.1:0\", tls = {{ cert = {:?}, key = {:?} }} }}]",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    let proxy = Proxy::start_with_server(
        &server,
        &sim_deployment("m", "min_replicas = 1", "--ttft 1ms"),
    );
    proxy.wait_ready("m", 1).await;
    let stdout_tls = tls_url(&proxy);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = client
        .post(format!("{stdout_tls}/v1/chat/completions"))
        .json(&chat("m", true, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN must select h2"
    );
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-infergate-route"], "replica/m-0");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2c
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat("m", false, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let models = h2c.get(proxy.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
}

fn tls_url(proxy: &Proxy) -> String {
    proxy
        .tls_base
        .clone()
        .expect("TLS listener printed")
        .replace("127.0.0.1", "localhost")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_decided_per_listener() {
    let proxy = Proxy::start_with_server(
        "listeners = [{ address = \"127.0.0.1:0\", h2c = false }, { address = \"127.0.0.1:0\", h2c = true }]",
        &crate::harness::sim_deployment("m", "min_replicas = 1", "--ttft 1ms"),
    );
    assert_eq!(proxy.listeners.len(), 2, "{:?}", proxy.listeners);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let on = h2
        .get(format!("{}/v1/models", proxy.listeners[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (on.status().as_u16(), on.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let off = h2
        .get(format!("{}/v1/models", proxy.listeners[0]))
        .send()
        .await;
    assert!(
        off.as_ref()
            .map_or(true, |r| r.version() != reqwest::Version::HTTP_2),
        "h2c = false was ignored: {off:?}"
    );
    for url in &proxy.listeners {
        let r = reqwest::get(format!("{url}/v1/models")).await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.version()),
            (200, reqwest::Version::HTTP_11)
        );
    }
}
