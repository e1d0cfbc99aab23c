//! Why a workload's pods are not ready, in one line each, from their status (as `kubectl get
//! pods` and `kubectl describe` show it): Pending and unschedulable, CrashLoopBackOff,
//! image pull failures, running but failing the readiness probe.

use k8s_openapi::api::core::v1::Pod;

/// One line per pod that is not ready (and not being deleted); ready pods say nothing.
pub fn describe_unready(pods: &[Pod]) -> Vec<String> {
    pods.iter().filter_map(describe).collect()
}

/// Why this pod is not ready, or `None` if it is ready or going away.
pub fn describe(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    if condition("Ready").is_some_and(|c| c.status == "True") {
        return None;
    }
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| w.reason.is_some());
    let restarts: i32 = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    let detail = if let Some(w) = waiting {
        let reason = w.reason.as_deref().unwrap_or_default();
        match w.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_string(),
        }
    } else if let Some(c) = condition("PodScheduled").filter(|c| c.status == "False") {
        let reason = c.reason.as_deref().unwrap_or("not scheduled");
        match c.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{reason}: {m}"),
            _ => reason.to_string(),
        }
    } else if phase == "Running" {
        "running, not ready (readiness probe failing)".to_string()
    } else {
        status
            .reason
            .clone()
            .unwrap_or_else(|| "waiting".to_string())
    };
    let restarts = if restarts > 0 {
        format!(", {restarts} restart(s)")
    } else {
        String::new()
    };
    Some(format!("pod {name}: {phase} ({detail}{restarts})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "vllm-7d9f" },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn an_unschedulable_pod_says_why_the_scheduler_refused_it() {
        let p = pod(serde_json::json!({
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." }],
        }));
        assert_eq!(
            describe(&p).unwrap(),
            "pod vllm-7d9f: Pending (Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.)"
        );
    }

    #[test]
    fn a_crash_looping_container_names_the_back_off_and_the_restarts() {
        let p = pod(serde_json::json!({
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": "False" }],
            "containerStatuses": [{ "name": "vllm", "image": "vllm/vllm-openai", "imageID": "",
                "ready": false, "restartCount": 4,
                "state": { "waiting": { "reason": "CrashLoopBackOff",
                    "message": "back-off 1m20s restarting failed container=vllm" } } }],
        }));
        assert_eq!(
            describe(&p).unwrap(),
            "pod vllm-7d9f: Running (CrashLoopBackOff: back-off 1m20s restarting failed container=vllm, 4 restart(s))"
        );
    }

    #[test]
    fn ready_and_terminating_pods_say_nothing() {
        let ready = pod(serde_json::json!({
            "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }],
        }));
        assert_eq!(describe(&ready), None);
        let mut going: Pod = pod(serde_json::json!({ "phase": "Pending" }));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(describe(&going), None);
        let probing = pod(serde_json::json!({
            "phase": "Running", "conditions": [{ "type": "Ready", "status": "False" }],
        }));
        assert_eq!(
            describe(&probing).unwrap(),
            "pod vllm-7d9f: Running (running, not ready (readiness probe failing))"
        );
    }
}
