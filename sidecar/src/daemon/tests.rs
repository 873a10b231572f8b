//! The daemon without root: typed events replayed through the pipeline and
//! the commands, into a real store, real feeds and the real outbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use telltale_core::event::{build, Event};
use telltale_core::notify::{Rule, Target};
use telltale_core::profile::lifecycle::{LearningConfig, State};
use telltale_core::signal::Status;
use telltale_core::workload::image::ImageRef;
use tokio::sync::{broadcast, oneshot};

use super::source::{FixedContainers, Replay, ReplaySource};
use super::*;
use crate::bus::{Sequenced, SequencedChange};
use crate::workload::cgroup::Cgroup;
use crate::workload::discover::Found;

mod fleet_profiles;

const WEB: u64 = 5;

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("telltale-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn learning() -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
    }
}

fn web() -> Found {
    Found {
        cgroup: Cgroup { path: "/sys/fs/cgroup/pod/web".into(), id: WEB, level: 2 },
        id: "c-web".into(),
        name: "web".into(),
        image: ImageRef::parse("registry.example.com/shop/web:v1").unwrap(),
    }
}

fn app() -> telltale_core::event::Process {
    build::process("/usr/bin/app", &["/bin/sh"])
}

fn read(path: &str) -> Event {
    build::read(WEB, app(), path)
}

struct Harness {
    d: Daemon<ReplaySource, FixedContainers>,
    replay: Replay,
    clock: Arc<AtomicI64>,
    dir: PathBuf,
    anomalies: broadcast::Receiver<Sequenced>,
    changes: broadcast::Receiver<SequencedChange>,
}

impl Harness {
    async fn open(dir: PathBuf, at_ms: i64) -> Self {
        Self::open_with(dir, at_ms, |_| {}).await
    }

    /// With configuration changes; a fleet, when configured, is read
    /// before the first scan (as `Daemon::run` does).
    async fn open_with(dir: PathBuf, at_ms: i64, change: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config { data_dir: dir.clone(), learning: learning(), ..Config::default() };
        cfg.notifications.rate_limit = Duration::ZERO;
        change(&mut cfg);
        let (source, replay) = ReplaySource::new();
        let clock = Arc::new(AtomicI64::new(at_ms));
        let read_clock = clock.clone();
        let clock_fn: Clock = Arc::new(move || read_clock.load(Ordering::SeqCst));
        let store = Store::open(&dir).unwrap();
        let fleet = fleet::FleetLink::connect(&cfg, clock_fn.clone()).await.unwrap();
        let feeds = Feeds::new(64);
        let (anomalies, changes) = (feeds.anomalies.subscribe(), feeds.signals.subscribe());
        let d = Daemon::new(Parts {
            store,
            telemetry: Telemetry::start(&cfg).await.unwrap(),
            cfg,
            source,
            discovery: FixedContainers::new(vec![web()]).in_pod("web-7d4b9c", "shop"),
            feeds,
            out: None,
            clock: clock_fn,
            fleet,
        })
        .unwrap();
        let mut h = Harness { d, replay, clock, dir, anomalies, changes };
        h.d.await_fleet().await.unwrap();
        h.d.rescan(at_ms).unwrap();
        h
    }

    fn at(&mut self, ms: i64) {
        self.clock.store(ms, Ordering::SeqCst);
    }

    fn events(&mut self, events: Vec<Event>) {
        self.replay.send(events);
        let mut batch = Vec::new();
        self.d.source.drain(&mut batch);
        self.d.on_events(&mut batch).unwrap();
    }

    fn ask<T>(&mut self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, mut rx) = oneshot::channel();
        self.d.command(make(tx)).unwrap();
        rx.try_recv().expect("the daemon answers every command at once")
    }

    fn store(&self) -> Store {
        Store::open_read_only(&self.dir).unwrap()
    }

    /// Learn the web app's start-up, then let 20 s pass: stable.
    fn learned(&mut self) {
        self.events(vec![build::exec(WEB, app()), read("/etc/app.conf"), read("/usr/lib/libc.so.6")]);
        self.at(20_000);
        self.d.tick().unwrap();
        let st = self.ask(|reply| Command::Status { image: Some("web".into()), reply });
        let states: Vec<State> = st[0].types.iter().map(|t| t.state).collect();
        assert!(states.iter().all(|s| *s == State::Stable), "all types stable after 20 s: {states:?}");
    }
}

