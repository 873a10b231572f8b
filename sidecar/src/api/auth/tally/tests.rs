use super::*;

use proptest::prelude::*;

const WINDOW: i64 = 60_000;

fn login(peer: u32) -> Failure {
    Failure::new(
        Verb::Authenticate,
        "anonymous",
        "",
        vec![("reason", "invalid token".into()), ("peer", format!("10.0.0.{peer}"))],
    )
}

fn count(a: &Action) -> u64 {
    a.after.as_ref().and_then(|v| v["count"].as_u64()).expect("a count")
}

/// Sends into `out`.
fn into(out: &mut Vec<Action>) -> impl FnMut(Action) -> Offer + '_ {
    |a| {
        out.push(a);
        Offer::Queued
    }
}

#[test]
fn the_first_failure_is_recorded_at_once_and_its_repeats_in_one_record_at_the_window_end() {
    let mut t = Tally::new(WINDOW, 16);
    let mut sent = Vec::new();
    assert_eq!(t.add(login(1), 1_000, into(&mut sent)), None);
    assert_eq!(sent.len(), 1);
    let first = &sent[0];
    assert_eq!(
        (first.principal.as_str(), first.action.as_str(), first.outcome.as_str()),
        ("anonymous", "authenticate", "failure")
    );
    let after = first.after.as_ref().unwrap();
    assert_eq!(after["reason"], "invalid token");
    assert_eq!(after["peer"], "10.0.0.1");
    assert_eq!((&after["count"], &after["first_ms"], &after["last_ms"]), (&1.into(), &1_000.into(), &1_000.into()));

    for i in 0..99 {
        assert_eq!(t.add(login(1), 2_000 + i, |_| panic!("repeats wait for the window's end")), None);
    }
    assert_eq!(t.pending(), 99);
    assert_eq!(t.flush(60_999, false, |_| panic!("the window is still open")), Flushed::default());
    assert_eq!(t.flush(61_000, false, into(&mut sent)), Flushed::default());
    assert_eq!(sent.len(), 2);
    let repeats = &sent[1];
    assert_eq!(repeats.time_ms, 2_000, "the time of the first repeat");
    let after = repeats.after.as_ref().unwrap();
    assert_eq!((&after["count"], &after["first_ms"], &after["last_ms"]), (&99.into(), &2_000.into(), &2_098.into()));
    assert_eq!(after["peer"], "10.0.0.1");
    assert_eq!(t.kinds(), 0);

    // A lone failure's window closes without a second record; the next
    // failure opens a new window and is recorded at once.
    t.add(login(2), 70_000, into(&mut sent));
    assert_eq!(t.flush(200_000, false, into(&mut sent)), Flushed::default());
    assert_eq!(sent.len(), 3);
    assert_eq!(t.kinds(), 0);
    t.add(login(2), 200_001, into(&mut sent));
    assert_eq!(sent.len(), 4);
}

#[test]
fn kinds_beyond_the_bound_are_counted_together_per_action() {
    let mut t = Tally::new(WINDOW, 3);
    let mut sent = Vec::new();
    for round in 0..5 {
        for peer in 0..10 {
            t.add(login(peer), round, into(&mut sent));
        }
    }
    let denied = Failure::new(Verb::Authorize, "vera", "VerifyAuditTrail", vec![("needed", "Admin".into())]);
    t.add(denied, 5, into(&mut sent));
    assert_eq!(t.kinds(), 5, "3 apart, 1 overflow per action");
    t.flush(WINDOW + 5, false, into(&mut sent));
    assert_eq!(t.kinds(), 0);
    // 3 peers apart (first + repeats), the overflow (first + repeats), the
    // denial's overflow.
    assert_eq!(sent.len(), 3 * 2 + 2 + 1, "{sent:#?}");
    assert_eq!(sent.iter().map(count).sum::<u64>(), 51);
    let overflow = |verb: &str| -> Vec<&Action> {
        sent.iter().filter(|a| a.principal == OVERFLOW_PRINCIPAL && a.action == verb).collect()
    };
    assert_eq!(overflow("authenticate").iter().map(|a| count(a)).sum::<u64>(), 35, "7 peers × 5");
    assert!(overflow("authenticate")[0].after.as_ref().unwrap()["overflow"].as_str().unwrap().contains("more than 3"));
    // The denial came with the bound reached: counted in its own action's overflow.
    assert_eq!(overflow("authorize").iter().map(|a| count(a)).sum::<u64>(), 1);
    // The bound frees up with the windows.
    t.add(login(9), 100_000, into(&mut sent));
    assert_eq!(sent.last().unwrap().after.as_ref().unwrap()["peer"], "10.0.0.9");
}

