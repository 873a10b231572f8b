//! The audit trail: every action through the API (and every failed
//! authentication) as an append-only, hash-chained record. Each record's
//! hash covers the previous record's hash and the record itself, so an
//! edited or deleted record breaks the chain from there on. Pure logic.
//!
//! Retention removes the oldest records, always a prefix of the trail, and
//! keeps the last one removed as an [`Anchor`]: the records kept chain from
//! it, and the `prune` record each pass appends ([`Pruned`]) names it, so
//! [`verify_from`] checks a pruned trail as strictly as a whole one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::query::Query;

/// `evt.name` of every record, as in the reference product.
pub const EVT_NAME: &str = "Cloud Security Platform";
/// Hash of the (absent) record before the first one.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an action was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetType {
    /// A signal.
    SecuritySignal,
    /// A profile.
    SecurityProfile,
    /// A notification rule.
    NotificationRule,
    /// A suppression rule.
    Suppression,
    /// The API itself (authentication).
    Api,
    /// The audit trail itself (retention).
    AuditTrail,
}

impl AssetType {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            AssetType::SecuritySignal => "security_signal",
            AssetType::SecurityProfile => "security_profile",
            AssetType::NotificationRule => "notification_rule",
            AssetType::Suppression => "suppression",
            AssetType::Api => "api",
            AssetType::AuditTrail => "audit_trail",
        }
    }
}

/// One action, before it is chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// When (ms since the epoch).
    pub time_ms: i64,
    /// Who (the token's principal; `anonymous` when unauthenticated).
    pub principal: String,
    /// What kind of thing.
    pub asset_type: AssetType,
    /// Which one (image name, signal id...).
    pub asset_id: String,
    /// What was done (`add_to_profile`, `authenticate`...).
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// State before, if any.
    pub before: Option<serde_json::Value>,
    /// State after, or the request.
    pub after: Option<serde_json::Value>,
}

/// What was done, as written in the trail's `action` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A credential was checked.
    Authenticate,
    /// A role was checked against what a call needs.
    Authorize,
    /// Something was created.
    Create,
    /// Something was changed.
    Update,
    /// Something was deleted.
    Delete,
    /// A signal was marked benign (its behaviours added to the profile).
    MarkBenign,
    /// Behaviours were added to a profile by hand.
    AddToProfile,
    /// Old records were removed by retention.
    Prune,
}

impl Verb {
    /// Every verb.
    pub const ALL: [Verb; 8] = [
        Verb::Authenticate,
        Verb::Authorize,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
        Verb::MarkBenign,
        Verb::AddToProfile,
        Verb::Prune,
    ];

    /// Stable name (the stored `action` value).
    pub fn name(self) -> &'static str {
        match self {
            Verb::Authenticate => "authenticate",
            Verb::Authorize => "authorize",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::MarkBenign => "mark_benign",
            Verb::AddToProfile => "add_to_profile",
            Verb::Prune => "prune",
        }
    }
}

/// How an action ended, as written in the trail's `outcome` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was refused or failed.
    Failure,
}

