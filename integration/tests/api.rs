//! The gRPC API through the client SDK, against a real daemon with real
//! sensors and real workloads.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use telltale_client::{
    behaviour, Access, AnomalyStreamItem, Behaviour, Client, ClientError, EventType, LearningState, Protocol,
    SequencedAnomaly, WatchFilter,
};
use telltale_integration::daemon::{run_in, Daemon, Pod};
use telltale_integration::{kernel_tests_enabled, workload_bin};
use telltale_sidecar::api::token_sha256;
use tokio_stream::StreamExt;

const VIEWER: &str = "viewer-token-1";
const RESPONDER: &str = "responder-token-2";

fn config(stream_buffer: usize) -> String {
    format!(
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\nstream_buffer = {stream_buffer}\n\
         [[api.tokens]]\nprincipal = \"vera\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\
         [[api.tokens]]\nprincipal = \"rita\"\nrole = \"responder\"\nsha256 = \"{}\"\n",
        token_sha256(VIEWER),
        token_sha256(RESPONDER)
    )
}

async fn client(d: &Daemon, token: Option<&str>) -> Client {
    let addr = d.api.clone().expect("daemon printed its API address");
    Client::builder(addr).maybe_token(token.map(str::to_owned)).connect().await.expect("connect")
}

/// Learn `sh -c 'tt-workload ...'` (open, DNS, connect) in `app` until stable.
async fn learned(pod: &Pod, d: &Daemon) -> Client {
    let w = workload_bin();
    let script = format!("{w} open /etc/hostname && {w} dns-udp 127.0.0.1:53 learned.telltale.test A");
    run_in(&pod.container("app"), &["/bin/sh", "-c", &script]);
    run_in(&pod.container("app"), &["/bin/sh", "-c", &script]);
    let c = client(d, Some(VIEWER)).await;
    let start = Instant::now();
    loop {
        let st = c.learning_status(Some("web")).await.expect("status");
        if st[0].types.iter().all(|t| t.state == LearningState::Stable) {
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never stable: {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn open(pod: &Pod, path: &str) {
    run_in(&pod.container("app"), &["/bin/sh", "-c", &format!("{} open {path}", workload_bin())]);
}

fn file_path(a: &SequencedAnomaly) -> String {
    match &a.anomaly.behaviour {
        Behaviour::File { path, .. } => path.clone(),
        other => panic!("not a file anomaly: {other:?}"),
    }
}

async fn next(
    s: &mut (impl tokio_stream::Stream<Item = Result<SequencedAnomaly, ClientError>> + Unpin),
) -> SequencedAnomaly {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("an anomaly in time")
        .expect("stream open")
        .expect("ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resume_add_to_profile_and_validation() {
    if !kernel_tests_enabled("stream_resume_add_to_profile_and_validation") {
        return;
    }
    let pod = Pod::new("api", &[("app", "web:v1")], &config(1024));
    let d = pod.start();
    let viewer = learned(&pod, &d).await;

    // A live watcher sees a new behaviour with its lineage.
    let mut watch = viewer.watch(WatchFilter::default(), 0);
    open(&pod, "/etc/passwd");
    let first = next(&mut watch).await;
    assert_eq!(file_path(&first), "/etc/passwd");
    let a = first.anomaly.clone();
    let sh = std::fs::canonicalize("/bin/sh").expect("sh").display().to_string();
    assert_eq!(a.lineage, vec![sh.clone(), workload_bin()]);
    assert_eq!(a.event_type, EventType::File);
    assert_eq!(a.container.image, "web");
    assert_eq!(a.profile_version, "v1");
    assert_eq!(a.event.process.args, vec![workload_bin(), "open".to_owned(), "/etc/passwd".to_owned()]);
    drop(watch);

    // Disconnected: more happens. Reconnecting after the last sequence
    // gets exactly what was missed, in order.
    open(&pod, "/etc/group");
    open(&pod, "/etc/shells");
    let mut resumed = viewer.watch(WatchFilter::default(), first.sequence);
    let r1 = next(&mut resumed).await;
    let r2 = next(&mut resumed).await;
    assert_eq!((file_path(&r1), file_path(&r2)), ("/etc/group".to_owned(), "/etc/shells".to_owned()));
    assert!(first.sequence < r1.sequence && r1.sequence < r2.sequence);
    // Replay from 0 gives the same three, nothing duplicated.
    let mut replay = viewer.watch(WatchFilter::default(), 0);
    let all: Vec<u64> = [next(&mut replay).await, next(&mut replay).await, next(&mut replay).await]
        .iter()
        .map(|a| a.sequence)
        .collect();
    assert_eq!(all, vec![first.sequence, r1.sequence, r2.sequence]);
    // Filters.
    let mut only_dns =
        viewer.watch(WatchFilter { image: "web".into(), container: "app".into(), event_type: Some(EventType::Dns) }, 0);
    run_in(
        &pod.container("app"),
        &["/bin/sh", "-c", &format!("{} dns-udp 127.0.0.1:53 exfil.telltale.test TXT", workload_bin())],
    );
    let dns = next(&mut only_dns).await;
    assert!(dns.sequence > r2.sequence, "file anomalies were filtered out");

    // AddToProfile: the behaviour is never reported again.
    let responder = client(&d, Some(RESPONDER)).await;
    let lineage = [sh.as_str(), workload_bin().leak() as &str];
    let r = responder
        .add_to_profile("web", vec![behaviour::file(&lineage, "/etc/services", &[Access::Read])])
        .await
        .expect("add");
    assert_eq!((r.added, r.already_known), (1, 0));
    open(&pod, "/etc/services");
    open(&pod, "/etc/protocols"); // a marker that must still be reported
    let mut files =
        viewer.watch(WatchFilter { event_type: Some(EventType::File), ..WatchFilter::default() }, dns.sequence);
    let marker = next(&mut files).await;
    assert_eq!(file_path(&marker), "/etc/protocols", "/etc/services was added to the profile");
    let profile = viewer.profile("web").await.expect("profile");
    assert!(profile.nodes.iter().any(|n| n.files.iter().any(|f| f.pattern == "/etc/services")));
    let json = viewer.export_profile("web").await.expect("export");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("export is JSON");
    assert_eq!(doc["image"], "web");

    // Invalid input: the right codes, naming the field.
    let cases = vec![
        (behaviour::file(&lineage, "etc/passwd", &[Access::Read]), "behaviours[0].behaviour.file.path"),
        (behaviour::exec(&["relative/bin"]), "behaviours[0].lineage[0]"),
        (behaviour::dns(&lineage, "", "A"), "behaviours[0].behaviour.dns.name"),
        (behaviour::connect(&lineage, Protocol::Tcp, "10.0.0.0/33", 0), "behaviours[0].behaviour.connect.address"),
        (behaviour::connect(&lineage, Protocol::Tcp, "10.0.0.1", 70000), "behaviours[0].behaviour.connect.port"),
    ];
    for (b, field) in cases {
        let e = responder.add_to_profile("web", vec![b]).await.expect_err("invalid");
        assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
        assert!(e.to_string().contains(field), "{e} should name {field}");
    }
    // A file of a process of a profile that does not exist: nothing to add it
    // to (a request naming the process node would create the profile).
    let e = responder
        .add_to_profile("nope", vec![behaviour::file(&["/bin/x"], "/etc/x", &[Access::Read])])
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    let e = viewer.profile("nope").await.expect_err("unknown");
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_roles() {
    if !kernel_tests_enabled("authentication_and_roles") {
        return;
    }
    let pod = Pod::new("auth", &[("app", "web:v1")], &config(1024));
    let d = pod.start();
    let anonymous = client(&d, None).await;
    let e = anonymous.learning_status(None).await.expect_err("no token");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");
    let wrong = client(&d, Some("not-a-token")).await;
    let e = wrong.learning_status(None).await.expect_err("bad token");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");
    let mut s = wrong.watch(WatchFilter::default(), 0);
    let e = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("answer")
        .expect("item")
        .expect_err("denied");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
    let viewer = client(&d, Some(VIEWER)).await;
    assert_eq!(viewer.learning_status(None).await.expect("viewer reads").len(), 1);
    let e = viewer.add_to_profile("web", vec![behaviour::exec(&["/bin/x"])]).await.expect_err("viewer cannot add");
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{e}");
    let responder = client(&d, Some(RESPONDER)).await;
    let r = responder.add_to_profile("web", vec![behaviour::exec(&["/bin/x"])]).await.expect("responder adds");
    assert_eq!(r.added, 1);
    // Oversized requests are refused with a status, and the server lives on.
    let huge = format!("/{}", "a".repeat(2 << 20));
    let e = responder.add_to_profile("web", vec![behaviour::exec(&[&huge])]).await.expect_err("too large");
    assert_eq!(e.code(), Some(tonic::Code::OutOfRange), "{e}");
    assert!(e.to_string().contains("too large"), "{e}");
    assert_eq!(viewer.learning_status(None).await.expect("still serving").len(), 1);

    // Health needs no token; reflection lists the service (with a token).
    let channel = tonic::transport::Endpoint::from_shared(d.api.clone().expect("api"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest { service: "telltale.v1.Telltale".into() })
        .await
        .expect("health");
    assert_eq!(h.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let mut reflection = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let mut req = tonic::Request::new(tokio_stream::iter(vec![tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    }]));
    req.metadata_mut().insert("authorization", format!("Bearer {VIEWER}").parse().expect("header"));
    let mut resp = reflection.server_reflection_info(req).await.expect("reflection").into_inner();
    let answer = resp.next().await.expect("an answer").expect("ok");
    let listed = format!("{:?}", answer.message_response);
    assert!(listed.contains("telltale.v1.Telltale"), "{listed}");
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_lags_without_slowing_a_fast_one() {
    if !kernel_tests_enabled("a_slow_consumer_lags_without_slowing_a_fast_one") {
        return;
    }
    let pod = Pod::new("slow", &[("app", "web:v1")], &config(64));
    let d = pod.start();
    let viewer = learned(&pod, &d).await;
    // The slow one opens a stream and never reads it.
    let slow = viewer.stream_anomalies(&WatchFilter::default(), 0).await.expect("slow stream");
    let mut fast = viewer.watch(WatchFilter::default(), 0);
    let n = 600u64;
    let w = workload_bin();
    run_in(&pod.container("app"), &["/bin/sh", "-c", &format!("{w} dns-many 127.0.0.1:53 burst {n}")]);
    let mut got = Vec::new();
    while got.len() < n as usize {
        got.push(next(&mut fast).await.sequence);
    }
    let mut sorted = got.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no duplicates");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    // Now the slow one reads: it was told it lagged, and where to resume.
    let mut slow = slow;
    let mut lagged = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), slow.next()).await.expect("in time") {
        if let AnomalyStreamItem::Lagged(l) = item.expect("item") {
            lagged = Some(l);
            break;
        }
    }
    let l = lagged.expect("a lagged notice");
    assert!(l.skipped > 0, "{l:?}");
    assert!(l.message.contains("after_sequence"), "{l:?}");
    // Resuming from there gives everything after it.
    let mut resume = viewer.watch(WatchFilter::default(), l.resume_after);
    let first = next(&mut resume).await;
    assert_eq!(first.sequence, l.resume_after + 1);
    d.stop();
}
