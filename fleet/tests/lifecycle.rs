//! The lifecycle on fleet time: one transition, written once, adopted by
//! every replica, loaded by new ones. Durations come from
//! `support::learning()` (min 10 s, quiet 5 s, max 60 s); times are
//! passed explicitly, nothing sleeps for them.

use std::sync::Arc;
use std::time::Duration;

use telltale_core::profile::lifecycle::State;
use telltale_core::profile::{EventType, Verdict};
use telltale_fleet::{Fleet, TransitionOutcome, Update};

use crate::support::{config, dns, eventually, exec, learned, replica, wait_update, Cluster};

const T0: i64 = 1_800_000_000_000;

fn state(f: &Fleet, t: EventType) -> Option<State> {
    f.clock("shop", t).map(|c| c.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transition_is_written_once_and_adopted_by_every_replica() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "once");
    let a = Arc::new(replica(&cfg, dir.path(), "a").await);
    let b = Arc::new(replica(&cfg, dir.path(), "b").await);
    let mut b_updates = b.updates();

    a.publish(&learned("shop", T0, &[exec("nginx")])).await.unwrap();
    a.flush().await.unwrap();
    let clock = a.clock("shop", EventType::Exec).expect("a wrote the exec clock");
    assert_eq!((clock.started_ms, clock.last_new_ms, clock.state), (T0, Some(T0), State::Learning));
    eventually(Duration::from_secs(10), "b sees the clocks", || {
        EventType::ALL.iter().all(|t| state(&b, *t) == Some(State::Learning))
    })
    .await;

    // Not due yet: min_duration (10 s) has not passed.
    assert!(a.tick(T0 + 9_000).await.unwrap().is_empty());
    assert!(b.tick(T0 + 9_000).await.unwrap().is_empty());

    // Both replicas find every type due at the same moment and race.
    let at = T0 + 10_000;
    let (ta, tb) = tokio::join!(
        {
            let a = Arc::clone(&a);
            async move { a.tick(at).await.unwrap() }
        },
        {
            let b = Arc::clone(&b);
            async move { b.tick(at).await.unwrap() }
        }
    );
    for t in EventType::ALL {
        let written = ta
            .iter()
            .chain(&tb)
            .filter(|x| x.event_type == t && matches!(x.outcome, TransitionOutcome::Written(_)))
            .count();
        assert_eq!(written, 1, "{t:?} written exactly once: a {ta:?} b {tb:?}");
    }
    assert_eq!(a.counters().transitions_written + b.counters().transitions_written, 4);
    for f in [&a, &b] {
        for t in EventType::ALL {
            let c = f.clock("shop", t).unwrap();
            assert_eq!((c.state, c.state_since_ms), (State::Stable, at), "{} {t:?}", f.replica_id());
        }
    }
    // b hears of the exec transition whoever wrote it.
    let u = wait_update(
        &mut b_updates,
        Duration::from_secs(10),
        |u| matches!(u, Update::Clock { event_type: EventType::Exec, clock, .. } if clock.state == State::Stable),
    )
    .await;
    assert!(matches!(u, Update::Clock { .. }));
    // A late proposal adopts the stored state.
    let late =
        a.propose_transition("shop", EventType::Exec, State::Learning, State::Unstable, T0 + 70_000).await.unwrap();
    assert_eq!(late, TransitionOutcome::Adopted(a.clock("shop", EventType::Exec).unwrap()));

    // A new replica of the already-stable image loads stable.
    let c = replica(&cfg, dir.path(), "c").await;
    let snap = c.load("shop").await.unwrap();
    assert!(snap.clocks.values().all(|c| c.state == State::Stable), "{:?}", snap.clocks);
    let mut profile = snap.to_profile(T0 + 20_000);
    assert_eq!(profile.clock(EventType::Exec).state, State::Stable);
    assert_eq!(profile.clock(EventType::Exec).behaviours, 1);
    assert_eq!(profile.observe(&exec("nginx"), "v1", T0 + 20_000, false), Verdict::Known);
    assert_eq!(profile.observe(&exec("xmrig"), "v1", T0 + 20_000, false), Verdict::Anomaly);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_behaviour_elsewhere_keeps_a_type_learning() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "defer");
    let a = replica(&cfg, dir.path(), "a").await;
    let b = replica(&cfg, dir.path(), "b").await;
    a.publish(&learned("shop", T0, &[exec("nginx"), dns("api.example.com")])).await.unwrap();
    a.flush().await.unwrap();
    // b learns a new name at T0 + 8 s; a proposes "stable" for DNS at
    // T0 + 10 s right away, whether or not its watch has caught up.
    b.publish(&learned("shop", T0 + 8_000, &[dns("exfil.example.net")])).await.unwrap();
    b.flush().await.unwrap();
    let out = a.propose_transition("shop", EventType::Dns, State::Learning, State::Stable, T0 + 10_000).await.unwrap();
    match out {
        TransitionOutcome::NotDue(c) => assert_eq!(c.last_new_ms, Some(T0 + 8_000)),
        other => panic!("DNS must stay learning (quiet only 2 s): {other:?}"),
    }
    // Exec had no new behaviour: it may settle.
    let exec_out =
        a.propose_transition("shop", EventType::Exec, State::Learning, State::Stable, T0 + 10_000).await.unwrap();
    assert!(matches!(exec_out, TransitionOutcome::Written(_)), "{exec_out:?}");
    // Quiet 5 s after b's name: DNS settles.
    let later =
        a.propose_transition("shop", EventType::Dns, State::Learning, State::Stable, T0 + 13_000).await.unwrap();
    assert!(matches!(later, TransitionOutcome::Written(c) if c.state == State::Stable), "{later:?}");
    eventually(Duration::from_secs(10), "b adopts stable DNS", || state(&b, EventType::Dns) == Some(State::Stable))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_that_never_settles_becomes_unstable_once() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(etcd.endpoints(), "noisy");
    let a = replica(&cfg, dir.path(), "a").await;
    let b = replica(&cfg, dir.path(), "b").await;
    // New DNS names every 4 s (quiet period 5 s) from both replicas in turn.
    for (i, t) in (0..=60_000).step_by(4_000).enumerate() {
        let f = if i % 2 == 0 { &a } else { &b };
        f.publish(&learned("shop", T0 + t, &[dns(&format!("n{i}.cdn.example"))])).await.unwrap();
        f.flush().await.unwrap();
    }
    eventually(Duration::from_secs(10), "both see the last name", || {
        [&a, &b].iter().all(|f| f.clock("shop", EventType::Dns).and_then(|c| c.last_new_ms) == Some(T0 + 60_000))
    })
    .await;
    assert!(b.tick(T0 + 59_000).await.unwrap().iter().all(|t| t.event_type != EventType::Dns));
    let (ta, tb) = tokio::join!(a.tick(T0 + 60_000), b.tick(T0 + 60_000));
    let dns: Vec<_> = ta.unwrap().into_iter().chain(tb.unwrap()).filter(|t| t.event_type == EventType::Dns).collect();
    assert_eq!(dns.iter().filter(|t| matches!(t.outcome, TransitionOutcome::Written(_))).count(), 1, "{dns:?}");
    assert!(dns.iter().all(|t| t.outcome.clock().state == State::Unstable), "{dns:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adding_behaviour_does_not_restart_the_quiet_period() {
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&config(etcd.endpoints(), "manual"), dir.path(), "a").await;
    a.publish(&learned("shop", T0, &[exec("nginx"), dns("api.example.com")])).await.unwrap();
    let mut marked = learned("shop", T0 + 9_000, &[dns("benign.example.org")]);
    marked[0].manual = true;
    a.publish(&marked).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(a.clock("shop", EventType::Dns).unwrap().last_new_ms, Some(T0));
    let snap = a.load("shop").await.unwrap();
    assert!(snap.behaviours.iter().any(|b| b.manual && b.first_seen_ms == T0 + 9_000));
    let out = a.propose_transition("shop", EventType::Dns, State::Learning, State::Stable, T0 + 10_000).await.unwrap();
    assert!(matches!(out, TransitionOutcome::Written(_)), "{out:?}");
}
