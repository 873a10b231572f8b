//! The real server on 127.0.0.1:0, with an `Api` whose daemon inbox is
//! read (for audit records) but never answered: what is tested here never
//! reaches the daemon.

use super::*;
use std::sync::Arc;

use telltale_proto::v1 as pb;
use telltale_proto::v1::telltale_client::TelltaleClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::{v1, v1alpha};

use super::super::auth::{token_sha256, Call, FailureAudit, FAILURE_KINDS, FAILURE_WINDOW};
use super::super::error::MESSAGE_MAX;
use crate::bus::{Command, Feeds};
use crate::config::{ApiToken, Role};
use crate::telemetry::metrics::Metrics;

/// Long enough for anything that should happen to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

const VIEWER: &str = "viewer-token";
const ADMIN: &str = "admin-token";

struct Served {
    addr: SocketAddr,
    inbox: mpsc::Receiver<Command>,
    closing: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ApiError>>,
    data_dir: std::path::PathBuf,
}

impl Served {
    /// The server, with an empty store in a data directory named by `tag`.
    async fn start(tag: &str, limits: Limits) -> Served {
        Self::start_with(tag, limits, FAILURE_WINDOW).await
    }

    /// The same, counting repeated failures for `window`.
    async fn start_with(tag: &str, limits: Limits, window: Duration) -> Served {
        let token = |principal: &str, role, token: &str| ApiToken {
            principal: principal.into(),
            role,
            sha256: token_sha256(token),
        };
        let cfg = ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: vec![token("vera", Role::Viewer, VIEWER), token("adam", Role::Admin, ADMIN)],
            ..ApiConfig::default()
        };
        let listener = bind(&cfg, None).await.expect("bind").with_limits(limits);
        assert_eq!(listener.limits(), limits);
        let addr = listener.local_addr().expect("address");
        let (commands, inbox) = mpsc::channel(64);
        let (closing, closing_rx) = watch::channel(false);
        let data_dir = std::env::temp_dir().join(format!("telltale-api-server-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        drop(crate::store::Store::open(&data_dir).expect("store"));
        let metrics = Arc::new(Metrics::default());
        let failures = FailureAudit::with(commands.clone(), metrics.clone(), window, FAILURE_KINDS);
        let api = Api::new(commands, Feeds::new(16), data_dir.clone(), closing_rx.clone(), metrics)
            .with_failure_audit(failures);
        let mut stop = closing_rx;
        let task = tokio::spawn(serve(cfg, listener, api, None, async move {
            let _ = stop.wait_for(|c| *c).await;
        }));
        Served { addr, inbox, closing, task, data_dir }
    }

    async fn channel(&self) -> Channel {
        let endpoint = Channel::from_shared(format!("http://{}", self.addr)).expect("uri");
        tokio::time::timeout(PATIENCE, endpoint.connect()).await.expect("connects in time").expect("connects")
    }

    /// The next audit record the API queued for the daemon.
    async fn audited(&mut self) -> telltale_core::audit::Action {
        match tokio::time::timeout(PATIENCE, self.inbox.recv()).await.expect("a command").expect("open inbox") {
            Command::Audit(a) => a,
            other => panic!("unexpected command {other:?}"),
        }
    }

    /// Stop the server; the inbox, with what it queued until it stopped.
    async fn stop(self) -> mpsc::Receiver<Command> {
        self.closing.send_replace(true);
        let ended = tokio::time::timeout(PATIENCE, self.task).await.expect("the server stops");
        ended.expect("no panic").expect("no error");
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.inbox
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    req
}

async fn health(channel: Channel, service: &str) -> ServingStatus {
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest { service: service.into() })
        .await
        .expect("health answers")
        .into_inner();
    ServingStatus::try_from(answer.status).expect("a known status")
}

/// The services reflection v1 lists, and the descriptor of `symbol`.
async fn reflect_v1(
    channel: Channel,
    token: Option<&str>,
    symbol: &str,
) -> Result<(Vec<String>, Vec<u8>), tonic::Status> {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let ask = |m| v1::ServerReflectionRequest { host: String::new(), message_request: Some(m) };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(symbol.into())),
    ];
    let req = match token {
        Some(t) => with_token(tokio_stream::iter(requests), t),
        None => Request::new(tokio_stream::iter(requests)),
    };
    let mut answers = v1::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(req)
        .await?
        .into_inner();
    let mut services = Vec::new();
    let mut descriptor = Vec::new();
    while let Some(answer) = answers.message().await? {
        match answer.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => services.extend(l.service.into_iter().map(|s| s.name)),
            Some(MessageResponse::FileDescriptorResponse(f)) => descriptor.extend(f.file_descriptor_proto.concat()),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    Ok((services, descriptor))
}

