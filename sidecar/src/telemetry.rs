//! OpenTelemetry export (OTLP traces, anomaly log records and metrics) and
//! the Prometheus scrape endpoint. Detection hands spans and anomalies to
//! bounded queues and metric values to shared counters; export runs in its
//! own tasks, so a collector that is down or slow never blocks or slows
//! detection.

pub mod export;
pub mod http;
pub mod log_export;
pub mod logs;
pub mod metrics;
pub mod process;
pub mod rpc;
pub mod settings;
pub mod spans;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::{Config, OtlpConfig, OtlpProtocol};
use export::SpanQueue;
use log_export::LogQueue;
use metrics::Metrics;
use settings::{OtlpSignal, Resolved};
use spans::PodInfo;
use telltale_core::signal::Signal;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("OTLP {what} exporter: {detail}")]
    Exporter {
        /// trace, log or metric.
        what: &'static str,
        /// The exporter's message.
        detail: String,
    },
    /// A setting is unusable.
    #[error("{0}")]
    Invalid(String),
    /// A TLS file could not be read.
    #[error("reading {path} (telemetry.otlp.tls)")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The Prometheus endpoint could not listen.
    #[error("telemetry.prometheus.listen {addr}: cannot listen")]
    Prometheus {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The running telemetry of the daemon.
#[derive(Debug)]
pub struct Telemetry {
    /// Shared metric values.
    pub metrics: Arc<Metrics>,
    /// The watched pod.
    pub pod: PodInfo,
    spans: Option<SpanQueue>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    export_task: Option<tokio::task::JoinHandle<()>>,
    logs: Option<LogQueue>,
    logger_provider: Option<SdkLoggerProvider>,
    log_task: Option<tokio::task::JoinHandle<()>>,
    prometheus: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether OTLP export is on: `telemetry.otlp.enabled`, else whether an
/// endpoint is configured (key or standard environment variable).
/// `OTEL_SDK_DISABLED=true` turns it off.
pub fn otlp_enabled(o: &OtlpConfig) -> bool {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    o.enabled.unwrap_or_else(|| {
        o.endpoint.is_some()
            || [
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            ]
            .iter()
            .any(|v| env_set(v))
    })
}

/// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`) sets `service.name`.
fn names_service(attributes: &str) -> bool {
    attributes.split(',').any(|kv| kv.split_once('=').is_some_and(|(k, _)| k.trim() == "service.name"))
}

fn resource(cfg: &Config) -> Resource {
    let mut b = Resource::builder();
    // Ours only when neither standard variable names the service.
    let in_attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| names_service(&v));
    if !env_set("OTEL_SERVICE_NAME") && !in_attributes {
        b = b.with_service_name("telltale");
    }
    let k = &cfg.kubernetes;
    let mut attrs = vec![KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))];
    for (key, value) in
        [("k8s.pod.name", &k.pod_name), ("k8s.namespace.name", &k.namespace), ("k8s.pod.uid", &k.pod_uid)]
    {
        if let Some(v) = value {
            attrs.push(KeyValue::new(key, v.clone()));
        }
    }
    if let Ok(host) = nix::unistd::gethostname() {
        attrs.push(KeyValue::new("host.name", host.to_string_lossy().into_owned()));
    }
    b.with_attributes(attrs).build()
}

/// gRPC: `[telemetry.otlp] headers`, set on every export request over any
/// `OTEL_EXPORTER_OTLP_HEADERS` entry of the same name (the exporter
/// library would let the environment win). OTLP/HTTP does the same in
/// [`http::RuntimeClient`].
#[derive(Clone)]
struct ConfigMetadata(::http::HeaderMap);

impl tonic::service::Interceptor for ConfigMetadata {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let headers: &mut ::http::HeaderMap = req.metadata_mut().as_mut();
        for (k, v) in &self.0 {
            headers.insert(k.clone(), v.clone());
        }
        Ok(req)
    }
}

fn config_headers(o: &OtlpConfig) -> Result<::http::HeaderMap, TelemetryError> {
    o.header_map().map_err(TelemetryError::Invalid)
}

