//! A fleet profile as read from etcd, and its conversion to the core
//! [`Profile`] the daemon's detector uses.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use telltale_core::detect::Change;
use telltale_core::profile::{Behaviour, EventType, Observation, Profile};

use crate::clock::FleetClock;

/// A behaviour to add to a fleet profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBehaviour {
    /// Short image name (the profile).
    pub image: String,
    /// Image tag that showed it.
    pub tag: String,
    /// What was seen.
    pub observation: Observation,
    /// When this replica first saw it (ms).
    pub seen_ms: i64,
    /// Added by a person ("add to profile", "mark benign", a suppression):
    /// stored, but it does not restart the learning quiet period.
    pub manual: bool,
}

impl NewBehaviour {
    /// The learned behaviours of a batch of detector changes
    /// ([`Change::Behaviour`]; the rest is local to the replica).
    pub fn learned_from(changes: &[Change]) -> Vec<NewBehaviour> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Behaviour { image, observation, tag, now_ms } => Some(NewBehaviour {
                    image: image.clone(),
                    tag: tag.clone(),
                    observation: observation.clone(),
                    seen_ms: *now_ms,
                    manual: false,
                }),
                _ => None,
            })
            .collect()
    }
}

/// A behaviour as the fleet stores it (the value of its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBehaviour {
    /// What was seen (a file behaviour carries one access bit).
    pub observation: Observation,
    /// Image tag that showed it first.
    pub tag: String,
    /// When it was first seen (ms).
    pub first_seen_ms: i64,
    /// The replica that stored it.
    pub writer: String,
    /// Added by a person, not learned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
}

/// One profile as etcd holds it at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSnapshot {
    /// Short image name.
    pub image: String,
    /// The etcd revision read.
    pub revision: i64,
    /// Every stored behaviour, one per key (file access bits separately).
    pub behaviours: Vec<StoredBehaviour>,
    /// The lifecycle of each event type that has a clock.
    pub clocks: BTreeMap<EventType, FleetClock>,
}

impl ProfileSnapshot {
    /// The core profile this stands for: every behaviour (file access bits
    /// merged per pattern), tags, node times, and the fleet clocks with
    /// their behaviour counts. Types without a stored clock start learning
    /// at the profile's start (`now_ms` for an empty profile).
    pub fn to_profile(&self, now_ms: i64) -> Profile {
        let started = self
            .clocks
            .values()
            .map(|c| c.started_ms)
            .chain(self.behaviours.iter().map(|b| b.first_seen_ms))
            .min()
            .unwrap_or(now_ms);
        let mut profile = Profile::new(&self.image, started);
        // Merge a file pattern's access bits (one key each) into one
        // observation, so sibling shapes see the union like a local profile.
        let mut merged: Vec<StoredBehaviour> = Vec::with_capacity(self.behaviours.len());
        let mut files: HashMap<(Vec<String>, String), usize> = HashMap::new();
        let mut sorted: Vec<&StoredBehaviour> = self.behaviours.iter().collect();
        // Execs first (a node is created by its exec), then by time.
        sorted.sort_by_key(|b| (b.observation.behaviour != Behaviour::Exec, b.first_seen_ms));
        for b in sorted {
            if let Behaviour::File { pattern, access } = &b.observation.behaviour {
                let k = (b.observation.lineage.clone(), pattern.clone());
                if let Some(&i) = files.get(&k) {
                    if let Behaviour::File { access: a, .. } = &mut merged[i].observation.behaviour {
                        *a |= access;
                    }
                    continue;
                }
                files.insert(k, merged.len());
            }
            merged.push(b.clone());
        }
        for b in &merged {
            profile.add_manual(&b.observation, &b.tag, b.first_seen_ms);
        }
        for (t, c) in &self.clocks {
            let count = profile.clock(*t).behaviours;
            profile.set_clock(*t, c.to_clock(count));
        }
        profile
    }
}

#[cfg(test)]
mod tests;
