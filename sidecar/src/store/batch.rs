//! One batch, one transaction: everything one batch of events (or one
//! API command) changed is written by [`Store::commit`] at once, or not at
//! all. Rule and suppression changes ride in the same [`Batch`] as their
//! audit record, so a command and its trail are never split either.

use rusqlite::TransactionBehavior;

use telltale_core::audit::{Action, Record};
use telltale_core::detect::Change;
use telltale_core::notify::{Message, Rule};
use telltale_core::signal::{Signal, SignalChange};
use telltale_core::suppress::Suppression;

use super::meta::{SEQ_ANOMALY, SEQ_SIGNAL_CHANGE};
use super::{anomalies, audit, meta, outbox, profiles, signals, Fault, Store, StoreError};

/// Everything one batch of events (or one command) changes, persisted in
/// one transaction by [`Store::commit`].
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Profile, tag, behaviour, clock and anomaly changes, in order.
    pub changes: Vec<Change>,
    /// The sequence number of each `Change::Anomaly` in `changes`, in
    /// order (assigned by the daemon, increasing, above every number
    /// handed out before).
    pub anomaly_sequences: Vec<u64>,
    /// Signals to save (insert or replace).
    pub signals: Vec<Signal>,
    /// Signal changes to log for streaming, with the sequence numbers the
    /// daemon gave them (increasing, above every number handed out before);
    /// logged at `now_ms`.
    pub signal_changes: Vec<(u64, SignalChange)>,
    /// Notification rules and suppressions saved or deleted by a command.
    pub rules: Vec<RuleChange>,
    /// Notifications to queue.
    pub outbox: Vec<Outgoing>,
    /// Audit actions to append, chained in order.
    pub audit: Vec<Action>,
    /// The time of the batch (ms since the epoch).
    pub now_ms: i64,
}

impl Batch {
    /// Entries to write, all parts counted (a measure of its memory).
    pub fn len(&self) -> usize {
        let Batch { changes, anomaly_sequences, signals, signal_changes, rules, outbox, audit, now_ms: _ } = self;
        changes.len()
            + anomaly_sequences.len()
            + signals.len()
            + signal_changes.len()
            + rules.len()
            + outbox.len()
            + audit.len()
    }

    /// Nothing to write (`now_ms` aside).
    pub fn is_empty(&self) -> bool {
        let Batch { changes, anomaly_sequences, signals, signal_changes, rules, outbox, audit, now_ms: _ } = self;
        changes.is_empty()
            && anomaly_sequences.is_empty()
            && signals.is_empty()
            && signal_changes.is_empty()
            && rules.is_empty()
            && outbox.is_empty()
            && audit.is_empty()
    }
}

/// A rule or suppression change made by a command.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleChange {
    /// Save (insert or replace) a notification rule.
    SaveRule(Rule),
    /// Delete a notification rule, what it still had to send and its
    /// delivery history.
    DeleteRule(String),
    /// Save (insert or replace) a suppression rule.
    SaveSuppression(Suppression),
    /// Delete a suppression rule.
    DeleteSuppression(String),
}

/// A notification to queue. An undelivered message for the same rule,
/// target and signal is replaced by this one (updates coalesce), and
/// nothing is sent sooner than `rate_limit_ms` after the last delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The rule.
    pub rule_id: String,
    /// Index of the target in the rule.
    pub target: usize,
    /// The signal it is about.
    pub signal_id: String,
    /// What to send.
    pub message: Message,
    /// At most one message per rule target and signal in this window (ms).
    pub rate_limit_ms: i64,
}

/// The last sequence numbers handed out; they never go backwards, even
/// after retention pruned every row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequences {
    /// The last anomaly sequence number.
    pub anomaly: u64,
    /// The last signal change sequence number.
    pub signal_change: u64,
}

