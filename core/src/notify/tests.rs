use super::*;
use crate::signal::Signals;

fn webhook() -> Target {
    Target::Webhook {
        url: "http://127.0.0.1:9/hook".into(),
        secret: Some("s3cret".into()),
        headers: [("X-Team".to_owned(), "red".to_owned())].into_iter().collect(),
    }
}

fn rule(query: &str, targets: Vec<Target>) -> Rule {
    Rule { id: "r1".into(), name: "high".into(), enabled: true, query: query.into(), targets, notify_on_update: false }
}

fn signal() -> Signal {
    use crate::detect::{Anomaly, Container};
    use crate::event::{build, EventKind};
    use crate::profile::{Behaviour, Observation};
    let mut e = build::read(1, build::process("/tmp/evil.sh", &["/bin/app"]), "");
    e.kind = EventKind::Exec;
    let a = Anomaly {
        id: "a1".into(),
        time: e.time,
        time_ms: 1,
        container: Container::new(
            "c1",
            "web",
            &crate::workload::image::ImageRef::parse("cws-webapp:v2").unwrap(),
            1,
            0,
        ),
        event_type: crate::profile::EventType::Exec,
        profile_version: "v2".into(),
        observation: Observation {
            lineage: vec!["/bin/app".into(), "/tmp/evil.sh".into()],
            behaviour: Behaviour::Exec,
        },
        event: e,
    };
    Signals::default().on_anomaly(1, &a).0
}

#[test]
fn validation_names_the_field() {
    assert!(rule("severity:high", vec![webhook()]).validate().is_ok());
    let e = rule("severity:(", vec![webhook()]).validate().unwrap_err();
    assert_eq!(e.field, "query");
    assert!(e.problem.contains("column"), "{e}");
    assert_eq!(rule("a:b", vec![]).validate().unwrap_err().field, "targets");
    let e = rule("a:b", vec![Target::Slack { url: "ftp://x".into() }]).validate().unwrap_err();
    assert_eq!(e.field, "targets[0].slack.url");
    let email = |server: &str, to: Vec<String>| Target::Email {
        server: server.into(),
        starttls: false,
        username: None,
        password: None,
        from: "telltale@example.com".into(),
        to,
    };
    assert_eq!(
        rule("a:b", vec![email("smtp", vec!["a@b".into()])]).validate().unwrap_err().field,
        "targets[0].email.server"
    );
    assert_eq!(rule("a:b", vec![email("smtp:25", vec![])]).validate().unwrap_err().field, "targets[0].email.to");
}

#[test]
fn matching_on_creation_and_updates() {
    let s = signal();
    assert!(rule("rule_id:anomaly_detection severity:high image:cws-*", vec![webhook()]).wants(&s, true));
    assert!(!rule("severity:low", vec![webhook()]).wants(&s, true));
    let mut r = rule("severity:high", vec![webhook()]);
    assert!(!r.wants(&s, false), "updates only when asked");
    r.notify_on_update = true;
    assert!(r.wants(&s, false));
    r.enabled = false;
    assert!(!r.wants(&s, true));
}

#[test]
fn payloads_carry_the_three_overview_parts() {
    let s = signal();
    let Message::Http { body } = render(&rule("x:y", vec![]), &Target::Slack { url: String::new() }, &s, true) else {
        panic!("slack is http")
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = v["blocks"].to_string();
    assert!(text.contains("What happened") && text.contains("Suggested next steps") && text.contains("Anomaly events"));
    assert!(v["text"].as_str().unwrap().contains("cws-webapp:v2"));
    let Message::Http { body } = render(&rule("x:y", vec![]), &webhook(), &s, false) else { panic!("http") };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "signal.updated");
    assert_eq!(v["signal"]["severity"], "high");
    let email = Target::Email {
        server: "h:25".into(),
        starttls: false,
        username: None,
        password: None,
        from: "a@b".into(),
        to: vec!["c@d".into()],
    };
    let Message::Email { subject, body } = render(&rule("x:y", vec![]), &email, &s, true) else { panic!("email") };
    assert!(subject.contains("new high signal"));
    assert!(body.contains("What happened") && body.contains("/tmp/evil.sh"));
}

#[test]
fn hmac_signature_and_backoff() {
    // RFC 4231 test case 2.
    assert_eq!(
        signature("Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(backoff_ms(0), 1000);
    assert_eq!(backoff_ms(3), 8000);
    assert_eq!(backoff_ms(40), 300_000);
}

#[test]
fn secrets_are_redacted_for_listing() {
    let r = rule("a:b", vec![webhook()]).redacted();
    assert!(matches!(&r.targets[0], Target::Webhook { secret: Some(s), .. } if s == "********"));
}
