//! Replicas that die or hang (issue 11): a request whose connect is refused by a just-killed
//! replica keeps its place and is served by another one (no 502); a hung (SIGSTOPped) replica is
//! ejected by the ready-state health checks and replaced (process backend) or re-admitted once it
//! answers again (static backend).

use crate::harness::{alive, chat, children, kill, sim_deployment, Proxy, SimServer};
use serde_json::Value;
use std::time::{Duration, Instant};

const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

async fn ask(proxy: &Proxy, model: &str) -> (u16, String) {
    let r = proxy.chat(model, false, 3).await;
    let status = r.status().as_u16();
    let route = r
        .headers()
        .get("x-infergate-route")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let _ = r.bytes().await;
    (status, route)
}

fn replica<'a>(state: &'a Value, addr: &str) -> &'a Value {
    state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            addr.trim_end_matches('/')
                .ends_with(r["addr"].as_str().unwrap())
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_by_a_killed_replica_wait_for_another_instead_of_a_502() {
    let alive_sim = SimServer::start("--port 0 --model pair --ttft 150ms");
    let mut doomed = SimServer::start("--port 0 --model pair --ttft 150ms");
    let proxy = Proxy::start(&format!(
        "[deployments.pair]\nreplica_concurrency = 1\nhealth = {{ interval_ready = \"1h\" }}\n[deployments.pair.backend]\ntype = \"static\"\nurls = [\"{}\", \"{}\"]\n",
        alive_sim.url, doomed.url
    ));
    proxy.wait_ready("pair", 2).await;
    kill(doomed.child.id(), SIGKILL);
    let _ = doomed.child.wait();
    // Six at once on two replicas of one slot each: some land on the dead one while the live one
    // is busy. Each must wait for the live one, not fail.
    let asks: Vec<_> = (0..6)
        .map(|_| {
            let url = proxy.url("/v1/chat/completions");
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .json(&chat("pair", false, 2))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    for a in asks {
        let (status, body) = a.await.unwrap();
        assert_eq!(status, 200, "{body}\n{}", proxy.log());
    }
    let state = proxy.state("pair").await;
    assert_eq!(replica(&state, &doomed.url)["ejected"], true, "{state:#}");
    assert!(proxy
        .event_types("deployment=pair")
        .await
        .contains(&"replica_ejected".to_string()));
    assert!(!proxy.log().contains("upstream_unreachable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_static_replica_is_ejected_then_readmitted_when_it_answers_again() {
    let steady = SimServer::start("--port 0 --model st --ttft 1ms");
    let flaky = SimServer::start("--port 0 --model st --ttft 1ms");
    let proxy = Proxy::start(&format!(
        "[deployments.st]\nhealth = {{ interval_ready = \"200ms\", failures_to_eject = 2, timeout = \"300ms\" }}\n[deployments.st.backend]\ntype = \"static\"\nurls = [\"{}\", \"{}\"]\n",
        steady.url, flaky.url
    ));
    proxy.wait_ready("st", 2).await;
    kill(flaky.child.id(), SIGSTOP);
    let flaky_addr = flaky.url.clone();
    proxy
        .wait_state("st", Duration::from_secs(20), |s| {
            replica(s, &flaky_addr)["ejected"] == true
        })
        .await;
    for _ in 0..6 {
        let (status, route) = ask(&proxy, "st").await;
        assert_eq!(status, 200);
        assert!(
            steady
                .url
                .trim_end_matches('/')
                .ends_with(&route_addr(&proxy, &route).await),
            "a request went to the hung replica: {route}"
        );
    }
    kill(flaky.child.id(), SIGCONT);
    proxy
        .wait_state("st", Duration::from_secs(20), |s| {
            replica(s, &flaky_addr)["ejected"] == false
        })
        .await;
    let types = proxy.event_types("deployment=st").await;
    assert!(types.contains(&"replica_ejected".to_string()), "{types:?}");
    assert!(
        types.contains(&"replica_readmitted".to_string()),
        "{types:?}"
    );
}

/// The address of the replica a route header names.
async fn route_addr(proxy: &Proxy, route: &str) -> String {
    let id = route.trim_start_matches("replica/");
    let state = proxy.state("st").await;
    state["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .map(|r| r["addr"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_process_replica_is_replaced_and_its_streams_end_failed() {
    let proxy = Proxy::start(&sim_deployment(
        "hang",
        "min_replicas = 1\nmax_replicas = 1\nhealth = { interval_ready = \"200ms\", failures_to_eject = 2, timeout = \"300ms\" }\nupstream = { idle_timeout = \"2s\" }\nstop = { kill_grace = \"1s\" }",
        "--ttft 1ms --tokens-per-s 20",
    ));
    proxy.wait_ready("hang", 1).await;
    let pid = children(proxy.child.id())[0];
    // A long stream on the replica that is about to hang.
    let stream = {
        let url = proxy.url("/v1/chat/completions");
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&chat("hang", true, 400))
                .send()
                .await
                .unwrap();
            r.text().await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(pid, SIGSTOP);
    proxy
        .wait_state("hang", Duration::from_secs(30), |s| {
            s["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == "hang-1" && r["state"] == "ready")
        })
        .await;
    let (status, route) = ask(&proxy, "hang").await;
    assert_eq!((status, route.as_str()), (200, "replica/hang-1"));
    // The stream on the hung replica is cut after upstream.idle_timeout: it must look failed.
    let cut = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream on the hung replica never ended")
        .unwrap();
    assert!(
        cut.as_ref().map_or(true, |t| !t.contains("data: [DONE]")),
        "a stream from a hung replica looked complete: {cut:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the hung replica was never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let types = proxy.event_types("deployment=hang").await;
    assert!(types.contains(&"replica_ejected".to_string()), "{types:?}");
}