/// The highest of `sequences`, checked: increasing and above `last`.
fn next_high(what: &str, last: u64, sequences: impl Iterator<Item = u64>) -> Result<u64, Fault> {
    let mut high = last;
    for seq in sequences {
        if seq <= high {
            return Err(Fault::InvalidBatch(format!(
                "{what} sequence {seq} is not above the last one handed out ({high})"
            )));
        }
        high = seq;
    }
    Ok(high)
}

fn write(c: &rusqlite::Connection, b: &Batch) -> Result<Vec<Record>, Fault> {
    let anomaly_count = b.changes.iter().filter(|c| matches!(c, Change::Anomaly(_))).count();
    if anomaly_count != b.anomaly_sequences.len() {
        return Err(Fault::InvalidBatch(format!(
            "{anomaly_count} anomalies but {} anomaly sequence numbers",
            b.anomaly_sequences.len()
        )));
    }
    let last = sequences(c)?;
    let anomaly_high = next_high("anomaly", last.anomaly, b.anomaly_sequences.iter().copied())?;
    let change_high = next_high("signal change", last.signal_change, b.signal_changes.iter().map(|(s, _)| *s))?;

    let mut seqs = b.anomaly_sequences.iter();
    for change in &b.changes {
        match change {
            Change::Behaviour { image, observation, tag, now_ms } => {
                profiles::add_behaviour(c, image, observation, tag, *now_ms)?;
            }
            Change::Profile { image, tags } => profiles::save_tags(c, image, tags)?,
            Change::Clock { image, event_type, clock } => profiles::save_clock(c, image, *event_type, clock)?,
            Change::Anomaly(a) => {
                let seq = seqs.next().copied().unwrap_or_default(); // counted above
                if !anomalies::insert(c, seq, a)? {
                    tracing::debug!(anomaly = %a.id, seq, "Anomaly already stored; kept as it was.");
                }
            }
        }
    }
    for s in &b.signals {
        signals::save(c, s)?;
    }
    for (seq, change) in &b.signal_changes {
        signals::log_change(c, *seq, change, b.now_ms)?;
    }
    for change in &b.rules {
        outbox::apply_rule_change(c, change)?;
    }
    for o in &b.outbox {
        outbox::enqueue(c, o, b.now_ms)?;
    }
    let records = audit::append(c, &b.audit)?;
    if anomaly_high != last.anomaly {
        meta::set(c, SEQ_ANOMALY, &anomaly_high.to_string())?;
    }
    if change_high != last.signal_change {
        meta::set(c, SEQ_SIGNAL_CHANGE, &change_high.to_string())?;
    }
    Ok(records)
}

/// The high-water marks: those stored in `meta`, or higher rows (a
/// database an older build wrote and this one only reads).
fn sequences(c: &rusqlite::Connection) -> Result<Sequences, Fault> {
    let stored_max = |table: &str| -> Result<u64, Fault> {
        let v: Option<i64> = c.query_row(&format!("SELECT max(seq) FROM {table}"), [], |r| r.get(0))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    };
    Ok(Sequences {
        anomaly: meta::get_u64(c, SEQ_ANOMALY)?.max(stored_max("anomalies")?),
        signal_change: meta::get_u64(c, SEQ_SIGNAL_CHANGE)?.max(stored_max("signal_changes")?),
    })
}

impl Store {
    /// Write `batch` in one transaction: its changes in order (anomalies
    /// under their sequence numbers), signals, the signal change log, rule
    /// changes, queued notifications, the audit records, and the new
    /// sequence high-water marks. Returns the audit records appended.
    /// On any error nothing of the batch is written.
    pub fn commit(&mut self, batch: &Batch) -> Result<Vec<Record>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        let run = |conn: &mut rusqlite::Connection| -> Result<Vec<Record>, Fault> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let records = write(&tx, batch)?;
            tx.commit()?;
            Ok(records)
        };
        run(&mut self.conn).map_err(|f| f.at(&path))
    }

    /// The last sequence numbers handed out (0 when none ever was). The
    /// daemon continues from them.
    pub fn sequences(&self) -> Result<Sequences, StoreError> {
        sequences(&self.conn).map_err(self.fail())
    }
}
