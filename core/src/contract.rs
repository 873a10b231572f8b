//! The injector ↔ sidecar contract: the paths, port, annotation and
//! environment variable names and learning defaults that `telltale-injector`
//! writes into a pod spec and the `telltale` daemon reads back.
//!
//! Both crates take these values from here (neither depends on the other),
//! so a change on one side is a change on both. Everything is a constant or a
//! small pure function; the tests below check that the constants agree with
//! each other (a path inside its directory, the listen address on the port).

use std::net::SocketAddr;
use std::time::Duration;

/// Prefix of every environment variable the daemon's configuration reads.
pub const ENV_PREFIX: &str = "TELLTALE_";
/// Separator of nested configuration keys in a variable name:
/// `TELLTALE_API__LISTEN` sets `api.listen`.
pub const ENV_NESTING: &str = "__";

/// Set by the injector on every app and init container: the container's
/// name (the sidecar reads it from `/proc/<pid>/environ`). It is not a
/// configuration key: the daemon's configuration ignores it.
pub const CONTAINER_NAME_ENV: &str = "TELLTALE_CONTAINER_NAME";
/// The log filter of both binaries (`tracing` env-filter syntax); not a
/// configuration key.
pub const LOG_ENV: &str = "TELLTALE_LOG";

/// The sidecar's data directory (its default `data_dir`, and where the
/// injector mounts the data volume).
pub const DATA_DIR: &str = "/var/lib/telltale";
/// Where the injector mounts the downward-API volume with the container map.
pub const PODINFO_DIR: &str = "/etc/telltale/podinfo";
/// The node's bpffs directory where the sidecars of a node pin and share
/// one set of kernel programs (a hostPath, the same path inside and out).
pub const NODE_BPFFS_DIR: &str = "/sys/fs/bpf/telltale";
/// The container map's item name in that volume.
pub const CONTAINERS_FILE_NAME: &str = "containers";
/// The container map file (`PODINFO_DIR/CONTAINERS_FILE_NAME`), the
/// sidecar's `kubernetes.containers_file`.
pub const CONTAINERS_FILE: &str = "/etc/telltale/podinfo/containers";
/// The pod annotation the container map file is projected from: compact
/// JSON `{"container name": "image"}`, written by the injector.
pub const CONTAINERS_ANNOTATION: &str = "telltale.dev/containers";
/// Where the injector mounts the API token Secret.
pub const API_DIR: &str = "/etc/telltale/api";
/// The key of the token Secret that holds the `[[tokens]]` file.
pub const TOKENS_FILE_NAME: &str = "tokens.toml";
/// The token file (`API_DIR/TOKENS_FILE_NAME`), the sidecar's `api.tokens_file`.
pub const TOKENS_FILE: &str = "/etc/telltale/api/tokens.toml";
/// Where the injector mounts the etcd client Secret (fleet profiles).
pub const ETCD_DIR: &str = "/etc/telltale/etcd";
/// The etcd client Secret's key with the CA of the etcd servers (the keys
/// of a cert-manager Certificate's Secret).
pub const ETCD_CA_FILE_NAME: &str = "ca.crt";
/// The etcd client Secret's key with the client certificate.
pub const ETCD_CERT_FILE_NAME: &str = "tls.crt";
/// The etcd client Secret's key with the client certificate's private key.
pub const ETCD_KEY_FILE_NAME: &str = "tls.key";
/// `ETCD_DIR/ETCD_CA_FILE_NAME`, the sidecar's `profiles.etcd.ca`.
pub const ETCD_CA_FILE: &str = "/etc/telltale/etcd/ca.crt";
/// `ETCD_DIR/ETCD_CERT_FILE_NAME`, the sidecar's `profiles.etcd.cert`.
pub const ETCD_CERT_FILE: &str = "/etc/telltale/etcd/tls.crt";
/// `ETCD_DIR/ETCD_KEY_FILE_NAME`, the sidecar's `profiles.etcd.key`.
pub const ETCD_KEY_FILE: &str = "/etc/telltale/etcd/tls.key";
/// Where Kubernetes mounts the service account's credentials (the injector
/// mounts the same into the sidecar; the sidecar's default
/// `kubernetes.service_account_dir`).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The sidecar API's port (the default `api.listen` is loopback on it).
pub const API_PORT: u16 = 7443;
/// The name of the sidecar container's API port.
pub const API_PORT_NAME: &str = "telltale-api";
/// `api.listen` the injector sets when the API is token-protected: every
/// address, [`API_PORT`].
pub const API_LISTEN_ANY: &str = "0.0.0.0:7443";

