//! The watch: updates reach other replicas; an interruption resumes from
//! the last revision; a compacted revision means a full resync, said out
//! loud.

use std::collections::BTreeSet;
use std::time::Duration;

use telltale_core::profile::{Behaviour, EventType};
use telltale_fleet::{Fleet, ResyncReason, Status, Update};

use crate::support::{config, dns, eventually, exec, learned, replica, wait_update, Cluster, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviours_and_clocks_reach_other_replicas() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "updates");
    let a = replica(&cfg, dir.path(), "a").await;
    let b = replica(&cfg, dir.path(), "b").await;
    let mut updates = a.updates();
    b.publish(&learned("shop", 7_000, &[exec("node"), dns("payments.example.com")])).await.unwrap();
    let mut names = BTreeSet::new();
    while names.len() < 2 {
        let u = wait_update(&mut updates, Duration::from_secs(10), |u| matches!(u, Update::Behaviour { .. })).await;
        if let Update::Behaviour { image, behaviour, revision } = u {
            assert_eq!(image, "shop");
            assert_eq!(behaviour.writer, "b");
            assert_eq!(behaviour.first_seen_ms, 7_000);
            assert!(revision > 0);
            names.insert(format!("{:?}", behaviour.observation.behaviour));
        }
    }
    let u = wait_update(&mut updates, Duration::from_secs(10), |u| {
        matches!(u, Update::Clock { event_type: EventType::Dns, .. })
    })
    .await;
    let Update::Clock { clock, .. } = u else { unreachable!() };
    assert_eq!((clock.started_ms, clock.last_new_ms), (7_000, Some(7_000)));
    assert_eq!(a.counters().write_txns, 0, "a only listened");
}

/// What `cut_write_reconnect` leaves running.
struct Scene {
    a: Fleet,
    got: Vec<Update>,
    etcd: Cluster,
    dir: tempfile::TempDir,
    _proxy: Proxy,
}

/// Cut replica `a` off behind a proxy, let `b` write 50 names, maybe
/// compact, reconnect `a` and collect its updates until it has them all.
async fn cut_write_reconnect(compact: bool) -> Scene {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(etcd.endpoints()[0].trim_start_matches("http://").to_owned()).await;
    let a = replica(&config(vec![proxy.endpoint()], "resync"), dir.path(), "a").await;
    let b = replica(&config(etcd.endpoints(), "resync"), dir.path(), "b").await;
    let mut updates = a.updates();
    b.publish(&learned("shop", 1_000, &[exec("node")])).await.unwrap();
    b.flush().await.unwrap();
    wait_update(&mut updates, Duration::from_secs(10), |u| matches!(u, Update::Behaviour { .. })).await;

    proxy.cut();
    let mut status = a.status_changes();
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| matches!(s, Status::Disconnected { .. })))
        .await
        .expect("a notices it is cut off")
        .unwrap();
    let missed: Vec<_> = (0..50).map(|i| dns(&format!("n{i}.example"))).collect();
    b.publish(&learned("shop", 2_000, &missed)).await.unwrap();
    b.flush().await.unwrap();
    if compact {
        let mut client = etcd.client().await;
        let rev = client.get("/", None).await.unwrap().header().unwrap().revision();
        client.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    }
    proxy.restore();
    assert!(a.wait_connected(Duration::from_secs(30)).await, "a reconnects: {:?}", a.status());

    // Everything b wrote while a was away arrives, then (if any) the notice.
    let mut got = Vec::new();
    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.len() < 50 || (compact && !got.iter().any(|u| matches!(u, Update::Resynced { .. }))) {
            let u = updates.recv().await.expect("stream open");
            if let Update::Behaviour { behaviour, .. } = &u {
                if let Behaviour::Dns { name, .. } = &behaviour.observation.behaviour {
                    seen.insert(name.clone());
                }
            }
            got.push(u);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a got only {} of the 50 names: {got:?}", seen.len()));
    Scene { a, got, etcd, dir, _proxy: proxy }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_watch_resumes_from_its_last_revision() {
    let Scene { a, got, .. } = cut_write_reconnect(false).await;
    assert!(!got.iter().any(|u| matches!(u, Update::Resynced { .. })), "no resync needed: {got:?}");
    let c = a.counters();
    assert_eq!(c.resyncs, 0);
    assert!(c.reconnects >= 1, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_means_a_full_resync_not_a_gap() {
    let Scene { a, got, etcd, dir, _proxy } = cut_write_reconnect(true).await;
    let notice = got.iter().rev().find(|u| matches!(u, Update::Resynced { .. })).cloned();
    match notice {
        Some(Update::Resynced { reason, missed, revision }) => {
            assert_eq!(reason, ResyncReason::Compacted);
            assert!(missed >= 50, "the 50 names (and the DNS clock) were missed: {missed}");
            assert!(revision > 0);
        }
        other => panic!("no resync notice: {other:?}"),
    }
    let pos = got.iter().position(|u| matches!(u, Update::Resynced { .. })).unwrap();
    let before = got[..pos].iter().filter(|u| matches!(u, Update::Behaviour { .. })).count();
    assert!(before >= 50, "the missed behaviours come before the notice ({before})");
    assert_eq!(a.counters().resyncs, 1);

    // And the watch goes on from the resync's revision.
    let b = replica(&config(etcd.endpoints(), "resync"), dir.path(), "b2").await;
    let mut updates = a.updates();
    b.publish(&learned("shop", 3_000, &[dns("after.example")])).await.unwrap();
    b.flush().await.unwrap();
    let u = wait_update(&mut updates, Duration::from_secs(10), |u| matches!(u, Update::Behaviour { .. })).await;
    assert!(matches!(u, Update::Behaviour { behaviour, .. } if behaviour.writer == "b2"));
    eventually(Duration::from_secs(5), "status connected", || a.status().is_connected()).await;
}
