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
    signal_running("/tmp/evil.sh")
}

fn signal_running(program: &str) -> Signal {
    use crate::detect::{Anomaly, Container};
    use crate::event::{build, EventKind};
    use crate::profile::{Behaviour, Observation};
    let mut e = build::read(1, build::process(program, &["/bin/app"]), "");
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
        observation: Observation { lineage: vec!["/bin/app".into(), program.into()], behaviour: Behaviour::Exec },
        event: e,
    };
    Signals::default().on_anomaly(1, &a).0
}

#[test]
fn header_values_with_line_breaks_are_refused_at_creation() {
    let with = |v: &str| Target::Webhook {
        url: "http://127.0.0.1:9/hook".into(),
        secret: None,
        headers: [("X-Team".to_owned(), v.to_owned())].into_iter().collect(),
    };
    assert!(rule("a:b", vec![with("red team\tok")]).validate().is_ok());
    for bad in ["red\r\nX-Injected: 1", "red\n", "caf\u{e9}", "\0"] {
        let e = rule("a:b", vec![with(bad)]).validate().unwrap_err();
        assert_eq!(e.field, "targets[0].webhook.headers.X-Team", "{bad:?}");
        assert!(!e.problem.contains('\n') && !e.problem.contains('\r'), "{e}");
    }
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

#[test]
fn names_chosen_by_the_workload_cannot_forge_lines_or_drive_a_terminal() {
    let evil = "/tmp/x\nSubject: you won\r\n\x1b]0;owned\x07\u{202e}gpj.sh";
    let s = signal_running(evil);
    let email = Target::Email {
        server: "127.0.0.1:25".into(),
        starttls: false,
        username: None,
        password: None,
        from: "telltale@example.com".into(),
        to: vec!["soc@example.com".into()],
    };
    let r = Rule { name: "soc\nBcc: attacker@example.com".into(), ..rule("a:b", vec![email.clone()]) };
    assert_eq!(r.validate().unwrap_err().field, "name", "a rule name with a line break is refused");
    let Message::Email { subject, body } = render(&r, &email, &s, true) else { panic!("an e-mail") };
    assert!(!subject.contains('\n') && !subject.contains('\r'), "{subject:?}");
    for line in body.lines() {
        assert!(!line.starts_with("Subject:") && !line.starts_with("Bcc:"), "forged line {line:?} in {body}");
        assert!(!line.chars().any(|c| c.is_control() || c == '\u{202e}'), "raw control character in {line:?}");
    }
    assert!(body.contains("/tmp/x\\nSubject: you won\\r\\n\\x1b]0;owned\\x07\\u{202e}gpj.sh"), "{body}");
    for target in [Target::Slack { url: "https://hooks.example.com/x".into() }, webhook()] {
        let Message::Http { body } = render(&r, &target, &s, true) else { panic!("HTTP") };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut texts = Vec::new();
        collect_strings(&v, &mut texts);
        assert!(!texts.is_empty());
        for t in &texts {
            // Newlines only where the message itself puts them.
            assert!(!t.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'), "{t:?}");
            assert!(t.lines().all(|l| !l.starts_with("Subject:") && !l.starts_with("Bcc:")), "{t:?}");
        }
    }
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                // Structured event data keeps the exact bytes; only prose is checked.
                if k != "container" && k != "entries" && k != "rule" {
                    collect_strings(x, out);
                }
            }
        }
        _ => {}
    }
}
