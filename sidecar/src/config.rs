//! Configuration: defaults ← TOML file ← environment (`TELLTALE_…`, nested
//! with `__`) ← command-line flags (figment). Unknown keys and invalid values
//! are rejected at start-up with a message naming the key.
//!
//! Hostile or mistaken input is refused before anything starts:
//!
//! - every numeric, size and duration key has a range ([`ranges`]): a value
//!   outside it is refused by key name (no 4 TiB allocation for
//!   `api.stream_buffer = 100000000000`);
//! - `[api.tls]` files must exist and hold PEM: at least one certificate in
//!   `cert` and `client_ca`, a private key in `key`;
//! - two API tokens with the same hash are refused, naming both principals;
//! - the variables Kubernetes sets for a Service named `telltale…` (service
//!   links: `TELLTALE_PORT`, `TELLTALE_SERVICE_HOST`, …) are not read as
//!   configuration ([`is_service_link`]).
//!
//! The defaults the injector relies on (data directory, API port, learning
//! durations) are those of [`telltale_core::contract`].

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use telltale_core::contract;
use telltale_core::profile::lifecycle::LearningConfig;

/// Environment variables with the `TELLTALE_` prefix that are not
/// configuration keys: the container name the injector sets on app
/// containers, the log filter, and those of tools and tests.
const NOT_CONFIG: &[&str] = &[
    contract::CONTAINER_NAME_ENV,
    contract::LOG_ENV,
    "TELLTALE_SKIP_KERNEL_TESTS",
    "TELLTALE_ADDR",
    "TELLTALE_TOKEN",
    "TELLTALE_SOCKET",
    "TELLTALE_VMLINUX_H",
    "TELLTALE_CLANG",
];

/// Whether environment variable `var` has the shape of one Kubernetes sets
/// for a Service whose name starts with `telltale` (service links, on unless
/// a pod says `enableServiceLinks: false`): with `<SVC>` = `TELLTALE` or
/// `TELLTALE_<MORE>`, the names `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT`,
/// `<SVC>_SERVICE_PORT_<PORT NAME>`, `<SVC>_PORT`, `<SVC>_PORT_<N>_<PROTO>`
/// and `<SVC>_PORT_<N>_<PROTO>_{PROTO,PORT,ADDR}` (`<PROTO>` one of TCP, UDP,
/// SCTP). Such a name has no `__`, so no nested key looks like one, and no
/// top-level key (`data_dir`, `cgroup`, `image`, `anomalies_json`) has
/// these shapes: ignoring them loses no configuration.
pub fn is_service_link(var: &str) -> bool {
    let var = var.to_ascii_uppercase();
    if !var.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
        return false;
    }
    let t: Vec<&str> = var.split('_').collect();
    if t.first() != Some(&"TELLTALE") || t.iter().any(|s| s.is_empty()) {
        return false;
    }
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let proto = |s: &str| matches!(s, "TCP" | "UDP" | "SCTP");
    // `t[..i]` is the service's name, the rest says what the variable is.
    (1..t.len()).any(|i| match &t[i..] {
        ["SERVICE", "HOST"] | ["SERVICE", "PORT", ..] | ["PORT"] => true,
        ["PORT", n, p] | ["PORT", n, p, "PROTO" | "PORT" | "ADDR"] => number(n) && proto(p),
        _ => false,
    })
}

/// The accepted range of every numeric, size and duration key. A value
/// outside is refused at start with a message naming the key and the range.
pub mod ranges {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    const DAY: u64 = 24 * 3600;
    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
    const fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    /// `learning.min_duration`: 0 s – 365 days.
    pub const LEARNING_MIN_DURATION: RangeInclusive<Duration> = secs(0)..=secs(365 * DAY);
    /// `learning.stable_period`: 0 s – 365 days.
    pub const LEARNING_STABLE_PERIOD: RangeInclusive<Duration> = secs(0)..=secs(365 * DAY);
    /// `learning.max_duration`: 1 s – 365 days (and not below `min_duration`).
    pub const LEARNING_MAX_DURATION: RangeInclusive<Duration> = secs(1)..=secs(365 * DAY);
    /// `learning.warmup`: 0 s – 1 day.
    pub const LEARNING_WARMUP: RangeInclusive<Duration> = secs(0)..=secs(DAY);
    /// `api.anomaly_retention`: 1 minute – 10 years.
    pub const API_ANOMALY_RETENTION: RangeInclusive<Duration> = secs(60)..=secs(3650 * DAY);
    /// `api.max_request_bytes`: 1 KiB – 64 MiB.
    pub const API_MAX_REQUEST_BYTES: RangeInclusive<usize> = 1024..=64 << 20;
    /// `api.request_timeout`: 100 ms – 1 hour.
    pub const API_REQUEST_TIMEOUT: RangeInclusive<Duration> = ms(100)..=secs(3600);
    /// `api.stream_buffer` (live anomalies per stream, one broadcast slot
    /// each): 1 – 1,048,576.
    pub const API_STREAM_BUFFER: RangeInclusive<usize> = 1..=1 << 20;
    /// `sensor.ring_buffer`: 64 KiB – 256 MiB (and a power of two).
    pub const SENSOR_RING_BUFFER: RangeInclusive<u32> = 64 << 10..=256 << 20;
    /// `sensor.lease_timeout`: 5 s – 10 minutes.
    pub const SENSOR_LEASE_TIMEOUT: RangeInclusive<Duration> = secs(5)..=secs(600);
    /// `audit.max_age`: 1 day – 10 years.
    pub const AUDIT_MAX_AGE: RangeInclusive<Duration> = secs(DAY)..=secs(3650 * DAY);
    /// `audit.max_records`: 1,000 – 100,000,000.
    pub const AUDIT_MAX_RECORDS: RangeInclusive<u64> = 1_000..=100_000_000;
    /// `notifications.rate_limit`: 0 s (none) – 7 days.
    pub const NOTIFICATIONS_RATE_LIMIT: RangeInclusive<Duration> = secs(0)..=secs(7 * DAY);
    /// `telemetry.otlp.queue_size` (spans waiting): 1 – 262,144.
    pub const OTLP_QUEUE_SIZE: RangeInclusive<usize> = 1..=1 << 18;
    /// `telemetry.otlp.batch_size`: 1 – 16,384 (and not above `queue_size`).
    pub const OTLP_BATCH_SIZE: RangeInclusive<usize> = 1..=1 << 14;
    /// `telemetry.otlp.batch_delay`: 1 ms – 10 minutes.
    pub const OTLP_BATCH_DELAY: RangeInclusive<Duration> = ms(1)..=secs(600);
    /// `telemetry.otlp.metrics_interval`: 1 s – 1 day.
    pub const OTLP_METRICS_INTERVAL: RangeInclusive<Duration> = secs(1)..=secs(DAY);
    /// `telemetry.otlp.timeout`: 1 ms – 10 minutes.
    pub const OTLP_TIMEOUT: RangeInclusive<Duration> = ms(1)..=secs(600);
    /// `profiles.startup_timeout`: 0 s (do not wait) – 10 minutes.
    pub const PROFILES_STARTUP_TIMEOUT: RangeInclusive<Duration> = secs(0)..=secs(600);
    /// `telemetry.otlp.sampling`: 0.0 – 1.0.
    pub const OTLP_SAMPLING: RangeInclusive<f64> = 0.0..=1.0;
}

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
    /// The audit trail's retention.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Notification delivery.
    pub notifications: NotificationsConfig,
    /// The pod this sidecar runs in (set by the injector).
    pub kubernetes: KubernetesConfig,
    /// OpenTelemetry export and the Prometheus endpoint.
    pub telemetry: TelemetryConfig,
    /// Where security profiles are kept: this pod only, or the fleet (etcd).
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// The kernel sensors: the node's shared set and this pod's ring buffer.
    #[serde(default)]
    pub sensor: SensorConfig,
}

