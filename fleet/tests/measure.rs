//! Costs, printed for BENCHMARKS (run with `--nocapture`): etcd writes per
//! new behaviour, resync time of a 10,000-behaviour profile, etcd's
//! database size. The assertions are on counts, never on time.

use std::time::{Duration, Instant};

use telltale_fleet::{Fleet, NewBehaviour, ResyncReason, Update};

use crate::support::{config, dns, learned, options, wait_update, Cluster};

const N: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_cost_and_resync_of_ten_thousand_behaviours() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "measure");
    let a = Fleet::connect(cfg.clone(), options(dir.path(), "a")).await.unwrap();
    assert!(a.wait_connected(Duration::from_secs(20)).await);
    let names: Vec<_> = (0..N).map(|i| dns(&format!("host-{i:05}.svc.cluster.local"))).collect();

    // Learned one after the other (1 ms apart), published in one call.
    let items: Vec<NewBehaviour> = names
        .iter()
        .enumerate()
        .map(|(i, o)| NewBehaviour {
            image: "big".to_owned(),
            tag: "v1".to_owned(),
            observation: o.clone(),
            seen_ms: 1_000 + i as i64,
            manual: false,
        })
        .collect();
    let t = Instant::now();
    let p = a.publish(&items).await.unwrap();
    assert_eq!(p.queued, N as u64);
    let queued_in = t.elapsed();
    a.flush().await.unwrap();
    let written_in = t.elapsed();
    let c = a.counters();
    assert_eq!(c.stored, N as u64);
    let batches = N.div_ceil(cfg.batch_size) as u64;
    // Per full batch: one behaviour transaction and one clock transaction
    // (each batch moves the DNS clock's "last new"; the first creates the
    // four clocks).
    assert_eq!(c.write_txns, 2 * batches, "{c:?}");
    assert_eq!(c.keys_written, N as u64 + 4 + (batches - 1), "{c:?}");
    let writes_per_behaviour = c.write_txns as f64 / N as f64;

    // Known behaviour: nothing written.
    let p = a.publish(&learned("big", 2_000, &names)).await.unwrap();
    assert_eq!((p.queued, p.known), (0, N as u64));
    a.flush().await.unwrap();
    assert_eq!(a.counters().write_txns, c.write_txns);

    // A new replica reads the whole profile (its start-up resync).
    let t = Instant::now();
    let b = Fleet::connect(cfg.clone(), options(dir.path(), "b")).await.unwrap();
    let mut updates = b.updates();
    let u = wait_update(&mut updates, Duration::from_secs(60), |u| matches!(u, Update::Resynced { .. })).await;
    let resync_in = t.elapsed();
    match u {
        Update::Resynced { reason, missed, .. } => {
            assert_eq!(reason, ResyncReason::Start);
            assert_eq!(missed, N as u64 + 4, "every behaviour and the 4 clocks");
        }
        other => panic!("{other:?}"),
    }
    let t = Instant::now();
    let snap = b.load("big").await.unwrap();
    let load_in = t.elapsed();
    assert_eq!(snap.behaviours.len(), N);
    let t = Instant::now();
    let profile = snap.to_profile(0);
    let convert_in = t.elapsed();
    assert_eq!(profile.behaviour_count(), N + 1, "the names and their process node");
    let db = a.db_size().await.unwrap();

    println!("fleet measure: {N} new behaviours queued in {queued_in:?}, written in {written_in:?}");
    println!(
        "fleet measure: etcd write transactions {} ({writes_per_behaviour:.4} per new behaviour), keys written {}, batch size {}",
        c.write_txns, c.keys_written, cfg.batch_size
    );
    println!("fleet measure: republishing {N} known behaviours: 0 writes");
    println!(
        "fleet measure: start-up resync of {N} behaviours {resync_in:?}; load() {load_in:?}; to_profile {convert_in:?}"
    );
    println!("fleet measure: etcd dbSize {db} bytes ({:.0} bytes per behaviour)", db as f64 / N as f64);
}

/// Replicas that receive each behaviour.
const OTHERS: usize = 10;
/// Behaviours timed, one after the other.
const SAMPLES: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_of_a_new_behaviour_to_ten_other_replicas() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // The production default batching (the other tests use 20 ms).
    let mut cfg = config(etcd.endpoints(), "converge");
    cfg.batch_delay = telltale_fleet::EtcdConfig::new(["http://x:1"]).batch_delay;
    let source = crate::support::replica(&cfg, dir.path(), "source").await;
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let f = crate::support::replica(&cfg, dir.path(), &format!("other-{i}")).await;
        let updates = f.updates();
        others.push((f, updates));
    }
    let mut latencies = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        // Each one alone: the writer is idle (its clock transaction for the
        // previous behaviour is done), so the batch delay is paid in full.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let o = dns(&format!("new-{i:03}.example.com"));
        let t = Instant::now();
        let p = source.publish(&learned("conv", 1_000 + i as i64, std::slice::from_ref(&o))).await.unwrap();
        assert_eq!(p.queued, 1);
        // Until every other replica has it (the slowest one counts).
        for (_, updates) in &mut others {
            let want = o.clone();
            wait_update(
                updates,
                Duration::from_secs(10),
                |u| matches!(u, Update::Behaviour { behaviour, .. } if behaviour.observation == want),
            )
            .await;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "fleet measure: a new behaviour in all {OTHERS} other replicas: p50 {:?}, p99 {:?}, max {:?} ({SAMPLES} behaviours one at a time, batch_delay {:?})",
        pct(50),
        pct(99),
        latencies[latencies.len() - 1],
        cfg.batch_delay
    );
    // Counted, not timed: each behaviour reached every replica once.
    assert_eq!(latencies.len(), SAMPLES);
    for (f, _) in others {
        f.close().await;
    }
}