/// The sidecar's Prometheus port (the default `telemetry.prometheus.listen`
/// is loopback on it, [`metrics_listen_loopback`]).
pub const METRICS_PORT: u16 = 9464;
/// The name of the sidecar container's metrics port, the one
/// `deploy/observability/podmonitor.yaml` scrapes.
pub const METRICS_PORT_NAME: &str = "telltale-prom";
/// `telemetry.prometheus.listen` the injector sets when the metrics
/// endpoint is on: every address, [`METRICS_PORT`].
pub const METRICS_LISTEN_ANY: &str = "0.0.0.0:9464";

/// The sidecar's default `learning.min_duration` (48 h). The injector
/// checks a lone `learning-max-duration` annotation against it.
pub const LEARNING_MIN_DURATION: Duration = Duration::from_secs(48 * 3600);
/// The sidecar's default `learning.max_duration` (120 h). The injector
/// checks a lone `learning-min-duration` annotation against it.
pub const LEARNING_MAX_DURATION: Duration = Duration::from_secs(120 * 3600);

/// The sidecar API's default address: loopback, [`API_PORT`].
pub fn api_listen_loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], API_PORT))
}

/// The sidecar's default Prometheus address: loopback, [`METRICS_PORT`]
/// (right outside Kubernetes; in a pod the injector sets
/// [`METRICS_LISTEN_ANY`]).
pub fn metrics_listen_loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], METRICS_PORT))
}

/// The configuration key a `TELLTALE_…` variable sets, lower case and
/// dotted (`TELLTALE_API__LISTEN` → `api.listen`), or `None` for another
/// variable or an empty key.
pub fn config_key(var: &str) -> Option<String> {
    let prefix = var.get(..ENV_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let rest = &var[ENV_PREFIX.len()..];
    let parts: Vec<&str> = rest.split(ENV_NESTING).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(parts.join(".").to_ascii_lowercase())
}

/// `v` as the value of a configuration variable that the daemon reads back
/// as this very string: quoted, with `"` and `\\` escaped. Unquoted, a value
/// like `123` or `true` would be read as a number or a boolean.
pub fn env_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A list of strings as the value of a configuration variable:
/// `["a","b"]`, each one as [`env_string`] writes it.
pub fn env_string_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(env_string).collect();
    format!("[{}]", items.join(","))
}

/// The configuration variables the injector sets on the sidecar container.
/// Each one's name, through [`config_key`], is a key of the daemon's
/// configuration (its tests load them all).
pub mod env {
    /// `kubernetes.enabled`: `"true"`.
    pub const KUBERNETES_ENABLED: &str = "TELLTALE_KUBERNETES__ENABLED";
    /// `kubernetes.pod_name` (downward API `metadata.name`).
    pub const KUBERNETES_POD_NAME: &str = "TELLTALE_KUBERNETES__POD_NAME";
    /// `kubernetes.namespace` (downward API `metadata.namespace`).
    pub const KUBERNETES_NAMESPACE: &str = "TELLTALE_KUBERNETES__NAMESPACE";
    /// `kubernetes.pod_uid` (downward API `metadata.uid`).
    pub const KUBERNETES_POD_UID: &str = "TELLTALE_KUBERNETES__POD_UID";
    /// `kubernetes.containers_file`: [`super::CONTAINERS_FILE`].
    pub const KUBERNETES_CONTAINERS_FILE: &str = "TELLTALE_KUBERNETES__CONTAINERS_FILE";
    /// `data_dir`: [`super::DATA_DIR`].
    pub const DATA_DIR: &str = "TELLTALE_DATA_DIR";
    /// `api.tokens_file`: [`super::TOKENS_FILE`] (with a token Secret).
    pub const API_TOKENS_FILE: &str = "TELLTALE_API__TOKENS_FILE";
    /// `api.listen`: [`super::API_LISTEN_ANY`] (with a token Secret).
    pub const API_LISTEN: &str = "TELLTALE_API__LISTEN";
    /// `learning.min_duration` (annotation `telltale.dev/learning-min-duration`).
    pub const LEARNING_MIN_DURATION: &str = "TELLTALE_LEARNING__MIN_DURATION";
    /// `learning.max_duration` (annotation `telltale.dev/learning-max-duration`).
    pub const LEARNING_MAX_DURATION: &str = "TELLTALE_LEARNING__MAX_DURATION";
    /// `learning.stable_period` (annotation `telltale.dev/learning-stable-period`).
    pub const LEARNING_STABLE_PERIOD: &str = "TELLTALE_LEARNING__STABLE_PERIOD";
    /// `learning.warmup` (annotation `telltale.dev/learning-warmup`).
    pub const LEARNING_WARMUP: &str = "TELLTALE_LEARNING__WARMUP";

