//! The `anomalies` table: every anomaly reported, under the sequence
//! number the daemon gave it (streams resume from it), until retention
//! prunes it.

use rusqlite::{params, Connection};

use telltale_core::detect::Anomaly;
use telltale_core::profile::Observation;

use super::{decode, encode, sequenced_after, to_sql_int, Fault, Store, StoreError};

/// Insert an anomaly under `seq`. An anomaly id already stored is kept as
/// it is (`false`); a sequence number already used is an error.
pub(super) fn insert(c: &Connection, seq: u64, a: &Anomaly) -> Result<bool, Fault> {
    let observation = encode("anomaly observation", &a.observation)?;
    let body = encode("anomaly", a)?;
    let mut stmt = c.prepare_cached(
        "INSERT INTO anomalies (seq, id, time_ms, image, container_id, type, observation, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
    )?;
    let n = stmt.execute(params![
        to_sql_int("anomaly sequence", seq)?,
        a.id,
        a.time_ms,
        a.container.image,
        a.container.id,
        a.event_type.name(),
        observation,
        body
    ])?;
    Ok(n > 0)
}

impl Store {
    /// Up to `limit` anomalies with a sequence number above `after`, in order.
    pub fn anomalies_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Anomaly)>, StoreError> {
        sequenced_after(&self.conn, "anomalies", after, limit).map_err(self.fail())
    }

    /// Every stored anomaly, oldest first.
    pub fn anomalies(&self) -> Result<Vec<Anomaly>, StoreError> {
        Ok(self.anomalies_after(0, usize::MAX)?.into_iter().map(|(_, a)| a).collect())
    }

    /// (container id, observation) of the newest
    /// [`telltale_core::detect::MAX_REPORTED`] anomalies stored, oldest
    /// first: what the detector remembers as already reported.
    pub fn reported(&self) -> Result<Vec<(String, Observation)>, StoreError> {
        let load = || -> Result<_, Fault> {
            // The newest the detector remembers, oldest first.
            let mut stmt = self.conn.prepare(
                "SELECT seq, container_id, observation FROM \
                 (SELECT seq, container_id, observation FROM anomalies ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            )?;
            let limit = i64::try_from(telltale_core::detect::MAX_REPORTED).unwrap_or(i64::MAX);
            let rows =
                stmt.query_map([limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, container, observation) = row?;
                out.push((container, decode("anomalies", &format!("seq {seq} observation"), &observation)?));
            }
            Ok(out)
        };
        load().map_err(self.fail())
    }

    /// Delete anomalies and signal changes older than `before_ms`
    /// (retention), in one transaction. Returns how many anomalies. The
    /// sequence high-water marks stay (see [`Store::sequences`]).
    pub fn prune_anomalies(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let sql = |e| Fault::Sql(e).at(&path);
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
        tx.execute("DELETE FROM signal_changes WHERE time_ms < ?1", params![before_ms]).map_err(sql)?;
        let n = tx.execute("DELETE FROM anomalies WHERE time_ms < ?1", params![before_ms]).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(n)
    }
}
