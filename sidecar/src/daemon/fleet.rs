//! Fleet-wide profiles (`[profiles] store = "etcd"`), the daemon's side.
//!
//! The local store stays the cache: every event is judged against the
//! detector's profiles in memory, never waiting on etcd. What this replica
//! learns (or a person adds here) is committed locally first, then handed
//! to the fleet, which queues it durably and writes it to etcd in batches.
//! What other replicas store arrives as [`Update`]s, applied like any other
//! batch (one store transaction) — behaviours join the profile, clocks
//! replace the local lifecycle: with a fleet the detector never changes a
//! state by itself, so every replica uses the state etcd holds.
//!
//! A behaviour learned elsewhere reaches this replica's profile at once;
//! it reaches the kernel's `known` filter the first time this replica sees
//! it (the filter's keys hash kernel pointers of this node, which no other
//! node can compute): that one event is judged known in user space, then
//! its repeats are dropped in the kernel.

use std::sync::Arc;
use std::time::Duration;

use telltale_core::detect::Change;
use telltale_core::profile::Observation;
use telltale_fleet::{Fleet, FleetOptions, NewBehaviour, Status, Update, Updates};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Clock;
use crate::config::{Config, ProfileStore};

/// File (in the data dir) of the fleet's durable queue of behaviours not
/// yet in etcd.
pub const QUEUE_FILE: &str = "fleet-queue.db";

/// Meta key under which the daemon saves the fleet link's state every second.
pub const FLEET_STATUS: &str = "profile_store";

/// Most updates applied in one store transaction.
const UPDATES_PER_BATCH: usize = 4096;

/// The daemon's handle on the fleet: updates in, behaviours out.
pub struct FleetLink {
    fleet: Arc<Fleet>,
    updates: Updates,
    publish: mpsc::UnboundedSender<Vec<NewBehaviour>>,
    driver: JoinHandle<()>,
    /// How long to wait for the first full read at start.
    pub(super) startup_timeout: Duration,
    cluster: String,
}

impl std::fmt::Debug for FleetLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLink").field("replica", &self.fleet.replica_id()).finish_non_exhaustive()
    }
}

impl FleetLink {
    /// Open the fleet link the configuration asks for (None with
    /// `store = "local"`). Does not wait for etcd: an unreachable etcd is
    /// a status, not an error; the queue file is in the data dir.
    pub async fn connect(cfg: &Config, clock: Clock) -> Result<Option<FleetLink>, telltale_fleet::Error> {
        let (ProfileStore::Etcd, Some(etcd)) = (cfg.profiles.store, &cfg.profiles.etcd) else {
            return Ok(None);
        };
        let opts = FleetOptions {
            replica_id: cfg.replica_id(),
            queue_path: cfg.data_dir.join(QUEUE_FILE),
            learning: cfg.learning,
        };
        let cluster = etcd.cluster.clone();
        let fleet = Arc::new(Fleet::connect(etcd.clone(), opts).await?);
        // Subscribe before anything is read: the first full read arrives as
        // updates, ended by `Resynced { reason: Start }`.
        let updates = fleet.updates();
        let (publish, rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(Arc::clone(&fleet), rx, clock));
        tracing::info!(replica = fleet.replica_id(), endpoints = ?etcd.endpoints, %cluster, "Profiles are fleet-wide (etcd).");
        Ok(Some(FleetLink { fleet, updates, publish, driver, startup_timeout: cfg.profiles.startup_timeout, cluster }))
    }

    /// The next update from the fleet (pending forever once it closed).
    pub(super) async fn next(&mut self) -> Update {
        match self.updates.recv().await {
            Some(u) => u,
            None => std::future::pending().await,
        }
    }

    /// Updates already waiting, up to a batch.
    pub(super) fn more(&mut self, into: &mut Vec<Update>) {
        while into.len() < UPDATES_PER_BATCH {
            match self.updates.try_recv() {
                Some(u) => into.push(u),
                None => break,
            }
        }
    }

    /// Hand behaviours to the fleet (queued durably, written in batches).
    pub(super) fn publish(&self, items: Vec<NewBehaviour>) {
        if !items.is_empty() && self.publish.send(items).is_err() {
            tracing::error!("Fleet link stopped: behaviours stay in the local profile only.");
        }
    }

    /// What `telltale status`, the API and the metrics say about the link.
    pub fn view(&self) -> FleetView {
        FleetView {
            replica: self.fleet.replica_id().to_owned(),
            cluster: self.cluster.clone(),
            status: self.fleet.status(),
            revision: self.fleet.revision(),
            counters: self.fleet.counters(),
        }
    }

    /// Stop: wait (briefly) for what is queued to reach etcd; the rest
    /// stays in the queue file for the next start.
    pub async fn close(self) {
        drop(self.publish);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.driver).await;
        if self.fleet.status().is_connected() {
            if let Err(e) = tokio::time::timeout(Duration::from_secs(2), self.fleet.flush()).await.unwrap_or(Ok(())) {
                tracing::warn!(error = %telltale_core::error_chain(&e), "Behaviours stay queued for the next start.");
            }
        }
    }
}

