//! Detection: attribute events to containers, learn or judge them against
//! their image's profile, and say what to persist. Pure logic over plain
//! values; the daemon (`run`) does the I/O.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::profile::lifecycle::{Clock, LearningConfig};
use crate::profile::{Behaviour, EventType, Node, Observation, Profile, Verdict};
use crate::workload::image::ImageRef;

/// A container: a cgroup under the pod cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Container id (the cgroup directory name, or the runtime's id).
    pub id: String,
    /// Container name.
    pub name: String,
    /// Short image name (the profile).
    pub image: String,
    /// Image tag (the profile version).
    pub tag: String,
    /// Image repository without tag or digest (empty in records from
    /// before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// When telltale first saw it (ms): warm-up counts from here.
    pub first_seen_ms: i64,
    /// Kubernetes pod name (empty outside Kubernetes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// Kubernetes namespace (empty outside Kubernetes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Container {
    /// A container of `image` seen first at `now_ms`.
    pub fn new(id: &str, name: &str, image: &ImageRef, cgroup_id: u64, now_ms: i64) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            image: image.short_name.clone(),
            tag: image.tag.clone(),
            repository: image.repository.clone(),
            cgroup_id,
            first_seen_ms: now_ms,
            pod: String::new(),
            namespace: String::new(),
        }
    }

    /// The same container, in Kubernetes pod `namespace/pod`.
    pub fn in_pod(mut self, pod: &str, namespace: &str) -> Self {
        pod.clone_into(&mut self.pod);
        namespace.clone_into(&mut self.namespace);
        self
    }
}

/// Behaviour a stable profile has never seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Unique id.
    pub id: String,
    /// Event time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub time: time::OffsetDateTime,
    /// Event time (ms since the epoch).
    pub time_ms: i64,
    /// Where it happened.
    pub container: Container,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Profile version (image tag) it was judged against.
    pub profile_version: String,
    /// The behaviour, as the profile sees it (lineage + detail).
    pub observation: Observation,
    /// The event as observed (process with args and lineage, raw path...).
    pub event: Event,
}

/// Something to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A behaviour was added to a profile.
    Behaviour {
        /// Short image name.
        image: String,
        /// What was added.
        observation: Observation,
        /// Image tag that showed it.
        tag: String,
        /// When.
        now_ms: i64,
    },
    /// A profile's tags changed (or it was created).
    Profile {
        /// Short image name.
        image: String,
        /// All tags.
        tags: Vec<String>,
    },
    /// A learning clock changed.
    Clock {
        /// Short image name.
        image: String,
        /// Event type.
        event_type: EventType,
        /// The clock.
        clock: Clock,
    },
    /// An anomaly to record and report.
    Anomaly(Box<Anomaly>),
}

/// The outcome of one event.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What to persist.
    pub changes: Vec<Change>,
    /// The event's behaviour is (now) in the profile: the kernel may drop
    /// its repeats.
    pub known: bool,
    /// The event came from no known container.
    pub unattributed: bool,
    /// Behaviour folded into an exec anomaly of this container: (container
    /// id, observation). "Mark benign" of that exec adds these too.
    pub folded: Vec<(String, Observation)>,
}

/// Profiles per image, containers per cgroup, and what was reported.
#[derive(Debug)]
pub struct Detector {
    cfg: LearningConfig,
    profiles: HashMap<String, Profile>,
    containers: HashMap<u64, Container>,
    reported: reported::Reported,
    next_id: u64,
    suppressions: Vec<crate::suppress::Suppression>,
    /// (container, lineage) of execs a suppression covered: what those
    /// processes do is covered too.
    suppressed: HashSet<(String, Vec<String>)>,
    /// States change only by [`Detector::adopt_clock`] (fleet profiles).
    external_lifecycle: bool,
    /// Process nodes added by hand alone: their first run is learned.
    first_runs: first_run::FirstRuns,
}

