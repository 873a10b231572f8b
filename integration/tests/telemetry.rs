//! OpenTelemetry export from a real daemon with real sensors to an OTLP
//! receiver started here (a real gRPC server implementing the OTLP trace,
//! logs and metrics services): the spans of a signal with their attributes,
//! each anomaly also as a log record with the same attributes linked to its
//! span, API calls joining the caller's trace, metrics with sensible values,
//! export resuming after the receiver restarts, shutdown flushing what
//! waits, `logs = false`, and the Prometheus endpoint.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::trace::v1::Span;
use telltale_client::{Client, SignalStatus, SignalUpdate};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::otlp::{serve, Received, Receiver};
use telltale_integration::{kernel_tests_enabled, wait_stable, workload_bin};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn s(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(v)) => v.clone(),
        other => panic!("attribute {key}: {other:?} in {attrs:?}"),
    }
}

fn i(attrs: &[KeyValue], key: &str) -> i64 {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(v)) => *v,
        other => panic!("attribute {key}: {other:?} in {attrs:?}"),
    }
}

fn strings(attrs: &[KeyValue], key: &str) -> Vec<String> {
    match attr(attrs, key) {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v: &AnyValue| match &v.value {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("{key}: {other:?}"),
            })
            .collect(),
        other => panic!("attribute {key}: {other:?} in {attrs:?}"),
    }
}

/// Wait until `pred` finds something in what the receiver got.
async fn wait_for<T>(r: &Receiver, what: &str, secs: u64, pred: impl Fn(&Received) -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = pred(&r.0.lock().unwrap()) {
            return t;
        }
        if start.elapsed() >= Duration::from_secs(secs) {
            let got = r.0.lock().unwrap();
            let mut latest = std::collections::BTreeMap::new();
            for (name, attrs, v) in &got.points {
                let labels: Vec<String> = attrs.iter().map(|a| format!("{}={:?}", a.key, a.value)).collect();
                latest.insert(format!("{name}{{{}}}", labels.join(",")), *v);
            }
            panic!("never received {what}; latest metric values: {latest:#?}; spans: {:#?}", got.spans);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn span_named(r: &Received, name: &str, pred: impl Fn(&Span) -> bool) -> Option<(Vec<KeyValue>, Span)> {
    r.spans.iter().find(|(_, s)| s.name == name && pred(s)).cloned()
}

/// The log record of the anomaly with this `telltale.anomaly.id`, with its resource.
fn log_of(r: &Received, anomaly_id: &str) -> Option<(Vec<KeyValue>, LogRecord)> {
    r.logs.iter().find(|(_, _, l)| matches!(attr(&l.attributes, "telltale.anomaly.id"), Some(any_value::Value::StringValue(id)) if id == anomaly_id)).map(|(res, _, l)| (res.clone(), l.clone()))
}

fn body(l: &LogRecord) -> String {
    match l.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("body: {other:?}"),
    }
}

/// What every anomaly record shares with its span: the same attributes,
/// the span's trace and id, the event's time; WARN.
fn assert_record_of_span(log: &LogRecord, span: &Span) {
    assert_eq!(log.attributes, span.attributes, "the same attributes as the anomaly span");
    assert_eq!(log.trace_id, span.trace_id, "linked to the signal's trace");
    assert_eq!(log.span_id, span.span_id, "linked to the anomaly's span");
    assert_eq!(log.flags & 0xff, 1, "sampled");
    assert_eq!(log.time_unix_nano, span.start_time_unix_nano, "the event's time");
    assert!(log.observed_time_unix_nano >= log.time_unix_nano);
    assert_eq!(log.severity_number, SeverityNumber::Warn as i32);
    assert_eq!(log.severity_text, "WARN");
    assert_eq!(log.event_name, span.name, "the event name is the span name");
}

/// The latest value of a metric point with these attribute values.
fn point(r: &Received, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    r.points
        .iter()
        .rev()
        .find(|(n, attrs, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| matches!(attr(attrs, k), Some(any_value::Value::StringValue(s)) if s == v))
        })
        .map(|(_, _, v)| *v)
}

