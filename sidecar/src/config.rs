//! Configuration: defaults ← TOML file ← environment (`TELLTALE_…`, nested
//! with `__`) ← command-line flags (figment). Unknown keys and invalid values
//! are rejected at start-up with a message naming the key.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use telltale_core::profile::lifecycle::LearningConfig;

/// Environment variables with the `TELLTALE_` prefix that are not
/// configuration keys (they belong to tools and tests).
const NOT_CONFIG: &[&str] = &["log", "skip_kernel_tests", "addr", "token", "vmlinux_h", "clang", "container_name"];

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite store lives.
    pub data_dir: PathBuf,
    /// The pod cgroup (absolute, or relative to the cgroup2 mount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// Image of containers not listed in `containers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Also write anomalies as JSON lines to this file (`-`: stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomalies_json: Option<String>,
    /// Learning lifecycle durations.
    pub learning: LearningConfig,
    /// Container → image map.
    #[serde(default)]
    pub containers: Vec<ContainerImage>,
    /// The gRPC API.
    pub api: ApiConfig,
    /// Notification delivery.
    pub notifications: NotificationsConfig,
    /// The pod this sidecar runs in (set by the injector).
    pub kubernetes: KubernetesConfig,
    /// OpenTelemetry export and the Prometheus endpoint.
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP export of traces and metrics.
    pub otlp: OtlpConfig,
    /// Prometheus scrape endpoint.
    pub prometheus: PrometheusConfig,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `[telemetry.otlp]`. Unset keys fall back to the standard
/// `OTEL_EXPORTER_OTLP_*` environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Export at all (default: when `endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Collector URL, e.g. `http://otel-collector:4317`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (default: `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Extra headers (gRPC metadata), e.g. an API key; they win over
    /// `OTEL_EXPORTER_OTLP_HEADERS` entries of the same name.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Timeout of one export (default: `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<std::time::Duration>,
    /// TLS to the collector (an `https://` endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTlsConfig>,
    /// Export traces (one per signal, and API calls).
    pub traces: bool,
    /// Export metrics.
    pub metrics: bool,
    /// Share of signals (and API calls without a sampled parent) traced, 0.0–1.0.
    pub sampling: f64,
    /// Spans waiting for export; more are dropped (and counted).
    pub queue_size: usize,
    /// Spans per export request.
    pub batch_size: usize,
    /// Longest wait before a partial batch is sent.
    #[serde(with = "humantime_serde")]
    pub batch_delay: std::time::Duration,
    /// How often metrics are exported.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: std::time::Duration,
}

impl OtlpConfig {
    /// `headers` as HTTP headers (gRPC metadata), or why one is invalid.
    pub fn header_map(&self) -> Result<http::HeaderMap, String> {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            let n = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("key `telemetry.otlp.headers`: {name:?} is not a valid header name"))?;
            let v = http::HeaderValue::from_str(value).map_err(|_| {
                format!("key `telemetry.otlp.headers.{name}`: not a valid header value (visible ASCII only)")
            })?;
            map.insert(n, v);
        }
        Ok(map)
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: None,
            protocol: None,
            headers: Default::default(),
            timeout: None,
            tls: None,
            traces: true,
            metrics: true,
            sampling: 1.0,
            queue_size: 16384,
            batch_size: 512,
            batch_delay: std::time::Duration::from_secs(2),
            metrics_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// `[telemetry.otlp.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpTlsConfig {
    /// PEM CA bundle that signed the collector's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (mTLS), with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Server name to verify (default: the endpoint's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// `[telemetry.prometheus]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Serve `/metrics` (off by default).
    pub enabled: bool,
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self { enabled: false, listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)) }
    }
}

/// `[kubernetes]`: the pod the sidecar runs in. The injector sets these
/// through the downward API (`TELLTALE_KUBERNETES__…`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Watch the pod this process runs in: its cgroup is found from the
    /// sidecar's own cgroup or `pod_uid` (instead of `cgroup`).
    pub enabled: bool,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Pod namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod UID (locates the pod cgroup when the sidecar's own cgroup is
    /// hidden by a cgroup namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// JSON object `{"container name": "image"}`: the injector's map, a
    /// downward-API file of the pod annotation `telltale.dev/containers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers_file: Option<PathBuf>,
    /// Where the service account's `token`, `ca.crt` and `namespace` are
    /// (default `/var/run/secrets/kubernetes.io/serviceaccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_dir: Option<PathBuf>,
}

