//! The schema: a list of migrations keyed by SQLite's `user_version`, the
//! checks made when a file is opened, and what SQLite's errors mean.
//!
//! Version 1 is the schema telltale wrote before migrations existed (it
//! kept its version only in `meta.schema_version`, `user_version` 0). A
//! brand-new empty file runs every migration from 0, so a fresh database
//! and a migrated one are built by the same statements. Each migration
//! runs in the same `BEGIN IMMEDIATE` transaction as the version bump, so
//! a crash or a concurrent opener never sees half of one. Tables are
//! never created "if not exists": a telltale database missing one is an
//! error, not a silent reset.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::{Fault, StoreError};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

/// One step of the schema.
struct Migration {
    /// The version it leads to (from the one before).
    to: i64,
    /// The tables it creates.
    creates: &'static [&'static str],
    /// The change.
    apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// Every migration, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        creates: &[
            "meta",
            "profiles",
            "clocks",
            "behaviours",
            "anomalies",
            "audit",
            "signals",
            "rules",
            "suppressions",
            "signal_changes",
            "outbox",
            "notified",
        ],
        apply: v1,
    },
    Migration { to: 2, creates: &[], apply: v2 },
];

/// Version 1: the original schema (as telltale wrote it before migrations).
fn v1(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE profiles (image TEXT PRIMARY KEY, tags TEXT NOT NULL) STRICT;
CREATE TABLE clocks (
    image TEXT NOT NULL, type TEXT NOT NULL, state TEXT NOT NULL,
    started_ms INTEGER NOT NULL, state_since_ms INTEGER NOT NULL, last_new_ms INTEGER,
    behaviours INTEGER NOT NULL, lost_events INTEGER NOT NULL,
    PRIMARY KEY (image, type)) STRICT;
CREATE TABLE behaviours (
    image TEXT NOT NULL, lineage TEXT NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL,
    detail TEXT NOT NULL, access INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, tag TEXT NOT NULL,
    PRIMARY KEY (image, lineage, type, key)) STRICT;
CREATE TABLE anomalies (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time_ms INTEGER NOT NULL,
    image TEXT NOT NULL, container_id TEXT NOT NULL, type TEXT NOT NULL,
    observation TEXT NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE audit (seq INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE signals (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE rules (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE suppressions (id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE signal_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, body TEXT NOT NULL) STRICT;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule_id TEXT NOT NULL, target INTEGER NOT NULL,
    signal_id TEXT NOT NULL, message TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL, last_error TEXT, created_ms INTEGER NOT NULL) STRICT;
CREATE TABLE notified (
    rule_id TEXT NOT NULL, target INTEGER NOT NULL, signal_id TEXT NOT NULL, sent_ms INTEGER NOT NULL,
    PRIMARY KEY (rule_id, target, signal_id)) STRICT;
",
    )
}

/// Version 2: outbox rows carry a version (bumped when an update is
/// merged in, so a delivery only removes what it sent) and their rate
/// limit; the sequence high-water marks move to `meta`, starting from
/// the highest number version 1 ever handed out (`sqlite_sequence`
/// remembers those of pruned rows).
fn v2(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "ALTER TABLE outbox ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
         ALTER TABLE outbox ADD COLUMN rate_limit_ms INTEGER NOT NULL DEFAULT 0;",
    )?;
    for (key, table) in [(super::meta::SEQ_ANOMALY, "anomalies"), (super::meta::SEQ_SIGNAL_CHANGE, "signal_changes")] {
        let handed_out: Option<i64> =
            c.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).optional()?;
        let stored: Option<i64> = c.query_row(&format!("SELECT max(seq) FROM {table}"), [], |r| r.get(0))?;
        let high = handed_out.unwrap_or(0).max(stored.unwrap_or(0)).max(0);
        c.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![key, high.to_string()],
        )?;
    }
    Ok(())
}

/// The tables a database of `version` has.
fn tables_at(version: i64) -> impl Iterator<Item = &'static str> {
    MIGRATIONS.iter().filter(move |m| m.to <= version).flat_map(|m| m.creates.iter().copied())
}

/// What a file holds.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing: a brand-new file.
    Empty,
    /// A telltale database of this schema version.
    Telltale(i64),
    /// Something else: these tables.
    Foreign(Vec<String>),
}

