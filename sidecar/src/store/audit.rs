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
//!
//! Retention ([`Store::prune_audit`]) removes the oldest records, a prefix
//! of the trail, and keeps the last one removed as the trail's anchor (in
//! `meta`): the records kept chain from it, and the `prune` record the pass
//! appends, in the same transaction, names it. [`Store::audit_trail`] reads
//! the anchor and the records together, so that they can be verified.

use rusqlite::{params, Connection};

use telltale_core::audit::{verify_from, Action, Anchor, Bound, ChainError, Pruned, Record, Retention, Verifier};

use super::{decode, encode, meta, to_sql_int, Fault, Store, StoreError};

/// Meta key of the trail's anchor: the last record retention removed.
const ANCHOR: &str = "audit.anchor";

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

/// The trail's anchor, if retention ever removed records.
fn anchor(c: &Connection) -> Result<Option<Anchor>, Fault> {
    meta::get(c, ANCHOR)?.map(|v| decode("meta", ANCHOR, &v)).transpose()
}

/// The anchor to chain to when the trail is empty: one that does not
/// decode is logged and taken as none (appending must not fail because of
/// what is stored; verification reports it).
fn anchor_for_append(c: &Connection) -> Result<Option<Anchor>, Fault> {
    match anchor(c) {
        Err(Fault::BadRow { detail, .. }) => {
            tracing::warn!(%detail, "Audit trail: its anchor does not decode; the new record is chained to the genesis (verification reports the break).");
            Ok(None)
        }
        other => other,
    }
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
        // Empty: after the anchor, if retention removed every record.
        (None, _) => anchor_for_append(c)?.map(|a| (a.seq, a.hash)),
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

/// What a retention pass has found to remove so far, up to its last
/// readable record (the anchor must be one whose hash is known).
#[derive(Debug, Clone)]
struct Removal {
    records: u64,
    first_seq: Option<u64>,
    last: Option<Record>,
    oldest_ms: Option<i64>,
    newest_ms: Option<i64>,
    by_age: bool,
    by_count: bool,
    chain: Option<String>,
    undecodable: u64,
}

impl Removal {
    fn pruned(self) -> Option<Pruned> {
        let last = self.last?;
        let mut by = Vec::new();
        if self.by_age {
            by.push(Bound::MaxAge);
        }
        if self.by_count {
            by.push(Bound::MaxRecords);
        }
        Some(Pruned {
            records: self.records,
            first_seq: self.first_seq.unwrap_or(last.seq),
            anchor: Anchor::of(&last),
            oldest_ms: self.oldest_ms,
            newest_ms: self.newest_ms,
            by,
            removed_chain: self.chain.unwrap_or_else(|| "verified".to_owned()),
            undecodable: self.undecodable,
        })
    }
}

/// Which prefix of the trail `retention` removes at `now_ms`: rows by
/// count, then rows older than the cutoff (when the age bound is due),
/// stopping at the first row kept. The removed rows are verified on the
/// way, from the current anchor.
fn plan(c: &Connection, retention: Retention, now_ms: i64) -> Result<Option<Pruned>, Fault> {
    let (first, last): (Option<i64>, Option<i64>) =
        c.query_row("SELECT min(seq), max(seq) FROM audit", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(first), Some(last)) = (first, last) else { return Ok(None) };
    let count_cut = retention.count_cut(u64::try_from(first).unwrap_or(0), u64::try_from(last).unwrap_or(0));
    let cutoff = retention.cutoff(now_ms);
    let mut verifier = Verifier::new(anchor_for_append(c)?.as_ref());
    let mut age_due = None;
    let mut running = Removal {
        records: 0,
        first_seq: None,
        last: None,
        oldest_ms: None,
        newest_ms: None,
        by_age: false,
        by_count: false,
        chain: None,
        undecodable: 0,
    };
    let mut upto_last_readable = None;
    let mut stmt = c.prepare("SELECT seq, body FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        let record = serde_json::from_str::<Record>(&row.get::<_, String>(1)?).ok();
        let by_count = count_cut.is_some_and(|cut| seq <= cut);
        let by_age = record.as_ref().is_some_and(|r| {
            let t = r.action.time_ms;
            *age_due.get_or_insert_with(|| retention.age_due(t, now_ms)) && t < cutoff
        });
        if !by_count && !by_age {
            break;
        }
        running.records += 1;
        running.first_seq.get_or_insert(seq);
        running.by_count |= by_count;
        running.by_age |= by_age;
        match record {
            Some(r) => {
                if running.chain.is_none() {
                    running.chain = verifier.next(&r).err().map(|e: ChainError| e.to_string());
                }
                let t = r.action.time_ms;
                running.oldest_ms = Some(running.oldest_ms.map_or(t, |o| o.min(t)));
                running.newest_ms = Some(running.newest_ms.map_or(t, |n| n.max(t)));
                running.last = Some(r);
                upto_last_readable = Some(running.clone());
            }
            None => {
                running.undecodable += 1;
                running.chain.get_or_insert_with(|| format!("record {seq} does not decode"));
            }
        }
    }
    if running.records > 0 && upto_last_readable.is_none() {
        tracing::warn!(rows = running.records, "Audit retention: none of the records to remove decodes; nothing removed (an anchor needs a readable record).");
    }
    Ok(upto_last_readable.and_then(Removal::pruned))
}

/// Remove what `retention` removes at `now_ms`, move the anchor and append
/// the `prune` record.
fn prune(c: &Connection, retention: Retention, now_ms: i64) -> Result<Option<(Pruned, Record)>, Fault> {
    let Some(pruned) = plan(c, retention, now_ms)? else { return Ok(None) };
    c.execute("DELETE FROM audit WHERE seq <= ?1", params![to_sql_int("audit sequence", pruned.anchor.seq)?])?;
    meta::set(c, ANCHOR, &encode("audit anchor", &pruned.anchor)?)?;
    let record = append(c, &[pruned.action(now_ms)])?.pop();
    Ok(record.map(|r| (pruned, r)))
}

/// The audit trail as stored: where it starts and its records.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditTrail {
    /// The last record retention removed, if any: the trail starts after it.
    pub anchor: Option<Anchor>,
    /// The records, in order.
    pub records: Vec<Record>,
}

