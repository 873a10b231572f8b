use super::*;
use crate::event::{build, EventKind};
use crate::profile::lifecycle::State;
use std::time::Duration;

fn cfg(warmup: u64) -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::from_secs(warmup),
    }
}

fn open(cgroup_id: u64, path: &str) -> Event {
    build::read(cgroup_id, build::process("/bin/app", &[]), path)
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn anomalies(changes: &[Change]) -> Vec<&Anomaly> {
    changes.iter().filter_map(|c| if let Change::Anomaly(a) = c { Some(a.as_ref()) } else { None }).collect()
}

#[test]
fn containers_of_one_image_share_a_profile_and_report_once_each() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web-1", &image("reg/web:v1"), 100, 0), 0);
    d.add_container(Container::new("c2", "web-2", &image("reg/web:v2"), 200, 0), 0);
    d.add_container(Container::new("c3", "db", &image("reg/db:v1"), 300, 0), 0);
    assert!(d.on_event(&open(100, "/etc/web.conf"), 1_000).known);
    assert_eq!(d.tick(20_000, &Default::default()).len(), 8, "two profiles, four types each became stable");
    assert_eq!(d.profile("web").unwrap().clock(EventType::File).state, State::Stable);
    // c2 shares web's profile: what c1 did is known.
    let o = d.on_event(&open(200, "/etc/web.conf"), 21_000);
    assert!(o.known && o.changes.is_empty());
    // db never saw it: anomaly for db.
    let o = d.on_event(&open(300, "/etc/web.conf"), 21_000);
    assert_eq!(anomalies(&o.changes).len(), 1);
    // A new file in web containers: once per container.
    let a1 = d.on_event(&open(100, "/etc/shadow"), 22_000);
    let a1b = d.on_event(&open(100, "/etc/shadow"), 22_001);
    let a2 = d.on_event(&open(200, "/etc/shadow"), 22_002);
    assert_eq!(anomalies(&a1.changes).len(), 1);
    assert!(anomalies(&a1b.changes).is_empty(), "same behaviour, same container: once");
    assert!(!a1b.known);
    let a2 = anomalies(&a2.changes);
    assert_eq!(a2.len(), 1);
    assert_eq!(a2[0].container.id, "c2");
    assert_eq!(a2[0].profile_version, "v2");
    assert_eq!(a2[0].event_type, EventType::File);
    assert!(matches!(&a2[0].event.kind, EventKind::File { file } if file.path == "/etc/shadow"));
}

#[test]
fn warmup_learns_a_new_containers_startup() {
    let mut d = Detector::new(cfg(30), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.tick(40_000, &Default::default());
    d.add_container(Container::new("c2", "web", &image("web:v1"), 200, 41_000), 41_000);
    let o = d.on_event(&open(200, "/var/cache/startup"), 42_000);
    assert!(anomalies(&o.changes).is_empty() && o.known);
    let o = d.on_event(&open(100, "/var/cache/other"), 42_000);
    assert_eq!(anomalies(&o.changes).len(), 1, "c1 is past its warm-up");
}

#[test]
fn unattributed_events_are_flagged() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    let o = d.on_event(&open(999, "/x"), 0);
    assert!(o.unattributed && !o.known && o.changes.is_empty());
}

#[test]
fn reported_anomalies_survive_a_restart() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.tick(20_000, &Default::default());
    let o = d.on_event(&open(100, "/etc/shadow"), 21_000);
    let a = anomalies(&o.changes)[0].clone();
    let profiles: Vec<Profile> = d.profiles().cloned().collect();
    let mut d2 = Detector::new(cfg(0), profiles, vec![(a.container.id.clone(), a.observation.clone())]);
    d2.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    assert!(anomalies(&d2.on_event(&open(100, "/etc/shadow"), 30_000).changes).is_empty());
}

#[test]
fn lost_events_are_recorded_on_learning_profiles() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    let mut lost = crate::profile::Lost::default();
    lost.add(EventType::Dns, 4);
    lost.add(EventType::File, 1);
    let ch = d.tick(1_000, &LostRecords { by_cgroup: vec![], unattributed: lost });
    assert_eq!(ch.len(), 2, "only the types that lost records changed: {ch:?}");
    let p = d.profile("web").unwrap();
    assert_eq!(p.clock(EventType::Dns).lost_events, 4);
    assert_eq!(p.clock(EventType::File).lost_events, 1);
    assert_eq!(p.clock(EventType::Exec).lost_events, 0, "a DNS burst is no exec loss");
}

