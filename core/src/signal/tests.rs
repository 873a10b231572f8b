use super::*;
use crate::event::{build, Event};
use crate::workload::image::ImageRef;

fn container(id: &str) -> Container {
    Container::new(id, id, &ImageRef::parse("reg/cws-webapp:v2").unwrap(), 1, 0)
}

fn anomaly(c: &str, t: i64, event: Event, o: Observation) -> Anomaly {
    Anomaly {
        id: format!("a{t}"),
        time: event.time,
        time_ms: t,
        container: container(c),
        event_type: o.event_type(),
        profile_version: "v2".into(),
        observation: o,
        event,
    }
}

fn file(c: &str, t: i64, path: &str) -> Anomaly {
    let e = build::read(1, build::process("/bin/app", &["/bin/sh"]), path);
    let o = Observation {
        lineage: vec!["/bin/sh".into(), "/bin/app".into()],
        behaviour: Behaviour::File { pattern: path.into(), access: 1 },
    };
    anomaly(c, t, e, o)
}

fn exec(c: &str, t: i64, path: &str) -> Anomaly {
    let mut e = build::read(1, build::process(path, &["/bin/sh"]), "");
    e.kind = EventKind::Exec;
    let o = Observation { lineage: vec!["/bin/sh".into(), path.into()], behaviour: Behaviour::Exec };
    anomaly(c, t, e, o)
}

#[test]
fn anomalies_group_per_container_in_order() {
    let mut s = Signals::default();
    let (a, created) = s.on_anomaly(1, &file("c1", 10, "/etc/passwd"));
    assert!(created);
    assert_eq!(a.severity, Severity::Low);
    let (b, created) = s.on_anomaly(2, &exec("c1", 20, "/tmp/evil.sh"));
    assert!(!created, "same container: the open signal is updated");
    assert_eq!(b.id, a.id);
    assert_eq!(b.severity, Severity::High);
    assert_eq!(b.entries.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(b.version, 2);
    let (c, created) = s.on_anomaly(3, &file("c2", 30, "/etc/passwd"));
    assert!(created && c.id != a.id, "another container: another signal");
    assert_eq!(s.all().len(), 2);
}

#[test]
fn archived_signals_are_not_reopened() {
    let mut s = Signals::default();
    let (a, _) = s.on_anomaly(1, &file("c1", 10, "/etc/passwd"));
    let (before, after) = s.update(&a.id, Some(Status::Archived), Some("rita".into())).unwrap();
    assert_eq!(before.status, Status::Open);
    assert_eq!((after.status, after.assignee.as_deref()), (Status::Archived, Some("rita")));
    let (b, created) = s.on_anomaly(2, &file("c1", 20, "/etc/group"));
    assert!(created && b.id != a.id);
    assert_eq!(s.update("nope", None, None).unwrap_err(), UpdateError::NotFound("nope".into()));
}

#[test]
fn overview_has_the_three_parts_and_exact_commands() {
    let mut s = Signals::default();
    s.on_anomaly(1, &exec("c1", 10, "/tmp/evil.sh"));
    let (sig, _) = s.on_anomaly(2, &file("c1", 20, "/etc/shadow"));
    let o = sig.overview();
    assert!(o.what_happened.contains("cws-webapp:v2") && o.what_happened.contains("c1"), "{}", o.what_happened);
    assert!(o.next_steps.iter().any(|n| n.contains("telltalectl profile show cws-webapp")));
    assert!(o.next_steps.iter().any(|n| n.contains(&format!("telltalectl signals benign {}", sig.id))));
    assert!(o
        .next_steps
        .iter()
        .any(|n| n.contains("telltalectl profile add cws-webapp --exec /tmp/evil.sh --parent /bin/sh")));
    assert!(o
        .next_steps
        .iter()
        .any(|n| n.contains("--file /etc/shadow --access r --process /bin/app --parent /bin/sh")));
    assert_eq!(o.events.len(), 2);
    assert!(o.events[0].contains("new process /tmp/evil.sh") && o.events[1].contains("/etc/shadow"), "{:?}", o.events);
}

#[test]
fn benign_observations_all_or_chosen() {
    let mut s = Signals::default();
    s.on_anomaly(1, &exec("c1", 10, "/tmp/a"));
    let (sig, _) = s.on_anomaly(2, &file("c1", 20, "/etc/b"));
    assert_eq!(s.benign_observations(&sig.id, &[]).unwrap().len(), 2);
    let one = s.benign_observations(&sig.id, &["a20".into()]).unwrap();
    assert_eq!(one.len(), 1);
    assert!(matches!(one[0].behaviour, Behaviour::File { .. }));
    assert!(matches!(s.benign_observations(&sig.id, &["zz".into()]), Err(UpdateError::NoSuchAnomaly { .. })));
}

#[test]
fn facets_for_notification_queries() {
    let mut s = Signals::default();
    let (sig, _) = s.on_anomaly(1, &exec("c1", 10, "/tmp/a"));
    let q = crate::query::Query::parse("rule_id:anomaly_detection severity:high image:cws-* status:open").unwrap();
    assert!(q.matches(&|k| sig.facet(k)));
    let q = crate::query::Query::parse("severity:low OR status:archived").unwrap();
    assert!(!q.matches(&|k| sig.facet(k)));
}

#[test]
fn what_a_new_process_did_is_marked_benign_with_it() {
    let mut s = Signals::default();
    let (sig, _) = s.on_anomaly(1, &exec("c1", 10, "/tmp/a"));
    let lib = Observation {
        lineage: vec!["/bin/sh".into(), "/tmp/a".into()],
        behaviour: Behaviour::File { pattern: "/usr/lib/libc.so.6".into(), access: 1 },
    };
    assert!(s.fold("c1", &lib).is_some());
    assert!(s.fold("c1", &lib).is_none(), "once");
    assert!(s.fold("c2", &lib).is_none(), "no open signal there");
    let all = s.benign_observations(&sig.id, &[]).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], lib);
}

