//! The embedded store: SQLite in WAL mode in the data directory. Profiles,
//! learning clocks and anomalies survive restarts, `kill -9` included
//! (every batch of changes is one committed transaction).
//!
//! This is the one narrow interface the daemon persists through; a shared
//! backend (Kubernetes custom resources) can implement the same calls.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use telltale_core::detect::{Anomaly, Change};
use telltale_core::profile::lifecycle::{Clock, LearningConfig, State};
use telltale_core::profile::{Behaviour, EventType, Observation, Profile};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;
/// File name of the database inside the data directory.
pub const DB_FILE: &str = "telltale.db";

/// Store failures. Every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("creating data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// There is no database (read-only open of a directory never used).
    #[error("no telltale database at {0} (has `telltale run` used this --data-dir?)")]
    Missing(PathBuf),
    /// The file is not a usable SQLite database.
    #[error("{path} is corrupt or not a telltale database; move it away to start over")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Written by a newer telltale.
    #[error("{path} has schema version {found}; this telltale reads version {supported} (upgrade telltale)")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// A query failed.
    #[error("database {path}")]
    Sql {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not decode.
    #[error("{path}: bad {what} row: {detail}")]
    BadRow {
        /// The file.
        path: PathBuf,
        /// Which table.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The `id → JSON body` tables.
#[derive(Debug, Clone, Copy)]
enum Table {
    Signals,
    Rules,
    Suppressions,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Signals => "signals",
            Table::Rules => "rules",
            Table::Suppressions => "suppressions",
        }
    }
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS profiles (image TEXT PRIMARY KEY, tags TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS clocks (
    image TEXT NOT NULL, type TEXT NOT NULL, state TEXT NOT NULL,
    started_ms INTEGER NOT NULL, state_since_ms INTEGER NOT NULL, last_new_ms INTEGER,
    behaviours INTEGER NOT NULL, lost_events INTEGER NOT NULL,
    PRIMARY KEY (image, type)) STRICT;
CREATE TABLE IF NOT EXISTS behaviours (
    image TEXT NOT NULL, lineage TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
    detail TEXT NOT NULL, access INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, tag TEXT NOT NULL,
    PRIMARY KEY (image, lineage, type, key)) STRICT;
CREATE TABLE IF NOT EXISTS anomalies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL,
    image TEXT NOT NULL, container_id TEXT NOT NULL, type TEXT NOT NULL,
    observation TEXT NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS signals (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS rules (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS suppressions (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS signal_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule_id TEXT NOT NULL, target INTEGER NOT NULL,
    signal_id TEXT NOT NULL, message TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL, last_error TEXT, created_ms INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS notified (
    rule_id TEXT NOT NULL, target INTEGER NOT NULL, signal_id TEXT NOT NULL, sent_ms INTEGER NOT NULL,
    PRIMARY KEY (rule_id, target, signal_id)) STRICT;
";

impl Store {
    /// Open (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Corrupt { path: path.clone(), source })?;
        let store = Self { conn, path };
        store.check(true)?;
        Ok(store)
    }

    /// Open an existing store read-only (works while the daemon writes).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Missing(path));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::Corrupt { path: path.clone(), source })?;
        let store = Self { conn, path };
        store.check(false)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql { path: self.path.clone(), source }
    }

    /// Verify the file, then create or check the schema.
    fn check(&self, writable: bool) -> Result<(), StoreError> {
        let corrupt = |source| StoreError::Corrupt { path: self.path.clone(), source };
        let ok: String = self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(corrupt)?;
        if ok != "ok" {
            return Err(StoreError::Corrupt { path: self.path.clone(), source: rusqlite::Error::InvalidQuery });
        }
        let has_meta: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'", [], |r| {
                r.get::<_, i64>(0).map(|n| n > 0)
            })
            .map_err(corrupt)?;
        if has_meta {
            let found: Option<String> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0))
                .optional()
                .map_err(self.sql())?;
            let found: i64 = found.and_then(|v| v.parse().ok()).ok_or_else(|| StoreError::BadRow {
                path: self.path.clone(),
                what: "meta",
                detail: "schema_version missing or not a number".into(),
            })?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema { path: self.path.clone(), found, supported: SCHEMA_VERSION });
            }
        } else if !writable {
            return Err(StoreError::Missing(self.path.clone()));
        }
        if writable {
            self.conn
                .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;")
                .map_err(self.sql())?;
            self.conn.execute_batch(SCHEMA).map_err(self.sql())?;
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )
                .map_err(self.sql())?;
        } else {
            self.conn.execute_batch("PRAGMA busy_timeout=5000;").map_err(self.sql())?;
        }
        Ok(())
    }

    /// Remember the learning configuration (for `telltale status`).
    pub fn save_learning_config(&self, cfg: &LearningConfig) -> Result<(), StoreError> {
        let v = serde_json::to_string(cfg).unwrap_or_default();
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('learning', ?1)", params![v])
            .map_err(self.sql())?;
        Ok(())
    }

    /// Save a JSON value under a meta key (e.g. the sensors' counters).
    pub fn save_meta_json(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value.to_string()])
            .map_err(self.sql())?;
        Ok(())
    }

    /// A JSON value saved with [`Store::save_meta_json`].
    pub fn meta_json(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// The learning configuration the daemon last ran with.
    pub fn learning_config(&self) -> Result<Option<LearningConfig>, StoreError> {
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='learning'", [], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Apply a batch of changes in one transaction. Returns the sequence
    /// numbers given to the batch's anomalies, in order.
    pub fn apply(&mut self, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
        let mut sequences = Vec::new();
        if changes.is_empty() {
            return Ok(sequences);
        }
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        for change in changes {
            match change {
                Change::Behaviour { image, observation, tag, now_ms } => {
                    let (key, access) = behaviour_key(&observation.behaviour);
                    let lineage = serde_json::to_string(&observation.lineage).unwrap_or_default();
                    let detail = serde_json::to_string(&observation.behaviour).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO behaviours (image, lineage, type, key, detail, access, first_seen_ms, tag)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (image, lineage, type, key) DO UPDATE SET access = access | excluded.access",
                        params![image, lineage, observation.event_type().name(), key, detail, access, now_ms, tag],
                    )
                    .map_err(sql)?;
                }
                Change::Profile { image, tags } => {
                    let tags = serde_json::to_string(tags).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO profiles (image, tags) VALUES (?1, ?2)
                         ON CONFLICT (image) DO UPDATE SET tags = excluded.tags",
                        params![image, tags],
                    )
                    .map_err(sql)?;
                }
                Change::Clock { image, event_type, clock } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO clocks
                         (image, type, state, started_ms, state_since_ms, last_new_ms, behaviours, lost_events)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            image,
                            event_type.name(),
                            clock.state.name(),
                            clock.started_ms,
                            clock.state_since_ms,
                            clock.last_new_ms,
                            i64::try_from(clock.behaviours).unwrap_or(i64::MAX),
                            i64::try_from(clock.lost_events).unwrap_or(i64::MAX),
                        ],
                    )
                    .map_err(sql)?;
                }
                Change::Anomaly(a) => {
                    let observation = serde_json::to_string(&a.observation).unwrap_or_default();
                    let body = serde_json::to_string(a).unwrap_or_default();
                    tx.execute(
                        "INSERT OR IGNORE INTO anomalies (id, time_ms, image, container_id, type, observation, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            a.id,
                            a.time_ms,
                            a.container.image,
                            a.container.id,
                            a.event_type.name(),
                            observation,
                            body
                        ],
                    )
                    .map_err(sql)?;
                    sequences.push(u64::try_from(tx.last_insert_rowid()).unwrap_or(0));
                }
            }
        }
        tx.commit().map_err(sql)?;
        Ok(sequences)
    }

    /// Up to `limit` anomalies with a sequence number above `after`, in order.
    pub fn anomalies_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Anomaly)>, StoreError> {
        self.sequenced_after("anomalies", after, limit)
    }

    /// Up to `limit` `(seq, JSON body)` rows of `table` above `after`, decoded.
    fn sequenced_after<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT seq, body FROM {table} WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
            .map_err(self.sql())?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![after, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(self.sql())?;
            let item = serde_json::from_str(&body).map_err(|e| StoreError::BadRow {
                path: self.path.clone(),
                what: table,
                detail: e.to_string(),
            })?;
            out.push((u64::try_from(seq).unwrap_or(0), item));
        }
        Ok(out)
    }

    /// The highest anomaly sequence number (0 if none).
    pub fn last_sequence(&self) -> Result<u64, StoreError> {
        let v: Option<i64> =
            self.conn.query_row("SELECT max(seq) FROM anomalies", [], |r| r.get(0)).map_err(self.sql())?;
        Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    /// Delete anomalies and signal changes older than `before_ms`
    /// (retention). Returns how many anomalies.
    pub fn prune_anomalies(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn.execute("DELETE FROM signal_changes WHERE time_ms < ?1", params![before_ms]).map_err(self.sql())?;
        self.conn.execute("DELETE FROM anomalies WHERE time_ms < ?1", params![before_ms]).map_err(self.sql())
    }

    /// Every profile with its behaviours and clocks.
    pub fn load_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        let bad = |what, detail: String| StoreError::BadRow { path: self.path.clone(), what, detail };
        let mut profiles: std::collections::BTreeMap<String, Profile> = Default::default();
        let mut stmt = self.conn.prepare("SELECT image, tags FROM profiles").map_err(self.sql())?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(self.sql())?;
        for row in rows {
            let (image, tags) = row.map_err(self.sql())?;
            let mut p = Profile::new(&image, 0);
            let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| bad("profiles", e.to_string()))?;
            p.tags.extend(tags);
            profiles.insert(image, p);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT image, lineage, detail, access, first_seen_ms, tag FROM behaviours ORDER BY rowid")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(self.sql())?;
        for row in rows {
            let (image, lineage, detail, access, first_seen_ms, tag) = row.map_err(self.sql())?;
            let lineage: Vec<String> =
                serde_json::from_str(&lineage).map_err(|e| bad("behaviours", format!("lineage: {e}")))?;
            let mut behaviour: Behaviour =
                serde_json::from_str(&detail).map_err(|e| bad("behaviours", format!("detail: {e}")))?;
            if let Behaviour::File { access: a, .. } = &mut behaviour {
                *a = u8::try_from(access).map_err(|e| bad("behaviours", format!("access: {e}")))?;
            }
            let p = profiles.entry(image.clone()).or_insert_with(|| Profile::new(&image, 0));
            p.add(&Observation { lineage, behaviour }, &tag, first_seen_ms);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT image, type, state, started_ms, state_since_ms, last_new_ms, behaviours, lost_events
                 FROM clocks",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .map_err(self.sql())?;
        for row in rows {
            let (image, t, state, started_ms, state_since_ms, last_new_ms, behaviours, lost) =
                row.map_err(self.sql())?;
            let event_type = EventType::from_name(&t).ok_or_else(|| bad("clocks", format!("type {t:?}")))?;
            let state = State::from_name(&state).ok_or_else(|| bad("clocks", format!("state {state:?}")))?;
            let p = profiles.entry(image.clone()).or_insert_with(|| Profile::new(&image, started_ms));
            p.set_clock(
                event_type,
                Clock {
                    state,
                    started_ms,
                    state_since_ms,
                    last_new_ms,
                    behaviours: u64::try_from(behaviours).unwrap_or(0),
                    lost_events: u64::try_from(lost).unwrap_or(0),
                },
            );
        }
        Ok(profiles.into_values().collect())
    }

    /// (container id, observation) of every anomaly stored: what was
    /// already reported.
    pub fn reported(&self) -> Result<Vec<(String, Observation)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT container_id, observation FROM anomalies").map_err(self.sql())?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (c, o) = row.map_err(self.sql())?;
            let o = serde_json::from_str(&o).map_err(|e| StoreError::BadRow {
                path: self.path.clone(),
                what: "anomalies",
                detail: e.to_string(),
            })?;
            out.push((c, o));
        }
        Ok(out)
    }

    /// Append actions to the audit trail (one transaction), chaining each
    /// to the record before it. Returns the new records.
    pub fn append_audit(
        &mut self,
        actions: Vec<telltale_core::audit::Action>,
    ) -> Result<Vec<telltale_core::audit::Record>, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        let last: Option<String> = tx
            .query_row("SELECT body FROM audit ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        let mut prev: Option<telltale_core::audit::Record> = match last {
            Some(body) => Some(serde_json::from_str(&body).map_err(|e| StoreError::BadRow {
                path: path.clone(),
                what: "audit",
                detail: e.to_string(),
            })?),
            None => None,
        };
        let mut out = Vec::new();
        for action in actions {
            let r = telltale_core::audit::Record::chain(prev.as_ref().map(|p| (p.seq, p.hash.as_str())), action);
            let body = serde_json::to_string(&r).unwrap_or_default();
            tx.execute(
                "INSERT INTO audit (seq, body) VALUES (?1, ?2)",
                params![i64::try_from(r.seq).unwrap_or(i64::MAX), body],
            )
            .map_err(sql)?;
            prev = Some(r.clone());
            out.push(r);
        }
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    /// The whole audit trail, in order. A row that does not decode is an
    /// error naming it (tampering shows up here or in `audit::verify`).
    pub fn audit_records(&self) -> Result<Vec<telltale_core::audit::Record>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT seq, body FROM audit ORDER BY seq").map_err(self.sql())?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(self.sql())?;
            out.push(serde_json::from_str(&body).map_err(|e| StoreError::BadRow {
                path: self.path.clone(),
                what: "audit",
                detail: format!("record {seq}: {e}"),
            })?);
        }
        Ok(out)
    }

    /// Save records of an `id → JSON body` table (insert or replace), in
    /// one transaction.
    fn save_bodies<T: serde::Serialize>(&mut self, table: Table, items: &[(&str, &T)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        let stmt = format!("INSERT OR REPLACE INTO {} (id, body) VALUES (?1, ?2)", table.name());
        for (id, item) in items {
            let body = serde_json::to_string(item).unwrap_or_default();
            tx.execute(&stmt, params![id, body]).map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// Every record of an `id → JSON body` table, by id.
    fn bodies<T: serde::de::DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, StoreError> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT body FROM {} ORDER BY id", table.name())).map_err(self.sql())?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(self.sql())?;
            out.push(serde_json::from_str(&body).map_err(|e| StoreError::BadRow {
                path: self.path.clone(),
                what: table.name(),
                detail: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Save signals.
    pub fn save_signals(&mut self, signals: &[telltale_core::signal::Signal]) -> Result<(), StoreError> {
        let items: Vec<(&str, &telltale_core::signal::Signal)> = signals.iter().map(|s| (s.id.as_str(), s)).collect();
        self.save_bodies(Table::Signals, &items)
    }

    /// Every stored signal.
    pub fn signals(&self) -> Result<Vec<telltale_core::signal::Signal>, StoreError> {
        self.bodies(Table::Signals)
    }

    /// Log signal changes for streaming; returns their sequence numbers.
    pub fn log_signal_changes(
        &mut self,
        changes: &[telltale_core::signal::SignalChange],
        now_ms: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        let mut seqs = Vec::new();
        for c in changes {
            let body = serde_json::to_string(c).unwrap_or_default();
            tx.execute("INSERT INTO signal_changes (time_ms, body) VALUES (?1, ?2)", params![now_ms, body])
                .map_err(sql)?;
            seqs.push(u64::try_from(tx.last_insert_rowid()).unwrap_or(0));
        }
        tx.commit().map_err(sql)?;
        Ok(seqs)
    }

    /// Up to `limit` signal changes after sequence `after`.
    pub fn signal_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, telltale_core::signal::SignalChange)>, StoreError> {
        self.sequenced_after("signal_changes", after, limit)
    }

    /// Save (insert or replace) a notification rule.
    pub fn save_rule(&mut self, rule: &telltale_core::notify::Rule) -> Result<(), StoreError> {
        self.save_bodies(Table::Rules, &[(rule.id.as_str(), rule)])
    }

    /// Every notification rule.
    pub fn rules(&self) -> Result<Vec<telltale_core::notify::Rule>, StoreError> {
        self.bodies(Table::Rules)
    }

    /// Save (insert or replace) a suppression rule.
    pub fn save_suppression(&mut self, rule: &telltale_core::suppress::Suppression) -> Result<(), StoreError> {
        self.save_bodies(Table::Suppressions, &[(rule.id.as_str(), rule)])
    }

    /// Every suppression rule.
    pub fn suppressions(&self) -> Result<Vec<telltale_core::suppress::Suppression>, StoreError> {
        self.bodies(Table::Suppressions)
    }

    /// Delete a suppression rule. Returns whether it existed.
    pub fn delete_suppression(&self, id: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute("DELETE FROM suppressions WHERE id = ?1", params![id]).map_err(self.sql())?;
        Ok(n > 0)
    }

    /// Delete a rule and what it still had to send. Returns whether it existed.
    pub fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute("DELETE FROM rules WHERE id = ?1", params![id]).map_err(self.sql())?;
        self.conn.execute("DELETE FROM outbox WHERE rule_id = ?1", params![id]).map_err(self.sql())?;
        Ok(n > 0)
    }

    /// Queue a message. An undelivered message for the same rule, target and
    /// signal is replaced by the newer one (updates coalesce), and nothing
    /// is sent sooner than `rate_limit_ms` after the last delivery.
    pub fn enqueue(
        &self,
        rule_id: &str,
        target: usize,
        signal_id: &str,
        message: &telltale_core::notify::Message,
        now_ms: i64,
        rate_limit_ms: i64,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).unwrap_or_default();
        let target = i64::try_from(target).unwrap_or(i64::MAX);
        let last: Option<i64> = self
            .conn
            .query_row(
                "SELECT sent_ms FROM notified WHERE rule_id = ?1 AND target = ?2 AND signal_id = ?3",
                params![rule_id, target, signal_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        let not_before = last.map_or(now_ms, |l| now_ms.max(l.saturating_add(rate_limit_ms)));
        let updated = self
            .conn
            .execute(
                "UPDATE outbox SET message = ?4, next_attempt_ms = max(next_attempt_ms, ?5)
                 WHERE rule_id = ?1 AND target = ?2 AND signal_id = ?3",
                params![rule_id, target, signal_id, body, not_before],
            )
            .map_err(self.sql())?;
        if updated == 0 {
            self.conn
                .execute(
                    "INSERT INTO outbox (rule_id, target, signal_id, message, next_attempt_ms, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![rule_id, target, signal_id, body, not_before, now_ms],
                )
                .map_err(self.sql())?;
        }
        Ok(())
    }

    /// Has a message about this signal already been delivered by this rule's target?
    pub fn was_notified(&self, rule_id: &str, target: usize, signal_id: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM notified WHERE rule_id = ?1 AND target = ?2 AND signal_id = ?3",
                params![rule_id, i64::try_from(target).unwrap_or(i64::MAX), signal_id],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        Ok(n > 0)
    }

    /// Messages due at `now_ms`: (outbox id, rule id, target index, signal id, message, attempts).
    #[allow(clippy::type_complexity)]
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<(i64, String, usize, String, String, u32)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, rule_id, target, signal_id, message, attempts FROM outbox
                 WHERE next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    usize::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                ))
            })
            .map_err(self.sql())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sql())
    }

    /// A message was delivered: drop it, remember when (rate limit).
    pub fn delivered(
        &mut self,
        id: i64,
        rule_id: &str,
        target: usize,
        signal_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![id]).map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO notified (rule_id, target, signal_id, sent_ms) VALUES (?1, ?2, ?3, ?4)",
            params![rule_id, i64::try_from(target).unwrap_or(i64::MAX), signal_id, now_ms],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// A delivery failed: try again at `next_attempt_ms`.
    pub fn failed(&self, id: i64, error: &str, next_attempt_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3 WHERE id = ?1",
                params![id, error, next_attempt_ms],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Every stored anomaly, oldest first.
    pub fn anomalies(&self) -> Result<Vec<Anomaly>, StoreError> {
        Ok(self.anomalies_after(0, usize::MAX)?.into_iter().map(|(_, a)| a).collect())
    }
}

/// The unique key of a behaviour within (image, lineage, type), and the
/// access bits stored beside it.
fn behaviour_key(b: &Behaviour) -> (String, i64) {
    match b {
        Behaviour::Exec => (String::new(), 0),
        Behaviour::File { pattern, access } => (pattern.clone(), i64::from(*access)),
        Behaviour::Dns { name, qtype } => (format!("{name}\t{qtype}"), 0),
        Behaviour::Connect { protocol, address, port } => (format!("{protocol} {address} {port}"), 0),
        Behaviour::ConnectRange { protocol, network, port } => (format!("{protocol} {network} {port}"), 0),
    }
}

#[cfg(test)]
mod tests;