#[test]
fn a_full_inbox_keeps_records_counting_until_there_is_room() {
    let mut t = Tally::new(WINDOW, 16);
    let full = |_: Action| Offer::Full;
    t.add(login(1), 0, full);
    t.add(login(1), 10, full);
    t.add(login(2), 20, full);
    assert_eq!(t.pending(), 3);
    assert_eq!(t.flush(WINDOW + 30, false, full), Flushed { lost: vec![], waiting: 3 });
    assert_eq!(t.pending(), 3, "kept");
    t.add(login(1), WINDOW + 40, full);
    // Room for one record only: the oldest goes, the other waits.
    let mut sent = Vec::new();
    let mut room = 1;
    let done = t.flush(WINDOW + 50, false, |a| {
        if room == 0 {
            return Offer::Full;
        }
        room -= 1;
        sent.push(a);
        Offer::Queued
    });
    assert_eq!(done, Flushed { lost: vec![], waiting: 1 });
    assert_eq!(sent.len(), 1);
    let after = sent[0].after.as_ref().unwrap();
    assert_eq!(
        (&after["peer"], &after["count"], &after["last_ms"]),
        (&"10.0.0.1".into(), &3.into(), &(WINDOW + 40).into())
    );
    t.flush(WINDOW + 60, false, into(&mut sent));
    assert_eq!(sent.iter().map(count).sum::<u64>(), 4);
    assert_eq!(t.kinds(), 0);
}

#[test]
fn what_can_never_be_written_is_handed_back() {
    let mut t = Tally::new(WINDOW, 16);
    let closed = |_: Action| Offer::Closed;
    let lost = t.add(login(1), 0, closed).expect("handed back");
    assert_eq!(count(&lost), 1);
    assert_eq!(t.add(login(1), 1, closed), None);
    t.add(login(1), 2, |_| unreachable!());
    let done = t.flush(3, true, closed);
    assert_eq!(done.lost.iter().map(count).sum::<u64>(), 2, "every window, ended or not");
    assert_eq!(t.kinds(), 0);
}

proptest! {
    /// Whatever the failures, their times and the room in the inbox, every
    /// failure is in exactly one record (queued, handed back, or still
    /// counted) and the kinds held stay bounded.
    #[test]
    fn every_failure_is_counted_once_and_memory_is_bounded(
        steps in proptest::collection::vec((0u32..40, 0i64..5_000, 0u8..4), 1..400),
    ) {
        let mut t = Tally::new(WINDOW, 8);
        let (mut queued, mut lost, mut now) = (0u64, 0u64, 0i64);
        let offer = |room: u8| move |_: &Action| match room {
            0 => Offer::Full,
            3 => Offer::Closed,
            _ => Offer::Queued,
        };
        for (i, (peer, dt, room)) in steps.iter().enumerate() {
            now += dt;
            let o = offer(*room);
            let mut sent = 0;
            if let Some(a) = t.add(login(*peer), now, |a| {
                let r = o(&a);
                if r == Offer::Queued {
                    sent += count(&a);
                }
                r
            }) {
                lost += count(&a);
            }
            queued += sent;
            if i % 7 == 0 {
                let mut sent = 0;
                let back = t.flush(now, false, |a| {
                    let r = o(&a);
                    if r == Offer::Queued {
                        sent += count(&a);
                    }
                    r
                });
                queued += sent;
                lost += back.lost.iter().map(count).sum::<u64>();
            }
            prop_assert!(t.kinds() <= 8 + 1);
        }
        prop_assert_eq!(queued + lost + t.pending(), steps.len() as u64);
    }
}