/// `[sensor]`: the node set of kernel programs this sidecar joins, and the
/// maps it owns in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Directory on bpffs where the node's shared programs are pinned
    /// (every sidecar of the node must use the same one).
    pub node_dir: PathBuf,
    /// Bytes of this pod's ring buffer: a power of two, 64 KiB – 256 MiB.
    pub ring_buffer: u32,
    /// A sidecar that has not renewed its registration for this long (it
    /// was killed, or is frozen) is removed by the others: 5 s – 10 min.
    #[serde(with = "humantime_serde")]
    pub lease_timeout: std::time::Duration,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            node_dir: PathBuf::from(crate::sensor::node::DEFAULT_ROOT),
            ring_buffer: crate::sensor::DEFAULT_RING_BUFFER,
            lease_timeout: crate::sensor::DEFAULT_LEASE_TIMEOUT,
        }
    }
}

impl SensorConfig {
    /// The sensor options of a sidecar named `name`.
    pub fn options(&self, name: String) -> crate::sensor::SensorOptions {
        crate::sensor::SensorOptions {
            dedup: true,
            node_root: self.node_dir.clone(),
            ring_buffer: self.ring_buffer,
            lease_timeout: self.lease_timeout,
            name,
        }
    }
}

/// `[profiles]`: the profile backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    /// `local` (this sidecar's SQLite store only) or `etcd` (one profile per
    /// short image name for every replica; the local store is the cache).
    pub store: ProfileStore,
    /// How to reach etcd (`[profiles.etcd]`; needed when `store = "etcd"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<telltale_fleet::EtcdConfig>,
    /// At start, how long to wait for the fleet's profiles before judging
    /// events with the local cache (events wait in the ring buffer meanwhile).
    #[serde(with = "humantime_serde")]
    pub startup_timeout: std::time::Duration,
    /// This replica's name in the fleet (written with what it stores):
    /// the pod name by default, else the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            store: ProfileStore::Local,
            etcd: None,
            startup_timeout: std::time::Duration::from_secs(5),
            replica_id: None,
        }
    }
}

/// `profiles.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileStore {
    /// This sidecar's own store.
    Local,
    /// Fleet-wide profiles in etcd.
    Etcd,
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP export of traces, anomaly log records and metrics.
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
    /// Export every anomaly as an OTLP log record as well (not sampled).
    pub logs: bool,
    /// Export metrics.
    pub metrics: bool,
    /// Share of signals (and API calls without a sampled parent) traced, 0.0–1.0.
    pub sampling: f64,
    /// Spans (and, apart, log records) waiting for export; more are dropped (and counted).
    pub queue_size: usize,
    /// Spans (log records) per export request.
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
            logs: true,
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
        Self { enabled: false, listen: contract::metrics_listen_loopback() }
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

/// `[audit]`: how long the audit trail is kept. Once a minute the daemon
/// removes the oldest records past either bound (each with 1 % slack, so
/// removal comes in batches), keeps the chain verifiable from the last one
/// removed, and records the removal in the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this are removed.
    #[serde(with = "humantime_serde")]
    pub max_age: std::time::Duration,
    /// At most this many records are kept (the oldest go first).
    pub max_records: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { max_age: std::time::Duration::from_secs(365 * 24 * 3600), max_records: 1_000_000 }
    }
}

impl AuditConfig {
    /// The bounds, for [`crate::store::Store::prune_audit`].
    pub fn retention(&self) -> telltale_core::audit::Retention {
        telltale_core::audit::Retention {
            max_age_ms: i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX),
            max_records: self.max_records,
        }
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
    /// The local admin channel: a Unix socket (mode 0600) whose callers
    /// are identified by their process, and refused when that process is in
    /// a watched cgroup. `true` (the default): `<data_dir>/api.sock`; a path
    /// (relative ones are taken in the data directory); `false`: none.
    #[serde(default)]
    pub socket: ApiSocket,
}

