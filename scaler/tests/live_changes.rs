//! Live settings changes through the controller's `update_config` seam, with the process backend
//! running real child processes (Python's `http.server` plays a model server that is ready at once).

use infergate_config::Config;
use infergate_scaler::events::{EventFilter, EventLog};
use infergate_scaler::{Controller, ReplicaState};
use std::time::{Duration, Instant};

fn deployment(settings: &str) -> infergate_config::DeploymentConfig {
    let text = format!(
        "[deployments.web]\n{settings}\nhealth = {{ path = \"/\", interval = \"50ms\" }}\n\
         stop = {{ kill_grace = \"2s\" }}\n[deployments.web.backend]\ntype = \"process\"\n\
         command = [\"python3\", \"-m\", \"http.server\", \"{{port}}\", \"--bind\", \"127.0.0.1\"]\n"
    );
    Config::from_toml_str(&text).unwrap().deployments["web"].clone()
}

async fn wait_ready(controller: &Controller, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = controller
            .pool()
            .replicas()
            .iter()
            .filter(|r| r.state() == ReplicaState::Ready)
            .count();
        if ready == count {
            return;
        }
        assert!(Instant::now() < deadline, "{ready} ready, wanted {count}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_min_takes_effect_on_the_next_decision_and_invalid_changes_are_refused() {
    let (events, sink) = EventLog::start(100, None);
    let handle = Controller::spawn(
        "web",
        deployment("min_replicas = 1\nmax_replicas = 3"),
        sink,
        None,
    );
    let controller = handle.controller.clone();
    wait_ready(&controller, 1).await;

    // Raise the floor: the next decision starts a second replica.
    let raised = deployment("min_replicas = 2\nmax_replicas = 3");
    controller.update_config(raised, "api").unwrap();
    wait_ready(&controller, 2).await;
    assert_eq!(controller.last_decision().unwrap().desired, 2);

    // The development preset pins min 0 / max 1: a change to max 3 is refused, naming the field,
    // and the running settings stay.
    let mut refused = deployment("preset = \"development\"");
    refused.max_replicas = 3;
    let err = controller
        .update_config(refused, "config")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "deployments.web.max_replicas: is fixed at 1 by preset \"development\", got 3"
        ),
        "{err}"
    );
    assert_eq!(controller.config().min_replicas, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_ready(&controller, 2).await;

    // Lower the ceiling below current: the next decision brings it back within bounds.
    controller
        .update_config(deployment("min_replicas = 1\nmax_replicas = 1"), "api")
        .unwrap();
    wait_ready(&controller, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while controller.pool().replicas().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the draining replica was never stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        controller
            .stats
            .replicas_stopped
            .load(std::sync::atomic::Ordering::Acquire),
        1
    );
    handle.shutdown().await;
    // Every change is in the event log, with who made it.
    let kinds: Vec<(&str, &str)> = events
        .list(&EventFilter::default())
        .iter()
        .map(|e| (e.kind.name(), e.component))
        .collect();
    for expected in [
        ("replica_started", "backend"),
        ("replica_ready", "backend"),
        ("settings_changed", "api"),
        ("scaled_up", "autoscaler"),
        ("config_rejected", "config"),
        ("scaled_down", "autoscaler"),
        ("replica_stopped", "backend"),
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected:?} missing from {kinds:?}"
        );
    }
}