impl Outcome {
    /// Stable name (the stored `outcome` value).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    /// `Success` when `ok`.
    pub fn of(ok: bool) -> Self {
        if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

impl Action {
    /// An action with neither state before nor after; add them with
    /// [`Action::before`] and [`Action::after`]. The stored fields stay
    /// strings so that records written before the enums existed still
    /// hash the same.
    pub fn new(
        time_ms: i64,
        principal: impl Into<String>,
        asset_type: AssetType,
        asset_id: impl Into<String>,
        verb: Verb,
        outcome: Outcome,
    ) -> Self {
        Action {
            time_ms,
            principal: principal.into(),
            asset_type,
            asset_id: asset_id.into(),
            action: verb.name().to_owned(),
            outcome: outcome.name().to_owned(),
            before: None,
            after: None,
        }
    }

    /// With the state before.
    #[must_use]
    pub fn before(mut self, value: Option<serde_json::Value>) -> Self {
        self.before = value;
        self
    }

    /// With the state after (or the request).
    #[must_use]
    pub fn after(mut self, value: Option<serde_json::Value>) -> Self {
        self.after = value;
        self
    }
}

/// A chained audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the trail (1, 2, ...).
    pub seq: u64,
    /// Always [`EVT_NAME`].
    pub evt_name: String,
    /// The action.
    #[serde(flatten)]
    pub action: Action,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and this record's other fields.
    pub hash: String,
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    evt_name: &'a str,
    action: &'a Action,
    prev_hash: &'a str,
}

fn hash_of(seq: u64, evt_name: &str, action: &Action, prev_hash: &str) -> String {
    let canonical = serde_json::to_vec(&Hashed { seq, evt_name, action, prev_hash }).unwrap_or_default();
    Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect()
}

impl Record {
    /// Chain `action` after the record `(seq, hash)` (or the genesis).
    pub fn chain(prev: Option<(u64, &str)>, action: Action) -> Record {
        let (seq, prev_hash) = prev.map_or((1, GENESIS.to_owned()), |(s, h)| (s + 1, h.to_owned()));
        let hash = hash_of(seq, EVT_NAME, &action, &prev_hash);
        Record { seq, evt_name: EVT_NAME.to_owned(), action, prev_hash, hash }
    }

    /// The values of a facet, for queries (`evt.name`, `asset.type`,
    /// `asset.id`, `action`, `outcome`, `usr.name` / `principal`).
    pub fn facet(&self, key: &str) -> Vec<String> {
        let a = &self.action;
        let v = match key {
            "evt.name" => self.evt_name.clone(),
            "asset.type" => a.asset_type.name().to_owned(),
            "asset.id" => a.asset_id.clone(),
            "action" | "evt.action" => a.action.clone(),
            "outcome" | "evt.outcome" => a.outcome.clone(),
            "usr.name" | "principal" => a.principal.clone(),
            _ => return Vec::new(),
        };
        vec![v]
    }

    /// Does it match `query` and the time range?
    pub fn selected(&self, query: &Query, from_ms: Option<i64>, to_ms: Option<i64>) -> bool {
        from_ms.is_none_or(|f| self.action.time_ms >= f)
            && to_ms.is_none_or(|t| self.action.time_ms <= t)
            && query.matches(&|k| self.facet(k))
    }
}

/// Where a trail stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record's content does not match its hash (edited).
    #[error("audit record {seq} was altered: its hash does not match its content")]
    Altered {
        /// The record.
        seq: u64,
    },
    /// A record does not follow the one before it (deleted or reordered).
    #[error("audit trail broken before record {seq}: expected sequence {expected} after hash {prev}")]
    Broken {
        /// The record found.
        seq: u64,
        /// The sequence expected.
        expected: u64,
        /// The previous hash.
        prev: String,
    },
    /// The trail starts after an anchor that no `prune` record in it
    /// accounts for (records removed, or the anchor moved, by hand).
    #[error("audit trail starts after record {seq}, but no prune record in it says records up to {seq} were removed")]
    Unanchored {
        /// The anchor's position.
        seq: u64,
    },
}

/// Where a pruned trail starts: the last record retention removed. The
/// first record kept follows it (`seq + 1`, its `prev_hash` is `hash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The removed record's position.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Its time (ms since the epoch).
    pub time_ms: i64,
}

impl Anchor {
    /// The anchor a record makes once it is removed.
    pub fn of(r: &Record) -> Self {
        Anchor { seq: r.seq, hash: r.hash.clone(), time_ms: r.action.time_ms }
    }
}

/// Principal of the records retention writes.
pub const RETENTION_PRINCIPAL: &str = "retention";

/// Which bound made a retention pass remove records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Records older than the maximum age.
    MaxAge,
    /// The oldest records beyond the maximum count.
    MaxRecords,
}

