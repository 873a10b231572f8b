//! The `audit` table: the hash-chained audit trail, one JSON record per
//! row under its position.
//!
//! Appending never fails because of what is already stored: when the last
//! rows do not decode (a damaged or hand-edited tail), the new record is
//! numbered after the last row and chained to the last record that does
//! decode. The damage stays visible: [`Store::audit_records`] names the
//! undecodable row, and once that row is gone, `audit::verify` reports
//! the chain broken before the new record. An anonymous failed login can
//! therefore always be recorded, and never stops the daemon.

use rusqlite::{params, Connection};

use telltale_core::audit::{Action, Record};

use super::{decode, encode, to_sql_int, Fault, Store, StoreError};

/// How many undecodable rows at the tail are skipped looking for the
/// record to chain to; beyond that the new record chains to the genesis.
const TAIL_SCAN: usize = 1000;

/// The last row's position and the last decodable record's `(seq, hash)`.
fn tail(c: &Connection) -> Result<(Option<u64>, Option<Record>), Fault> {
    let mut stmt = c.prepare_cached("SELECT seq, body FROM audit ORDER BY seq DESC LIMIT ?1")?;
    let limit = i64::try_from(TAIL_SCAN).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![limit])?;
    let mut last_seq = None;
    let mut skipped = Vec::new();
    while let Some(row) = rows.next()? {
        // A negative position (a hand-edited row) counts as 0: appending
        // must not fail because of what is stored.
        let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        last_seq.get_or_insert(seq);
        match serde_json::from_str::<Record>(&row.get::<_, String>(1)?) {
            Ok(r) => {
                if !skipped.is_empty() {
                    tracing::warn!(unreadable = ?skipped, chained_to = r.seq, "Audit trail: the last records do not decode; the new record is chained to the last readable one (verification reports the break).");
                }
                return Ok((last_seq, Some(r)));
            }
            Err(e) => skipped.push(format!("{seq}: {e}")),
        }
    }
    if !skipped.is_empty() {
        tracing::warn!(unreadable = ?skipped, "Audit trail: no readable record at its end; the new record is chained to the genesis (verification reports the break).");
    }
    Ok((last_seq, None))
}

/// Append `actions`, chained in order. Returns the new records.
pub(super) fn append(c: &Connection, actions: &[Action]) -> Result<Vec<Record>, Fault> {
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    let (last_seq, last_good) = tail(c)?;
    let mut prev: Option<(u64, String)> = match (last_seq, last_good) {
        (Some(seq), Some(r)) => Some((seq, r.hash)),
        (Some(seq), None) => Some((seq, telltale_core::audit::GENESIS.to_owned())),
        (None, _) => None,
    };
    let mut stmt = c.prepare_cached("INSERT INTO audit (seq, body) VALUES (?1, ?2)")?;
    let mut out = Vec::with_capacity(actions.len());
    for action in actions {
        let r = Record::chain(prev.as_ref().map(|(s, h)| (*s, h.as_str())), action.clone());
        stmt.execute(params![to_sql_int("audit sequence", r.seq)?, encode("audit record", &r)?])?;
        prev = Some((r.seq, r.hash.clone()));
        out.push(r);
    }
    Ok(out)
}

impl Store {
    /// The whole audit trail, in order. A row that does not decode is an
    /// error naming it (tampering shows up here or in `audit::verify`).
    pub fn audit_records(&self) -> Result<Vec<Record>, StoreError> {
        let load = || -> Result<Vec<Record>, Fault> {
            let mut stmt = self.conn.prepare("SELECT seq, body FROM audit ORDER BY seq")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, body) = row?;
                out.push(decode("audit", &format!("record {seq}"), &body)?);
            }
            Ok(out)
        };
        load().map_err(self.fail())
    }
}

#[cfg(test)]
mod tests;