#[test]
fn lost_records_are_charged_to_the_profile_of_their_container() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.add_container(Container::new("c2", "db", &image("db:v1"), 200, 0), 0);
    let mut flood = crate::profile::Lost::default();
    flood.add(EventType::File, 600);
    let mut unknown = crate::profile::Lost::default();
    unknown.add(EventType::Exec, 2);
    let ch =
        d.tick(1_000, &LostRecords { by_cgroup: vec![(200, flood), (999, unknown)], unattributed: Default::default() });
    let db = d.profile("db").unwrap();
    assert_eq!(db.clock(EventType::File).lost_events, 600);
    assert_eq!(db.clock(EventType::Exec).lost_events, 2, "a loss whose container is unknown is everyone's");
    let web = d.profile("web").unwrap();
    assert_eq!(web.clock(EventType::File).lost_events, 0, "another container's flood is not web's loss");
    assert_eq!(web.clock(EventType::Exec).lost_events, 2);
    assert_eq!(ch.len(), 3, "db file, db exec, web exec: {ch:?}");
}

#[test]
fn a_new_process_is_one_anomaly_not_one_per_library() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.on_event(&open(100, "/etc/web.conf"), 1_000);
    d.tick(20_000, &Default::default());
    let mut exec = open(100, "");
    exec.kind = EventKind::Exec;
    exec.process.path = "/tmp/xmrig".into();
    exec.process.ancestors = vec!["/bin/app".into()];
    let mut lib = open(100, "/usr/lib/libc.so.6");
    lib.process = exec.process.clone();
    let a = d.on_event(&exec, 21_000);
    let b = d.on_event(&lib, 21_001);
    assert_eq!(anomalies(&a.changes).len(), 1);
    assert_eq!(anomalies(&a.changes)[0].event_type, EventType::Exec);
    assert!(anomalies(&b.changes).is_empty(), "folded into the exec anomaly");
    // A process never seen to exec (started before telltale) is not swallowed.
    let mut old = open(100, "/etc/shadow");
    old.process.path = "/usr/bin/preexisting".into();
    assert_eq!(anomalies(&d.on_event(&old, 21_002).changes).len(), 1);
}

#[test]
fn suppressed_anomalies_are_learned_not_reported() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.tick(20_000, &Default::default());
    d.set_suppressions(vec![crate::suppress::Suppression {
        id: "s1".into(),
        name: "backups read the config".into(),
        image: "web".into(),
        event_type: Some(EventType::File),
        process: String::new(),
        detail: "/etc/app/*".into(),
    }]);
    let o = d.on_event(&open(100, "/etc/app/secrets.yml"), 21_000);
    assert!(anomalies(&o.changes).is_empty() && o.known);
    assert!(o.changes.iter().any(|c| matches!(c, Change::Behaviour { .. })), "added to the profile");
    assert!(d.on_event(&open(100, "/etc/app/secrets.yml"), 21_001).changes.is_empty(), "now known");
    assert_eq!(anomalies(&d.on_event(&open(100, "/etc/shadow"), 21_002).changes).len(), 1);
}

#[test]
fn adding_to_an_unknown_profile_creates_it_only_with_the_process_nodes() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    let node =
        |l: &[&str]| Observation { lineage: l.iter().map(|s| (*s).to_owned()).collect(), behaviour: Behaviour::Exec };
    let read = |l: &[&str], p: &str| Observation {
        lineage: l.iter().map(|s| (*s).to_owned()).collect(),
        behaviour: Behaviour::File { pattern: p.into(), access: crate::profile::access::READ },
    };
    // A file of a process the request does not name: no profile to add it to.
    assert!(d.add_to_profile("web", &[read(&["/bin/app"], "/etc/x")], 1_000).is_none());
    assert!(d.add_to_profile("web", &[], 1_000).is_none());
    assert!(d.profile("web").is_none());
    // A complete fragment (an imported document): the profile is created,
    // persisted first, then its behaviours.
    let (added, known, changes) =
        d.add_to_profile("web", &[node(&["/bin/app"]), read(&["/bin/app"], "/etc/x")], 1_000).unwrap();
    assert_eq!((added, known), (2, 0));
    assert_eq!(changes[0], Change::Profile { image: "web".into(), tags: vec!["latest".into()] });
    assert!(changes[1..5].iter().all(|c| matches!(c, Change::Clock { clock, .. } if clock.state == State::Learning)));
    let behaviours = changes.iter().filter(|c| matches!(c, Change::Behaviour { .. })).count();
    assert_eq!(behaviours, 2);
    // It learns like any new profile: quiet (hand-added behaviour does not
    // restart the quiet period), then stable; then new behaviour is an anomaly.
    d.tick(20_000, &Default::default());
    assert_eq!(d.profile("web").unwrap().clock(EventType::File).state, State::Stable);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 20_000), 20_000);
    let o = d.on_event(&open(100, "/etc/x"), 21_000);
    assert!(o.known && o.changes.is_empty(), "imported: known");
    assert_eq!(anomalies(&d.on_event(&open(100, "/etc/y"), 21_000).changes).len(), 1);
    // Now that it exists, a lone file is added as before.
    assert_eq!(d.add_to_profile("web", &[read(&["/bin/app"], "/etc/y")], 22_000).map(|(a, k, _)| (a, k)), Some((1, 0)));
}

