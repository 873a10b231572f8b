//! Security profiles: the learned behaviour of one short image name, judged
//! and extended with plain values (no I/O, no clock: times are passed in).
//!
//! A profile is an activity tree: process nodes keyed by their executable
//! lineage (`nginx → sh → curl` is a different node from
//! `entrypoint.sh → curl`); under each node the file patterns (with the
//! access modes seen), DNS questions and endpoints it used. Paths are
//! generalized ([`generalize`]); executables, DNS names and endpoints are
//! exact.

pub mod document;
pub mod generalize;
pub mod lifecycle;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::event::{Access, Event, EventKind, Mechanism, Protocol};
use lifecycle::{Clock, LearningConfig, State};

/// The four event types a profile learns, each with its own lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Processes launched.
    Exec,
    /// Files opened.
    File,
    /// DNS names resolved.
    Dns,
    /// Endpoints connected to.
    Connect,
}

impl EventType {
    /// All types, in index order.
    pub const ALL: [EventType; 4] = [EventType::Exec, EventType::File, EventType::Dns, EventType::Connect];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Exec => "exec",
            EventType::File => "file",
            EventType::Dns => "dns",
            EventType::Connect => "connect",
        }
    }

    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Kernel records lost (ring buffer full) per event type since the last
/// tick: each type's learning is charged with its own losses only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lost([u64; 4]);

impl Lost {
    /// Add `n` records of type `t`.
    pub fn add(&mut self, t: EventType, n: u64) {
        self.0[t.index()] = self.0[t.index()].saturating_add(n);
    }

    /// Records of type `t`.
    pub fn get(&self, t: EventType) -> u64 {
        self.0[t.index()]
    }

    /// Nothing lost.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }

    /// Add every count of `other`.
    pub fn merge(&mut self, other: &Lost) {
        for t in EventType::ALL {
            self.add(t, other.get(t));
        }
    }

    /// `self - other` per type, never below zero.
    pub fn minus(&self, other: &Lost) -> Lost {
        let mut out = Lost::default();
        for t in EventType::ALL {
            out.add(t, self.get(t).saturating_sub(other.get(t)));
        }
        out
    }
}

/// The access bits of a file behaviour (stored as they are: keep the values).
pub mod access {
    use crate::event::Access;

    /// Opened for reading.
    pub const READ: u8 = 1;
    /// Opened for writing.
    pub const WRITE: u8 = 2;
    /// The open created the file.
    pub const CREATE: u8 = 4;
    /// The open truncated the file.
    pub const TRUNCATE: u8 = 8;

    /// The bit of one access mode.
    pub fn bit(a: Access) -> u8 {
        match a {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::Create => CREATE,
            Access::Truncate => TRUNCATE,
        }
    }
}

/// Access bits of a file behaviour ([`access`]).
pub fn access_bits(modes: &[Access]) -> u8 {
    modes.iter().fold(0, |b, a| b | access::bit(*a))
}

/// What a process did, as a profile sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Behaviour {
    /// The process node itself was launched.
    Exec,
    /// A file pattern opened with these access bits.
    File {
        /// Generalized path.
        pattern: String,
        /// Access bits ([`access_bits`]).
        access: u8,
    },
    /// A DNS question.
    Dns {
        /// Lower-case name.
        name: String,
        /// Query type.
        qtype: String,
    },
    /// An endpoint.
    Connect {
        /// Transport.
        protocol: Protocol,
        /// Address.
        address: IpAddr,
        /// Port.
        port: u16,
    },
    /// A range of endpoints (added by a person, never learned).
    ConnectRange {
        /// Transport.
        protocol: Protocol,
        /// Network.
        network: ipnet::IpNet,
        /// Port; 0 is any port.
        port: u16,
    },
    /// The process used a mechanism the other sensors cannot see through
    /// (io_uring). Judged with the process's exec type: how a program
    /// acts is part of what it is.
    Mechanism {
        /// Which.
        mechanism: Mechanism,
    },
}

/// A behaviour of one process node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Observation {
    /// Executable paths from the outermost ancestor to the process itself.
    pub lineage: Vec<String>,
    /// What it did.
    pub behaviour: Behaviour,
}

impl Observation {
    /// The observations an event stands for (one per DNS question).
    pub fn from_event(e: &Event) -> Vec<Observation> {
        let mut lineage = e.process.ancestors.clone();
        lineage.push(e.process.path.clone());
        let one = |behaviour| vec![Observation { lineage: lineage.clone(), behaviour }];
        match &e.kind {
            EventKind::Exec => one(Behaviour::Exec),
            EventKind::File { file } => one(Behaviour::File {
                pattern: generalize::path_pattern(&file.path),
                access: access_bits(&file.access),
            }),
            EventKind::Dns { dns } => dns
                .questions
                .iter()
                .map(|q| Observation {
                    lineage: lineage.clone(),
                    behaviour: Behaviour::Dns { name: q.name.clone(), qtype: q.qtype.clone() },
                })
                .collect(),
            EventKind::Connect { connect } => {
                one(Behaviour::Connect { protocol: connect.protocol, address: connect.address, port: connect.port })
            }
            EventKind::Mechanism { mechanism } => one(Behaviour::Mechanism { mechanism: *mechanism }),
        }
    }

