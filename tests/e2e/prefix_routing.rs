//! Prefix-cache-aware and session-affine routing (issue 18) through the real binary: 16 system
//! prompts × 8 turns over 3 replicas stay with their replica (and the sim-servers' prefix caches
//! hit exactly as often as a request reaches a replica that served its prefix before), a hot
//! prompt spills over the load bound, removing a replica moves only its keys, and `session`
//! sticks by `x-session-id` and by `user`.

use crate::harness::{sim_deployment, Proxy, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn system_prompt(i: usize) -> String {
    format!("System prompt {i}: you are assistant number {i}. ")
        + &"Follow the house style. ".repeat(60)
}

fn body(prompt: usize, turn: usize, max_tokens: u32) -> Value {
    json!({
        "model": "chat", "max_tokens": max_tokens,
        "messages": [
            {"role": "system", "content": system_prompt(prompt)},
            {"role": "user", "content": format!("question {turn}")}
        ]
    })
}

/// Sends one request; (replica id, route reason).
async fn send(proxy: &Proxy, body: &Value, headers: &[(&str, &str)]) -> (String, String) {
    let mut req = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = |n: &str| r.headers()[n].to_str().unwrap().to_string();
    let out = (
        h("x-infergate-route")
            .trim_start_matches("replica/")
            .to_string(),
        h("x-infergate-route-reason"),
    );
    let _ = r.bytes().await;
    out
}

async fn replica_addrs(proxy: &Proxy, deployment: &str) -> HashMap<String, String> {
    proxy.state(deployment).await["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "ready")
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["addr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_stay_with_their_replica_spill_when_hot_and_move_only_when_theirs_goes() {
    let proxy = Proxy::start(&sim_deployment(
        "chat",
        "min_replicas = 3\nmax_replicas = 3\nrouting = \"prefix\"\nscale_down_delay = \"0s\"",
        "--ttft 5ms --tokens-per-s 100000 --prefix-cache-size 64",
    ));
    proxy.wait_ready("chat", 3).await;
    let addrs = replica_addrs(&proxy, "chat").await;

    // 16 prompts × 8 turns, one at a time (no load to bound).
    let mut seen: HashMap<usize, Vec<String>> = HashMap::new();
    let mut served: HashSet<(usize, String)> = HashSet::new();
    let mut expected_hits = 0u64;
    for turn in 0..8 {
        for prompt in 0..16 {
            let (replica, reason) = send(&proxy, &body(prompt, turn, 2), &[]).await;
            assert_eq!(reason, "prefix");
            expected_hits += u64::from(!served.insert((prompt, replica.clone())));
            seen.entry(prompt).or_default().push(replica);
        }
    }
    let mut owner: HashMap<usize, String> = HashMap::new();
    for (prompt, replicas) in &seen {
        let mut counts: HashMap<&String, usize> = HashMap::new();
        for r in replicas {
            *counts.entry(r).or_default() += 1;
        }
        let (top, n) = counts.into_iter().max_by_key(|(_, n)| *n).unwrap();
        assert!(
            n * 10 >= replicas.len() * 9,
            "prompt {prompt}: {replicas:?}"
        );
        owner.insert(*prompt, top.clone());
    }
    let used: HashSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 3, "every replica gets prompts: {owner:?}");
    // The sim-servers' own prefix caches agree.
    let mut hits = 0u64;
    for addr in addrs.values() {
        let stats: Value = reqwest::get(format!("http://{addr}/sim/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hits += stats["prefix_cache_hits"].as_u64().unwrap();
    }
    assert_eq!(hits, expected_hits);
    assert_eq!(expected_hits, 16 * 7, "each prompt misses once");

    // A hot prompt: 24 slow requests at once spill past its replica's load bound.
    let mut hot = Vec::new();
    for turn in 0..24 {
        let proxy_url = proxy.url("/v1/chat/completions");
        hot.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(proxy_url)
                .json(&body(0, 100 + turn, 400))
                .send()
                .await
                .unwrap();
            let route = r.headers()["x-infergate-route"]
                .to_str()
                .unwrap()
                .to_string();
            let reason = r.headers()["x-infergate-route-reason"]
                .to_str()
                .unwrap()
                .to_string();
            let _ = r.bytes().await;
            (route, reason)
        }));
    }
    let mut spilled = HashSet::new();
    let mut overflow = 0;
    for h in hot {
        let (route, reason) = h.await.unwrap();
        spilled.insert(route);
        overflow += usize::from(reason == "overflow");
    }
    assert!(spilled.len() >= 2 && overflow > 0, "{spilled:?} {overflow}");

    // One replica goes: only its prompts move.
    let r = reqwest::Client::new()
        .patch(format!("{}/admin/v1/deployments/chat", proxy.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"min_replicas": 2, "max_replicas": 2}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    proxy.wait_ready("chat", 2).await;
    proxy
        .wait_state("chat", Duration::from_secs(20), |s| {
            s["replicas"].as_array().unwrap().len() == 2
        })
        .await;
    let left: HashSet<String> = replica_addrs(&proxy, "chat").await.into_keys().collect();
    for (prompt, was) in &owner {
        let (now, _) = send(&proxy, &body(*prompt, 200, 2), &[]).await;
        if left.contains(was) {
            assert_eq!(&now, was, "prompt {prompt} moved though its replica stayed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_routing_sticks_by_header_and_by_user() {
    let proxy = Proxy::start(&sim_deployment(
        "chat",
        "min_replicas = 3\nmax_replicas = 3\nrouting = \"session\"",
        "--ttft 1ms --tokens-per-s 100000",
    ));
    proxy.wait_ready("chat", 3).await;
    let plain =
        json!({"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
    let mut by_session = HashSet::new();
    let mut all = HashSet::new();
    for s in 0..12 {
        let id = format!("session-{s}");
        let mut replicas = HashSet::new();
        for _ in 0..5 {
            let (replica, reason) = send(&proxy, &plain, &[("x-session-id", &id)]).await;
            assert_eq!(reason, "session");
            replicas.insert(replica.clone());
            all.insert(replica);
        }
        assert_eq!(replicas.len(), 1, "{id} moved: {replicas:?}");
        by_session.extend(replicas);
    }
    assert!(all.len() >= 2, "sessions spread: {all:?}");
    let mut with_user = plain.clone();
    with_user["user"] = json!("alice");
    let (first, reason) = send(&proxy, &with_user, &[]).await;
    assert_eq!(reason, "session");
    for _ in 0..5 {
        assert_eq!(send(&proxy, &with_user, &[]).await.0, first);
    }
    // Neither: least loaded.
    assert_eq!(send(&proxy, &plain, &[]).await.1, "least_loaded");
}