#[test]
fn what_was_reported_stays_bounded_and_a_forgotten_anomaly_is_reported_again() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.on_event(&open(100, "/etc/web.conf"), 1_000);
    d.tick(20_000, &Default::default());
    let n = MAX_REPORTED + 10;
    let mut reported = 0;
    for i in 0..n {
        // Distinct files that no generalization folds together.
        reported += anomalies(&d.on_event(&open(100, &format!("/srv/x{i}/data")), 21_000).changes).len();
    }
    assert_eq!(reported, n, "every new behaviour is reported");
    assert_eq!(d.reported(), (MAX_REPORTED, 10), "memory bounded; the 10 oldest were forgotten");
    let again = d.on_event(&open(100, "/srv/x0/data"), 22_000);
    assert_eq!(anomalies(&again.changes).len(), 1, "a forgotten anomaly is reported again, not lost");
    let repeat = d.on_event(&open(100, &format!("/srv/x{}/data", n - 1)), 22_000);
    assert!(anomalies(&repeat.changes).is_empty(), "a remembered one is not");
}

#[test]
fn a_process_added_alone_by_hand_has_its_first_run_learned_and_no_more() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.on_event(&open(100, "/etc/web.conf"), 1_000);
    d.tick(20_000, &Default::default());
    let cat = || build::process("/usr/bin/cat", &["/bin/sh"]);
    let lineage = vec!["/bin/sh".to_owned(), "/usr/bin/cat".to_owned()];
    let exec_o = Observation { lineage: lineage.clone(), behaviour: Behaviour::Exec };
    let (added, _, _) = d.add_to_profile("web", &[exec_o], 21_000).unwrap();
    assert_eq!(added, 1);

    // Its first run: exec known, its library and locale loads learned.
    let run = |pid: u32| {
        let mut p = cat();
        p.pid = pid;
        p
    };
    assert!(d.on_event(&build::exec(100, run(50)), 30_000).known);
    for (i, f) in
        ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/locale/locale-archive", "/etc/hostname"].iter().enumerate()
    {
        let o = d.on_event(&build::read(100, run(50), f), 30_001 + i as i64);
        assert!(anomalies(&o.changes).is_empty() && o.known, "{f} learned in the first run");
        assert!(o.changes.iter().any(|c| matches!(c, Change::Behaviour { .. })));
    }
    // Another process of the node at the same time is judged.
    assert_eq!(anomalies(&d.on_event(&build::read(100, run(51), "/etc/shadow"), 30_010).changes).len(), 1);
    // The same process past the window is judged.
    let late = 30_000 + FIRST_RUN_WINDOW_MS + 1;
    assert_eq!(anomalies(&d.on_event(&build::read(100, run(50), "/etc/passwd"), late).changes).len(), 1);
    // The next run: what the first one did is known, anything new reported.
    assert!(d.on_event(&build::read(100, run(60), "/etc/hostname"), late + 1).known);
    assert_eq!(anomalies(&d.on_event(&build::read(100, run(60), "/etc/group"), late + 2).changes).len(), 1);
    // A program it starts is a new process node: still reported.
    let child = build::process("/tmp/x", &["/bin/sh", "/usr/bin/cat"]);
    assert_eq!(anomalies(&d.on_event(&build::exec(100, child), late + 3).changes).len(), 1);
}

#[test]
fn a_process_added_with_what_it_does_gets_no_learning_run() {
    let mut d = Detector::new(cfg(0), vec![], vec![]);
    d.add_container(Container::new("c1", "web", &image("web:v1"), 100, 0), 0);
    d.on_event(&open(100, "/etc/web.conf"), 1_000);
    d.tick(20_000, &Default::default());
    let lineage = vec!["/bin/sh".to_owned(), "/usr/bin/cat".to_owned()];
    let exec_o = Observation { lineage: lineage.clone(), behaviour: Behaviour::Exec };
    let file_o = Observation { lineage, behaviour: Behaviour::File { pattern: "/etc/hostname".into(), access: 1 } };
    d.add_to_profile("web", &[exec_o, file_o], 21_000).unwrap();
    let cat = build::process("/usr/bin/cat", &["/bin/sh"]);
    d.on_event(&build::exec(100, cat.clone()), 30_000);
    assert!(d.on_event(&build::read(100, cat.clone(), "/etc/hostname"), 30_001).known);
    assert_eq!(
        anomalies(&d.on_event(&build::read(100, cat, "/etc/shadow"), 30_002).changes).len(),
        1,
        "its behaviour came with it (an imported profile): nothing more is learned"
    );
    // An exec already known (learned) is not armed either.
    let mut app = build::process("/bin/app", &[]);
    app.pid = 77;
    let app_o = Observation { lineage: vec!["/bin/app".into()], behaviour: Behaviour::Exec };
    assert_eq!(d.add_to_profile("web", &[app_o], 31_000).unwrap().0, 0);
    d.on_event(&build::exec(100, app.clone()), 32_000);
    assert_eq!(anomalies(&d.on_event(&build::read(100, app, "/etc/other"), 32_001).changes).len(), 1);
}