/// What one retention pass removed: the `after` of the `prune` record it
/// appends (chained after the records kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// How many records were removed.
    pub records: u64,
    /// The first one removed.
    pub first_seq: u64,
    /// The last one removed: the trail now starts after it.
    pub anchor: Anchor,
    /// The oldest time among the removed records (ms since the epoch).
    pub oldest_ms: Option<i64>,
    /// The newest time among them: records up to this time are gone.
    pub newest_ms: Option<i64>,
    /// The bounds that removed them.
    pub by: Vec<Bound>,
    /// Whether the removed records still verified, from the previous
    /// anchor (or the genesis): `verified`, or where they did not.
    pub removed_chain: String,
    /// Removed rows that did not decode (counted, not verified).
    pub undecodable: u64,
}

impl Pruned {
    /// The `prune` record's action, at `now_ms`.
    pub fn action(&self, now_ms: i64) -> Action {
        Action::new(now_ms, RETENTION_PRINCIPAL, AssetType::AuditTrail, "", Verb::Prune, Outcome::Success)
            .after(serde_json::to_value(self).ok())
    }
}

/// How long the trail is kept. Retention removes the oldest records, a
/// prefix of the trail, by age and by count; each bound has a slack of 1 %
/// so that passes come in batches and their own `prune` records stay a
/// small part of the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records older than this (ms) are removed.
    pub max_age_ms: i64,
    /// At most this many records are kept.
    pub max_records: u64,
}

impl Retention {
    /// Records older than this time are removed by age.
    pub fn cutoff(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.max_age_ms)
    }

    /// Whether a pass by age is due: the oldest record kept is older than
    /// the cutoff by more than 1 % of the maximum age.
    pub fn age_due(&self, oldest_ms: i64, now_ms: i64) -> bool {
        oldest_ms < self.cutoff(now_ms).saturating_sub(self.max_age_ms / 100)
    }

    /// For a trail holding positions `first..=last`: the last position to
    /// remove by count, when it holds more than `max_records`. What is
    /// left, with the `prune` record, is 99 % of `max_records`.
    pub fn count_cut(&self, first: u64, last: u64) -> Option<u64> {
        let held = last.checked_sub(first)?.saturating_add(1);
        if held <= self.max_records {
            return None;
        }
        let keep = (self.max_records - self.max_records / 100).max(1);
        Some(last.saturating_sub(keep - 1))
    }
}

/// Checks a trail record by record, in order, from the genesis or from an
/// anchor; memory stays constant whatever the trail's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    expected: u64,
    prev_hash: String,
    checked: usize,
}

impl Verifier {
    /// Expecting the first record after `anchor` (or the genesis).
    pub fn new(anchor: Option<&Anchor>) -> Self {
        match anchor {
            Some(a) => Verifier { expected: a.seq.saturating_add(1), prev_hash: a.hash.clone(), checked: 0 },
            None => Verifier { expected: 1, prev_hash: GENESIS.to_owned(), checked: 0 },
        }
    }

    /// Check the next record.
    pub fn next(&mut self, r: &Record) -> Result<(), ChainError> {
        if r.seq != self.expected || r.prev_hash != self.prev_hash {
            return Err(ChainError::Broken { seq: r.seq, expected: self.expected, prev: self.prev_hash.clone() });
        }
        if hash_of(r.seq, &r.evt_name, &r.action, &r.prev_hash) != r.hash || r.evt_name != EVT_NAME {
            return Err(ChainError::Altered { seq: r.seq });
        }
        self.expected = r.seq.saturating_add(1);
        self.prev_hash.clone_from(&r.hash);
        self.checked += 1;
        Ok(())
    }

    /// How many records verified.
    pub fn checked(&self) -> usize {
        self.checked
    }
}

