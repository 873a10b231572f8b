//! The HTTPS edge: the `telltale-injector` binary's server.
//!
//! TLS by rustls (ring), HTTP/1.1 by hyper, routing by axum. Each
//! connection runs in its own task with a handshake and header timeout; the
//! number of connections is capped. Bodies over [`MAX_BODY_BYTES`] and
//! bodies that are not an `AdmissionReview` get HTTP 400 with a message.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::fleet::{FleetFlags, FleetSettings};
use crate::inject::Mode;
use crate::overrides::Settings;
use crate::review::{self, AdmissionReview};
use crate::{overrides, InjectError, HEALTH_PATH, NAMESPACE_OPT_IN_PATH, POD_OPT_IN_PATH};

/// Largest request body accepted (the API server caps objects at 3 MiB too).
pub const MAX_BODY_BYTES: usize = 3 << 20;
/// A larger body is still read (and discarded) up to this size so that the
/// client gets the 400 rather than a reset; beyond it the connection is dropped.
const DRAIN_BYTES: usize = 16 << 20;
/// Time for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed right after accept.
const MAX_CONNECTIONS: usize = 512;
/// On SIGTERM, how long requests already being served may take to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `telltale-injector` flags (the binary's whole command line).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "telltale-injector",
    version,
    about = "Serve the mutating admission webhook that injects the telltale sidecar into opted-in pods."
)]
pub struct WebhookArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate chain (PEM), valid for the webhook Service's DNS name.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Private key of the serving certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for a renewal (they are
    /// re-read when they change; no restart needed).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
    /// Sidecar image, unless a pod's `telltale.dev/image` annotation names another.
    #[arg(long, value_name = "IMAGE", default_value = crate::DEFAULT_SIDECAR_IMAGE)]
    pub sidecar_image: String,
    /// Secret (in the pod's namespace) whose `tokens.toml` authenticates the
    /// sidecar API, unless a pod's `telltale.dev/api-token-secret` names another.
    /// Without one the sidecar API listens on 127.0.0.1 only.
    #[arg(long, value_name = "NAME")]
    pub api_token_secret: Option<String>,
    /// An environment variable for every injected sidecar, `KEY=VALUE`
    /// (repeatable), e.g. `OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector.telltale-system:4317`
    /// or `TELLTALE_LEARNING__WARMUP=10m`.
    #[arg(long = "sidecar-env", value_name = "KEY=VALUE")]
    pub sidecar_env: Vec<String>,
    /// Inject native sidecars (the first init container, `restartPolicy:
    /// Always`; Kubernetes 1.29+): the other containers start only once the
    /// sidecar is watching, so their first processes are seen. A pod's
    /// `telltale.dev/native-sidecar` annotation overrides this.
    #[arg(long)]
    pub native_sidecar: bool,
    /// Serve every injected sidecar's Prometheus metrics on `0.0.0.0:9464`
    /// and declare that container port, named `telltale-prom` (what
    /// deploy/observability/podmonitor.yaml scrapes). A pod's
    /// `telltale.dev/metrics` annotation overrides this; a pod whose
    /// containers already declare port 9464 or a port of that name is
    /// injected without the endpoint, with a warning.
    #[arg(long)]
    pub metrics: bool,
    /// Fleet-wide profiles: the etcd client URLs every sidecar uses,
    /// comma-separated, `http(s)://host:port` with one scheme, e.g.
    /// `https://etcd-0.etcd.telltale-system.svc:2379,https://etcd-1.etcd.telltale-system.svc:2379`.
    /// A pod's `telltale.dev/profiles-store: "local"` keeps its profiles local.
    #[arg(long, value_name = "URL,...")]
    pub etcd_endpoints: Option<String>,
    /// The fleet's name in etcd (`[a-z0-9-]{1,63}`; the sidecar's default:
    /// `default`). Needs --etcd-endpoints.
    #[arg(long, value_name = "NAME")]
    pub etcd_cluster: Option<String>,
    /// Key prefix in etcd, starting and ending with `/` (the sidecar's
    /// default: `/telltale/v1/`). Needs --etcd-endpoints.
    #[arg(long, value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// Secret with the etcd client certificate (keys `ca.crt`, `tls.crt`,
    /// `tls.key`), mounted read-only at /etc/telltale/etcd. Secrets are not
    /// shared across namespaces: one of this name must exist in every
    /// namespace whose pods get fleet profiles (a pod's
    /// `telltale.dev/etcd-client-secret` names another). Needs https:// endpoints.
    #[arg(long, value_name = "NAME")]
    pub etcd_client_secret: Option<String>,
}

