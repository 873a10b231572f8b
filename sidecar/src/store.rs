//! The embedded store: SQLite in WAL mode in the data directory. Profiles,
//! learning clocks, anomalies, signals, notification rules, the outbox and
//! the audit trail survive restarts, `kill -9` included.
//!
//! The daemon persists through one call, [`Store::commit`]: everything one
//! batch of events (or one API command) changed — profile changes,
//! anomalies, signals and their change log, rule changes, queued
//! notifications, audit records — goes into one transaction, so there is
//! nothing to repair after a crash between two writes. Sequence numbers are
//! handed out by the daemon and their high-water marks stored with the
//! batch ([`Store::sequences`]), so they never go backwards, even after
//! retention pruned every row.
//!
//! Opening never resets anything: only a brand-new empty file gets the
//! schema; an older telltale database is migrated in place
//! (`store/schema.rs`); anything else (read-only mount, damaged file, another
//! application's database, a telltale database missing a table) is an
//! error saying what is wrong. The data directory is kept `0700` and the
//! database files `0600` (they hold webhook secrets and SMTP passwords).
//!
//! One file per table group under `store/`: `meta` (settings, counters,
//! sequence high-water marks), `profiles` (profiles, clocks, behaviours),
//! `anomalies`, `signals` (signals, signal changes), `audit`, `outbox`
//! (rules, suppressions, outbox, notified); `batch` writes them together,
//! `schema` creates and migrates them, `files` guards the files on disk.

mod anomalies;
mod audit;
mod batch;
mod files;
mod meta;
mod outbox;
mod profiles;
mod schema;
mod signals;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

pub use audit::AuditTrail;
pub use batch::{Batch, Outgoing, RuleChange, Sequences};
pub use files::Unwritable;
pub use outbox::{Delivered, Due};
pub use schema::SCHEMA_VERSION;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "telltale.db";

