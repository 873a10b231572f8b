//! [`Fleet`]: one replica's handle on the fleet profiles.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telltale_core::clock::now_ms;
use telltale_core::profile::lifecycle::{LearningConfig, State};
use telltale_core::profile::EventType;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{decide, FleetClock, TransitionOutcome};
use crate::config::EtcdConfig;
use crate::error::Error;
use crate::etcd::{CondOutcome, CondPut, Expect, Kv};
use crate::flush::{self, MAX_CAS_TRIES};
use crate::keys::{behaviour_hash, check_image, split_access, Key, Layout};
use crate::mirror::{ClockValue, Mirror, Versioned};
use crate::profile::{NewBehaviour, ProfileSnapshot, StoredBehaviour};
use crate::queue::{Pending, Queue};
use crate::shared::{lock, Shared};
use crate::status::{bump, CounterCells, Counters, Status};
use crate::sync;
use crate::update::Updates;

/// Who this replica is and where it keeps its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOptions {
    /// Unique name of this replica (the pod name): written with every key
    /// it stores.
    pub replica_id: String,
    /// SQLite file of the durable queue (created if missing; may be the
    /// daemon's own database).
    pub queue_path: PathBuf,
    /// The lifecycle durations every replica of the fleet uses.
    pub learning: LearningConfig,
}

/// What `publish` did with the behaviours it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Queued for etcd (one per file access bit).
    pub queued: u64,
    /// Already in the fleet profile or already queued: nothing to write.
    pub known: u64,
}

/// A transition the lifecycle made due, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockTransition {
    /// Short image name.
    pub image: String,
    /// Event type.
    pub event_type: EventType,
    /// Written by this replica, or adopted from another.
    pub outcome: TransitionOutcome,
}

/// One replica's handle on the fleet profiles in etcd.
///
/// Background tasks (spawned on the caller's tokio runtime) keep a mirror of
/// the fleet current through a watch and write queued behaviours in
/// batches. Dropping the handle stops them; queued behaviours stay in the
/// queue file for the next start.
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

fn check_replica(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > 253 || id.chars().any(char::is_control) {
        return Err(Error::ReplicaId(id.to_owned()));
    }
    Ok(())
}

impl Fleet {
    /// Open the queue and start the background tasks. Does not wait for
    /// etcd: an unreachable etcd shows as [`Status::Disconnected`] and
    /// published behaviours wait in the queue.
    pub async fn connect(cfg: EtcdConfig, opts: FleetOptions) -> Result<Fleet, Error> {
        cfg.validate()?;
        check_replica(&opts.replica_id)?;
        let layout = Layout::new(&cfg.prefix, &cfg.cluster);
        let scope = format!("{}{}/", cfg.prefix, cfg.cluster);
        let path = opts.queue_path.clone();
        let (queue, keys) = tokio::task::spawn_blocking(move || {
            let q = Queue::open(&path, &scope)?;
            let keys = q.keys()?;
            Ok::<_, Error>((q, keys))
        })
        .await
        .map_err(|_| Error::Closed)??;
        let mut pending: HashMap<String, HashSet<String>> = HashMap::new();
        for (image, hash) in keys {
            pending.entry(image).or_default().insert(hash);
        }
        let (status, _) = watch::channel(Status::Resyncing { since_ms: now_ms() });
        let shared = Arc::new(Shared {
            cfg,
            layout,
            replica: opts.replica_id,
            learning: opts.learning,
            etcd: Mutex::new(None),
            mirror: Mutex::new(Mirror::default()),
            queue: Arc::new(queue),
            pending: Mutex::new(pending),
            status,
            counters: CounterCells::default(),
            wake: Notify::new(),
            write_lock: tokio::sync::Mutex::new(()),
            subscribers: Mutex::new(Vec::new()),
        });
        shared.count_pending();
        let tasks = vec![tokio::spawn(sync::run(Arc::clone(&shared))), tokio::spawn(flush::run(Arc::clone(&shared)))];
        if shared.counters.queued.load(Ordering::Relaxed) > 0 {
            shared.wake.notify_one();
        }
        Ok(Fleet { shared, tasks })
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.shared.replica
    }

    /// The link's status now.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }

