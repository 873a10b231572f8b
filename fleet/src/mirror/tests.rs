use telltale_core::profile::lifecycle::State;

use super::*;

fn v(rev: i64, last: i64) -> Versioned {
    Versioned { clock: FleetClock { last_new_ms: Some(last), ..FleetClock::learning_since(0) }, mod_revision: rev }
}

#[test]
fn behaviours_are_learned_once_and_can_be_forgotten() {
    let mut m = Mirror::default();
    assert!(!m.knows("web", "aa"));
    assert!(m.learn("web", "aa"));
    assert!(!m.learn("web", "aa"), "already known");
    assert!(m.knows("web", "aa"));
    assert!(!m.knows("db", "aa"), "per image");
    m.forget("web", "aa");
    assert!(!m.knows("web", "aa"));
}

#[test]
fn a_clock_never_goes_back_to_an_older_revision() {
    let mut m = Mirror::at(10);
    assert!(m.set_clock("web", EventType::Exec, v(5, 100)));
    assert!(!m.set_clock("web", EventType::Exec, v(4, 999)), "older");
    assert!(!m.set_clock("web", EventType::Exec, v(5, 999)), "same revision");
    assert!(m.set_clock("web", EventType::Exec, v(6, 200)));
    assert_eq!(m.clock("web", EventType::Exec), Some(v(6, 200)));
    assert_eq!(m.clock("web", EventType::Dns), None);
    assert_eq!(m.clocks().count(), 1);
    m.remove_clock("web", EventType::Exec);
    assert_eq!(m.clock("web", EventType::Exec), None);
}

#[test]
fn the_revision_only_advances() {
    let mut m = Mirror::at(10);
    m.advance(7);
    assert_eq!(m.revision(), 10);
    m.advance(12);
    assert_eq!(m.revision(), 12);
}

#[test]
fn clock_values_are_flat_json() {
    let value = ClockValue {
        clock: FleetClock { state: State::Stable, started_ms: 1, state_since_ms: 3, last_new_ms: Some(2) },
        writer: "pod-a".to_owned(),
    };
    let json = serde_json::to_value(&value).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"state":"stable","started_ms":1,"state_since_ms":3,"last_new_ms":2,"writer":"pod-a"})
    );
    assert_eq!(serde_json::from_value::<ClockValue>(json).unwrap(), value);
}
