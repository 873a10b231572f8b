//! What this replica knows of the fleet: the hash of every stored
//! behaviour (so repeating known behaviour writes nothing) and every clock
//! with its revision (the base of compare-and-swap). Kept current by the
//! watch and by this replica's own writes.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use telltale_core::profile::EventType;

use crate::clock::FleetClock;

/// A clock and the revision of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Versioned {
    /// The clock.
    pub clock: FleetClock,
    /// Revision of the clock key's last change.
    pub mod_revision: i64,
}

/// The value of a clock key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClockValue {
    /// The clock.
    #[serde(flatten)]
    pub clock: FleetClock,
    /// The replica that wrote this version.
    pub writer: String,
}

/// The replica's view of the fleet's keys.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    revision: i64,
    behaviours: HashMap<String, HashSet<String>>,
    clocks: HashMap<(String, EventType), Versioned>,
}

impl Mirror {
    /// An empty view at `revision`.
    pub(crate) fn at(revision: i64) -> Self {
        Self { revision, ..Self::default() }
    }

    /// The last revision applied.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// Record that everything up to `revision` was applied.
    pub(crate) fn advance(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// Is this behaviour stored?
    pub(crate) fn knows(&self, image: &str, hash: &str) -> bool {
        self.behaviours.get(image).is_some_and(|s| s.contains(hash))
    }

    /// Record a stored behaviour; true if it was not known.
    pub(crate) fn learn(&mut self, image: &str, hash: &str) -> bool {
        if self.knows(image, hash) {
            return false;
        }
        self.behaviours.entry(image.to_owned()).or_default().insert(hash.to_owned())
    }

    /// Forget a behaviour (its key was deleted).
    pub(crate) fn forget(&mut self, image: &str, hash: &str) {
        if let Some(s) = self.behaviours.get_mut(image) {
            s.remove(hash);
        }
    }

    /// A clock.
    pub(crate) fn clock(&self, image: &str, t: EventType) -> Option<Versioned> {
        self.clocks.get(&(image.to_owned(), t)).copied()
    }

    /// Record a clock unless a later version is known; true if it changed.
    pub(crate) fn set_clock(&mut self, image: &str, t: EventType, v: Versioned) -> bool {
        let slot = self.clocks.entry((image.to_owned(), t));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get().mod_revision >= v.mod_revision {
                    return false;
                }
                e.insert(v);
                true
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
                true
            }
        }
    }

    /// Forget a clock (its key was deleted).
    pub(crate) fn remove_clock(&mut self, image: &str, t: EventType) {
        self.clocks.remove(&(image.to_owned(), t));
    }

    /// Every clock.
    pub(crate) fn clocks(&self) -> impl Iterator<Item = (&str, EventType, Versioned)> {
        self.clocks.iter().map(|((i, t), v)| (i.as_str(), *t, *v))
    }
}

#[cfg(test)]
mod tests;