/// The file name of the local admin socket in the data directory.
pub const API_SOCKET_FILE: &str = "api.sock";

/// `api.socket`: on (in the data directory), off, or at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ApiSocket {
    /// `true`: `<data_dir>/api.sock`; `false`: no socket.
    Enabled(bool),
    /// This path.
    Path(PathBuf),
}

impl Default for ApiSocket {
    fn default() -> Self {
        ApiSocket::Enabled(true)
    }
}

impl ApiConfig {
    /// Where the local admin socket listens, if it does (`data_dir` for
    /// the default and relative paths).
    pub fn socket_path(&self, data_dir: &Path) -> Option<PathBuf> {
        match &self.socket {
            ApiSocket::Enabled(false) => None,
            ApiSocket::Enabled(true) => Some(data_dir.join(API_SOCKET_FILE)),
            ApiSocket::Path(p) => Some(data_dir.join(p)),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: contract::api_listen_loopback(),
            anomaly_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            max_request_bytes: 1 << 20,
            request_timeout: std::time::Duration::from_secs(30),
            stream_buffer: 1024,
            tokens: Vec::new(),
            tokens_file: None,
            tls: None,
            socket: ApiSocket::default(),
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

/// `[api.tls]`. Checked at start: each file exists (at most 1 MiB) and
/// holds PEM, at least one certificate in `cert` and `client_ca`, a private
/// key in `key`.
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
            data_dir: PathBuf::from(contract::DATA_DIR),
            cgroup: None,
            image: None,
            anomalies_json: None,
            learning: LearningConfig::default(),
            containers: Vec::new(),
            api: ApiConfig::default(),
            audit: AuditConfig::default(),
            notifications: NotificationsConfig::default(),
            kubernetes: KubernetesConfig::default(),
            telemetry: TelemetryConfig::default(),
            profiles: ProfilesConfig::default(),
            sensor: SensorConfig::default(),
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
        // `k` is the variable without the prefix, nested parts already joined
        // with `.` (so no nested key can look like a service link).
        let env = Env::prefixed(contract::ENV_PREFIX).split(contract::ENV_NESTING).filter(|k| {
            let var = format!("{}{}", contract::ENV_PREFIX, k.as_str());
            !NOT_CONFIG.iter().any(|n| var.eq_ignore_ascii_case(n)) && !is_service_link(&var)
        });
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
        self.check_ranges()?;
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
        check_unique_tokens(&self.api.tokens)?;
        if let Some(tls) = &self.api.tls {
            check_tls(tls)?;
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
        let o = &self.telemetry.otlp;
        if o.batch_size > o.queue_size {
            return Err(ConfigError::Invalid(format!(
                "key `telemetry.otlp.batch_size` ({}) is larger than `telemetry.otlp.queue_size` ({})",
                o.batch_size, o.queue_size
            )));
        }
        if let Some(e) = &o.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "key `telemetry.otlp.endpoint` = {e:?}: expected an http:// or https:// URL"
                )));
            }
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
        if let Some(image) = &self.image {
            telltale_core::workload::image::ImageRef::parse(image)
                .map_err(|e| ConfigError::Invalid(format!("key `image`: {e}")))?;
        }
        self.check_profiles()
    }

    /// `[profiles]`: an etcd store needs its `[profiles.etcd]` section, and
    /// that section only makes sense with it.
    fn check_profiles(&self) -> Result<(), ConfigError> {
        let p = &self.profiles;
        match (p.store, &p.etcd) {
            (ProfileStore::Etcd, None) => {
                return Err(ConfigError::Invalid(
                    "key `profiles.store` = \"etcd\" needs a [profiles.etcd] section with `endpoints`".into(),
                ))
            }
            (ProfileStore::Local, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "key `profiles.etcd` is set but `profiles.store` is \"local\": set store = \"etcd\" or remove it"
                        .into(),
                ))
            }
            (ProfileStore::Etcd, Some(e)) => {
                e.validate()
                    .map_err(|e| ConfigError::Invalid(format!("key `profiles.etcd.{}`: {}", e.key, e.reason)))?;
            }
            (ProfileStore::Local, None) => {}
        }
        if !ranges::PROFILES_STARTUP_TIMEOUT.contains(&p.startup_timeout) {
            return Err(ConfigError::Invalid(format!(
                "key `profiles.startup_timeout` = {} is out of range (0s – 10m)",
                humantime::format_duration(p.startup_timeout)
            )));
        }
        if let Some(id) = &p.replica_id {
            if id.is_empty() || id.len() > 253 || id.chars().any(char::is_control) {
                return Err(ConfigError::Invalid(
                    "key `profiles.replica_id`: 1–253 characters, no control characters".into(),
                ));
            }
        }
        Ok(())
    }

    /// This replica's name in the fleet.
    pub fn replica_id(&self) -> String {
        if let Some(id) = self.profiles.replica_id.clone().or_else(|| self.kubernetes.pod_name.clone()) {
            return id;
        }
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "telltale".into())
    }

    /// Every numeric key against its [`ranges`] entry.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        use ranges as r;
        let (l, a, o) = (&self.learning, &self.api, &self.telemetry.otlp);
        for (key, value, range) in [
            ("learning.min_duration", l.min_duration, r::LEARNING_MIN_DURATION),
            ("learning.stable_period", l.stable_period, r::LEARNING_STABLE_PERIOD),
            ("learning.max_duration", l.max_duration, r::LEARNING_MAX_DURATION),
            ("learning.warmup", l.warmup, r::LEARNING_WARMUP),
            ("api.anomaly_retention", a.anomaly_retention, r::API_ANOMALY_RETENTION),
            ("api.request_timeout", a.request_timeout, r::API_REQUEST_TIMEOUT),
            ("notifications.rate_limit", self.notifications.rate_limit, r::NOTIFICATIONS_RATE_LIMIT),
            ("audit.max_age", self.audit.max_age, r::AUDIT_MAX_AGE),
            ("sensor.lease_timeout", self.sensor.lease_timeout, r::SENSOR_LEASE_TIMEOUT),
            ("telemetry.otlp.batch_delay", o.batch_delay, r::OTLP_BATCH_DELAY),
            ("telemetry.otlp.metrics_interval", o.metrics_interval, r::OTLP_METRICS_INTERVAL),
        ]
        .into_iter()
        .chain(o.timeout.map(|t| ("telemetry.otlp.timeout", t, r::OTLP_TIMEOUT)))
        {
            within(key, value, &range, |d| humantime::format_duration(*d).to_string())?;
        }
        for (key, value, range) in [
            ("api.max_request_bytes", a.max_request_bytes, r::API_MAX_REQUEST_BYTES),
            ("api.stream_buffer", a.stream_buffer, r::API_STREAM_BUFFER),
            ("telemetry.otlp.queue_size", o.queue_size, r::OTLP_QUEUE_SIZE),
            ("telemetry.otlp.batch_size", o.batch_size, r::OTLP_BATCH_SIZE),
        ] {
            within(key, value, &range, usize::to_string)?;
        }
        within("audit.max_records", self.audit.max_records, &r::AUDIT_MAX_RECORDS, u64::to_string)?;
        within("sensor.ring_buffer", self.sensor.ring_buffer, &r::SENSOR_RING_BUFFER, u32::to_string)?;
        if !self.sensor.ring_buffer.is_power_of_two() {
            return Err(ConfigError::Invalid(format!(
                "key `sensor.ring_buffer` = {} is not a power of two (e.g. 2097152 for 2 MiB)",
                self.sensor.ring_buffer
            )));
        }
        if !self.sensor.node_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "key `sensor.node_dir` = {:?} is not an absolute path",
                self.sensor.node_dir
            )));
        }
        within("telemetry.otlp.sampling", o.sampling, &r::OTLP_SAMPLING, f64::to_string)
    }
}