/// Store failures. Every variant names the file (or directory) concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or secured.
    #[error("data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A database file could not be created or its mode read or set.
    #[error("{path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The data directory is a shared directory such as `/tmp`
    /// (world-writable with the sticky bit): anyone could plant files there.
    #[error(
        "data directory {path} is a directory shared by every user (mode {mode:o}); give telltale a directory of its own"
    )]
    SharedDataDir {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// There is no database (read-only open of a directory never used).
    #[error("no telltale database at {0} (has `telltale run` used this --data-dir?)")]
    Missing(PathBuf),
    /// The database (or its directory) cannot be written: a read-only
    /// file system or a permission problem. The file itself is fine.
    #[error("cannot write {path}: {why}; the database itself is not damaged, do not move it away")]
    Unwritable {
        /// The file or directory that cannot be written.
        path: PathBuf,
        /// Why.
        why: Unwritable,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an SQLite database at all (or its header is
    /// destroyed).
    #[error(
        "{path} is not an SQLite database, or its header is corrupt; telltale left it untouched \
         (restore it from a backup, or move it away to start afresh, which discards what it held)"
    )]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite's integrity check found damage.
    #[error(
        "{path} failed SQLite's integrity check ({problems} problem(s), the first: {first}); telltale left it \
         untouched (restore it from a backup, or try the sqlite3 `.recover` command on a copy)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The first problem reported.
        first: String,
        /// How many problems were reported (the check stops at 100).
        problems: usize,
    },
    /// An SQLite database of another application (tables but no telltale
    /// schema version).
    #[error(
        "{path} is not a telltale database (it holds the tables {tables} and no telltale schema version); \
         telltale did not write to it: give telltale a --data-dir of its own"
    )]
    NotTelltale {
        /// The file.
        path: PathBuf,
        /// The tables it holds, comma-separated.
        tables: String,
    },
    /// A telltale database lacks one of its tables (deleted by hand?).
    /// Never recreated silently: that would reset what it held.
    #[error(
        "{path} is a telltale database of schema version {version} but its table `{table}` is missing; \
         telltale did not recreate it (that would silently reset it): restore the file from a backup"
    )]
    MissingTable {
        /// The file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The schema version the file claims.
        version: i64,
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
    /// The disk (or the file system of the data dir) is full: nothing of
    /// the write was stored, the database is intact.
    #[error("{path}: the disk is full; nothing of this write was stored and the database is intact")]
    Full {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
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
    /// A value could not be serialized: nothing was written (never an
    /// empty string in its place).
    #[error("{path}: encoding the {what} to store failed; nothing of the batch was written")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What was being encoded.
        what: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A batch contradicts itself or what is stored (a daemon bug, e.g.
    /// a sequence number handed out twice); nothing of it was written.
    #[error("{path}: batch refused, nothing of it was written: {detail}")]
    InvalidBatch {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// A failure inside the store, before it is tied to the database file
/// (see [`Fault::at`]). Lets the table modules work on a bare connection.
#[derive(Debug)]
enum Fault {
    /// A query failed.
    Sql(rusqlite::Error),
    /// A value did not serialize.
    Encode { what: &'static str, source: serde_json::Error },
    /// A stored row did not decode.
    BadRow { what: &'static str, detail: String },
    /// A batch contradicts itself or the store.
    InvalidBatch(String),
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        Fault::Sql(e)
    }
}

impl Fault {
    /// The error, naming the database file.
    fn at(self, path: &Path) -> StoreError {
        let path = path.to_owned();
        match self {
            Fault::Sql(source) => schema::classify(path, source),
            Fault::Encode { what, source } => StoreError::Encode { path, what, source },
            Fault::BadRow { what, detail } => StoreError::BadRow { path, what, detail },
            Fault::InvalidBatch(detail) => StoreError::InvalidBatch { path, detail },
        }
    }
}

/// `value` as JSON, or why not.
fn encode<T: serde::Serialize + ?Sized>(what: &'static str, value: &T) -> Result<String, Fault> {
    serde_json::to_string(value).map_err(|source| Fault::Encode { what, source })
}

/// A stored JSON value of table `what`, or a [`Fault::BadRow`] saying why not.
fn decode<T: serde::de::DeserializeOwned>(what: &'static str, context: &str, json: &str) -> Result<T, Fault> {
    serde_json::from_str(json).map_err(|e| Fault::BadRow { what, detail: format!("{context}: {e}") })
}

/// A sequence number or count as SQLite's integer, refusing what does not fit.
fn to_sql_int(what: &str, v: u64) -> Result<i64, Fault> {
    i64::try_from(v).map_err(|_| Fault::InvalidBatch(format!("{what} {v} does not fit a 64-bit signed integer")))
}

/// A stored non-negative integer, refusing a negative one.
fn from_sql_int(what: &'static str, v: i64) -> Result<u64, Fault> {
    u64::try_from(v).map_err(|_| Fault::BadRow { what, detail: format!("negative value {v}") })
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open the store in `dir` for writing: create the directory (`0700`)
    /// and a brand-new database (`0600`), or open, check and migrate the
    /// existing one. Looser modes found on the directory or the database
    /// files are tightened (with a log line).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        files::prepare_dir(dir)?;
        let path = dir.join(DB_FILE);
        files::prepare_db(&path)?;
        let conn = Connection::open(&path).map_err(|e| schema::classify(path.clone(), e))?;
        let mut store = Self { conn, path };
        store.conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| Fault::Sql(e).at(&store.path))?;
        if store.conn.is_readonly(rusqlite::DatabaseName::Main).map_err(|e| Fault::Sql(e).at(&store.path))? {
            // SQLite fell back to read-only although the probe could write:
            // say so rather than fail later on the first write.
            return Err(StoreError::Unwritable {
                path: store.path.clone(),
                why: Unwritable::Other,
                source: std::io::Error::other("SQLite opened the database read-only"),
            });
        }
        schema::check_integrity(&store.conn, &store.path)?;
        schema::check_usable(&store.conn, &store.path)?;
        store
            .conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(|e| Fault::Sql(e).at(&store.path))?;
        schema::migrate(&mut store.conn, &store.path)?;
        files::tighten_db_files(&store.path)?;
        Ok(store)
    }

    /// Open an existing store read-only (works while the daemon writes).
    /// An older schema version is read as it is (the daemon migrates it);
    /// nothing is checked beyond the schema (the daemon checks integrity
    /// when it opens the file). On a read-only file system, where SQLite
    /// cannot create its shared-memory file, a database closed cleanly (no
    /// pending `-wal` content) is read as immutable.
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Missing(path));
        }
        match Self::reader(&path, false) {
            Err(StoreError::Sql { source, .. })
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
                    && !files::wal_pending(&path) =>
            {
                Self::reader(&path, true)
            }
            other => other,
        }
    }

    fn reader(path: &Path, immutable: bool) -> Result<Self, StoreError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            flags |= OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(format!("file:{}?immutable=1", files::uri_path(path)), flags)
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(|e| schema::classify(path.to_owned(), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| Fault::Sql(e).at(path))?;
        let store = Self { conn, path: path.to_owned() };
        schema::check_readable(&store.conn, &store.path)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ties a [`Fault`] to this store's file.
    fn fail(&self) -> impl Fn(Fault) -> StoreError + '_ {
        move |f| f.at(&self.path)
    }

    /// Ties an SQLite error to this store's file.
    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| Fault::Sql(e).at(&self.path)
    }
}

/// Up to `limit` `(seq, JSON body)` rows of `table` above `after`, decoded.
fn sequenced_after<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &'static str,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, T)>, Fault> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT seq, body FROM {table} WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![after, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, body) = row?;
        let item = decode(table, &format!("seq {seq}"), &body)?;
        out.push((from_sql_int(table, seq)?, item));
    }
    Ok(out)
}

/// Every record of an `id → JSON body` table, by id.
fn bodies<T: serde::de::DeserializeOwned>(conn: &Connection, table: &'static str) -> Result<Vec<T>, Fault> {
    let mut stmt = conn.prepare_cached(&format!("SELECT id, body FROM {table} ORDER BY id"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body) = row?;
        out.push(decode(table, &format!("id {id:?}"), &body)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