impl Detector {
    /// A detector over stored profiles and already reported anomalies.
    pub fn new(cfg: LearningConfig, profiles: Vec<Profile>, reported: Vec<(String, Observation)>) -> Self {
        Self {
            cfg,
            profiles: profiles.into_iter().map(|p| (p.image.clone(), p)).collect(),
            containers: HashMap::new(),
            reported: {
                let mut r = reported::Reported::new(reported::MAX_REPORTED);
                for k in reported {
                    r.insert(k);
                }
                r
            },
            next_id: 0,
            suppressions: Vec::new(),
            suppressed: HashSet::new(),
            external_lifecycle: false,
            first_runs: first_run::FirstRuns::default(),
        }
    }

    /// Replace the suppression rules.
    pub fn set_suppressions(&mut self, rules: Vec<crate::suppress::Suppression>) {
        self.suppressions = rules;
    }

    /// (container, behaviour) pairs remembered as reported, and how many
    /// were forgotten to stay under [`MAX_REPORTED`] (one that comes back
    /// is reported again).
    pub fn reported(&self) -> (usize, u64) {
        (self.reported.len(), self.reported.forgotten)
    }

    /// The learning configuration.
    pub fn config(&self) -> &LearningConfig {
        &self.cfg
    }

    /// A profile by short image name.
    pub fn profile(&self, image: &str) -> Option<&Profile> {
        self.profiles.get(image)
    }

    /// All profiles.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The container of a cgroup id.
    pub fn container(&self, cgroup_id: u64) -> Option<&Container> {
        self.containers.get(&cgroup_id)
    }

    /// Containers known.
    pub fn containers(&self) -> impl Iterator<Item = &Container> {
        self.containers.values()
    }

    /// Register a container (a new image gets a new profile, learning from now).
    pub fn add_container(&mut self, c: Container, now_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        self.profile_with_tag(&c.image, Some(&c.tag), now_ms, &mut changes);
        self.containers.insert(c.cgroup_id, c);
        changes
    }

    /// The profile of `image`, created (learning from `now_ms`) if missing,
    /// with `tag` among its tags; what that changed goes to `changes`.
    fn profile_with_tag(
        &mut self,
        image: &str,
        tag: Option<&str>,
        now_ms: i64,
        changes: &mut Vec<Change>,
    ) -> &mut Profile {
        let before = changes.len();
        let profile = self.profiles.entry(image.to_owned()).or_insert_with(|| {
            let p = Profile::new(image, now_ms);
            for t in EventType::ALL {
                changes.push(Change::Clock { image: image.to_owned(), event_type: t, clock: *p.clock(t) });
            }
            p
        });
        if tag.is_some_and(|t| profile.tags.insert(t.to_owned())) || changes.len() > before {
            changes.push(Change::Profile { image: image.to_owned(), tags: profile.tags.iter().cloned().collect() });
        }
        profile
    }

    /// The lifecycle is decided elsewhere (the fleet's clocks): [`tick`]
    /// then only counts lost events, and states change by [`adopt_clock`].
    ///
    /// [`tick`]: Detector::tick
    /// [`adopt_clock`]: Detector::adopt_clock
    pub fn set_external_lifecycle(&mut self, external: bool) {
        self.external_lifecycle = external;
    }

    /// Take in a behaviour another replica of the fleet stored: added to
    /// the image's profile (created if missing) without restarting the
    /// quiet period; nothing if already known.
    pub fn adopt_behaviour(&mut self, image: &str, o: &Observation, tag: &str, first_seen_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let profile = self.profile_with_tag(image, Some(tag), first_seen_ms, &mut changes);
        if profile.add_manual(o, tag, first_seen_ms) {
            changes.push(Change::Behaviour {
                image: image.to_owned(),
                observation: o.clone(),
                tag: tag.to_owned(),
                now_ms: first_seen_ms,
            });
            let t = o.event_type();
            changes.push(Change::Clock { image: image.to_owned(), event_type: t, clock: *profile.clock(t) });
        }
        changes
    }

    /// Take in the fleet's clock of an image's type (its state, learning
    /// start and last new behaviour); the profile is created if missing.
    pub fn adopt_clock(&mut self, image: &str, t: EventType, clock: Clock, now_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let profile = match self.profiles.get_mut(image) {
            Some(p) => p,
            None => self.profile_with_tag(image, None, now_ms, &mut changes),
        };
        if profile.adopt_clock(t, clock) {
            changes.push(Change::Clock { image: image.to_owned(), event_type: t, clock: *profile.clock(t) });
        }
        changes
    }