    /// Every status change.
    pub fn status_changes(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Wait until the replica watches live (true), or `timeout` passes.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.status.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(Status::is_connected)).await.is_ok_and(|r| r.is_ok())
    }

    /// The last etcd revision this replica's view of the fleet covers
    /// (updates and snapshots carry revisions too).
    pub fn revision(&self) -> i64 {
        lock(&self.shared.mirror).revision()
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Subscribe to updates from now on: behaviours other replicas stored,
    /// every clock change (this replica's too), resync notices. Subscribe
    /// before [`Fleet::load`] so nothing falls between the two.
    pub fn updates(&self) -> Updates {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.subscribers).push(tx);
        Updates::new(rx)
    }

    /// Queue new behaviours for the fleet (durably, before returning); the
    /// writer sends them in batches. Behaviours the fleet already has, or
    /// that are already queued, are skipped: repeating known behaviour
    /// writes nothing. Works offline.
    pub async fn publish(&self, items: &[NewBehaviour]) -> Result<Published, Error> {
        for b in items {
            check_image(&b.image)?;
        }
        let mut out = Published::default();
        let mut fresh = Vec::new();
        {
            let mirror = lock(&self.shared.mirror);
            let mut pending = lock(&self.shared.pending);
            for b in items {
                for o in split_access(&b.observation) {
                    let hash = behaviour_hash(&o);
                    let queued = pending.get(&b.image).is_some_and(|s| s.contains(&hash));
                    if queued || mirror.knows(&b.image, &hash) {
                        out.known += 1;
                        continue;
                    }
                    pending.entry(b.image.clone()).or_default().insert(hash.clone());
                    fresh.push(Pending {
                        image: b.image.clone(),
                        hash,
                        behaviour: StoredBehaviour {
                            observation: o,
                            tag: b.tag.clone(),
                            first_seen_ms: b.seen_ms,
                            writer: self.shared.replica.clone(),
                            manual: b.manual,
                        },
                    });
                }
            }
        }
        out.queued = fresh.len() as u64;
        bump(&self.shared.counters.published, out.queued + out.known);
        bump(&self.shared.counters.skipped_known, out.known);
        if fresh.is_empty() {
            return Ok(out);
        }
        let keys: Vec<(String, String)> = fresh.iter().map(|p| (p.image.clone(), p.hash.clone())).collect();
        if let Err(e) = self.shared.queue_op(move |q| q.push(&fresh)).await {
            let mut pending = lock(&self.shared.pending);
            for (image, hash) in keys {
                if let Some(s) = pending.get_mut(&image) {
                    s.remove(&hash);
                }
            }
            return Err(e);
        }
        self.shared.count_pending();
        self.shared.wake.notify_one();
        Ok(out)
    }

    /// Write everything queued now (not waiting for the batch delay).
    /// Fails, leaving it queued, if etcd is unreachable.
    pub async fn flush(&self) -> Result<(), Error> {
        flush::drain(&self.shared).await
    }

    /// One profile as etcd holds it now (behaviours and clocks). Fails fast
    /// with [`Error::Unavailable`] while disconnected: use the local cache.
    pub async fn load(&self, image: &str) -> Result<ProfileSnapshot, Error> {
        check_image(image)?;
        let etcd = self.shared.online()?;
        let (kvs, revision) = etcd.range_prefix(&self.shared.layout.image(image), None).await?;
        let mut all = self.snapshots(kvs, revision);
        Ok(all.remove(image).unwrap_or_else(|| ProfileSnapshot {
            image: image.to_owned(),
            revision,
            behaviours: Vec::new(),
            clocks: BTreeMap::new(),
        }))
    }

    /// Every profile of the fleet.
    pub async fn load_all(&self) -> Result<Vec<ProfileSnapshot>, Error> {
        let etcd = self.shared.online()?;
        let (kvs, revision) = etcd.range_prefix(self.shared.layout.profiles(), None).await?;
        Ok(self.snapshots(kvs, revision).into_values().collect())
    }

    fn snapshots(&self, kvs: Vec<Kv>, revision: i64) -> BTreeMap<String, ProfileSnapshot> {
        let mut out: BTreeMap<String, ProfileSnapshot> = BTreeMap::new();
        for kv in kvs {
            let Some(key) = self.shared.layout.parse(&kv.key) else { continue };
            let image = match &key {
                Key::Behaviour { image, .. } | Key::Clock { image, .. } => image.clone(),
            };
            let snap = out.entry(image.clone()).or_insert_with(|| ProfileSnapshot {
                image,
                revision,
                behaviours: Vec::new(),
                clocks: BTreeMap::new(),
            });
            match key {
                Key::Behaviour { .. } => match serde_json::from_slice::<StoredBehaviour>(&kv.value) {
                    Ok(b) => snap.behaviours.push(b),
                    Err(e) => {
                        tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "Skipping an undecodable fleet behaviour.")
                    }
                },
                Key::Clock { event_type, .. } => match serde_json::from_slice::<ClockValue>(&kv.value) {
                    Ok(v) => {
                        snap.clocks.insert(event_type, v.clock);
                    }
                    Err(e) => {
                        tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "Skipping an undecodable fleet clock.")
                    }
                },
            }
        }
        out
    }

    /// The fleet clock of a type as this replica last saw it.
    pub fn clock(&self, image: &str, t: EventType) -> Option<FleetClock> {
        lock(&self.shared.mirror).clock(image, t).map(|v| v.clock)
    }

    /// Propose `from` → `to` for a type at fleet time `at_ms`. The stored
    /// clock decides: if it already left `from` the stored state is
    /// adopted; if the core lifecycle does not make `to` due on it (another
    /// replica saw new behaviour) nothing changes; otherwise it is written
    /// once, by compare-and-swap, and every replica adopts it. Behaviours
    /// this replica still has queued for the image are written first.
    pub async fn propose_transition(
        &self,
        image: &str,
        event_type: EventType,
        from: State,
        to: State,
        at_ms: i64,
    ) -> Result<TransitionOutcome, Error> {
        check_image(image)?;
        let etcd = self.shared.online()?;
        if lock(&self.shared.pending).get(image).is_some_and(|s| !s.is_empty()) {
            flush::drain(&self.shared).await?;
        }
        let key = self.shared.layout.clock(image, event_type);
        let mut stored = lock(&self.shared.mirror).clock(image, event_type);
        for _ in 0..MAX_CAS_TRIES {
            let current = match stored {
                Some(v) => v,
                None => match etcd.get(&key).await? {
                    Some(kv) => self.read_clock(image, event_type, &kv)?,
                    None => return Err(Error::NoClock { image: image.to_owned(), event_type }),
                },
            };
            let next = match decide(current.clock, from, to, at_ms, &self.shared.learning) {
                Ok(next) => next,
                Err(outcome) => return Ok(outcome),
            };
            let value = serde_json::to_vec(&ClockValue { clock: next, writer: self.shared.replica.clone() })
                .map_err(|source| Error::Decode { key: key.clone(), source })?;
            let put = CondPut { key: key.clone(), expect: Expect::ModRevision(current.mod_revision), value };
            let outcome = etcd.put_if(&[put]).await?.pop();
            bump(&self.shared.counters.write_txns, 1);
            match outcome {
                Some(CondOutcome::Written(rev)) => {
                    bump(&self.shared.counters.keys_written, 1);
                    bump(&self.shared.counters.transitions_written, 1);
                    tracing::info!(
                        image,
                        event_type = event_type.name(),
                        from = from.name(),
                        to = to.name(),
                        at_ms,
                        "Fleet profile transition written."
                    );
                    let update = self.shared.adopt_clock(image, event_type, next, rev);
                    self.shared.emit(update.into_iter().collect());
                    return Ok(TransitionOutcome::Written(next));
                }
                Some(CondOutcome::Conflict(Some(kv))) => stored = Some(self.read_clock(image, event_type, &kv)?),
                Some(CondOutcome::Conflict(None)) | None => stored = None,
            }
        }
        Err(Error::Contended { key, tries: MAX_CAS_TRIES })
    }

    fn read_clock(&self, image: &str, t: EventType, kv: &Kv) -> Result<Versioned, Error> {
        let v: ClockValue = serde_json::from_slice(&kv.value)
            .map_err(|source| Error::Decode { key: String::from_utf8_lossy(&kv.key).into_owned(), source })?;
        lock(&self.shared.mirror).set_clock(image, t, Versioned { clock: v.clock, mod_revision: kv.mod_revision });
        Ok(Versioned { clock: v.clock, mod_revision: kv.mod_revision })
    }

    /// Run the core lifecycle on every learning clock this replica knows at
    /// `now_ms` and propose the transitions it makes due. Returns them with
    /// their outcome (changes by other replicas arrive as updates).
    pub async fn tick(&self, now_ms: i64) -> Result<Vec<ClockTransition>, Error> {
        self.shared.online()?;
        let due: Vec<(String, EventType, State)> = lock(&self.shared.mirror)
            .clocks()
            .filter(|(_, _, v)| v.clock.state == State::Learning)
            .filter_map(|(image, t, v)| Some((image.to_owned(), t, v.clock.due(now_ms, &self.shared.learning)?)))
            .collect();
        let mut out = Vec::new();
        for (image, event_type, to) in due {
            let outcome = self.propose_transition(&image, event_type, State::Learning, to, now_ms).await?;
            out.push(ClockTransition { image, event_type, outcome });
        }
        Ok(out)
    }

    /// The backend database size of an etcd member (bytes, the maintenance
    /// status API's `dbSize`).
    pub async fn db_size(&self) -> Result<i64, Error> {
        self.shared.online()?.db_size().await
    }

    /// Stop the background tasks and wait for them. Nothing is flushed:
    /// call [`Fleet::flush`] first to write what is queued now.
    pub async fn close(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
