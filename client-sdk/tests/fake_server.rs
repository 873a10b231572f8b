//! The SDK and `telltalectl` against a scripted in-process gRPC server on
//! 127.0.0.1:0 (no daemon, no kernel): typed values across the real wire,
//! resuming after lag notices and ended streams, and the CLI's output,
//! exit codes and requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is the point

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telltale_client::{
    Access, Behaviour, Benign, Client, ClientError, EventType, LearningState, NotificationTarget, Severity,
    SignalStatus, SignalUpdate, WatchFilter,
};
use telltale_proto::v1 as pb;
use telltale_proto::v1::telltale_server::{Telltale, TelltaleServer};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

const TOKEN: &str = "good";
/// 2025-01-31T12:00:00Z in ms.
const T0: i64 = 1_738_324_800_000;

/// What the fake was asked, for the tests to check.
#[derive(Debug, Default)]
struct Seen {
    anomaly_calls: Vec<pb::StreamAnomaliesRequest>,
    signal_calls: Vec<u64>,
    audit: Vec<pb::QueryAuditTrailRequest>,
    updates: Vec<pb::UpdateSignalRequest>,
    rules: Vec<pb::NotificationRule>,
    suppressions: Vec<pb::Suppression>,
    added: Vec<pb::AddToProfileRequest>,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<Mutex<Seen>>);

fn authorize<T>(r: &Request<T>) -> Result<(), Status> {
    match r.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == format!("Bearer {TOKEN}") => Ok(()),
        _ => Err(Status::unauthenticated("missing or unknown bearer token")),
    }
}

fn container(id: &str) -> pb::Container {
    pb::Container {
        id: id.into(),
        name: id.into(),
        image: "web".into(),
        tag: "v1".into(),
        cgroup_id: 7,
        pod: String::new(),
        namespace: String::new(),
        repository: "registry.example/web".into(),
    }
}