impl Record {
    /// What the retention pass of a `prune` record removed.
    pub fn pruned(&self) -> Option<Pruned> {
        let a = &self.action;
        if a.asset_type != AssetType::AuditTrail || a.action != Verb::Prune.name() {
            return None;
        }
        serde_json::from_value(a.after.clone()?).ok()
    }
}

/// Verify a whole trail, in order. Returns the number of records.
pub fn verify(records: &[Record]) -> Result<usize, ChainError> {
    verify_from(None, records)
}

/// Verify a trail that starts after `anchor` (retention removed the
/// records up to it), in order: the records chain from the anchor, and one
/// of them is the `prune` record naming it. Returns the number of records.
pub fn verify_from(anchor: Option<&Anchor>, records: &[Record]) -> Result<usize, ChainError> {
    let mut v = Verifier::new(anchor);
    for r in records {
        v.next(r)?;
    }
    if let Some(a) = anchor {
        if !records.iter().any(|r| r.pruned().is_some_and(|p| p.anchor == *a)) {
            return Err(ChainError::Unanchored { seq: a.seq });
        }
    }
    Ok(v.checked())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_writes_the_stored_strings() {
        let built = Action::new(5, "alice", AssetType::SecurityProfile, "web", Verb::AddToProfile, Outcome::Success)
            .after(Some(serde_json::json!({"added": 1})));
        let literal = Action {
            time_ms: 5,
            principal: "alice".into(),
            asset_type: AssetType::SecurityProfile,
            asset_id: "web".into(),
            action: "add_to_profile".into(),
            outcome: "success".into(),
            before: None,
            after: Some(serde_json::json!({"added": 1})),
        };
        assert_eq!(built, literal);
        let names: Vec<&str> = Verb::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(
            names,
            ["authenticate", "authorize", "create", "update", "delete", "mark_benign", "add_to_profile", "prune"]
        );
        assert_eq!((Outcome::of(true).name(), Outcome::of(false).name()), ("success", "failure"));
    }

    fn action(n: i64, who: &str) -> Action {
        Action {
            time_ms: n,
            principal: who.into(),
            asset_type: AssetType::SecurityProfile,
            asset_id: "web".into(),
            action: "add_to_profile".into(),
            outcome: "success".into(),
            before: None,
            after: Some(serde_json::json!({"added": n})),
        }
    }

    fn trail(n: i64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            let r = Record::chain(prev, action(i, "alice"));
            out.push(r);
        }
        out
    }

    #[test]
    fn a_chain_verifies_and_detects_edits_deletions_and_reordering() {
        let t = trail(5);
        assert_eq!(verify(&t), Ok(5));
        let mut edited = t.clone();
        edited[2].action.principal = "mallory".into();
        assert_eq!(verify(&edited), Err(ChainError::Altered { seq: 3 }));
        let mut deleted = t.clone();
        deleted.remove(1);
        assert!(matches!(verify(&deleted), Err(ChainError::Broken { seq: 3, expected: 2, .. })));
        let mut swapped = t.clone();
        swapped.swap(3, 4);
        assert!(verify(&swapped).is_err());
        let mut rehashed = t;
        rehashed[0].action.outcome = "failure".into();
        rehashed[0].hash = hash_of(1, EVT_NAME, &rehashed[0].action, GENESIS);
        assert!(
            matches!(verify(&rehashed), Err(ChainError::Broken { seq: 2, .. })),
            "a recomputed hash breaks the next link"
        );
    }

    #[test]
    fn facets_for_queries() {
        let r = Record::chain(None, action(1, "alice"));
        let q = Query::parse(r#"@evt.name:"Cloud Security Platform" @asset.type:security_profile @usr.name:alice"#)
            .unwrap();
        assert!(r.selected(&q, None, None));
        assert!(!r.selected(&q, Some(2), None));
        assert!(!r.selected(&Query::parse("@asset.type:security_signal").unwrap(), None, None));
    }

    /// `trail` with its first `n` records removed by a pass that appends its
    /// `prune` record: (anchor, records kept).
    fn pruned(mut t: Vec<Record>, n: usize) -> (Anchor, Vec<Record>) {
        let removed: Vec<Record> = t.drain(..n).collect();
        let last = removed.last().expect("something removed");
        let p = Pruned {
            records: n as u64,
            first_seq: removed[0].seq,
            anchor: Anchor::of(last),
            oldest_ms: Some(removed[0].action.time_ms),
            newest_ms: Some(last.action.time_ms),
            by: vec![Bound::MaxRecords],
            removed_chain: "verified".into(),
            undecodable: 0,
        };
        let tail = t.last().map_or((last.seq, last.hash.as_str()), |r| (r.seq, r.hash.as_str()));
        let record = Record::chain(Some(tail), p.action(99));
        assert_eq!(record.pruned(), Some(p.clone()));
        t.push(record);
        (p.anchor, t)
    }

    #[test]
    fn a_pruned_trail_verifies_from_its_anchor_and_only_with_its_prune_record() {
        let (anchor, kept) = pruned(trail(6), 4);
        assert_eq!(anchor.seq, 4);
        assert_eq!(kept.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6, 7]);
        assert_eq!(verify_from(Some(&anchor), &kept), Ok(3));
        assert!(matches!(verify(&kept), Err(ChainError::Broken { seq: 5, expected: 1, .. })), "no anchor, no start");

        // Everything removed: the prune record alone chains from the anchor.
        let (anchor, kept) = pruned(trail(3), 3);
        assert_eq!(verify_from(Some(&anchor), &kept), Ok(1));

        // An anchor moved by hand (more records removed) is caught: the
        // chain breaks or no prune record accounts for it.
        let (anchor, mut kept) = pruned(trail(6), 4);
        let moved = Anchor::of(&kept.remove(0));
        assert_eq!(verify_from(Some(&moved), &kept), Err(ChainError::Unanchored { seq: 5 }));
        let mut edited = kept.clone();
        edited[0].action.principal = "mallory".into();
        assert_eq!(verify_from(Some(&moved), &edited), Err(ChainError::Altered { seq: 6 }));
        assert!(matches!(verify_from(Some(&anchor), &kept), Err(ChainError::Broken { seq: 6, expected: 5, .. })));
    }

    #[test]
    fn the_verifier_checks_record_by_record() {
        let t = trail(3);
        let mut v = Verifier::new(None);
        v.next(&t[0]).unwrap();
        assert_eq!(v.next(&t[2]), Err(ChainError::Broken { seq: 3, expected: 2, prev: t[0].hash.clone() }));
        v.next(&t[1]).unwrap();
        v.next(&t[2]).unwrap();
        assert_eq!(v.checked(), 3);
        let mut from = Verifier::new(Some(&Anchor::of(&t[0])));
        assert_eq!((from.next(&t[1]), from.next(&t[2]), from.checked()), (Ok(()), Ok(()), 2));
    }

    #[test]
    fn retention_bounds_have_a_one_percent_slack() {
        let r = Retention { max_age_ms: 100_000, max_records: 1000 };
        // By age: due once the oldest is past the bound by more than 1 %.
        assert_eq!(r.cutoff(500_000), 400_000);
        assert!(!r.age_due(399_000, 500_000));
        assert!(r.age_due(398_999, 500_000));
        // By count: over the bound, down to 99 % with the prune record.
        assert_eq!(r.count_cut(1, 1000), None);
        assert_eq!(r.count_cut(1, 1001), Some(12), "1001 - 12 + 1 = 990 kept");
        assert_eq!(r.count_cut(501, 1600), Some(611));
        assert_eq!(r.count_cut(5, 4), None, "empty");
        let one = Retention { max_age_ms: 1, max_records: 1 };
        assert_eq!(one.count_cut(1, 2), Some(2), "only the prune record is left");
    }
}
