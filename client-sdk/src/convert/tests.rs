#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is the point

use std::collections::BTreeMap;

use proptest::prelude::*;
use time::macros::datetime;

use super::*;

// The reverse of the response conversions (the SDK never sends these
// messages), exhaustive like the real ones, for round trips.

fn to_ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).expect("in i64 range")
}

fn container_back(c: Container) -> pb::Container {
    let Container { id, name, image, tag, cgroup_id, pod, namespace, repository } = c;
    pb::Container { id, name, image, tag, cgroup_id, pod, namespace, repository }
}

fn event_back(e: Event) -> pb::Event {
    use pb::event::Kind;
    let Event { time, cgroup_id, process, kind } = e;
    let Process { pid, ppid, uid, gid, comm, path, interpreter, args, args_truncated, ancestors } = process;
    let kind = match kind {
        EventKind::Exec => Some(Kind::Exec(pb::Exec {})),
        EventKind::File { path, access, truncated } => {
            Some(Kind::File(pb::FileAccess { path, access: accesses_to_wire(access), truncated }))
        }
        EventKind::Dns { questions, protocol, server } => Some(Kind::Dns(pb::DnsQuery {
            questions: questions
                .into_iter()
                .map(|DnsQuestion { name, qtype }| pb::DnsQuestion { name, r#type: qtype })
                .collect(),
            protocol: protocol.into(),
            server,
        })),
        EventKind::Connect { protocol, address, port } => {
            Some(Kind::Connect(pb::Endpoint { protocol: protocol.into(), address, port }))
        }
        EventKind::Mechanism { name } => Some(Kind::Mechanism(pb::MechanismUse { name })),
        EventKind::Unknown => None,
    };
    pb::Event {
        time_unix_nano: to_ns(time),
        cgroup_id,
        process: Some(pb::Process {
            pid,
            ppid,
            uid,
            gid,
            comm,
            path,
            interpreter: interpreter.unwrap_or_default(),
            args,
            args_truncated,
            ancestors,
        }),
        kind,
    }
}

fn anomaly_back(a: Anomaly) -> pb::Anomaly {
    let Anomaly { id, time, container, event_type, profile_version, lineage, behaviour, event } = a;
    pb::Anomaly {
        id,
        time_unix_nano: to_ns(time),
        container: Some(container_back(container)),
        r#type: event_type.into(),
        profile_version,
        lineage,
        behaviour: behaviour.to_wire(),
        event: Some(event_back(event)),
    }
}

fn summary_back(s: SignalSummary) -> pb::SignalSummary {
    let SignalSummary { id, rule_id, severity, status, assignee, container, first_seen, last_seen, anomalies, version } =
        s;
    pb::SignalSummary {
        id,
        rule_id,
        severity: severity.as_str().to_owned(),
        status: status.into(),
        assignee: assignee.unwrap_or_default(),
        container: Some(container_back(container)),
        first_seen_unix_ms: to_ms(first_seen),
        last_seen_unix_ms: to_ms(last_seen),
        anomalies,
        version,
    }
}

fn signal_back(s: Signal) -> pb::Signal {
    let Signal { summary, what_happened, next_steps, events, entries } = s;
    pb::Signal {
        summary: Some(summary_back(summary)),
        what_happened,
        next_steps,
        events,
        entries: entries
            .into_iter()
            .map(|SignalEntry { sequence, anomaly_id, time, event_type, lineage, behaviour, summary }| {
                pb::SignalEntry {
                    sequence,
                    anomaly_id,
                    time_unix_ms: to_ms(time),
                    r#type: event_type.into(),
                    lineage,
                    behaviour: behaviour.to_wire(),
                    summary,
                }
            })
            .collect(),
    }
}

fn type_status_back(t: TypeStatus) -> pb::TypeStatus {
    let TypeStatus {
        event_type,
        state,
        learning_started,
        since,
        behaviours,
        last_new_behaviour,
        time_left,
        lost_events,
    } = t;
    pb::TypeStatus {
        r#type: event_type.into(),
        state: state.into(),
        learning_started_unix_ms: to_ms(learning_started),
        since_unix_ms: to_ms(since),
        behaviours,
        last_new_behaviour_unix_ms: last_new_behaviour.map_or(0, to_ms),
        time_left_seconds: time_left.map_or(-1, |d| i64::try_from(d.as_secs()).expect("seconds")),
        lost_events,
    }
}

fn profile_back(p: Profile) -> pb::Profile {
    let Profile { image, tags, nodes, status } = p;
    pb::Profile {
        image,
        tags,
        nodes: nodes
            .into_iter()
            .map(|ProcessNode { lineage, first_seen, last_seen, tags, files, dns, endpoints, mechanisms }| {
                pb::ProcessNode {
                    lineage,
                    first_seen_unix_ms: to_ms(first_seen),
                    last_seen_unix_ms: to_ms(last_seen),
                    tags,
                    files: files
                        .into_iter()
                        .map(|FileEntry { pattern, access }| pb::FileEntry {
                            pattern,
                            access: accesses_to_wire(access),
                        })
                        .collect(),
                    dns: dns.into_iter().map(|DnsEntry { name, qtype }| pb::DnsEntry { name, r#type: qtype }).collect(),
                    endpoints: endpoints
                        .into_iter()
                        .map(|EndpointEntry { protocol, address, port }| pb::EndpointEntry {
                            protocol: protocol.into(),
                            address,
                            port,
                        })
                        .collect(),
                    mechanisms,
                }
            })
            .collect(),
        status: status.map(|ProfileStatus { image, tags, behaviours, types }| pb::ProfileStatus {
            image,
            tags,
            behaviours,
            types: types.into_iter().map(type_status_back).collect(),
        }),
    }
}

fn wire_container() -> pb::Container {
    pb::Container {
        id: "app".into(),
        name: "app".into(),
        image: "cws-webapp".into(),
        tag: "v2".into(),
        cgroup_id: 4242,
        pod: "shop-0".into(),
        namespace: "prod".into(),
        repository: "registry.example.com:5000/shop/cws-webapp".into(),
    }
}

fn wire_anomaly() -> pb::Anomaly {
    pb::Anomaly {
        id: "an-1".into(),
        time_unix_nano: 1_738_324_800_123_456_789,
        container: Some(wire_container()),
        r#type: pb::EventType::File as i32,
        profile_version: "v2".into(),
        lineage: vec!["/bin/sh".into(), "/usr/bin/cat".into()],
        behaviour: Some(pb::Behaviour {
            kind: Some(pb::behaviour::Kind::File(pb::FileBehaviour {
                path: "/etc/passwd".into(),
                access: vec![pb::Access::Read as i32],
                pattern: false,
            })),
        }),
        event: Some(pb::Event {
            time_unix_nano: 1_738_324_800_123_456_789,
            cgroup_id: 4242,
            process: Some(pb::Process {
                pid: 7,
                ppid: 1,
                uid: 0,
                gid: 0,
                comm: "cat".into(),
                path: "/usr/bin/cat".into(),
                interpreter: String::new(),
                args: vec!["cat".into(), "/etc/passwd".into()],
                args_truncated: false,
                ancestors: vec!["/bin/sh".into()],
            }),
            kind: Some(pb::event::Kind::File(pb::FileAccess {
                path: "/etc/passwd".into(),
                access: vec![pb::Access::Read as i32],
                truncated: false,
            })),
        }),
    }
}

fn wire_summary() -> pb::SignalSummary {
    pb::SignalSummary {
        id: "sig-1".into(),
        rule_id: "anomaly_detection".into(),
        severity: "high".into(),
        status: pb::SignalStatus::UnderReview as i32,
        assignee: "rita".into(),
        container: Some(wire_container()),
        first_seen_unix_ms: 1_738_324_800_000,
        last_seen_unix_ms: 1_738_324_860_500,
        anomalies: 2,
        version: 3,
    }
}

#[test]
fn an_anomaly_becomes_typed_values() {
    let a = Anomaly::from_wire(wire_anomaly()).expect("converts");
    let time = datetime!(2025-01-31 12:00:00.123456789 UTC);
    assert_eq!(
        a,
        Anomaly {
            id: "an-1".into(),
            time,
            container: Container {
                id: "app".into(),
                name: "app".into(),
                image: "cws-webapp".into(),
                tag: "v2".into(),
                cgroup_id: 4242,
                pod: "shop-0".into(),
                namespace: "prod".into(),
                repository: "registry.example.com:5000/shop/cws-webapp".into(),
            },
            event_type: EventType::File,
            profile_version: "v2".into(),
            lineage: vec!["/bin/sh".into(), "/usr/bin/cat".into()],
            behaviour: Behaviour::File { path: "/etc/passwd".into(), access: vec![Access::Read] },
            event: Event {
                time,
                cgroup_id: 4242,
                process: Process {
                    pid: 7,
                    ppid: 1,
                    uid: 0,
                    gid: 0,
                    comm: "cat".into(),
                    path: "/usr/bin/cat".into(),
                    interpreter: None,
                    args: vec!["cat".into(), "/etc/passwd".into()],
                    args_truncated: false,
                    ancestors: vec!["/bin/sh".into()],
                },
                kind: EventKind::File { path: "/etc/passwd".into(), access: vec![Access::Read], truncated: false },
            },
        }
    );
    assert_eq!(anomaly_back(a), wire_anomaly(), "and back, unchanged");
}

#[test]
fn a_missing_message_is_an_error_naming_the_field() {
    let e = Anomaly::from_wire(pb::Anomaly { container: None, ..wire_anomaly() }).expect_err("no container");
    assert!(matches!(&e, ClientError::Response { field, .. } if field == "Anomaly.container"), "{e}");
    assert!(e.to_string().contains("Anomaly.container is missing"), "{e}");
    let mut a = wire_anomaly();
    a.event.as_mut().expect("event").process = None;
    let e = Anomaly::from_wire(a).expect_err("no process");
    assert!(e.to_string().contains("Event.process"), "{e}");
    let e = Signal::from_wire(pb::Signal::default()).expect_err("no summary");
    assert!(e.to_string().contains("Signal.summary"), "{e}");
    let e = SignalUpdated::from_wire(pb::UpdateSignalResponse::default()).expect_err("no signal");
    assert!(e.to_string().contains("UpdateSignalResponse.signal"), "{e}");
    let e = Profile::from_wire(pb::GetProfileResponse { profile: None }).expect_err("no profile");
    assert!(e.to_string().contains("GetProfileResponse.profile"), "{e}");
    let e = SequencedAnomaly::from_wire(pb::SequencedAnomaly { sequence: 1, anomaly: None }).expect_err("none");
    assert!(e.to_string().contains("SequencedAnomaly.anomaly"), "{e}");
}

#[test]
fn unknown_enum_numbers_and_oneofs_are_kept_not_fatal() {
    let mut w = wire_anomaly();
    w.r#type = 42;
    w.behaviour = Some(pb::Behaviour { kind: None });
    w.event.as_mut().expect("event").kind = None;
    if let Some(pb::Event { kind: None, process: Some(p), .. }) = w.event.as_mut() {
        p.interpreter = "/bin/sh".into();
    }
    let a = Anomaly::from_wire(w.clone()).expect("converts");
    assert_eq!(a.event_type, EventType::Unknown(42));
    assert_eq!(a.event_type.to_string(), "unknown(42)");
    assert_eq!(a.behaviour, Behaviour::Unknown);
    assert_eq!(a.event.kind, EventKind::Unknown);
    assert_eq!(a.event.process.interpreter.as_deref(), Some("/bin/sh"));
    w.behaviour = None; // an empty behaviour message goes back as an absent one
    assert_eq!(anomaly_back(a), w, "unknown numbers go back as they came");
    // An absent behaviour message is the same as an empty one.
    let a = Anomaly::from_wire(pb::Anomaly { behaviour: None, ..wire_anomaly() }).expect("converts");
    assert_eq!(a.behaviour, Behaviour::Unknown);

    let mut s = wire_summary();
    s.status = 9;
    s.severity = "critical".into();
    s.assignee = String::new();
    let sdk = SignalSummary::from_wire(s.clone()).expect("converts");
    assert_eq!(sdk.status, SignalStatus::Unknown(9));
    assert_eq!(sdk.severity, Severity::Other("critical".into()));
    assert_eq!(sdk.assignee, None);
    assert_eq!(summary_back(sdk), s);

    let t = NotificationTarget::from_wire(pb::NotificationTarget { kind: None }).expect("converts");
    assert_eq!(t, NotificationTarget::Unknown);
    assert_eq!(t.to_wire(), pb::NotificationTarget { kind: None });
}

#[test]
fn stream_items_of_unknown_kinds_are_skipped() {
    assert_eq!(Option::<AnomalyStreamItem>::from_wire(pb::AnomalyStreamItem { item: None }).expect("ok"), None);
    assert_eq!(Option::<SignalStreamItem>::from_wire(pb::SignalStreamItem { item: None }).expect("ok"), None);
    let lagged = pb::Lagged { skipped: 5, resume_after: 10, message: "reconnect with after_sequence 10".into() };
    let item = pb::AnomalyStreamItem { item: Some(pb::anomaly_stream_item::Item::Lagged(lagged.clone())) };
    assert_eq!(
        Option::<AnomalyStreamItem>::from_wire(item).expect("ok"),
        Some(AnomalyStreamItem::Lagged(Lagged {
            skipped: 5,
            resume_after: 10,
            message: "reconnect with after_sequence 10".into()
        }))
    );
    let change = pb::SignalChange { sequence: 3, created: true, signal: Some(wire_summary()) };
    let item = pb::SignalStreamItem { item: Some(pb::signal_stream_item::Item::Change(change)) };
    match Option::<SignalStreamItem>::from_wire(item).expect("ok") {
        Some(SignalStreamItem::Change(c)) => {
            assert_eq!((c.sequence, c.created, c.signal.id.as_str()), (3, true, "sig-1"));
        }
        other => panic!("{other:?}"),
    }
    let item = pb::SignalStreamItem {
        item: Some(pb::signal_stream_item::Item::Change(pb::SignalChange {
            sequence: 4,
            created: false,
            signal: None,
        })),
    };
    let e = Option::<SignalStreamItem>::from_wire(item).expect_err("no signal");
    assert!(e.to_string().contains("SignalChange.signal"), "{e}");
}

#[test]
fn a_signal_round_trips() {
    let wire = pb::Signal {
        summary: Some(wire_summary()),
        what_happened: "A new process ran.".into(),
        next_steps: vec!["telltalectl signals benign sig-1".into()],
        events: vec!["12:00:00 new process /tmp/x".into()],
        entries: vec![pb::SignalEntry {
            sequence: 17,
            anomaly_id: "an-1".into(),
            time_unix_ms: 1_738_324_800_000,
            r#type: pb::EventType::Exec as i32,
            lineage: vec!["/bin/sh".into(), "/tmp/x".into()],
            behaviour: Some(pb::Behaviour { kind: Some(pb::behaviour::Kind::Exec(pb::ExecBehaviour {})) }),
            summary: "new process /tmp/x".into(),
        }],
    };
    let s = Signal::from_wire(wire.clone()).expect("converts");
    assert_eq!(s.summary.status, SignalStatus::UnderReview);
    assert_eq!(s.summary.severity, Severity::High);
    assert_eq!(s.summary.assignee.as_deref(), Some("rita"));
    assert_eq!(s.summary.first_seen, datetime!(2025-01-31 12:00:00 UTC));
    assert_eq!(s.summary.last_seen, datetime!(2025-01-31 12:01:00.5 UTC));
    assert_eq!(s.entries[0].event_type, EventType::Exec);
    assert_eq!(s.entries[0].behaviour, Behaviour::Exec);
    assert_eq!(signal_back(s), wire);
}

#[test]
fn learning_status_never_and_not_learning() {
    let wire = pb::ProfileStatus {
        image: "web".into(),
        tags: vec!["v1".into()],
        behaviours: 12,
        types: vec![
            pb::TypeStatus {
                r#type: pb::EventType::Dns as i32,
                state: pb::LearningState::Learning as i32,
                learning_started_unix_ms: 1_738_324_800_000,
                since_unix_ms: 1_738_324_800_000,
                behaviours: 0,
                last_new_behaviour_unix_ms: 0,
                time_left_seconds: 90,
                lost_events: 3,
            },
            pb::TypeStatus {
                r#type: pb::EventType::Exec as i32,
                state: pb::LearningState::Stable as i32,
                learning_started_unix_ms: 1_738_324_800_000,
                since_unix_ms: 1_738_324_900_000,
                behaviours: 12,
                last_new_behaviour_unix_ms: 1_738_324_850_000,
                time_left_seconds: -1,
                lost_events: 0,
            },
        ],
    };
    let p = ProfileStatus::from_wire(wire.clone()).expect("converts");
    assert_eq!(p.types[0].state, LearningState::Learning);
    assert_eq!(p.types[0].last_new_behaviour, None, "0 is never");
    assert_eq!(p.types[0].time_left, Some(Duration::from_secs(90)));
    assert_eq!(p.types[1].state, LearningState::Stable);
    assert_eq!(p.types[1].time_left, None, "-1 is not learning");
    assert_eq!(p.types[1].last_new_behaviour, Some(datetime!(2025-01-31 12:00:50 UTC)));
    let profile = pb::Profile {
        image: "web".into(),
        tags: vec!["v1".into()],
        nodes: vec![pb::ProcessNode {
            lineage: vec!["/bin/sh".into()],
            first_seen_unix_ms: 1_738_324_800_000,
            last_seen_unix_ms: 1_738_324_800_001,
            tags: vec!["v1".into()],
            files: vec![pb::FileEntry { pattern: "/etc/*".into(), access: vec![1, 2, 7] }],
            dns: vec![pb::DnsEntry { name: "example.com".into(), r#type: "AAAA".into() }],
            endpoints: vec![pb::EndpointEntry { protocol: 2, address: "10.0.0.0/8".into(), port: 0 }],
            mechanisms: vec!["io_uring".into()],
        }],
        status: Some(wire),
    };
    let sdk = Profile::from_wire(profile.clone()).expect("converts");
    assert_eq!(sdk.nodes[0].files[0].access, vec![Access::Read, Access::Write, Access::Unknown(7)]);
    assert_eq!(sdk.nodes[0].endpoints[0].protocol, Protocol::Udp);
    assert_eq!(profile_back(sdk), profile);
}

#[test]
fn a_time_out_of_range_is_an_error_naming_the_field() {
    let mut s = wire_summary();
    s.last_seen_unix_ms = i64::MAX;
    let e = SignalSummary::from_wire(s).expect_err("out of range");
    assert!(e.to_string().contains("SignalSummary.last_seen_unix_ms") && e.to_string().contains("out of range"), "{e}");
    let e = AuditEvent::from_wire(pb::AuditEvent { time_unix_ms: i64::MIN, ..Default::default() }).expect_err("range");
    assert!(e.to_string().contains("AuditEvent.time_unix_ms"), "{e}");
}

#[test]
fn audit_documents_are_json_or_absent() {
    let wire = pb::AuditEvent {
        sequence: 1,
        time_unix_ms: 1_738_324_800_000,
        principal: "rita".into(),
        evt_name: "Cloud Security Platform".into(),
        asset_type: "security_profile".into(),
        asset_id: "web".into(),
        action: "add_to_profile".into(),
        outcome: "success".into(),
        before: String::new(),
        after: r#"{"added":1}"#.into(),
        prev_hash: "00".into(),
        hash: "ab".into(),
    };
    let e = AuditEvent::from_wire(wire.clone()).expect("converts");
    assert_eq!(e.before, None);
    assert_eq!(e.after, Some(serde_json::json!({"added": 1})));
    assert_eq!(e.time, datetime!(2025-01-31 12:00:00 UTC));
    let bad = AuditEvent::from_wire(pb::AuditEvent { before: "{not json".into(), ..wire }).expect_err("not JSON");
    assert!(bad.to_string().contains("AuditEvent.before is not JSON"), "{bad}");
}

#[test]
fn requests() {
    let u = SignalUpdate::new("s").status(SignalStatus::UnderReview).assignee("rita").to_wire();
    assert_eq!(
        u,
        pb::UpdateSignalRequest {
            id: "s".into(),
            status: pb::SignalStatus::UnderReview as i32,
            assignee: Some("rita".into()),
            mark_benign: false,
            benign_anomaly_ids: vec![],
        }
    );
    let u = SignalUpdate::new("s").benign(Benign::All).to_wire();
    assert_eq!((u.status, u.assignee, u.mark_benign, u.benign_anomaly_ids), (0, None, true, vec![]));
    let u = SignalUpdate::new("s").benign(Benign::Only(vec!["a".into()])).assignee("").to_wire();
    assert_eq!((u.assignee, u.mark_benign, u.benign_anomaly_ids), (Some(String::new()), true, vec!["a".to_owned()]));

    let f = WatchFilter { image: "web".into(), container: String::new(), event_type: Some(EventType::Dns) };
    assert_eq!(
        anomalies_request(&f, 7),
        pb::StreamAnomaliesRequest {
            after_sequence: 7,
            image: "web".into(),
            container: String::new(),
            r#type: pb::EventType::Dns as i32
        }
    );
    assert_eq!(anomalies_request(&WatchFilter::default(), 0).r#type, 0, "no filter is unspecified");

    let r = audit_request("q", Some(datetime!(2025-01-31 12:00:00.0019 UTC)), None, 5);
    assert_eq!((r.from_unix_ms, r.to_unix_ms, r.limit), (1_738_324_800_001, 0, 5));

    let b = crate::behaviour::connect(&["/bin/a"], Protocol::Tcp, "10.0.0.0/8", 0).to_wire();
    assert_eq!(
        b,
        pb::BehaviourToAdd {
            lineage: vec!["/bin/a".into()],
            behaviour: Some(pb::Behaviour {
                kind: Some(pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
                    protocol: pb::Protocol::Tcp as i32,
                    address: "10.0.0.0/8".into(),
                    port: 0
                }))
            }),
        }
    );
    let b = crate::behaviour::file(&["/bin/a"], "/etc/x", &[Access::Read, Access::Truncate]).to_wire();
    assert!(matches!(b.behaviour.and_then(|b| b.kind),
        Some(pb::behaviour::Kind::File(pb::FileBehaviour { access, pattern: false, .. })) if access == vec![1, 4]));
    // A pattern is sent as one, and read back as one.
    let b = crate::behaviour::file_pattern(&["/bin/a"], "/proc/{pid}/status", &[Access::Read]).to_wire();
    let wire = b.behaviour.clone();
    assert!(matches!(b.behaviour.and_then(|b| b.kind),
        Some(pb::behaviour::Kind::File(pb::FileBehaviour { path, pattern: true, .. })) if path == "/proc/{pid}/status"));
    assert_eq!(
        Behaviour::from_wire(wire).unwrap(),
        Behaviour::FilePattern { pattern: "/proc/{pid}/status".into(), access: vec![Access::Read] }
    );
}

#[test]
fn enum_names_parse_print_and_serialize() {
    for t in EventType::ALL {
        assert_eq!(t.to_string().parse::<EventType>(), Ok(*t));
    }
    assert_eq!(SignalStatus::UnderReview.to_string(), "under_review");
    assert_eq!("unknown(12)".parse::<Access>(), Ok(Access::Unknown(12)));
    let e = "sctp".parse::<Protocol>().expect_err("unknown");
    assert_eq!(e.to_string(), r#"unknown protocol "sctp": use tcp, udp"#);
    assert_eq!(serde_json::to_string(&LearningState::Stable).expect("json"), r#""stable""#);
    assert_eq!(serde_json::from_str::<EventType>(r#""dns""#).expect("json"), EventType::Dns);
    assert!(serde_json::from_str::<EventType>(r#""DNS""#).is_err());
}

fn event_type() -> impl Strategy<Value = Option<EventType>> {
    prop_oneof![
        Just(None),
        prop::sample::select(EventType::ALL).prop_map(Some),
        (1i32..).prop_map(|n| Some(EventType::from(n))),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9:/.*-]{0,12}"
}

fn some_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-z0-9]{1,8}")
}

fn target() -> impl Strategy<Value = NotificationTarget> {
    prop_oneof![
        text().prop_map(|url| NotificationTarget::Slack { url }),
        (text(), some_text(), prop::collection::btree_map("[A-Z][a-z-]{0,6}", text(), 0..3))
            .prop_map(|(url, secret, headers)| NotificationTarget::Webhook { url, secret, headers }),
        (text(), any::<bool>(), some_text(), some_text(), text(), prop::collection::vec(text(), 0..3)).prop_map(
            |(server, starttls, username, password, from, to)| NotificationTarget::Email {
                server,
                starttls,
                username,
                password,
                from,
                to
            }
        ),
        Just(NotificationTarget::Unknown),
    ]
}

proptest! {
    #[test]
    fn every_wire_number_round_trips(n in any::<i32>()) {
        prop_assert_eq!(i32::from(EventType::from(n)), n);
        prop_assert_eq!(i32::from(LearningState::from(n)), n);
        prop_assert_eq!(i32::from(SignalStatus::from(n)), n);
        prop_assert_eq!(i32::from(Access::from(n)), n);
        prop_assert_eq!(i32::from(Protocol::from(n)), n);
        // Known numbers have names; the rest (0 included) are Unknown(n), printed and parsed as such.
        let t = EventType::from(n);
        prop_assert_eq!(matches!(t, EventType::Unknown(_)), !(1..=4).contains(&n));
        prop_assert_eq!(t.to_string().parse::<EventType>(), Ok(t));
        let s = SignalStatus::from(n);
        prop_assert_eq!(serde_json::from_str::<SignalStatus>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn millisecond_times_round_trip(ms in -62_135_596_800_000i64..253_402_300_799_999) {
        let t = time_ms(ms, "f").expect("in range");
        prop_assert_eq!(to_ms(t), ms);
    }

    #[test]
    fn anomalies_round_trip_whatever_the_numbers(
        ns in any::<i64>(),
        kind in any::<i32>(),
        protocol in any::<i32>(),
        access in prop::collection::vec(any::<i32>(), 0..4),
        port in any::<u32>(),
    ) {
        let mut w = wire_anomaly();
        w.time_unix_nano = ns;
        w.r#type = kind;
        w.behaviour = Some(pb::Behaviour {
            kind: Some(pb::behaviour::Kind::Connect(pb::ConnectBehaviour { protocol, address: "::1".into(), port })),
        });
        if let Some(e) = w.event.as_mut() {
            e.time_unix_nano = ns;
            e.kind = Some(pb::event::Kind::File(pb::FileAccess { path: "/x".into(), access, truncated: true }));
        }
        let a = Anomaly::from_wire(w.clone()).expect("every i64 nanosecond time fits");
        prop_assert_eq!(anomaly_back(a), w);
    }

    #[test]
    fn signal_summaries_convert_or_name_the_bad_time(first in any::<i64>(), last in any::<i64>(), status in any::<i32>()) {
        let w = pb::SignalSummary { first_seen_unix_ms: first, last_seen_unix_ms: last, status, ..wire_summary() };
        match SignalSummary::from_wire(w.clone()) {
            Ok(s) => prop_assert_eq!(summary_back(s), w),
            Err(e) => prop_assert!(e.to_string().contains("_seen_unix_ms"), "{}", e),
        }
    }

    #[test]
    fn notification_rules_round_trip(
        id in text(),
        name in text(),
        enabled in any::<bool>(),
        query in text(),
        targets in prop::collection::vec(target(), 0..4),
        notify_on_update in any::<bool>(),
    ) {
        let rule = NotificationRule { id, name, enabled, query, targets, notify_on_update };
        prop_assert_eq!(NotificationRule::from_wire(rule.clone().to_wire()).expect("converts"), rule.clone());
        // And through the rule file format (JSON), except targets it cannot name.
        if !rule.targets.contains(&NotificationTarget::Unknown) {
            let json = serde_json::to_string(&rule).unwrap();
            prop_assert_eq!(serde_json::from_str::<NotificationRule>(&json).unwrap(), rule);
        }
    }

    #[test]
    fn suppressions_round_trip(
        id in text(), name in text(), image in text(), event_type in event_type(), process in text(), detail in text(),
    ) {
        let s = Suppression { id, name, image, event_type, process, detail };
        prop_assert_eq!(Suppression::from_wire(s.clone().to_wire()).expect("converts"), s.clone());
        let yaml = serde_norway::to_string(&s).unwrap();
        prop_assert_eq!(serde_norway::from_str::<Suppression>(&yaml).unwrap(), s);
    }
}

#[test]
fn empty_secrets_are_absent() {
    let w = pb::NotificationTarget {
        kind: Some(pb::notification_target::Kind::Webhook(pb::WebhookTarget {
            url: "https://x.example".into(),
            secret: String::new(),
            headers: [("X-A".to_owned(), "b".to_owned())].into_iter().collect(),
        })),
    };
    assert_eq!(
        NotificationTarget::from_wire(w).expect("converts"),
        NotificationTarget::Webhook {
            url: "https://x.example".into(),
            secret: None,
            headers: BTreeMap::from([("X-A".to_owned(), "b".to_owned())]),
        }
    );
}