/// `[notifications]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// At most one message per signal, rule and target in this window
    /// (updates in between are coalesced into the next message).
    #[serde(with = "humantime_serde")]
    pub rate_limit: std::time::Duration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self { rate_limit: std::time::Duration::from_secs(60) }
    }
}

/// `[api]`: the gRPC server of `telltale run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API at all.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
    /// How long anomalies are kept for streaming and resuming.
    #[serde(with = "humantime_serde")]
    pub anomaly_retention: std::time::Duration,
    /// Largest request accepted (bytes).
    pub max_request_bytes: usize,
    /// Per-request timeout (unary calls).
    #[serde(with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// How many live anomalies a stream client may fall behind before it is
    /// told it lagged (and where to resume).
    pub stream_buffer: usize,
    /// Bearer tokens (only their SHA-256 is stored).
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
    /// More tokens: a TOML file of `[[tokens]]` entries (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// TLS (rustls); with `client_ca`, clients must present a certificate (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 7443)),
            anomaly_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            max_request_bytes: 1 << 20,
            request_timeout: std::time::Duration::from_secs(30),
            stream_buffer: 1024,
            tokens: Vec::new(),
            tokens_file: None,
            tls: None,
        }
    }
}

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who uses it (shown in the audit trail).
    pub principal: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
}

/// API roles, each including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read and stream.
    Viewer,
    /// Also add to profiles and triage signals.
    Responder,
    /// Also notification rules and settings.
    Admin,
}

/// `[api.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients need a certificate it signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// One `[[containers]]` entry: which image a container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerImage {
    /// The container's cgroup directory name (or its container id).
    pub cgroup: String,
    /// Container name to show (default: the cgroup name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image reference, e.g. `registry.example.com/team/app:v2`.
    pub image: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/telltale"),
            cgroup: None,
            image: None,
            anomalies_json: None,
            learning: LearningConfig::default(),
            containers: Vec::new(),
            api: ApiConfig::default(),
            notifications: NotificationsConfig::default(),
            kubernetes: KubernetesConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// Values given on the command line (they win over everything).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--cgroup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// `--image`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `--anomalies-json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomalies_json: Option<String>,
    /// `--pod`: `kubernetes.enabled = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesOverrides>,
}

/// Command-line values of `[kubernetes]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KubernetesOverrides {
    /// `--pod`.
    pub enabled: bool,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The given file does not exist.
    #[error("config file {0} does not exist")]
    NoFile(PathBuf),
    /// Parsing or validation failed (the message names the key).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn describe(e: figment::Error) -> ConfigError {
    let msgs: Vec<String> = e
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { String::new() } else { format!("key `{}`: ", e.path.join(".")) };
            let source = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect();
    ConfigError::Invalid(msgs.join("; "))
}

