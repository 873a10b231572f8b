//! The watch task: read every profile once (a resync), then watch the
//! profiles prefix from the next revision; after an interruption resume
//! from the last revision applied; if etcd compacted it away, resync again
//! and say so. Never a silent gap.

use std::sync::Arc;
use std::time::Duration;

use telltale_core::clock::now_ms;
use telltale_core::error_chain;

use crate::etcd::{Etcd, Kv, WatchEvent, WatchItem};
use crate::keys::Key;
use crate::mirror::{ClockValue, Mirror};
use crate::profile::StoredBehaviour;
use crate::shared::{lock, Backoff, Shared};
use crate::status::{bump, Status};
use crate::update::{ResyncReason, Update};
use crate::Error;

/// Run until aborted.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // Next revision to watch from; None: resync first.
    let mut resume: Option<i64> = None;
    let mut reason = ResyncReason::Start;
    let mut watched_before = false;
    loop {
        if let Err(e) = watch_once(&shared, &mut resume, &mut reason, &mut watched_before, &mut backoff).await {
            let msg = error_chain(&e);
            if !matches!(*shared.status.borrow(), Status::Disconnected { .. }) {
                tracing::warn!(error = %msg, "Fleet etcd link lost; behaviours are queued until it returns.");
            }
            shared.disconnected(msg);
            tokio::time::sleep(backoff.next_delay()).await;
        }
        // Ok: the watch ended for a resync, which starts at once.
    }
}

/// Connect, resync if needed, watch until the watch ends. Ok when it ended
/// for a resync.
async fn watch_once(
    shared: &Shared,
    resume: &mut Option<i64>,
    reason: &mut ResyncReason,
    watched_before: &mut bool,
    backoff: &mut Backoff,
) -> Result<(), Error> {
    let etcd = shared.connect().await?;
    let from = match *resume {
        Some(r) => r,
        None => {
            shared.set_status(Status::Resyncing { since_ms: now_ms() });
            let rev = resync(shared, &etcd, *reason).await?;
            *resume = Some(rev + 1);
            rev + 1
        }
    };
    let mut watch = etcd.watch(shared.layout.profiles(), from).await?;
    loop {
        let item = watch.next().await?;
        match item {
            Some(WatchItem::Created) => {
                shared.set_status(Status::Connected { since_ms: now_ms() });
                if *watched_before {
                    bump(&shared.counters.reconnects, 1);
                    tracing::info!(from, "Fleet watch resumed.");
                }
                *watched_before = true;
                backoff.reset();
                // Queued behaviours can go now.
                shared.wake.notify_one();
            }
            Some(WatchItem::Events(events)) => {
                if let Some(last) = apply(shared, events) {
                    *resume = Some(resume.map_or(last + 1, |r| r.max(last + 1)));
                }
            }
            Some(WatchItem::Progress(rev)) => {
                lock(&shared.mirror).advance(rev);
                *resume = Some(resume.map_or(rev + 1, |r| r.max(rev + 1)));
            }
            Some(WatchItem::Compacted(oldest)) => {
                bump(&shared.counters.resyncs, 1);
                tracing::warn!(
                    from = resume.unwrap_or(0),
                    compacted_to = oldest,
                    "Fleet watch revision was compacted away: full resync of the fleet profiles."
                );
                *resume = None;
                *reason = ResyncReason::Compacted;
                return Ok(());
            }
            Some(WatchItem::Cancelled(why)) => {
                return Err(Error::Protocol(format!("etcd cancelled the watch: {why}")));
            }
            None => return Err(Error::Protocol("the watch stream ended".to_owned())),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(kv: &Kv) -> Option<T> {
    match serde_json::from_slice(&kv.value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "Ignoring an undecodable fleet key.");
            None
        }
    }
}

/// Read every profile at the current revision, replace the mirror, and
/// send what the replica had not seen (then a `Resynced` notice).
/// Returns the revision read.
async fn resync(shared: &Shared, etcd: &Etcd, reason: ResyncReason) -> Result<i64, Error> {
    let started = std::time::Instant::now();
    let (kvs, revision) = etcd.range_prefix(shared.layout.profiles(), None).await?;
    let want_values = shared.has_subscribers();
    let mut updates = Vec::new();
    let mut fresh = Mirror::at(revision);
    {
        let old = lock(&shared.mirror);
        for kv in &kvs {
            match shared.layout.parse(&kv.key) {
                Some(Key::Behaviour { image, hash }) => {
                    fresh.learn(&image, &hash);
                    if want_values && !old.knows(&image, &hash) {
                        if let Some(behaviour) = decode::<StoredBehaviour>(kv) {
                            updates.push(Update::Behaviour { image, behaviour, revision: kv.mod_revision });
                        }
                    }
                }
                Some(Key::Clock { image, event_type }) => {
                    if let Some(v) = decode::<ClockValue>(kv) {
                        let versioned = crate::mirror::Versioned { clock: v.clock, mod_revision: kv.mod_revision };
                        fresh.set_clock(&image, event_type, versioned);
                        if old.clock(&image, event_type).map(|c| c.mod_revision) != Some(kv.mod_revision) {
                            updates.push(Update::Clock {
                                image,
                                event_type,
                                clock: v.clock,
                                revision: kv.mod_revision,
                            });
                        }
                    }
                }
                None => {}
            }
        }
    }
    *lock(&shared.mirror) = fresh;
    let missed = updates.len() as u64;
    updates.push(Update::Resynced { reason, revision, missed });
    tracing::info!(
        ?reason,
        revision,
        keys = kvs.len(),
        missed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Fleet profiles resynced."
    );
    shared.emit(updates);
    Ok(revision)
}

/// Apply watched changes to the mirror and send the news. Returns the last
/// revision seen.
fn apply(shared: &Shared, events: Vec<WatchEvent>) -> Option<i64> {
    let want_values = shared.has_subscribers();
    let mut updates = Vec::new();
    let mut last = None;
    {
        let mut mirror = lock(&shared.mirror);
        for ev in events {
            let (kv, put) = match ev {
                WatchEvent::Put(kv) => (kv, true),
                WatchEvent::Delete(kv) => (kv, false),
            };
            last = Some(last.unwrap_or(kv.mod_revision).max(kv.mod_revision));
            match (shared.layout.parse(&kv.key), put) {
                (Some(Key::Behaviour { image, hash }), true) => {
                    if mirror.learn(&image, &hash) && want_values {
                        if let Some(behaviour) = decode::<StoredBehaviour>(&kv) {
                            updates.push(Update::Behaviour { image, behaviour, revision: kv.mod_revision });
                        }
                    }
                }
                (Some(Key::Clock { image, event_type }), true) => {
                    if let Some(v) = decode::<ClockValue>(&kv) {
                        let versioned = crate::mirror::Versioned { clock: v.clock, mod_revision: kv.mod_revision };
                        if mirror.set_clock(&image, event_type, versioned) {
                            updates.push(Update::Clock {
                                image,
                                event_type,
                                clock: v.clock,
                                revision: kv.mod_revision,
                            });
                        }
                    }
                }
                (Some(Key::Behaviour { image, hash }), false) => {
                    tracing::warn!(%image, %hash, "A fleet behaviour key was deleted (profiles are grow-only).");
                    mirror.forget(&image, &hash);
                }
                (Some(Key::Clock { image, event_type }), false) => {
                    tracing::warn!(%image, event_type = event_type.name(), "A fleet clock key was deleted.");
                    mirror.remove_clock(&image, event_type);
                }
                (None, _) => {}
            }
        }
        if let Some(l) = last {
            mirror.advance(l);
        }
    }
    shared.emit(updates);
    last
}
