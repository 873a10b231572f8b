//! A 3-member etcd cluster loses its leader: writes and watches go on.

use std::time::{Duration, Instant};

use telltale_fleet::Update;

use crate::support::{config, dns, learned, replica, wait_update, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_watches_survive_losing_the_leader() {
    let mut etcd = Cluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "failover");
    let a = replica(&cfg, dir.path(), "a").await;
    let b = replica(&cfg, dir.path(), "b").await;
    let mut updates = a.updates();
    b.publish(&learned("shop", 1_000, &[dns("before.example")])).await.unwrap();
    b.flush().await.unwrap();
    wait_update(&mut updates, Duration::from_secs(10), |u| matches!(u, Update::Behaviour { .. })).await;

    // Kill the leader.
    let leader = etcd.members[0].leader_id().await;
    let mut killed = None;
    for (i, m) in etcd.members.iter().enumerate() {
        if m.member_id().await == leader {
            killed = Some(i);
        }
    }
    let killed = killed.expect("one member leads");
    etcd.members[killed].kill();

    // b writes; the batch may wait for the election, never is it lost.
    b.publish(&learned("shop", 2_000, &[dns("after.example")])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = b.flush().await {
        assert!(Instant::now() < deadline, "writes do not resume after failover: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(b.counters().queued, 0);
    // a's watch moves to a surviving member and delivers it.
    let u = wait_update(
        &mut updates,
        Duration::from_secs(30),
        |u| matches!(u, Update::Behaviour { behaviour, .. } if behaviour.first_seen_ms == 2_000),
    )
    .await;
    assert!(matches!(u, Update::Behaviour { image, .. } if image == "shop"));
    assert!(a.wait_connected(Duration::from_secs(30)).await, "{:?}", a.status());
    let snap = a.load("shop").await.unwrap();
    assert_eq!(snap.behaviours.len(), 2);
}
