//! Signals: anomalies grouped per container, with a status to triage and an
//! overview a responder can act on. Pure logic.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::detect::{Anomaly, Container};
use crate::event::EventKind;
use crate::profile::{Behaviour, EventType, Observation};

/// Anomalies kept in a signal (the first ones); later ones are counted and
/// streamed, not stored in the signal, so a flood (DNS exfiltration with
/// random names) cannot make every update cost more than the last.
pub const MAX_ENTRIES: usize = 200;

/// The rule every anomaly signal comes from.
pub const RULE_ID: &str = "anomaly_detection";

/// Triage status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// New, not looked at.
    Open,
    /// Someone is on it.
    UnderReview,
    /// Done (benign or handled). A new anomaly opens a new signal.
    Archived,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 3] = [Status::Open, Status::UnderReview, Status::Archived];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::UnderReview => "under_review",
            Status::Archived => "archived",
        }
    }

    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        [Status::Open, Status::UnderReview, Status::Archived].into_iter().find(|x| x.name() == s)
    }
}

/// Severity, from the anomalies' kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A new read of a file.
    Low,
    /// A new DNS name, endpoint or file write.
    Medium,
    /// A new process.
    High,
}

impl Severity {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    fn of(o: &Observation) -> Severity {
        match &o.behaviour {
            Behaviour::Exec => Severity::High,
            Behaviour::File { access, .. } if access & !crate::profile::access::READ == 0 => Severity::Low,
            _ => Severity::Medium,
        }
    }
}

/// One anomaly inside a signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Anomaly sequence number.
    pub sequence: u64,
    /// Anomaly id.
    pub anomaly_id: String,
    /// Event time (ms).
    pub time_ms: i64,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The behaviour (lineage + detail), what "mark benign" adds.
    pub observation: Observation,
    /// One readable line.
    pub summary: String,
    /// For a new process: what it did next (its library loads...), added
    /// with it when marked benign.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Observation>,
}

/// A signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Unique id.
    pub id: String,
    /// Always [`RULE_ID`].
    pub rule_id: String,
    /// Highest severity of its anomalies.
    pub severity: Severity,
    /// Triage status.
    pub status: Status,
    /// Who is on it.
    pub assignee: Option<String>,
    /// The container.
    pub container: Container,
    /// First anomaly time (ms).
    pub first_seen_ms: i64,
    /// Last anomaly time (ms).
    pub last_seen_ms: i64,
    /// Anomalies in chronological order (the first [`MAX_ENTRIES`]).
    pub entries: Vec<Entry>,
    /// All anomalies of the signal, stored in `entries` or not.
    #[serde(default)]
    pub anomaly_count: u64,
    /// Incremented on every change.
    pub version: u64,
}

/// The overview shown to a responder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Which container and image, how to evaluate it.
    pub what_happened: String,
    /// Inspect the profile, add to profile / archive, escalate.
    pub next_steps: Vec<String>,
    /// The anomaly events, in chronological order.
    pub events: Vec<String>,
}

/// One line about an anomaly, for people: every name the workload chose is
/// escaped ([`crate::text::escape`]).
fn summary(a: &Anomaly) -> String {
    crate::text::escape(&raw_summary(a)).into_owned()
}

fn raw_summary(a: &Anomaly) -> String {
    let p = &a.event.process;
    let lineage = a.observation.lineage.join(" -> ");
    match &a.event.kind {
        EventKind::Exec => format!("new process {} (args: {}) launched by {lineage}", p.path, p.args.join(" ")),
        EventKind::File { file } => {
            let access: Vec<&str> = file.access.iter().map(|x| x.name()).collect();
            format!("{lineage} opened {} ({}) for the first time", file.path, access.join(","))
        }
        EventKind::Dns { dns } => {
            let q: Vec<String> = dns.questions.iter().map(|q| format!("{} {}", q.name, q.qtype)).collect();
            format!("{lineage} resolved {} for the first time", q.join(", "))
        }
        EventKind::Connect { connect } => format!(
            "{lineage} connected to {}:{}/{} for the first time",
            connect.address, connect.port, connect.protocol
        ),
        EventKind::Mechanism { mechanism } => format!("{lineage} started using {mechanism}"),
    }
}

