//! Signals: `signals` (id → the signal as JSON) and `signal_changes`
//! (the change log streamed to clients, under the sequence numbers the
//! daemon gave them, pruned with the anomalies).

use rusqlite::{params, Connection};

use telltale_core::signal::{Signal, SignalChange};

use super::{bodies, encode, sequenced_after, to_sql_int, Fault, Store, StoreError};

/// Save a signal (insert or replace).
pub(super) fn save(c: &Connection, s: &Signal) -> Result<(), Fault> {
    let body = encode("signal", s)?;
    let mut stmt = c.prepare_cached("INSERT OR REPLACE INTO signals (id, body) VALUES (?1, ?2)")?;
    stmt.execute(params![s.id, body])?;
    Ok(())
}

/// Log a signal change under `seq`; a sequence number already used is an error.
pub(super) fn log_change(c: &Connection, seq: u64, change: &SignalChange, now_ms: i64) -> Result<(), Fault> {
    let body = encode("signal change", change)?;
    let mut stmt = c.prepare_cached("INSERT INTO signal_changes (seq, time_ms, body) VALUES (?1, ?2, ?3)")?;
    stmt.execute(params![to_sql_int("signal change sequence", seq)?, now_ms, body])?;
    Ok(())
}

impl Store {
    /// Every stored signal, by id.
    pub fn signals(&self) -> Result<Vec<Signal>, StoreError> {
        bodies(&self.conn, "signals").map_err(self.fail())
    }

    /// Up to `limit` signal changes after sequence `after`, in order.
    pub fn signal_changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, SignalChange)>, StoreError> {
        sequenced_after(&self.conn, "signal_changes", after, limit).map_err(self.fail())
    }
}
