//! The durable queue of behaviours not yet in etcd: one SQLite table in a
//! file the caller names (it may be the daemon's own database). Every
//! published behaviour is committed here (WAL, `synchronous=FULL`) before
//! `publish` returns and removed only once etcd holds it and its clock, so
//! a `kill -9` or an etcd outage loses nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use crate::error::Error;
use crate::profile::StoredBehaviour;

/// A behaviour waiting for etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Short image name.
    pub image: String,
    /// Behaviour hash (its key).
    pub hash: String,
    /// The value to store.
    pub behaviour: StoredBehaviour,
}

/// A queued row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// Row id (queue order).
    pub id: i64,
    /// What waits.
    pub pending: Pending,
}

/// The queue of one fleet (`scope`: prefix + cluster, so a configuration
/// change never sends one fleet's behaviours to another).
#[derive(Debug)]
pub(crate) struct Queue {
    conn: Mutex<Connection>,
    path: PathBuf,
    scope: String,
}

impl Queue {
    /// Open (or create) the queue table in `path`.
    pub(crate) fn open(path: &Path, scope: &str) -> Result<Self, Error> {
        let err = |what| move |source| Error::Queue { path: path.to_owned(), what, source };
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err("set busy timeout"))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).map_err(err("enable WAL"))?;
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS fleet_queue (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 scope TEXT NOT NULL,
                 image TEXT NOT NULL,
                 hash TEXT NOT NULL,
                 value TEXT NOT NULL,
                 UNIQUE (scope, image, hash)
             );",
        )
        .map_err(err("create table"))?;
        Ok(Self { conn: Mutex::new(conn), path: path.to_owned(), scope: scope.to_owned() })
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |source| Error::Queue { path: self.path.clone(), what, source }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (its
        // own transaction rolls back): keep using it.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue behaviours (in one committed transaction); ones already queued
    /// are ignored. Returns how many were added.
    pub(crate) fn push(&self, items: &[Pending]) -> Result<u64, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err("begin"))?;
        let mut added = 0;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO fleet_queue (scope, image, hash, value) VALUES (?1, ?2, ?3, ?4)")
                .map_err(self.err("prepare insert"))?;
            for p in items {
                let value = serde_json::to_string(&p.behaviour)
                    .map_err(|source| Error::Decode { key: format!("queued {}/{}", p.image, p.hash), source })?;
                added += stmt.execute(params![self.scope, p.image, p.hash, value]).map_err(self.err("insert"))? as u64;
            }
        }
        tx.commit().map_err(self.err("commit"))?;
        Ok(added)
    }

    /// The oldest `limit` rows. Rows that no longer decode are dropped
    /// (logged): nothing could ever send them.
    pub(crate) fn peek(&self, limit: usize) -> Result<Vec<Row>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, image, hash, value FROM fleet_queue WHERE scope = ?1 ORDER BY id LIMIT ?2")
            .map_err(self.err("prepare select"))?;
        let raw = stmt
            .query_map(params![self.scope, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(self.err("select"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("read row"))?;
        let mut rows = Vec::with_capacity(raw.len());
        for (id, image, hash, value) in raw {
            match serde_json::from_str::<StoredBehaviour>(&value) {
                Ok(behaviour) => rows.push(Row { id, pending: Pending { image, hash, behaviour } }),
                Err(e) => {
                    tracing::warn!(path = ?self.path, id, error = %e, "Dropping an undecodable fleet queue row.");
                    conn.execute("DELETE FROM fleet_queue WHERE id = ?1", [id]).map_err(self.err("delete"))?;
                }
            }
        }
        Ok(rows)
    }

    /// Remove rows (etcd holds them).
    pub(crate) fn remove(&self, ids: &[i64]) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err("begin"))?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM fleet_queue WHERE id = ?1").map_err(self.err("prepare"))?;
            for id in ids {
                stmt.execute([id]).map_err(self.err("delete"))?;
            }
        }
        tx.commit().map_err(self.err("commit"))
    }

    /// Every queued (image, hash).
    pub(crate) fn keys(&self) -> Result<Vec<(String, String)>, Error> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT image, hash FROM fleet_queue WHERE scope = ?1").map_err(self.err("prepare"))?;
        let rows = stmt
            .query_map([&self.scope], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err("select"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("read row"));
        rows
    }
}

#[cfg(test)]
mod tests;