fn quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl Signal {
    /// Facet values for queries: `rule_id`, `severity`, `status`, `image`,
    /// `container`, `tag`, `type`, `assignee`.
    pub fn facet(&self, key: &str) -> Vec<String> {
        match key {
            "rule_id" => vec![self.rule_id.clone()],
            "severity" => vec![self.severity.name().to_owned()],
            "status" => vec![self.status.name().to_owned()],
            "image" | "container.image.name" => vec![self.container.image.clone()],
            "tag" | "version" => vec![self.container.tag.clone()],
            "container" | "container.id" => vec![self.container.id.clone(), self.container.name.clone()],
            "type" => self.entries.iter().map(|e| e.event_type.name().to_owned()).collect(),
            "assignee" => self.assignee.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// What happened, what to do, and the events.
    pub fn overview(&self) -> Overview {
        let c = &self.container;
        let kinds: Vec<&str> = {
            let mut k: Vec<&str> = self.entries.iter().map(|e| e.event_type.name()).collect();
            k.dedup();
            k
        };
        let esc = |s: &str| crate::text::escape(s).into_owned();
        let what_happened = format!(
            "Container {} ({}) of image {}:{} did {} thing(s) its security profile has never seen ({}). \
             Evaluate whether a person or a deployment explains them (a new release, a debug session); \
             if not, treat the container as compromised.",
            esc(&c.name),
            esc(&c.id),
            esc(&c.image),
            esc(&c.tag),
            self.entries.len(),
            kinds.join(", ")
        );
        let mut next_steps = vec![
            format!("Inspect the profile: telltalectl profile show {}", esc(&quote(&c.image))),
            format!("If expected, add it to the profile and archive: telltalectl signals benign {}", esc(&self.id)),
            format!("If not expected, take it on and escalate: telltalectl signals review {}", esc(&self.id)),
        ];
        for e in self.entries.iter().take(5) {
            if let Some(cmd) = add_command(&c.image, &e.observation) {
                next_steps.push(format!("Add only this behaviour: {}", esc(&cmd)));
            }
        }
        let more = self.anomaly_count.saturating_sub(self.entries.len() as u64);
        let mut events: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.time_ms) * 1_000_000)
                    .ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_default();
                format!("#{} {t} [{}] {}", e.sequence, e.event_type.name(), esc(&e.summary))
            })
            .collect();
        if more > 0 {
            events.push(format!(
                "... and {more} more anomalies: telltalectl watch --container {} --after {}",
                esc(&quote(&self.container.id)),
                self.entries.last().map_or(0, |e| e.sequence)
            ));
        }
        Overview { what_happened, next_steps, events }
    }
}

/// The `telltalectl profile add` command that adds one behaviour.
pub fn add_command(image: &str, o: &Observation) -> Option<String> {
    let (process, parents) = o.lineage.split_last()?;
    let parents: String = parents.iter().map(|p| format!(" --parent {}", quote(p))).collect();
    Some(match &o.behaviour {
        Behaviour::Exec => format!("telltalectl profile add {} --exec {}{parents}", quote(image), quote(process)),
        Behaviour::File { pattern, access } => format!(
            "telltalectl profile add {} --file {} --access {} --process {}{parents}",
            quote(image),
            quote(pattern),
            if access & crate::profile::access::WRITE != 0 {
                if access & crate::profile::access::READ != 0 {
                    "rw"
                } else {
                    "w"
                }
            } else {
                "r"
            },
            quote(process)
        ),
        Behaviour::Dns { name, qtype } => format!(
            "telltalectl profile add {} --dns {} --dns-type {} --process {}{parents}",
            quote(image),
            quote(name),
            quote(qtype),
            quote(process)
        ),
        Behaviour::Connect { protocol, address, port } => format!(
            "telltalectl profile add {} --connect {}:{port}/{protocol} --process {}{parents}",
            quote(image),
            if address.is_ipv6() { format!("[{address}]") } else { address.to_string() },
            quote(process)
        ),
        Behaviour::ConnectRange { protocol, network, port } => format!(
            "telltalectl profile add {} --connect {network}:{port}/{protocol} --process {}{parents}",
            quote(image),
            quote(process)
        ),
        Behaviour::Mechanism { mechanism } => format!(
            "telltalectl profile add {} --mechanism {mechanism} --process {}{parents}",
            quote(image),
            quote(process)
        ),
    })
}