/// Look at the file's schema without changing anything.
fn detect(c: &Connection) -> Result<Found, Fault> {
    let objects: i64 = c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    let user_version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let pages: i64 = c.pragma_query_value(None, "page_count", |r| r.get(0))?;
    if objects == 0 && user_version == 0 && pages <= 1 {
        return Ok(Found::Empty);
    }
    let mut stmt = c.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let tables = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    let ours = tables_at(SCHEMA_VERSION).filter(|t| *t != "meta").any(|t| tables.iter().any(|x| x == t));
    if !tables.iter().any(|t| t == "meta") || !ours {
        return Ok(Found::Foreign(tables));
    }
    let stored: Option<String> =
        c.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional()?;
    let Some(stored) = stored else {
        return Ok(Found::Foreign(tables));
    };
    let stored: i64 = stored
        .parse()
        .map_err(|_| Fault::BadRow { what: "meta", detail: format!("schema_version {stored:?} is not a number") })?;
    Ok(Found::Telltale(stored.max(user_version)))
}

/// The error for a file that is not (or no longer) a usable telltale
/// database of `version`: newer, or missing a table.
fn check_tables(c: &Connection, path: &Path, version: i64) -> Result<(), StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_owned(), found: version, supported: SCHEMA_VERSION });
    }
    let mut stmt = c
        .prepare_cached("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1")
        .map_err(|e| Fault::Sql(e).at(path))?;
    for table in tables_at(version) {
        let n: i64 = stmt.query_row([table], |r| r.get(0)).map_err(|e| Fault::Sql(e).at(path))?;
        if n == 0 {
            return Err(StoreError::MissingTable { path: path.to_owned(), table, version });
        }
    }
    Ok(())
}

fn not_telltale(path: &Path, tables: &[String]) -> StoreError {
    let tables = if tables.is_empty() { "(none)".to_owned() } else { tables.join(", ") };
    StoreError::NotTelltale { path: path.to_owned(), tables }
}

/// For a read-only open: a telltale database this build can read.
pub(super) fn check_readable(c: &Connection, path: &Path) -> Result<(), StoreError> {
    match detect(c).map_err(|e| e.at(path))? {
        Found::Empty => Err(StoreError::Missing(path.to_owned())),
        Found::Foreign(tables) => Err(not_telltale(path, &tables)),
        Found::Telltale(version) => check_tables(c, path, version),
    }
}

/// For a writable open, before anything is written (even the journal
/// mode): a brand-new file, or a telltale database this build can migrate.
pub(super) fn check_usable(c: &Connection, path: &Path) -> Result<(), StoreError> {
    match detect(c).map_err(|e| e.at(path))? {
        Found::Empty => Ok(()),
        Found::Foreign(tables) => Err(not_telltale(path, &tables)),
        Found::Telltale(version) => check_tables(c, path, version),
    }
}

/// SQLite's quick integrity check: the first problem it reports, if any.
pub(super) fn check_integrity(c: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = c.prepare("PRAGMA quick_check").map_err(|e| Fault::Sql(e).at(path))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Fault::Sql(e).at(path))?;
    match rows.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(StoreError::Damaged {
            path: path.to_owned(),
            first: rows.first().cloned().unwrap_or_else(|| "no answer".into()),
            problems: rows.len(),
        }),
    }
}

/// Bring the file to [`SCHEMA_VERSION`]: create the schema in a brand-new
/// file, migrate an older telltale database, refuse anything else.
pub(super) fn migrate(c: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |e| Fault::Sql(e).at(path);
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
    let from = match detect(&tx).map_err(|e| e.at(path))? {
        Found::Empty => 0,
        Found::Foreign(tables) => return Err(not_telltale(path, &tables)),
        Found::Telltale(version) => {
            check_tables(&tx, path, version)?;
            version
        }
    };
    for m in MIGRATIONS.iter().filter(|m| m.to > from) {
        (m.apply)(&tx).map_err(sql)?;
        tx.pragma_update(None, "user_version", m.to).map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            rusqlite::params![m.to.to_string()],
        )
        .map_err(sql)?;
    }
    check_tables(&tx, path, SCHEMA_VERSION)?;
    tx.commit().map_err(sql)?;
    if from == 0 {
        tracing::info!(path = %path.display(), version = SCHEMA_VERSION, "New telltale database created.");
    } else if from < SCHEMA_VERSION {
        tracing::info!(path = %path.display(), from, to = SCHEMA_VERSION, "Telltale database schema migrated in place.");
    }
    Ok(())
}

/// What an SQLite error on this file means, in words.
pub(super) fn classify(path: PathBuf, source: rusqlite::Error) -> StoreError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotSqlite { path, source },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Damaged { path, first: source.to_string(), problems: 1 },
        Some(ErrorCode::DiskFull) => StoreError::Full { path, source },
        Some(ErrorCode::ReadOnly) => StoreError::Unwritable {
            path,
            why: super::Unwritable::Other,
            source: std::io::Error::other(source.to_string()),
        },
        _ => StoreError::Sql { path, source },
    }
}

#[cfg(test)]
mod tests;