impl Config {
    /// Load: defaults ← `file` ← `TELLTALE_*` environment ← `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::NoFile(f.to_owned()));
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        let env = Env::prefixed("TELLTALE_")
            .split("__")
            .filter(|k| !NOT_CONFIG.iter().any(|n| k.as_str().eq_ignore_ascii_case(n)));
        fig = fig.merge(env).merge(Serialized::defaults(overrides));
        let mut cfg: Config = fig.extract().map_err(describe)?;
        cfg.load_tokens_file()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Append the tokens of `api.tokens_file`.
    fn load_tokens_file(&mut self) -> Result<(), ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TokensFile {
            #[serde(default)]
            tokens: Vec<ApiToken>,
        }
        let Some(path) = &self.api.tokens_file else { return Ok(()) };
        if !path.exists() {
            return Err(ConfigError::Invalid(format!("key `api.tokens_file`: {} does not exist", path.display())));
        }
        let file: TokensFile = Figment::from(Toml::file_exact(path))
            .extract()
            .map_err(|e| ConfigError::Invalid(format!("key `api.tokens_file` ({}): {e}", path.display())))?;
        self.api.tokens.extend(file.tokens);
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.learning;
        if l.min_duration > l.max_duration {
            return Err(ConfigError::Invalid(format!(
                "key `learning.min_duration` ({}) is longer than `learning.max_duration` ({})",
                humantime::format_duration(l.min_duration),
                humantime::format_duration(l.max_duration)
            )));
        }
        for (i, c) in self.containers.iter().enumerate() {
            telltale_core::workload::image::ImageRef::parse(&c.image)
                .map_err(|e| ConfigError::Invalid(format!("key `containers[{i}].image`: {e}")))?;
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "key `api.tokens[{i}].sha256`: expected 64 hex characters (printf %s TOKEN | sha256sum)"
                )));
            }
            if t.principal.trim().is_empty() {
                return Err(ConfigError::Invalid(format!("key `api.tokens[{i}].principal` is empty")));
            }
        }
        if self.api.enabled
            && !self.api.listen.ip().is_loopback()
            && self.api.tokens.is_empty()
            && self.api.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "key `api.listen` = {} is not a loopback address and no authentication is configured: \
                 add [[api.tokens]] or [api.tls] client_ca, or listen on 127.0.0.1",
                self.api.listen
            )));
        }
        if self.api.stream_buffer == 0 {
            return Err(ConfigError::Invalid("key `api.stream_buffer` must be at least 1".into()));
        }
        let o = &self.telemetry.otlp;
        if !(0.0..=1.0).contains(&o.sampling) {
            return Err(ConfigError::Invalid(format!(
                "key `telemetry.otlp.sampling` = {} is not within 0.0–1.0",
                o.sampling
            )));
        }
        if o.queue_size == 0 || o.batch_size == 0 || o.batch_size > o.queue_size {
            return Err(ConfigError::Invalid(format!(
                "keys `telemetry.otlp.queue_size` ({}) and `batch_size` ({}) must be at least 1, batch_size no larger than queue_size",
                o.queue_size, o.batch_size
            )));
        }
        if let Some(e) = &o.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "key `telemetry.otlp.endpoint` = {e:?}: expected an http:// or https:// URL"
                )));
            }
        }
        if o.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::Invalid("key `telemetry.otlp.timeout` must be longer than 0s".into()));
        }
        o.header_map().map_err(ConfigError::Invalid)?;
        if let (Some(e), Some(_)) = (&o.endpoint, &o.tls) {
            if !e.starts_with("https://") {
                return Err(ConfigError::Invalid(format!(
                    "key `telemetry.otlp.tls` is set but `telemetry.otlp.endpoint` = {e:?} is not an https:// URL: \
                     the connection would be plain text"
                )));
            }
        }
        if o.metrics_interval.is_zero() {
            return Err(ConfigError::Invalid("key `telemetry.otlp.metrics_interval` must be longer than 0s".into()));
        }
        if let Some(image) = &self.image {
            telltale_core::workload::image::ImageRef::parse(image)
                .map_err(|e| ConfigError::Invalid(format!("key `image`: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with_file(text: &str, f: impl FnOnce(&Path)) {
        // Tests run in parallel: one file per call.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("telltale-cfg-{}-{n}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        f(&p);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn tokens_file_adds_tokens_and_names_bad_ones() {
        let sha = "a".repeat(64);
        let p = std::env::temp_dir().join(format!("telltale-tokens-{}.toml", std::process::id()));
        std::fs::write(&p, format!("[[tokens]]\nprincipal = \"ci\"\nrole = \"viewer\"\nsha256 = \"{sha}\"\n")).unwrap();
        with_file(&format!("[api]\ntokens_file = {:?}\n", p.display().to_string()), |f| {
            let c = Config::load(Some(f), &Overrides::default()).unwrap();
            assert_eq!(c.api.tokens.len(), 1);
            assert_eq!(c.api.tokens[0].principal, "ci");
        });
        std::fs::write(&p, "[[tokens]]\nprincipal = \"ci\"\nrole = \"root\"\nsha256 = \"x\"\n").unwrap();
        with_file(&format!("[api]\ntokens_file = {:?}\n", p.display().to_string()), |f| {
            let e = Config::load(Some(f), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("api.tokens_file") && e.contains("root"), "{e}");
        });
        std::fs::remove_file(&p).unwrap();
        with_file("[api]\ntokens_file = \"/nonexistent/tokens.toml\"\n", |f| {
            let e = Config::load(Some(f), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("does not exist"), "{e}");
        });
    }

    #[test]
    fn pod_flag_and_injector_environment() {
        let o = Overrides { kubernetes: Some(KubernetesOverrides { enabled: true }), ..Overrides::default() };
        with_file("[kubernetes]\npod_name = \"web-1\"\n", |p| {
            let c = Config::load(Some(p), &o).unwrap();
            assert!(c.kubernetes.enabled);
            assert_eq!(c.kubernetes.pod_name.as_deref(), Some("web-1"), "the flag keeps the file's other keys");
        });
        // The injector sets TELLTALE_CONTAINER_NAME on app containers; a
        // sidecar given it too must still start.
        assert!(NOT_CONFIG.contains(&"container_name"));
    }

    #[test]
    fn telemetry_keys_are_checked_and_named() {
        with_file("[telemetry.otlp]\nendpoint = \"http://c:4318\"\nprotocol = \"http/protobuf\"\nsampling = 0.25\n[telemetry.otlp.headers]\nx-api-key = \"k\"\n[telemetry.prometheus]\nenabled = true\n", |f| {
            let c = Config::load(Some(f), &Overrides::default()).unwrap();
            assert_eq!(c.telemetry.otlp.protocol, Some(OtlpProtocol::HttpProtobuf));
            assert_eq!(c.telemetry.otlp.sampling, 0.25);
            assert_eq!(c.telemetry.otlp.headers["x-api-key"], "k");
            assert!(c.telemetry.prometheus.enabled);
        });
        for (toml, key) in [
            ("[telemetry.otlp]\nsampling = 1.5\n", "telemetry.otlp.sampling"),
            ("[telemetry.otlp]\nendpoint = \"collector:4317\"\n", "telemetry.otlp.endpoint"),
            ("[telemetry.otlp]\nprotocol = \"http/json\"\n", "telemetry.otlp.protocol"),
            ("[telemetry.otlp]\nbatch_size = 10\nqueue_size = 5\n", "telemetry.otlp.queue_size"),
            ("[telemetry.otlp]\nendpont = \"http://x\"\n", "endpont"),
            ("[telemetry.otlp]\ntimeout = \"0s\"\n", "telemetry.otlp.timeout"),
            ("[telemetry.otlp.headers]\n\"x key\" = \"v\"\n", "telemetry.otlp.headers"),
            ("[telemetry.otlp.headers]\nauthorization = \"Bearer a\\nb\"\n", "telemetry.otlp.headers.authorization"),
            (
                "[telemetry.otlp]\nendpoint = \"http://c:4317\"\n[telemetry.otlp.tls]\nca = \"/ca.pem\"\n",
                "telemetry.otlp.tls",
            ),
            ("[telemetry.prometheus]\nlisten = \"nowhere\"\n", "telemetry.prometheus.listen"),
        ] {
            with_file(toml, |f| {
                let e = Config::load(Some(f), &Overrides::default()).unwrap_err().to_string();
                assert!(e.contains(key), "{toml}: {e}");
            });
        }
    }

    #[test]
    fn defaults_mirror_the_reference_product() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.learning.min_duration, Duration::from_secs(48 * 3600));
        assert_eq!(c.learning.stable_period, Duration::from_secs(48 * 3600));
        assert_eq!(c.learning.max_duration, Duration::from_secs(120 * 3600));
        // The injector checks a lone learning annotation against these.
        assert_eq!(c.learning.min_duration, telltale_injector::SIDECAR_LEARNING_MIN_DURATION);
        assert_eq!(c.learning.max_duration, telltale_injector::SIDECAR_LEARNING_MAX_DURATION);
        assert_eq!(c.learning.warmup, Duration::from_secs(180));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/telltale"));
    }

    #[test]
    fn file_then_flags() {
        let toml = "data_dir = \"/tmp/x\"\n[learning]\nmin_duration = \"2s\"\n\n[[containers]]\ncgroup = \"web\"\nimage = \"reg/web:v1\"\n";
        with_file(toml, |p| {
            let o = Overrides { data_dir: Some("/tmp/y".into()), ..Overrides::default() };
            let c = Config::load(Some(p), &o).unwrap();
            assert_eq!(c.learning.min_duration, Duration::from_secs(2));
            assert_eq!(c.learning.stable_period, Duration::from_secs(48 * 3600), "unset keys keep defaults");
            assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
            assert_eq!(c.containers[0].image, "reg/web:v1");
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        with_file("[learning]\nmin_duraton = \"2s\"\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("min_duraton"), "{e}");
        });
        with_file("bogus = 1\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("bogus"), "{e}");
        });
        with_file("[learning]\nwarmup = \"soon\"\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("learning.warmup"), "{e}");
        });
        with_file("[[containers]]\ncgroup = \"a\"\nimage = \"bad image\"\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("containers[0].image"), "{e}");
        });
        with_file("[learning]\nmin_duration = \"10h\"\nmax_duration = \"1h\"\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("learning.min_duration"), "{e}");
        });
        with_file("[api]\nlisten = \"0.0.0.0:7443\"\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("api.listen") && e.contains("no authentication"), "{e}");
        });
        with_file("[[api.tokens]]\nprincipal = \"a\"\nrole = \"root\"\nsha256 = \"00\"\n", |p| {
            let e = Config::load(Some(p), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("api.tokens"), "{e}");
        });
        let e = Config::load(Some(Path::new("/no/such/telltale.toml")), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("/no/such/telltale.toml"));
    }
}