    /// `profiles.store`: [`PROFILES_STORE_ETCD`] with fleet profiles.
    pub const PROFILES_STORE: &str = "TELLTALE_PROFILES__STORE";
    /// The value of [`PROFILES_STORE`] for fleet profiles.
    pub const PROFILES_STORE_ETCD: &str = "etcd";
    /// `profiles.etcd.endpoints` ([`super::env_string_list`]).
    pub const PROFILES_ETCD_ENDPOINTS: &str = "TELLTALE_PROFILES__ETCD__ENDPOINTS";
    /// `profiles.etcd.cluster` ([`super::env_string`]; only when the webhook names one).
    pub const PROFILES_ETCD_CLUSTER: &str = "TELLTALE_PROFILES__ETCD__CLUSTER";
    /// `profiles.etcd.prefix` ([`super::env_string`]; only when the webhook names one).
    pub const PROFILES_ETCD_PREFIX: &str = "TELLTALE_PROFILES__ETCD__PREFIX";
    /// `profiles.etcd.ca`: [`super::ETCD_CA_FILE`] (with an etcd client Secret).
    pub const PROFILES_ETCD_CA: &str = "TELLTALE_PROFILES__ETCD__CA";
    /// `profiles.etcd.cert`: [`super::ETCD_CERT_FILE`] (with an etcd client Secret).
    pub const PROFILES_ETCD_CERT: &str = "TELLTALE_PROFILES__ETCD__CERT";
    /// `profiles.etcd.key`: [`super::ETCD_KEY_FILE`] (with an etcd client Secret).
    pub const PROFILES_ETCD_KEY: &str = "TELLTALE_PROFILES__ETCD__KEY";
    /// Prefix of the `[profiles.etcd]` variables.
    pub const PROFILES_ETCD_PREFIX_VARS: &str = "TELLTALE_PROFILES__ETCD__";

    /// Set with an etcd client Secret, with these values.
    pub const WITH_ETCD_CLIENT_SECRET: [(&str, &str); 3] = [
        (PROFILES_ETCD_CA, super::ETCD_CA_FILE),
        (PROFILES_ETCD_CERT, super::ETCD_CERT_FILE),
        (PROFILES_ETCD_KEY, super::ETCD_KEY_FILE),
    ];
    /// Every variable the injector may set for fleet profiles (the
    /// webhook's `--etcd-*` flags). Not in [`all`]: the daemon's
    /// configuration test of [`all`] sets exactly those; these are loaded
    /// by `integration/tests/injected_env.rs`. While the webhook has
    /// `--etcd-endpoints` its `--sidecar-env` may not set them.
    pub const FLEET: [&str; 7] = [
        PROFILES_STORE,
        PROFILES_ETCD_ENDPOINTS,
        PROFILES_ETCD_CLUSTER,
        PROFILES_ETCD_PREFIX,
        PROFILES_ETCD_CA,
        PROFILES_ETCD_CERT,
        PROFILES_ETCD_KEY,
    ];

    /// `telemetry.prometheus.enabled`: `"true"` (with the metrics endpoint on).
    pub const TELEMETRY_PROMETHEUS_ENABLED: &str = "TELLTALE_TELEMETRY__PROMETHEUS__ENABLED";
    /// `telemetry.prometheus.listen`: [`super::METRICS_LISTEN_ANY`] (with the
    /// metrics endpoint on).
    pub const TELEMETRY_PROMETHEUS_LISTEN: &str = "TELLTALE_TELEMETRY__PROMETHEUS__LISTEN";
    /// Set when the sidecar's metrics endpoint is on (the webhook's
    /// `--metrics`, the pod's `telltale.dev/metrics`), with these values. Not
    /// in [`all`], like [`FLEET`]: the daemon's configuration test of [`all`]
    /// sets exactly those. While the webhook has `--metrics` its
    /// `--sidecar-env` may not set them; a pod's `telltale.dev/metrics`
    /// replaces what `--sidecar-env` says of them.
    pub const WITH_METRICS: [(&str, &str); 2] =
        [(TELEMETRY_PROMETHEUS_ENABLED, "true"), (TELEMETRY_PROMETHEUS_LISTEN, super::METRICS_LISTEN_ANY)];

