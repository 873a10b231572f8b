use super::super::tests::{action, tmp};
use super::super::{Batch, Store, StoreError};
use telltale_core::audit::{verify, ChainError, Outcome, Record, Verb};

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