/// Only reached if an id just recorded vanished: an empty placeholder.
fn unreachable_signal(id: &str) -> Signal {
    Signal {
        id: id.to_owned(),
        rule_id: RULE_ID.to_owned(),
        severity: Severity::Low,
        status: Status::Open,
        assignee: None,
        container: Container::new(
            "",
            "",
            &crate::workload::image::ImageRef {
                short_name: String::new(),
                repository: String::new(),
                tag: String::new(),
            },
            0,
            0,
        ),
        first_seen_ms: 0,
        last_seen_ms: 0,
        entries: Vec::new(),
        anomaly_count: 0,
        version: 0,
    }
}

impl Signal {
    /// The signal without its entries (summaries, the change log).
    pub fn summary_copy(&self) -> Signal {
        Signal {
            id: self.id.clone(),
            rule_id: self.rule_id.clone(),
            severity: self.severity,
            status: self.status,
            assignee: self.assignee.clone(),
            container: self.container.clone(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            entries: Vec::new(),
            anomaly_count: self.anomaly_count.max(self.entries.len() as u64),
            version: self.version,
        }
    }
}

/// An entry's observation followed by its related ones.
fn with_related(e: &Entry) -> impl Iterator<Item = Observation> + '_ {
    std::iter::once(e.observation.clone()).chain(e.related.iter().cloned())
}

/// Why a signal update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// No such signal.
    #[error("no signal {0:?}")]
    NotFound(String),
    /// Anomaly ids given for "mark benign" that the signal does not hold.
    #[error("signal {signal} has no anomaly {anomaly:?}")]
    NoSuchAnomaly {
        /// The signal.
        signal: String,
        /// The id.
        anomaly: String,
    },
}

/// All signals, and the open one per container.
#[derive(Debug, Default)]
pub struct Signals {
    by_id: HashMap<String, Signal>,
    open: HashMap<String, String>,
}

impl Signals {
    /// From stored signals.
    pub fn new(stored: Vec<Signal>) -> Self {
        let mut s = Signals::default();
        for sig in stored {
            if sig.status != Status::Archived {
                s.open.insert(sig.container.id.clone(), sig.id.clone());
            }
            s.by_id.insert(sig.id.clone(), sig);
        }
        s
    }

    /// Add an anomaly: to the container's open signal, or a new one.
    /// Returns the signal after the change and whether it was created.
    pub fn on_anomaly(&mut self, sequence: u64, a: &Anomaly) -> (Signal, bool) {
        let (id, created) = self.record(sequence, a);
        (self.by_id.get(&id).cloned().unwrap_or_else(|| unreachable_signal(&id)), created)
    }

