//! Hot reload and graceful shutdown through the real binary: a reload under 50 streams changes a
//! deployment and adds another without losing one; an invalid file is refused and the running
//! config stays; SIGTERM lets 20 streams finish, then exits with no replica left.

use crate::harness::{alive, chat, children, kill, sim_deployment, Proxy};
use serde_json::Value;
use std::time::Duration;

/// Streams `n` chat completions of `max_tokens` tokens at once; returns the joins.
fn streams(
    proxy: &Proxy,
    model: &str,
    n: usize,
    max_tokens: u32,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    (0..n)
        .map(|_| {
            let url = proxy.url("/v1/chat/completions");
            let body = chat(model, true, max_tokens);
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                let text = r.text().await.map_err(|e| e.to_string())?;
                if status == 200 && text.trim_end().ends_with("data: [DONE]") {
                    Ok(())
                } else {
                    Err(format!("{status}: {text}"))
                }
            })
        })
        .collect()
}

/// Awaits every stream; fails listing those not answered 200 with a complete stream.
async fn assert_none_lost(running: Vec<tokio::task::JoinHandle<Result<(), String>>>, n: usize) {
    let mut lost = Vec::new();
    for s in running {
        if let Err(e) = s.await.unwrap() {
            lost.push(e);
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {n} streams lost: {lost:?}",
        lost.len()
    );
}

fn config_text(proxy: &Proxy) -> String {
    std::fs::read_to_string(&proxy.config_path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_50_streams_changes_and_adds_deployments_and_refuses_invalid_files() {
    let proxy = Proxy::start(&sim_deployment(
        "live",
        "min_replicas = 1\nmax_replicas = 2",
        "--ttft 1ms --tokens-per-s 25",
    ));
    proxy.wait_ready("live", 1).await;
    let original = config_text(&proxy);

    // 50 streams of 2 s each.
    let running = streams(&proxy, "live", 50, 50);
    proxy
        .wait_state("live", Duration::from_secs(10), |s| s["in_flight"] == 50)
        .await;

    // Change "live" and add "added" — by SIGHUP.
    let changed = original.replace(
        "max_replicas = 2",
        "max_replicas = 4\nconcurrency_target = 25",
    ) + &sim_deployment("added", "min_replicas = 1", "--ttft 1ms");
    std::fs::write(&proxy.config_path, &changed).unwrap();
    kill(proxy.child.id(), 1);
    let state = proxy
        .wait_state("live", Duration::from_secs(10), |s| {
            s["settings"]["max_replicas"] == 4
        })
        .await;
    assert_eq!(state["settings"]["concurrency_target"], 25);
    proxy.wait_ready("added", 1).await;
    let r = proxy.chat("added", false, 2).await;
    assert_eq!(r.status(), 200);

    assert_none_lost(running, 50).await;

    // An invalid file (changed on disk, no signal): refused with field and reason; old config stays.
    let broken = changed.replace("max_replicas = 4", "max_replicas = 0");
    std::fs::write(&proxy.config_path, broken).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("config reload refused") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload attempt:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(proxy
        .log()
        .contains("deployments.live.max_replicas: must be ≥ 1, got 0"));
    let events: Value = proxy
        .admin_get("/admin/v1/events?type=config_rejected")
        .await
        .json()
        .await
        .unwrap();
    let description = events["events"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("deployments.live.max_replicas"),
        "{events:#}"
    );
    assert_eq!(proxy.state("live").await["settings"]["max_replicas"], 4);
    assert_eq!(proxy.chat("live", false, 2).await.status(), 200);

    // Removing a deployment: it leaves the routing table; the other keeps serving.
    std::fs::write(&proxy.config_path, &original).unwrap();
    kill(proxy.child.id(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.chat("added", false, 2).await.status() != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "removed deployment still served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.chat("live", false, 2).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_20_streams_finish_then_exits_with_no_replica_left() {
    let mut proxy = Proxy::start(&sim_deployment(
        "term",
        "min_replicas = 2\nmax_replicas = 2",
        "--ttft 1ms --tokens-per-s 20",
    ));
    proxy.wait_ready("term", 2).await;
    let replicas = children(proxy.child.id());
    assert_eq!(replicas.len(), 2);
    // 20 streams of ~2 s each.
    let running = streams(&proxy, "term", 20, 40);
    proxy
        .wait_state("term", Duration::from_secs(10), |s| s["in_flight"] == 20)
        .await;
    let pid = proxy.child.id();
    let status = tokio::task::spawn_blocking(move || {
        kill(pid, 15);
        std::thread::sleep(Duration::from_millis(300));
        // New connections are refused while the streams finish.
        let refused = std::net::TcpStream::connect_timeout(
            &proxy.base.trim_start_matches("http://").parse().unwrap(),
            Duration::from_millis(500),
        )
        .is_err();
        (proxy.terminate(), refused)
    })
    .await
    .unwrap();
    let (exit, refused) = status;
    assert_none_lost(running, 20).await;
    assert!(exit.success(), "{exit:?}");
    assert!(refused, "new connections were accepted during shutdown");
    for pid in replicas {
        assert!(!alive(pid), "replica {pid} survived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let proxy = Proxy::start_full(
        "listeners = [{ address = \"127.0.0.1:0\" }]",
        &sim_deployment(
            "slow",
            "min_replicas = 1\nqueue = { max_wait = \"300ms\" }",
            "--cold-start 60s",
        ),
        &[],
        &["--log-format", "json"],
    );
    let r = proxy.chat("slow", false, 2).await;
    assert_eq!(r.status(), 504);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = proxy.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "request")
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .map(|l| l["fields"]["message"].as_str().unwrap_or_default())
        .collect();
    assert!(messages.contains(&"request failed"), "{messages:?}");
    assert!(messages.contains(&"request done"), "{messages:?}");
    let ids: std::collections::HashSet<String> = of_request
        .iter()
        .map(|l| l["span"]["request_id"].to_string())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "one request, one id on all its lines: {ids:?}"
    );
    assert!(of_request.iter().all(|l| l["span"]["deployment"] == "slow"));
}
