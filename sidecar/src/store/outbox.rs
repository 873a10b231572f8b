//! Notifications: `rules` and `suppressions` (id → JSON), the `outbox`
//! of messages to deliver, and `notified` (when each rule target last got
//! a message about a signal: the rate limit, and "created" vs "updated").
//!
//! An outbox row is one pending message per (rule, target, signal): a
//! newer message about the same signal replaces it and bumps its
//! `version`. Delivery runs on its own connection while the daemon keeps
//! queueing, so [`Store::delivered`] removes a row only if it still holds
//! the version that was sent; an update merged in meanwhile stays queued.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use telltale_core::notify::{Message, Rule};
use telltale_core::suppress::Suppression;

use super::batch::{Outgoing, RuleChange};
use super::{bodies, encode, Fault, Store, StoreError};

/// A target index as SQLite's integer.
fn target_int(target: usize) -> Result<i64, Fault> {
    i64::try_from(target).map_err(|_| Fault::InvalidBatch(format!("target index {target} is out of range")))
}

/// Queue a message. An undelivered message for the same rule, target and
/// signal is replaced by the newer one (updates coalesce, its version is
/// bumped), and nothing is sent sooner than the rate limit after the last
/// delivery.
pub(super) fn enqueue(c: &Connection, o: &Outgoing, now_ms: i64) -> Result<(), Fault> {
    let body = encode("notification message", &o.message)?;
    let target = target_int(o.target)?;
    let last: Option<i64> = c
        .prepare_cached("SELECT sent_ms FROM notified WHERE rule_id = ?1 AND target = ?2 AND signal_id = ?3")?
        .query_row(params![o.rule_id, target, o.signal_id], |r| r.get(0))
        .optional()?;
    let not_before = last.map_or(now_ms, |l| now_ms.max(l.saturating_add(o.rate_limit_ms)));
    let updated = c
        .prepare_cached(
            "UPDATE outbox SET message = ?4, version = version + 1, rate_limit_ms = ?6,
                 next_attempt_ms = max(next_attempt_ms, ?5)
             WHERE rule_id = ?1 AND target = ?2 AND signal_id = ?3",
        )?
        .execute(params![o.rule_id, target, o.signal_id, body, not_before, o.rate_limit_ms])?;
    if updated == 0 {
        c.prepare_cached(
            "INSERT INTO outbox (rule_id, target, signal_id, message, next_attempt_ms, created_ms, version, rate_limit_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
        )?
        .execute(params![o.rule_id, target, o.signal_id, body, not_before, now_ms, o.rate_limit_ms])?;
    }
    Ok(())
}

/// Save or delete a rule or a suppression. Deleting a rule drops what it
/// still had to send and its delivery history.
pub(super) fn apply_rule_change(c: &Connection, change: &RuleChange) -> Result<(), Fault> {
    match change {
        RuleChange::SaveRule(rule) => {
            let body = encode("notification rule", rule)?;
            c.prepare_cached("INSERT OR REPLACE INTO rules (id, body) VALUES (?1, ?2)")?
                .execute(params![rule.id, body])?;
        }
        RuleChange::DeleteRule(id) => {
            c.prepare_cached("DELETE FROM rules WHERE id = ?1")?.execute(params![id])?;
            c.prepare_cached("DELETE FROM outbox WHERE rule_id = ?1")?.execute(params![id])?;
            c.prepare_cached("DELETE FROM notified WHERE rule_id = ?1")?.execute(params![id])?;
        }
        RuleChange::SaveSuppression(s) => {
            let body = encode("suppression rule", s)?;
            c.prepare_cached("INSERT OR REPLACE INTO suppressions (id, body) VALUES (?1, ?2)")?
                .execute(params![s.id, body])?;
        }
        RuleChange::DeleteSuppression(id) => {
            c.prepare_cached("DELETE FROM suppressions WHERE id = ?1")?.execute(params![id])?;
        }
    }
    Ok(())
}