/// The same through reflection v1alpha.
async fn reflect_v1alpha(
    channel: Channel,
    token: Option<&str>,
    symbol: &str,
) -> Result<(Vec<String>, Vec<u8>), tonic::Status> {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let ask = |m| v1alpha::ServerReflectionRequest { host: String::new(), message_request: Some(m) };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(symbol.into())),
    ];
    let req = match token {
        Some(t) => with_token(tokio_stream::iter(requests), t),
        None => Request::new(tokio_stream::iter(requests)),
    };
    let mut answers = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(req)
        .await?
        .into_inner();
    let mut services = Vec::new();
    let mut descriptor = Vec::new();
    while let Some(answer) = answers.message().await? {
        match answer.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => services.extend(l.service.into_iter().map(|s| s.name)),
            Some(MessageResponse::FileDescriptorResponse(f)) => descriptor.extend(f.file_descriptor_proto.concat()),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    Ok((services, descriptor))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn serves_health_and_both_reflections_and_refuses_strangers() {
    let mut served = Served::start("calls", Limits::default()).await;
    let channel = served.channel().await;

    // Health needs no credentials (probes have none).
    assert_eq!(health(channel.clone(), "").await, ServingStatus::Serving);
    assert_eq!(health(channel.clone(), "telltale.v1.Telltale").await, ServingStatus::Serving);

    // No token: UNAUTHENTICATED, audited with where it came from.
    let mut client = TelltaleClient::new(channel.clone());
    let e = client.get_learning_status(pb::GetLearningStatusRequest::default()).await.expect_err("refused");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let a = served.audited().await;
    assert_eq!((a.principal.as_str(), a.action.as_str(), a.outcome.as_str()), ("anonymous", "authenticate", "failure"));
    let after = a.after.expect("details");
    assert_eq!(after["peer"], "127.0.0.1", "the address, not the port of the connection");
    assert_eq!(after["count"], 1);
    let e = client
        .get_learning_status(with_token(pb::GetLearningStatusRequest::default(), "stolen"))
        .await
        .expect_err("refused");
    assert_eq!((e.code(), e.message()), (Code::Unauthenticated, "invalid token"));
    assert_eq!(served.audited().await.action, "authenticate");

    // A viewer may not manage notification rules: PERMISSION_DENIED, audited.
    let e = client
        .list_notification_rules(with_token(pb::ListNotificationRulesRequest::default(), VIEWER))
        .await
        .expect_err("forbidden");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let a = served.audited().await;
    assert_eq!(
        (a.principal.as_str(), a.action.as_str(), a.asset_id.as_str()),
        ("vera", "authorize", "ListNotificationRules")
    );

    // A 900 KB URL comes back cut to a few hundred bytes.
    let url = format!("ftp://{}", "h".repeat(900 * 1024));
    let rule = pb::NotificationRule {
        name: "huge".into(),
        enabled: true,
        targets: vec![pb::NotificationTarget {
            kind: Some(pb::notification_target::Kind::Slack(pb::SlackTarget { url })),
        }],
        ..pb::NotificationRule::default()
    };
    let e = client.create_notification_rule(with_token(rule, ADMIN)).await.expect_err("invalid");
    assert_eq!(e.code(), Code::InvalidArgument, "{}", &e.message()[..e.message().len().min(200)]);
    assert!(e.message().starts_with("field `targets[0].slack.url`"), "{}", &e.message()[..100]);
    assert!(e.message().len() <= MESSAGE_MAX + 64, "{} bytes", e.message().len());
    assert!(e.message().contains("bytes in all)"), "{}", e.message());

    // Reflection, in both versions, for authenticated callers.
    let (services, descriptor) = reflect_v1(channel.clone(), Some(VIEWER), "telltale.v1.Telltale").await.expect("v1");
    assert!(services.iter().any(|s| s == "telltale.v1.Telltale"), "{services:?}");
    assert!(services.iter().any(|s| s == "grpc.health.v1.Health"), "{services:?}");
    for call in Call::ALL {
        assert!(contains(&descriptor, call.name()), "{call} is not in the service descriptor");
    }
    let (services, descriptor) =
        reflect_v1alpha(channel.clone(), Some(VIEWER), "telltale.v1.Telltale").await.expect("v1alpha");
    assert!(services.iter().any(|s| s == "telltale.v1.Telltale"), "{services:?}");
    assert!(contains(&descriptor, "StreamAnomalies"));
    let e = reflect_v1(channel.clone(), None, "telltale.v1.Telltale").await.expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = reflect_v1alpha(channel, None, "telltale.v1.Telltale").await.expect_err("no token");
    assert_eq!(e.code(), Code::Unauthenticated);

    served.stop().await;
}

/// Wait until the server closes `s` (it may first send its own HTTP/2 settings).
async fn closed_by_server(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await.expect("the server cuts the connection") {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_do_not_lock_out_a_client() {
    let limits = Limits {
        max_connections: 8,
        handshake_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(1500),
        keepalive_interval: Duration::from_millis(300),
        keepalive_timeout: Duration::from_secs(1),
    };
    let served = Served::start("idle", limits).await;
    // Twelve connections that never say a word, and one that stops after
    // the HTTP/2 preface.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(tokio::net::TcpStream::connect(served.addr).await.expect("connect"));
    }
    let mut after_preface = tokio::net::TcpStream::connect(served.addr).await.expect("connect");
    after_preface.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");

    // A real client is served once the idle ones are cut.
    let channel = served.channel().await;
    let status = tokio::time::timeout(PATIENCE, health(channel.clone(), "telltale.v1.Telltale")).await.expect("served");
    assert_eq!(status, ServingStatus::Serving);
    for s in &mut idle {
        closed_by_server(s).await;
    }
    closed_by_server(&mut after_preface).await;

    // A live client answers the keepalive pings, so a quiet stream outlives
    // several idle timeouts (a cut connection would end it with an error).
    let mut stream = TelltaleClient::new(channel)
        .stream_anomalies(with_token(pb::StreamAnomaliesRequest::default(), VIEWER))
        .await
        .expect("stream")
        .into_inner();
    let quiet = tokio::time::timeout(limits.idle_timeout * 3, stream.message()).await;
    assert!(quiet.is_err(), "the stream ended: {quiet:?}");
    let stop = tokio::spawn(served.stop());
    let end = tokio::time::timeout(PATIENCE, stream.message()).await.expect("the stream ends");
    assert_eq!(end.expect_err("told").code(), Code::Unavailable);
    stop.await.expect("stopped");
}

/// The audit records queued in `inbox`, and the sum of their counts.
fn drain_audit(inbox: &mut mpsc::Receiver<Command>) -> (Vec<telltale_core::audit::Action>, u64) {
    let mut records = Vec::new();
    while let Ok(c) = inbox.try_recv() {
        match c {
            Command::Audit(a) => records.push(a),
            other => panic!("unexpected command {other:?}"),
        }
    }
    let sum = records.iter().map(|a| a.after.as_ref().and_then(|v| v["count"].as_u64()).expect("a count")).sum();
    (records, sum)
}

#[tokio::test]
async fn a_flood_of_failed_logins_makes_a_few_records_whose_counts_sum_to_it() {
    const N: usize = 240;
    let mut served = Served::start_with("flood", Limits::default(), Duration::from_secs(3600)).await;
    // From several connections (ports), without a token or with a new bad
    // token each time: two kinds of failure (the reasons), one peer.
    for batch in 0..4 {
        let mut client = TelltaleClient::new(served.channel().await);
        for i in 0..N / 4 {
            let req = pb::GetLearningStatusRequest::default();
            let req = if i % 2 == 0 { Request::new(req) } else { with_token(req, &format!("guess-{batch}-{i}")) };
            let e = client.get_learning_status(req).await.expect_err("refused");
            assert_eq!(e.code(), Code::Unauthenticated);
        }
    }
    // The first of each kind is recorded at once; the rest wait for the
    // end of their window (an hour) or of the server.
    let (first, sum) = drain_audit(&mut served.inbox);
    assert_eq!((first.len(), sum), (2, 2), "{first:#?}");
    let (rest, sum) = drain_audit(&mut served.stop().await);
    assert_eq!(rest.len(), 2, "{rest:#?}");
    assert_eq!(sum, N as u64 - 2, "every failure is counted once");
    for a in &rest {
        let after = a.after.as_ref().expect("details");
        assert_eq!((after["peer"].as_str(), after["count"].as_u64()), (Some("127.0.0.1"), Some(N as u64 / 2 - 1)));
        assert!(after["first_ms"].as_i64() <= after["last_ms"].as_i64(), "{after}");
    }
    let mut reasons: Vec<&str> = rest.iter().filter_map(|a| a.after.as_ref()?["reason"].as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["invalid token", "missing credentials: send `authorization: Bearer <token>`"]);
}

#[tokio::test]
async fn repeats_are_recorded_when_their_window_ends() {
    let mut served = Served::start_with("window", Limits::default(), Duration::from_millis(200)).await;
    let mut client = TelltaleClient::new(served.channel().await);
    for _ in 0..10 {
        let e = client.get_learning_status(pb::GetLearningStatusRequest::default()).await.expect_err("refused");
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    // The server is still running: its flusher hands the repeats over.
    let mut counted = 0;
    while counted < 10 {
        let a = served.audited().await;
        counted += a.after.as_ref().and_then(|v| v["count"].as_u64()).expect("a count");
    }
    assert_eq!(counted, 10);
    served.stop().await;
}