/// Publishes what the daemon hands over, in order, and proposes the
/// lifecycle transitions fleet time makes due, once a second.
async fn drive(fleet: Arc<Fleet>, mut rx: mpsc::UnboundedReceiver<Vec<NewBehaviour>>, clock: Clock) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            items = rx.recv() => match items {
                Some(items) => {
                    if let Err(e) = fleet.publish(&items).await {
                        tracing::warn!(error = %telltale_core::error_chain(&e), behaviours = items.len(),
                            "Behaviours not handed to the fleet; they stay in the local profile.");
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                if fleet.status().is_connected() {
                    if let Err(e) = fleet.tick(clock()).await {
                        tracing::debug!(error = %telltale_core::error_chain(&e), "Fleet lifecycle tick failed; next second.");
                    }
                }
            }
        }
    }
}

/// The fleet link as shown to people.
#[derive(Debug, Clone)]
pub struct FleetView {
    /// This replica's name.
    pub replica: String,
    /// The fleet's name.
    pub cluster: String,
    /// Connected, disconnected or resyncing.
    pub status: Status,
    /// The etcd revision last seen.
    pub revision: i64,
    /// Writes, queue depth, resyncs.
    pub counters: telltale_fleet::Counters,
}

impl FleetView {
    /// Since when the status holds (ms), and why when disconnected.
    pub fn since(&self) -> (i64, Option<&str>) {
        match &self.status {
            Status::Connected { since_ms } | Status::Resyncing { since_ms } => (*since_ms, None),
            Status::Disconnected { since_ms, reason } => (*since_ms, Some(reason.as_str())),
        }
    }

    /// The status the API reports.
    pub fn store_status(&self) -> telltale_core::status::StoreStatus {
        let (since_ms, reason) = self.since();
        telltale_core::status::StoreStatus {
            kind: "etcd".into(),
            connection: self.status.name().into(),
            since_ms,
            reason: reason.map(str::to_owned),
            queued: self.counters.queued,
            revision: self.revision,
            replica: self.replica.clone(),
            cluster: self.cluster.clone(),
        }
    }

    /// The JSON saved for `telltale status`.
    pub fn to_json(&self) -> serde_json::Value {
        let (since, reason) = self.since();
        let c = &self.counters;
        serde_json::json!({
            "store": "etcd",
            "replica": self.replica,
            "cluster": self.cluster,
            "connection": self.status.name(),
            "since_ms": since,
            "reason": reason,
            "revision": self.revision,
            "queued": c.queued,
            "stored": c.stored,
            "write_txns": c.write_txns,
            "resyncs": c.resyncs,
            "reconnects": c.reconnects,
        })
    }
}

/// The behaviours a batch added to profiles, for the fleet. `manual`:
/// added by a person (they do not restart the fleet's quiet period).
pub(super) fn behaviours_of(changes: &[Change], manual: bool) -> Vec<NewBehaviour> {
    let mut out = NewBehaviour::learned_from(changes);
    for b in &mut out {
        b.manual = manual;
    }
    out
}

/// Every behaviour of a local profile, for the fleet (it skips what it
/// has): what a crash between the local commit and the fleet's queue, or a
/// switch from `local` to `etcd`, left only here.
pub(super) fn whole_profile(p: &telltale_core::profile::Profile) -> Vec<NewBehaviour> {
    let tag = p.tags.iter().next_back().cloned().unwrap_or_else(|| "latest".to_owned());
    p.observations()
        .into_iter()
        .map(|o: Observation| {
            let seen_ms = p.nodes().get(&o.lineage).map_or(0, |n| n.last_seen_ms);
            NewBehaviour { image: p.image.clone(), tag: tag.clone(), observation: o, seen_ms, manual: false }
        })
        .collect()
}

impl<S: super::EventSource, D: super::Discovery> super::Daemon<S, D> {
    /// Apply `first` and every update already waiting, as one batch:
    /// behaviours join their profile, clocks replace the local lifecycle.
    /// After the first full read, what only the local profile holds is
    /// handed to the fleet (it writes what etcd lacks).
    pub(super) fn on_fleet(&mut self, first: Update) -> Result<(), super::DaemonError> {
        let mut updates = vec![first];
        if let Some(f) = &mut self.fleet {
            f.more(&mut updates);
        }
        let now = self.now();
        let mut p = super::pipeline::Pending::default();
        p.from_fleet = true;
        let mut republish = false;
        for u in updates {
            match u {
                Update::Behaviour { image, behaviour, .. } => {
                    let changes = self.detector.adopt_behaviour(
                        &image,
                        &behaviour.observation,
                        &behaviour.tag,
                        behaviour.first_seen_ms,
                    );
                    self.absorb(&mut p, changes);
                }
                Update::Clock { image, event_type, clock, .. } => {
                    let before = self.detector.profile(&image).map(|p| *p.clock(event_type));
                    let count = before.map_or(0, |c| c.behaviours);
                    let changes = self.detector.adopt_clock(&image, event_type, clock.to_clock(count), now);
                    if before.is_none_or(|b| b.state != clock.state) {
                        tracing::info!(image = %image, kind = event_type.name(), state = clock.state.name(), source = "fleet", "Learning state.");
                    }
                    self.absorb(&mut p, changes);
                }
                Update::Resynced { reason, revision, missed } => {
                    tracing::info!(?reason, revision, missed, "Fleet profiles read.");
                    republish |= reason == telltale_fleet::ResyncReason::Start;
                }
            }
        }
        self.commit(p, now)?;
        if republish {
            if let Some(f) = &self.fleet {
                for profile in self.detector.profiles() {
                    f.publish(whole_profile(profile));
                }
            }
        }
        Ok(())
    }
}