impl AuditTrail {
    /// Check the chain (from the anchor). Returns the number of records.
    pub fn verify(&self) -> Result<usize, ChainError> {
        verify_from(self.anchor.as_ref(), &self.records)
    }
}

/// Every row of the trail, decoded, in order.
fn records(c: &Connection) -> Result<Vec<Record>, Fault> {
    let mut stmt = c.prepare("SELECT seq, body FROM audit ORDER BY seq")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, body) = row?;
        out.push(decode("audit", &format!("record {seq}"), &body)?);
    }
    Ok(out)
}

impl Store {
    /// The whole audit trail, in order. A row that does not decode is an
    /// error naming it (tampering shows up here or in `audit::verify`).
    pub fn audit_records(&self) -> Result<Vec<Record>, StoreError> {
        records(&self.conn).map_err(self.fail())
    }

    /// The trail's anchor and records, read together (one snapshot, so a
    /// retention pass in between cannot split them). A row or an anchor
    /// that does not decode is an error naming it.
    pub fn audit_trail(&self) -> Result<AuditTrail, StoreError> {
        let load = || -> Result<AuditTrail, Fault> {
            let tx = self.conn.unchecked_transaction()?;
            let trail = AuditTrail { anchor: anchor(&tx)?, records: records(&tx)? };
            tx.finish()?;
            Ok(trail)
        };
        load().map_err(self.fail())
    }

    /// Audit retention: remove the records older than
    /// `retention.max_age_ms` and the oldest beyond `retention.max_records`
    /// (always a prefix of the trail, each bound with 1 % slack), keep the
    /// last one removed as the trail's anchor and append a `prune` record
    /// saying what was removed — in one transaction. Returns that record's
    /// content, or None when nothing was due. Meant to run periodically.
    pub fn prune_audit(&mut self, retention: Retention, now_ms: i64) -> Result<Option<Pruned>, StoreError> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| -> Result<Option<(Pruned, Record)>, Fault> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let done = prune(&tx, retention, now_ms)?;
            tx.commit()?;
            Ok(done)
        };
        let Some((pruned, record)) = run(&mut self.conn).map_err(|f| f.at(&path))? else { return Ok(None) };
        tracing::info!(
            records = pruned.records,
            up_to_seq = pruned.anchor.seq,
            newest_ms = ?pruned.newest_ms,
            by = ?pruned.by,
            prune_record = record.seq,
            "Audit records past their retention removed."
        );
        if pruned.removed_chain != "verified" {
            tracing::warn!(problem = %pruned.removed_chain, up_to_seq = pruned.anchor.seq, "Audit retention: the records removed did not verify.");
        }
        Ok(Some(pruned))
    }
}

#[cfg(test)]
mod tests;