    /// Whether `name` is one of the [`WITH_METRICS`] variables.
    pub fn is_metrics(name: &str) -> bool {
        WITH_METRICS.iter().any(|(m, _)| *m == name)
    }

    /// Prefix of the `[kubernetes]` variables: all of them belong to the injector.
    pub const KUBERNETES_PREFIX: &str = "TELLTALE_KUBERNETES__";

    /// Set on every sidecar, with these values.
    pub const FIXED: [(&str, &str); 3] = [
        (KUBERNETES_ENABLED, "true"),
        (KUBERNETES_CONTAINERS_FILE, super::CONTAINERS_FILE),
        (DATA_DIR, super::DATA_DIR),
    ];
    /// Set on every sidecar from the pod's own fields (downward API):
    /// `(variable, field path)`.
    pub const POD_FIELDS: [(&str, &str); 3] = [
        (KUBERNETES_POD_NAME, "metadata.name"),
        (KUBERNETES_NAMESPACE, "metadata.namespace"),
        (KUBERNETES_POD_UID, "metadata.uid"),
    ];
    /// Set when the pod gets an API token Secret, with these values.
    pub const WITH_API_TOKENS: [(&str, &str); 2] =
        [(API_TOKENS_FILE, super::TOKENS_FILE), (API_LISTEN, super::API_LISTEN_ANY)];
    /// Set from the learning annotations (humantime durations).
    pub const LEARNING: [&str; 4] =
        [LEARNING_MIN_DURATION, LEARNING_MAX_DURATION, LEARNING_STABLE_PERIOD, LEARNING_WARMUP];
    /// Reserved for the injector: the webhook's `--sidecar-env` may not set
    /// these (the learning ones it may: they are defaults a pod's annotation
    /// replaces).
    pub const RESERVED: [&str; 4] = [KUBERNETES_PREFIX, DATA_DIR, API_TOKENS_FILE, API_LISTEN];

