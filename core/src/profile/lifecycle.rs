//! The learning lifecycle of one event type of one profile.
//!
//! `learning` → `stable` once `min_duration` has passed since learning began
//! **and** no new behaviour of the type appeared for `stable_period`;
//! `learning` → `unstable` when `max_duration` passes first. Times are
//! milliseconds since the Unix epoch, passed in: no clock is read here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Durations of the lifecycle (configuration `learning.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningConfig {
    /// Least time in `learning`.
    #[serde(with = "humantime_serde")]
    pub min_duration: Duration,
    /// Quiet time (no new behaviour) needed to become `stable`.
    #[serde(with = "humantime_serde")]
    pub stable_period: Duration,
    /// Give up (`unstable`) after this long without becoming stable.
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// A new container's start-up behaviour is learned, not flagged, for this long.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            min_duration: crate::contract::LEARNING_MIN_DURATION,
            stable_period: Duration::from_secs(48 * 3600),
            max_duration: crate::contract::LEARNING_MAX_DURATION,
            warmup: Duration::from_secs(180),
        }
    }
}

/// State of one event type of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// New behaviour is added silently.
    Learning,
    /// New behaviour is an anomaly.
    Stable,
    /// Never settled within `max_duration`: no anomalies for this type.
    Unstable,
}

impl State {
    /// Every state.
    pub const ALL: [State; 3] = [State::Learning, State::Stable, State::Unstable];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            State::Learning => "learning",
            State::Stable => "stable",
            State::Unstable => "unstable",
        }
    }

    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "learning" => State::Learning,
            "stable" => State::Stable,
            "unstable" => State::Unstable,
            _ => return None,
        })
    }
}

/// The learning clock of one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Current state.
    pub state: State,
    /// When learning began (ms).
    pub started_ms: i64,
    /// When the current state was entered (ms).
    pub state_since_ms: i64,
    /// When a new behaviour was last added (ms).
    pub last_new_ms: Option<i64>,
    /// Behaviours of this type in the profile.
    pub behaviours: u64,
    /// Events lost (kernel ring buffer) while learning.
    pub lost_events: u64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Clock {
    /// A clock that starts learning at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            state: State::Learning,
            started_ms: now_ms,
            state_since_ms: now_ms,
            last_new_ms: None,
            behaviours: 0,
            lost_events: 0,
        }
    }

    /// A new behaviour was added at `now_ms`.
    pub fn record_new(&mut self, now_ms: i64) {
        self.behaviours += 1;
        if self.state == State::Learning {
            self.last_new_ms = Some(now_ms);
        }
    }

    /// Advance the state machine to `now_ms`. Returns true if the state changed.
    pub fn tick(&mut self, now_ms: i64, cfg: &LearningConfig) -> bool {
        if self.state != State::Learning {
            return false;
        }
        let elapsed = now_ms - self.started_ms;
        let quiet = now_ms - self.last_new_ms.unwrap_or(self.started_ms);
        let next = if elapsed >= ms(cfg.min_duration) && quiet >= ms(cfg.stable_period) {
            Some(State::Stable)
        } else if elapsed >= ms(cfg.max_duration) {
            Some(State::Unstable)
        } else {
            None
        };
        match next {
            Some(s) => {
                self.state = s;
                self.state_since_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// Milliseconds until `stable` if nothing new appears (None unless learning).
    pub fn time_left_ms(&self, now_ms: i64, cfg: &LearningConfig) -> Option<i64> {
        if self.state != State::Learning {
            return None;
        }
        let to_min = self.started_ms + ms(cfg.min_duration) - now_ms;
        let to_quiet = self.last_new_ms.unwrap_or(self.started_ms) + ms(cfg.stable_period) - now_ms;
        let to_max = self.started_ms + ms(cfg.max_duration) - now_ms;
        Some(to_min.max(to_quiet).min(to_max).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LearningConfig {
        LearningConfig {
            min_duration: Duration::from_secs(10),
            stable_period: Duration::from_secs(5),
            max_duration: Duration::from_secs(30),
            warmup: Duration::from_secs(0),
        }
    }

    #[test]
    fn becomes_stable_after_min_and_quiet_period() {
        let mut c = Clock::new(0);
        c.record_new(1_000);
        assert!(!c.tick(5_000, &cfg()));
        assert!(!c.tick(9_999, &cfg()), "min_duration not reached");
        assert_eq!(c.time_left_ms(9_999, &cfg()), Some(1));
        assert!(c.tick(10_000, &cfg()));
        assert_eq!(c.state, State::Stable);
        assert_eq!(c.state_since_ms, 10_000);
        assert!(!c.tick(99_000, &cfg()), "stable is final");
    }

    #[test]
    fn new_behaviour_restarts_the_quiet_period() {
        let mut c = Clock::new(0);
        c.record_new(9_000);
        assert!(!c.tick(12_000, &cfg()));
        assert_eq!(c.time_left_ms(12_000, &cfg()), Some(2_000));
        assert!(c.tick(14_000, &cfg()));
        assert_eq!(c.behaviours, 1);
    }

    #[test]
    fn noisy_type_becomes_unstable() {
        let mut c = Clock::new(0);
        let mut t = 0;
        while t < 30_000 {
            c.record_new(t);
            assert!(!c.tick(t, &cfg()) || c.state == State::Unstable);
            t += 1_000;
        }
        c.record_new(30_000);
        assert!(c.tick(30_000, &cfg()));
        assert_eq!(c.state, State::Unstable);
        assert_eq!(c.time_left_ms(30_000, &cfg()), None);
    }

    #[test]
    fn a_type_with_no_behaviour_settles_too() {
        let mut c = Clock::new(0);
        assert!(c.tick(10_000, &cfg()));
        assert_eq!(c.state, State::Stable);
    }

    #[test]
    fn durations_parse_as_humantime() {
        let c: LearningConfig =
            serde_json::from_str(r#"{"min_duration":"2s","stable_period":"1m","max_duration":"48h","warmup":"180s"}"#)
                .expect("parses");
        assert_eq!(c.stable_period, Duration::from_secs(60));
        assert_eq!(c.max_duration, Duration::from_secs(48 * 3600));
        let e = serde_json::from_str::<LearningConfig>(
            r#"{"min_duration":"2 parsecs","stable_period":"1m","max_duration":"48h","warmup":"1s"}"#,
        );
        assert!(e.is_err());
    }
}
