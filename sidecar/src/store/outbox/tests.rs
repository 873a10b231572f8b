use std::path::PathBuf;

use super::super::tests::tmp;
use super::super::{Batch, Store};
use super::*;
use telltale_core::notify::Target;

fn rule() -> Rule {
    Rule {
        id: "rule-1".into(),
        name: "soc".into(),
        enabled: true,
        query: String::new(),
        targets: vec![Target::Slack { url: "http://127.0.0.1:9/slack".into() }],
        notify_on_update: true,
    }
}

fn outgoing(body: &str) -> Outgoing {
    Outgoing {
        rule_id: "rule-1".into(),
        target: 0,
        signal_id: "sig-1".into(),
        message: Message::Http { body: body.into() },
        rate_limit_ms: 60_000,
    }
}

fn queue(store: &mut Store, body: &str, now_ms: i64) {
    store.commit(&Batch { outbox: vec![outgoing(body)], now_ms, ..Batch::default() }).unwrap();
}

fn open(tag: &str) -> (PathBuf, Store) {
    let dir = tmp(tag);
    let mut store = Store::open(&dir).unwrap();
    store.commit(&Batch { rules: vec![RuleChange::SaveRule(rule())], ..Batch::default() }).unwrap();
    (dir, store)
}

fn body(d: &Due) -> &str {
    match &d.message {
        Ok(Message::Http { body }) => body,
        other => panic!("{other:?}"),
    }
}

#[test]
fn updates_coalesce_into_one_pending_message_with_a_new_version() {
    let (dir, mut store) = open("outbox-coalesce");
    queue(&mut store, "created", 1_000);
    let first = store.due(1_000, 10).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].version, body(&first[0]), first[0].delivery_id()),
        (1, "created", format!("{}.1", first[0].id))
    );
    queue(&mut store, "updated", 2_000);
    let due = store.due(2_000, 10).unwrap();
    assert_eq!(due.len(), 1, "one message per rule, target and signal");
    assert_eq!((due[0].id, due[0].version, body(&due[0])), (first[0].id, 2, "updated"));
    assert_ne!(due[0].delivery_id(), first[0].delivery_id());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_update_merged_while_a_message_is_delivered_is_kept_for_the_next_round() {
    let (dir, mut store) = open("outbox-race");
    queue(&mut store, "created", 1_000);
    let sending = store.due(1_000, 10).unwrap().remove(0);
    // The daemon merges an update while the deliverer is sending.
    queue(&mut store, "updated", 1_500);
    assert_eq!(store.delivered(&sending, 2_000).unwrap(), Delivered::Superseded);
    assert!(store.was_notified("rule-1", 0, "sig-1").unwrap());
    assert!(store.due(61_999, 10).unwrap().is_empty(), "the rate limit counts from the delivery");
    let next = store.due(62_000, 10).unwrap();
    assert_eq!(next.len(), 1, "the update was not lost");
    assert_eq!((next[0].version, body(&next[0]), next[0].attempts), (2, "updated", 0));
    assert_eq!(store.delivered(&next[0], 62_000).unwrap(), Delivered::Removed);
    assert!(store.due(i64::MAX, 10).unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nothing_is_sent_sooner_than_the_rate_limit_after_a_delivery() {
    let (dir, mut store) = open("outbox-rate");
    queue(&mut store, "created", 1_000);
    let d = store.due(1_000, 10).unwrap().remove(0);
    assert_eq!(store.delivered(&d, 1_000).unwrap(), Delivered::Removed);
    queue(&mut store, "updated", 5_000);
    assert!(store.due(60_999, 10).unwrap().is_empty());
    assert_eq!(store.due(61_000, 10).unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failure_is_retried_later_and_counted() {
    let (dir, mut store) = open("outbox-failed");
    queue(&mut store, "created", 1_000);
    let d = store.due(1_000, 10).unwrap().remove(0);
    store.failed(&d, "HTTP status 503", 2_000).unwrap();
    assert!(store.due(1_999, 10).unwrap().is_empty());
    let again = store.due(2_000, 10).unwrap().remove(0);
    assert_eq!((again.attempts, again.delivery_id()), (1, d.delivery_id()), "a retry is the same delivery");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_delivery_recorded_after_its_rule_was_deleted_changes_nothing() {
    let (dir, mut store) = open("outbox-gone");
    queue(&mut store, "created", 1_000);
    let d = store.due(1_000, 10).unwrap().remove(0);
    store.commit(&Batch { rules: vec![RuleChange::DeleteRule("rule-1".into())], ..Batch::default() }).unwrap();
    assert_eq!(store.delivered(&d, 2_000).unwrap(), Delivered::Gone);
    assert!(!store.was_notified("rule-1", 0, "sig-1").unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stored_message_that_does_not_decode_is_reported_not_fatal() {
    let (dir, mut store) = open("outbox-bad");
    queue(&mut store, "created", 1_000);
    store.conn.execute("UPDATE outbox SET message = '{\"kind\":\"carrier_pigeon\"}'", []).unwrap();
    let d = store.due(1_000, 10).unwrap().remove(0);
    let Err(why) = &d.message else { panic!("{d:?}") };
    assert!(why.contains("carrier_pigeon"), "{why}");
    std::fs::remove_dir_all(&dir).unwrap();
}