    /// Forget a container whose cgroup is gone.
    pub fn remove_container(&mut self, cgroup_id: u64) -> Option<Container> {
        self.containers.remove(&cgroup_id)
    }

    /// Learn or judge one event.
    pub fn on_event(&mut self, event: &Event, now_ms: i64) -> Outcome {
        let Some(container) = self.containers.get(&event.cgroup_id) else {
            return Outcome { unattributed: true, ..Outcome::default() };
        };
        let Some(profile) = self.profiles.get_mut(&container.image) else {
            return Outcome { unattributed: true, ..Outcome::default() };
        };
        let warmup = now_ms - container.first_seen_ms < ms(self.cfg.warmup);
        let time_ms = crate::clock::unix_ms(event.time);
        let mut out = Outcome { known: true, ..Outcome::default() };
        for o in Observation::from_event(event) {
            let pid = event.process.pid;
            self.first_runs.seen(&container.image, &container.id, &o.lineage, pid, now_ms);
            match profile.observe(&o, &container.tag, now_ms, warmup) {
                Verdict::Known => {}
                Verdict::Learned => {
                    let t = o.event_type();
                    out.changes.push(Change::Behaviour {
                        image: container.image.clone(),
                        observation: o,
                        tag: container.tag.clone(),
                        now_ms,
                    });
                    out.changes.push(Change::Clock {
                        image: container.image.clone(),
                        event_type: t,
                        clock: *profile.clock(t),
                    });
                }
                Verdict::Anomaly => {
                    let node = (container.id.clone(), o.lineage.clone());
                    let covered = self.suppressed.contains(&node)
                        || self.suppressions.iter().any(|r| r.matches(&container.image, &o))
                        || (o.behaviour != Behaviour::Exec
                            && self.first_runs.learns(&container.image, &container.id, &o.lineage, pid, now_ms));
                    if covered {
                        // Suppressed, or the first run of a process node
                        // added by hand: learned instead of reported.
                        if o.behaviour == Behaviour::Exec {
                            self.suppressed.insert(node);
                        }
                        let t = o.event_type();
                        profile.add_manual(&o, &container.tag, now_ms);
                        out.changes.push(Change::Clock {
                            image: container.image.clone(),
                            event_type: t,
                            clock: *profile.clock(t),
                        });
                        out.changes.push(Change::Behaviour {
                            image: container.image.clone(),
                            observation: o,
                            tag: container.tag.clone(),
                            now_ms,
                        });
                        continue;
                    }
                    out.known = false;
                    // What a process reported as a new exec does next belongs to
                    // that anomaly: its library loads are not anomalies of their own.
                    let exec = Observation { lineage: o.lineage.clone(), behaviour: Behaviour::Exec };
                    if o.behaviour != Behaviour::Exec && self.reported.contains(&(container.id.clone(), exec)) {
                        out.folded.push((container.id.clone(), o));
                        continue;
                    }
                    let key = (container.id.clone(), o);
                    if self.reported.contains(&key) {
                        continue;
                    }
                    let (_, o) = key.clone();
                    self.reported.insert(key);
                    self.next_id += 1;
                    out.changes.push(Change::Anomaly(Box::new(Anomaly {
                        id: format!("{:x}-{:x}-{:x}", time_ms, event.cgroup_id, self.next_id),
                        time: event.time,
                        time_ms,
                        container: container.clone(),
                        event_type: o.event_type(),
                        profile_version: container.tag.clone(),
                        observation: o,
                        event: event.clone(),
                    })));
                }
            }
        }
        out
    }

