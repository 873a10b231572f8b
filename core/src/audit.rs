//! The audit trail: every action through the API (and every failed
//! authentication) as an append-only, hash-chained record. Each record's
//! hash covers the previous record's hash and the record itself, so an
//! edited or deleted record breaks the chain from there on. Pure logic.

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
}

impl Verb {
    /// Every verb.
    pub const ALL: [Verb; 7] = [
        Verb::Authenticate,
        Verb::Authorize,
        Verb::Create,
        Verb::Update,
        Verb::Delete,
        Verb::MarkBenign,
        Verb::AddToProfile,
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
}

/// Verify a whole trail, in order. Returns the number of records.
pub fn verify(records: &[Record]) -> Result<usize, ChainError> {
    let mut prev_hash = GENESIS.to_owned();
    for (expected, r) in (1u64..).zip(records) {
        if r.seq != expected || r.prev_hash != prev_hash {
            return Err(ChainError::Broken { seq: r.seq, expected, prev: prev_hash });
        }
        if hash_of(r.seq, &r.evt_name, &r.action, &r.prev_hash) != r.hash || r.evt_name != EVT_NAME {
            return Err(ChainError::Altered { seq: r.seq });
        }
        prev_hash = r.hash.clone();
    }
    Ok(records.len())
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
        assert_eq!(names, ["authenticate", "authorize", "create", "update", "delete", "mark_benign", "add_to_profile"]);
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
}