    /// Every configuration variable the injector may set on a sidecar.
    pub fn all() -> impl Iterator<Item = &'static str> {
        FIXED.iter().chain(&POD_FIELDS).chain(&WITH_API_TOKENS).map(|(name, _)| *name).chain(LEARNING)
    }

    /// Whether `name` is reserved for the injector ([`RESERVED`]; the
    /// `[kubernetes]` prefix covers every variable under it).
    pub fn is_reserved(name: &str) -> bool {
        RESERVED.iter().any(|r| if r.ends_with(super::ENV_NESTING) { name.starts_with(r) } else { name == *r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sit_in_their_directories() {
        assert_eq!(CONTAINERS_FILE, format!("{PODINFO_DIR}/{CONTAINERS_FILE_NAME}"));
        assert_eq!(TOKENS_FILE, format!("{API_DIR}/{TOKENS_FILE_NAME}"));
        for (file, name) in [
            (ETCD_CA_FILE, ETCD_CA_FILE_NAME),
            (ETCD_CERT_FILE, ETCD_CERT_FILE_NAME),
            (ETCD_KEY_FILE, ETCD_KEY_FILE_NAME),
        ] {
            assert_eq!(file, format!("{ETCD_DIR}/{name}"));
        }
        for dir in [DATA_DIR, PODINFO_DIR, API_DIR, ETCD_DIR, SERVICE_ACCOUNT_DIR] {
            assert!(dir.starts_with('/') && !dir.ends_with('/'), "{dir}");
        }
    }

    #[test]
    fn listen_addresses_use_the_api_port() {
        let any: SocketAddr = API_LISTEN_ANY.parse().unwrap_or_else(|e| panic!("{API_LISTEN_ANY}: {e}"));
        assert!(any.ip().is_unspecified());
        assert_eq!(any.port(), API_PORT);
        assert!(api_listen_loopback().ip().is_loopback());
        assert_eq!(api_listen_loopback().port(), API_PORT);
        assert!(LEARNING_MIN_DURATION <= LEARNING_MAX_DURATION);
    }

    #[test]
    fn metrics_addresses_use_the_metrics_port() {
        let any: SocketAddr = METRICS_LISTEN_ANY.parse().unwrap_or_else(|e| panic!("{METRICS_LISTEN_ANY}: {e}"));
        assert!(any.ip().is_unspecified());
        assert_eq!(any.port(), METRICS_PORT);
        assert!(metrics_listen_loopback().ip().is_loopback());
        assert_eq!(metrics_listen_loopback().port(), METRICS_PORT);
        // One network namespace for the pod: the sidecar's two ports differ.
        assert_ne!(METRICS_PORT, API_PORT);
        assert_ne!(METRICS_PORT_NAME, API_PORT_NAME);
        // Kubernetes port names: IANA service names, at most 15 characters.
        for name in [METRICS_PORT_NAME, API_PORT_NAME] {
            assert!(name.len() <= 15 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{name}");
        }
    }

    #[test]
    fn metrics_variables_are_telemetry_keys_not_in_all() {
        for (name, _) in env::WITH_METRICS {
            let key = config_key(name).unwrap_or_else(|| panic!("{name} is not a configuration variable"));
            assert!(key.starts_with("telemetry.prometheus."), "{key}");
            assert!(env::is_metrics(name) && !env::all().any(|n| n == name) && !env::FLEET.contains(&name), "{name}");
            assert!(!env::is_reserved(name), "{name}: --sidecar-env may set it while the webhook has no --metrics");
        }
        assert_eq!(config_key(env::TELEMETRY_PROMETHEUS_LISTEN).as_deref(), Some("telemetry.prometheus.listen"));
        assert!(!env::is_metrics("TELLTALE_TELEMETRY__OTLP__ENDPOINT"));
    }

    #[test]
    fn config_keys_of_variables() {
        assert_eq!(config_key(env::API_LISTEN).as_deref(), Some("api.listen"));
        assert_eq!(config_key(env::DATA_DIR).as_deref(), Some("data_dir"));
        assert_eq!(config_key(env::KUBERNETES_POD_UID).as_deref(), Some("kubernetes.pod_uid"));
        assert_eq!(config_key("telltale_learning__warmup").as_deref(), Some("learning.warmup"));
        assert_eq!(config_key(CONTAINER_NAME_ENV).as_deref(), Some("container_name"));
        for not_a_key in ["PATH", "TELLTALE", "TELLTALE_", "TELLTALE_API__", "TELLTALE___X", "XTELLTALE_API"] {
            assert_eq!(config_key(not_a_key), None, "{not_a_key}");
        }
    }

    #[test]
    fn fleet_variables_are_distinct_profiles_keys() {
        for (i, name) in env::FLEET.iter().enumerate() {
            assert!(!env::FLEET[..i].contains(name) && !env::all().any(|n| n == *name), "{name} twice");
            let key = config_key(name).unwrap_or_else(|| panic!("{name} is not a configuration variable"));
            assert!(key.starts_with("profiles."), "{key}");
            assert!(!env::is_reserved(name), "{name}: --sidecar-env may set it while the webhook has no etcd");
        }
        for (name, _) in env::WITH_ETCD_CLIENT_SECRET {
            assert!(env::FLEET.contains(&name) && name.starts_with(env::PROFILES_ETCD_PREFIX_VARS), "{name}");
        }
    }

    #[test]
    fn string_values_are_quoted_and_escaped() {
        assert_eq!(env_string("prod"), "\"prod\"");
        assert_eq!(env_string("123"), "\"123\"");
        assert_eq!(env_string("/a\"b\\c/"), "\"/a\\\"b\\\\c/\"");
        assert_eq!(env_string_list(["https://a:2379", "https://b:2379"]), "[\"https://a:2379\",\"https://b:2379\"]");
        assert_eq!(env_string_list([]), "[]");
    }

    #[test]
    fn every_injector_variable_is_a_distinct_nested_key() {
        let all: Vec<&str> = env::all().collect();
        assert_eq!(all.len(), 12);
        for (i, name) in all.iter().enumerate() {
            assert!(!all[..i].contains(name), "{name} twice");
            let key = config_key(name).unwrap_or_else(|| panic!("{name} is not a configuration variable"));
            assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'), "{key}");
        }
        for name in env::FIXED.iter().chain(&env::POD_FIELDS).chain(&env::WITH_API_TOKENS).map(|(n, _)| *n) {
            assert!(env::is_reserved(name), "{name}");
        }
        for name in env::LEARNING.into_iter().chain([CONTAINER_NAME_ENV, LOG_ENV, "TELLTALE_API__STREAM_BUFFER"]) {
            assert!(!env::is_reserved(name), "{name}");
        }
    }
}