    /// Its event type.
    pub fn event_type(&self) -> EventType {
        match self.behaviour {
            Behaviour::Exec | Behaviour::Mechanism { .. } => EventType::Exec,
            Behaviour::File { .. } => EventType::File,
            Behaviour::Dns { .. } => EventType::Dns,
            Behaviour::Connect { .. } | Behaviour::ConnectRange { .. } => EventType::Connect,
        }
    }
}

/// How an observation was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Already in the profile.
    Known,
    /// New, and added (learning, unstable type, or container warm-up).
    Learned,
    /// New while the type is stable: an anomaly. Not added.
    Anomaly,
}

/// A process node of the activity tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// When the node was first learned (ms).
    pub first_seen_ms: i64,
    /// When something was last learned under it (ms).
    pub last_seen_ms: i64,
    /// Image tags that contributed to it.
    pub tags: BTreeSet<String>,
    /// File pattern → access bits.
    pub files: HashMap<String, u8>,
    /// DNS (name, type).
    pub dns: HashSet<(String, String)>,
    /// (protocol, address, port).
    pub endpoints: HashSet<(Protocol, IpAddr, u16)>,
    /// (protocol, network, port or 0 for any).
    pub endpoint_ranges: BTreeSet<(Protocol, ipnet::IpNet, u16)>,
    /// Sibling shapes seen (see `generalize::sibling_pattern`): collapsed
    /// pattern → access bits of each distinct sibling; once there are
    /// `generalize::SIBLINGS` of them the pattern matches, with the access
    /// bits all of them had.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub shapes: HashMap<String, Vec<u8>>,
    /// Mechanisms used (io_uring).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub mechanisms: BTreeSet<Mechanism>,
}

/// The profile of one short image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Short image name.
    pub image: String,
    /// Tags (versions) seen.
    pub tags: BTreeSet<String>,
    nodes: HashMap<Vec<String>, Node>,
    clocks: [Clock; 4],
}

impl Profile {
    /// An empty profile whose types all start learning at `now_ms`.
    pub fn new(image: &str, now_ms: i64) -> Self {
        Self { image: image.to_owned(), tags: BTreeSet::new(), nodes: HashMap::new(), clocks: [Clock::new(now_ms); 4] }
    }

    /// Is this observation already in the profile?
    pub fn contains(&self, o: &Observation) -> bool {
        let Some(node) = self.nodes.get(&o.lineage) else {
            return false;
        };
        match &o.behaviour {
            Behaviour::Exec => true,
            Behaviour::File { pattern, access } => {
                node.files.get(pattern).is_some_and(|a| a & access == *access)
                    || generalize::sibling_pattern(pattern).and_then(|s| node.shapes.get(&s)).is_some_and(|seen| {
                        seen.len() >= generalize::SIBLINGS as usize && seen.iter().all(|a| a & access == *access)
                    })
            }
            Behaviour::Dns { name, qtype } => node.dns.contains(&(name.clone(), qtype.clone())),
            Behaviour::Connect { protocol, address, port } => {
                node.endpoints.contains(&(*protocol, *address, *port))
                    || node
                        .endpoint_ranges
                        .iter()
                        .any(|(p, net, rp)| p == protocol && (*rp == 0 || rp == port) && net.contains(address))
            }
            Behaviour::ConnectRange { protocol, network, port } => {
                node.endpoint_ranges.contains(&(*protocol, *network, *port))
            }
            Behaviour::Mechanism { mechanism } => node.mechanisms.contains(mechanism),
        }
    }

    /// Add an observation. Returns true if it was new. Counts it on its
    /// type's clock (restarting the quiet period while learning).
    pub fn add(&mut self, o: &Observation, tag: &str, now_ms: i64) -> bool {
        let added = self.insert(o, tag, now_ms);
        if added {
            self.clocks[o.event_type().index()].record_new(now_ms);
        }
        added
    }

    /// Add an observation on a person's request ("add to profile", "mark
    /// benign"): counted, but it does not restart the learning quiet period.
    pub fn add_manual(&mut self, o: &Observation, tag: &str, now_ms: i64) -> bool {
        let added = self.insert(o, tag, now_ms);
        if added {
            self.clocks[o.event_type().index()].behaviours += 1;
        }
        added
    }

