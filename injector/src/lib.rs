//! `telltale-injector`: the mutating admission webhook that adds the telltale
//! sidecar to pods that opt in.
//!
//! The crate is split the usual way: [`review`] turns an `admission.k8s.io/v1`
//! `AdmissionReview` into its answer, [`inject`] decides what a pod gets and
//! builds the JSONPatch, [`overrides`] (the webhook's [`Settings`] and the
//! pod's `telltale.dev/*` annotations) and [`quantity`] validate what it is
//! built from, with [`fleet`] for fleet profiles on etcd — all synchronous
//! and free of I/O; imports point one way (`review` → `inject` → `overrides`
//! → `fleet`, `quantity`). [`server`] is the HTTPS
//! edge, run by the `telltale-injector` binary.
//!
//! What the sidecar reads back (paths, port, environment variable names,
//! learning defaults) is [`telltale_core::contract`]: this crate and the
//! daemon share it and do not depend on each other.
//!
//! Opt-in arrives on two URL paths, because an `AdmissionReview` does not
//! carry the namespace's labels: the `MutatingWebhookConfiguration` sends pods
//! of namespaces labelled `telltale.dev/inject=enabled` to
//! [`NAMESPACE_OPT_IN_PATH`] (inject unless the pod says
//! `telltale.dev/inject: "false"`) and every other pod to [`POD_OPT_IN_PATH`]
//! (inject only with `telltale.dev/inject: "true"`).

pub mod certs;
mod error;
pub mod fleet;
pub mod inject;
pub mod overrides;
pub mod quantity;
pub mod review;
pub mod server;

pub use error::{InjectError, Rejection};
pub use fleet::FleetSettings;
pub use inject::{Decision, Mode, SkipReason};
pub use overrides::{Metrics, Settings};
pub use server::{serve, Server, WebhookArgs};

/// Path for pods that opt in by their own annotation.
pub const POD_OPT_IN_PATH: &str = "/mutate";
/// Path for pods of namespaces labelled `telltale.dev/inject=enabled`.
pub const NAMESPACE_OPT_IN_PATH: &str = "/mutate-namespace";
/// Liveness/readiness path.
pub const HEALTH_PATH: &str = "/healthz";

/// This crate's version: the value of the `telltale.dev/injected` marker.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The sidecar image when neither the flag nor the pod names one.
pub const DEFAULT_SIDECAR_IMAGE: &str = concat!("telltale:", env!("CARGO_PKG_VERSION"));

/// Pod annotations the injector reads or writes.
pub mod annotations {
    /// `"true"` opts a pod in, `"false"` opts it out (also in an opted-in namespace).
    pub const INJECT: &str = "telltale.dev/inject";
    /// Written by the injector: the crate version that injected the pod.
    pub const INJECTED: &str = "telltale.dev/injected";
    /// Written by the injector: compact JSON `{"container name": "image"}`
    /// (the sidecar reads it as a downward-API file).
    pub const CONTAINERS: &str = telltale_core::contract::CONTAINERS_ANNOTATION;
    /// Sidecar image override.
    pub const IMAGE: &str = "telltale.dev/image";
    /// Sidecar CPU request (Kubernetes quantity, `1m`–`64`).
    pub const CPU_REQUEST: &str = "telltale.dev/cpu-request";
    /// Sidecar CPU limit (Kubernetes quantity, `1m`–`64`; none by default).
    pub const CPU_LIMIT: &str = "telltale.dev/cpu-limit";
    /// Sidecar memory request (Kubernetes quantity, `16Mi`–`64Gi`).
    pub const MEMORY_REQUEST: &str = "telltale.dev/memory-request";
    /// Sidecar memory limit (Kubernetes quantity, `16Mi`–`64Gi`).
    pub const MEMORY_LIMIT: &str = "telltale.dev/memory-limit";
    /// `learning.min_duration` (humantime duration).
    pub const LEARNING_MIN_DURATION: &str = "telltale.dev/learning-min-duration";
    /// `learning.max_duration` (humantime duration).
    pub const LEARNING_MAX_DURATION: &str = "telltale.dev/learning-max-duration";
    /// `learning.stable_period` (humantime duration).
    pub const LEARNING_STABLE_PERIOD: &str = "telltale.dev/learning-stable-period";
    /// `learning.warmup` (humantime duration).
    pub const LEARNING_WARMUP: &str = "telltale.dev/learning-warmup";
    /// Keep the data directory on the node at this path (hostPath,
    /// DirectoryOrCreate), a directory under `/var/lib/telltale/` only
    /// ([`crate::overrides::DATA_HOST_ROOT`]).
    pub const DATA_HOST_PATH: &str = "telltale.dev/data-host-path";
    /// Name of the Secret holding `tokens.toml`; `""` disables the webhook's default.
    pub const API_TOKEN_SECRET: &str = "telltale.dev/api-token-secret";
    /// `"true"` adds `CAP_SYS_RESOURCE` (raise RLIMIT_MEMLOCK on kernels before 5.11).
    pub const CAP_SYS_RESOURCE: &str = "telltale.dev/cap-sys-resource";
    /// `"false"` leaves out `CAP_SYS_ADMIN` (kernels ≥ 5.8 with a runtime
    /// whose seccomp profile allows `bpf()` under `CAP_BPF`).
    pub const CAP_SYS_ADMIN: &str = "telltale.dev/cap-sys-admin";
    /// `"true"`: inject as a native sidecar (an init container with
    /// `restartPolicy: Always`, Kubernetes 1.29+) that is watching before any
    /// other container starts; `"false"`: a regular container.
    pub const NATIVE_SIDECAR: &str = "telltale.dev/native-sidecar";
    /// `"local"`: this pod's sidecar keeps its profiles to itself even when
    /// the webhook has fleet profiles (`--etcd-endpoints`); `"etcd"`: the
    /// fleet's (refused when the webhook has none).
    pub const PROFILES_STORE: &str = "telltale.dev/profiles-store";
    /// `"true"`: the sidecar serves Prometheus metrics on every address,
    /// port `telltale-prom` (9464, [`telltale_core::contract::METRICS_PORT`]);
    /// `"false"`: not. Unset: the webhook's `--metrics`.
    pub const METRICS: &str = "telltale.dev/metrics";
    /// Name of the etcd client Secret in the pod's namespace (keys `ca.crt`,
    /// `tls.crt`, `tls.key`) instead of `--etcd-client-secret`; `""` mounts none.
    pub const ETCD_CLIENT_SECRET: &str = "telltale.dev/etcd-client-secret";
}
