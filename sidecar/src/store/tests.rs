use super::*;
use std::time::Duration;

use proptest::prelude::*;
use telltale_core::audit::{Action, AssetType, Outcome, Verb};
use telltale_core::detect::{Anomaly, Change, Container, Detector};
use telltale_core::event::{build, Event, EventKind};
use telltale_core::profile::lifecycle::LearningConfig;
use telltale_core::profile::{Behaviour, EventType, Observation};
use telltale_core::signal::{SignalChange, Signals};
use telltale_core::workload::image::ImageRef;

/// A fresh, absent directory under the temporary directory.
pub(super) fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("telltale-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

pub(super) fn open(path: &str) -> Event {
    build::read(5, build::process("/bin/app", &["/bin/sh"]), path)
}

pub(super) fn cfg() -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
    }
}

/// An anomaly: container `c1` of image `web` read `path` at `time_ms`.
pub(super) fn anomaly(id: &str, time_ms: i64, path: &str) -> Anomaly {
    let event = open(path);
    let observation = Observation::from_event(&event).into_iter().next().unwrap();
    Anomaly {
        id: id.into(),
        time: time::OffsetDateTime::UNIX_EPOCH,
        time_ms,
        container: Container::new("c1", "web", &ImageRef::parse("web:v1").unwrap(), 5, 0),
        event_type: EventType::File,
        profile_version: "v1".into(),
        observation,
        event,
    }
}

/// A batch of anomalies under the given sequence numbers.
pub(super) fn anomalies_batch(items: &[(u64, Anomaly)], now_ms: i64) -> Batch {
    Batch {
        changes: items.iter().map(|(_, a)| Change::Anomaly(Box::new(a.clone()))).collect(),
        anomaly_sequences: items.iter().map(|(s, _)| *s).collect(),
        now_ms,
        ..Batch::default()
    }
}

pub(super) fn action(who: &str, verb: Verb, outcome: Outcome) -> Action {
    Action::new(1_000, who, AssetType::Api, "Authenticate", verb, outcome)
}

