//! Publishing: grow-only keys, stored once under concurrency, known
//! behaviour writes nothing, batches.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use telltale_core::profile::{EventType, Observation};
use telltale_fleet::{behaviour_hash, split_access, EtcdConfig, MAX_BATCH_SIZE};

use crate::support::{behaviour_keys, config, dns, eventually, exec, file, learned, replica, Cluster};

fn workload(n: usize) -> Vec<Observation> {
    (0..n)
        .map(|i| match i % 3 {
            0 => exec(&format!("tool-{i}")),
            1 => file(&format!("/srv/data/f{i}"), 1 | 2), // read + write: two keys
            _ => dns(&format!("svc-{i}.example.com")),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_replicas_store_each_behaviour_once() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "concurrent");
    let names = ["r0", "r1", "r2", "r3"];
    let mut fleets = Vec::new();
    for n in names {
        fleets.push(Arc::new(replica(&cfg, dir.path(), n).await));
    }
    let observations = workload(150);
    let expected: BTreeSet<String> = observations.iter().flat_map(split_access).map(|o| behaviour_hash(&o)).collect();
    assert_eq!(expected.len(), 200, "150 observations, 50 of them with two access bits");

    // All four learn the same behaviours at the same moment.
    let batch = Arc::new(learned("webapp", 1_000, &observations));
    let mut tasks = tokio::task::JoinSet::new();
    for f in &fleets {
        let (f, batch) = (Arc::clone(f), Arc::clone(&batch));
        tasks.spawn(async move {
            let p = f.publish(&batch).await.expect("publish");
            assert_eq!(p.queued + p.known, 200);
            f.flush().await.expect("flush");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("replica task");
    }

    let mut client = etcd.client().await;
    let keys = behaviour_keys(&mut client, "concurrent", "webapp").await;
    let stored: BTreeSet<String> = keys.iter().map(|(k, _)| k.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(stored, expected, "one key per behaviour and access bit");
    assert!(keys.iter().all(|(_, version)| *version == 1), "no key was ever overwritten: {keys:?}");
    let counters: Vec<_> = fleets.iter().map(|f| f.counters()).collect();
    assert_eq!(counters.iter().map(|c| c.stored).sum::<u64>(), 200, "stored once in total: {counters:?}");
    let total_handed: u64 = counters.iter().map(|c| c.stored + c.stored_elsewhere + c.skipped_known).sum();
    assert_eq!(total_handed, 800, "every replica accounts for every behaviour: {counters:?}");

    // Every replica loads the same profile.
    for f in &fleets {
        let snap = f.load("webapp").await.expect("load");
        assert_eq!(snap.behaviours.len(), 200);
        let profile = snap.to_profile(0);
        for o in &observations {
            assert!(profile.contains(o), "{o:?} missing from the profile {} loads", f.replica_id());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeating_known_behaviour_writes_nothing() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "repeat");
    let a = replica(&cfg, dir.path(), "a").await;
    let b = replica(&cfg, dir.path(), "b").await;

    let first = learned("api", 5_000, &[exec("curl"), dns("db.internal"), file("/etc/hosts", 1)]);
    let p = a.publish(&first).await.unwrap();
    assert_eq!((p.queued, p.known), (3, 0));
    a.flush().await.unwrap();
    let after_first = a.counters();
    assert_eq!(after_first.write_txns, 2, "one behaviour batch, one clock batch: {after_first:?}");
    assert_eq!(after_first.keys_written, 3 + 4, "3 behaviours, 4 clocks created: {after_first:?}");

    // The same behaviours again, from the same replica: nothing to write.
    let p =
        a.publish(&learned("api", 9_000, &[exec("curl"), dns("db.internal"), file("/etc/hosts", 1)])).await.unwrap();
    assert_eq!((p.queued, p.known), (0, 3));
    a.flush().await.unwrap();
    assert_eq!(a.counters().write_txns, after_first.write_txns);
    assert_eq!(a.counters().keys_written, after_first.keys_written);

    // Another replica learns them through the watch and writes nothing either.
    // The clock is written after the behaviours: once b has it, b has them.
    eventually(Duration::from_secs(10), "b sees a's behaviours", || {
        b.clock("api", EventType::Dns).is_some_and(|c| c.last_new_ms == Some(5_000))
    })
    .await;
    let p = b.publish(&first).await.unwrap();
    assert_eq!((p.queued, p.known), (0, 3), "b's view of the fleet already has them");
    b.flush().await.unwrap();
    assert_eq!(b.counters().write_txns, 0);
    assert_eq!(b.counters().skipped_known, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_modes_are_a_union_of_keys() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "access");
    let a = replica(&cfg, dir.path(), "a").await;
    let b = replica(&cfg, dir.path(), "b").await;
    let (la, lb) = (
        learned("db", 1_000, &[exec("pg"), file("/var/lib/pg/data", 1)]),
        learned("db", 1_001, &[exec("pg"), file("/var/lib/pg/data", 2 | 4)]),
    );
    let (ra, rb) = tokio::join!(a.publish(&la), b.publish(&lb));
    ra.unwrap();
    rb.unwrap();
    let (fa, fb) = tokio::join!(a.flush(), b.flush());
    fa.unwrap();
    fb.unwrap();
    let mut client = etcd.client().await;
    let keys = behaviour_keys(&mut client, "access", "db").await;
    assert_eq!(keys.len(), 1 + 3, "exec once, one key per access bit");
    let profile = a.load("db").await.unwrap().to_profile(0);
    assert!(profile.contains(&file("/var/lib/pg/data", 1 | 2 | 4)), "read, write and create are all known");
    assert!(!profile.contains(&file("/var/lib/pg/data", 8)), "truncate was never seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_one_transaction() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = EtcdConfig {
        batch_size: MAX_BATCH_SIZE,
        batch_delay: Duration::from_secs(5),
        ..config(etcd.endpoints(), "batch")
    };
    let a = replica(&cfg, dir.path(), "a").await;
    let names: Vec<Observation> = (0..MAX_BATCH_SIZE).map(|i| dns(&format!("n{i}.example"))).collect();
    a.publish(&learned("batch", 1_000, &names)).await.unwrap();
    a.flush().await.unwrap();
    let c = a.counters();
    assert_eq!(c.stored, MAX_BATCH_SIZE as u64);
    assert_eq!(c.write_txns, 2, "127 behaviours in one transaction (etcd's default --max-txn-ops): {c:?}");
    let mut client = etcd.client().await;
    assert_eq!(behaviour_keys(&mut client, "batch", "batch").await.len(), MAX_BATCH_SIZE);
}
