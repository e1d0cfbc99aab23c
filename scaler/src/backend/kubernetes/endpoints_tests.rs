//! Pods become replicas oldest-first, only when ready, and a watch restart keeps them.

use super::*;

fn ep(pod: &str, port: u16, ready: bool, terminating: bool) -> Endpoint {
    Endpoint {
        pod: pod.into(),
        addr: SocketAddr::from(([10, 0, 0, 1], port)),
        ready,
        terminating,
    }
}

#[test]
fn the_oldest_waiting_replica_takes_the_next_ready_pod() {
    let mut s = PodState::default();
    assert_eq!(s.add_replica(0), 1);
    assert_eq!(s.add_replica(1), 2);
    s.apply_slice("a", vec![ep("p1", 1, false, false)]);
    assert_eq!(
        s.pod_of(0),
        PodOf::Waiting,
        "a pod that is not ready is nobody's yet"
    );
    s.apply_slice(
        "a",
        vec![ep("p1", 1, false, false), ep("p2", 2, true, false)],
    );
    assert!(matches!(s.pod_of(0), PodOf::Ready(p, _) if p == "p2"));
    assert_eq!(s.pod_of(1), PodOf::Waiting);
    s.apply_slice(
        "a",
        vec![ep("p1", 1, true, false), ep("p2", 2, true, false)],
    );
    assert!(matches!(s.pod_of(1), PodOf::Ready(p, _) if p == "p1"));
}

#[test]
fn a_terminating_or_vanished_pod_has_ended_and_is_never_given_out() {
    let mut s = PodState::default();
    s.add_replica(0);
    s.apply_slice("a", vec![ep("p1", 1, true, true)]);
    assert_eq!(s.pod_of(0), PodOf::Waiting);
    s.apply_slice("a", vec![ep("p2", 2, true, false)]);
    assert!(matches!(s.pod_of(0), PodOf::Ready(..)));
    s.apply_slice("a", vec![ep("p2", 2, true, true)]);
    assert_eq!(s.pod_of(0), PodOf::Gone("p2".into()));
    s.delete_slice("a");
    assert_eq!(s.pod_of(0), PodOf::Gone("p2".into()));
}

#[test]
fn a_watch_restart_keeps_every_replica_its_pod() {
    let mut s = PodState::default();
    s.add_replica(0);
    s.add_replica(1);
    s.apply_slice("a", vec![ep("p1", 1, true, false)]);
    s.apply_slice("b", vec![ep("p2", 2, true, false)]);
    let before = (s.pod_of(0), s.pod_of(1));
    // The re-list after a 410 Gone: the same pods, the slices possibly regrouped.
    let mut relisted = BTreeMap::new();
    relisted.insert(
        "c".to_string(),
        vec![ep("p2", 2, true, false), ep("p1", 1, true, false)],
    );
    s.replace_slices(relisted);
    assert_eq!((s.pod_of(0), s.pod_of(1)), before);
}

#[test]
fn stopping_a_replica_names_its_pod_and_lowers_the_scale() {
    let mut s = PodState::default();
    s.add_replica(0);
    s.add_replica(1);
    s.apply_slice("a", vec![ep("p1", 1, true, false)]);
    assert_eq!(s.remove_replica(0), (Some("p1".into()), 1));
    assert_eq!(s.remove_replica(1), (None, 0));
    assert_eq!(s.pod_of(0), PodOf::Unknown);
    s.add_replica(2);
    s.undo_add(2);
    assert_eq!(s.desired, 0);
}

#[test]
fn a_replica_asked_for_after_its_pod_is_ready_takes_it_at_once() {
    // A follower in a cluster: the leader's pod is ready before this instance asks.
    let mut s = PodState::default();
    s.apply_slice("a", vec![ep("p1", 1, true, false)]);
    s.add_replica(0);
    assert!(matches!(s.pod_of(0), PodOf::Ready(p, _) if p == "p1"));
    s.add_replica(1);
    assert_eq!(s.pod_of(1), PodOf::Waiting);
}
