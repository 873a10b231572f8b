use super::super::tests::{action, tmp};
use super::super::{Batch, Store, StoreError};
use telltale_core::audit::{verify, Action, Anchor, AssetType, Bound, ChainError, Outcome, Record, Retention, Verb};

fn audit(store: &mut Store, who: &str) -> Vec<Record> {
    let batch = Batch { audit: vec![action(who, Verb::Authenticate, Outcome::Failure)], ..Batch::default() };
    store.commit(&batch).unwrap()
}

#[test]
fn a_corrupt_last_record_does_not_stop_the_next_append() {
    let dir = tmp("audit-tail");
    let mut store = Store::open(&dir).unwrap();
    let first = audit(&mut store, "alice").remove(0);
    audit(&mut store, "bob");
    store.conn.execute("UPDATE audit SET body = '{\"seq\": 2, truncated' WHERE seq = 2", []).unwrap();

    // An anonymous failed login is still recorded: numbered after the
    // broken row, chained to the last readable record.
    let r = audit(&mut store, "anonymous").remove(0);
    assert_eq!(r.seq, 3);
    assert_eq!(r.prev_hash, first.hash);
    let again = audit(&mut store, "anonymous").remove(0);
    assert_eq!((again.seq, again.prev_hash.as_str()), (4, r.hash.as_str()), "and the chain goes on from there");

    // Verification reports the damage instead: the row that does not decode…
    let e = store.audit_records().unwrap_err();
    assert!(matches!(e, StoreError::BadRow { what: "audit", .. }), "{e:?}");
    assert!(e.to_string().contains("record 2"), "{e}");
    // …and, once it is removed, the broken link.
    store.conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let records = store.audit_records().unwrap();
    assert!(matches!(verify(&records), Err(ChainError::Broken { seq: 3, expected: 2, .. })), "{:?}", verify(&records));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_trail_with_no_readable_record_chains_to_the_genesis_after_its_last_row() {
    let dir = tmp("audit-garbage");
    let mut store = Store::open(&dir).unwrap();
    audit(&mut store, "alice");
    store.conn.execute("UPDATE audit SET body = 'garbage'", []).unwrap();
    let r = audit(&mut store, "bob").remove(0);
    assert_eq!((r.seq, r.prev_hash.as_str()), (2, telltale_core::audit::GENESIS));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_of_successive_batches_form_one_chain() {
    let dir = tmp("audit-chain");
    let mut store = Store::open(&dir).unwrap();
    for who in ["a", "b", "c"] {
        audit(&mut store, who);
    }
    let batch = Batch {
        audit: vec![action("d", Verb::Update, Outcome::Success), action("e", Verb::Delete, Outcome::Success)],
        ..Batch::default()
    };
    assert_eq!(store.commit(&batch).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(verify(&Store::open_read_only(&dir).unwrap().audit_records().unwrap()), Ok(5));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Append one record per time in `times`, each in its own batch.
fn audit_at(store: &mut Store, times: &[i64]) {
    for &t in times {
        let a = Action::new(t, "alice", AssetType::Api, "", Verb::Authenticate, Outcome::Failure);
        store.commit(&Batch { audit: vec![a], ..Batch::default() }).unwrap();
    }
}

const DAY: i64 = 24 * 3600 * 1000;

#[test]
fn retention_by_count_keeps_the_newest_and_the_chain_verifies_from_the_anchor() {
    let dir = tmp("audit-prune-count");
    let mut store = Store::open(&dir).unwrap();
    audit_at(&mut store, &(0..150).map(|i| 1_000 + i).collect::<Vec<_>>());
    let retention = Retention { max_age_ms: 365 * DAY, max_records: 100 };

    let p = store.prune_audit(retention, 2_000).unwrap().expect("over the bound");
    // 99 % of 100 are left, the prune record included: 52 removed.
    assert_eq!((p.records, p.first_seq, p.anchor.seq), (52, 1, 52));
    assert_eq!((p.oldest_ms, p.newest_ms, p.by.as_slice()), (Some(1_000), Some(1_051), &[Bound::MaxRecords][..]));
    assert_eq!((p.removed_chain.as_str(), p.undecodable), ("verified", 0));
    let trail = Store::open_read_only(&dir).unwrap().audit_trail().unwrap();
    assert_eq!(trail.anchor.as_ref(), Some(&p.anchor));
    assert_eq!(trail.records.len(), 99);
    assert_eq!(trail.records.first().map(|r| r.seq), Some(53));
    let last = trail.records.last().unwrap();
    assert_eq!((last.seq, last.action.action.as_str(), last.action.principal.as_str()), (151, "prune", "retention"));
    assert_eq!(last.pruned(), Some(p));
    assert_eq!(trail.verify(), Ok(99));

    // Within the bound now: nothing more, and no prune record either.
    assert_eq!(store.prune_audit(retention, 3_000).unwrap(), None);
    // New records chain on; the trail still verifies.
    audit_at(&mut store, &[3_000]);
    assert_eq!(store.audit_trail().unwrap().verify(), Ok(100));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn retention_by_age_removes_the_old_prefix_with_a_slack_and_may_remove_everything() {
    let dir = tmp("audit-prune-age");
    let mut store = Store::open(&dir).unwrap();
    // Times are not in order (an aggregate of failures carries the time of
    // the first one): only a prefix is ever removed.
    audit_at(&mut store, &[DAY, 2 * DAY, 9 * DAY, 3 * DAY, 10 * DAY]);
    let retention = Retention { max_age_ms: 5 * DAY, max_records: 1_000_000 };
    // The oldest is past the cutoff by less than 1 % of the age: not yet.
    assert_eq!(store.prune_audit(retention, 6 * DAY + DAY / 200).unwrap(), None);

    let p = store.prune_audit(retention, 13 * DAY).unwrap().expect("due");
    assert_eq!((p.records, p.anchor.seq, p.newest_ms, p.by.as_slice()), (2, 2, Some(2 * DAY), &[Bound::MaxAge][..]));
    let trail = store.audit_trail().unwrap();
    assert_eq!(trail.records.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
    assert_eq!(trail.verify(), Ok(4));

    // Much later everything is old, the last prune record too: the new
    // prune record chains from the anchor alone.
    let p = store.prune_audit(retention, 100 * DAY).unwrap().expect("due");
    assert_eq!((p.records, p.first_seq, p.anchor.seq), (4, 3, 6));
    let trail = store.audit_trail().unwrap();
    assert_eq!(trail.records.len(), 1);
    assert_eq!((trail.records[0].seq, trail.records[0].prev_hash.as_str()), (7, p.anchor.hash.as_str()));
    assert_eq!(trail.verify(), Ok(1));
    audit_at(&mut store, &[100 * DAY]);
    assert_eq!(store.audit_trail().unwrap().verify(), Ok(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_anchor_moved_or_records_removed_by_hand_are_reported() {
    let dir = tmp("audit-prune-tamper");
    let mut store = Store::open(&dir).unwrap();
    audit_at(&mut store, &(0..20).collect::<Vec<_>>());
    let retention = Retention { max_age_ms: DAY, max_records: 10 };
    let p = store.prune_audit(retention, 100).unwrap().expect("over the bound");
    assert_eq!(p.anchor.seq, 11);
    assert_eq!(store.audit_trail().unwrap().verify(), Ok(10));

    // Removing one more record and moving the anchor over it does not pass.
    let next: String = store.conn.query_row("SELECT body FROM audit WHERE seq = 12", [], |r| r.get(0)).unwrap();
    let moved = Anchor::of(&serde_json::from_str::<Record>(&next).unwrap());
    store.conn.execute("DELETE FROM audit WHERE seq = 12", []).unwrap();
    assert!(matches!(store.audit_trail().unwrap().verify(), Err(ChainError::Broken { seq: 13, expected: 12, .. })));
    store
        .conn
        .execute("UPDATE meta SET value = ?1 WHERE key = 'audit.anchor'", [serde_json::to_string(&moved).unwrap()])
        .unwrap();
    assert_eq!(store.audit_trail().unwrap().verify(), Err(ChainError::Unanchored { seq: 12 }));
    // An anchor that does not decode is named when the trail is read.
    store.conn.execute("UPDATE meta SET value = 'garbage' WHERE key = 'audit.anchor'", []).unwrap();
    let e = store.audit_trail().unwrap_err();
    assert!(e.to_string().contains("audit.anchor"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pass_says_when_the_records_it_removed_did_not_verify() {
    let dir = tmp("audit-prune-broken");
    let mut store = Store::open(&dir).unwrap();
    audit_at(&mut store, &(0..30).collect::<Vec<_>>());
    store.conn.execute("UPDATE audit SET body = replace(body, '\"alice\"', '\"mallory\"') WHERE seq = 3", []).unwrap();
    store.conn.execute("UPDATE audit SET body = 'garbage' WHERE seq = 5", []).unwrap();
    let retention = Retention { max_age_ms: DAY, max_records: 20 };
    let p = store.prune_audit(retention, 100).unwrap().expect("over the bound");
    assert_eq!((p.records, p.undecodable), (11, 1));
    assert_eq!(p.removed_chain, "audit record 3 was altered: its hash does not match its content");
    assert_eq!(store.audit_trail().unwrap().verify(), Ok(20), "what is kept verifies");

    // The last row to remove does not decode: the pass stops at the last
    // one that does (an anchor needs a hash).
    store.conn.execute("UPDATE audit SET body = 'garbage' WHERE seq = 22", []).unwrap();
    audit_at(&mut store, &(0..10).collect::<Vec<_>>());
    let p = store.prune_audit(retention, 100).unwrap().expect("over the bound");
    assert_eq!((p.anchor.seq, p.undecodable), (21, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}