/// `value` of `key` within `range`, or an error naming both.
fn within<T: PartialOrd>(
    key: &str,
    value: T,
    range: &RangeInclusive<T>,
    show: impl Fn(&T) -> String,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "key `{key}` = {} is not within {}–{}",
        show(&value),
        show(range.start()),
        show(range.end())
    )))
}

/// No two tokens with the same hash: one token would authenticate two
/// principals, and the last one's role would silently win.
fn check_unique_tokens(tokens: &[ApiToken]) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeMap::new();
    for t in tokens {
        if let Some(first) = seen.insert(t.sha256.to_ascii_lowercase(), t.principal.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "key `api.tokens`: principals {first:?} and {:?} have the same token (sha256 {}…, from [[api.tokens]] \
                 or api.tokens_file): give each principal its own token",
                t.principal,
                t.sha256.get(..12).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// `[api.tls]`: each file exists and holds PEM of the right kind (the
/// server's certificate and key are paired up when the API binds).
fn check_tls(tls: &TlsConfig) -> Result<(), ConfigError> {
    let certificates = |key: &str, path: &Path| -> Result<(), ConfigError> {
        let bytes = read_pem_file(key, path)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid(format!("key `{key}` ({}): not valid PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "key `{key}` ({}): no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
                path.display()
            )));
        }
        Ok(())
    };
    certificates("api.tls.cert", &tls.cert)?;
    let bytes = read_pem_file("api.tls.key", &tls.key)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file".into()
            }
            e => format!("not valid PEM: {e}"),
        };
        ConfigError::Invalid(format!("key `api.tls.key` ({}): {why}", tls.key.display()))
    })?;
    if let Some(ca) = &tls.client_ca {
        certificates("api.tls.client_ca", ca)?;
    }
    Ok(())
}