fn count(store: &Store, table: &str) -> i64 {
    store.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

/// Commit detector changes, numbering anomalies from `seq`.
/// `n` records lost of every type, from no known container.
fn lost(n: u64) -> telltale_core::detect::LostRecords {
    let mut l = telltale_core::profile::Lost::default();
    for t in telltale_core::profile::EventType::ALL {
        l.add(t, n);
    }
    telltale_core::detect::LostRecords { by_cgroup: Vec::new(), unattributed: l }
}

fn commit_changes(store: &mut Store, seq: &mut u64, changes: Vec<Change>) {
    let mut b = Batch { now_ms: 1, ..Batch::default() };
    for c in changes {
        if matches!(c, Change::Anomaly(_)) {
            *seq += 1;
            b.anomaly_sequences.push(*seq);
        }
        b.changes.push(c);
    }
    store.commit(&b).unwrap();
}

#[test]
fn profiles_clocks_and_anomalies_round_trip() {
    let dir = tmp("roundtrip");
    let mut store = Store::open(&dir).unwrap();
    let mut d = Detector::new(cfg(), vec![], vec![]);
    let c = Container::new("c1", "web", &ImageRef::parse("web:v1").unwrap(), 5, 0);
    let mut seq = 0;
    commit_changes(&mut store, &mut seq, d.add_container(c.clone(), 0));
    commit_changes(&mut store, &mut seq, d.on_event(&open("/etc/app.conf"), 1_000).changes);
    commit_changes(&mut store, &mut seq, d.on_event(&open("/proc/77/status"), 1_000).changes);
    commit_changes(&mut store, &mut seq, d.tick(20_000, &lost(2)));
    commit_changes(&mut store, &mut seq, d.on_event(&open("/etc/shadow"), 21_000).changes);
    assert_eq!(seq, 1, "one anomaly");
    drop(store);

    let store = Store::open_read_only(&dir).unwrap();
    let profiles = store.load_profiles().unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    let original = d.profile("web").unwrap();
    assert_eq!(p.nodes(), original.nodes());
    for t in EventType::ALL {
        assert_eq!(p.clock(t), original.clock(t), "{t:?}");
    }
    assert_eq!(p.tags, original.tags);
    assert_eq!(store.reported().unwrap().len(), 1);
    let stored = store.anomalies_after(0, 10).unwrap();
    assert_eq!(stored[0].0, 1, "stored under the daemon's number");
    assert!(matches!(&stored[0].1.event.kind, EventKind::File { file } if file.path == "/etc/shadow"));
    assert_eq!(store.sequences().unwrap(), Sequences { anomaly: 1, signal_change: 0 });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_access_bits_merge() {
    let dir = tmp("merge");
    let mut store = Store::open(&dir).unwrap();
    let o = |access| Observation {
        lineage: vec!["/bin/app".into()],
        behaviour: Behaviour::File { pattern: "/data/x".into(), access },
    };
    let ch = |access| Change::Behaviour { image: "web".into(), observation: o(access), tag: "v1".into(), now_ms: 1 };
    store.commit(&Batch { changes: vec![ch(1), ch(2)], ..Batch::default() }).unwrap();
    let p = store.load_profiles().unwrap();
    assert!(p[0].contains(&o(3)));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every part of a batch, about one anomaly.
fn full_batch(seq: u64, change_seq: u64) -> Batch {
    let a = anomaly(&format!("a-{seq}"), 10, &format!("/etc/secret-{seq}"));
    let mut signals = Signals::new(vec![]);
    let (id, created) = signals.record(seq, &a);
    let signal = signals.get(&id).unwrap().clone();
    let rule = telltale_core::notify::Rule {
        id: "rule-1".into(),
        name: "soc".into(),
        enabled: true,
        query: String::new(),
        targets: vec![telltale_core::notify::Target::Slack { url: "http://127.0.0.1:9/slack".into() }],
        notify_on_update: true,
    };
    Batch {
        changes: vec![
            Change::Behaviour { image: "web".into(), observation: a.observation.clone(), tag: "v1".into(), now_ms: 10 },
            Change::Anomaly(Box::new(a)),
        ],
        anomaly_sequences: vec![seq],
        signals: vec![signal.clone()],
        signal_changes: vec![(change_seq, SignalChange { created, signal: signal.summary_copy() })],
        rules: vec![RuleChange::SaveRule(rule.clone())],
        outbox: vec![Outgoing {
            rule_id: rule.id.clone(),
            target: 0,
            signal_id: signal.id.clone(),
            message: telltale_core::notify::render(&rule, &rule.targets[0], &signal, true),
            rate_limit_ms: 60_000,
        }],
        audit: vec![action("alice", Verb::Create, Outcome::Success)],
        now_ms: 10,
    }
}

#[test]
fn a_batch_is_written_whole_in_one_transaction() {
    let dir = tmp("whole");
    let mut store = Store::open(&dir).unwrap();
    let records = store.commit(&full_batch(1, 1)).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 1);
    assert_eq!(store.audit_records().unwrap(), records);
    let reader = Store::open_read_only(&dir).unwrap();
    assert_eq!(reader.anomalies_after(0, 10).unwrap().len(), 1);
    assert_eq!(reader.signals().unwrap().len(), 1);
    assert_eq!(reader.signal_changes_after(0, 10).unwrap()[0].0, 1);
    assert_eq!(reader.rules().unwrap().len(), 1);
    assert_eq!(reader.due(i64::MAX, 10).unwrap().len(), 1);
    let observation = anomaly("a-1", 10, "/etc/secret-1").observation;
    assert!(reader.load_profiles().unwrap()[0].contains(&observation));
    assert_eq!(reader.sequences().unwrap(), Sequences { anomaly: 1, signal_change: 1 });

    // The last write of the next batch fails: nothing of it stays.
    store
        .conn
        .execute_batch("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END;")
        .unwrap();
    let e = store.commit(&full_batch(2, 2)).unwrap_err();
    assert!(e.to_string().contains(DB_FILE), "{e}");
    assert_eq!(count(&store, "anomalies"), 1);
    assert_eq!(count(&store, "behaviours"), 1);
    assert_eq!(count(&store, "signals"), 1);
    assert_eq!(count(&store, "signal_changes"), 1);
    assert_eq!(count(&store, "outbox"), 1);
    assert_eq!(store.sequences().unwrap(), Sequences { anomaly: 1, signal_change: 1 });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sequence_numbers_never_go_backwards_even_when_every_row_is_pruned() {
    let dir = tmp("sequences");
    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.sequences().unwrap(), Sequences::default());
    store.commit(&full_batch(3, 5)).unwrap();
    assert_eq!(store.prune_anomalies(i64::MAX).unwrap(), 1);
    assert_eq!(count(&store, "anomalies") + count(&store, "signal_changes"), 0);
    drop(store);
    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.sequences().unwrap(), Sequences { anomaly: 3, signal_change: 5 });

    // A number already handed out is refused, and nothing is written.
    for (seq, change) in [(3, 6), (4, 5), (2, 9)] {
        let e = store.commit(&full_batch(seq, change)).unwrap_err();
        assert!(matches!(e, StoreError::InvalidBatch { .. }), "{e:?}");
        assert!(e.to_string().contains("is not above the last one handed out"), "{e}");
    }
    assert_eq!(count(&store, "audit"), 1);
    // Numbers out of order within a batch too.
    let mut b = anomalies_batch(&[(8, anomaly("x", 1, "/x")), (7, anomaly("y", 1, "/y"))], 1);
    assert!(matches!(store.commit(&b).unwrap_err(), StoreError::InvalidBatch { .. }));
    // One number per anomaly.
    b.anomaly_sequences.pop();
    let e = store.commit(&b).unwrap_err();
    assert!(e.to_string().contains("2 anomalies but 1 anomaly sequence numbers"), "{e}");
    store.commit(&full_batch(4, 6)).unwrap();
    assert_eq!(store.sequences().unwrap(), Sequences { anomaly: 4, signal_change: 6 });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_anomaly_stored_twice_keeps_its_first_row() {
    let dir = tmp("twice");
    let mut store = Store::open(&dir).unwrap();
    let a = anomaly("a-1", 1, "/etc/shadow");
    store.commit(&anomalies_batch(&[(1, a.clone())], 1)).unwrap();
    store.commit(&anomalies_batch(&[(2, a)], 1)).unwrap();
    let stored = store.anomalies_after(0, 10).unwrap();
    assert_eq!(stored.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
    assert_eq!(store.sequences().unwrap().anomaly, 2, "the number was handed out all the same");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A value whose serialization fails.
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not representable"))
    }
}

#[test]
fn an_encoding_failure_is_an_error_naming_what_never_an_empty_string() {
    let f = encode("notification message", &Unencodable).unwrap_err();
    let e = f.at(Path::new("/data/telltale.db"));
    assert!(matches!(e, StoreError::Encode { what: "notification message", .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "/data/telltale.db: encoding the notification message to store failed; nothing of the batch was written"
    );
    assert_eq!(std::error::Error::source(&e).map(|s| s.to_string()).as_deref(), Some("not representable"));
}

#[test]
fn a_command_and_its_audit_record_are_one_write() {
    let dir = tmp("command");
    let mut store = Store::open(&dir).unwrap();
    store.commit(&full_batch(1, 1)).unwrap();
    assert_eq!(store.due(i64::MAX, 10).unwrap().len(), 1);
    let sup = telltale_core::suppress::Suppression {
        id: "sup-1".into(),
        name: "health".into(),
        image: "web".into(),
        event_type: None,
        process: "/bin/app".into(),
        detail: "/healthz".into(),
    };
    let records = store
        .commit(&Batch {
            rules: vec![RuleChange::DeleteRule("rule-1".into()), RuleChange::SaveSuppression(sup.clone())],
            audit: vec![
                action("alice", Verb::Delete, Outcome::Success),
                action("alice", Verb::Create, Outcome::Success),
            ],
            ..Batch::default()
        })
        .unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(store.rules().unwrap().is_empty());
    assert!(store.due(i64::MAX, 10).unwrap().is_empty(), "a deleted rule sends nothing more");
    assert_eq!(store.suppressions().unwrap(), vec![sup]);
    store
        .commit(&Batch {
            rules: vec![RuleChange::DeleteSuppression("sup-1".into())],
            audit: vec![action("bob", Verb::Delete, Outcome::Success)],
            ..Batch::default()
        })
        .unwrap();
    assert!(store.suppressions().unwrap().is_empty());
    assert_eq!(telltale_core::audit::verify(&store.audit_records().unwrap()), Ok(4));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_batch_writes_nothing() {
    assert!(Batch { now_ms: 5, ..Batch::default() }.is_empty());
    assert!(!full_batch(1, 1).is_empty());
    let dir = tmp("empty");
    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.commit(&Batch::default()).unwrap(), vec![]);
    assert_eq!(count(&store, "audit"), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One step of the sequence property.
#[derive(Debug, Clone)]
enum Step {
    /// A batch of n anomalies (and one signal change per anomaly).
    Anomalies(u8),
    /// Retention removes everything.
    PruneAll,
    /// The daemon restarts.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![(1u8..4).prop_map(Step::Anomalies), Just(Step::PruneAll), Just(Step::Reopen)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever is pruned and however often the daemon restarts, the
    /// stored high-water marks are the last numbers handed out, and what
    /// is stored is in order.
    #[test]
    fn stored_sequences_are_the_last_handed_out(steps in proptest::collection::vec(step(), 1..12)) {
        let dir = tmp("prop-sequences");
        let mut store = Store::open(&dir).unwrap();
        let mut handed_out = Sequences::default();
        let mut n = 0;
        for s in steps {
            match s {
                Step::Anomalies(k) => {
                    let mut b = Batch { now_ms: 100, ..Batch::default() };
                    for _ in 0..k {
                        n += 1;
                        handed_out.anomaly += 1;
                        handed_out.signal_change += 1;
                        let a = anomaly(&format!("a-{n}"), 100, "/etc/shadow");
                        let mut signals = Signals::new(vec![]);
                        let (id, created) = signals.record(handed_out.anomaly, &a);
                        let signal = signals.get(&id).unwrap().summary_copy();
                        b.changes.push(Change::Anomaly(Box::new(a)));
                        b.anomaly_sequences.push(handed_out.anomaly);
                        b.signal_changes.push((handed_out.signal_change, SignalChange { created, signal }));
                    }
                    store.commit(&b).unwrap();
                }
                Step::PruneAll => {
                    store.prune_anomalies(i64::MAX).unwrap();
                }
                Step::Reopen => {
                    drop(store);
                    store = Store::open(&dir).unwrap();
                }
            }
            prop_assert_eq!(store.sequences().unwrap(), handed_out);
            let seqs: Vec<u64> = store.anomalies_after(0, 1000).unwrap().into_iter().map(|(s, _)| s).collect();
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(seqs.last().is_none_or(|l| *l == handed_out.anomaly));
        }
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_mechanism_behaviour_and_its_anomaly_round_trip() {
    use telltale_core::event::Mechanism;
    let dir = tmp("mechanism");
    let mut store = Store::open(&dir).unwrap();
    let mut d = Detector::new(cfg(), vec![], vec![]);
    let c = Container::new("c1", "web", &ImageRef::parse("web:v1").unwrap(), 5, 0);
    let app = || build::process("/bin/app", &["/bin/sh"]);
    let mut seq = 0;
    commit_changes(&mut store, &mut seq, d.add_container(c, 0));
    commit_changes(&mut store, &mut seq, d.on_event(&build::exec(5, app()), 1_000).changes);
    commit_changes(&mut store, &mut seq, d.on_event(&build::mechanism(5, app(), Mechanism::IoUring), 1_000).changes);
    commit_changes(&mut store, &mut seq, d.on_event(&build::exec(5, build::process("/bin/other", &[])), 1_000).changes);
    commit_changes(&mut store, &mut seq, d.tick(20_000, &lost(0)));
    let other = build::mechanism(5, build::process("/bin/other", &[]), Mechanism::IoUring);
    commit_changes(&mut store, &mut seq, d.on_event(&other, 21_000).changes);
    assert_eq!(seq, 1, "one anomaly: /bin/other never used io_uring while learning");
    drop(store);

    let store = Store::open_read_only(&dir).unwrap();
    let profiles = store.load_profiles().unwrap();
    let original = d.profile("web").unwrap();
    assert_eq!(profiles[0].nodes(), original.nodes());
    let learned = Observation {
        lineage: vec!["/bin/sh".into(), "/bin/app".into()],
        behaviour: Behaviour::Mechanism { mechanism: Mechanism::IoUring },
    };
    assert!(profiles[0].contains(&learned));
    assert_eq!(profiles[0].behaviour_count(), original.behaviour_count());
    let stored = store.anomalies_after(0, 10).unwrap();
    assert!(matches!(stored[0].1.event.kind, EventKind::Mechanism { mechanism: Mechanism::IoUring }));
    assert_eq!(stored[0].1.observation.behaviour, Behaviour::Mechanism { mechanism: Mechanism::IoUring });
    std::fs::remove_dir_all(&dir).unwrap();
}
