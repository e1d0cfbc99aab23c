//! GPU pinning (issue 12 item 1): a `gpus` list pins one GPU per replica unless
//! `gpus_per_replica` says otherwise, and a replica whose GPUs are still held (by a replica being
//! replaced) waits — an event and a log line say so — instead of starting unpinned.

use crate::harness::{alive, children, kill, sim_deployment, Proxy};
use std::time::{Duration, Instant};

/// The `CUDA_VISIBLE_DEVICES` a process was started with (`None` when unset).
fn visible_devices(pid: u32) -> Option<String> {
    env_of(pid, "CUDA_VISIBLE_DEVICES")
}

/// The value of `name` in the environment a process was started with.
fn env_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_list_pins_one_gpu_per_replica() {
    let proxy = Proxy::start(&format!(
        "{}gpus = [\"3\", \"5\"]\nenv = {{ SERVER_HOST = \"127.0.0.1:{{port}}\", REPLICA = \"r{{replica}}\" }}\n",
        sim_deployment("pinned", "min_replicas = 2\nmax_replicas = 2", "--ttft 1ms")
    ));
    let state = proxy.wait_ready("pinned", 2).await;
    // Placeholders are expanded in the environment too (Ollama learns its port from OLLAMA_HOST).
    let mut hosts: Vec<String> = children(proxy.child.id())
        .into_iter()
        .filter_map(|pid| env_of(pid, "SERVER_HOST"))
        .collect();
    hosts.sort();
    let mut addrs: Vec<String> = state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["addr"].as_str().unwrap().to_string())
        .collect();
    addrs.sort();
    assert_eq!(hosts, addrs);
    let mut devices: Vec<_> = children(proxy.child.id())
        .into_iter()
        .map(visible_devices)
        .collect();
    devices.sort();
    assert_eq!(devices, vec![Some("3".to_string()), Some("5".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_gpu_is_still_held_waits_and_never_starts_unpinned() {
    let proxy = Proxy::start(&format!(
        "{}gpus = [\"0\"]\n",
        sim_deployment(
            "gpu",
            "min_replicas = 1\nmax_replicas = 1\nhealth = { interval_ready = \"200ms\", failures_to_eject = 2, timeout = \"300ms\" }\nupstream = { idle_timeout = \"2s\" }\nstop = { kill_grace = \"1s\", drain_timeout = \"3s\" }",
            "--ttft 1ms --tokens-per-s 20",
        )
    ));
    proxy.wait_ready("gpu", 1).await;
    let first = children(proxy.child.id())[0];
    assert_eq!(visible_devices(first).as_deref(), Some("0"));
    // A stream keeps the hung replica (and its GPU) busy until upstream.idle_timeout.
    let url = proxy.url("/v1/chat/completions");
    let stream = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&crate::harness::chat("gpu", true, 400))
            .send()
            .await
            .unwrap();
        r.text().await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(first, 19); // SIGSTOP: hung
    proxy
        .wait_state("gpu", Duration::from_secs(30), |s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == "gpu-1" && r["state"] == "ready")
        })
        .await;
    let _ = stream.await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(first) {
        assert!(
            Instant::now() < deadline,
            "the hung replica was never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now: Vec<u32> = children(proxy.child.id());
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        visible_devices(now[0]).as_deref(),
        Some("0"),
        "the replacement must get GPU 0"
    );
    let types = proxy.event_types("deployment=gpu").await;
    assert!(types.contains(&"replica_waiting".to_string()), "{types:?}");
    assert!(proxy
        .log()
        .contains("replica waits for GPUs held by other replicas"));
}
