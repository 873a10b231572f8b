//! The lifecycle of one (image, event type) on fleet time, and the pure
//! rules for changing it: learning start is the first behaviour anywhere,
//! "last new" only moves forward, and a transition is whatever
//! `telltale_core::profile::lifecycle` decides on the stored clock.

use serde::{Deserialize, Serialize};
use telltale_core::profile::lifecycle::{Clock, LearningConfig, State};

/// The fleet's clock of one event type of one profile (what the clock key
/// holds, without the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetClock {
    /// Current state, the same for every replica.
    pub state: State,
    /// When the profile's first behaviour was seen anywhere (ms).
    pub started_ms: i64,
    /// When the current state was entered (ms).
    pub state_since_ms: i64,
    /// The latest first-seen time of a behaviour of this type learned
    /// anywhere while learning (ms).
    pub last_new_ms: Option<i64>,
}

impl FleetClock {
    /// A clock learning since `started_ms`.
    pub fn learning_since(started_ms: i64) -> Self {
        Self { state: State::Learning, started_ms, state_since_ms: started_ms, last_new_ms: None }
    }

    /// The clock after behaviours first seen up to `last_ms` were added:
    /// None when nothing changes (not learning any more, or not later than
    /// what is stored). Like the local clock, only a learning type records
    /// new behaviour.
    pub fn with_new(self, last_ms: i64) -> Option<Self> {
        if self.state != State::Learning || self.last_new_ms.is_some_and(|l| l >= last_ms) {
            return None;
        }
        Some(Self { last_new_ms: Some(last_ms), ..self })
    }

    /// The core clock this stands for, with the number of behaviours of
    /// the type (counted from the profile) and no lost events (those are
    /// per replica).
    pub fn to_clock(self, behaviours: u64) -> Clock {
        Clock {
            state: self.state,
            started_ms: self.started_ms,
            state_since_ms: self.state_since_ms,
            last_new_ms: self.last_new_ms,
            behaviours,
            lost_events: 0,
        }
    }

    /// The state the core lifecycle moves this clock to at `at_ms`, if it
    /// moves.
    pub fn due(self, at_ms: i64, cfg: &LearningConfig) -> Option<State> {
        let mut c = self.to_clock(0);
        c.tick(at_ms, cfg).then_some(c.state)
    }

    /// This clock in state `to` from `at_ms`.
    pub fn moved_to(self, to: State, at_ms: i64) -> Self {
        Self { state: to, state_since_ms: at_ms, ..self }
    }
}

/// What a proposed transition came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// This replica wrote it; the clock is now this.
    Written(FleetClock),
    /// The stored clock had already left the `from` state (another replica
    /// moved it): adopt this.
    Adopted(FleetClock),
    /// The stored clock is in `from` but the lifecycle does not move it to
    /// `to` at that time (new behaviour arrived elsewhere): keep this.
    NotDue(FleetClock),
}

impl TransitionOutcome {
    /// The clock every replica now uses.
    pub fn clock(self) -> FleetClock {
        match self {
            TransitionOutcome::Written(c) | TransitionOutcome::Adopted(c) | TransitionOutcome::NotDue(c) => c,
        }
    }
}

/// Decide a proposed `from` → `to` at `at_ms` against the stored clock:
/// Ok(new clock) to write, or Err(outcome) when nothing is to be written.
pub(crate) fn decide(
    stored: FleetClock,
    from: State,
    to: State,
    at_ms: i64,
    cfg: &LearningConfig,
) -> Result<FleetClock, TransitionOutcome> {
    if stored.state != from {
        return Err(TransitionOutcome::Adopted(stored));
    }
    match stored.due(at_ms, cfg) {
        Some(s) if s == to => Ok(stored.moved_to(to, at_ms)),
        _ => Err(TransitionOutcome::NotDue(stored)),
    }
}

#[cfg(test)]
mod tests;
