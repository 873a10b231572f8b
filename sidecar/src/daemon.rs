//! The daemon loop: one owner for the detector, the signals, the rules and
//! every store write. Events come from an [`EventSource`] (the kernel ring
//! buffer, or a replay in tests) and containers from a [`Discovery`]; the
//! [`pipeline`] turns each batch of events into one [`Batch`] persisted in
//! one transaction, then publishes it (feeds, telemetry, JSON output); the
//! [`commands`] answer the API's requests through the same path.

pub mod backlog;
pub mod commands;
pub mod fleet;
pub mod pipeline;
pub mod source;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use telltale_core::detect::Detector;
use telltale_core::notify::Rule;
use telltale_core::profile::{EventType, Lost};
use telltale_core::signal::Signals;
use telltale_core::suppress::Suppression;
use tokio::sync::mpsc;

use crate::bus::{Command, Feeds};
use crate::config::Config;
use crate::sensor::{Counters, SensorError};
use crate::store::{Sequences, Store, StoreError};
use crate::telemetry::Telemetry;
pub use source::{Discovery, EventSource};

/// Meta key under which the daemon saves the sensors' counters every second.
pub const SENSOR_COUNTERS: &str = "sensor_counters";

/// Why the daemon loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The event source failed.
    #[error(transparent)]
    Source(#[from] SensorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The watched cgroup is gone.
    #[error(transparent)]
    WatchLost(#[from] source::WatchLost),
    /// The anomalies output could not be written.
    #[error("anomalies output {path}")]
    Output {
        /// The path (`-` for stdout).
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A write refused because the disk is full is not a reason to stop (the
/// store is intact; what matters waits in the backlog): None.
fn full_is_not_fatal<T>(r: Result<T, StoreError>) -> Result<Option<T>, DaemonError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Full { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The next fleet update; pending forever without a fleet.
async fn fleet_update(fleet: &mut Option<fleet::FleetLink>) -> telltale_fleet::Update {
    match fleet {
        Some(f) => f.next().await,
        None => std::future::pending().await,
    }
}

/// Milliseconds since the epoch, as the daemon reads them (a test may
/// drive its own clock).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The daemon's state and its I/O edges.
pub struct Daemon<S, D> {
    cfg: Config,
    store: Store,
    detector: Detector,
    source: S,
    discovery: D,
    aliases: HashMap<u64, u64>,
    out: Option<Box<dyn Write + Send>>,
    /// Lost records seen so far: exec, file, dns, connect, exit.
    lost_seen: [u64; 5],
    /// The kernel's cumulative per-cgroup loss counts at the last tick.
    lost_seen_by_cgroup: HashMap<u64, Lost>,
    known_map_full: bool,
    feeds: Feeds,
    ticks: u64,
    signals: Signals,
    rules: Vec<Rule>,
    suppressions: Vec<Suppression>,
    telemetry: Telemetry,
    sequences: Sequences,
    clock: Clock,
    fleet: Option<fleet::FleetLink>,
    /// What a full disk kept from the store, waiting to be written.
    backlog: backlog::Backlog,
}

impl<S, D> std::fmt::Debug for Daemon<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("data_dir", &self.cfg.data_dir)
            .field("containers", &self.aliases.len())
            .field("sequences", &self.sequences)
            .finish_non_exhaustive()
    }
}

/// What a daemon is made of, besides its store's contents.
pub struct Parts<S, D> {
    /// The configuration.
    pub cfg: Config,
    /// The open store (profiles, signals, rules... are loaded from it).
    pub store: Store,
    /// Where events come from.
    pub source: S,
    /// Where containers come from.
    pub discovery: D,
    /// The live feeds the API streams follow.
    pub feeds: Feeds,
    /// Metrics and traces.
    pub telemetry: Telemetry,
    /// Anomalies as JSON lines (`--anomalies-json`), if asked for.
    pub out: Option<Box<dyn Write + Send>>,
    /// The wall clock.
    pub clock: Clock,
    /// Fleet-wide profiles, if configured.
    pub fleet: Option<fleet::FleetLink>,
}

impl<S, D> std::fmt::Debug for Parts<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("data_dir", &self.cfg.data_dir).finish_non_exhaustive()
    }
}

impl<S: EventSource, D: Discovery> Daemon<S, D> {
    /// Load the state from the store. Records the learning configuration.
    pub fn new(p: Parts<S, D>) -> Result<Self, DaemonError> {
        let Parts { cfg, store, source, discovery, feeds, telemetry, out, clock, fleet } = p;
        store.save_learning_config(&cfg.learning)?;
        if fleet.is_none() {
            store.save_meta_json(fleet::FLEET_STATUS, &serde_json::json!({"store": "local"}))?;
        }
        let mut detector = Detector::new(cfg.learning, store.load_profiles()?, store.reported()?);
        // With a fleet, states change only when etcd says so.
        detector.set_external_lifecycle(fleet.is_some());
        let suppressions = store.suppressions()?;
        detector.set_suppressions(suppressions.clone());
        Ok(Self {
            signals: Signals::new(store.signals()?),
            rules: store.rules()?,
            sequences: store.sequences()?,
            suppressions,
            detector,
            cfg,
            store,
            source,
            discovery,
            aliases: HashMap::new(),
            out,
            lost_seen: [0; 5],
            lost_seen_by_cgroup: HashMap::new(),
            known_map_full: false,
            feeds,
            ticks: 0,
            telemetry,
            clock,
            fleet,
            backlog: backlog::Backlog::default(),
        })
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Serve until `stop` resolves: events, API commands and a tick every
    /// second. Then drain what the source still holds and tick once more.
    pub async fn run(
        &mut self,
        mut inbox: mpsc::Receiver<Command>,
        stop: impl Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        self.await_fleet().await?;
        let now = self.now();
        self.rescan(now)?;
        self.tick()?;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        let mut inbox_open = true;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticker.tick() => self.tick()?,
                cmd = inbox.recv(), if inbox_open => match cmd {
                    Some(cmd) => self.command(cmd)?,
                    None => inbox_open = false,
                },
                r = self.source.next_events(&mut batch) => {
                    r?;
                    self.on_events(&mut batch)?;
                }
                u = fleet_update(&mut self.fleet) => self.on_fleet(u)?,
            }
        }
        self.source.drain(&mut batch);
        self.on_events(&mut batch)?;
        // Audit records the API handed over before the loop stopped (failed
        // logins, denied calls) are written, not dropped with the inbox.
        while let Ok(cmd) = inbox.try_recv() {
            if matches!(cmd, Command::Audit(_)) {
                self.command(cmd)?;
            }
        }
        self.tick()?;
        if let Some(f) = self.fleet.take() {
            f.close().await;
        }
        Ok(())
    }

    /// At start, with a fleet: take in what etcd holds before the first
    /// event is judged (a new pod of a stable image detects from its first
    /// event), waiting at most `profiles.startup_timeout`; past it, judge
    /// with the local cache and catch up when etcd answers.
    async fn await_fleet(&mut self) -> Result<(), DaemonError> {
        let Some(timeout) = self.fleet.as_ref().map(|f| f.startup_timeout) else { return Ok(()) };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Ok(u) = tokio::time::timeout_at(deadline, fleet_update(&mut self.fleet)).await else {
                let status = self.fleet.as_ref().map(|f| f.view().status);
                tracing::warn!(
                    ?status,
                    ?timeout,
                    "Fleet profiles not read yet: judging with the local profiles until etcd answers."
                );
                return Ok(());
            };
            let start =
                matches!(u, telltale_fleet::Update::Resynced { reason: telltale_fleet::ResyncReason::Start, .. });
            self.on_fleet(u)?;
            if start {
                return Ok(());
            }
        }
    }

    /// The sensors' counters, with the metrics published from them.
    pub fn final_metrics(&self) -> Result<Counters, DaemonError> {
        let c = self.source.counters()?;
        self.publish_metrics(c);
        Ok(c)
    }

    /// Hand back the telemetry (to shut it down after the loop).
    pub fn into_telemetry(self) -> Telemetry {
        self.telemetry
    }

    /// Once a second: containers that appeared or went away, retention,
    /// the sensors' counters (lost records are charged to learning),
    /// metrics, and lifecycle transitions.
    fn tick(&mut self) -> Result<(), DaemonError> {
        let now = self.now();
        self.discovery.check()?;
        self.write_backlog(now)?;
        self.rescan(now)?;
        self.ticks += 1;
        if self.ticks % 60 == 1 && self.backlog.is_empty() {
            let retention = i64::try_from(self.cfg.api.anomaly_retention.as_millis()).unwrap_or(i64::MAX);
            let pruned = full_is_not_fatal(self.store.prune_anomalies(now.saturating_sub(retention)))?.unwrap_or(0);
            if pruned > 0 {
                tracing::info!(pruned, "Anomalies past their retention removed.");
            }
            full_is_not_fatal(self.store.prune_audit(self.cfg.audit.retention(), now))?;
        }
        if self.ticks % 10 == 0 {
            // What a burst or lagging stream clients left freed goes back to
            // the system, so the resident size follows what is live.
            crate::sensor::return_freed_memory();
        }
        let c = self.source.counters()?;
        let delta = self.lost_since_last(&c);
        self.publish_metrics(c);
        let mut counters = serde_json::to_value(c).unwrap_or_default();
        counters["updated_ms"] = now.into();
        if self.backlog.is_empty() {
            full_is_not_fatal(self.store.save_meta_json(SENSOR_COUNTERS, &counters))?;
        }
        if let Some(f) = &self.fleet {
            let mut json = f.view().to_json();
            json["updated_ms"] = now.into();
            full_is_not_fatal(self.store.save_meta_json(fleet::FLEET_STATUS, &json))?;
        }
        let changes = self.detector.tick(now, &delta);
        for ch in &changes {
            if let telltale_core::detect::Change::Clock { image, event_type, clock } = ch {
                tracing::info!(image = %image, kind = event_type.name(), state = clock.state.name(), "Learning state.");
            }
        }
        let mut pending = pipeline::Pending::default();
        self.absorb(&mut pending, changes);
        self.commit(pending, now)
    }

    /// Records lost since the last tick, per event type and, as far as the
    /// kernel could tell, per container. A lost exit record leaves a process
    /// in the lineage table, not a behaviour unseen: it is logged, not
    /// charged to a type.
    fn lost_since_last(&mut self, c: &Counters) -> telltale_core::detect::LostRecords {
        // Mechanism use is judged with the exec type: its losses are exec's.
        let now = [c.exec.lost + c.mechanism.lost, c.file.lost, c.dns.lost, c.connect.lost, c.exit.lost];
        let mut delta = Lost::default();
        for (t, (n, seen)) in EventType::ALL.into_iter().zip(now.iter().zip(self.lost_seen.iter())) {
            delta.add(t, n.saturating_sub(*seen));
        }
        let exits = now[4].saturating_sub(self.lost_seen[4]);
        self.lost_seen = now;
        let mut records = telltale_core::detect::LostRecords::default();
        if delta.is_empty() && exits == 0 {
            return records;
        }
        // Whose: the kernel's per-cgroup counts since the last look, each
        // nested cgroup charged to its container.
        let mut attributed = Lost::default();
        let mut by_container: std::collections::BTreeMap<u64, Lost> = std::collections::BTreeMap::new();
        for (cgroup_id, total) in self.source.lost_by_cgroup() {
            let seen = self.lost_seen_by_cgroup.insert(cgroup_id, total).unwrap_or_default();
            let new = total.minus(&seen);
            if new.is_empty() {
                continue;
            }
            let container = self.aliases.get(&cgroup_id).copied().unwrap_or(cgroup_id);
            by_container.entry(container).or_default().merge(&new);
            attributed.merge(&new);
        }
        records.unattributed = delta.minus(&attributed);
        records.by_cgroup = by_container.into_iter().collect();
        tracing::warn!(
            exec = delta.get(EventType::Exec),
            file = delta.get(EventType::File),
            dns = delta.get(EventType::Dns),
            connect = delta.get(EventType::Connect),
            exit = exits,
            containers = ?records
                .by_cgroup
                .iter()
                .map(|(id, _)| self.detector.container(*id).map_or_else(|| id.to_string(), |c| c.name.clone()))
                .collect::<Vec<_>>(),
            "Ring buffer records lost."
        );
        records
    }

    /// What the metrics report about the kernel, signals and profiles.
    fn publish_metrics(&self, counters: Counters) {
        let mut view = crate::telemetry::metrics::DaemonView { counters, ..Default::default() };
        // Every status and state is reported, 0 when none: a series that
        // disappears reads as "no data" in a dashboard, not as zero.
        for status in telltale_core::signal::Status::ALL {
            view.signals.insert(status.name(), 0);
        }
        for s in self.signals.all() {
            *view.signals.entry(s.status.name()).or_default() += 1;
        }
        let (remembered, forgotten) = self.detector.reported();
        view.reported = (remembered as u64, forgotten);
        view.store_backlog = self.backlog.len() as u64;
        view.store_full = self.backlog.full_since.is_some();
        view.store_dropped = self.backlog.dropped;
        view.fleet = self.fleet.as_ref().map(|f| {
            let v = f.view();
            crate::telemetry::metrics::FleetGauges {
                connection: v.status.name(),
                queued: v.counters.queued,
                writes: v.counters.write_txns,
                resyncs: v.counters.resyncs,
            }
        });
        for p in self.detector.profiles() {
            view.profiles.insert(p.image.clone(), u64::try_from(p.behaviour_count()).unwrap_or(u64::MAX));
            for t in EventType::ALL {
                view.learning.push((p.image.clone(), t.name(), p.clock(t).state.name()));
            }
        }
        self.telemetry.metrics.set_daemon(view);
    }
}