fn anomaly(seq: u64) -> pb::AnomalyStreamItem {
    let ns = (T0 + seq as i64 * 1000) * 1_000_000;
    pb::AnomalyStreamItem {
        item: Some(pb::anomaly_stream_item::Item::Anomaly(pb::SequencedAnomaly {
            sequence: seq,
            anomaly: Some(pb::Anomaly {
                id: format!("an-{seq}"),
                time_unix_nano: ns,
                container: Some(container("app")),
                r#type: pb::EventType::Dns as i32,
                profile_version: "v1".into(),
                lineage: vec!["/bin/sh".into(), "/usr/bin/dig".into()],
                behaviour: Some(pb::Behaviour {
                    kind: Some(pb::behaviour::Kind::Dns(pb::DnsBehaviour {
                        name: format!("n{seq}.example"),
                        r#type: "A".into(),
                    })),
                }),
                event: Some(pb::Event {
                    time_unix_nano: ns,
                    cgroup_id: 7,
                    process: Some(pb::Process { pid: 9, path: "/usr/bin/dig".into(), ..Default::default() }),
                    kind: Some(pb::event::Kind::Dns(pb::DnsQuery {
                        questions: vec![pb::DnsQuestion { name: format!("n{seq}.example"), r#type: "A".into() }],
                        protocol: pb::Protocol::Udp as i32,
                        server: "127.0.0.1:53".into(),
                    })),
                }),
            }),
        })),
    }
}

fn summary(id: &str, status: pb::SignalStatus) -> pb::SignalSummary {
    pb::SignalSummary {
        id: id.into(),
        rule_id: "anomaly_detection".into(),
        severity: "high".into(),
        status: status as i32,
        assignee: String::new(),
        container: Some(container("app")),
        first_seen_unix_ms: T0,
        last_seen_unix_ms: T0 + 60_000,
        anomalies: 2,
        version: 1,
    }
}

fn change(seq: u64, created: bool) -> pb::SignalStreamItem {
    pb::SignalStreamItem {
        item: Some(pb::signal_stream_item::Item::Change(pb::SignalChange {
            sequence: seq,
            created,
            signal: Some(summary(&format!("sig-{seq}"), pb::SignalStatus::Open)),
        })),
    }
}

fn signal(id: &str, status: pb::SignalStatus) -> pb::Signal {
    pb::Signal {
        summary: Some(summary(id, status)),
        what_happened: "Container app (web:v1) resolved new names.".into(),
        next_steps: vec![format!("telltalectl signals benign {id}")],
        events: vec!["12:00:01 dns n1.example A".into()],
        entries: vec![],
    }
}

type Items<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// These items, then (if `hold`) nothing more, the stream staying open.
fn items<T: Send + 'static>(v: Vec<T>, hold: bool) -> Items<T> {
    let s = tokio_stream::iter(v.into_iter().map(Ok));
    if hold {
        Box::pin(s.chain(tokio_stream::pending()))
    } else {
        Box::pin(s)
    }
}

fn redacted(mut r: pb::NotificationRule) -> pb::NotificationRule {
    for t in &mut r.targets {
        if let Some(pb::notification_target::Kind::Webhook(w)) = &mut t.kind {
            if !w.secret.is_empty() {
                w.secret = "********".into();
            }
        }
    }
    r
}

#[tonic::async_trait]
impl Telltale for Fake {
    type StreamAnomaliesStream = Items<pb::AnomalyStreamItem>;

    /// From 0: 1, 2, then a lag notice (resume after 2). From 2: 2 again
    /// (a repeat), an item of an unknown kind, 3 without its container,
    /// 4, then silence.
    async fn stream_anomalies(
        &self,
        request: Request<pb::StreamAnomaliesRequest>,
    ) -> Result<Response<Self::StreamAnomaliesStream>, Status> {
        authorize(&request)?;
        let r = request.into_inner();
        let after = r.after_sequence;
        self.0.lock().unwrap().anomaly_calls.push(r);
        let lagged = pb::AnomalyStreamItem {
            item: Some(pb::anomaly_stream_item::Item::Lagged(pb::Lagged {
                skipped: 5,
                resume_after: 2,
                message: "reconnect with after_sequence 2".into(),
            })),
        };
        let mut broken = anomaly(3);
        if let Some(pb::anomaly_stream_item::Item::Anomaly(a)) = &mut broken.item {
            a.anomaly.as_mut().unwrap().container = None;
        }
        let v = if after == 0 {
            vec![anomaly(1), anomaly(2), lagged]
        } else {
            vec![anomaly(2), pb::AnomalyStreamItem { item: None }, broken, anomaly(4)]
        };
        Ok(Response::new(items(v, after != 0)))
    }

    type StreamSignalsStream = Items<pb::SignalStreamItem>;

    /// From 0: 1 (created), 2 (updated), then the stream ends. From 2: 3, then silence.
    async fn stream_signals(
        &self,
        request: Request<pb::StreamSignalsRequest>,
    ) -> Result<Response<Self::StreamSignalsStream>, Status> {
        authorize(&request)?;
        let after = request.into_inner().after_sequence;
        self.0.lock().unwrap().signal_calls.push(after);
        let v = if after == 0 { vec![change(1, true), change(2, false)] } else { vec![change(3, true)] };
        Ok(Response::new(items(v, after != 0)))
    }

    async fn get_learning_status(
        &self,
        request: Request<pb::GetLearningStatusRequest>,
    ) -> Result<Response<pb::GetLearningStatusResponse>, Status> {
        authorize(&request)?;
        let t = |t: pb::EventType, s: pb::LearningState, left: i64, last: i64| pb::TypeStatus {
            r#type: t as i32,
            state: s as i32,
            learning_started_unix_ms: T0,
            since_unix_ms: T0 + 30_000,
            behaviours: 3,
            last_new_behaviour_unix_ms: last,
            time_left_seconds: left,
            lost_events: 0,
        };
        Ok(Response::new(pb::GetLearningStatusResponse {
            store: None,
            profiles: vec![pb::ProfileStatus {
                image: "web".into(),
                tags: vec!["v1".into()],
                behaviours: 6,
                types: vec![
                    t(pb::EventType::Exec, pb::LearningState::Stable, -1, T0 + 20_000),
                    t(pb::EventType::Dns, pb::LearningState::Learning, 42, 0),
                ],
            }],
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        authorize(&request)?;
        let image = request.into_inner().image;
        if image != "web" {
            return Err(Status::not_found(format!("no profile {image:?}")));
        }
        let node = |lineage: &[&str], files: Vec<pb::FileEntry>| pb::ProcessNode {
            lineage: lineage.iter().map(|s| (*s).to_owned()).collect(),
            first_seen_unix_ms: T0,
            last_seen_unix_ms: T0,
            tags: vec!["v1".into()],
            files,
            dns: vec![],
            endpoints: vec![],
            mechanisms: vec![],
        };
        let file = |pattern: &str| pb::FileEntry { pattern: pattern.into(), access: vec![pb::Access::Read as i32] };
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(pb::Profile {
                image,
                tags: vec!["v1".into()],
                nodes: vec![
                    node(&["/bin/sh"], vec![]),
                    node(&["/bin/sh", "/usr/bin/cat"], vec![file("/proc/{pid}/status")]),
                ],
                status: None,
            }),
        }))
    }

    async fn export_profile(
        &self,
        request: Request<pb::ExportProfileRequest>,
    ) -> Result<Response<pb::ExportProfileResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(pb::ExportProfileResponse { json: r#"{"image":"web","nodes":[]}"#.into() }))
    }

    async fn add_to_profile(
        &self,
        request: Request<pb::AddToProfileRequest>,
    ) -> Result<Response<pb::AddToProfileResponse>, Status> {
        authorize(&request)?;
        let r = request.into_inner();
        let n = u32::try_from(r.behaviours.len()).unwrap();
        self.0.lock().unwrap().added.push(r);
        Ok(Response::new(pb::AddToProfileResponse { added: n, already_known: 0 }))
    }

    async fn query_audit_trail(
        &self,
        request: Request<pb::QueryAuditTrailRequest>,
    ) -> Result<Response<pb::QueryAuditTrailResponse>, Status> {
        authorize(&request)?;
        self.0.lock().unwrap().audit.push(request.into_inner());
        Ok(Response::new(pb::QueryAuditTrailResponse {
            events: vec![pb::AuditEvent {
                sequence: 1,
                time_unix_ms: T0,
                principal: "anonymous".into(),
                evt_name: "Cloud Security Platform".into(),
                asset_type: "api".into(),
                asset_id: String::new(),
                action: "authenticate".into(),
                outcome: "failure".into(),
                before: String::new(),
                after: String::new(),
                prev_hash: "00".into(),
                hash: "11".into(),
            }],
        }))
    }

    async fn verify_audit_trail(
        &self,
        request: Request<pb::VerifyAuditTrailRequest>,
    ) -> Result<Response<pb::VerifyAuditTrailResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(pb::VerifyAuditTrailResponse { ok: false, records: 3, error: "record 1 was altered".into() }))
    }

    /// Two pages for an empty query; nothing for any other.
    async fn list_signals(
        &self,
        request: Request<pb::ListSignalsRequest>,
    ) -> Result<Response<pb::ListSignalsResponse>, Status> {
        authorize(&request)?;
        let r = request.into_inner();
        let resp = match (r.query.as_str(), r.page_token.as_str()) {
            ("", "") => pb::ListSignalsResponse {
                signals: vec![summary("sig-2", pb::SignalStatus::Open)],
                next_page_token: "page-2".into(),
            },
            ("", "page-2") => pb::ListSignalsResponse {
                signals: vec![summary("sig-1", pb::SignalStatus::Archived)],
                next_page_token: String::new(),
            },
            _ => pb::ListSignalsResponse::default(),
        };
        Ok(Response::new(resp))
    }

    async fn get_signal(&self, request: Request<pb::GetSignalRequest>) -> Result<Response<pb::Signal>, Status> {
        authorize(&request)?;
        match request.into_inner().id.as_str() {
            "sig-1" => Ok(Response::new(signal("sig-1", pb::SignalStatus::Open))),
            other => Err(Status::not_found(format!("no signal {other:?}"))),
        }
    }

    async fn update_signal(
        &self,
        request: Request<pb::UpdateSignalRequest>,
    ) -> Result<Response<pb::UpdateSignalResponse>, Status> {
        authorize(&request)?;
        let r = request.into_inner();
        self.0.lock().unwrap().updates.push(r.clone());
        let status = if r.mark_benign {
            pb::SignalStatus::Archived
        } else {
            pb::SignalStatus::try_from(r.status).unwrap_or(pb::SignalStatus::Open)
        };
        Ok(Response::new(pb::UpdateSignalResponse {
            signal: Some(signal(&r.id, status)),
            behaviours_added: if r.mark_benign { 2 } else { 0 },
        }))
    }

    async fn create_notification_rule(
        &self,
        request: Request<pb::NotificationRule>,
    ) -> Result<Response<pb::NotificationRule>, Status> {
        authorize(&request)?;
        let mut r = request.into_inner();
        let mut seen = self.0.lock().unwrap();
        r.id = format!("rule-{}", seen.rules.len() + 1);
        seen.rules.push(r.clone());
        Ok(Response::new(redacted(r)))
    }

    async fn update_notification_rule(
        &self,
        request: Request<pb::NotificationRule>,
    ) -> Result<Response<pb::NotificationRule>, Status> {
        authorize(&request)?;
        let r = request.into_inner();
        let mut seen = self.0.lock().unwrap();
        let Some(slot) = seen.rules.iter_mut().find(|x| x.id == r.id) else {
            return Err(Status::not_found(format!("no notification rule {:?}", r.id)));
        };
        *slot = r.clone();
        Ok(Response::new(redacted(r)))
    }

    async fn delete_notification_rule(
        &self,
        request: Request<pb::DeleteNotificationRuleRequest>,
    ) -> Result<Response<pb::DeleteNotificationRuleResponse>, Status> {
        authorize(&request)?;
        let id = request.into_inner().id;
        self.0.lock().unwrap().rules.retain(|r| r.id != id);
        Ok(Response::new(pb::DeleteNotificationRuleResponse {}))
    }

    async fn list_notification_rules(
        &self,
        request: Request<pb::ListNotificationRulesRequest>,
    ) -> Result<Response<pb::ListNotificationRulesResponse>, Status> {
        authorize(&request)?;
        let rules = self.0.lock().unwrap().rules.iter().cloned().map(redacted).collect();
        Ok(Response::new(pb::ListNotificationRulesResponse { rules }))
    }

    async fn create_suppression(&self, request: Request<pb::Suppression>) -> Result<Response<pb::Suppression>, Status> {
        authorize(&request)?;
        let mut s = request.into_inner();
        let mut seen = self.0.lock().unwrap();
        s.id = format!("sup-{}", seen.suppressions.len() + 1);
        seen.suppressions.push(s.clone());
        Ok(Response::new(s))
    }

    async fn delete_suppression(
        &self,
        request: Request<pb::DeleteSuppressionRequest>,
    ) -> Result<Response<pb::DeleteSuppressionResponse>, Status> {
        authorize(&request)?;
        let id = request.into_inner().id;
        let mut seen = self.0.lock().unwrap();
        let before = seen.suppressions.len();
        seen.suppressions.retain(|s| s.id != id);
        if seen.suppressions.len() == before {
            return Err(Status::not_found(format!("no suppression {id:?}")));
        }
        Ok(Response::new(pb::DeleteSuppressionResponse {}))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        authorize(&request)?;
        Ok(Response::new(pb::ListSuppressionsResponse { suppressions: self.0.lock().unwrap().suppressions.clone() }))
    }
}

