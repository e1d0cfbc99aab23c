//! Maintenance without a fallback (issue 12 item 5): new requests are held until maintenance is
//! off (up to `queue.max_wait`), requests in flight finish, and the CLI and API say so.

use crate::control_plane::cli;
use crate::harness::{chat, sim_deployment, Proxy};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_without_a_fallback_holds_new_requests_and_lets_in_flight_ones_finish() {
    let proxy = Proxy::start(&format!(
        "{}{}",
        sim_deployment("m", "min_replicas = 1", "--ttft 1ms --tokens-per-s 40"),
        sim_deployment(
            "short",
            "min_replicas = 1\nqueue = { max_wait = \"500ms\" }",
            "--ttft 1ms"
        ),
    ));
    proxy.wait_ready("m", 1).await;
    proxy.wait_ready("short", 1).await;
    let send = |model: &'static str, tokens: u32| {
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&chat(model, true, tokens))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let in_flight = send("m", 40); // ~1 s of streaming
    proxy
        .wait_state("m", Duration::from_secs(10), |s| s["in_flight"] == 1)
        .await;
    let on = cli(&proxy, &["maintenance", "m", "on"]);
    let said = String::from_utf8_lossy(&on.stdout).to_string();
    assert!(
        on.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&on.stderr)
    );
    assert!(
        said.contains("maintenance on") && said.contains("new requests wait"),
        "{said}"
    );
    let held = send("m", 2);
    proxy
        .wait_state("m", Duration::from_secs(10), |s| {
            s["maintenance_waiting"] == 1
        })
        .await;
    // The request in flight finishes on the replica.
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(
        !held.is_finished(),
        "a new request went through during maintenance"
    );
    assert_eq!(proxy.state("m").await["in_flight"], 0);
    let off = cli(&proxy, &["maintenance", "m", "off"]);
    assert!(off.status.success());
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("data: [DONE]"));
    assert_eq!(proxy.state("m").await["maintenance_waiting"], 0);

    // Held longer than queue.max_wait: 504 queue_timeout.
    assert!(cli(&proxy, &["maintenance", "short", "on"])
        .status
        .success());
    let r = proxy.chat("short", false, 2).await;
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_timeout");
}
