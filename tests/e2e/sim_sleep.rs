//! The simulated model server's sleep mode, as vLLM's: `/sleep`, `/wake_up` (taking
//! `--wake-time`), `/is_sleeping`, inference refused while asleep, and 404s without it.

use crate::harness::{chat, SimServer};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_frees_the_model_and_wake_up_brings_it_back_in_wake_time() {
    let sim = SimServer::start("--model chat --wake-time 300ms");
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", sim.url);
    let asleep = || async {
        let v: Value = client
            .get(url("/is_sleeping"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["is_sleeping"].as_bool().unwrap()
    };
    assert!(!asleep().await);
    assert_eq!(
        client
            .post(url("/sleep?level=1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(asleep().await);
    let refused = client
        .post(url("/v1/chat/completions"))
        .json(&chat("chat", false, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_sleeping");
    let started = std::time::Instant::now();
    assert_eq!(
        client.post(url("/wake_up")).send().await.unwrap().status(),
        200
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert!(!asleep().await);
    let served = client
        .post(url("/v1/chat/completions"))
        .json(&chat("chat", false, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let stats: Value = client
        .get(url("/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["sleeps"].as_u64(), stats["wake_ups"].as_u64()),
        (Some(1), Some(1))
    );

    let plain = SimServer::start("--model chat --no-sleep-mode");
    for (method, path) in [
        ("POST", "/sleep"),
        ("POST", "/wake_up"),
        ("GET", "/is_sleeping"),
    ] {
        let request = client.request(method.parse().unwrap(), format!("{}{path}", plain.url));
        assert_eq!(request.send().await.unwrap().status(), 404, "{path}");
    }
}