/// Serve a fresh fake on 127.0.0.1:0: its address and what it sees.
async fn serve() -> (String, Fake) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let fake = Fake::default();
    let server = tonic::transport::Server::builder()
        .add_service(TelltaleServer::new(fake.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr, fake)
}

async fn client(addr: &str, token: &str) -> Client {
    Client::builder(addr).token(token).connect().await.expect("connect")
}

async fn next<T>(s: &mut (impl Stream<Item = Result<T, ClientError>> + Unpin)) -> Result<T, ClientError> {
    tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("in time").expect("stream open")
}

#[tokio::test]
async fn watch_resumes_after_a_lag_notice_without_repeats_and_passes_on_unreadable_items() {
    let (addr, fake) = serve().await;
    let c = client(&addr, TOKEN).await;
    let mut w = c.watch(WatchFilter { image: "web".into(), event_type: Some(EventType::Dns), ..Default::default() }, 0);
    let a1 = next(&mut w).await.expect("1");
    assert_eq!((a1.sequence, a1.anomaly.event_type), (1, EventType::Dns));
    assert_eq!(a1.anomaly.behaviour, Behaviour::Dns { name: "n1.example".into(), qtype: "A".into() });
    assert_eq!(a1.anomaly.container.id, "app");
    assert_eq!(a1.anomaly.time, time::macros::datetime!(2025-01-31 12:00:01 UTC));
    assert_eq!(next(&mut w).await.expect("2").sequence, 2);
    // The repeat of 2 and the unknown item are dropped; 3 cannot be read.
    let e = next(&mut w).await.expect_err("3 has no container");
    assert!(matches!(&e, ClientError::Response { field, .. } if field == "Anomaly.container"), "{e}");
    assert_eq!(next(&mut w).await.expect("4").sequence, 4);
    let calls = fake.0.lock().unwrap().anomaly_calls.clone();
    assert_eq!(calls.iter().map(|c| c.after_sequence).collect::<Vec<_>>(), vec![0, 2], "resumed after the notice");
    assert!(calls.iter().all(|c| c.image == "web" && c.container.is_empty() && c.r#type == pb::EventType::Dns as i32));
}

#[tokio::test]
async fn the_raw_stream_shows_the_lag_notice() {
    let (addr, _) = serve().await;
    let c = client(&addr, TOKEN).await;
    let mut s = c.stream_anomalies(&WatchFilter::default(), 0).await.expect("stream");
    let mut seen = Vec::new();
    while let Some(item) = s.next().await {
        seen.push(item.expect("ok"));
    }
    assert_eq!(seen.len(), 3);
    assert!(matches!(&seen[2], telltale_client::AnomalyStreamItem::Lagged(l) if l.resume_after == 2 && l.skipped == 5));
}

#[tokio::test]
async fn watch_signals_resumes_after_the_stream_ends() {
    let (addr, fake) = serve().await;
    let c = client(&addr, TOKEN).await;
    let mut w = c.watch_signals("severity:high", 0);
    let got: Vec<(u64, bool)> = [next(&mut w).await, next(&mut w).await, next(&mut w).await]
        .into_iter()
        .map(|c| c.map(|c| (c.sequence, c.created)).expect("change"))
        .collect();
    assert_eq!(got, vec![(1, true), (2, false), (3, true)]);
    assert_eq!(fake.0.lock().unwrap().signal_calls, vec![0, 2]);
}

#[tokio::test]
async fn a_bad_token_ends_the_watch_with_the_status() {
    let (addr, _) = serve().await;
    let c = client(&addr, "bad").await;
    let mut w = c.watch(WatchFilter::default(), 0);
    let e = next(&mut w).await.expect_err("refused");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
    assert!(tokio::time::timeout(Duration::from_secs(5), w.next()).await.expect("ends").is_none());
    let e = c.learning_status(None).await.expect_err("refused");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
}

#[tokio::test]
async fn typed_calls_over_the_wire() {
    let (addr, fake) = serve().await;
    let c = client(&addr, TOKEN).await;
    let st = c.learning_status(None).await.expect("status");
    assert_eq!(st[0].types[0].state, LearningState::Stable);
    assert_eq!(st[0].types[0].time_left, None);
    assert_eq!(st[0].types[1].time_left, Some(Duration::from_secs(42)));
    assert_eq!(st[0].types[1].last_new_behaviour, None);

    let all = c.signals("").await.expect("both pages");
    assert_eq!(all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec!["sig-2", "sig-1"]);
    assert_eq!((all[1].status, &all[1].severity), (SignalStatus::Archived, &Severity::High));

    let r =
        c.update_signal(SignalUpdate::new("sig-1").benign(Benign::Only(vec!["an-1".into()]))).await.expect("benign");
    assert_eq!((r.signal.summary.status, r.behaviours_added), (SignalStatus::Archived, 2));
    let sent = fake.0.lock().unwrap().updates[0].clone();
    assert_eq!((sent.mark_benign, sent.benign_anomaly_ids, sent.status), (true, vec!["an-1".to_owned()], 0));

    let added = c
        .add_to_profile("web", vec![telltale_client::behaviour::file(&["/bin/a"], "/etc/x", &[Access::Read])])
        .await
        .expect("add");
    assert_eq!(added.added, 1);
    let e = c.profile("nope").await.expect_err("not found");
    assert_eq!(e.code(), Some(tonic::Code::NotFound));

    let rule = telltale_client::NotificationRule {
        id: String::new(),
        name: "n".into(),
        enabled: true,
        query: "severity:high".into(),
        targets: vec![NotificationTarget::Webhook {
            url: "https://x.example/h".into(),
            secret: Some("k".into()),
            headers: Default::default(),
        }],
        notify_on_update: false,
    };
    let created = c.create_rule(rule).await.expect("create");
    assert_eq!(created.id, "rule-1");
    assert!(matches!(&created.targets[0], NotificationTarget::Webhook { secret: Some(s), .. } if s == "********"));
    let sent = fake.0.lock().unwrap().rules[0].clone();
    assert!(matches!(&sent.targets[0].kind, Some(pb::notification_target::Kind::Webhook(w)) if w.secret == "k"));

    let from = time::macros::datetime!(2025-01-31 11:00:00 UTC);
    let events = c.audit("@outcome:failure", Some(from), None, 10).await.expect("audit");
    assert_eq!((events[0].principal.as_str(), events[0].after.is_none()), ("anonymous", true));
    let q = fake.0.lock().unwrap().audit[0].clone();
    assert_eq!((q.query.as_str(), q.from_unix_ms, q.to_unix_ms, q.limit), ("@outcome:failure", T0 - 3_600_000, 0, 10));
}

/// Run `telltalectl ARGS` against `addr` with the good token: (exit code, stdout, stderr).
async fn ctl(addr: &str, args: &[&str]) -> (i32, String, String) {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_telltalectl"))
        .env_remove("TELLTALE_ADDR")
        .env("TELLTALE_TOKEN", TOKEN)
        .arg("--addr")
        .arg(addr)
        .args(args)
        .output()
        .await
        .expect("telltalectl runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).expect("utf-8"),
        String::from_utf8(o.stderr).expect("utf-8"),
    )
}

#[tokio::test]
async fn telltalectl_lists_in_every_format() {
    let (addr, _) = serve().await;
    assert_eq!(
        ctl(&addr, &["status"]).await,
        (
            0,
            "\
IMAGE   TYPE   STATE      SINCE                  BEHAVIOURS   LAST NEW               LEFT     LOST
web     exec   stable     2025-01-31T12:00:30Z   3            2025-01-31T12:00:20Z   <none>   0
web     dns    learning   2025-01-31T12:00:30Z   3            <none>                 42s      0
"
            .into(),
            String::new()
        )
    );
    assert_eq!(
        ctl(&addr, &["signals", "list", "-o", "name"]).await,
        (0, "signal/sig-2\nsignal/sig-1\n".into(), String::new())
    );
    assert_eq!(ctl(&addr, &["signals", "list", "status:open"]).await, (0, String::new(), "No signals found.\n".into()));
    assert_eq!(ctl(&addr, &["signals", "list", "status:open", "-o", "json"]).await, (0, "[]\n".into(), String::new()));
    // --since keeps what was seen since then (the fake's signals are from January 2025).
    assert_eq!(ctl(&addr, &["signals", "list", "--since", "1h"]).await.2, "No signals found.\n");
    assert_eq!(
        ctl(&addr, &["signals", "list", "--since", "2025-01-31T12:00:30Z", "-o", "name"]).await.1,
        "signal/sig-2\nsignal/sig-1\n"
    );
    let (code, out, _) = ctl(&addr, &["signals", "show", "sig-1"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("signal sig-1  rule_id:anomaly_detection  severity:high  status:open"), "{out}");
    assert!(out.contains("\nSuggested next steps\n  - telltalectl signals benign sig-1\n"), "{out}");
    let (code, _, err) = ctl(&addr, &["signals", "show", "nope"]).await;
    assert_eq!((code, err.as_str()), (1, "telltalectl: error: gRPC status NotFound: no signal \"nope\"\n"));
    let (code, out, _) = ctl(&addr, &["audit", "-o", "yaml"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("- sequence: 1\n  time: 2025-01-31T12:00:00Z\n  principal: anonymous\n"), "{out}");
}

/// The profile the fake serves, as a document.
const WEB: &str = "\
apiVersion: telltale.dev/v1
kind: SecurityProfile
metadata:
  name: web
spec:
  tags:
  - v1
  processes:
  - lineage:
    - /bin/sh
  - lineage:
    - /bin/sh
    - /usr/bin/cat
    files:
    - pattern: /proc/{pid}/status
      access:
      - read
";

#[tokio::test]
async fn telltalectl_profiles_as_code() {
    let (addr, fake) = serve().await;
    assert_eq!(ctl(&addr, &["profile", "export", "web", "-o", "yaml"]).await, (0, WEB.into(), String::new()));
    assert_eq!(ctl(&addr, &["profile", "export", "web"]).await.1, WEB, "YAML by default");
    let (code, json, _) = ctl(&addr, &["profile", "export", "web", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        (code, &v["kind"], &v["spec"]["processes"][1]["files"][0]["pattern"]),
        (0, &"SecurityProfile".into(), &"/proc/{pid}/status".into())
    );

    let dir = std::env::temp_dir().join(format!("telltalectl-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_owned()
    };
    let same = path("web.yaml", WEB);
    assert_eq!(ctl(&addr, &["profile", "diff", &same]).await, (0, String::new(), String::new()), "identical");
    let more = path("more.yaml", &WEB.replace("      - read\n", "      - read\n    dns:\n    - name: db.internal\n"));
    assert_eq!(
        ctl(&addr, &["profile", "diff", &more]).await,
        (1, "+ /bin/sh -> /usr/bin/cat: dns db.internal A\n".into(), String::new())
    );
    let less = path(
        "less.yaml",
        &WEB.replace("    files:\n    - pattern: /proc/{pid}/status\n      access:\n      - read\n", ""),
    );
    assert_eq!(
        ctl(&addr, &["profile", "diff", &less]).await.1,
        "- /bin/sh -> /usr/bin/cat: file read /proc/{pid}/status\n"
    );
    let (code, out, _) = ctl(&addr, &["profile", "diff", &more, "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((code, &v["identical"], &v["missing"]), (1, &false.into(), &serde_json::json!([])));

    // A dry run says what would be added and sends nothing.
    let (code, out, _) = ctl(&addr, &["profile", "import", "--dry-run", &more]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "+ /bin/sh -> /usr/bin/cat: dns db.internal A\nwould add 1 behaviour(s) to web; nothing changed (dry run)\n")
    );
    let other = path("other.yaml", &WEB.replace("name: web", "name: api"));
    let (code, out, err) = ctl(&addr, &["profile", "import", "--dry-run", &other]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("would add 3 behaviour(s) to api (a new profile); nothing changed (dry run)\n"), "{out}");
    assert!(fake.0.lock().unwrap().added.is_empty(), "a dry run sends nothing");

    // The import sends every behaviour, file patterns as patterns.
    let (code, out, _) = ctl(&addr, &["profile", "import", &more]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, format!("imported {more} into web: added 4 behaviour(s) (0 already known)\n").as_str())
    );
    let sent = fake.0.lock().unwrap().added[0].clone();
    assert_eq!((sent.image.as_str(), sent.behaviours.len()), ("web", 4));
    assert!(matches!(&sent.behaviours[2].behaviour.as_ref().and_then(|b| b.kind.clone()),
        Some(pb::behaviour::Kind::File(f)) if f.pattern && f.path == "/proc/{pid}/status"));

    // A misspelled key: refused naming the key and the file, nothing sent.
    let typo = path("typo.yaml", &WEB.replace("    files:", "    flies:"));
    for args in [
        &["profile", "import", typo.as_str()][..],
        &["profile", "import", "--dry-run", typo.as_str()],
        &["profile", "diff", typo.as_str()],
    ] {
        let (code, out, err) = ctl(&addr, args).await;
        assert_eq!((code, out.as_str()), (if args[1] == "diff" { 2 } else { 1 }, ""), "{args:?}");
        assert!(err.contains("typo.yaml") && err.contains("unknown field `flies`"), "{args:?}: {err}");
    }
    let v2 = path("v2.yaml", &WEB.replace("telltale.dev/v1", "telltale.dev/v2"));
    let (code, _, err) = ctl(&addr, &["profile", "import", &v2]).await;
    assert_eq!(code, 1);
    assert!(err.contains("apiVersion \"telltale.dev/v2\" is not supported"), "{err}");
    assert_eq!(fake.0.lock().unwrap().added.len(), 1, "nothing sent for the bad files");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[tokio::test]
async fn telltalectl_streams() {
    let (addr, fake) = serve().await;
    let (code, out, _) = ctl(&addr, &["watch", "--type", "dns", "--image", "web", "--count", "2"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "#1 2025-01-31T12:00:01Z dns an-1 container=app image=web:v1 dns n1.example A lineage=/bin/sh -> /usr/bin/dig\n\
         #2 2025-01-31T12:00:02Z dns an-2 container=app image=web:v1 dns n2.example A lineage=/bin/sh -> /usr/bin/dig\n"
    );
    assert_eq!(fake.0.lock().unwrap().anomaly_calls[0].r#type, pb::EventType::Dns as i32);
    let (code, out, _) = ctl(&addr, &["-o", "json", "signals", "watch", "severity:high", "--count", "3"]).await;
    assert_eq!(code, 0);
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["sequence"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let (code, out, _) = ctl(&addr, &["signals", "watch", "--count", "1", "-o", "name"]).await;
    assert_eq!((code, out.as_str()), (0, "signal/sig-1\n"));
}

#[tokio::test]
async fn telltalectl_rules_from_files() {
    let (addr, fake) = serve().await;
    let dir = std::env::temp_dir().join(format!("telltalectl-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("high.yaml");
    std::fs::write(
        &good,
        "name: high\nquery: severity:high\ntargets:\n- kind: webhook\n  url: https://soc.example/h\n  secret: k\n",
    )
    .expect("write");
    let bad = dir.join("typo.json");
    std::fs::write(&bad, r#"{"name": "x", "targets": [], "notify_on_updates": true}"#).expect("write");

    let (code, out, err) = ctl(&addr, &["rules", "create", good.to_str().unwrap()]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "created rule rule-1 (high)\n", ""));
    let (code, _, err) = ctl(&addr, &["rules", "create", bad.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("typo.json") && err.contains("unknown field `notify_on_updates`"), "{err}");
    assert_eq!(fake.0.lock().unwrap().rules.len(), 1, "nothing sent for the bad file");
    let sent = fake.0.lock().unwrap().rules[0].clone();
    assert!(sent.enabled && !sent.notify_on_update && sent.query == "severity:high");

    // What `rules get -o yaml` prints is a rule file, with the secret redacted.
    let (code, listed, _) = ctl(&addr, &["rules", "get", "rule-1", "-o", "yaml"]).await;
    assert_eq!(code, 0);
    let exported = dir.join("exported.yaml");
    std::fs::write(&exported, &listed).expect("write");
    let (code, _, err) = ctl(&addr, &["rules", "update", exported.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("targets[0].secret"), "{err}");
    std::fs::write(&exported, listed.replace("'********'", "k2").replace("\"********\"", "k2")).expect("write");
    let (code, out, err) = ctl(&addr, &["rules", "update", exported.to_str().unwrap()]).await;
    assert_eq!((code, out.as_str()), (0, "updated rule rule-1 (high)\n"), "{err}");
    let sent = fake.0.lock().unwrap().rules[0].clone();
    assert!(matches!(&sent.targets[0].kind, Some(pb::notification_target::Kind::Webhook(w)) if w.secret == "k2"));

    assert_eq!(ctl(&addr, &["rules", "list", "-o", "name"]).await.1, "rule/rule-1\n");
    assert_eq!(ctl(&addr, &["rules", "delete", "rule-1"]).await.1, "deleted rule rule-1\n");
    assert_eq!(ctl(&addr, &["rules", "list"]).await.2, "No notification rules found.\n");
    let (code, _, err) = ctl(&addr, &["rules", "get", "rule-1"]).await;
    assert_eq!((code, err.as_str()), (1, "telltalectl: error: no notification rule \"rule-1\"\n"));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[tokio::test]
async fn telltalectl_suppressions_triage_and_audit() {
    let (addr, fake) = serve().await;
    let (code, out, _) = ctl(
        &addr,
        &["suppressions", "create", "--name", "certs", "--image", "web", "--type", "file", "--detail", "/etc/ssl/*"],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "created suppression sup-1 (certs)\n"));
    let sent = fake.0.lock().unwrap().suppressions[0].clone();
    assert_eq!((sent.r#type, sent.process.as_str()), (pb::EventType::File as i32, ""));
    assert_eq!(
        ctl(&addr, &["suppressions", "list"]).await.1,
        "ID      NAME    IMAGE   TYPE   PROCESS   DETAIL\nsup-1   certs   web     file   *         /etc/ssl/*\n"
    );
    assert_eq!(ctl(&addr, &["suppressions", "delete", "sup-1", "-o", "name"]).await.1, "suppression/sup-1\n");
    assert_eq!(ctl(&addr, &["suppressions", "list"]).await.2, "No suppressions found.\n");

    let (code, out, _) = ctl(&addr, &["signals", "benign", "sig-1", "--anomaly", "an-1"]).await;
    assert_eq!((code, out.as_str()), (0, "signal sig-1 is archived; 2 behaviour(s) added to the profile\n"));
    let (code, out, _) = ctl(&addr, &["signals", "review", "sig-1", "--assignee", "rita"]).await;
    assert_eq!((code, out.as_str()), (0, "signal sig-1 is under_review\n"));
    let sent = fake.0.lock().unwrap().updates.clone();
    assert_eq!((sent[0].mark_benign, sent[0].benign_anomaly_ids.clone()), (true, vec!["an-1".to_owned()]));
    assert_eq!((sent[1].status, sent[1].assignee.as_deref()), (pb::SignalStatus::UnderReview as i32, Some("rita")));

    let before = time::OffsetDateTime::now_utc();
    let (code, _, _) =
        ctl(&addr, &["audit", "@outcome:failure", "--since", "1h", "--until", "2030-01-01T00:00:00Z"]).await;
    assert_eq!(code, 0);
    let q = fake.0.lock().unwrap().audit[0].clone();
    let hour_ago_ms = (before.unix_timestamp() - 3600) * 1000;
    assert!((q.from_unix_ms - hour_ago_ms).abs() < 60_000, "{} vs {hour_ago_ms}", q.from_unix_ms);
    assert_eq!((q.query.as_str(), q.to_unix_ms), ("@outcome:failure", 1_893_456_000_000));
    let (code, _, err) = ctl(&addr, &["audit", "--since", "1700000000000"]).await;
    assert_eq!(code, 2, "a usage error");
    assert!(err.contains("RFC 3339"), "{err}");

    let (code, out, err) = ctl(&addr, &["audit", "verify"]).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "audit trail TAMPERED: record 1 was altered\n",
            "telltalectl: error: audit trail does not verify: record 1 was altered\n"
        )
    );
}

#[tokio::test]
async fn telltalectl_without_a_good_token() {
    let (addr, _) = serve().await;
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_telltalectl"))
        .env_remove("TELLTALE_TOKEN")
        .args(["--addr", &addr, "--token", "bad", "status"])
        .output()
        .await
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "telltalectl: error: gRPC status Unauthenticated: missing or unknown bearer token\n"
    );
}

/// Serve a fresh fake on a Unix socket in a new directory: its path and the fake.
async fn serve_unix(tag: &str) -> (std::path::PathBuf, Fake) {
    let dir = std::env::temp_dir().join(format!("telltale-sdk-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("api.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let fake = Fake::default();
    let server = tonic::transport::Server::builder()
        .add_service(TelltaleServer::new(fake.clone()))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    tokio::spawn(server);
    (path, fake)
}

#[tokio::test]
async fn unix_socket_addresses_reach_the_server_for_the_sdk_and_telltalectl() {
    let (path, _) = serve_unix("calls").await;
    let addr = format!("unix://{}", path.display());
    let c = client(&addr, TOKEN).await;
    let status = c.learning_status(None).await.expect("status over the socket");
    assert!(!status.is_empty());
    // A stream too (it reconnects through the same connector).
    let mut w = c.watch(WatchFilter::default(), 0);
    assert_eq!(next(&mut w).await.expect("1").sequence, 1);

    // telltalectl: --socket PATH, and --addr unix://PATH.
    for args in [vec!["--socket", path.to_str().expect("utf-8")], vec!["--addr", addr.as_str()]] {
        let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_telltalectl"))
            .env_remove("TELLTALE_ADDR")
            .env("TELLTALE_TOKEN", TOKEN)
            .args(&args)
            .args(["status", "-o", "name"])
            .output()
            .await
            .expect("telltalectl runs");
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("web"), "{}", String::from_utf8_lossy(&o.stdout));
    }

    // Mistakes are named.
    let e = Client::builder("unix://").connect().await.expect_err("no path");
    assert!(e.to_string().contains("socket's path"), "{e}");
    let e = Client::builder(&addr).ca("/ca.pem").connect().await.expect_err("no TLS");
    assert!(e.to_string().contains("TLS"), "{e}");
    let gone = format!("unix://{}", path.with_file_name("nothing-here.sock").display());
    assert!(matches!(Client::builder(&gone).connect().await, Err(ClientError::Connect { .. })));
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
