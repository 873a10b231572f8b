use telltale_core::profile::lifecycle::State;
use telltale_core::profile::Verdict;

use super::*;

fn stored(lineage: &[&str], behaviour: Behaviour, seen: i64, tag: &str) -> StoredBehaviour {
    StoredBehaviour {
        observation: Observation { lineage: lineage.iter().map(|s| (*s).to_owned()).collect(), behaviour },
        tag: tag.to_owned(),
        first_seen_ms: seen,
        writer: "pod-a".to_owned(),
        manual: false,
    }
}

fn file(pattern: &str, access: u8) -> Behaviour {
    Behaviour::File { pattern: pattern.to_owned(), access }
}

#[test]
fn a_snapshot_becomes_the_profile_a_replica_would_have_learned() {
    let app = ["/app/server"];
    let snap = ProfileSnapshot {
        image: "web".to_owned(),
        revision: 42,
        behaviours: vec![
            // Out of order on purpose: a file before its process's exec.
            stored(&app, file("/data/db", 2), 300, "v2"),
            stored(&app, Behaviour::Exec, 100, "v1"),
            stored(&app, file("/data/db", 1), 200, "v1"),
            stored(&app, Behaviour::Dns { name: "api.example".into(), qtype: "A".into() }, 400, "v2"),
        ],
        clocks: BTreeMap::from([
            (
                EventType::Exec,
                FleetClock { state: State::Stable, started_ms: 50, state_since_ms: 900, last_new_ms: Some(100) },
            ),
            (EventType::File, FleetClock { last_new_ms: Some(300), ..FleetClock::learning_since(50) }),
        ]),
    };
    let mut p = snap.to_profile(10_000);
    let node = &p.nodes()[&vec!["/app/server".to_owned()]];
    assert_eq!(node.files["/data/db"], 1 | 2, "the access bits' keys are merged");
    assert_eq!(node.first_seen_ms, 100);
    assert_eq!(p.tags.iter().cloned().collect::<Vec<_>>(), vec!["v1".to_owned(), "v2".to_owned()]);
    assert_eq!(p.clock(EventType::Exec).state, State::Stable);
    assert_eq!(p.clock(EventType::Exec).behaviours, 1, "the exec counts once");
    assert_eq!(p.clock(EventType::File).behaviours, 1, "one pattern");
    assert_eq!(p.clock(EventType::File).last_new_ms, Some(300));
    // A type without a clock learns from the profile's start.
    assert_eq!(p.clock(EventType::Dns).started_ms, 50);
    assert_eq!(p.clock(EventType::Dns).state, State::Learning);
    let exec =
        |path: &str| Observation { lineage: vec!["/app/server".into(), path.into()], behaviour: Behaviour::Exec };
    assert_eq!(p.observe(&exec("/bin/sh"), "v2", 10_000, false), Verdict::Anomaly, "exec is stable");
    let write = Observation { lineage: app.iter().map(|s| (*s).to_owned()).collect(), behaviour: file("/data/db", 3) };
    assert_eq!(p.observe(&write, "v2", 10_000, false), Verdict::Known);
}

#[test]
fn an_empty_snapshot_learns_from_now() {
    let snap = ProfileSnapshot { image: "new".into(), revision: 1, behaviours: vec![], clocks: BTreeMap::new() };
    let p = snap.to_profile(777);
    assert_eq!(p.behaviour_count(), 0);
    assert!(EventType::ALL.iter().all(|t| p.clock(*t).started_ms == 777 && p.clock(*t).state == State::Learning));
}

#[test]
fn only_learned_behaviours_of_a_batch_are_published() {
    let o = Observation { lineage: vec!["/bin/app".into()], behaviour: Behaviour::Exec };
    let changes = vec![
        Change::Profile { image: "web".into(), tags: vec!["v1".into()] },
        Change::Behaviour { image: "web".into(), observation: o.clone(), tag: "v1".into(), now_ms: 5 },
        Change::Clock {
            image: "web".into(),
            event_type: EventType::Exec,
            clock: telltale_core::profile::lifecycle::Clock::new(0),
        },
    ];
    assert_eq!(
        NewBehaviour::learned_from(&changes),
        vec![NewBehaviour { image: "web".into(), tag: "v1".into(), observation: o, seen_ms: 5, manual: false }]
    );
}

#[test]
fn stored_values_are_json_with_the_writer() {
    let b = stored(&["/bin/app"], file("/tmp/x", 4), 9, "v3");
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "observation": {"lineage": ["/bin/app"], "behaviour": {"type": "file", "pattern": "/tmp/x", "access": 4}},
            "tag": "v3", "first_seen_ms": 9, "writer": "pod-a"
        })
    );
    let manual = StoredBehaviour { manual: true, ..b };
    assert_eq!(serde_json::to_value(&manual).unwrap()["manual"], true);
    assert!(!serde_json::from_value::<StoredBehaviour>(json).unwrap().manual);
}
