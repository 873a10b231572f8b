//! gRPC API calls as server spans: a tower layer around the tonic server
//! that continues an incoming W3C `traceparent` and records `rpc.*`
//! attributes and the gRPC status. A streaming call's span covers the call
//! up to its response headers (the stream itself may last hours).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, SpanKind, Status, Tracer};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

/// The layer; without a tracer it passes calls through untouched.
#[derive(Debug, Clone, Default)]
pub struct RpcTraceLayer(pub Option<SdkTracer>);

impl<S> tower::Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace { inner, tracer: self.0.clone() }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub struct RpcTrace<S> {
    inner: S,
    tracer: Option<SdkTracer>,
}

/// `(rpc.service, rpc.method)` of a gRPC path `/pkg.Service/Method`.
pub fn rpc_names(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// Health checks and reflection are not traced: a probe every few seconds
/// would bury the calls people made in spans nobody reads.
pub fn traced(service: &str) -> bool {
    !(service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection."))
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcTrace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(tracer) = &self.tracer else { return Box::pin(self.inner.call(req)) };
        let (service, method) = rpc_names(req.uri().path());
        if !traced(&service) {
            return Box::pin(self.inner.call(req));
        }
        let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(req.headers()));
        let mut span = tracer
            .span_builder(format!("{service}/{method}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", method),
            ])
            .start_with_context(tracer, &parent);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            match &result {
                Ok(resp) => {
                    // Trailers-only responses (errors) carry grpc-status in the headers.
                    let code = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    span.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
                    if code != 0 {
                        let msg = resp.headers().get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
                        span.set_status(Status::error(msg.to_owned()));
                    }
                }
                Err(e) => span.set_status(Status::error(e.to_string())),
            }
            span.end();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(rpc_names("/telltale.v1.Telltale/GetSignal"), ("telltale.v1.Telltale".into(), "GetSignal".into()));
        assert_eq!(rpc_names("/odd"), ("odd".into(), String::new()));
        assert_eq!(rpc_names(""), (String::new(), String::new()));
    }

    #[test]
    fn probes_and_reflection_are_not_traced() {
        assert!(traced("telltale.v1.Telltale"));
        assert!(!traced("grpc.health.v1.Health"));
        assert!(!traced("grpc.reflection.v1.ServerReflection"));
        assert!(!traced("grpc.reflection.v1alpha.ServerReflection"));
    }
}
