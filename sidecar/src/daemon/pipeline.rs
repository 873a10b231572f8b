//! The event pipeline: a batch of events → attribution → learn or judge →
//! signals → one [`Batch`] committed in one store transaction (profile
//! changes, anomalies, signals and their change log, audit, outbox) → then,
//! and only then, published (feeds, telemetry, log lines, JSON output,
//! the source's known filter). Sequence numbers are handed out here, so
//! nothing needs repairing after a crash between two writes.

use std::io::Write as _;
use std::sync::Arc;

use telltale_core::detect::{Change, Container};
use telltale_core::event::Event;
use telltale_core::signal::{Signal, SignalChange};

use super::{Daemon, DaemonError, Discovery, EventSource};
use crate::store::{Batch, Outgoing};

/// Signals changed by a batch: each id once, created if any change created it.
#[derive(Debug, Default)]
pub(super) struct Touched(Vec<(String, bool)>);

impl Touched {
    pub(super) fn add(&mut self, id: String, created: bool) {
        match self.0.iter_mut().find(|(i, _)| *i == id) {
            Some((_, c)) => *c |= created,
            None => self.0.push((id, created)),
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|(i, _)| i == id)
    }
}

/// What a batch changed, gathered before it is committed.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// What the store writes.
    pub(super) batch: Batch,
    /// Anomalies with their sequence number and signal, to publish.
    anomalies: Vec<(crate::bus::Sequenced, String)>,
    /// Signals whose change is logged, streamed and notified.
    pub(super) changed: Touched,
    /// Signals that only gained folded behaviour: saved, not announced.
    folded: Touched,
    /// Dedup keys of behaviour judged known: the source may drop them.
    known: Vec<u64>,
    /// Behaviours in this batch were added by a person.
    pub(super) manual: bool,
    /// This batch applies the fleet's updates: nothing to publish back.
    pub(super) from_fleet: bool,
}

impl<S: EventSource, D: Discovery> Daemon<S, D> {
    /// Take in detector changes: anomalies get their sequence number and
    /// join their container's signal.
    pub(super) fn absorb(&mut self, p: &mut Pending, changes: Vec<Change>) {
        for change in changes {
            if let Change::Anomaly(a) = &change {
                self.sequences.anomaly += 1;
                let seq = self.sequences.anomaly;
                let (id, created) = self.signals.record(seq, a);
                p.batch.anomaly_sequences.push(seq);
                p.anomalies.push((Arc::new((seq, (**a).clone())), id.clone()));
                p.changed.add(id, created);
            }
            p.batch.changes.push(change);
        }
    }

    /// Containers that appeared or went away.
    pub(super) fn rescan(&mut self, now: i64) -> Result<(), DaemonError> {
        let mut pending = Pending::default();
        self.rescan_into(&mut pending, now);
        self.commit(pending, now)
    }

    fn rescan_into(&mut self, p: &mut Pending, now: i64) {
        let detector = &self.detector;
        let (found, aliases) = self.discovery.scan(&|id| detector.container(id).is_some());
        let (pod, namespace) = self.discovery.pod();
        let (pod, namespace) = (pod.to_owned(), namespace.to_owned());
        let mut changes = Vec::new();
        for f in found {
            let (id, image) = (&f.id, &f.image);
            tracing::info!(container = %id, name = %f.name, image = %image.short_name, tag = %image.tag, "Watching container.");
            let c = Container::new(id, &f.name, image, f.cgroup.id, now).in_pod(&pod, &namespace);
            changes.extend(self.detector.add_container(c, now));
        }
        let gone: Vec<u64> =
            self.detector.containers().map(|c| c.cgroup_id).filter(|id| !aliases.contains_key(id)).collect();
        for id in gone {
            self.detector.remove_container(id);
        }
        self.aliases = aliases;
        self.absorb(p, changes);
    }