/// A TLS file's bytes (at most 1 MiB), or an error naming its key.
fn read_pem_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    const MAX: u64 = 1 << 20;
    let too_large = |len: u64| {
        ConfigError::Invalid(format!("key `{key}` ({}): {len} bytes, larger than 1 MiB for PEM", path.display()))
    };
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::Invalid(format!("key `{key}`: cannot read {}: {e}", path.display())))?;
    if meta.len() > MAX {
        return Err(too_large(meta.len()));
    }
    std::fs::read(path).map_err(|e| ConfigError::Invalid(format!("key `{key}`: cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use figment::Jail;

    /// `f` in a figment [`Jail`]: every test that loads a configuration runs
    /// in one, so a test that sets `TELLTALE_*` variables (restored when its
    /// jail ends) never runs while another reads the environment.
    #[allow(clippy::result_large_err)] // figment's own error type
    fn jailed(f: impl FnOnce(&mut Jail)) {
        Jail::expect_with(|jail| {
            f(jail);
            Ok(())
        });
    }

    /// `f` with `text` as a configuration file, in a jail.
    fn with_file(text: &str, f: impl FnOnce(&Path)) {
        jailed(|jail| {
            let path = jail.directory().join("telltale.toml");
            std::fs::write(&path, text).unwrap();
            f(&path);
        });
    }

    #[test]
    fn the_local_admin_socket_is_in_the_data_dir_unless_moved_or_off() {
        let socket = |toml: &str| {
            let mut got = None;
            with_file(toml, |f| {
                let c = Config::load(Some(f), &Overrides::default()).unwrap();
                got = Some(c.api.socket_path(&c.data_dir));
            });
            got.unwrap()
        };
        assert_eq!(socket("data_dir = \"/d\"\n"), Some(PathBuf::from("/d/api.sock")));
        assert_eq!(socket("data_dir = \"/d\"\n[api]\nsocket = true\n"), Some(PathBuf::from("/d/api.sock")));
        assert_eq!(socket("data_dir = \"/d\"\n[api]\nsocket = false\n"), None);
        assert_eq!(socket("data_dir = \"/d\"\n[api]\nsocket = \"run/a.sock\"\n"), Some(PathBuf::from("/d/run/a.sock")));
        assert_eq!(
            socket("data_dir = \"/d\"\n[api]\nsocket = \"/run/t/a.sock\"\n"),
            Some(PathBuf::from("/run/t/a.sock"))
        );
        assert!(refused("[api]\nsocket = 3\n").contains("socket"));
    }

    /// The error loading `toml` (which must be refused).
    fn refused(toml: &str) -> String {
        let mut e = String::new();
        with_file(toml, |f| e = Config::load(Some(f), &Overrides::default()).unwrap_err().to_string());
        e
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
        jailed(|jail| {
            jail.set_env(contract::CONTAINER_NAME_ENV, "app");
            jail.set_env(contract::LOG_ENV, "debug");
            Config::load(None, &Overrides::default()).unwrap();
        });
    }

    #[test]
    fn telemetry_keys_are_checked_and_named() {
        assert!(Config::default().telemetry.otlp.logs, "anomalies go out as log records unless turned off");
        with_file("[telemetry.otlp]\nendpoint = \"http://c:4318\"\nprotocol = \"http/protobuf\"\nsampling = 0.25\nlogs = false\n[telemetry.otlp.headers]\nx-api-key = \"k\"\n[telemetry.prometheus]\nenabled = true\n", |f| {
            let c = Config::load(Some(f), &Overrides::default()).unwrap();
            assert!(!c.telemetry.otlp.logs);
            assert!(c.telemetry.otlp.traces);
            assert_eq!(c.telemetry.otlp.protocol, Some(OtlpProtocol::HttpProtobuf));
            assert_eq!(c.telemetry.otlp.sampling, 0.25);
            assert_eq!(c.telemetry.otlp.headers["x-api-key"], "k");
            assert!(c.telemetry.prometheus.enabled);
        });
        for (toml, key) in [
            ("[telemetry.otlp]\nsampling = 1.5\n", "telemetry.otlp.sampling"),
            ("[telemetry.otlp]\nlogs = \"no\"\n", "telemetry.otlp.logs"),
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
        let mut c = Config::default();
        jailed(|_| c = Config::load(None, &Overrides::default()).unwrap());
        assert_eq!(c.learning.min_duration, Duration::from_secs(48 * 3600));
        assert_eq!(c.learning.stable_period, Duration::from_secs(48 * 3600));
        assert_eq!(c.learning.max_duration, Duration::from_secs(120 * 3600));
        // The injector checks a lone learning annotation against the
        // contract's values: they are these defaults.
        assert_eq!(c.learning.min_duration, contract::LEARNING_MIN_DURATION);
        assert_eq!(c.learning.max_duration, contract::LEARNING_MAX_DURATION);
        assert_eq!(c.learning.warmup, Duration::from_secs(180));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/telltale"));
        assert_eq!(c.data_dir, PathBuf::from(contract::DATA_DIR));
        assert_eq!(c.api.listen, "127.0.0.1:7443".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(c.api.listen.port(), contract::API_PORT);
        // Every default is within its range.
        c.check_ranges().unwrap();
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
        jailed(|_| {
            let e = Config::load(Some(Path::new("/no/such/telltale.toml")), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("/no/such/telltale.toml"));
        });
    }

    /// The environment the injector writes (names and fixed values from
    /// `telltale_core::contract`, as `injector/tests/contract.rs` checks the
    /// injector writes them) loads, and means what the injector meant.
    #[test]
    fn the_environment_the_injector_writes_loads() {
        jailed(|jail| {
            // The one value that differs: the token Secret's file, here a real one.
            let tokens = jail.directory().join(contract::TOKENS_FILE_NAME);
            let sha = "b".repeat(64);
            std::fs::write(&tokens, format!("[[tokens]]\nprincipal = \"ops\"\nrole = \"admin\"\nsha256 = \"{sha}\"\n"))
                .unwrap();
            let mut set = Vec::new();
            for (name, value) in contract::env::FIXED.iter().chain(&contract::env::WITH_API_TOKENS) {
                let value = if *name == contract::env::API_TOKENS_FILE {
                    tokens.display().to_string()
                } else {
                    (*value).to_owned()
                };
                jail.set_env(name, &value);
                set.push(*name);
            }
            let pod = ["web-1", "shop", "0f8c5a54-2b3c-4d1e-9f00-6a7b8c9d0e1f"];
            for ((name, _), value) in contract::env::POD_FIELDS.iter().zip(pod) {
                jail.set_env(name, value);
                set.push(*name);
            }
            for (name, value) in contract::env::LEARNING.iter().zip(["24h", "3d", "12h", "5m"]) {
                jail.set_env(name, value);
                set.push(*name);
            }
            let mut all: Vec<&str> = contract::env::all().collect();
            all.sort_unstable();
            set.sort_unstable();
            assert_eq!(set, all, "every variable the injector may set is set here");
            // With `--metrics` (or the pod's annotation): the Prometheus endpoint.
            for (name, value) in contract::env::WITH_METRICS {
                jail.set_env(name, value);
            }
            // What app containers get, should the sidecar see it too.
            jail.set_env(contract::CONTAINER_NAME_ENV, "app");

            let c = Config::load(None, &Overrides::default()).unwrap();
            let k = &c.kubernetes;
            assert!(k.enabled);
            assert_eq!(
                (k.pod_name.as_deref(), k.namespace.as_deref(), k.pod_uid.as_deref()),
                (Some(pod[0]), Some(pod[1]), Some(pod[2]))
            );
            assert_eq!(k.containers_file.as_deref(), Some(Path::new(contract::CONTAINERS_FILE)));
            assert_eq!(c.data_dir, PathBuf::from(contract::DATA_DIR));
            assert_eq!(c.api.listen, contract::API_LISTEN_ANY.parse::<std::net::SocketAddr>().unwrap());
            assert_eq!(c.api.tokens.len(), 1, "the token file was read");
            assert!(c.telemetry.prometheus.enabled);
            assert_eq!(
                c.telemetry.prometheus.listen,
                contract::METRICS_LISTEN_ANY.parse::<std::net::SocketAddr>().unwrap()
            );
            let l = &c.learning;
            assert_eq!(
                [l.min_duration, l.max_duration, l.stable_period, l.warmup].map(|d| d.as_secs()),
                [24 * 3600, 72 * 3600, 12 * 3600, 300]
            );
        });
    }

    /// Kubernetes service links for Services named `telltale` and
    /// `telltale-api` (what a pod gets with `enableServiceLinks` on).
    const SERVICE_LINKS: &[(&str, &str)] = &[
        ("TELLTALE_SERVICE_HOST", "10.96.0.10"),
        ("TELLTALE_SERVICE_PORT", "7443"),
        ("TELLTALE_SERVICE_PORT_TELLTALE_API", "7443"),
        ("TELLTALE_PORT", "tcp://10.96.0.10:7443"),
        ("TELLTALE_PORT_7443_TCP", "tcp://10.96.0.10:7443"),
        ("TELLTALE_PORT_7443_TCP_PROTO", "tcp"),
        ("TELLTALE_PORT_7443_TCP_PORT", "7443"),
        ("TELLTALE_PORT_7443_TCP_ADDR", "10.96.0.10"),
        ("TELLTALE_API_SERVICE_HOST", "10.96.0.11"),
        ("TELLTALE_API_SERVICE_PORT", "443"),
        ("TELLTALE_API_PORT", "tcp://10.96.0.11:443"),
        ("TELLTALE_API_PORT_443_UDP", "udp://10.96.0.11:443"),
        ("TELLTALE_API_PORT_443_UDP_ADDR", "10.96.0.11"),
        ("TELLTALE_WEB_HOOK_PORT_9000_SCTP_PORT", "9000"),
    ];

    #[test]
    fn kubernetes_service_links_do_not_stop_start_up() {
        jailed(|jail| {
            for (name, value) in SERVICE_LINKS {
                jail.set_env(name, value);
            }
            assert_eq!(Config::load(None, &Overrides::default()).unwrap(), Config::default());
            // A real key next to them still counts, and a misspelt one is still refused.
            jail.set_env("TELLTALE_API__STREAM_BUFFER", "64");
            assert_eq!(Config::load(None, &Overrides::default()).unwrap().api.stream_buffer, 64);
            jail.set_env("TELLTALE_API__STREAM_BUFER", "64");
            let e = Config::load(None, &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("stream_bufer"), "{e}");
        });
    }

    #[test]
    fn only_the_exact_service_link_shapes_are_ignored() {
        for (name, _) in SERVICE_LINKS {
            assert!(is_service_link(name), "{name}");
            assert!(is_service_link(&name.to_ascii_lowercase()), "{name}, any case");
        }
        for name in [
            "TELLTALE_DATA_DIR",
            "TELLTALE_CGROUP",
            "TELLTALE_IMAGE",
            "TELLTALE_ANOMALIES_JSON",
            "TELLTALE_API__LISTEN",
            "TELLTALE_API__PORT",
            "TELLTALE_TELEMETRY__PROMETHEUS__LISTEN",
            "TELLTALE_PORT_7443",
            "TELLTALE_PORT_7443_HTTP",
            "TELLTALE_PORT_X_TCP",
            "TELLTALE_PORT_7443_TCP_HOST",
            "TELLTALE_PORTS",
            "TELLTALE_SERVICE_HOSTNAME",
            "TELLTALE_SERVICE",
            "TELLTALE__PORT",
            "TELLTALE_PORT_",
            "OTHER_SERVICE_HOST",
            "TELLTALEX_PORT",
            "TELLTALE-X_PORT",
        ] {
            assert!(!is_service_link(name), "{name}");
        }
    }

    #[test]
    fn size_and_duration_keys_have_ranges_named_in_the_error() {
        for (toml, key) in [
            ("[api]\nstream_buffer = 100000000000\n", "api.stream_buffer"),
            ("[api]\nstream_buffer = 0\n", "api.stream_buffer"),
            ("[api]\nmax_request_bytes = 10\n", "api.max_request_bytes"),
            ("[api]\nmax_request_bytes = 1099511627776\n", "api.max_request_bytes"),
            ("[api]\nrequest_timeout = \"1ms\"\n", "api.request_timeout"),
            ("[api]\nrequest_timeout = \"30days\"\n", "api.request_timeout"),
            ("[api]\nanomaly_retention = \"1s\"\n", "api.anomaly_retention"),
            ("[api]\nanomaly_retention = \"100years\"\n", "api.anomaly_retention"),
            ("[learning]\nmin_duration = \"400days\"\nmax_duration = \"500days\"\n", "learning.min_duration"),
            ("[learning]\nmax_duration = \"0s\"\nmin_duration = \"0s\"\n", "learning.max_duration"),
            ("[learning]\nstable_period = \"2years\"\n", "learning.stable_period"),
            ("[learning]\nwarmup = \"2days\"\n", "learning.warmup"),
            ("[notifications]\nrate_limit = \"30days\"\n", "notifications.rate_limit"),
            ("[telemetry.otlp]\nqueue_size = 0\n", "telemetry.otlp.queue_size"),
            ("[telemetry.otlp]\nqueue_size = 100000000\n", "telemetry.otlp.queue_size"),
            ("[telemetry.otlp]\nbatch_size = 0\n", "telemetry.otlp.batch_size"),
            ("[telemetry.otlp]\nbatch_size = 100000\nqueue_size = 200000\n", "telemetry.otlp.batch_size"),
            ("[telemetry.otlp]\nbatch_delay = \"0s\"\n", "telemetry.otlp.batch_delay"),
            ("[telemetry.otlp]\nbatch_delay = \"1h\"\n", "telemetry.otlp.batch_delay"),
            ("[telemetry.otlp]\nmetrics_interval = \"0s\"\n", "telemetry.otlp.metrics_interval"),
            ("[telemetry.otlp]\nmetrics_interval = \"100ms\"\n", "telemetry.otlp.metrics_interval"),
            ("[telemetry.otlp]\ntimeout = \"1h\"\n", "telemetry.otlp.timeout"),
            ("[telemetry.otlp]\nsampling = -0.5\n", "telemetry.otlp.sampling"),
            ("[telemetry.otlp]\nsampling = nan\n", "telemetry.otlp.sampling"),
        ] {
            let e = refused(toml);
            assert!(e.contains(&format!("key `{key}`")) && e.contains("is not within"), "{toml}: {e}");
        }
        // The limits themselves are accepted; the example in the issue names its range.
        with_file("[api]\nstream_buffer = 1048576\nmax_request_bytes = 67108864\n[learning]\nwarmup = \"0s\"\n", |f| {
            let c = Config::load(Some(f), &Overrides::default()).unwrap();
            assert_eq!((c.api.stream_buffer, c.api.max_request_bytes), (1 << 20, 64 << 20));
        });
        let e = refused("[api]\nstream_buffer = 100000000000\n");
        assert!(e.contains("100000000000") && e.contains("1–1048576"), "{e}");
    }

    #[test]
    fn the_same_token_twice_is_refused_naming_both_principals() {
        let sha = "c".repeat(64);
        let toml = format!(
            "[[api.tokens]]\nprincipal = \"alice\"\nrole = \"viewer\"\nsha256 = \"{sha}\"\n\
             [[api.tokens]]\nprincipal = \"mallory\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            sha.to_ascii_uppercase()
        );
        let e = refused(&toml);
        assert!(e.contains("api.tokens") && e.contains("\"alice\"") && e.contains("\"mallory\""), "{e}");
        // Across the inline tokens and the tokens file too.
        jailed(|jail| {
            let file = jail.directory().join("tokens.toml");
            std::fs::write(&file, format!("[[tokens]]\nprincipal = \"ci\"\nrole = \"admin\"\nsha256 = \"{sha}\"\n"))
                .unwrap();
            let toml = format!(
                "[api]\ntokens_file = {:?}\n[[api.tokens]]\nprincipal = \"alice\"\nrole = \"viewer\"\nsha256 = \"{sha}\"\n",
                file.display().to_string()
            );
            let path = jail.directory().join("telltale.toml");
            std::fs::write(&path, toml).unwrap();
            let e = Config::load(Some(&path), &Overrides::default()).unwrap_err().to_string();
            assert!(e.contains("\"alice\"") && e.contains("\"ci\""), "{e}");
        });
        // Different tokens are fine.
        with_file(
            &format!(
                "[[api.tokens]]\nprincipal = \"alice\"\nrole = \"viewer\"\nsha256 = \"{sha}\"\n\
                 [[api.tokens]]\nprincipal = \"bob\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
                "d".repeat(64)
            ),
            |f| assert_eq!(Config::load(Some(f), &Overrides::default()).unwrap().api.tokens.len(), 2),
        );
    }

    /// A self-signed P-256 certificate and its key, made for these tests only.
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUOz6o6XleqPqBEyz4Ki+bVacAN68wCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNdGVsbHRhbGUtdGVzdDAgFw0yNjEyMDIxOTAwNTBaGA8yMTI2
MTEwODE5MDA1MFowGDEWMBQGA1UEAwwNdGVsbHRhbGUtdGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABNq8eBSuoP0jE6Vs/UJZeVg7M3Z2cIHD2Lr/vpFfSSdp
TKyEVau57Ye8EwDI2nBkZOUsOUrCgq4+FtJrGvKgj7ejUzBRMB0GA1UdDgQWBBQM
0DYdCmi/NO9hOGwtYJLdXWOccTAfBgNVHSMEGDAWgBQM0DYdCmi/NO9hOGwtYJLd
XWOccTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIGCXMzgkzKvC
aCg4uzfEF0cJRaEVyhpzsK6RiiyapS6SAiEA+92Eo2Lk0wjp16o11CBJmGhfeYsT
BKKJxP/d7KyXBp8=
-----END CERTIFICATE-----
";
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5z6Cb5udq6ZVDMgC
aI0Ym/bDi8g8jHM1DiQiWgN79o+hRANCAATavHgUrqD9IxOlbP1CWXlYOzN2dnCB
w9i6/76RX0knaUyshFWrue2HvBMAyNpwZGTlLDlKwoKuPhbSaxryoI+3
-----END PRIVATE KEY-----
";

    #[test]
    fn api_tls_files_must_exist_and_hold_pem() {
        jailed(|jail| {
            let dir = jail.directory().to_owned();
            let write = |name: &str, text: &str| {
                let p = dir.join(name);
                std::fs::write(&p, text).unwrap();
                p.display().to_string()
            };
            let (cert, key) = (write("tls.crt", TEST_CERT), write("tls.key", TEST_KEY));
            let garbage = write("garbage.pem", "not PEM at all\n");
            let truncated = write("truncated.pem", &TEST_CERT[..200]);
            let missing = dir.join("missing.pem").display().to_string();
            let load = |cert: &str, key: &str, ca: Option<&str>| {
                let ca = ca.map(|c| format!("client_ca = {c:?}\n")).unwrap_or_default();
                let path = dir.join("telltale.toml");
                std::fs::write(&path, format!("[api.tls]\ncert = {cert:?}\nkey = {key:?}\n{ca}")).unwrap();
                Config::load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())
            };
            let c = load(&cert, &key, Some(&cert)).unwrap();
            assert!(c.api.tls.is_some());
            for (cert_, key_, ca, named) in [
                (&missing, &key, None, "api.tls.cert"),
                (&garbage, &key, None, "api.tls.cert"),
                (&truncated, &key, None, "api.tls.cert"),
                (&key, &key, None, "api.tls.cert"),
                (&cert, &missing, None, "api.tls.key"),
                (&cert, &garbage, None, "api.tls.key"),
                (&cert, &cert, None, "api.tls.key"),
                (&cert, &key, Some(&missing), "api.tls.client_ca"),
                (&cert, &key, Some(&garbage), "api.tls.client_ca"),
            ] {
                let e = load(cert_, key_, ca.map(String::as_str)).unwrap_err();
                assert!(e.contains(&format!("key `{named}`")), "{cert_} {key_} {ca:?}: {e}");
            }
            let e = load(&missing, &key, None).unwrap_err();
            assert!(e.contains("missing.pem"), "the file is named: {e}");
            let e = load(&cert, &garbage, None).unwrap_err();
            assert!(e.contains("no PEM private key"), "{e}");
        });
    }

    #[test]
    fn profile_store_is_local_by_default_and_etcd_is_checked_by_key() {
        jailed(|_| {
            let cfg = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!((cfg.profiles.store, cfg.profiles.etcd.is_none()), (ProfileStore::Local, true));
        });
        assert!(refused("[profiles]\nstore = \"etcd\"\n").contains("key `profiles.store`"));
        assert!(refused("[profiles]\nstore = \"consul\"\n").contains("profiles.store"));
        let e = refused("[profiles.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n");
        assert!(e.contains("key `profiles.etcd`") && e.contains("\"local\""), "{e}");
        let e =
            refused("[profiles]\nstore = \"etcd\"\n[profiles.etcd]\nendpoints = [\"http://etcd:2379\", \"etcd-1\"]\n");
        assert!(e.contains("key `profiles.etcd.endpoints[1]`"), "{e}");
        let e = refused(
            "[profiles]\nstore = \"etcd\"\n[profiles.etcd]\nendpoints = [\"http://etcd:2379\"]\nclustr = \"x\"\n",
        );
        assert!(e.contains("clustr"), "{e}");
        let e = refused("[profiles]\nstore = \"etcd\"\nstartup_timeout = \"1h\"\n[profiles.etcd]\nendpoints = [\"http://etcd:2379\"]\n");
        assert!(e.contains("key `profiles.startup_timeout`"), "{e}");
        // As the documented environment variables give it to an injected sidecar.
        jailed(|jail| {
            jail.set_env("TELLTALE_PROFILES__STORE", "etcd");
            jail.set_env("TELLTALE_PROFILES__ETCD__ENDPOINTS", "[\"https://etcd-0:2379\", \"https://etcd-1:2379\"]");
            jail.set_env("TELLTALE_PROFILES__ETCD__CLUSTER", "prod");
            jail.set_env("TELLTALE_KUBERNETES__POD_NAME", "web-7d9f-x2x");
            let cfg = Config::load(None, &Overrides::default()).unwrap();
            let etcd = cfg.profiles.etcd.clone().unwrap();
            assert_eq!(etcd.endpoints, vec!["https://etcd-0:2379".to_owned(), "https://etcd-1:2379".to_owned()]);
            assert_eq!((etcd.cluster.as_str(), cfg.replica_id().as_str()), ("prod", "web-7d9f-x2x"));
        });
    }

    #[test]
    fn audit_retention_loads_with_defaults_and_refuses_bad_values_by_key() {
        let mut c = Config::default();
        jailed(|_| c = Config::load(None, &Overrides::default()).unwrap());
        assert_eq!((c.audit.max_age, c.audit.max_records), (Duration::from_secs(365 * 24 * 3600), 1_000_000));
        assert_eq!(c.audit.retention().max_age_ms, 365 * 24 * 3600 * 1000);
        with_file("[audit]\nmax_age = \"30days\"\nmax_records = 5000\n", |f| {
            let a = Config::load(Some(f), &Overrides::default()).unwrap().audit;
            assert_eq!((a.max_age, a.max_records), (Duration::from_secs(30 * 24 * 3600), 5000));
        });
        jailed(|jail| {
            jail.set_env("TELLTALE_AUDIT__MAX_RECORDS", "2000");
            assert_eq!(Config::load(None, &Overrides::default()).unwrap().audit.max_records, 2000);
        });
        for (toml, key, why) in [
            ("[audit]\nmax_age = \"1h\"\n", "key `audit.max_age`", "is not within"),
            ("[audit]\nmax_age = \"20years\"\n", "key `audit.max_age`", "is not within"),
            ("[audit]\nmax_records = 10\n", "key `audit.max_records`", "is not within"),
            ("[audit]\nmax_records = 1000000000000\n", "key `audit.max_records`", "is not within"),
            ("[audit]\nmax_records = -1\n", "audit.max_records", ""),
            ("[audit]\nmax_age = \"forever\"\n", "audit.max_age", ""),
            ("[audit]\nmax_recs = 1000\n", "max_recs", "unknown field"),
        ] {
            let e = refused(toml);
            assert!(e.contains(key) && e.contains(why), "{toml}: {e}");
        }
    }

    proptest::proptest! {
        /// Any stream buffer size (TOML integers are i64) loads exactly when
        /// it is within its range.
        #[test]
        fn stream_buffer_loads_iff_in_range(n in proptest::prop_oneof![0usize..=4096, (1usize << 20) - 2..=(1 << 20) + 2, 0usize..=i64::MAX as usize]) {
            let mut result = None;
            with_file(&format!("[api]\nstream_buffer = {n}\n"), |f| result = Some(Config::load(Some(f), &Overrides::default())));
            let result = result.unwrap();
            if ranges::API_STREAM_BUFFER.contains(&n) {
                proptest::prop_assert_eq!(result.unwrap().api.stream_buffer, n);
            } else {
                let e = result.unwrap_err().to_string();
                proptest::prop_assert!(e.contains("api.stream_buffer"), "{}", e);
            }
        }
    }
}