/// A queued message whose time has come.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Outbox row id (never reused).
    pub id: i64,
    /// Version of the row's message (bumped when an update is merged in).
    pub version: i64,
    /// The rule.
    pub rule_id: String,
    /// Index of the target in the rule.
    pub target: usize,
    /// The signal it is about.
    pub signal_id: String,
    /// The message, or why the stored one does not decode.
    pub message: Result<Message, String>,
    /// Failed attempts so far.
    pub attempts: u32,
}

impl Due {
    /// A stable id of this message (row id and version): the same on every
    /// retry and after a restart, different for an update. Sent with the
    /// message, so a receiver can drop the duplicates that at-least-once
    /// delivery produces (a `kill -9` between sending and recording).
    pub fn delivery_id(&self) -> String {
        format!("{}.{}", self.id, self.version)
    }
}

/// What recording a delivery did with the outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The row held what was sent: removed.
    Removed,
    /// An update was merged into the row while it was being sent: kept,
    /// due again after the rate limit.
    Superseded,
    /// The row is gone (its rule was deleted meanwhile).
    Gone,
}

impl Store {
    /// Every notification rule, by id.
    pub fn rules(&self) -> Result<Vec<Rule>, StoreError> {
        bodies(&self.conn, "rules").map_err(self.fail())
    }

    /// Every suppression rule, by id.
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        bodies(&self.conn, "suppressions").map_err(self.fail())
    }

    /// Has a message about this signal already been delivered to this rule's target?
    pub fn was_notified(&self, rule_id: &str, target: usize, signal_id: &str) -> Result<bool, StoreError> {
        let query = || -> Result<bool, Fault> {
            let n: i64 = self
                .conn
                .prepare_cached("SELECT count(*) FROM notified WHERE rule_id = ?1 AND target = ?2 AND signal_id = ?3")?
                .query_row(params![rule_id, target_int(target)?, signal_id], |r| r.get(0))?;
            Ok(n > 0)
        };
        query().map_err(self.fail())
    }

    /// Up to `limit` messages due at `now_ms`, the longest waiting first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let query = || -> Result<Vec<Due>, Fault> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, version, rule_id, target, signal_id, message, attempts FROM outbox
                 WHERE next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now_ms, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, version, rule_id, target, signal_id, message, attempts) = row?;
                out.push(Due {
                    id,
                    version,
                    rule_id,
                    target: usize::try_from(target)
                        .map_err(|_| Fault::BadRow { what: "outbox", detail: format!("id {id}: target {target}") })?,
                    signal_id,
                    message: serde_json::from_str(&message).map_err(|e| format!("stored message: {e}")),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
            Ok(out)
        };
        query().map_err(self.fail())
    }

    /// `due` was delivered at `now_ms`: remember when (rate limit), and
    /// remove its row unless an update was merged into it meanwhile (then
    /// the row stays, due once the rate limit has passed).
    pub fn delivered(&mut self, due: &Due, now_ms: i64) -> Result<Delivered, StoreError> {
        let path = self.path.clone();
        let write = |c: &mut Connection| -> Result<Delivered, Fault> {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let removed =
                tx.execute("DELETE FROM outbox WHERE id = ?1 AND version = ?2", params![due.id, due.version])?;
            let outcome = if removed > 0 {
                Delivered::Removed
            } else {
                let kept = tx.execute(
                    "UPDATE outbox SET attempts = 0, last_error = NULL,
                         next_attempt_ms = max(next_attempt_ms, ?2 + rate_limit_ms)
                     WHERE id = ?1",
                    params![due.id, now_ms],
                )?;
                if kept > 0 {
                    Delivered::Superseded
                } else {
                    Delivered::Gone
                }
            };
            if outcome != Delivered::Gone {
                tx.execute(
                    "INSERT OR REPLACE INTO notified (rule_id, target, signal_id, sent_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![due.rule_id, target_int(due.target)?, due.signal_id, now_ms],
                )?;
            }
            tx.commit()?;
            Ok(outcome)
        };
        write(&mut self.conn).map_err(|f| f.at(&path))
    }

    /// Delivering `due` failed: try again at `next_attempt_ms`.
    pub fn failed(&self, due: &Due, error: &str, next_attempt_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = max(next_attempt_ms, ?3)
                 WHERE id = ?1",
                params![due.id, error, next_attempt_ms],
            )
            .map_err(self.sql())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
