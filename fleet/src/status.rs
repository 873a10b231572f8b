//! What the daemon shows about the fleet link: the connection status and
//! the counters (writes, resyncs, queue depth).

use std::sync::atomic::{AtomicU64, Ordering};

/// The replica's link to the fleet's etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Watching live; writes go through.
    Connected {
        /// Since when (ms).
        since_ms: i64,
    },
    /// etcd is unreachable (or was never reached): detection goes on with
    /// the local profile, new behaviours wait in the durable queue.
    Disconnected {
        /// Since when (ms).
        since_ms: i64,
        /// The last failure.
        reason: String,
    },
    /// Reading every profile again (first connection, or the watch's
    /// revision was compacted away).
    Resyncing {
        /// Since when (ms).
        since_ms: i64,
    },
}

impl Status {
    /// Is the replica watching live?
    pub fn is_connected(&self) -> bool {
        matches!(self, Status::Connected { .. })
    }

    /// Stable name (`connected`, `disconnected`, `resyncing`).
    pub fn name(&self) -> &'static str {
        match self {
            Status::Connected { .. } => "connected",
            Status::Disconnected { .. } => "disconnected",
            Status::Resyncing { .. } => "resyncing",
        }
    }
}

/// Counts since the `Fleet` was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Write requests sent to etcd (one transaction each: a batch of
    /// behaviours, a batch of clock updates, a transition).
    pub write_txns: u64,
    /// Keys this replica created or changed.
    pub keys_written: u64,
    /// Behaviours (one per file access bit) handed to `publish`.
    pub published: u64,
    /// Of those, already in the fleet profile or already queued: nothing
    /// to write.
    pub skipped_known: u64,
    /// Behaviours new to the fleet, stored by this replica.
    pub stored: u64,
    /// Behaviours that reached etcd after another replica had stored them.
    pub stored_elsewhere: u64,
    /// Behaviours waiting in the durable queue now.
    pub queued: u64,
    /// Full resyncs because the watch's revision was compacted away.
    pub resyncs: u64,
    /// Times the watch was re-established after an interruption.
    pub reconnects: u64,
    /// Lifecycle transitions this replica wrote.
    pub transitions_written: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub write_txns: AtomicU64,
    pub keys_written: AtomicU64,
    pub published: AtomicU64,
    pub skipped_known: AtomicU64,
    pub stored: AtomicU64,
    pub stored_elsewhere: AtomicU64,
    pub queued: AtomicU64,
    pub resyncs: AtomicU64,
    pub reconnects: AtomicU64,
    pub transitions_written: AtomicU64,
}

/// Add to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl CounterCells {
    pub(crate) fn snapshot(&self) -> Counters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            write_txns: g(&self.write_txns),
            keys_written: g(&self.keys_written),
            published: g(&self.published),
            skipped_known: g(&self.skipped_known),
            stored: g(&self.stored),
            stored_elsewhere: g(&self.stored_elsewhere),
            queued: g(&self.queued),
            resyncs: g(&self.resyncs),
            reconnects: g(&self.reconnects),
            transitions_written: g(&self.transitions_written),
        }
    }
}
