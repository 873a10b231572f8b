//! The `meta` table: `key → text` settings — the schema version, the
//! learning configuration, the sensors' counters, and the sequence
//! high-water marks.

use rusqlite::{params, Connection, OptionalExtension};

use telltale_core::profile::lifecycle::LearningConfig;

use super::{decode, encode, Fault, Store, StoreError};

/// Meta key of the last anomaly sequence number handed out.
pub(super) const SEQ_ANOMALY: &str = "seq.anomaly";
/// Meta key of the last signal change sequence number handed out.
pub(super) const SEQ_SIGNAL_CHANGE: &str = "seq.signal_change";
/// Meta key of the learning configuration.
const LEARNING: &str = "learning";

/// The value under `key`, if any.
pub(super) fn get(c: &Connection, key: &str) -> Result<Option<String>, Fault> {
    let mut stmt = c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
    Ok(stmt.query_row(params![key], |r| r.get(0)).optional()?)
}

/// Set `key` (insert or replace).
pub(super) fn set(c: &Connection, key: &str, value: &str) -> Result<(), Fault> {
    let mut stmt = c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    stmt.execute(params![key, value])?;
    Ok(())
}

/// A counter stored under `key` (0 when absent).
pub(super) fn get_u64(c: &Connection, key: &'static str) -> Result<u64, Fault> {
    match get(c, key)? {
        None => Ok(0),
        Some(v) => {
            v.parse().map_err(|_| Fault::BadRow { what: "meta", detail: format!("{key} = {v:?} is not a number") })
        }
    }
}

impl Store {
    /// Remember the learning configuration (for `telltale status`).
    pub fn save_learning_config(&self, cfg: &LearningConfig) -> Result<(), StoreError> {
        let v = encode("learning configuration", cfg).map_err(self.fail())?;
        set(&self.conn, LEARNING, &v).map_err(self.fail())
    }

    /// The learning configuration the daemon last ran with.
    pub fn learning_config(&self) -> Result<Option<LearningConfig>, StoreError> {
        let v = get(&self.conn, LEARNING).map_err(self.fail())?;
        v.map(|v| decode("meta", LEARNING, &v)).transpose().map_err(self.fail())
    }

    /// Save a JSON value under a meta key (e.g. the sensors' counters).
    pub fn save_meta_json(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        set(&self.conn, key, &value.to_string()).map_err(self.fail())
    }

    /// A JSON value saved with [`Store::save_meta_json`].
    pub fn meta_json(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let v = get(&self.conn, key).map_err(self.fail())?;
        v.map(|v| decode("meta", key, &v)).transpose().map_err(self.fail())
    }
}
