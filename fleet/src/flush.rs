//! The writer: queued behaviours → etcd, in batches.
//!
//! A batch is up to `batch_size` queued behaviours, collected for
//! `batch_delay` after the first one arrives. It costs one transaction for
//! the behaviours (each a nested create-only transaction, so a behaviour
//! another replica stored first is simply not written again) and, when
//! something was new, one transaction for the clocks it moves (CAS on the
//! clock key's revision, retried on conflict). Rows leave the queue only
//! after both: a crash in between re-sends them, and behaviours this replica
//! had already stored (same writer, same time) count as its own again so
//! their clocks still move.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use telltale_core::error_chain;
use telltale_core::profile::EventType;

use crate::clock::FleetClock;
use crate::etcd::{CondOutcome, CondPut, Etcd, Expect};
use crate::mirror::ClockValue;
use crate::profile::StoredBehaviour;
use crate::queue::Row;
use crate::shared::{lock, Backoff, Shared};
use crate::status::bump;
use crate::Error;

/// Compare-and-swap attempts on one clock before giving up (a later batch
/// tries again).
pub(crate) const MAX_CAS_TRIES: u32 = 16;

/// Run until aborted.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut failing = false;
    loop {
        if shared.counters.queued.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            shared.wake.notified().await;
        }
        // Collect a batch unless one is already full.
        if (shared.counters.queued.load(std::sync::atomic::Ordering::Relaxed) as usize) < shared.cfg.batch_size {
            tokio::time::sleep(shared.cfg.batch_delay).await;
        }
        match drain(&shared).await {
            Ok(()) => {
                if failing {
                    tracing::info!("Fleet queue flushed to etcd.");
                }
                failing = false;
                backoff.reset();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %error_chain(&e), queued = shared.counters.queued.load(std::sync::atomic::Ordering::Relaxed), "Fleet behaviours stay queued until etcd takes them.");
                }
                failing = true;
                // Retry after the backoff, or as soon as the watch is back.
                let _ = tokio::time::timeout(backoff.next_delay(), shared.wake.notified()).await;
            }
        }
    }
}

/// Write every queued behaviour (batch after batch) and remove it from the
/// queue.
pub(crate) async fn drain(shared: &Shared) -> Result<(), Error> {
    let _one_writer = shared.write_lock.lock().await;
    let size = shared.cfg.batch_size;
    loop {
        let rows = shared.queue_op(move |q| q.peek(size)).await?;
        if rows.is_empty() {
            shared.count_pending();
            return Ok(());
        }
        let etcd = shared.client().ok_or(Error::Unavailable {
            since_ms: telltale_core::clock::now_ms(),
            reason: "not connected yet".to_owned(),
        })?;
        write_batch(shared, &etcd, &rows).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        shared.queue_op(move |q| q.remove(&ids)).await?;
        {
            let mut pending = lock(&shared.pending);
            for r in &rows {
                if let Some(s) = pending.get_mut(&r.pending.image) {
                    s.remove(&r.pending.hash);
                    if s.is_empty() {
                        pending.remove(&r.pending.image);
                    }
                }
            }
        }
        shared.count_pending();
    }
}

/// Store one batch of behaviours, then move the clocks of what was new.
async fn write_batch(shared: &Shared, etcd: &Etcd, rows: &[Row]) -> Result<(), Error> {
    let mut puts = Vec::with_capacity(rows.len());
    for r in rows {
        let value = serde_json::to_vec(&r.pending.behaviour).map_err(|source| Error::Decode {
            key: shared.layout.behaviour(&r.pending.image, &r.pending.hash),
            source,
        })?;
        puts.push(CondPut {
            key: shared.layout.behaviour(&r.pending.image, &r.pending.hash),
            expect: Expect::Absent,
            value,
        });
    }
    let outcomes = etcd.put_if(&puts).await?;
    bump(&shared.counters.write_txns, 1);
    let mut ours: Vec<(&str, &StoredBehaviour)> = Vec::new();
    {
        let mut mirror = lock(&shared.mirror);
        for (r, out) in rows.iter().zip(outcomes) {
            let p = &r.pending;
            match out {
                CondOutcome::Written(_) => {
                    bump(&shared.counters.keys_written, 1);
                    bump(&shared.counters.stored, 1);
                    ours.push((&p.image, &p.behaviour));
                }
                CondOutcome::Conflict(Some(kv)) => {
                    let existing: Option<StoredBehaviour> = serde_json::from_slice(&kv.value).ok();
                    let mine = existing.is_some_and(|e| {
                        e.writer == p.behaviour.writer && e.first_seen_ms == p.behaviour.first_seen_ms
                    });
                    if mine {
                        ours.push((&p.image, &p.behaviour));
                    } else {
                        bump(&shared.counters.stored_elsewhere, 1);
                    }
                }
                CondOutcome::Conflict(None) => {
                    return Err(Error::Protocol(format!(
                        "create-only write of {} failed but the key does not exist",
                        shared.layout.behaviour(&p.image, &p.hash)
                    )));
                }
            }
            mirror.learn(&p.image, &p.hash);
        }
    }
    advance_clocks(shared, etcd, &ours).await
}

