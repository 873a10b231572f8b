use super::*;
use std::time::Duration;

fn obs(lineage: &[&str], b: Behaviour) -> Observation {
    Observation { lineage: lineage.iter().map(|s| s.to_string()).collect(), behaviour: b }
}

fn file(p: &str, access: u8) -> Behaviour {
    Behaviour::File { pattern: generalize::path_pattern(p), access }
}

fn cfg() -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::from_secs(0),
    }
}

fn stable_profile() -> Profile {
    let mut p = Profile::new("cws-webapp", 0);
    p.observe(&obs(&["/usr/sbin/nginx"], Behaviour::Exec), "v1", 1, false);
    p.observe(&obs(&["/usr/sbin/nginx", "/bin/sh"], Behaviour::Exec), "v1", 1, false);
    p.observe(&obs(&["/usr/sbin/nginx"], file("/etc/nginx/nginx.conf", 1)), "v1", 1, false);
    p.observe(&obs(&["/usr/sbin/nginx"], file("/proc/1234/status", 1)), "v1", 1, false);
    p.observe(
        &obs(&["/usr/sbin/nginx"], Behaviour::Dns { name: "db.internal".into(), qtype: "A".into() }),
        "v1",
        1,
        false,
    );
    let ep = Behaviour::Connect { protocol: Protocol::Tcp, address: "10.0.0.5".parse().unwrap(), port: 5432 };
    p.observe(&obs(&["/usr/sbin/nginx"], ep), "v1", 1, false);
    assert_eq!(p.tick(20_000, &cfg()).len(), 4);
    p
}

#[test]
fn learning_then_anomalies_per_type() {
    let mut p = stable_profile();
    for t in EventType::ALL {
        assert_eq!(p.clock(t).state, State::Stable);
    }
    // Known behaviour, including a generalized /proc/<pid> read.
    assert_eq!(p.observe(&obs(&["/usr/sbin/nginx"], file("/proc/999/status", 1)), "v1", 30_000, false), Verdict::Known);
    assert_eq!(p.observe(&obs(&["/usr/sbin/nginx", "/bin/sh"], Behaviour::Exec), "v1", 30_000, false), Verdict::Known);
    // New of each type.
    let new = [
        obs(&["/usr/sbin/nginx", "/bin/sh", "/tmp/xmrig"], Behaviour::Exec),
        obs(&["/usr/sbin/nginx"], file("/etc/shadow", 1)),
        obs(&["/usr/sbin/nginx"], Behaviour::Dns { name: "exfil.evil.test".into(), qtype: "TXT".into() }),
        obs(
            &["/usr/sbin/nginx"],
            Behaviour::Connect { protocol: Protocol::Tcp, address: "203.0.113.9".parse().unwrap(), port: 4444 },
        ),
    ];
    for o in &new {
        assert_eq!(p.observe(o, "v1", 30_000, false), Verdict::Anomaly, "{o:?}");
        assert!(!p.contains(o), "anomalies are not learned");
    }
}

#[test]
fn lineage_matters() {
    let mut p = stable_profile();
    // sh is known under nginx; sh launched by something else is new.
    assert_eq!(
        p.observe(&obs(&["/usr/bin/python3", "/bin/sh"], Behaviour::Exec), "v1", 30_000, false),
        Verdict::Anomaly
    );
    // nginx.conf read by sh (not by nginx) is new.
    assert_eq!(
        p.observe(&obs(&["/usr/sbin/nginx", "/bin/sh"], file("/etc/nginx/nginx.conf", 1)), "v1", 30_000, false),
        Verdict::Anomaly
    );
}

#[test]
fn a_write_to_a_file_only_read_before_is_new() {
    let mut p = stable_profile();
    assert_eq!(
        p.observe(&obs(&["/usr/sbin/nginx"], file("/etc/nginx/nginx.conf", 2)), "v1", 30_000, false),
        Verdict::Anomaly
    );
    assert_eq!(
        p.observe(&obs(&["/usr/sbin/nginx"], file("/etc/nginx/nginx.conf", 1)), "v1", 30_000, false),
        Verdict::Known
    );
}

#[test]
fn warmup_learns_even_when_stable() {
    let mut p = stable_profile();
    let o = obs(&["/usr/sbin/nginx"], file("/var/cache/nginx/new", 3));
    assert_eq!(p.observe(&o, "v2", 30_000, true), Verdict::Learned);
    assert_eq!(p.observe(&o, "v2", 30_001, false), Verdict::Known);
    assert!(p.tags.contains("v2"));
    assert_eq!(p.clock(EventType::File).state, State::Stable, "warm-up learning keeps the state");
}

#[test]
fn unstable_types_raise_nothing() {
    let mut p = Profile::new("noisy", 0);
    let cfg = cfg();
    for i in 0..70 {
        let o = obs(&["/bin/app"], Behaviour::Dns { name: format!("n{i}.example"), qtype: "A".into() });
        assert_eq!(p.observe(&o, "v1", i * 1000, false), Verdict::Learned);
        p.tick(i * 1000, &cfg);
    }
    assert_eq!(p.clock(EventType::Dns).state, State::Unstable);
    let o = obs(&["/bin/app"], Behaviour::Dns { name: "brand-new.example".into(), qtype: "A".into() });
    assert_eq!(p.observe(&o, "v1", 80_000, false), Verdict::Learned);
    assert_eq!(p.clock(EventType::Exec).state, State::Stable, "types are independent");
}