    fn insert(&mut self, o: &Observation, tag: &str, now_ms: i64) -> bool {
        let new_node = !self.nodes.contains_key(&o.lineage);
        let node = self.nodes.entry(o.lineage.clone()).or_insert_with(|| Node {
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            ..Node::default()
        });
        let added = match &o.behaviour {
            Behaviour::Exec => new_node,
            Behaviour::File { pattern, access } => {
                let entry = node.files.entry(pattern.clone()).or_insert(0);
                let before = *entry;
                *entry |= access;
                if before == 0 {
                    if let Some(shape) = generalize::sibling_pattern(pattern) {
                        let seen = node.shapes.entry(shape).or_default();
                        if seen.len() < generalize::SIBLINGS as usize {
                            seen.push(*access);
                        }
                    }
                }
                *entry != before
            }
            Behaviour::Dns { name, qtype } => node.dns.insert((name.clone(), qtype.clone())),
            Behaviour::Connect { protocol, address, port } => node.endpoints.insert((*protocol, *address, *port)),
            Behaviour::ConnectRange { protocol, network, port } => {
                node.endpoint_ranges.insert((*protocol, *network, *port))
            }
            Behaviour::Mechanism { mechanism } => node.mechanisms.insert(*mechanism),
        };
        if added {
            node.last_seen_ms = now_ms;
            if !node.tags.contains(tag) {
                node.tags.insert(tag.to_owned());
            }
        }
        if !self.tags.contains(tag) {
            self.tags.insert(tag.to_owned());
        }
        added
    }

    /// Every behaviour in the profile: the exec of each process node, then
    /// its file patterns (with their access bits), DNS questions,
    /// endpoints, endpoint ranges and mechanisms. Adding them all to an empty profile
    /// gives this profile's tree back.
    pub fn observations(&self) -> Vec<Observation> {
        let mut out = Vec::new();
        let mut lineages: Vec<&Vec<String>> = self.nodes.keys().collect();
        // Ancestors first (shorter lineages), then by path: a stable order.
        lineages.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        for lineage in lineages {
            let node = &self.nodes[lineage];
            let obs = |behaviour| Observation { lineage: lineage.clone(), behaviour };
            out.push(obs(Behaviour::Exec));
            let mut files: Vec<_> = node.files.iter().collect();
            files.sort();
            out.extend(files.into_iter().map(|(p, a)| obs(Behaviour::File { pattern: p.clone(), access: *a })));
            let mut dns: Vec<_> = node.dns.iter().collect();
            dns.sort();
            out.extend(dns.into_iter().map(|(n, q)| obs(Behaviour::Dns { name: n.clone(), qtype: q.clone() })));
            let mut eps: Vec<_> = node.endpoints.iter().collect();
            eps.sort();
            out.extend(
                eps.into_iter().map(|(p, a, port)| obs(Behaviour::Connect { protocol: *p, address: *a, port: *port })),
            );
            out.extend(
                node.endpoint_ranges
                    .iter()
                    .map(|(p, n, port)| obs(Behaviour::ConnectRange { protocol: *p, network: *n, port: *port })),
            );
            out.extend(node.mechanisms.iter().map(|m| obs(Behaviour::Mechanism { mechanism: *m })));
        }
        out
    }

    /// Take another replica's clock of a type (the fleet decides the
    /// lifecycle), keeping this profile's own behaviour and lost-event
    /// counts. Returns true if the clock changed.
    pub fn adopt_clock(&mut self, t: EventType, c: Clock) -> bool {
        let local = &mut self.clocks[t.index()];
        let next = Clock { behaviours: local.behaviours, lost_events: local.lost_events, ..c };
        let changed = *local != next;
        *local = next;
        changed
    }

    /// Judge an observation, learning it unless it is an anomaly.
    /// `warmup`: the container is new, its start-up behaviour is learned.
    pub fn observe(&mut self, o: &Observation, tag: &str, now_ms: i64, warmup: bool) -> Verdict {
        if self.contains(o) {
            return Verdict::Known;
        }
        match self.clocks[o.event_type().index()].state {
            State::Stable if !warmup => Verdict::Anomaly,
            _ => {
                self.add(o, tag, now_ms);
                Verdict::Learned
            }
        }
    }

    /// Advance every type's lifecycle. Returns the types whose state changed.
    pub fn tick(&mut self, now_ms: i64, cfg: &LearningConfig) -> Vec<EventType> {
        EventType::ALL.into_iter().filter(|t| self.clocks[t.index()].tick(now_ms, cfg)).collect()
    }

    /// Count events lost while a type was learning, each type its own.
    pub fn add_lost_events(&mut self, lost: &Lost) {
        for t in EventType::ALL {
            let c = &mut self.clocks[t.index()];
            if c.state == State::Learning {
                c.lost_events = c.lost_events.saturating_add(lost.get(t));
            }
        }
    }

    /// The clock of a type.
    pub fn clock(&self, t: EventType) -> &Clock {
        &self.clocks[t.index()]
    }

    /// Replace the clock of a type (loading from the store).
    pub fn set_clock(&mut self, t: EventType, c: Clock) {
        self.clocks[t.index()] = c;
    }

    /// Process nodes by lineage.
    pub fn nodes(&self) -> &HashMap<Vec<String>, Node> {
        &self.nodes
    }

    /// Number of behaviours (nodes + files + names + endpoints + mechanisms).
    pub fn behaviour_count(&self) -> usize {
        self.nodes
            .values()
            .map(|n| 1 + n.files.len() + n.dns.len() + n.endpoints.len() + n.endpoint_ranges.len() + n.mechanisms.len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
