//! Loops (issue 11): a static replica URL or provider that is this proxy, in any spelling, is
//! refused at load; a loop through another hop is cut at once with 508 (the marker carries this
//! instance's id); other infergates in a chain pass requests on.

use crate::fake_upstream::FakeUpstream;
use crate::harness::{chat, scratch_dir, sim_deployment, Proxy, BIN};
use std::process::Command;
use tokio::net::{TcpListener, TcpStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn static_replicas_and_providers_that_are_this_proxy_are_refused_in_every_spelling() {
    let port = free_port();
    let dir = scratch_dir();
    for (i, url) in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost.:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://0.0.0.0:{port}"),
    ]
    .iter()
    .enumerate()
    {
        let config = dir.join(format!("self-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisteners = [{{ address = \"127.0.0.1:{port}\" }}]\n[deployments.me]\n[deployments.me.backend]\ntype = \"static\"\nurls = [\"{url}\"]\n[deployments.m2]\nfallback = {{ providers = [\"self\"] }}\n[deployments.m2.backend]\ntype = \"static\"\nurls = [\"http://127.0.0.1:9\"]\n[providers.self]\nbase_url = \"{url}/v1\"\n"
            ),
        )
        .unwrap();
        let replica_error = "deployments.me.backend.urls[0]: resolves to";
        let provider_error = "providers.self.base_url: resolves to";
        let validate = Command::new(BIN)
            .arg("validate")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&validate.stderr);
        assert!(!validate.status.success(), "{url}");
        assert!(stderr.contains(replica_error), "{url}: {stderr}");
        assert!(stderr.contains(provider_error), "{url}: {stderr}");
        let serve = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!serve.status.success(), "{url}");
        assert!(
            String::from_utf8_lossy(&serve.stderr).contains("resolves to"),
            "{url}"
        );
    }
}

/// Relays every connection on its port to `target` (another hop between us and ourselves).
async fn relay(listener: TcpListener, target: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_through_another_hop_is_cut_at_once_with_508() {
    let hop = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hop_url = format!("http://{}", hop.local_addr().unwrap());
    let proxy = Proxy::start(&format!(
        "[deployments.looped]\n[deployments.looped.backend]\ntype = \"static\"\nurls = [\"{hop_url}\"]\n"
    ));
    tokio::spawn(relay(
        hop,
        proxy.base.trim_start_matches("http://").to_string(),
    ));
    proxy.wait_ready("looped", 1).await;
    let before = open_fds(proxy.child.id());
    let r = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat("looped", false, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 508);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "loop_detected", "{body}");
    let after = open_fds(proxy.child.id());
    assert!(after < before + 20, "fds grew from {before} to {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_get_this_instances_id_and_a_request_bearing_it_is_refused() {
    let replica = FakeUpstream::start().await;
    let proxy = Proxy::start(&format!(
        "{}[deployments.fake]\n[deployments.fake.backend]\ntype = \"static\"\nurls = [\"{}\"]\n",
        sim_deployment("m", "min_replicas = 1", "--ttft 1ms"),
        replica.url()
    ));
    proxy.wait_ready("fake", 1).await;
    proxy.wait_ready("m", 1).await;
    let client = reqwest::Client::new();
    let r = client
        .post(proxy.url("/v1/chat/completions"))
        .header("x-infergate-forwarded", "ig-upstream-gateway")
        .json(&chat("fake", true, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another infergate's id passes");
    let _ = r.bytes().await;
    let head = replica
        .seen()
        .into_iter()
        .find(|h| h.starts_with("post "))
        .unwrap();
    let marker = head
        .lines()
        .find_map(|l| l.strip_prefix("x-infergate-forwarded: "))
        .expect("requests to replicas are marked")
        .to_string();
    let ours = marker
        .strip_prefix("ig-upstream-gateway, ")
        .expect("earlier hops are kept")
        .to_string();
    assert!(ours.starts_with("ig-"), "{marker}");
    let r = client
        .post(proxy.url("/v1/chat/completions"))
        .header("x-infergate-forwarded", format!("ig-a, {ours}"))
        .json(&chat("m", false, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 508);
}
