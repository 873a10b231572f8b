//! Batches the store could not take because the disk is full.
//!
//! Detection never stops for a full disk: the batch is published as usual
//! (streams, log, telemetry, JSON output), kept here in order, and written
//! as soon as the store takes writes again (tried every second). Memory is
//! bounded: past [`MAX_ENTRIES`] waiting entries a batch is not kept; it is
//! counted and logged, never dropped silently.

use std::collections::VecDeque;

use crate::store::Batch;

/// Most entries (changes, signals, log lines, messages, audit records)
/// waiting in memory.
pub const MAX_ENTRIES: usize = 200_000;

/// Waiting batches, oldest first.
#[derive(Debug, Default)]
pub struct Backlog {
    batches: VecDeque<Batch>,
    entries: usize,
    /// Batches not kept because the backlog was at its bound.
    pub dropped: u64,
    /// Since when the store refuses writes (ms), while it does.
    pub full_since: Option<i64>,
}

impl Backlog {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Entries waiting.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Keep `batch` behind the others; false (and counted) if the bound is
    /// reached.
    pub fn push(&mut self, batch: Batch) -> bool {
        let n = batch.len();
        if self.entries + n > MAX_ENTRIES {
            self.dropped += 1;
            return false;
        }
        self.entries += n;
        self.batches.push_back(batch);
        true
    }

    /// The oldest batch.
    pub fn front(&self) -> Option<&Batch> {
        self.batches.front()
    }

    /// The oldest batch was written.
    pub fn pop(&mut self) {
        if let Some(b) = self.batches.pop_front() {
            self.entries -= b.len();
        }
    }
}

impl<S: super::EventSource, D: super::Discovery> super::Daemon<S, D> {
    /// Write `batch`, or keep it for later if the disk is full (behind what
    /// already waits, so the store sees batches in order).
    pub(super) fn persist(&mut self, batch: &Batch, now: i64) -> Result<(), super::DaemonError> {
        if self.backlog.is_empty() {
            match self.store.commit(batch) {
                Ok(_) => return Ok(()),
                Err(crate::store::StoreError::Full { path, .. }) => {
                    self.backlog.full_since = Some(now);
                    tracing::error!(path = %path.display(), "Disk full: detection and streaming go on from memory; \
                        what is not stored waits and is written when space returns.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !self.backlog.push(batch.clone()) {
            tracing::error!(
                waiting = self.backlog.entries(),
                dropped = self.backlog.dropped,
                anomalies = batch.anomaly_sequences.len(),
                "Disk still full and the in-memory backlog is at its bound: this batch is not kept."
            );
        }
        Ok(())
    }

    /// Write what waits, oldest first, while the store takes it.
    pub(super) fn write_backlog(&mut self, now: i64) -> Result<(), super::DaemonError> {
        let mut written = 0;
        while let Some(b) = self.backlog.front() {
            match self.store.commit(b) {
                Ok(_) => {
                    self.backlog.pop();
                    written += 1;
                }
                Err(crate::store::StoreError::Full { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(since) = self.backlog.full_since.take() {
            tracing::warn!(
                written,
                full_for_ms = now - since,
                dropped = self.backlog.dropped,
                "Disk has space again: the backlog is stored."
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(audit: usize) -> Batch {
        let action = |i| {
            telltale_core::audit::Action::new(
                i,
                "p",
                telltale_core::audit::AssetType::SecuritySignal,
                "s",
                telltale_core::audit::Verb::Update,
                telltale_core::audit::Outcome::Success,
            )
        };
        Batch { audit: (0..audit as i64).map(action).collect(), ..Batch::default() }
    }

    #[test]
    fn batches_wait_in_order_within_the_bound_and_the_rest_is_counted() {
        let mut b = Backlog::default();
        assert!(b.push(batch(3)));
        assert!(b.push(batch(MAX_ENTRIES - 3)));
        assert!(!b.push(batch(1)), "past the bound");
        assert_eq!((b.len(), b.entries(), b.dropped), (2, MAX_ENTRIES, 1));
        assert_eq!(b.front().map(Batch::len), Some(3), "oldest first");
        b.pop();
        assert_eq!((b.len(), b.entries()), (1, MAX_ENTRIES - 3));
        b.pop();
        assert!(b.is_empty());
    }
}