/// `KEY=VALUE` with a valid variable name that the injector does not set
/// itself ([`telltale_core::contract::env::RESERVED`]).
fn env_pair(raw: &str) -> Result<(String, String), String> {
    let (k, v) = raw.split_once('=').ok_or_else(|| "expected KEY=VALUE".to_owned())?;
    let valid = k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!("{k:?} is not an environment variable name"));
    }
    if telltale_core::contract::env::is_reserved(k) {
        return Err(format!("{k} is set by the injector itself"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

impl WebhookArgs {
    /// The injection defaults these flags set, validated.
    pub fn settings(&self) -> Result<Settings, InjectError> {
        overrides::check_image(&self.sidecar_image).map_err(|reason| InjectError::InvalidFlag {
            flag: "--sidecar-image",
            value: self.sidecar_image.clone(),
            reason,
        })?;
        if let Some(secret) = &self.api_token_secret {
            overrides::check_dns_subdomain(secret).map_err(|reason| InjectError::InvalidFlag {
                flag: "--api-token-secret",
                value: secret.clone(),
                reason,
            })?;
        }
        let sidecar_env = self
            .sidecar_env
            .iter()
            .map(|raw| {
                env_pair(raw).map_err(|reason| InjectError::InvalidFlag {
                    flag: "--sidecar-env",
                    value: raw.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<(String, String)>, _>>()?;
        for (i, (k, _)) in sidecar_env.iter().enumerate() {
            if sidecar_env[..i].iter().any(|(earlier, _)| earlier == k) {
                return Err(InjectError::InvalidFlag {
                    flag: "--sidecar-env",
                    value: k.clone(),
                    reason: "given twice".into(),
                });
            }
        }
        let fleet = FleetSettings::from_flags(FleetFlags {
            endpoints: self.etcd_endpoints.as_deref(),
            cluster: self.etcd_cluster.as_deref(),
            prefix: self.etcd_prefix.as_deref(),
            client_secret: self.etcd_client_secret.as_deref(),
        })
        .map_err(|(flag, value, reason)| InjectError::InvalidFlag { flag, value, reason })?;
        if fleet.is_some() {
            if let Some((k, _)) =
                sidecar_env.iter().find(|(k, _)| telltale_core::contract::env::FLEET.contains(&k.as_str()))
            {
                return Err(InjectError::InvalidFlag {
                    flag: "--sidecar-env",
                    value: k.clone(),
                    reason: "set by the injector from the --etcd-* flags".into(),
                });
            }
        }
        if self.metrics {
            if let Some((k, _)) = sidecar_env.iter().find(|(k, _)| telltale_core::contract::env::is_metrics(k)) {
                return Err(InjectError::InvalidFlag {
                    flag: "--sidecar-env",
                    value: k.clone(),
                    reason: "set by the injector with --metrics".into(),
                });
            }
        }
        Ok(Settings {
            sidecar_image: self.sidecar_image.clone(),
            api_token_secret: self.api_token_secret.clone(),
            sidecar_env,
            native_sidecar: self.native_sidecar,
            fleet,
            metrics: self.metrics,
        })
    }
}

/// Serve the webhook on `args.listen` until SIGINT or SIGTERM.
pub async fn serve(args: WebhookArgs) -> Result<(), InjectError> {
    let server = Server::new(&args)?;
    let listener =
        TcpListener::bind(args.listen).await.map_err(|source| InjectError::Bind { addr: args.listen, source })?;
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(InjectError::Signal)?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    info!(listen = %args.listen, image = %args.sidecar_image, "Serving the injection webhook.");
    server.run(listener, shutdown).await;
    info!("Webhook stopped.");
    Ok(())
}

/// A configured webhook server, ready to run on a bound listener.
#[derive(Debug)]
pub struct Server {
    tls: Arc<rustls::ServerConfig>,
    router: Router,
}

#[derive(Debug)]
struct AppState {
    settings: Settings,
}

impl Server {
    /// Load the TLS files and validate the flags.
    pub fn new(args: &WebhookArgs) -> Result<Self, InjectError> {
        let settings = args.settings()?;
        let tls = tls_config(args)?;
        let state = Arc::new(AppState { settings });
        let router = Router::new()
            .route(POD_OPT_IN_PATH, post(|s, r| mutate(s, r, Mode::PodOptIn)))
            .route(NAMESPACE_OPT_IN_PATH, post(|s, r| mutate(s, r, Mode::NamespaceOptIn)))
            .route(HEALTH_PATH, get(|| async { "ok\n" }))
            .with_state(state);
        Ok(Self { tls: Arc::new(tls), router })
    }

    /// Accept connections on `listener` until `shutdown` completes, then
    /// let the requests being served finish (up to 10 s) and close idle
    /// connections. An admission request cut off would, with
    /// `failurePolicy: Ignore`, admit its pod without the sidecar.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        let acceptor = TlsAcceptor::from(self.tls);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "Accepting a connection failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                warn!(%peer, limit = MAX_CONNECTIONS, "Too many connections; closing a new one.");
                continue;
            };
            let tls = acceptor.clone();
            let router = self.router.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _slot = slot;
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return debug!(%peer, error = %e, "TLS handshake failed."),
                    Err(_) => return debug!(%peer, "TLS handshake timed out."),
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
                if let Err(e) = watcher.watch(conn).await {
                    debug!(%peer, error = %e, "Connection ended with an error.");
                }
            });
        }
        drop(listener);
        info!("Stopped accepting; finishing the requests being served.");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            warn!(timeout = ?DRAIN_TIMEOUT, "Requests still open at shutdown were cut off.");
        }
    }
}

fn tls_config(args: &WebhookArgs) -> Result<rustls::ServerConfig, InjectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs =
        crate::certs::ReloadingCert::new(&args.tls_cert, &args.tls_key, args.tls_reload_interval, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(InjectError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request, mode: Mode) -> Response {
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        return bad_request(too_large());
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(request.into_body())).await {
        Ok(Ok(b)) => b,
        Ok(Err(message)) => return bad_request(message),
        Err(_) => return bad_request(format!("request body not received within {}s", BODY_TIMEOUT.as_secs())),
    };
    let request = match review::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            let message = crate::error::chain(&e);
            warn!(error = %message, "Rejected a malformed review.");
            return bad_request(message);
        }
    };
    let answer = review::respond(&request, mode, &state.settings);
    log(&answer, &review::describe(&request), mode);
    match serde_json::to_vec(&answer) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the response: {e}\n")).into_response(),
    }
}

fn log(answer: &AdmissionReview, pod: &str, mode: Mode) {
    let Some(r) = &answer.response else { return };
    let message = r.status.as_ref().map(|s| s.message.as_str()).unwrap_or_default();
    if r.allowed {
        info!(uid = %r.uid, pod, ?mode, patched = r.patch.is_some(), warnings = r.warnings.len(), "Admitted a pod.");
    } else {
        warn!(uid = %r.uid, pod, ?mode, message, "Refused a pod.");
    }
}

/// The body, or a message when it is over [`MAX_BODY_BYTES`] or fails.
async fn read_body(mut body: Body) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the request body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > DRAIN_BYTES {
                return Err(too_large());
            }
            if total <= MAX_BODY_BYTES {
                buf.extend_from_slice(&data);
            }
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(buf)
}

fn too_large() -> String {
    format!("request body is larger than {} MiB", MAX_BODY_BYTES >> 20)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n"))
        .into_response()
}