/// What a batch asks of one clock.
#[derive(Debug, Clone, Copy)]
struct Want {
    /// Learning start if the clock does not exist yet.
    started_ms: i64,
    /// Latest first-seen time of a learned behaviour of the type.
    last_new_ms: Option<i64>,
}

/// Create missing clocks and move "last new" forward, by CAS.
async fn advance_clocks(shared: &Shared, etcd: &Etcd, ours: &[(&str, &StoredBehaviour)]) -> Result<(), Error> {
    let mut started: BTreeMap<&str, i64> = BTreeMap::new();
    for (image, b) in ours {
        let s = started.entry(image).or_insert(b.first_seen_ms);
        *s = (*s).min(b.first_seen_ms);
    }
    let mut wants: BTreeMap<(String, EventType), Want> = BTreeMap::new();
    for (image, s) in &started {
        for t in EventType::ALL {
            wants.insert(((*image).to_owned(), t), Want { started_ms: *s, last_new_ms: None });
        }
    }
    for (image, b) in ours {
        if b.manual {
            continue;
        }
        if let Some(w) = wants.get_mut(&((*image).to_owned(), b.observation.event_type())) {
            w.last_new_ms = Some(w.last_new_ms.map_or(b.first_seen_ms, |l| l.max(b.first_seen_ms)));
        }
    }
    for _ in 0..MAX_CAS_TRIES {
        let mut puts = Vec::new();
        let mut targets: Vec<((String, EventType), FleetClock)> = Vec::new();
        {
            let mirror = lock(&shared.mirror);
            wants.retain(|(image, t), w| {
                let (expect, clock) = match mirror.clock(image, *t) {
                    None => {
                        let c = FleetClock::learning_since(w.started_ms);
                        (Expect::Absent, w.last_new_ms.and_then(|l| c.with_new(l)).unwrap_or(c))
                    }
                    Some(v) => match w.last_new_ms.and_then(|l| v.clock.with_new(l)) {
                        Some(c) => (Expect::ModRevision(v.mod_revision), c),
                        None => return false,
                    },
                };
                let value = ClockValue { clock, writer: shared.replica.clone() };
                match serde_json::to_vec(&value) {
                    Ok(value) => {
                        puts.push(CondPut { key: shared.layout.clock(image, *t), expect, value });
                        targets.push(((image.clone(), *t), clock));
                        true
                    }
                    Err(_) => false,
                }
            });
        }
        if puts.is_empty() {
            return Ok(());
        }
        let outcomes = etcd.put_if(&puts).await?;
        bump(&shared.counters.write_txns, 1);
        let mut updates = Vec::new();
        for (((image, t), clock), out) in targets.into_iter().zip(outcomes) {
            match out {
                CondOutcome::Written(rev) => {
                    bump(&shared.counters.keys_written, 1);
                    wants.remove(&(image.clone(), t));
                    updates.extend(shared.adopt_clock(&image, t, clock, rev));
                }
                CondOutcome::Conflict(Some(kv)) => {
                    let v: ClockValue = serde_json::from_slice(&kv.value)
                        .map_err(|source| Error::Decode { key: shared.layout.clock(&image, t), source })?;
                    updates.extend(shared.adopt_clock(&image, t, v.clock, kv.mod_revision));
                }
                CondOutcome::Conflict(None) => lock(&shared.mirror).remove_clock(&image, t),
            }
        }
        shared.emit(updates);
        if wants.is_empty() {
            return Ok(());
        }
    }
    let key = wants.keys().next().map(|(i, t)| shared.layout.clock(i, *t)).unwrap_or_default();
    Err(Error::Contended { key, tries: MAX_CAS_TRIES })
}