#[test]
fn lost_events_are_counted_while_learning_only() {
    let all = |n| {
        let mut l = crate::profile::Lost::default();
        for t in EventType::ALL {
            l.add(t, n);
        }
        l
    };
    let mut p = Profile::new("x", 0);
    p.add_lost_events(&all(3));
    p.tick(20_000, &cfg());
    p.add_lost_events(&all(5));
    assert_eq!(p.clock(EventType::File).lost_events, 3);
}

#[test]
fn one_dns_event_is_one_observation_per_question() {
    use crate::event::{DnsQuery, DnsQuestion, Process};
    let e = Event {
        time: time::OffsetDateTime::UNIX_EPOCH,
        cgroup_id: 1,
        process: Process {
            pid: 1,
            ppid: 0,
            uid: 0,
            gid: 0,
            comm: "app".into(),
            path: "/bin/app".into(),
            interpreter: None,
            args: vec![],
            args_truncated: false,
            ancestors: vec!["/bin/sh".into()],
        },
        kind: EventKind::Dns {
            dns: DnsQuery {
                questions: vec![
                    DnsQuestion { name: "a.test".into(), qtype: "A".into() },
                    DnsQuestion { name: "a.test".into(), qtype: "AAAA".into() },
                ],
                protocol: Protocol::Udp,
                server: "127.0.0.1".parse().unwrap(),
            },
        },
        dedup_key: 0,
    };
    let o = Observation::from_event(&e);
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].lineage, vec!["/bin/sh", "/bin/app"]);
}

#[test]
fn many_siblings_of_one_shape_collapse_but_nothing_else() {
    let mut p = stable_profile();
    let node = ["/usr/sbin/nginx"];
    // Learning is over; warm-up learning of 16 report files (a new release).
    for i in 0..16 {
        let name = format!("/srv/reports/report-{}.csv", ["alpha", "beta", "gamma", "delta"][i % 4].repeat(1 + i / 4));
        assert_eq!(p.observe(&obs(&node, file(&name, 3)), "v2", 30_000, true), Verdict::Learned);
    }
    assert_eq!(p.observe(&obs(&node, file("/srv/reports/report-zeta.csv", 1)), "v2", 31_000, false), Verdict::Known);
    assert_eq!(p.observe(&obs(&node, file("/srv/reports/shadow", 1)), "v2", 31_000, false), Verdict::Anomaly);
    assert_eq!(p.observe(&obs(&node, file("/srv/reports/report-zeta.txt", 1)), "v2", 31_000, false), Verdict::Anomaly);
    assert_eq!(p.observe(&obs(&node, file("/srv/other/report-zeta.csv", 1)), "v2", 31_000, false), Verdict::Anomaly);
    // 15 siblings are not enough.
    let mut q = stable_profile();
    for i in 0..15 {
        q.observe(&obs(&node, file(&format!("/srv/r/rep-{}.log", "x".repeat(i + 1)), 1)), "v2", 30_000, true);
    }
    assert_eq!(q.observe(&obs(&node, file("/srv/r/rep-new.log", 1)), "v2", 31_000, false), Verdict::Anomaly);
}

#[test]
fn a_mechanism_is_learned_then_its_first_use_is_an_exec_anomaly() {
    use crate::event::Mechanism;
    let mut p = Profile::new("cws-webapp", 0);
    let nginx = ["/usr/sbin/nginx"];
    let sh = ["/usr/sbin/nginx", "/bin/sh"];
    let io_uring = Behaviour::Mechanism { mechanism: Mechanism::IoUring };
    p.observe(&obs(&nginx, Behaviour::Exec), "v1", 1, false);
    p.observe(&obs(&sh, Behaviour::Exec), "v1", 1, false);
    assert_eq!(p.observe(&obs(&nginx, io_uring.clone()), "v1", 1, false), Verdict::Learned);
    assert_eq!(obs(&nginx, io_uring.clone()).event_type(), EventType::Exec);
    p.tick(20_000, &cfg());
    assert_eq!(p.clock(EventType::Exec).state, State::Stable);
    assert_eq!(p.observe(&obs(&nginx, io_uring.clone()), "v1", 30_000, false), Verdict::Known);
    assert_eq!(p.observe(&obs(&sh, io_uring.clone()), "v1", 30_000, false), Verdict::Anomaly);
    assert!(!p.contains(&obs(&sh, io_uring.clone())));
    // The exec of a node is not its use of io_uring, nor the reverse.
    assert!(!p.contains(&obs(&["/other"], io_uring.clone())));
    assert_eq!(p.behaviour_count(), 3);
    assert!(p.observations().contains(&obs(&nginx, io_uring)));
}

#[test]
fn a_mechanism_behaviour_has_a_stable_json_form() {
    use crate::event::Mechanism;
    let b = Behaviour::Mechanism { mechanism: Mechanism::IoUring };
    let json = serde_json::to_string(&b).unwrap();
    assert_eq!(json, r#"{"type":"mechanism","mechanism":"io_uring"}"#);
    assert_eq!(serde_json::from_str::<Behaviour>(&json).unwrap(), b);
    assert_eq!(Mechanism::from_name("io_uring"), Some(Mechanism::IoUring));
    assert_eq!(Mechanism::from_name("io-uring"), None);
}