fn webhook_rule() -> Rule {
    Rule {
        id: String::new(),
        name: "to the SOC".into(),
        enabled: true,
        query: "rule_id:anomaly_detection".into(),
        targets: vec![Target::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: Some("s3cret".into()),
            headers: BTreeMap::new(),
        }],
        notify_on_update: true,
    }
}

#[tokio::test]
async fn a_new_behaviour_after_learning_is_one_anomaly_one_signal_one_transaction() {
    let mut h = Harness::open(tmp("detect"), 0).await;
    h.learned();
    assert!(h.anomalies.try_recv().is_err(), "nothing is flagged while learning");

    h.at(21_000);
    h.events(vec![read("/etc/shadow"), read("/etc/app.conf")]);

    let (seq, a) = &*h.anomalies.try_recv().unwrap();
    assert_eq!(*seq, 1);
    assert_eq!(
        (a.container.id.as_str(), a.container.image.as_str(), a.container.pod.as_str()),
        ("c-web", "web", "web-7d4b9c")
    );
    assert!(format!("{:?}", a.observation).contains("/etc/shadow"), "{a:?}");
    assert!(h.anomalies.try_recv().is_err(), "the known read is no anomaly");
    let change = h.changes.try_recv().unwrap();
    assert_eq!(change.0, 1);
    assert!(change.1.created);
    assert_eq!(change.1.signal.container.id, "c-web");

    // Everything the batch changed is in the store.
    let store = h.store();
    let stored = store.anomalies_after(0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].0, &stored[0].1.id), (1, &a.id));
    assert_eq!(store.signal_changes_after(0, 10).unwrap().len(), 1);
    let signals = store.signals().unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].entries.len(), 1);

    // The known read goes to the source's filter: it is never delivered again.
    let known = read("/etc/app.conf");
    assert!(h.replay.is_known(known.dedup_key));
    let before = h.replay.counters().file.filtered_known;
    h.events(vec![known]);
    assert_eq!(h.replay.counters().file.filtered_known, before + 1);
}

#[tokio::test]
async fn notification_rules_queue_messages_with_the_batch_and_audit_their_changes() {
    let mut h = Harness::open(tmp("notify"), 0).await;
    let saved = h
        .ask(|reply| Command::SaveRule { rule: webhook_rule(), principal: "alice".into(), reply })
        .expect("a new rule is saved");
    assert!(saved.id.starts_with("rule-"));
    h.learned();
    h.at(21_000);
    h.events(vec![read("/etc/shadow")]);

    let store = h.store();
    let due = store.due(i64::MAX, 10).unwrap();
    assert_eq!(due.len(), 1, "one message for one target: {due:?}");
    let audit = store.audit_records().unwrap();
    assert_eq!(audit.len(), 1);
    let a = &audit[0].action;
    assert_eq!((a.principal.as_str(), a.action.as_str(), a.outcome.as_str()), ("alice", "create", "success"));
    assert_eq!(a.asset_id, saved.id);
    let after = a.after.as_ref().unwrap().to_string();
    assert!(!after.contains("s3cret"), "the audit trail keeps no secret: {after}");
    assert_eq!(telltale_core::audit::verify(&audit), Ok(1));

    // Deleting an unknown rule is a failure, audited.
    assert!(!h.ask(|reply| Command::DeleteRule { id: "rule-nope".into(), principal: "bob".into(), reply }));
    assert!(h.ask(|reply| Command::DeleteRule { id: saved.id.clone(), principal: "alice".into(), reply }));
    let audit = h.store().audit_records().unwrap();
    let outcomes: Vec<(&str, &str)> =
        audit.iter().map(|r| (r.action.action.as_str(), r.action.outcome.as_str())).collect();
    assert_eq!(outcomes, [("create", "success"), ("delete", "failure"), ("delete", "success")]);
    assert!(h.store().due(i64::MAX, 10).unwrap().is_empty(), "a deleted rule sends nothing more");
}