fn read_tls_file(p: &std::path::PathBuf) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(p).map_err(|source| TelemetryError::TlsFile { path: p.clone(), source })
}

/// gRPC TLS: the configured CA (else the system's and the webpki roots),
/// client identity and server name. Used only for an https:// endpoint.
fn tonic_tls(r: &Resolved) -> Result<tonic::transport::ClientTlsConfig, TelemetryError> {
    let mut c = tonic::transport::ClientTlsConfig::new();
    let Some(t) = &r.tls else { return Ok(c.with_enabled_roots()) };
    c = match &t.ca {
        Some(ca) => c.ca_certificate(tonic::transport::Certificate::from_pem(read_tls_file(ca)?)),
        None => c.with_enabled_roots(),
    };
    if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
        c = c.identity(tonic::transport::Identity::from_pem(read_tls_file(cert)?, read_tls_file(key)?));
    }
    if let Some(d) = &t.domain {
        c = c.domain_name(d.clone());
    }
    Ok(c)
}

/// The reqwest client of OTLP/HTTP: timeout, TLS, configured headers.
fn http_client(r: &Resolved, headers: ::http::HeaderMap) -> Result<http::RuntimeClient, TelemetryError> {
    let mut b = reqwest::Client::builder().timeout(r.timeout);
    if let Some(t) = &r.tls {
        let bad = |what: &str, e: reqwest::Error| TelemetryError::Invalid(format!("telemetry.otlp.tls.{what}: {e}"));
        if let Some(ca) = &t.ca {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&read_tls_file(ca)?).map_err(|e| bad("ca", e))?);
        }
        if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
            let mut pem = read_tls_file(cert)?;
            pem.extend(read_tls_file(key)?);
            b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad("cert", e))?);
        }
    }
    let client = b.build().map_err(|e| TelemetryError::Invalid(format!("OTLP HTTP client: {e}")))?;
    Ok(http::RuntimeClient::new(tokio::runtime::Handle::current(), client, headers))
}

fn with_tonic<B: WithExportConfig + WithTonicConfig>(b: B, r: &Resolved, o: &OtlpConfig) -> Result<B, TelemetryError> {
    let mut b =
        b.with_protocol(opentelemetry_otlp::Protocol::Grpc).with_timeout(r.timeout).with_endpoint(r.endpoint.clone());
    if r.is_https() {
        b = b.with_tls_config(tonic_tls(r)?);
    }
    Ok(b.with_interceptor(ConfigMetadata(config_headers(o)?)))
}

fn with_http<B: WithExportConfig + WithHttpConfig>(b: B, r: &Resolved, o: &OtlpConfig) -> Result<B, TelemetryError> {
    Ok(b.with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(r.timeout)
        .with_endpoint(r.endpoint.clone())
        .with_http_client(http_client(r, config_headers(o)?)?))
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn span_exporter(o: &OtlpConfig, r: &Resolved) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let err =
        |e: opentelemetry_otlp::ExporterBuildError| TelemetryError::Exporter { what: "trace", detail: e.to_string() };
    let b = opentelemetry_otlp::SpanExporter::builder();
    match r.protocol {
        OtlpProtocol::Grpc => with_tonic(b.with_tonic(), r, o)?.build().map_err(err),
        OtlpProtocol::HttpProtobuf => with_http(b.with_http(), r, o)?.build().map_err(err),
    }
}

fn log_exporter(o: &OtlpConfig, r: &Resolved) -> Result<opentelemetry_otlp::LogExporter, TelemetryError> {
    let err =
        |e: opentelemetry_otlp::ExporterBuildError| TelemetryError::Exporter { what: "log", detail: e.to_string() };
    let b = opentelemetry_otlp::LogExporter::builder();
    match r.protocol {
        OtlpProtocol::Grpc => with_tonic(b.with_tonic(), r, o)?.build().map_err(err),
        OtlpProtocol::HttpProtobuf => with_http(b.with_http(), r, o)?.build().map_err(err),
    }
}

