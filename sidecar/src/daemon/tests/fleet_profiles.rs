//! Fleet-wide profiles through the daemon, without root: two replicas of
//! one image (replayed events, real stores) sharing a real etcd.

use telltale_etcd_test::Cluster;
use telltale_fleet::EtcdConfig;

use super::*;
use crate::config::ProfileStore;

/// Start: a fleet-time of our own, far from the real clock.
const T0: i64 = 1_000_000;

fn etcd(endpoints: Vec<String>, cluster: &str) -> EtcdConfig {
    let mut e = EtcdConfig::new(endpoints);
    e.cluster = cluster.to_owned();
    e.connect_timeout = Duration::from_secs(1);
    e.request_timeout = Duration::from_secs(2);
    e
}

async fn replica(tag: &str, at_ms: i64, e: &EtcdConfig, name: &str, startup: Duration) -> Harness {
    let e = e.clone();
    let name = name.to_owned();
    Harness::open_with(tmp(tag), at_ms, move |cfg| {
        cfg.profiles.store = ProfileStore::Etcd;
        cfg.profiles.etcd = Some(e);
        cfg.profiles.replica_id = Some(name);
        cfg.profiles.startup_timeout = startup;
    })
    .await
}

impl Harness {
    /// Apply fleet updates until `cond` holds (at most 20 s).
    async fn until(&mut self, what: &str, mut cond: impl FnMut(&mut Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !cond(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
            if let Ok(u) = tokio::time::timeout(Duration::from_millis(100), fleet_update(&mut self.d.fleet)).await {
                self.d.on_fleet(u).unwrap();
            }
        }
    }

    fn states(&mut self) -> Vec<State> {
        let st = self.ask(|reply| Command::Status { image: Some("web".into()), reply });
        st.first().map(|p| p.types.iter().map(|t| t.state).collect()).unwrap_or_default()
    }

    fn stable(&mut self) -> bool {
        let s = self.states();
        s.len() == 4 && s.iter().all(|s| *s == State::Stable)
    }

    fn knows(&self, path: &str) -> bool {
        let o = telltale_core::profile::Observation::from_event(&read(path));
        self.d.detector.profile("web").is_some_and(|p| o.iter().all(|o| p.contains(o)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_profile_its_lifecycle_and_triage() {
    let cluster = Cluster::start(1).await;
    let e = etcd(cluster.endpoints(), "share");
    let mut a = replica("fleet-a", T0, &e, "web-a", Duration::from_secs(10)).await;
    a.events(vec![build::exec(WEB, app()), read("/etc/app.conf"), read("/usr/lib/libc.so.6")]);

    // Fleet time passes; the fleet (not the replica) makes every type stable.
    a.at(T0 + 20_000);
    a.d.tick().unwrap();
    assert!(a.states().iter().all(|s| *s == State::Learning), "no local transition with a fleet");
    a.until("replica A adopts the fleet's stable state", Harness::stable).await;

    // A new replica of the stable image starts stable, with what A learned,
    // and detects from its first event.
    let mut b = replica("fleet-b", T0 + 21_000, &e, "web-b", Duration::from_secs(10)).await;
    assert!(b.stable(), "a new pod of a stable image starts stable: {:?}", b.states());
    assert!(b.knows("/etc/app.conf"));
    b.events(vec![build::exec(WEB, app()), read("/etc/app.conf"), read("/usr/lib/libc.so.6")]);
    assert!(b.anomalies.try_recv().is_err(), "what the fleet learned is no anomaly in B");
    b.events(vec![read("/etc/shadow")]);
    let (_, anomaly) = &*b.anomalies.try_recv().expect("a new read in B is an anomaly");
    assert!(format!("{:?}", anomaly.observation).contains("/etc/shadow"));

    // Marked benign in B: every replica knows it, audited only in B.
    let signal = b.changes.try_recv().unwrap().1.signal.id.clone();
    let answer = b.ask(|reply| Command::UpdateSignal {
        id: signal,
        status: None,
        assignee: None,
        benign: Some(vec![]),
        principal: "carol".into(),
        reply,
    });
    assert_eq!(answer.unwrap().1, 1);
    a.until("the benign read reaches replica A", |a| a.knows("/etc/shadow")).await;
    a.at(T0 + 30_000);
    a.events(vec![read("/etc/shadow")]);
    assert!(a.anomalies.try_recv().is_err(), "marked benign in B: no anomaly in A");
    assert!(a.stable(), "a person's addition does not restart learning");
    let audit =
        |h: &Harness| h.store().audit_records().unwrap().iter().map(|r| r.action.action.clone()).collect::<Vec<_>>();
    assert_eq!(audit(&b), vec!["mark_benign".to_owned()]);
    assert!(audit(&a).is_empty(), "audited where it was done: {:?}", audit(&a));

    // What A stored locally is the fleet's too: the cache holds B's addition.
    let cached = Store::open_read_only(&a.dir).unwrap().load_profiles().unwrap();
    let obs = telltale_core::profile::Observation::from_event(&read("/etc/shadow"));
    assert!(cached.iter().any(|p| p.image == "web" && obs.iter().all(|o| p.contains(o))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_at_start_means_local_cache_then_catch_up() {
    let mut cluster = Cluster::start(1).await;
    let e = etcd(cluster.endpoints(), "offline");
    cluster.members[0].kill();

    // etcd is down: the replica starts anyway, learns locally, says so.
    let mut a = replica("fleet-off", T0, &e, "web-off", Duration::from_millis(300)).await;
    a.events(vec![build::exec(WEB, app()), read("/etc/app.conf")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        a.d.tick().unwrap();
        let status = a.store().meta_json(fleet::FLEET_STATUS).unwrap().expect("the fleet status is saved");
        if status["connection"] == "disconnected" {
            assert_eq!(status["store"], "etcd");
            assert!(status["queued"].as_u64().unwrap() >= 2, "learned behaviours wait in the queue: {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never reported disconnected: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // etcd returns: the queue drains and another replica sees A's behaviours.
    cluster.members[0].start();
    cluster.members[0].wait_ready().await;
    a.until("the fleet link reconnects", |a| a.d.fleet.as_ref().is_some_and(|f| f.view().status.is_connected())).await;
    a.until("the queue drains", |a| a.d.fleet.as_ref().is_some_and(|f| f.view().counters.queued == 0)).await;
    let b = replica("fleet-on", T0 + 1_000, &e, "web-on", Duration::from_secs(10)).await;
    assert!(b.knows("/etc/app.conf"), "A's offline learning reached the fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_learning_different_halves_become_stable_with_the_union() {
    let cluster = Cluster::start(1).await;
    let e = etcd(cluster.endpoints(), "halves");
    let mut a = replica("fleet-half-a", T0, &e, "web-ha", Duration::from_secs(10)).await;
    let mut b = replica("fleet-half-b", T0, &e, "web-hb", Duration::from_secs(10)).await;
    a.events(vec![build::exec(WEB, app()), read("/etc/a.conf")]);
    b.events(vec![build::exec(WEB, app()), read("/etc/b.conf")]);
    a.until("A has B's half", |a| a.knows("/etc/b.conf")).await;
    b.until("B has A's half", |b| b.knows("/etc/a.conf")).await;

    a.at(T0 + 20_000);
    b.at(T0 + 20_000);
    a.until("A stable", Harness::stable).await;
    b.until("B stable", Harness::stable).await;
    a.events(vec![read("/etc/a.conf"), read("/etc/b.conf")]);
    b.events(vec![read("/etc/a.conf"), read("/etc/b.conf")]);
    assert!(a.anomalies.try_recv().is_err(), "B's half is no anomaly in A");
    assert!(b.anomalies.try_recv().is_err(), "A's half is no anomaly in B");
    b.events(vec![read("/etc/c.conf")]);
    assert!(b.anomalies.try_recv().is_ok(), "outside the union: an anomaly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviours_queued_by_a_killed_replica_reach_the_fleet_after_its_restart() {
    let mut cluster = Cluster::start(1).await;
    let e = etcd(cluster.endpoints(), "killed");
    cluster.members[0].kill();
    let dir_tag = "fleet-killed";
    let mut a = replica(dir_tag, T0, &e, "web-k", Duration::from_millis(200)).await;
    a.events(vec![build::exec(WEB, app()), read("/etc/queued.conf")]);
    a.until("the learned behaviours are queued", |a| a.d.fleet.as_ref().is_some_and(|f| f.view().counters.queued >= 2))
        .await;
    // kill -9: the daemon and its fleet tasks are gone, nothing flushed.
    let dir = a.dir.clone();
    drop(a);

    cluster.members[0].start();
    cluster.members[0].wait_ready().await;
    // The restarted replica (same data dir) drains what it had queued.
    let mut again = Harness::open_with(dir, T0 + 1_000, |cfg| {
        cfg.profiles.store = ProfileStore::Etcd;
        cfg.profiles.etcd = Some(e.clone());
        cfg.profiles.replica_id = Some("web-k".into());
    })
    .await;
    again.until("the queue drains", |h| h.d.fleet.as_ref().is_some_and(|f| f.view().counters.queued == 0)).await;
    let other = replica("fleet-killed-other", T0 + 2_000, &e, "web-k2", Duration::from_secs(10)).await;
    assert!(other.knows("/etc/queued.conf"), "what the killed replica had queued reached the fleet");
}