#[tokio::test]
async fn mark_benign_adds_to_the_profile_archives_and_audits() {
    let mut h = Harness::open(tmp("benign"), 0).await;
    h.learned();
    h.at(21_000);
    h.events(vec![read("/etc/shadow")]);
    let signal = h.changes.try_recv().unwrap().1.signal.id.clone();

    let answer = h.ask(|reply| Command::UpdateSignal {
        id: signal.clone(),
        status: None,
        assignee: Some("carol".into()),
        benign: Some(vec![]),
        principal: "carol".into(),
        reply,
    });
    let (after, added) = answer.unwrap();
    assert_eq!((after.status, added), (Status::Archived, 1));
    let change = h.changes.try_recv().unwrap();
    assert!(!change.1.created);
    assert_eq!(change.1.signal.status, Status::Archived);

    // The same behaviour again: known, no anomaly.
    h.at(22_000);
    h.events(vec![read("/etc/shadow")]);
    let _first = h.anomalies.try_recv().unwrap();
    assert!(h.anomalies.try_recv().is_err(), "marked benign: never flagged again");

    let audit = h.store().audit_records().unwrap();
    let last = &audit.last().unwrap().action;
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str(), last.principal.as_str()),
        ("mark_benign", "success", "carol")
    );
    assert_eq!(last.after.as_ref().unwrap()["behaviours_added"], 1);

    // An unknown signal is refused, and the refusal audited.
    let answer = h.ask(|reply| Command::UpdateSignal {
        id: "sig-nope".into(),
        status: Some(Status::UnderReview),
        assignee: None,
        benign: None,
        principal: "carol".into(),
        reply,
    });
    assert!(answer.is_err());
    let audit = h.store().audit_records().unwrap();
    assert_eq!(audit.last().unwrap().action.outcome, "failure");
}

#[tokio::test]
async fn a_restart_continues_sequences_and_never_recounts_a_signal() {
    let dir = tmp("restart");
    let mut h = Harness::open(dir.clone(), 0).await;
    h.learned();
    h.at(21_000);
    h.events(vec![read("/etc/shadow"), read("/etc/passwd")]);
    let before = h.store().signals().unwrap();
    assert_eq!(before[0].entries.len(), 2);
    drop(h);

    for restart in 0..3 {
        let mut h = Harness::open(dir.clone(), 30_000 + restart).await;
        h.d.tick().unwrap();
        let signals = h.store().signals().unwrap();
        assert_eq!(signals, before, "restart {restart}: the signal is as it was");
        assert!(h.changes.try_recv().is_err(), "restart {restart}: no spurious signal change");
    }

    let mut h = Harness::open(dir, 40_000).await;
    h.events(vec![read("/etc/hosts")]);
    let (seq, _) = &*h.anomalies.try_recv().unwrap();
    assert_eq!(*seq, 3, "sequence numbers continue after restarts");
    assert_eq!(h.changes.try_recv().unwrap().0, 2);
}

#[tokio::test]
async fn hand_added_behaviour_and_suppressions_go_through_the_same_commit() {
    let mut h = Harness::open(tmp("add"), 0).await;
    h.learned();
    let obs = telltale_core::profile::Observation::from_event(&read("/etc/extra.conf")).remove(0);
    let answer = h.ask(|reply| Command::Add {
        image: "web".into(),
        observations: vec![obs.clone()],
        principal: "dave".into(),
        reply,
    });
    assert_eq!(answer, Some((1, 0)));
    assert_eq!(
        h.ask(|reply| Command::Add { image: "nope".into(), observations: vec![obs], principal: "dave".into(), reply }),
        None
    );
    h.at(21_000);
    h.events(vec![read("/etc/extra.conf")]);
    assert!(h.anomalies.try_recv().is_err(), "added by hand: known");

    let rule = telltale_core::suppress::Suppression {
        id: String::new(),
        name: "scratch files".into(),
        image: "web".into(),
        event_type: None,
        process: String::new(),
        detail: "/tmp/*".into(),
    };
    let saved = h.ask(|reply| Command::SaveSuppression { rule, principal: "dave".into(), reply });
    h.events(vec![read("/tmp/scratch")]);
    assert!(h.anomalies.try_recv().is_err(), "suppressed");
    assert_eq!(h.ask(|reply| Command::Suppressions { reply }).len(), 1);
    assert!(h.ask(|reply| Command::DeleteSuppression { id: saved.id, principal: "dave".into(), reply }));
    let audit = h.store().audit_records().unwrap();
    let trail: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|r| (r.action.asset_type.name(), r.action.action.as_str(), r.action.outcome.as_str()))
        .collect();
    assert_eq!(
        trail,
        [
            ("security_profile", "add_to_profile", "success"),
            ("security_profile", "add_to_profile", "failure"),
            ("suppression", "create", "success"),
            ("suppression", "delete", "success"),
        ]
    );
    assert_eq!(audit[0].action.after.as_ref().unwrap()["added"], 1);
}

