//! Unit tests of the pool: slots, selection, the FIFO and the retry line.

use super::*;
use crate::replica::ReplicaState;
use std::time::Duration;
use tokio::sync::mpsc;

fn ready(id: &str) -> Arc<Replica> {
    let r = Arc::new(Replica::new(id.into(), "127.0.0.1:1".parse().unwrap()));
    r.set_state(ReplicaState::Ready);
    r
}

#[test]
fn slots_respect_the_replica_limit_and_are_returned_on_drop() {
    let pool = ReplicaPool::new("d", 2);
    pool.add_replica(ready("a"));
    let s1 = pool.try_acquire().unwrap();
    let s2 = pool.try_acquire().unwrap();
    assert!(pool.try_acquire().is_none());
    assert_eq!(pool.in_flight(), 2);
    drop(s1);
    assert_eq!(pool.in_flight(), 1);
    drop(s2);
    assert_eq!(pool.in_flight(), 0);
    assert_eq!(pool.replicas()[0].in_flight(), 0);
}

#[test]
fn p2c_spreads_load_and_skips_unready_replicas() {
    let pool = ReplicaPool::new("d", 0);
    pool.add_replica(ready("a"));
    pool.add_replica(ready("b"));
    let starting = Arc::new(Replica::new("c".into(), "127.0.0.1:1".parse().unwrap()));
    pool.add_replica(starting.clone());
    let slots: Vec<_> = (0..10).map(|_| pool.try_acquire().unwrap()).collect();
    let reps = pool.replicas();
    assert_eq!(reps[0].in_flight() + reps[1].in_flight(), 10);
    assert!(reps[0].in_flight().abs_diff(reps[1].in_flight()) <= 1);
    assert_eq!(starting.in_flight(), 0);
    drop(slots);
}

#[tokio::test]
async fn waiters_are_served_in_order_when_capacity_appears() {
    let pool = ReplicaPool::new("d", 1);
    tokio::spawn(pool.clone().run_dispatcher());
    let replica = Arc::new(Replica::new("a".into(), "127.0.0.1:1".parse().unwrap()));
    pool.add_replica(replica.clone());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for i in 0..5 {
        let p = pool.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let got = p.acquire(Duration::from_secs(10), 100).await.unwrap();
            assert!(got.queued.is_some());
            done_tx.send(i).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(got);
        });
        while pool.waiting() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    replica.set_state(ReplicaState::Ready);
    pool.notify_capacity();
    let mut order = vec![];
    for _ in 0..5 {
        order.push(done_rx.recv().await.unwrap());
    }
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn full_queue_and_timeout_are_reported_and_counters_return_to_zero() {
    let pool = ReplicaPool::new("d", 1);
    tokio::spawn(pool.clone().run_dispatcher());
    let err = pool.acquire(Duration::from_millis(20), 5).await.err();
    assert_eq!(err, Some(AcquireError::Timeout(Duration::from_millis(20))));
    let err = pool.acquire(Duration::from_millis(20), 0).await.err();
    assert_eq!(err, Some(AcquireError::QueueFull { waiting: 0 }));
    assert_eq!(pool.waiting(), 0);
}

#[tokio::test]
async fn a_retried_request_goes_first_and_never_to_the_ejected_replica() {
    let pool = ReplicaPool::new("d", 1);
    tokio::spawn(pool.clone().run_dispatcher());
    let bad = ready("bad");
    pool.add_replica(bad.clone());
    let good = Arc::new(Replica::new("good".into(), "127.0.0.1:1".parse().unwrap()));
    pool.add_replica(good.clone());
    let hold = pool.try_acquire().unwrap();
    assert_eq!(hold.replica().id, "bad");
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for i in 0..2 {
        let (p, done_tx) = (pool.clone(), done_tx.clone());
        tokio::spawn(async move {
            let got = p.acquire(Duration::from_secs(10), 100).await.unwrap();
            done_tx.send(format!("{i}")).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(got);
        });
        while pool.waiting() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    // The request on `bad` could not connect: `bad` is ejected, the request goes back in line.
    assert!(bad.eject());
    let (p, retry_tx) = (pool.clone(), done_tx.clone());
    tokio::spawn(async move {
        let got = p.acquire_again(Duration::from_secs(10)).await.unwrap();
        retry_tx
            .send(format!("retry@{}", got.slot.replica().id))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(got);
    });
    while pool.waiting() < 3 {
        tokio::task::yield_now().await;
    }
    drop(hold);
    good.set_state(ReplicaState::Ready);
    pool.notify_capacity();
    let mut order = vec![];
    for _ in 0..3 {
        order.push(done_rx.recv().await.unwrap());
    }
    assert_eq!(
        order,
        ["retry@good", "0", "1"],
        "the retried request keeps its place"
    );
    assert_eq!(pool.waiting(), 0);
}

#[test]
fn ejected_replicas_get_no_requests() {
    let pool = ReplicaPool::new("d", 0);
    let a = ready("a");
    pool.add_replica(a.clone());
    assert!(a.eject());
    assert!(!pool.has_ready());
    assert!(pool.try_acquire().is_none());
    a.readmit();
    assert!(pool.try_acquire().is_some());
}

#[tokio::test]
async fn one_client_cannot_fill_the_queue_past_its_share() {
    let pool = ReplicaPool::new("m", 1);
    pool.set_max_waiting_per_client(2);
    let ticket = |client| Ticket {
        client,
        ..Ticket::default()
    };
    let wait = Duration::from_secs(5);
    let (a1, a2) = (
        tokio::spawn({
            let p = pool.clone();
            async move { p.acquire_for(wait, 100, ticket(7)).await.map(|_| ()) }
        }),
        tokio::spawn({
            let p = pool.clone();
            async move { p.acquire_for(wait, 100, ticket(7)).await.map(|_| ()) }
        }),
    );
    while pool.waiting() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Its third is refused; another client, and the shared one, still get in line.
    assert_eq!(
        pool.acquire_for(wait, 100, ticket(7)).await.err(),
        Some(AcquireError::ClientShareFull { waiting: 2 })
    );
    let other = tokio::spawn({
        let p = pool.clone();
        async move {
            p.acquire_for(Duration::from_millis(200), 100, ticket(9))
                .await
                .map(|_| ())
        }
    });
    let shared = pool
        .acquire_for(Duration::from_millis(200), 100, Ticket::default())
        .await;
    assert_eq!(
        shared.err(),
        Some(AcquireError::Timeout(Duration::from_millis(200)))
    );
    assert_eq!(
        other.await.unwrap().err(),
        Some(AcquireError::Timeout(Duration::from_millis(200)))
    );
    a1.abort();
    a2.abort();
    let _ = (a1.await, a2.await);
    // Their places are given back: the client may wait again.
    assert!(pool.per_client.lock().unwrap().is_empty());
    assert_eq!(pool.waiting(), 0);
}
