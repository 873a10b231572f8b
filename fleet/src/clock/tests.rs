use std::time::Duration;

use super::*;

fn cfg() -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(30),
        warmup: Duration::ZERO,
    }
}

#[test]
fn last_new_only_moves_forward_while_learning() {
    let c = FleetClock::learning_since(1_000);
    let c = c.with_new(2_000).expect("first new behaviour");
    assert_eq!(c.last_new_ms, Some(2_000));
    assert_eq!(c.with_new(1_500), None, "an earlier behaviour does not move it back");
    assert_eq!(c.with_new(2_000), None, "nothing to write");
    assert_eq!(c.with_new(2_500).map(|c| c.last_new_ms), Some(Some(2_500)));
    let stable = c.moved_to(State::Stable, 20_000);
    assert_eq!(stable.with_new(30_000), None, "a stable type records nothing");
}

#[test]
fn the_core_lifecycle_decides_what_is_due() {
    let c = FleetClock::learning_since(0).with_new(8_000).unwrap();
    assert_eq!(c.due(12_999, &cfg()), None, "quiet only 4.999 s");
    assert_eq!(c.due(13_000, &cfg()), Some(State::Stable));
    let quiet = FleetClock::learning_since(0);
    assert_eq!(quiet.due(9_999, &cfg()), None, "min_duration not reached");
    assert_eq!(quiet.due(10_000, &cfg()), Some(State::Stable));
    let noisy = FleetClock::learning_since(0).with_new(29_000).unwrap();
    assert_eq!(noisy.due(30_000, &cfg()), Some(State::Unstable));
    assert_eq!(noisy.moved_to(State::Unstable, 30_000).due(99_000, &cfg()), None, "final");
}

#[test]
fn a_proposal_is_written_adopted_or_refused() {
    let learning = FleetClock::learning_since(0).with_new(8_000).unwrap();
    assert_eq!(
        decide(learning, State::Learning, State::Stable, 13_000, &cfg()),
        Ok(FleetClock { state: State::Stable, state_since_ms: 13_000, ..learning })
    );
    assert_eq!(
        decide(learning, State::Learning, State::Stable, 12_000, &cfg()),
        Err(TransitionOutcome::NotDue(learning))
    );
    assert_eq!(
        decide(learning, State::Learning, State::Unstable, 13_000, &cfg()),
        Err(TransitionOutcome::NotDue(learning)),
        "due, but to another state"
    );
    let stable = learning.moved_to(State::Stable, 13_000);
    assert_eq!(decide(stable, State::Learning, State::Stable, 14_000, &cfg()), Err(TransitionOutcome::Adopted(stable)));
    assert_eq!(TransitionOutcome::Adopted(stable).clock(), stable);
}

#[test]
fn converts_to_the_core_clock() {
    let c = FleetClock { state: State::Stable, started_ms: 5, state_since_ms: 50, last_new_ms: Some(7) };
    let core = c.to_clock(12);
    assert_eq!(
        core,
        Clock {
            state: State::Stable,
            started_ms: 5,
            state_since_ms: 50,
            last_new_ms: Some(7),
            behaviours: 12,
            lost_events: 0
        }
    );
}
