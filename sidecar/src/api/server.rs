//! Serving the API: the listener and its connection limits, TLS (and
//! mTLS), standard health (`grpc.health.v1`, unauthenticated, for probes),
//! server reflection in both versions clients speak (`grpc.reflection.v1`
//! and `v1alpha`: grpcurl speaks v1, grpcio-reflection, evans and grpc_cli
//! only v1alpha) and the `telltale.v1.Telltale` service, both behind the
//! authenticating interceptor. The local admin socket, when there is one,
//! is served the same service and limits by a second server without TLS,
//! whose interceptor identifies callers by their process.

mod listener;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use telltale_proto::v1::telltale_server::TelltaleServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::auth::{Auth, Gate};
use super::local::{LocalChannel, LocalListener};
use super::service::Api;
use super::ApiError;
use crate::config::ApiConfig;

pub(crate) use listener::Accept;
use listener::Incoming;

/// Connections held at once by default.
pub const MAX_CONNECTIONS: usize = 256;

/// Default time a new connection has to send its first bytes and finish
/// the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time a connection may stay silent (live clients answer the
/// keepalive pings well within it).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Default interval of the server's HTTP/2 keepalive pings.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Default time a keepalive ping may go unanswered before the connection
/// is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest response the service sends (a profile export can be large).
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// What the server allows a connection, so that idle or half-open ones
/// cannot pile up (18k idle TCP connections once took the daemon from 50
/// to 321 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once (at least 1), TLS handshakes included;
    /// more wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// Time a new connection has to send its first bytes (the HTTP/2
    /// preface or a TLS ClientHello) and to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection whose peer sent nothing for this long is closed. Keep
    /// it well above `keepalive_interval`: live clients answer the pings.
    pub idle_timeout: Duration,
    /// The server pings a connection it heard nothing from for this long.
    pub keepalive_interval: Duration,
    /// A ping unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_timeout: KEEPALIVE_TIMEOUT,
        }
    }
}

/// The bound listeners (TCP, and the local admin socket if any) and the
/// limits their connections get (each listener's own cap).
#[derive(Debug)]
pub struct Listener {
    tcp: tokio::net::TcpListener,
    local: Option<LocalListener>,
    limits: Limits,
}

impl Listener {
    /// The address it listens on (the port chosen for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The local admin socket's path, if there is one.
    pub fn socket(&self) -> Option<&std::path::Path> {
        self.local.as_ref().map(LocalListener::path)
    }

    /// Serve its connections under `limits` instead.
    pub fn with_limits(self, limits: Limits) -> Self {
        Self { limits, ..self }
    }

    /// The limits its connections get.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// Bind the API's address and, with `local`, the local admin socket (with
/// the default [`Limits`]). Binding first reports errors (address in use)
/// before the daemon starts detecting.
pub async fn bind(cfg: &ApiConfig, local: Option<&LocalChannel>) -> Result<Listener, ApiError> {
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ApiError::Bind { addr: cfg.listen, source })?;
    let local = match local {
        Some(channel) => Some(super::local::bind(channel).await?),
        None => None,
    };
    Ok(Listener { tcp, local, limits: Limits::default() })
}

/// Serve `api` on `listener` until `shutdown` resolves.
pub async fn serve(
    cfg: ApiConfig,
    listener: Listener,
    api: Api,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    let Listener { tcp, local, limits } = listener;
    let failures = api.failures();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<TelltaleServer<Api>>().await;

    let mut builder = server_builder(&cfg, limits);
    if let Some(tls) = &cfg.tls {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|source| ApiError::TlsFile { path: p.clone(), source });
        let mut t = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
            .timeout(limits.handshake_timeout);
        if let Some(ca) = &tls.client_ca {
            t = t.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(t).map_err(|source| ApiError::Serve { addr, source })?;
    }
    // Both servers stop when `shutdown` resolves.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Records of failed authentications leave when their window ends, and
    // every one left when the servers stop.
    let (served_tx, served) = tokio::sync::oneshot::channel::<()>();
    let flusher = tokio::spawn(failures.clone().run(async move {
        let _ = served.await;
    }));
    let tcp_gate = Gate::new(Auth::new(&cfg), failures.clone());
    let tcp_server = add_services(builder, &cfg, api.clone(), health.clone(), tcp_gate, tracer.clone())?
        .serve_with_incoming_shutdown(Incoming::new(tcp, limits), stopped(stop_rx.clone()));
    let tcp_served = async { tcp_server.await.map_err(|source| ApiError::Serve { addr, source }) };
    let result = match local {
        None => tcp_served.await,
        Some(local) => {
            let path = local.path().to_path_buf();
            let local_server =
                add_services(server_builder(&cfg, limits), &cfg, api, health, Gate::local(failures), tracer)?
                    .serve_with_incoming_shutdown(Incoming::new(local, limits), stopped(stop_rx));
            let local_served = async { local_server.await.map_err(|source| ApiError::ServeSocket { path, source }) };
            tokio::try_join!(tcp_served, local_served).map(|_| ())
        }
    };
    stopper.abort();
    drop(served_tx);
    if let Err(e) = flusher.await {
        tracing::warn!(error = %e, "Audit of failed authentications ended abnormally.");
    }
    result
}

/// A server with the request timeout and keepalive of `cfg` and `limits`.
fn server_builder(cfg: &ApiConfig, limits: Limits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .timeout(cfg.request_timeout)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
}

/// Health (open), both reflections and the service (behind `gate`).
fn add_services<H: tonic_health::pb::health_server::Health>(
    builder: tonic::transport::Server,
    cfg: &ApiConfig,
    api: Api,
    health: tonic_health::pb::health_server::HealthServer<H>,
    gate: Gate,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Result<
    tonic::transport::server::Router<
        tower::layer::util::Stack<crate::telemetry::rpc::RpcTraceLayer, tower::layer::util::Identity>,
    >,
    ApiError,
> {
    let telltale = TelltaleServer::new(api)
        .max_decoding_message_size(cfg.max_request_bytes)
        .max_encoding_message_size(MAX_RESPONSE_BYTES);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(telltale_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(ApiError::Reflection)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(ApiError::Reflection)?;
    Ok(builder
        .layer(crate::telemetry::rpc::RpcTraceLayer(tracer))
        .add_service(health)
        .add_service(InterceptedService::new(reflection_v1, gate.clone()))
        .add_service(InterceptedService::new(reflection_v1alpha, gate.clone()))
        .add_service(InterceptedService::new(telltale, gate)))
}

#[cfg(test)]
mod tests;