#[tokio::test]
async fn lost_records_are_charged_to_learning() {
    let mut h = Harness::open(tmp("lost"), 0).await;
    h.events(vec![build::exec(WEB, app())]);
    h.replay.lose(telltale_core::profile::EventType::Exec, 3);
    h.at(1_000);
    h.d.tick().unwrap();
    h.replay.lose(telltale_core::profile::EventType::File, 2);
    h.at(2_000);
    h.d.tick().unwrap();
    let st = h.ask(|reply| Command::Status { image: Some("web".into()), reply });
    let lost: Vec<(&str, u64)> = st[0].types.iter().map(|t| (t.event_type.name(), t.lost_events)).collect();
    assert_eq!(lost, [("exec", 3), ("file", 2), ("dns", 0), ("connect", 0)], "each type its own losses");
}

#[tokio::test]
async fn lost_records_the_kernel_can_place_are_charged_once_to_their_container() {
    use telltale_core::profile::EventType;
    let mut h = Harness::open(tmp("lost-by-cgroup"), 0).await;
    h.events(vec![build::exec(WEB, app())]);
    h.replay.lose_in(WEB, EventType::File, 4);
    h.replay.lose_in(WEB, EventType::Dns, 1);
    h.at(1_000);
    h.d.tick().unwrap();
    // The kernel's counts are cumulative: a tick without new losses adds nothing.
    h.at(2_000);
    h.d.tick().unwrap();
    h.replay.lose_in(WEB, EventType::File, 2);
    h.at(3_000);
    h.d.tick().unwrap();
    let st = h.ask(|reply| Command::Status { image: Some("web".into()), reply });
    let lost: Vec<(&str, u64)> = st[0].types.iter().map(|t| (t.event_type.name(), t.lost_events)).collect();
    assert_eq!(lost, [("exec", 0), ("file", 6), ("dns", 1), ("connect", 0)]);
}

#[tokio::test]
async fn the_loop_serves_events_and_commands_until_stopped() {
    let mut h = Harness::open(tmp("loop"), 0).await;
    h.learned();
    let (tx, rx) = tokio::sync::mpsc::channel(crate::bus::INBOX);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let replay = h.replay.clone();
    let mut anomalies = h.d.feeds.anomalies.subscribe();
    let mut d = h.d;
    let task = tokio::spawn(async move {
        d.run(rx, async move {
            let _ = stop_rx.await;
        })
        .await
        .map(|()| d)
    });
    h.clock.store(21_000, Ordering::SeqCst);
    replay.send(vec![read("/etc/shadow")]);
    let got = tokio::time::timeout(Duration::from_secs(10), anomalies.recv()).await.unwrap().unwrap();
    assert_eq!(got.0, 1);
    let (reply, answer) = oneshot::channel();
    tx.send(Command::Signals { query: telltale_core::query::Query::parse("").unwrap(), reply }).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), answer).await.unwrap().unwrap().len(), 1);
    // Events still buffered at the stop are drained, not dropped.
    replay.send(vec![read("/etc/group")]);
    stop_tx.send(()).unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    let stored = Store::open_read_only(&d.cfg.data_dir).unwrap().anomalies_after(0, 10).unwrap();
    assert_eq!(stored.len(), 2);
}

#[tokio::test]
async fn the_daemon_prunes_the_audit_trail_to_its_bounds_and_the_chain_still_verifies() {
    let mut h = Harness::open_with(tmp("audit-retention"), 0, |cfg| cfg.audit.max_records = 1_000).await;
    for i in 0..1_200 {
        let action = telltale_core::audit::Action::new(
            i,
            "mallory",
            telltale_core::audit::AssetType::SecuritySignal,
            "sig-1",
            telltale_core::audit::Verb::Update,
            telltale_core::audit::Outcome::Failure,
        );
        h.d.command(Command::Audit(action)).unwrap();
    }
    h.at(10_000);
    h.d.tick().unwrap(); // the first tick of a minute prunes
    let trail = h.store().audit_trail().unwrap();
    assert!(trail.records.len() <= 1_001, "bounded: {}", trail.records.len());
    assert!(trail.anchor.is_some(), "the trail starts after an anchor");
    assert_eq!(trail.verify(), Ok(trail.records.len()), "the kept trail verifies from its anchor");
    let last = &trail.records.last().unwrap().action;
    assert_eq!(last.action, "prune", "the pruning itself is audited: {last:?}");
}
