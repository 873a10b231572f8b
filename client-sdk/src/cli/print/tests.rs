#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is the point

use std::collections::BTreeMap;
use std::time::Duration;

use telltale_client::{
    Anomaly, AuditEvent, Container, Event, EventKind, EventType, FileEntry, LearningState, ProcessNode, Profile,
    Protocol, Severity, SignalStatus, TypeStatus,
};
use time::macros::datetime;

use super::*;

/// Print with `f` in `format`: (stdout, stderr).
fn printed(format: Format, f: impl FnOnce(&mut Printer<'_>) -> Result<()>) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    f(&mut Printer::new(format, &mut out, &mut err)).expect("prints");
    (String::from_utf8(out).expect("utf-8"), String::from_utf8(err).expect("utf-8"))
}

fn out(format: Format, f: impl FnOnce(&mut Printer<'_>) -> Result<()>) -> String {
    let (out, err) = printed(format, f);
    assert_eq!(err, "", "nothing on stderr");
    out
}

fn container(id: &str) -> Container {
    Container {
        id: id.into(),
        name: id.into(),
        image: "web".into(),
        tag: "v1".into(),
        cgroup_id: 9,
        pod: String::new(),
        namespace: String::new(),
        repository: "registry.example/web".into(),
    }
}

fn statuses() -> Vec<ProfileStatus> {
    let t = |event_type, state, behaviours, last: Option<OffsetDateTime>, left: Option<u64>| TypeStatus {
        event_type,
        state,
        learning_started: datetime!(2025-01-31 11:00:00 UTC),
        since: datetime!(2025-01-31 11:30:00.750 UTC),
        behaviours,
        last_new_behaviour: last,
        time_left: left.map(Duration::from_secs),
        lost_events: 0,
    };
    vec![ProfileStatus {
        image: "web".into(),
        tags: vec!["v1".into(), "v2".into()],
        behaviours: 14,
        types: vec![
            t(EventType::Exec, LearningState::Stable, 12, Some(datetime!(2025-01-31 11:29:00 UTC)), None),
            t(EventType::Dns, LearningState::Learning, 2, None, Some(95)),
        ],
    }]
}

fn summaries() -> Vec<SignalSummary> {
    vec![
        SignalSummary {
            id: "sig-2".into(),
            rule_id: "anomaly_detection".into(),
            severity: Severity::High,
            status: SignalStatus::Open,
            assignee: None,
            container: container("app2"),
            first_seen: datetime!(2025-01-31 12:05:00 UTC),
            last_seen: datetime!(2025-01-31 12:06:30.5 UTC),
            anomalies: 12,
            version: 4,
        },
        SignalSummary {
            id: "sig-1".into(),
            rule_id: "anomaly_detection".into(),
            severity: Severity::Low,
            status: SignalStatus::UnderReview,
            assignee: Some("rita".into()),
            container: Container { pod: "shop-0".into(), namespace: "prod".into(), ..container("app") },
            first_seen: datetime!(2025-01-31 12:00:00 UTC),
            last_seen: datetime!(2025-01-31 12:01:00 UTC),
            anomalies: 1,
            version: 2,
        },
    ]
}

fn rules() -> Vec<NotificationRule> {
    vec![NotificationRule {
        id: "rule-1".into(),
        name: "high severity".into(),
        enabled: true,
        query: "severity:high".into(),
        targets: vec![
            NotificationTarget::Webhook {
                url: "https://soc.example/hook".into(),
                secret: Some("********".into()),
                headers: BTreeMap::new(),
            },
            NotificationTarget::Slack { url: "https://hooks.slack.example/x".into() },
        ],
        notify_on_update: false,
    }]
}

fn anomaly() -> SequencedAnomaly {
    let time = datetime!(2025-01-31 12:00:00.123 UTC);
    SequencedAnomaly {
        sequence: 7,
        anomaly: Anomaly {
            id: "an-7".into(),
            time,
            container: container("app"),
            event_type: EventType::File,
            profile_version: "v1".into(),
            lineage: vec!["/bin/sh".into(), "/bin/cat".into()],
            behaviour: Behaviour::File { path: "/etc/passwd".into(), access: vec![Access::Read] },
            event: Event {
                time,
                cgroup_id: 9,
                process: telltale_client::Process {
                    pid: 10,
                    path: "/bin/cat".into(),
                    args: vec!["cat".into(), "/etc/passwd".into()],
                    ..Default::default()
                },
                kind: EventKind::File { path: "/etc/passwd".into(), access: vec![Access::Read], truncated: false },
            },
        },
    }
}

#[test]
fn status_table_and_wide() {
    assert_eq!(
        out(Format::Table, |p| p.list(&statuses())),
        "\
IMAGE   TYPE   STATE      SINCE                  BEHAVIOURS   LAST NEW               LEFT     LOST
web     exec   stable     2025-01-31T11:30:00Z   12           2025-01-31T11:29:00Z   <none>   0
web     dns    learning   2025-01-31T11:30:00Z   2            <none>                 1m 35s   0
"
    );
    assert_eq!(
        out(Format::Wide, |p| p.list(&statuses())),
        "\
IMAGE   TYPE   STATE      SINCE                  BEHAVIOURS   LAST NEW               LEFT     LOST   LEARNING STARTED       TAGS
web     exec   stable     2025-01-31T11:30:00Z   12           2025-01-31T11:29:00Z   <none>   0      2025-01-31T11:00:00Z   v1,v2
web     dns    learning   2025-01-31T11:30:00Z   2            <none>                 1m 35s   0      2025-01-31T11:00:00Z   v1,v2
"
    );
    // One name per profile, not per row.
    assert_eq!(out(Format::Name, |p| p.list(&statuses())), "profile/web\n");
}

#[test]
fn status_json_keeps_its_keys() {
    let json = out(Format::Json, |p| p.list(&statuses()));
    assert!(json.ends_with("]\n") && json.lines().count() == 1, "one compact document: {json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["image"], "web");
    assert_eq!(v[0]["types"][1]["type"], "dns");
    assert_eq!(v[0]["types"][1]["state"], "learning");
    assert_eq!(v[0]["types"][1]["time_left"], "1m 35s");
    assert_eq!(v[0]["types"][1]["last_new_behaviour"], serde_json::Value::Null);
    assert_eq!(v[0]["types"][0]["since"], "2025-01-31T11:30:00.75Z");
    assert!(json.contains(r#""state":"learning""#));
}

#[test]
fn signals_table_wide_and_name() {
    assert_eq!(
        out(Format::Table, |p| p.list(&summaries())),
        "\
ID      SEVERITY   STATUS         CONTAINER   IMAGE    ANOMALIES   LAST SEEN
sig-2   high       open           app2        web:v1   12          2025-01-31T12:06:30Z
sig-1   low        under_review   app         web:v1   1           2025-01-31T12:01:00Z
"
    );
    assert_eq!(
        out(Format::Wide, |p| p.list(&summaries())),
        "\
ID      SEVERITY   STATUS         CONTAINER   IMAGE    ANOMALIES   LAST SEEN              FIRST SEEN             ASSIGNEE   RULE                POD      NAMESPACE
sig-2   high       open           app2        web:v1   12          2025-01-31T12:06:30Z   2025-01-31T12:05:00Z   <none>     anomaly_detection   <none>   <none>
sig-1   low        under_review   app         web:v1   1           2025-01-31T12:01:00Z   2025-01-31T12:00:00Z   rita       anomaly_detection   shop-0   prod
"
    );
    assert_eq!(out(Format::Name, |p| p.list(&summaries())), "signal/sig-2\nsignal/sig-1\n");
}

#[test]
fn signals_yaml_is_a_sequence_with_rfc3339_times() {
    let yaml = out(Format::Yaml, |p| p.list(&summaries()));
    assert!(yaml.starts_with("- id: sig-2\n"), "{yaml}");
    assert!(yaml.contains("  status: under_review\n") && yaml.contains("  assignee: rita\n"), "{yaml}");
    assert!(yaml.contains("  last_seen: 2025-01-31T12:06:30.5Z\n"), "{yaml}");
    let back: serde_json::Value = serde_norway::from_str(&yaml).expect("yaml");
    assert_eq!(back[1]["container"]["pod"], "shop-0");
}

#[test]
fn empty_lists_say_so_on_stderr_in_tables_only() {
    let none: Vec<SignalSummary> = Vec::new();
    assert_eq!(printed(Format::Table, |p| p.list(&none)), (String::new(), "No signals found.\n".into()));
    assert_eq!(printed(Format::Wide, |p| p.list(&none)), (String::new(), "No signals found.\n".into()));
    let rules: Vec<NotificationRule> = Vec::new();
    assert_eq!(printed(Format::Table, |p| p.list(&rules)).1, "No notification rules found.\n");
    let sup: Vec<Suppression> = Vec::new();
    assert_eq!(printed(Format::Table, |p| p.list(&sup)).1, "No suppressions found.\n");
    let audit: Vec<AuditEvent> = Vec::new();
    assert_eq!(printed(Format::Table, |p| p.list(&audit)).1, "No audit events found.\n");
    let st: Vec<ProfileStatus> = Vec::new();
    assert_eq!(printed(Format::Table, |p| p.list(&st)).1, "No profiles found.\n");
    // Machine formats stay machine-readable.
    assert_eq!(out(Format::Json, |p| p.list(&none)), "[]\n");
    assert_eq!(out(Format::Yaml, |p| p.list(&none)), "[]\n");
    assert_eq!(out(Format::Name, |p| p.list(&none)), "");
}

#[test]
fn rules_and_suppressions_tables() {
    assert_eq!(
        out(Format::Table, |p| p.list(&rules())),
        "\
ID       NAME            ENABLED   QUERY           TARGETS
rule-1   high severity   true      severity:high   webhook,slack
"
    );
    assert_eq!(
        out(Format::Wide, |p| p.list(&rules())),
        "\
ID       NAME            ENABLED   QUERY           TARGETS         ON UPDATE   DESTINATIONS
rule-1   high severity   true      severity:high   webhook,slack   false       webhook:https://soc.example/hook slack:https://hooks.slack.example/x
"
    );
    let sups = vec![
        Suppression {
            id: "sup-1".into(),
            name: "certs".into(),
            image: "web".into(),
            event_type: Some(EventType::File),
            process: String::new(),
            detail: "/etc/ssl/*".into(),
        },
        Suppression {
            id: "sup-2".into(),
            name: "resolver".into(),
            image: String::new(),
            event_type: None,
            process: "/usr/sbin/unbound".into(),
            detail: String::new(),
        },
    ];
    assert_eq!(
        out(Format::Table, |p| p.list(&sups)),
        "\
ID      NAME       IMAGE   TYPE   PROCESS             DETAIL
sup-1   certs      web     file   *                   /etc/ssl/*
sup-2   resolver   *       *      /usr/sbin/unbound   *
"
    );
    assert_eq!(out(Format::Name, |p| p.list(&sups)), "suppression/sup-1\nsuppression/sup-2\n");
}

#[test]
fn a_rule_prints_as_the_file_rules_create_reads() {
    let mut rule = rules().remove(0);
    rule.targets[0] = NotificationTarget::Webhook {
        url: "https://soc.example/hook".into(),
        secret: Some("k".into()),
        headers: BTreeMap::from([("X-Team".to_owned(), "red".to_owned())]),
    };
    let yaml = out(Format::Yaml, |p| p.one(&rule));
    assert_eq!(
        yaml,
        "\
id: rule-1
name: high severity
enabled: true
query: severity:high
targets:
- kind: webhook
  url: https://soc.example/hook
  secret: k
  headers:
    X-Team: red
- kind: slack
  url: https://hooks.slack.example/x
notify_on_update: false
"
    );
    assert_eq!(crate::cli::rule_file::parse(&yaml, "rule.yaml").expect("reads back"), rule);
    let json = out(Format::Json, |p| p.one(&rule));
    assert_eq!(crate::cli::rule_file::parse(&json, "rule.json").expect("reads back"), rule);
}

#[test]
fn audit_table() {
    let events = vec![AuditEvent {
        sequence: 3,
        time: datetime!(2025-01-31 12:00:00.999 UTC),
        principal: "rita".into(),
        evt_name: "Cloud Security Platform".into(),
        asset_type: "security_profile".into(),
        asset_id: "web".into(),
        action: "add_to_profile".into(),
        outcome: "success".into(),
        before: None,
        after: Some(serde_json::json!({"added": 1})),
        prev_hash: "aa".into(),
        hash: "bb".into(),
    }];
    assert_eq!(
        out(Format::Table, |p| p.list(&events)),
        "\
SEQ   TIME                   PRINCIPAL   ASSET TYPE         ASSET ID   ACTION           OUTCOME
3     2025-01-31T12:00:00Z   rita        security_profile   web        add_to_profile   success
"
    );
    assert_eq!(
        out(Format::Wide, |p| p.list(&events)),
        "\
SEQ   TIME                   PRINCIPAL   ASSET TYPE         ASSET ID   ACTION           OUTCOME   EVT NAME                  AFTER
3     2025-01-31T12:00:00Z   rita        security_profile   web        add_to_profile   success   Cloud Security Platform   {\"added\":1}
"
    );
    let v: serde_json::Value = serde_json::from_str(&out(Format::Json, |p| p.list(&events))).expect("json");
    assert_eq!(v[0]["evt.name"], "Cloud Security Platform");
    assert_eq!(v[0]["after"]["added"], 1);
    assert_eq!(v[0]["time"], "2025-01-31T12:00:00.999Z");
}

#[test]
fn watch_lines_from_typed_values() {
    let a = anomaly();
    assert_eq!(
        out(Format::Table, |p| p.event(&a)),
        "#7 2025-01-31T12:00:00Z file an-7 container=app image=web:v1 file read /etc/passwd lineage=/bin/sh -> /bin/cat\n"
    );
    assert_eq!(out(Format::Name, |p| p.event(&a)), "anomaly/an-7\n");
    let json = out(Format::Json, |p| p.event(&a));
    assert_eq!(json.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["sequence"], 7);
    assert_eq!(v["type"], "file");
    assert_eq!(v["container"]["id"], "app");
    assert_eq!(v["lineage"], serde_json::json!(["/bin/sh", "/bin/cat"]));
    assert_eq!(v["behaviour"], serde_json::json!({"kind": "file", "path": "/etc/passwd", "access": ["read"]}));
    assert_eq!(v["event"]["process"]["args"], serde_json::json!(["cat", "/etc/passwd"]));
    let yaml = out(Format::Yaml, |p| {
        p.event(&a)?;
        p.event(&a)
    });
    assert!(yaml.starts_with("---\nsequence: 7\nid: an-7\n"), "{yaml}");
    assert_eq!(yaml.matches("---\n").count(), 2, "one document per item");

    let change = SignalChange { sequence: 12, created: true, signal: summaries().remove(0) };
    assert_eq!(
        out(Format::Table, |p| p.event(&change)),
        "#12 created signal/sig-2 severity=high status=open container=app2 image=web:v1 anomalies=12 \
         last_seen=2025-01-31T12:06:30Z\n"
    );
    assert_eq!(out(Format::Name, |p| p.event(&change)), "signal/sig-2\n");
}

#[test]
fn behaviours_in_one_line() {
    assert_eq!(behaviour_text(&Behaviour::Exec), "exec");
    assert_eq!(
        behaviour_text(&Behaviour::File { path: "/x".into(), access: vec![Access::Read, Access::Unknown(9)] }),
        "file read,unknown(9) /x"
    );
    assert_eq!(behaviour_text(&Behaviour::Dns { name: "a.example".into(), qtype: "TXT".into() }), "dns a.example TXT");
    assert_eq!(
        behaviour_text(&Behaviour::Connect { protocol: Protocol::Udp, address: "10.0.0.0/8".into(), port: 0 }),
        "connect 10.0.0.0/8:0/udp"
    );
}

#[test]
fn a_signal_shows_its_overview() {
    let signal = Signal {
        summary: summaries().remove(1),
        what_happened: "Container app (web:v1) ran a new process.".into(),
        next_steps: vec!["telltalectl signals benign sig-1".into()],
        events: vec!["12:00:00 new process /tmp/x".into()],
        entries: vec![],
    };
    let text = "\
signal sig-1  rule_id:anomaly_detection  severity:low  status:under_review  container:app  image:web:v1

What happened
  Container app (web:v1) ran a new process.

Suggested next steps
  - telltalectl signals benign sig-1

Anomaly events
  12:00:00 new process /tmp/x
";
    assert_eq!(out(Format::Table, |p| p.one(&signal)), text);
    assert_eq!(out(Format::Wide, |p| p.one(&signal)), text);
    assert_eq!(out(Format::Name, |p| p.one(&signal)), "signal/sig-1\n");
    let v: serde_json::Value = serde_json::from_str(&out(Format::Json, |p| p.one(&signal))).expect("json");
    assert_eq!((v["id"].as_str(), v["what_happened"].as_str()), (Some("sig-1"), Some(signal.what_happened.as_str())));
}

#[test]
fn actions_print_a_message_or_the_resource() {
    let rule = rules().remove(0);
    assert_eq!(
        out(Format::Table, |p| p.done(&rule, "created rule rule-1 (high severity)")),
        "created rule rule-1 (high severity)\n"
    );
    assert_eq!(out(Format::Name, |p| p.done(&rule, "ignored")), "rule/rule-1\n");
    assert_eq!(
        serde_json::from_str::<NotificationRule>(&out(Format::Json, |p| p.done(&rule, "ignored"))).expect("json"),
        rule
    );
    assert_eq!(out(Format::Table, |p| p.deleted("rule", "rule-1")), "deleted rule rule-1\n");
    assert_eq!(out(Format::Name, |p| p.deleted("suppression", "s-1")), "suppression/s-1\n");
    assert_eq!(out(Format::Json, |p| p.deleted("rule", "rule-1")), "{\"deleted\":\"rule/rule-1\"}\n");
    let added = Added { image: "web", addition: ProfileAddition { added: 1, already_known: 0 } };
    assert_eq!(out(Format::Json, |p| p.done(&added, "")), "{\"image\":\"web\",\"added\":1,\"already_known\":0}\n");
    assert_eq!(out(Format::Name, |p| p.done(&added, "")), "profile/web\n");
}

#[test]
fn audit_verification() {
    let ok = AuditVerification { ok: true, records: 12, error: String::new() };
    assert_eq!(out(Format::Table, |p| p.one(&ok)), "audit trail intact: 12 records, hash chain verified\n");
    let bad = AuditVerification { ok: false, records: 12, error: "record 1 was altered".into() };
    assert_eq!(out(Format::Table, |p| p.one(&bad)), "audit trail TAMPERED: record 1 was altered\n");
    assert_eq!(
        out(Format::Json, |p| p.one(&bad)),
        "{\"ok\":false,\"records\":12,\"error\":\"record 1 was altered\"}\n"
    );
}

#[test]
fn a_profile_tree() {
    let profile = Profile {
        image: "web".into(),
        tags: vec!["v1".into(), "v2".into()],
        nodes: vec![ProcessNode {
            lineage: vec!["/bin/init".into(), "/usr/bin/allowed".into()],
            first_seen: datetime!(2025-01-31 11:00:00 UTC),
            last_seen: datetime!(2025-01-31 11:05:00 UTC),
            tags: vec!["v1".into()],
            files: vec![FileEntry { pattern: "/etc/*".into(), access: vec![Access::Read, Access::Write] }],
            dns: vec![telltale_client::DnsEntry { name: "db.example".into(), qtype: "A".into() }],
            endpoints: vec![telltale_client::EndpointEntry {
                protocol: Protocol::Tcp,
                address: "10.0.0.0/8".into(),
                port: 0,
            }],
            mechanisms: vec!["io_uring".into()],
        }],
        status: None,
    };
    assert_eq!(
        out(Format::Table, |p| p.one(&profile)),
        "\
profile web (versions: v1, v2)
/bin/init -> /usr/bin/allowed
    file    read,write       /etc/*
    dns     A                db.example
    connect tcp              10.0.0.0/8:0
    uses    io_uring
"
    );
    assert!(out(Format::Wide, |p| p.one(&profile)).contains(
        "/bin/init -> /usr/bin/allowed  (first seen 2025-01-31T11:00:00Z, last seen 2025-01-31T11:05:00Z)\n"
    ));
    assert_eq!(out(Format::Name, |p| p.one(&profile)), "profile/web\n");
}

#[test]
fn an_exported_profile_as_a_document() {
    let doc = telltale_core::profile::document::ProfileDocument::new("web", vec!["v1".into()]);
    let yaml = "apiVersion: telltale.dev/v1\nkind: SecurityProfile\nmetadata:\n  name: web\nspec:\n  tags:\n  - v1\n  processes: []\n";
    assert_eq!(out(Format::Yaml, |p| p.profile_document("web", &doc)), yaml);
    assert_eq!(out(Format::Table, |p| p.profile_document("web", &doc)), yaml, "a document reads best as YAML");
    let json = out(Format::Json, |p| p.profile_document("web", &doc));
    assert!(json.starts_with("{\n  \"apiVersion\": \"telltale.dev/v1\",\n"), "{json}");
    assert_eq!(out(Format::Name, |p| p.profile_document("web", &doc)), "profile/web\n");
}

#[test]
fn import_and_diff_results() {
    let dry = Imported {
        image: "web",
        file: "web.yaml",
        dry_run: true,
        added: 1,
        already_known: None,
        behaviours: vec!["/bin/a: exec".into()],
    };
    assert_eq!(out(Format::Table, |p| p.imported(&dry, "would add 1")), "+ /bin/a: exec\nwould add 1\n");
    assert_eq!(
        out(Format::Json, |p| p.imported(&dry, "")),
        "{\"image\":\"web\",\"file\":\"web.yaml\",\"dry_run\":true,\"added\":1,\"behaviours\":[\"/bin/a: exec\"]}\n"
    );
    let c = Compared {
        image: "web",
        file: "web.yaml",
        exists: true,
        identical: false,
        added: vec!["/bin/a: exec".into()],
        missing: vec!["/bin/b: dns x.example A".into()],
    };
    assert_eq!(out(Format::Table, |p| p.compared(&c)), "+ /bin/a: exec\n- /bin/b: dns x.example A\n");
    let same = Compared { identical: true, added: vec![], missing: vec![], ..c };
    assert_eq!(out(Format::Table, |p| p.compared(&same)), "", "nothing, like diff");
    assert!(out(Format::Yaml, |p| p.compared(&same)).contains("identical: true\n"));
}

#[test]
fn tables_pad_by_characters_and_trim_trailing_space() {
    let t =
        table(&["A", "B", "C"], &[vec!["é".into(), "".into(), "x".into()], vec!["long".into(), "b".into(), "".into()]]);
    assert_eq!(t, "A      B   C\né          x\nlong   b\n");
}
