//! The gRPC API, roles and audit trail through the SDK against the real
//! server and the real daemon loop, with typed events replayed instead of
//! the kernel: runs without root or BTF.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::collections::BTreeMap;
use std::time::Duration;

use telltale_client::{behaviour, Benign, Client, NotificationRule, NotificationTarget, SignalUpdate, WatchFilter};
use telltale_integration::replay::{exec, read, Running};
use telltale_sidecar::api::token_sha256;
use tokio_stream::StreamExt;

async fn client(addr: &str, token: &str) -> Client {
    Client::builder(addr).token(token).connect().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_streams_triage_and_audit_without_root() {
    let mut tokens = String::from("[api]\nlisten = \"127.0.0.1:0\"\n");
    for (who, role, token) in [("vera", "viewer", "tv"), ("rita", "responder", "tr"), ("adam", "admin", "ta")] {
        tokens.push_str(&format!(
            "[[api.tokens]]\nprincipal = \"{who}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_sha256(token)
        ));
    }
    let r = Running::start("replay-api", &tokens).await;
    let addr = r.api();
    let (vera, rita, adam) = (client(&addr, "tv").await, client(&addr, "tr").await, client(&addr, "ta").await);

    // Learn, then move the daemon's clock past the learning period.
    r.replay.send(vec![exec(), read("/etc/app.conf")]);
    let learned = async {
        while vera.learning_status(Some("web")).await.map_or(true, |st| st[0].behaviours < 2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), learned).await.expect("the replayed events are learned");
    r.at_ms(20_000);
    let stable = async {
        loop {
            let st = vera.learning_status(Some("web")).await.unwrap();
            if st[0].types.iter().all(|t| t.state == telltale_client::LearningState::Stable) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), stable).await.expect("stable after the clock passed 20 s");

    // Nobody without a valid token gets in.
    let anon = Client::builder(&addr).connect().await.unwrap();
    assert_eq!(anon.learning_status(None).await.unwrap_err().code(), Some(tonic::Code::Unauthenticated));
    let wrong = client(&addr, "nope").await;
    assert_eq!(wrong.signals("").await.unwrap_err().code(), Some(tonic::Code::Unauthenticated));

    // A viewer streams what the replayed events raise.
    let mut stream = vera.stream_anomalies(&WatchFilter::default(), 0).await.unwrap();
    r.at_ms(21_000);
    r.replay.send(vec![read("/etc/shadow"), read("/etc/app.conf")]);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    let telltale_client::AnomalyStreamItem::Anomaly(a) = first else { panic!("an anomaly, not {first:?}") };
    assert_eq!(a.sequence, 1);
    assert_eq!(a.anomaly.container.id, "c-web");
    let signals = vera.signals("").await.unwrap();
    assert_eq!(signals.len(), 1);
    let id = signals[0].id.clone();

    // Each role does what it may, and no more.
    let denied = vera.update_signal(SignalUpdate::new(&id).benign(Benign::All)).await.unwrap_err();
    assert_eq!(denied.code(), Some(tonic::Code::PermissionDenied));
    let rule = NotificationRule {
        id: String::new(),
        name: "soc".into(),
        enabled: true,
        query: "rule_id:anomaly_detection".into(),
        targets: vec![NotificationTarget::Webhook {
            url: "http://127.0.0.1:9/hook".into(),
            secret: None,
            headers: BTreeMap::new(),
        }],
        notify_on_update: false,
    };
    assert_eq!(rita.create_rule(rule.clone()).await.unwrap_err().code(), Some(tonic::Code::PermissionDenied));
    let saved = adam.create_rule(rule).await.unwrap();
    assert!(!saved.id.is_empty());
    let updated = rita.update_signal(SignalUpdate::new(&id).benign(Benign::All)).await.unwrap();
    assert_eq!(updated.behaviours_added, 1);
    assert_eq!(updated.signal.summary.status, telltale_client::SignalStatus::Archived);
    let added = rita.add_to_profile("web", vec![behaviour::exec(&["/usr/bin/backup"])]).await.unwrap();
    assert_eq!(added.added, 1);

    // The marked behaviour is known now: the same read raises nothing.
    r.replay.send(vec![read("/etc/shadow"), read("/etc/hosts")]);
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    let telltale_client::AnomalyStreamItem::Anomaly(b) = next else { panic!("an anomaly, not {next:?}") };
    assert!(format!("{:?}", b.anomaly).contains("/etc/hosts"), "{b:?}");

    // Everything above is in the audit trail; a viewer sees only her own.
    let trail = adam.audit("", None, None, 0).await.unwrap();
    let got: Vec<(&str, &str, &str, &str)> = trail
        .iter()
        .map(|e| (e.principal.as_str(), e.asset_type.as_str(), e.action.as_str(), e.outcome.as_str()))
        .collect();
    for want in [
        ("anonymous", "api", "authenticate", "failure"),
        ("vera", "api", "authorize", "failure"),
        ("rita", "api", "authorize", "failure"),
        ("adam", "notification_rule", "create", "success"),
        ("rita", "security_signal", "mark_benign", "success"),
        ("rita", "security_profile", "add_to_profile", "success"),
    ] {
        assert!(got.contains(&want), "{want:?} missing from {got:#?}");
    }
    let own = vera.audit("", None, None, 0).await.unwrap();
    assert!(!own.is_empty() && own.iter().all(|e| e.principal == "vera"), "{own:#?}");
    assert!(adam.verify_audit().await.unwrap().ok);

    r.stop().await;
}