/// Anomalies as log records: the SDK's logger provider with its batch
/// processor (bounded and counted), fed by a task from `queue`'s receiver.
fn start_logs(
    o: &OtlpConfig,
    resource: Resource,
    pod: PodInfo,
    metrics: &Arc<Metrics>,
) -> Result<(LogQueue, SdkLoggerProvider, tokio::task::JoinHandle<()>), TelemetryError> {
    use opentelemetry::logs::LoggerProvider as _;
    use opentelemetry_sdk::logs::{BatchConfigBuilder, BatchLogProcessor};
    let r = settings::resolve(o, OtlpSignal::Logs, &env_var)?;
    let exporter = log_exporter(o, &r)?;
    tracing::info!(endpoint = %r.endpoint, protocol = ?r.protocol, timeout = ?r.timeout, "OTLP log export of anomalies on.");
    let in_flight = log_export::InFlight::new(metrics.clone());
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(o.queue_size)
        .with_max_export_batch_size(o.batch_size)
        .with_scheduled_delay(o.batch_delay)
        .build();
    let batch = BatchLogProcessor::builder(log_export::Counted::new(exporter, in_flight.clone()))
        .with_batch_config(config)
        .build();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(log_export::Bounded { inner: batch, capacity: o.queue_size, in_flight })
        .with_resource(resource)
        .build();
    let (queue, rx) = LogQueue::new(o.queue_size, metrics.clone());
    let records = log_export::Records { pod, traced: o.traces.then_some(o.sampling) };
    let logger = provider.logger_with_scope(spans::scope());
    Ok((queue, provider, tokio::spawn(log_export::run(logger, rx, records))))
}

fn metric_exporter(o: &OtlpConfig, r: &Resolved) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    let err =
        |e: opentelemetry_otlp::ExporterBuildError| TelemetryError::Exporter { what: "metric", detail: e.to_string() };
    let b = opentelemetry_otlp::MetricExporter::builder();
    match r.protocol {
        OtlpProtocol::Grpc => with_tonic(b.with_tonic(), r, o)?.build().map_err(err),
        OtlpProtocol::HttpProtobuf => with_http(b.with_http(), r, o)?.build().map_err(err),
    }
}

async fn serve_prometheus(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::http::{header, StatusCode};
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                match metrics::prometheus_text(&metrics) {
                    Ok(text) => (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        text,
                    ),
                    Err(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        "encoding the metrics failed\n".to_owned(),
                    ),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "Prometheus endpoint stopped.");
    }
}

