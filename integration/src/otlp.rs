//! A real OTLP receiver for tests and benchmarks: a gRPC server
//! implementing the OTLP trace, logs and metrics services that keeps what
//! it gets.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;

/// What the receiver got: spans and log records with their resource,
/// metric points.
#[derive(Debug, Default)]
pub struct Received {
    pub spans: Vec<(Vec<KeyValue>, Span)>,
    /// Log records with their resource attributes and scope.
    pub logs: Vec<(Vec<KeyValue>, Option<InstrumentationScope>, LogRecord)>,
    /// (metric name, attributes, value) of every data point, in arrival order.
    pub points: Vec<(String, Vec<KeyValue>, f64)>,
    /// How long each trace export is held before it is answered (a slow collector).
    pub delay: std::time::Duration,
    /// The request headers (gRPC metadata) of the last export, lowercase names.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Receiver(pub Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let delay = self.0.lock().unwrap().delay;
        tokio::time::sleep(delay).await;
        let mut r = self.0.lock().unwrap();
        r.headers = ascii_headers(request.metadata().as_ref());
        for rs in request.into_inner().resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    r.spans.push((resource.clone(), s));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut r = self.0.lock().unwrap();
        r.headers = ascii_headers(request.metadata().as_ref());
        for rl in request.into_inner().resource_logs {
            let resource = rl.resource.map(|r| r.attributes).unwrap_or_default();
            for sl in rl.scope_logs {
                for l in sl.log_records {
                    r.logs.push((resource.clone(), sl.scope.clone(), l));
                }
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut r = self.0.lock().unwrap();
        r.headers = ascii_headers(request.metadata().as_ref());
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let points = match m.data {
                        Some(metric::Data::Sum(s)) => s.data_points,
                        Some(metric::Data::Gauge(g)) => g.data_points,
                        _ => vec![],
                    };
                    for p in points {
                        let v = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => f64::NAN,
                        };
                        r.points.push((m.name.clone(), p.attributes, v));
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

/// Header (or metadata) names and text values.
pub fn ascii_headers(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect()
}

/// A receiver serving on `addr` until the returned sender is dropped or fired.
pub async fn serve(
    addr: SocketAddr,
    r: Receiver,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    serve_with(addr, r, None).await
}

/// [`serve`], over TLS when `tls` is given (a collector's https:// endpoint).
pub async fn serve_with(
    addr: SocketAddr,
    r: Receiver,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind receiver");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).expect("receiver TLS");
    }
    let task = tokio::spawn(async move {
        server
            .add_service(TraceServiceServer::new(r.clone()))
            .add_service(LogsServiceServer::new(r.clone()))
            .add_service(MetricsServiceServer::new(r))
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                let _ = rx.await;
            })
            .await
            .expect("receiver");
    });
    (addr, tx, task)
}