    /// [`Signals::on_anomaly`] without the copy: returns the signal id.
    pub fn record(&mut self, sequence: u64, a: &Anomaly) -> (String, bool) {
        let entry = Entry {
            sequence,
            anomaly_id: a.id.clone(),
            time_ms: a.time_ms,
            event_type: a.event_type,
            observation: a.observation.clone(),
            summary: summary(a),
            related: Vec::new(),
        };
        let severity = Severity::of(&a.observation);
        if let Some(s) = self.open.get(&a.container.id).and_then(|id| self.by_id.get_mut(id)) {
            if s.entries.len() < MAX_ENTRIES {
                s.entries.push(entry);
            }
            s.anomaly_count = s.anomaly_count.max(s.entries.len() as u64 - 1) + 1;
            s.severity = s.severity.max(severity);
            s.last_seen_ms = s.last_seen_ms.max(a.time_ms);
            s.version += 1;
            return (s.id.clone(), false);
        }
        let s = Signal {
            id: format!("sig-{}-{sequence}", a.container.id),
            rule_id: RULE_ID.to_owned(),
            severity,
            status: Status::Open,
            assignee: None,
            container: a.container.clone(),
            first_seen_ms: a.time_ms,
            last_seen_ms: a.time_ms,
            entries: vec![entry],
            anomaly_count: 1,
            version: 1,
        };
        let id = s.id.clone();
        self.open.insert(a.container.id.clone(), id.clone());
        self.by_id.insert(id.clone(), s);
        (id, true)
    }

    /// Attach behaviour folded into an exec anomaly to that anomaly's entry
    /// in the container's open signal. Returns the signal's id if it changed.
    pub fn fold(&mut self, container_id: &str, o: &Observation) -> Option<String> {
        const MAX_RELATED: usize = 4096;
        let s = self.open.get(container_id).and_then(|id| self.by_id.get_mut(id))?;
        let entry = s
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.observation.behaviour == Behaviour::Exec && e.observation.lineage == o.lineage)?;
        if entry.related.len() >= MAX_RELATED || entry.related.contains(o) {
            return None;
        }
        entry.related.push(o.clone());
        s.version += 1;
        Some(s.id.clone())
    }

    /// A signal by id.
    pub fn get(&self, id: &str) -> Option<&Signal> {
        self.by_id.get(id)
    }

    /// All signals, newest first.
    pub fn all(&self) -> Vec<&Signal> {
        let mut v: Vec<&Signal> = self.by_id.values().collect();
        v.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then(b.id.cmp(&a.id)));
        v
    }

    /// Change status and/or assignee. Returns (before, after).
    pub fn update(
        &mut self,
        id: &str,
        status: Option<Status>,
        assignee: Option<String>,
    ) -> Result<(Signal, Signal), UpdateError> {
        let s = self.by_id.get_mut(id).ok_or_else(|| UpdateError::NotFound(id.to_owned()))?;
        let before = s.clone();
        if let Some(st) = status {
            s.status = st;
        }
        if let Some(a) = assignee {
            s.assignee = if a.is_empty() { None } else { Some(a) };
        }
        if *s != before {
            s.version += 1;
        }
        let after = s.clone();
        match after.status {
            Status::Archived => {
                if self.open.get(&after.container.id) == Some(&after.id) {
                    self.open.remove(&after.container.id);
                }
            }
            _ => {
                self.open.insert(after.container.id.clone(), after.id.clone());
            }
        }
        Ok((before, after))
    }

    /// The observations to add for "mark benign": all of the signal's, or
    /// those of the given anomaly ids.
    pub fn benign_observations(&self, id: &str, anomaly_ids: &[String]) -> Result<Vec<Observation>, UpdateError> {
        let s = self.by_id.get(id).ok_or_else(|| UpdateError::NotFound(id.to_owned()))?;
        if anomaly_ids.is_empty() {
            return Ok(s.entries.iter().flat_map(with_related).collect());
        }
        let mut out = Vec::new();
        for aid in anomaly_ids {
            let e = s
                .entries
                .iter()
                .find(|e| &e.anomaly_id == aid)
                .ok_or_else(|| UpdateError::NoSuchAnomaly { signal: id.to_owned(), anomaly: aid.clone() })?;
            out.extend(with_related(e));
        }
        Ok(out)
    }
}

/// A signal change, as streamed: the signal after the change.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignalChange {
    /// The signal was created by this change.
    pub created: bool,
    /// The signal after it.
    pub signal: Signal,
}

#[cfg(test)]
mod tests;
