//! Offline: etcd unreachable at start, stopped during learning, and a
//! replica killed with behaviours still queued.

use std::time::Duration;

use telltale_core::profile::lifecycle::State;
use telltale_core::profile::EventType;
use telltale_fleet::{Error, Fleet, Status};

use crate::support::{behaviour_keys, config, dns, eventually, exec, free_port, learned, options, replica, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_does_not_block_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let a = tokio::time::timeout(
        Duration::from_secs(10),
        Fleet::connect(config(vec![nowhere], "offline"), options(dir.path(), "a")),
    )
    .await
    .expect("connect returns without etcd")
    .unwrap();
    let mut status = a.status_changes();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| matches!(s, Status::Disconnected { .. })))
        .await
        .expect("the status says disconnected")
        .unwrap();
    // Learning goes on: behaviours are queued durably.
    let p = a.publish(&learned("shop", 1_000, &[exec("nginx"), dns("a.example")])).await.unwrap();
    assert_eq!(p.queued, 2);
    assert_eq!(a.counters().queued, 2);
    // What needs etcd fails fast, naming the reason.
    assert!(matches!(a.load("shop").await, Err(Error::Unavailable { .. })));
    assert!(matches!(
        a.propose_transition("shop", EventType::Exec, State::Learning, State::Stable, 99_000).await,
        Err(Error::Unavailable { .. })
    ));
    assert!(a.flush().await.is_err(), "flush cannot reach etcd");
    assert_eq!(a.counters().queued, 2, "still queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_during_learning_and_restarted() {
    let mut etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "restart");
    let a = replica(&cfg, dir.path(), "a").await;
    let before: Vec<_> = (0..5).map(|i| dns(&format!("before-{i}.example"))).collect();
    a.publish(&learned("shop", 1_000, &before)).await.unwrap();
    a.flush().await.unwrap();

    etcd.members[0].kill();
    let mut status = a.status_changes();
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| matches!(s, Status::Disconnected { .. })))
        .await
        .expect("a notices etcd is gone")
        .unwrap();
    let during: Vec<_> = (0..5).map(|i| dns(&format!("during-{i}.example"))).collect();
    let p = a.publish(&learned("shop", 2_000, &during)).await.unwrap();
    assert_eq!(p.queued, 5);
    assert!(a.flush().await.is_err());
    assert_eq!(a.counters().queued, 5);

    etcd.members[0].start();
    etcd.members[0].wait_ready().await;
    // Nobody calls flush: the queue drains by itself once etcd is back.
    eventually(Duration::from_secs(30), "the queue drains", || a.counters().queued == 0).await;
    assert!(a.status().is_connected());
    let mut client = etcd.client().await;
    assert_eq!(behaviour_keys(&mut client, "restart", "shop").await.len(), 10);
    let b = replica(&cfg, dir.path(), "b").await;
    let snap = b.load("shop").await.unwrap();
    assert_eq!(snap.behaviours.len(), 10);
    assert_eq!(snap.clocks[&EventType::Dns].last_new_ms, Some(2_000), "the clock moved with the queued names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_survives_the_replica_being_killed() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let names: Vec<_> = (0..20).map(|i| dns(&format!("q{i}.example"))).collect();
    {
        let a = Fleet::connect(config(vec![nowhere], "killed"), options(dir.path(), "a")).await.unwrap();
        let p = a.publish(&learned("shop", 4_000, &names)).await.unwrap();
        assert_eq!(p.queued, 20);
        // Dropped without flush or close: the background tasks die with it.
    }
    // The same replica comes back (same queue file), now with etcd.
    let a = Fleet::connect(config(etcd.endpoints(), "killed"), options(dir.path(), "a")).await.unwrap();
    assert_eq!(a.counters().queued, 20, "the queue was reopened");
    eventually(Duration::from_secs(30), "the reopened queue drains", || a.counters().queued == 0).await;
    let mut client = etcd.client().await;
    assert_eq!(behaviour_keys(&mut client, "killed", "shop").await.len(), 20);
    let snap = a.load("shop").await.unwrap();
    assert!(snap.behaviours.iter().all(|b| b.writer == "a" && b.first_seen_ms == 4_000));
    // Publishing them again writes nothing.
    let p = a.publish(&learned("shop", 5_000, &names)).await.unwrap();
    assert_eq!((p.queued, p.known), (0, 20));
}