impl Telemetry {
    /// Start what `cfg.telemetry` asks for (nothing exports by default).
    pub async fn start(cfg: &Config) -> Result<Self, TelemetryError> {
        let metrics = Arc::new(Metrics::default());
        let o = &cfg.telemetry.otlp;
        let pod = PodInfo { name: cfg.kubernetes.pod_name.clone(), namespace: cfg.kubernetes.namespace.clone() };
        let mut t = Telemetry {
            metrics: metrics.clone(),
            pod,
            spans: None,
            tracer_provider: None,
            meter_provider: None,
            export_task: None,
            logs: None,
            logger_provider: None,
            log_task: None,
            prometheus: None,
        };
        if otlp_enabled(o) {
            let resource = resource(cfg);
            if o.traces {
                let r = settings::resolve(o, OtlpSignal::Traces, &env_var)?;
                let mut exporter = span_exporter(o, &r)?;
                tracing::info!(endpoint = %r.endpoint, protocol = ?r.protocol, timeout = ?r.timeout, "OTLP trace export on.");
                opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
                let (queue, rx) = SpanQueue::new(o.queue_size, metrics.clone());
                let batching = export::Batching {
                    pod: t.pod.clone(),
                    sampling: o.sampling,
                    size: o.batch_size,
                    delay: o.batch_delay,
                    attempts: 3,
                    backoff: Duration::from_millis(500),
                };
                t.export_task = Some(tokio::spawn(export::run(exporter, rx, batching, metrics.clone())));
                let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                    opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(o.sampling),
                ));
                t.tracer_provider = Some(
                    SdkTracerProvider::builder()
                        .with_span_processor(export::QueueProcessor(queue.clone()))
                        .with_sampler(sampler)
                        .with_resource(resource.clone())
                        .build(),
                );
                t.spans = Some(queue);
            }
            if o.logs {
                let (queue, provider, task) = start_logs(o, resource.clone(), t.pod.clone(), &metrics)?;
                t.logs = Some(queue);
                t.logger_provider = Some(provider);
                t.log_task = Some(task);
            }
            if o.metrics {
                let r = settings::resolve(o, OtlpSignal::Metrics, &env_var)?;
                tracing::info!(endpoint = %r.endpoint, protocol = ?r.protocol, timeout = ?r.timeout, "OTLP metric export on.");
                let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter(o, &r)?)
                    .with_interval(o.metrics_interval)
                    .build();
                let provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
                metrics::register_otel(&opentelemetry::metrics::MeterProvider::meter(&provider, "telltale"), &metrics);
                t.meter_provider = Some(provider);
            }
        }
        let prom = &cfg.telemetry.prometheus;
        if prom.enabled {
            let listener = tokio::net::TcpListener::bind(prom.listen)
                .await
                .map_err(|source| TelemetryError::Prometheus { addr: prom.listen, source })?;
            let addr = listener.local_addr().unwrap_or(prom.listen);
            t.prometheus = Some((addr, tokio::spawn(serve_prometheus(listener, metrics))));
        }
        Ok(t)
    }

    /// Where `/metrics` is served, when it is.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(a, _)| *a)
    }

    /// The tracer for API calls, when traces are exported.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.tracer_provider.as_ref().map(|p| opentelemetry::trace::TracerProvider::tracer(p, "telltale.api"))
    }

    /// A new signal: the root span of its trace.
    pub fn signal_opened(&self, s: &Signal) {
        if let Some(q) = &self.spans {
            q.push(export::Item::Opened(Box::new(s.summary_copy())));
        }
    }

    /// An anomaly (as streamed) of signal `signal_id`: counted, and queued
    /// for its span and its log record.
    pub fn anomaly(&self, a: &crate::bus::Sequenced, signal_id: &str) {
        self.metrics.anomaly(a.1.event_type.name(), &a.1.container.image);
        let latency = time::OffsetDateTime::now_utc() - a.1.event.time;
        self.metrics.detection_latency(a.1.event_type.name(), latency.as_seconds_f64());
        if let Some(q) = &self.spans {
            q.push(export::Item::Anomaly(a.clone(), signal_id.to_owned()));
        }
        if let Some(q) = &self.logs {
            q.push(a.clone(), signal_id.to_owned());
        }
    }

    /// A triage change of a signal.
    pub fn signal_updated(&self, s: &Signal, principal: &str) {
        if let Some(q) = &self.spans {
            q.push(export::Item::Updated(
                Box::new(s.summary_copy()),
                principal.to_owned(),
                std::time::SystemTime::now(),
            ));
        }
    }

    /// Export what is queued (waiting at most `timeout`) and stop.
    pub async fn shutdown(mut self, timeout: Duration) {
        self.spans = None;
        self.tracer_provider = None; // drops the processor's queue sender
        if let Some(task) = self.export_task.take() {
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!("OTLP trace export did not finish in time; the rest is dropped.");
            }
        }
        self.logs = None; // the record task drains the queue into the batch processor and ends
        if let Some(task) = self.log_task.take() {
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!("OTLP log records were not all handed over in time; the rest is dropped.");
            }
        }
        if let Some(p) = self.logger_provider.take() {
            // Exports what the batch processor holds; its export thread blocks its caller.
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || p.shutdown_with_timeout(timeout)).await {
                tracing::warn!(error = %e, "OTLP log export did not finish; the rest is dropped.");
            }
        }
        if let Some(p) = self.meter_provider.take() {
            // The periodic reader's final export blocks its caller.
            let _ = tokio::task::spawn_blocking(move || p.shutdown_with_timeout(timeout)).await;
        }
        if let Some((_, task)) = self.prometheus.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names_service;

    #[test]
    fn resource_attributes_may_name_the_service() {
        assert!(names_service("service.name=shop-telltale"));
        assert!(names_service("deployment.environment=prod, service.name = x"));
        assert!(!names_service("service.namespace=shop,deployment.environment=prod"));
        assert!(!names_service(""));
    }
}
