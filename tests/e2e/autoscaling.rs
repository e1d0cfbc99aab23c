//! The autoscaler through the real binary: scaling 0 → N → by halves → min / zero under real load
//! with nothing lost, replacement of replicas that never become healthy (with back-off), a
//! startup_timeout of more than ten minutes, and scaling on the replicas' vLLM metrics.

use crate::harness::{chat, children, sim_deployment, Proxy, ADMIN_TOKEN};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Replicas by state in an admin snapshot: (starting, ready, draining).
fn by_state(state: &Value) -> (usize, usize, usize) {
    let replicas = state["replicas"].as_array().cloned().unwrap_or_default();
    let count = |s: &str| replicas.iter().filter(|r| r["state"] == s).count();
    (count("starting"), count("ready"), count("draining"))
}

/// One point of a deployment's replica timeline.
#[derive(Debug, Clone, Copy)]
struct Point {
    at: Duration,
    desired: u64,
    starting: usize,
    ready: usize,
    draining: usize,
}

/// Polls a deployment's state every 100 ms in the background.
struct Timeline {
    points: Arc<Mutex<Vec<Point>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Timeline {
    fn start(proxy: &Proxy, deployment: &str, epoch: Instant) -> Timeline {
        let url = format!("{}/admin/v1/deployments/{deployment}", proxy.admin);
        let points = Arc::new(Mutex::new(Vec::new()));
        let sink = points.clone();
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let request = client.get(&url).bearer_auth(ADMIN_TOKEN).send();
                if let Ok(r) = request.await {
                    if let Ok(state) = r.json::<Value>().await {
                        let (starting, ready, draining) = by_state(&state);
                        sink.lock().unwrap().push(Point {
                            at: epoch.elapsed(),
                            desired: state["desired_replicas"].as_u64().unwrap_or(0),
                            starting,
                            ready,
                            draining,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Timeline { points, task }
    }

    fn points(&self) -> Vec<Point> {
        self.points.lock().unwrap().clone()
    }

    /// The distinct desired counts, in order, seen from `from` on.
    fn desired_steps(&self, from: Duration) -> Vec<u64> {
        let mut steps: Vec<u64> = Vec::new();
        for p in self.points().iter().filter(|p| p.at >= from) {
            if steps.last() != Some(&p.desired) {
                steps.push(p.desired);
            }
        }
        steps
    }

    /// Prints the changes of the timeline (for the closing note's "replicas over time").
    fn print(&self, name: &str) {
        let mut last = None;
        for p in self.points() {
            let key = (p.desired, p.starting, p.ready, p.draining);
            if last != Some(key) {
                eprintln!(
                    "{name} t={:>6.1}s desired={} starting={} ready={} draining={}",
                    p.at.as_secs_f64(),
                    p.desired,
                    p.starting,
                    p.ready,
                    p.draining
                );
                last = Some(key);
            }
        }
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closed-loop streaming clients: each worker sends one streaming chat request after another while
/// the load is on, and records whether every one was answered 200 with a complete stream.
pub(crate) struct Load {
    on: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(proxy: &Proxy, model: &str, workers: usize, max_tokens: u32) -> Load {
        let on = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        let url = proxy.url("/v1/chat/completions");
        let body = chat(model, true, max_tokens);
        let workers = (0..workers)
            .map(|_| {
                let (on, done, ok, failures) =
                    (on.clone(), done.clone(), ok.clone(), failures.clone());
                let (client, url, body) = (client.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    while !done.load(Ordering::Acquire) {
                        if !on.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        match stream_to_end(&client, &url, &body).await {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            on,
            done,
            ok,
            failures,
            workers,
        }
    }

    fn pause(&self) {
        self.on.store(false, Ordering::Release);
    }

    fn resume(&self) {
        self.on.store(true, Ordering::Release);
    }

    /// Stops the workers after their current request; returns (answered in full, failures).
    pub(crate) async fn finish(self) -> (u64, Vec<String>) {
        self.done.store(true, Ordering::Release);
        for w in self.workers {
            w.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Acquire), failures)
    }
}

/// One streaming request read to its `data: [DONE]`.
pub(crate) async fn stream_to_end(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(), String> {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("read: {e}"))?;
    if status != 200 || !text.trim_end().ends_with("data: [DONE]") {
        return Err(format!("status {status}, body {text:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_0_to_n_holds_through_a_dip_then_halves_down_to_min_and_zero_losing_nothing() {
    // 6 concurrent streams, concurrency_target 2 × 75 % = 1.5 per replica → ceil(6 / 1.5) = 4.
    // scale_down_delay (12 s) is longer than the window (10 s), so when it has passed the
    // windowed load is 0 and the halving steps are exact: 4 → 2 → 1 → 0, and 4 → 3 → 2 at min 2.
    let settings = "max_replicas = 8\nconcurrency_target = 2\ntarget_utilization = 75\n\
                    autoscaling_window = \"10s\"\nscale_down_delay = \"12s\"";
    let sim = "--cold-start 500ms --ttft 5ms --tokens-per-s 40";
    let proxy = Proxy::start(&format!(
        "{}{}",
        sim_deployment("zero", &format!("min_replicas = 0\n{settings}"), sim),
        sim_deployment("floor", &format!("min_replicas = 2\n{settings}"), sim),
    ));
    // A new deployment starts with max(1, min) replicas; "zero" then idles down to nothing.
    let state = proxy
        .wait_state("zero", Duration::from_secs(40), |s| {
            s["replicas_stopped_total"] == 1 && s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(state["replicas_started_total"], 1);
    proxy.wait_ready("floor", 2).await;

    let epoch = Instant::now();
    let zero = Timeline::start(&proxy, "zero", epoch);
    let floor = Timeline::start(&proxy, "floor", epoch);
    let load_zero = Load::start(&proxy, "zero", 6, 20);
    let load_floor = Load::start(&proxy, "floor", 6, 20);

    // 0 → 4 (and 2 → 4), never more.
    for name in ["zero", "floor"] {
        proxy
            .wait_state(name, Duration::from_secs(20), |s| by_state(s).1 == 4)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A dip shorter than scale_down_delay: nothing is removed.
    load_zero.pause();
    load_floor.pause();
    tokio::time::sleep(Duration::from_secs(3)).await;
    load_zero.resume();
    load_floor.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, stopped) in [("zero", 1), ("floor", 0)] {
        let s = proxy.state(name).await;
        assert_eq!(
            by_state(&s),
            (0, 4, 0),
            "{name} kept 4 through the dip: {s:#}"
        );
        assert_eq!(s["replicas_stopped_total"], stopped, "{name}: {s:#}");
    }

    // Load ends: after the delay, halves of the excess, one window apart, down to min / zero.
    let (ok_zero, failed_zero) = load_zero.finish().await;
    let (ok_floor, failed_floor) = load_floor.finish().await;
    let quiet = epoch.elapsed();
    let zero_state = proxy
        .wait_state("zero", Duration::from_secs(90), |s| {
            s["replicas"].as_array().unwrap().is_empty()
        })
        .await;
    let floor_state = proxy
        .wait_state("floor", Duration::from_secs(30), |s| {
            by_state(s) == (0, 2, 0) && s["desired_replicas"] == 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    zero.print("zero");
    floor.print("floor");
    eprintln!("requests answered in full: zero {ok_zero}, floor {ok_floor}");

    assert!(failed_zero.is_empty(), "lost requests: {failed_zero:?}");
    assert!(failed_floor.is_empty(), "lost requests: {failed_floor:?}");
    assert!(ok_zero > 20 && ok_floor > 20, "{ok_zero} {ok_floor}");
    for (name, state) in [("zero", &zero_state), ("floor", &floor_state)] {
        assert_eq!(
            state["peak_desired_replicas"], 4,
            "{name} never asked for more than ceil(N / (t × u)): {state:#}"
        );
        assert_eq!(state["waiting"], 0);
        assert_eq!(state["in_flight"], 0);
    }
    for (name, timeline) in [("zero", &zero), ("floor", &floor)] {
        let most = timeline
            .points()
            .iter()
            .map(|p| p.starting + p.ready)
            .max()
            .unwrap();
        assert_eq!(most, 4, "{name} had more than 4 replicas at once");
    }
    assert_eq!(zero.desired_steps(quiet), vec![4, 2, 1, 0]);
    assert_eq!(floor.desired_steps(quiet), vec![4, 3, 2]);
    assert_eq!(zero_state["replicas_started_total"], 5, "{zero_state:#}");
    assert_eq!(zero_state["replicas_stopped_total"], 5, "{zero_state:#}");
    assert_eq!(floor_state["replicas_stopped_total"], 2, "{floor_state:#}");
    assert_eq!(zero_state["replicas_failed_total"], 0);
}

/// A process-backend deployment whose replica `n` runs the shell snippet chosen by `script`.
fn scripted_deployment(name: &str, settings: &str, script: &str) -> String {
    format!(
        r#"
[deployments.{name}]
{settings}
[deployments.{name}.backend]
type = "process"
command = ["sh", "-c", {script:?}, "sh", "{{replica}}", "{{infergate}}", "{{port}}"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_never_become_healthy_are_replaced_with_back_off_and_requests_complete() {
    // Replica 0 never passes its health check (times out), replica 1 exits at once, replica 2 is
    // a working model server.
    let script = r#"case "$1" in
        0) exec "$2" sim-server --port "$3" --cold-start 1h ;;
        1) exit 3 ;;
        *) exec "$2" sim-server --port "$3" --cold-start 200ms --ttft 1ms ;;
    esac"#;
    let proxy = Proxy::start(&scripted_deployment(
        "flaky",
        "min_replicas = 1\nstartup_timeout = \"1s\"\nhealth = { interval = \"100ms\" }",
        script,
    ));
    let response = proxy.chat("flaky", true, 4).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-infergate-route"], "replica/flaky-2");
    assert!(response.text().await.unwrap().contains("data: [DONE]"));

    let state = proxy.wait_ready("flaky", 1).await;
    assert_eq!(state["replicas_failed_total"], 2, "{state:#}");
    assert_eq!(state["replicas_started_total"], 3, "{state:#}");
    let log = proxy.log();
    assert!(
        log.contains("replica not ready within startup_timeout"),
        "{log}"
    );
    assert!(log.contains("replica exited while starting"), "{log}");
    // Exponential back-off between attempts: 500 ms after the first failure, 1 s after the second.
    assert!(
        log.contains("consecutive_failures=1 backoff_ms=500"),
        "{log}"
    );
    assert!(
        log.contains("consecutive_failures=2 backoff_ms=1000"),
        "{log}"
    );
    // The timed-out replica was stopped: only the working one is left.
    assert_eq!(children(proxy.child.id()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_timeout_of_fifteen_minutes_is_honoured_past_ten_minutes() {
    // Knative users hit a hard-coded 10-minute limit; here a model that takes 10.5 minutes to
    // load is waited for, and the request held meanwhile is answered.
    let proxy = Proxy::start(&sim_deployment(
        "big",
        "min_replicas = 1\nstartup_timeout = \"15m\"\nhealth = { interval = \"1s\" }\n\
         queue = { max_wait = \"20m\" }",
        "--cold-start 630s --ttft 1ms",
    ));
    let response = proxy.chat("big", false, 2).await;
    assert_eq!(response.status(), 200);
    let queued: u64 = response.headers()["x-infergate-queued-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let state = proxy.state("big").await;
    let cold_start = state["replicas"][0]["cold_start_ms"].as_u64().unwrap();
    eprintln!("cold start {cold_start} ms, request queued {queued} ms");
    assert!(cold_start >= 630_000, "{state:#}");
    assert!(queued >= 600_000, "the request was held past ten minutes");
    assert_eq!(state["replicas_failed_total"], 0, "{state:#}");
    assert_eq!(state["replicas_started_total"], 1, "{state:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_and_kv_cache_usage_scale_on_the_replicas_vllm_metrics() {
    let settings =
        "min_replicas = 1\nmax_replicas = 5\nconcurrency_target = 1\ntarget_utilization = 100";
    let proxy = Proxy::start(&format!(
        "{}{}{}",
        // The model server runs 2 at once and queues the rest (vllm:num_requests_waiting).
        sim_deployment(
            "queue",
            &format!("{settings}\nmetric = \"queue_depth\""),
            "--max-concurrency 2 --ttft 5ms --tokens-per-s 20"
        ),
        // KV cache use = running / 4 (vllm:kv_cache_usage_perc); target half of it.
        sim_deployment(
            "kv",
            &format!("{settings}\nmetric = \"kv_cache_usage\"\nkv_cache_target = 0.5"),
            "--max-concurrency 4 --ttft 5ms --tokens-per-s 20"
        ),
        // A model server without a metrics endpoint.
        sim_deployment(
            "blind",
            &format!("{settings}\nmetric = \"kv_cache_usage\""),
            "--no-metrics --ttft 5ms --tokens-per-s 20"
        ),
    ));
    for name in ["queue", "kv", "blind"] {
        proxy.wait_ready(name, 1).await;
    }
    let client = reqwest::Client::new();
    let url = proxy.url("/v1/chat/completions");
    let mut requests = Vec::new();
    // 5 streams on "queue": 2 run, 3 wait inside the server → 3 replicas (by concurrency: 5).
    // 3 streams on "kv": 75 % KV cache / 0.5 → 2 replicas (by concurrency: 3).
    // 3 streams on "blind": metrics unreadable → counted at its target → stays at 1.
    for (model, n) in [("queue", 5), ("kv", 3), ("blind", 3)] {
        for _ in 0..n {
            let (client, url, body) = (client.clone(), url.clone(), chat(model, true, 120));
            requests.push(tokio::spawn(async move {
                stream_to_end(&client, &url, &body).await
            }));
        }
    }
    let queue = proxy
        .wait_state("queue", Duration::from_secs(15), |s| by_state(s).1 == 3)
        .await;
    let kv = proxy
        .wait_state("kv", Duration::from_secs(15), |s| by_state(s).1 == 2)
        .await;
    for r in requests {
        r.await.unwrap().unwrap();
    }
    let queue_after = proxy.state("queue").await;
    let kv_after = proxy.state("kv").await;
    let blind = proxy.state("blind").await;
    assert_eq!(queue_after["peak_desired_replicas"], 3, "{queue:#}");
    assert_eq!(kv_after["peak_desired_replicas"], 2, "{kv:#}");
    assert_eq!(blind["peak_desired_replicas"], 1, "{blind:#}");
    assert_eq!(by_state(&blind), (0, 1, 0));
    let log = proxy.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot read replica metrics") && l.contains("blind-0"))
        .count();
    assert_eq!(warnings, 1, "logged once, not per scrape:\n{log}");
    let readable = log
        .lines()
        .filter(|l| l.contains("cannot read replica metrics") && !l.contains("blind-0"))
        .count();
    assert_eq!(readable, 0, "the vLLM-named metrics were read:\n{log}");
}
