//! State shared by the `Fleet` handle and its two background tasks (the
//! watch and the writer).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use telltale_core::clock::now_ms;
use telltale_core::profile::lifecycle::LearningConfig;
use telltale_core::profile::EventType;
use tokio::sync::{mpsc, watch, Notify};

use crate::clock::FleetClock;
use crate::config::EtcdConfig;
use crate::error::Error;
use crate::etcd::Etcd;
use crate::keys::Layout;
use crate::mirror::{Mirror, Versioned};
use crate::queue::Queue;
use crate::status::{CounterCells, Status};
use crate::update::Update;

/// Lock a std mutex; its data stays consistent across a panic (every
/// critical section is a few map operations), so poisoning is ignored.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Doubling delay between retries.
#[derive(Debug)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// The delay to wait now (then doubled, up to the maximum).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Start again from the first delay.
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Everything the handle and the tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: EtcdConfig,
    pub layout: Layout,
    pub replica: String,
    pub learning: LearningConfig,
    pub etcd: Mutex<Option<Etcd>>,
    pub mirror: Mutex<Mirror>,
    pub queue: Arc<Queue>,
    /// Queued behaviours: image → hashes.
    pub pending: Mutex<HashMap<String, HashSet<String>>>,
    pub status: watch::Sender<Status>,
    pub counters: CounterCells,
    /// Wakes the writer (something was queued, or etcd is back).
    pub wake: Notify,
    /// One writer of queued behaviours at a time (the writer task, or a
    /// caller's `flush`).
    pub write_lock: tokio::sync::Mutex<()>,
    pub subscribers: Mutex<Vec<mpsc::UnboundedSender<Update>>>,
}

impl Shared {
    /// The client, if one was made.
    pub(crate) fn client(&self) -> Option<Etcd> {
        lock(&self.etcd).clone()
    }

    /// The client for a request that needs etcd now: fails fast while the
    /// link is down.
    pub(crate) fn online(&self) -> Result<Etcd, Error> {
        if let Status::Disconnected { since_ms, reason } = &*self.status.borrow() {
            return Err(Error::Unavailable { since_ms: *since_ms, reason: reason.clone() });
        }
        self.client().ok_or_else(|| Error::Unavailable { since_ms: now_ms(), reason: "not connected yet".to_owned() })
    }

    /// Make the client if there is none.
    pub(crate) async fn connect(&self) -> Result<Etcd, Error> {
        if let Some(c) = self.client() {
            return Ok(c);
        }
        let c = Etcd::connect(&self.cfg).await?;
        *lock(&self.etcd) = Some(c.clone());
        Ok(c)
    }

    /// Set the status. A repeated disconnection keeps its first time.
    pub(crate) fn set_status(&self, s: Status) {
        self.status.send_modify(|cur| {
            *cur = match (&*cur, s) {
                (Status::Disconnected { since_ms, .. }, Status::Disconnected { reason, .. }) => {
                    Status::Disconnected { since_ms: *since_ms, reason }
                }
                (_, s) => s,
            }
        });
    }

    /// Mark the link down.
    pub(crate) fn disconnected(&self, reason: String) {
        self.set_status(Status::Disconnected { since_ms: now_ms(), reason });
    }

    /// Does anyone listen to updates?
    pub(crate) fn has_subscribers(&self) -> bool {
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| !s.is_closed());
        !subs.is_empty()
    }

    /// Send updates to every subscriber, in order. The channels are
    /// unbounded so a writer never waits on a subscriber (a daemon that
    /// awaits `propose_transition` while not reading its updates must not
    /// deadlock); what they hold is bounded by the fleet's keys.
    pub(crate) fn emit(&self, updates: Vec<Update>) {
        if updates.is_empty() {
            return;
        }
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| updates.iter().all(|u| s.send(u.clone()).is_ok()));
    }

    /// Record a clock this replica read or wrote; the update to send if it
    /// is news.
    pub(crate) fn adopt_clock(&self, image: &str, t: EventType, clock: FleetClock, revision: i64) -> Option<Update> {
        let changed = lock(&self.mirror).set_clock(image, t, Versioned { clock, mod_revision: revision });
        changed.then(|| Update::Clock { image: image.to_owned(), event_type: t, clock, revision })
    }

    /// Run a queue operation off the async threads.
    pub(crate) async fn queue_op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Queue) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let q = Arc::clone(&self.queue);
        tokio::task::spawn_blocking(move || f(&q)).await.map_err(|_| Error::Closed)?
    }

    /// Recount the queued behaviours.
    pub(crate) fn count_pending(&self) {
        let n: usize = lock(&self.pending).values().map(HashSet::len).sum();
        self.counters.queued.store(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}