#[test]
fn a_flood_is_counted_not_stored() {
    let mut s = Signals::default();
    let mut last = None;
    for i in 0..(MAX_ENTRIES as i64 + 50) {
        last = Some(s.on_anomaly(i as u64 + 1, &file("c1", i, &format!("/x/{i}"))).0);
    }
    let sig = last.unwrap();
    assert_eq!(sig.entries.len(), MAX_ENTRIES);
    assert_eq!(sig.anomaly_count, MAX_ENTRIES as u64 + 50);
    let o = sig.overview();
    assert!(o.events.last().unwrap().contains("50 more anomalies"), "{:?}", o.events.last());
    assert_eq!(sig.summary_copy().anomaly_count, MAX_ENTRIES as u64 + 50);
    assert!(sig.summary_copy().entries.is_empty());
}

#[test]
fn a_mechanism_anomaly_reads_as_the_process_starting_to_use_it() {
    use crate::event::Mechanism;
    let e = build::mechanism(1, build::process("/bin/app", &["/bin/sh"]), Mechanism::IoUring);
    let o = Observation::from_event(&e).remove(0);
    assert_eq!(o.behaviour, Behaviour::Mechanism { mechanism: Mechanism::IoUring });
    let a = anomaly("c1", 10, e, o.clone());
    assert_eq!(a.event_type, crate::profile::EventType::Exec);
    assert_eq!(summary(&a), "/bin/sh -> /bin/app started using io_uring");
    assert_eq!(Severity::of(&o), Severity::Medium);
    assert_eq!(
        add_command("cws-webapp", &o).unwrap(),
        "telltalectl profile add cws-webapp --mechanism io_uring --process /bin/app --parent /bin/sh"
    );
    assert_eq!(crate::suppress::detail(&o.behaviour), "io_uring");
}