    /// One read of the source: learn or judge every event, commit once.
    pub(super) fn on_events(&mut self, events: &mut Vec<Event>) -> Result<(), DaemonError> {
        if events.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut p = Pending::default();
        let mut rescanned = false;
        let mut folded = Vec::new();
        for mut event in events.drain(..) {
            if !self.aliases.contains_key(&event.cgroup_id) && !rescanned {
                // A container (or a nested cgroup) appeared since the last scan.
                self.rescan_into(&mut p, now);
                rescanned = true;
            }
            if let Some(&container) = self.aliases.get(&event.cgroup_id) {
                event.cgroup_id = container;
            }
            let outcome = self.detector.on_event(&event, now);
            if outcome.unattributed {
                tracing::debug!(cgroup_id = event.cgroup_id, "Event from no known container.");
            }
            if outcome.known && event.dedup_key != 0 {
                p.known.push(event.dedup_key);
            }
            self.absorb(&mut p, outcome.changes);
            folded.extend(outcome.folded);
        }
        // Each signal a folded behaviour touched, once, as it is now.
        for id in folded.iter().filter_map(|(c, o)| self.signals.fold(c, o)) {
            p.folded.add(id, false);
        }
        self.commit(p, now)
    }

    /// Complete the batch (signal saves, change log, notifications), write
    /// it in one transaction, then publish it.
    pub(super) fn commit(&mut self, mut p: Pending, now: i64) -> Result<(), DaemonError> {
        let changed: Vec<(Signal, bool)> =
            p.changed.0.iter().filter_map(|(id, c)| self.signals.get(id).map(|s| (s.clone(), *c))).collect();
        let folded: Vec<Signal> = p
            .folded
            .0
            .iter()
            .filter(|(id, _)| !p.changed.contains(id))
            .filter_map(|(id, _)| self.signals.get(id).cloned())
            .collect();
        let mut log = Vec::new();
        for (s, created) in &changed {
            self.sequences.signal_change += 1;
            log.push((self.sequences.signal_change, SignalChange { created: *created, signal: s.summary_copy() }));
        }
        p.batch.outbox = self.notifications(&changed)?;
        p.batch.signals = changed.iter().map(|(s, _)| s.clone()).chain(folded).collect();
        p.batch.signal_changes = log;
        p.batch.now_ms = now;
        if !p.batch.is_empty() {
            self.persist(&p.batch, now)?;
        }
        // Committed here first; then the fleet (queued durably there).
        if let Some(f) = self.fleet.as_ref().filter(|_| !p.from_fleet) {
            f.publish(super::fleet::behaviours_of(&p.batch.changes, p.manual));
        }
        self.published(p, &changed)
    }

    /// The messages of rules that want these signal changes.
    fn notifications(&self, changed: &[(Signal, bool)]) -> Result<Vec<Outgoing>, DaemonError> {
        let window = i64::try_from(self.cfg.notifications.rate_limit.as_millis()).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for (signal, created) in changed {
            for rule in self.rules.iter().filter(|r| r.wants(signal, *created)) {
                for (i, target) in rule.targets.iter().enumerate() {
                    // The first message about a signal says "created", even
                    // when updates were coalesced into it.
                    let first = !self.store.was_notified(&rule.id, i, &signal.id)?;
                    out.push(Outgoing {
                        rule_id: rule.id.clone(),
                        target: i,
                        signal_id: signal.id.clone(),
                        message: telltale_core::notify::render(rule, target, signal, first),
                        rate_limit_ms: window,
                    });
                }
            }
        }
        Ok(out)
    }

    /// After the commit: tell the log, the JSON output, telemetry, stream
    /// clients and the source what the batch changed.
    fn published(&mut self, p: Pending, changed: &[(Signal, bool)]) -> Result<(), DaemonError> {
        for (shared, signal) in &p.anomalies {
            let a = &shared.1;
            tracing::warn!(container = %a.container.id, image = %a.container.image, kind = a.event_type.name(), "Anomaly detected.");
            if let Some(out) = &mut self.out {
                let line = serde_json::to_string(a).unwrap_or_default();
                writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|source| DaemonError::Output {
                    path: self.cfg.anomalies_json.clone().unwrap_or_default(),
                    source,
                })?;
            }
            self.telemetry.anomaly(shared, signal);
        }
        for (s, created) in changed.iter().filter(|(_, c)| *c) {
            tracing::warn!(signal = %s.id, container = %s.container.id, created, "Signal opened.");
            self.telemetry.signal_opened(s);
        }
        // No receiver (no stream client) is fine.
        for (shared, _) in p.anomalies {
            let _ = self.feeds.anomalies.send(shared);
        }
        for change in p.batch.signal_changes {
            let _ = self.feeds.signals.send(Arc::new(change));
        }
        if !p.known.is_empty() && !self.known_map_full {
            if let Err(e) = self.source.mark_known(&p.known) {
                tracing::warn!(error = %e, "Kernel map of known behaviour is full: repeats reach user space.");
                self.known_map_full = true;
            }
        }
        Ok(())
    }
}