async fn prometheus(url: &str) -> String {
    let resp = reqwest::get(url).await.expect("GET /metrics");
    assert!(resp.status().is_success());
    let ctype = resp.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    resp.text().await.unwrap()
}

/// A sample's value in exposition text (validated by an OpenMetrics parser).
fn exposition_value(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("invalid OpenMetrics exposition: {e:?}\n{text}"));
    let fam = parsed.families.get(family)?;
    let value = fam.iter_samples().find_map(|sample| {
        let ok = labels
            .iter()
            .all(|(k, v)| sample.get_labelset().ok().and_then(|l| l.get_label_value(k).map(|x| x == *v)) == Some(true));
        if !ok {
            return None;
        }
        match &sample.value {
            openmetrics_parser::OpenMetricsValue::Counter(c) => Some(c.value.as_f64()),
            openmetrics_parser::OpenMetricsValue::Gauge(g) => Some(g.as_f64()),
            _ => None,
        }
    });
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_become_traces_metrics_flow_and_export_survives_a_receiver_restart() {
    if !kernel_tests_enabled("signals_become_traces_metrics_flow_and_export_survives_a_receiver_restart") {
        return;
    }
    let received = Receiver::default();
    let (addr, stop_receiver, receiver_task) = serve("127.0.0.1:0".parse().unwrap(), received.clone()).await;
    let cfg = format!(
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
         [kubernetes]\npod_name = \"shop-web-7d9f\"\nnamespace = \"shop\"\n\
         [telemetry.otlp]\nendpoint = \"http://{addr}\"\nbatch_delay = \"200ms\"\nmetrics_interval = \"1s\"\ntimeout = \"2s\"\n\
         [telemetry.otlp.headers]\nx-tenant = \"shop\"\n\
         [telemetry.prometheus]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"
    );
    let pod = Pod::new("otel", &[("app", "registry.example.com/shop/web:v3")], &cfg);
    // A key wins over the same header in OTEL_EXPORTER_OTLP_HEADERS; other entries there are sent too.
    let d = pod.start_with_env(&[("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=from-env,x-route=otel%2Fa")]);
    let api = d.socket.clone().expect("admin socket");
    let metrics_url = d.metrics.clone().expect("the readiness line names the metrics endpoint");
    let client = Client::builder(&api).connect().await.expect("connect");
    let w = workload_bin();
    let app = pod.container("app");
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    wait_stable(&client, Some("web")).await;

    // The attack: one signal with two anomalies → one trace, a root span and two children.
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    run_in(&app, &["/bin/sh", "-c", &format!("/bin/true && {w} open /etc/passwd")]);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = Instant::now();
    let sig = loop {
        let s = client.signals("container:app").await.expect("signals");
        if s.len() == 1 && s[0].anomalies == 2 {
            break s[0].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{s:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    let (resource, root) =
        wait_for(&received, "the signal's root span", 20, |r| span_named(r, "telltale.signal", |_| true)).await;
    assert_eq!(s(&resource, "service.name"), "telltale");
    assert_eq!(s(&resource, "k8s.pod.name"), "shop-web-7d9f");
    assert_eq!(s(&root.attributes, "telltale.signal.id"), sig.id);
    assert_eq!(s(&root.attributes, "telltale.signal.severity"), "high");
    assert!(root.parent_span_id.is_empty(), "the root has no parent");
    let headers = received.0.lock().unwrap().headers.clone();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(header("x-tenant"), Some("shop"), "{headers:?}");
    assert_eq!(header("x-route"), Some("otel/a"), "{headers:?}");
    let (_, exec) =
        wait_for(&received, "the exec anomaly span", 20, |r| span_named(r, "telltale.anomaly.exec", |_| true)).await;
    let (_, file) = wait_for(&received, "the file anomaly span", 20, |r| {
        span_named(r, "telltale.anomaly.file", |s| s.attributes.iter().any(|a| a.key == "file.path"))
    })
    .await;
    for child in [&exec, &file] {
        assert_eq!(child.trace_id, root.trace_id, "one trace per signal");
        assert_eq!(child.parent_span_id, root.span_id, "anomalies are children of the signal");
        assert!(child.start_time_unix_nano >= before && child.start_time_unix_nano <= after, "event time as span time");
        let a = &child.attributes;
        assert_eq!(s(a, "container.name"), "app");
        assert_eq!(s(a, "container.id"), "app");
        assert_eq!(s(a, "container.image.name"), "registry.example.com/shop/web");
        assert_eq!(s(a, "telltale.image.short_name"), "web");
        assert_eq!(strings(a, "container.image.tags"), vec!["v3".to_owned()]);
        assert_eq!(s(a, "k8s.pod.name"), "shop-web-7d9f");
        assert_eq!(s(a, "k8s.namespace.name"), "shop");
        assert_eq!(s(a, "telltale.signal.id"), sig.id);
        assert_eq!(s(a, "telltale.profile.version"), "v3");
        assert!(i(a, "process.pid") > 0 && i(a, "process.parent_pid") > 0);
        assert!(i(a, "telltale.sequence") > 0);
    }
    assert_eq!(s(&exec.attributes, "process.executable.path"), "/usr/bin/true");
    assert_eq!(strings(&exec.attributes, "process.command_args"), vec!["/bin/true".to_owned()]);
    assert_eq!(s(&exec.attributes, "telltale.event.type"), "exec");
    assert_eq!(s(&file.attributes, "file.path"), "/etc/passwd");
    assert_eq!(s(&file.attributes, "telltale.event.type"), "file");
    assert!(i(&file.attributes, "telltale.sequence") > i(&exec.attributes, "telltale.sequence"));

    // Each anomaly is also a log record, linked to its span, with the same attributes.
    let exec_id = s(&exec.attributes, "telltale.anomaly.id");
    let file_id = s(&file.attributes, "telltale.anomaly.id");
    let (log_resource, exec_log) =
        wait_for(&received, "the exec anomaly's log record", 20, |r| log_of(r, &exec_id)).await;
    let (_, file_log) = wait_for(&received, "the file anomaly's log record", 20, |r| log_of(r, &file_id)).await;
    assert_eq!(log_resource, resource, "the resource of the traces");
    assert_record_of_span(&exec_log, &exec);
    assert_record_of_span(&file_log, &file);
    assert_eq!(body(&exec_log), "exec anomaly in container app (image web): new process /usr/bin/true");
    let workload = s(&file.attributes, "process.executable.path");
    assert!(workload.ends_with("/tt-workload"), "{workload}");
    assert_eq!(
        body(&file_log),
        format!("file anomaly in container app (image web): {workload} opened /etc/passwd (read)")
    );
    {
        let got = received.0.lock().unwrap();
        assert_eq!(got.logs.len(), 2, "one record per anomaly, nothing else: {:#?}", got.logs);
        let scope = got.logs[0].1.clone().expect("a scope");
        assert_eq!((scope.name.as_str(), scope.version.as_str()), ("telltale", env!("CARGO_PKG_VERSION")));
    }

    // A triage call that carries the caller's trace context: the server span
    // joins that trace, and the signal's trace gets an update span.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traced = Client::builder(&api)
        .traceparent(format!("00-{caller_trace}-{caller_span}-01"))
        .connect()
        .await
        .expect("connect");
    let review = SignalUpdate::new(sig.id.clone()).status(SignalStatus::UnderReview).assignee("rita");
    traced.update_signal(review).await.expect("update");
    let (_, rpc) = wait_for(&received, "the UpdateSignal server span", 20, |r| {
        span_named(r, "telltale.v1.Telltale/UpdateSignal", |_| true)
    })
    .await;
    assert_eq!(hex(&rpc.trace_id), caller_trace, "incoming W3C trace context is honoured");
    assert_eq!(hex(&rpc.parent_span_id), caller_span);
    assert_eq!(rpc.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32);
    assert_eq!(s(&rpc.attributes, "rpc.system"), "grpc");
    assert_eq!(s(&rpc.attributes, "rpc.method"), "UpdateSignal");
    let (_, update) =
        wait_for(&received, "the signal update span", 20, |r| span_named(r, "telltale.signal.update", |_| true)).await;
    assert_eq!(update.trace_id, root.trace_id, "updates join the signal's trace");
    assert_eq!(s(&update.attributes, "telltale.signal.status"), "under_review");
    assert_eq!(s(&update.attributes, "telltale.signal.assignee"), "rita");

    // Metrics over OTLP, with sensible values.
    wait_for(&received, "metrics", 20, |r| {
        let events = point(r, "telltale.events", &[("kind", "exec")])?;
        let anomalies = point(r, "telltale.anomalies", &[("type", "exec"), ("image", "web")])?;
        let reviewing = point(r, "telltale.signals", &[("status", "under_review")])?;
        let stable = point(r, "telltale.profile.learning", &[("image", "web"), ("type", "file"), ("state", "stable")])?;
        let behaviours = point(r, "telltale.profile.behaviours", &[("image", "web")])?;
        // Zero is reported, not left out.
        let archived = point(r, "telltale.signals", &[("status", "archived")])?;
        let learning =
            point(r, "telltale.profile.learning", &[("image", "web"), ("type", "file"), ("state", "learning")])?;
        (events >= 3.0
            && anomalies == 1.0
            && reviewing == 1.0
            && stable == 1.0
            && behaviours >= 2.0
            && archived == 0.0
            && learning == 0.0)
            .then_some(())
    })
    .await;

    // The Prometheus endpoint: valid exposition, the same values.
    let text = prometheus(&metrics_url).await;
    assert_eq!(
        exposition_value(&text, "telltale_anomalies", &[("type", "file"), ("image", "web")]),
        Some(1.0),
        "{text}"
    );
    assert!(exposition_value(&text, "telltale_events", &[("kind", "exec")]).unwrap() >= 3.0, "{text}");
    assert_eq!(exposition_value(&text, "telltale_signals", &[("status", "under_review")]), Some(1.0), "{text}");
    assert!(exposition_value(&text, "telltale_kernel_repeats_dropped", &[("kind", "file")]).is_some(), "{text}");
    assert_eq!(exposition_value(&text, "telltale_telemetry_spans_dropped", &[]), Some(0.0), "{text}");
    assert_eq!(exposition_value(&text, "telltale_telemetry_logs_exported", &[]), Some(2.0), "{text}");
    assert_eq!(exposition_value(&text, "telltale_telemetry_logs_dropped", &[]), Some(0.0), "{text}");

    // The receiver goes away: detection goes on, dropped spans are counted.
    let _ = stop_receiver.send(());
    receiver_task.await.unwrap();
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/group")]);
    let start = Instant::now();
    while !pod.anomalies().iter().any(|a| a["event"]["file"]["path"] == "/etc/group") {
        assert!(start.elapsed() < Duration::from_secs(20), "detection stopped while the collector was down");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let start = Instant::now();
    loop {
        let text = prometheus(&metrics_url).await;
        if exposition_value(&text, "telltale_telemetry_spans_dropped", &[]).unwrap_or(0.0) >= 1.0
            && exposition_value(&text, "telltale_telemetry_logs_dropped", &[]).unwrap_or(0.0) >= 1.0
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "drops never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // It comes back on the same address: export resumes.
    let back = Receiver::default();
    let (_, stop_again, task_again) = serve(addr, back.clone()).await;
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/issue")]);
    let (_, resumed) = wait_for(&back, "spans after the restart", 30, |r| {
        span_named(r, "telltale.anomaly.file", |s| {
            s.attributes.iter().any(|a| a.key == "file.path")
                && matches!(attr(&s.attributes, "file.path"), Some(any_value::Value::StringValue(p)) if p == "/etc/issue")
        })
    })
    .await;
    assert_eq!(s(&resumed.attributes, "container.name"), "app");
    let resumed_id = s(&resumed.attributes, "telltale.anomaly.id");
    let (_, resumed_log) = wait_for(&back, "log records after the restart", 30, |r| log_of(r, &resumed_id)).await;
    assert_record_of_span(&resumed_log, &resumed);
    d.stop();
    let _ = stop_again.send(());
    task_again.await.unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// OTLP/HTTP with protobuf bodies, configured only through the standard
/// `OTEL_*` environment variables: a real HTTP receiver decodes what comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_from_standard_environment_variables() {
    if !kernel_tests_enabled("otlp_http_protobuf_from_standard_environment_variables") {
        return;
    }
    use prost::Message;
    let received = Receiver::default();
    let traces = received.clone();
    let logs = received.clone();
    let metrics = received.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let req = ExportTraceServiceRequest::decode(body).expect("a protobuf trace export");
                let mut req = tonic::Request::new(req);
                *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
                TraceService::export(&traces, req).await.expect("stored");
                ExportTraceServiceResponse { partial_success: None }.encode_to_vec()
            }),
        )
        .route(
            "/v1/logs",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                let req = ExportLogsServiceRequest::decode(body).expect("a protobuf logs export");
                let mut req = tonic::Request::new(req);
                *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
                LogsService::export(&logs, req).await.expect("stored");
                ExportLogsServiceResponse { partial_success: None }.encode_to_vec()
            }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let req = ExportMetricsServiceRequest::decode(body).expect("a protobuf metrics export");
                MetricsService::export(&metrics, tonic::Request::new(req)).await.expect("stored");
                ExportMetricsServiceResponse { partial_success: None }.encode_to_vec()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let cfg = "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
               [telemetry.otlp]\nbatch_delay = \"200ms\"\nmetrics_interval = \"1s\"\n";
    let pod = Pod::new("otel-http", &[("job", "batch/report:2026.11")], cfg);
    // `status --ready` (the injected sidecar's startup probe): not before the daemon watches, then yes.
    let ready = || {
        std::process::Command::new(telltale_integration::telltale_bin())
            .args(["status", "--ready", "--data-dir"])
            .arg(pod.dir.join("data"))
            .output()
            .expect("status --ready")
    };
    let before = ready();
    assert!(!before.status.success() && !before.stderr.is_empty(), "{before:?}");
    let endpoint = format!("http://{addr}");
    let d = pod.start_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        // Each signal's own variable wins over the general one.
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0k"),
        ("OTEL_SERVICE_NAME", "telltale-shop"),
    ]);
    let start = Instant::now();
    loop {
        let after = ready();
        if after.status.success() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never ready: {after:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = Client::builder(d.socket.clone().expect("admin socket")).connect().await.expect("connect");
    let w = workload_bin();
    let job = pod.container("job");
    run_in(&job, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    wait_stable(&client, Some("report")).await;
    run_in(&job, &["/bin/sh", "-c", &format!("{w} open /etc/shadow")]);
    let (resource, file) = wait_for(&received, "the file anomaly span over HTTP", 30, |r| {
        span_named(r, "telltale.anomaly.file", |s| {
            matches!(attr(&s.attributes, "file.path"), Some(any_value::Value::StringValue(p)) if p == "/etc/shadow")
        })
    })
    .await;
    assert_eq!(s(&resource, "service.name"), "telltale-shop", "OTEL_SERVICE_NAME wins");
    assert_eq!(s(&file.attributes, "container.image.name"), "batch/report");
    assert_eq!(s(&file.attributes, "telltale.image.short_name"), "report");
    assert_eq!(strings(&file.attributes, "container.image.tags"), vec!["2026.11".to_owned()]);
    let headers = received.0.lock().unwrap().headers.clone();
    assert!(headers.contains(&("authorization".into(), "Bearer t0k".into())), "{headers:?}");
    // Its log record, over HTTP too.
    let file_id = s(&file.attributes, "telltale.anomaly.id");
    let (resource, log) =
        wait_for(&received, "the file anomaly's log record over HTTP", 30, |r| log_of(r, &file_id)).await;
    assert_eq!(s(&resource, "service.name"), "telltale-shop");
    assert_record_of_span(&log, &file);
    assert!(body(&log).ends_with(" opened /etc/shadow (read)"), "{}", body(&log));

    // DNS and connect anomalies carry their semantic-convention attributes.
    let port = addr.port().to_string();
    run_in(
        &job,
        &["/bin/sh", "-c", &format!("{w} dns-udp 127.0.0.1:53 exfil.telltale.test TXT && {w} connect {addr}")],
    );
    let (_, dns) = wait_for(&received, "the dns anomaly span", 30, |r| {
        span_named(r, "telltale.anomaly.dns", |s| s.attributes.iter().any(|a| a.key == "dns.question.name"))
    })
    .await;
    assert_eq!(s(&dns.attributes, "dns.question.name"), "exfil.telltale.test");
    assert_eq!(s(&dns.attributes, "telltale.event.type"), "dns");
    assert_eq!(s(&dns.attributes, "network.transport"), "udp");
    let (_, connect) = wait_for(&received, "the connect anomaly span", 30, |r| {
        span_named(r, "telltale.anomaly.connect", |s| {
            s.attributes.iter().any(|a| a.key == "server.port") && i(&s.attributes, "server.port").to_string() == port
        })
    })
    .await;
    assert_eq!(s(&connect.attributes, "server.address"), "127.0.0.1");
    assert_eq!(s(&connect.attributes, "network.transport"), "tcp");
    assert_eq!(s(&connect.attributes, "container.name"), "job");
    wait_for(&received, "metrics over HTTP", 20, |r| {
        point(r, "telltale.anomalies", &[("type", "file"), ("image", "report")]).filter(|v| *v == 1.0)
    })
    .await;
    d.stop();
    server.abort();
}

/// Shutdown exports the log records still waiting for their batch, and
/// `logs = false` sends none (while traces still flow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_log_records_and_logs_false_sends_none() {
    if !kernel_tests_enabled("shutdown_flushes_log_records_and_logs_false_sends_none") {
        return;
    }
    let received = Receiver::default();
    let (addr, stop_receiver, receiver_task) = serve("127.0.0.1:0".parse().unwrap(), received.clone()).await;
    let learning =
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n";
    let w = workload_bin();

    // A batch waits a minute: only shutdown sends it.
    let cfg =
        format!("{learning}[telemetry.otlp]\nendpoint = \"http://{addr}\"\nbatch_delay = \"60s\"\nmetrics = false\n");
    let pod = Pod::new("otel-flush", &[("app", "shop/web:v3")], &cfg);
    let d = pod.start();
    let client = Client::builder(d.socket.clone().expect("admin socket")).connect().await.expect("connect");
    let app = pod.container("app");
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    wait_stable(&client, Some("web")).await;
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/passwd")]);
    let start = Instant::now();
    while !pod.anomalies().iter().any(|a| a["event"]["file"]["path"] == "/etc/passwd") {
        assert!(start.elapsed() < Duration::from_secs(20), "no anomaly");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(received.0.lock().unwrap().logs.is_empty(), "the batch is not due yet");
    d.stop();
    {
        let got = received.0.lock().unwrap();
        assert_eq!(got.logs.len(), 1, "{:#?}", got.logs);
        assert_eq!(s(&got.logs[0].2.attributes, "file.path"), "/etc/passwd");
        assert!(got.spans.iter().any(|(_, s)| s.name == "telltale.anomaly.file"), "spans are flushed too");
    }

    // logs = false: the span goes out, no record does (not even at shutdown).
    let before = received.0.lock().unwrap().spans.len();
    let cfg = format!(
        "{learning}[telemetry.otlp]\nendpoint = \"http://{addr}\"\nbatch_delay = \"200ms\"\nmetrics = false\nlogs = false\n"
    );
    let pod = Pod::new("otel-nologs", &[("app", "shop/web:v3")], &cfg);
    let d = pod.start();
    let client = Client::builder(d.socket.clone().expect("admin socket")).connect().await.expect("connect");
    let app = pod.container("app");
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    wait_stable(&client, Some("web")).await;
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/group")]);
    wait_for(&received, "the file anomaly span", 20, |r| {
        r.spans[before..]
            .iter()
            .any(|(_, s)| s.name == "telltale.anomaly.file" && matches!(attr(&s.attributes, "file.path"), Some(any_value::Value::StringValue(p)) if p == "/etc/group"))
            .then_some(())
    })
    .await;
    d.stop();
    assert_eq!(received.0.lock().unwrap().logs.len(), 1, "no record from the daemon with logs = false");
    let _ = stop_receiver.send(());
    receiver_task.await.unwrap();
}