    /// Add behaviours to a profile on a person's request. Returns (added,
    /// already known) and what to persist, or None for an unknown profile.
    pub fn add_to_profile(
        &mut self,
        image: &str,
        observations: &[Observation],
        now_ms: i64,
    ) -> Option<(u32, u32, Vec<Change>)> {
        let mut changes = Vec::new();
        if !self.profiles.contains_key(image) {
            // A profile that does not exist yet is created only for a request
            // that names the process node (exec) of every lineage it adds to,
            // as an imported profile document does (`telltalectl profile
            // import`): a file, DNS name or endpoint alone needs a profile.
            let execs: HashSet<&Vec<String>> =
                observations.iter().filter(|o| o.behaviour == Behaviour::Exec).map(|o| &o.lineage).collect();
            if observations.is_empty() || !observations.iter().all(|o| execs.contains(&o.lineage)) {
                return None;
            }
            let mut p = Profile::new(image, now_ms);
            p.tags.insert("latest".to_owned());
            changes.push(Change::Profile { image: image.to_owned(), tags: p.tags.iter().cloned().collect() });
            for t in EventType::ALL {
                changes.push(Change::Clock { image: image.to_owned(), event_type: t, clock: *p.clock(t) });
            }
            self.profiles.insert(image.to_owned(), p);
        }
        let profile = self.profiles.get_mut(image)?;
        let tag = profile.tags.iter().next_back().cloned().unwrap_or_else(|| "latest".to_owned());
        let (mut added, mut known) = (0, 0);
        let mut new_execs = Vec::new();
        for o in observations {
            if profile.add_manual(o, &tag, now_ms) {
                added += 1;
                if o.behaviour == Behaviour::Exec {
                    new_execs.push(&o.lineage);
                }
                changes.push(Change::Behaviour {
                    image: image.to_owned(),
                    observation: o.clone(),
                    tag: tag.clone(),
                    now_ms,
                });
                changes.push(Change::Clock {
                    image: image.to_owned(),
                    event_type: o.event_type(),
                    clock: *profile.clock(o.event_type()),
                });
            } else {
                known += 1;
            }
        }
        // A process node added alone (nothing it does, in this request or
        // before): its first run is learned, within bounds (`first_run`).
        for lineage in new_execs {
            if profile.nodes().get(lineage).is_some_and(does_nothing) {
                self.first_runs.arm(image, lineage);
            }
        }
        Some((added, known, changes))
    }

    /// Advance every profile's lifecycle; `lost` records were lost by the
    /// kernel since the last tick (each type counted on its own clock,
    /// while it still learns).
    /// Records lost at the source are charged to the profile of the
    /// container they came from; those whose container is unknown, to every
    /// profile (a learning profile cannot be told it saw everything when it
    /// may not have).
    pub fn tick(&mut self, now_ms: i64, lost: &LostRecords) -> Vec<Change> {
        let mut by_image: HashMap<&str, crate::profile::Lost> = HashMap::new();
        let mut everyone = lost.unattributed;
        for (cgroup_id, l) in &lost.by_cgroup {
            match self.containers.get(cgroup_id) {
                Some(c) => by_image.entry(c.image.as_str()).or_default().merge(l),
                None => everyone.merge(l),
            }
        }
        let by_image: HashMap<String, crate::profile::Lost> =
            by_image.into_iter().map(|(image, l)| (image.to_owned(), l)).collect();
        let mut changes = Vec::new();
        for p in self.profiles.values_mut() {
            let mut lost = everyone;
            if let Some(l) = by_image.get(&p.image) {
                lost.merge(l);
            }
            let lost = &lost;
            p.add_lost_events(lost);
            let changed = if self.external_lifecycle { Vec::new() } else { p.tick(now_ms, &self.cfg) };
            for t in EventType::ALL {
                if lost.get(t) > 0 || changed.contains(&t) {
                    changes.push(Change::Clock { image: p.image.clone(), event_type: t, clock: *p.clock(t) });
                }
            }
        }
        changes
    }
}

/// Records lost at the source since the last tick, by where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LostRecords {
    /// By the cgroup id of the container they came from.
    pub by_cgroup: Vec<(u64, crate::profile::Lost)>,
    /// Whose container could not be told.
    pub unattributed: crate::profile::Lost,
}

/// A process node with nothing it does: its exec alone.
fn does_nothing(n: &Node) -> bool {
    n.files.is_empty() && n.dns.is_empty() && n.endpoints.is_empty() && n.endpoint_ranges.is_empty()
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

mod first_run;
mod reported;
pub use first_run::{MAX_LEARNED as FIRST_RUN_MAX_LEARNED, WINDOW_MS as FIRST_RUN_WINDOW_MS};
pub use reported::MAX_REPORTED;

#[cfg(test)]
mod tests;
