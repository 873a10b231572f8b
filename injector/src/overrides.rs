//! The webhook's defaults ([`Settings`]) and the pod's `telltale.dev/*`
//! override annotations, validated: what one pod's sidecar gets.
//!
//! Hostile pods are expected: every annotation is checked against a range or
//! an allow-list before it reaches the pod spec.
//!
//! - `data-host-path` must name a directory under [`DATA_HOST_ROOT`]
//!   (`/var/lib/telltale/<name>[/<name>…]`, components of ASCII letters,
//!   digits, `.`, `_` and `-`, never `.` or `..`): the sidecar's data volume
//!   is writable, so a path like `/etc` or `/proc` would hand the pod a
//!   writable view of the node.
//! - CPU quantities must be within [`CPU_RANGE`] (`1m`–`64` cores), memory
//!   quantities within [`MEMORY_RANGE`] (`16Mi`–`64Gi`); a quantity whose
//!   value overflows (`1e400`) is refused as one.

use std::collections::BTreeMap;
use std::time::Duration;

use telltale_core::contract::{self, env as cenv};

use crate::annotations as a;
use crate::fleet::{self, FleetSettings, PodFleet, PodProfiles};
use crate::quantity;
use crate::Rejection;

/// The webhook's own defaults (from its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Sidecar image unless the pod names one.
    pub sidecar_image: String,
    /// Secret with `tokens.toml` unless the pod names one (or `""`).
    pub api_token_secret: Option<String>,
    /// More environment of every sidecar (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub sidecar_env: Vec<(String, String)>,
    /// Inject native sidecars unless the pod says otherwise.
    pub native_sidecar: bool,
    /// Fleet profiles on etcd for every sidecar (`--etcd-*`), unless the pod
    /// opts out; `None`: local profiles.
    pub fleet: Option<FleetSettings>,
    /// Serve every sidecar's Prometheus metrics on the pod's network
    /// (`--metrics`), unless the pod says otherwise.
    pub metrics: bool,
}

/// Default sidecar CPU request.
pub const DEFAULT_CPU_REQUEST: &str = "50m";
/// Default sidecar memory request.
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// Default sidecar memory limit (no CPU limit by default: it only throttles).
pub const DEFAULT_MEMORY_LIMIT: &str = "256Mi";

/// Smallest and largest CPU request or limit, in cores (`1m`–`64`).
pub const CPU_RANGE: (f64, f64) = (0.001, 64.0);
/// Smallest and largest memory request or limit, in bytes (`16Mi`–`64Gi`):
/// the daemon does not start in less, and more is a typo or an attack on
/// the node's capacity.
pub const MEMORY_RANGE: (f64, f64) = (16.0 * 1024.0 * 1024.0, 64.0 * 1024.0 * 1024.0 * 1024.0);
/// The node directory under which `telltale.dev/data-host-path` may point
/// (the same path as the sidecar's data directory inside the container).
pub const DATA_HOST_ROOT: &str = contract::DATA_DIR;

/// The learning annotations and the sidecar environment variable each sets
/// (an annotated minimum or maximum alone is checked against the sidecar's
/// default for the other, [`contract::LEARNING_MIN_DURATION`] and
/// [`contract::LEARNING_MAX_DURATION`]).
pub const LEARNING: [(&str, &str); 4] = [
    (a::LEARNING_MIN_DURATION, contract::env::LEARNING_MIN_DURATION),
    (a::LEARNING_MAX_DURATION, contract::env::LEARNING_MAX_DURATION),
    (a::LEARNING_STABLE_PERIOD, contract::env::LEARNING_STABLE_PERIOD),
    (a::LEARNING_WARMUP, contract::env::LEARNING_WARMUP),
];

/// Everything the annotations (or the webhook's flags) choose for one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Overrides {
    /// Sidecar image.
    pub image: String,
    /// Sidecar resources.
    pub resources: Resources,
    /// `(environment variable, humantime value)` for each learning annotation given.
    pub learning: Vec<(&'static str, String)>,
    /// hostPath for the data directory, or `None` for an emptyDir.
    pub data_host_path: Option<String>,
    /// Secret holding `tokens.toml`, or `None` (API stays on loopback).
    pub api_token_secret: Option<String>,
    /// Add `CAP_SYS_RESOURCE`.
    pub sys_resource: bool,
    /// Add `CAP_SYS_ADMIN` (default).
    pub sys_admin: bool,
    /// The webhook's `--sidecar-env` variables.
    pub env: Vec<(String, String)>,
    /// Inject as a native sidecar (first init container, `restartPolicy: Always`).
    pub native: bool,
    /// Fleet profiles on etcd, or `None` for local ones.
    pub fleet: Option<PodFleet>,
    /// The sidecar's Prometheus endpoint, and who turned it on.
    pub metrics: Metrics,
}

/// Whether the sidecar serves Prometheus metrics on
/// [`contract::METRICS_LISTEN_ANY`] with the port
/// [`contract::METRICS_PORT_NAME`] declared, and who decided: a pod whose
/// containers already declare that port's number or name cannot have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metrics {
    /// Off: the webhook's default, or the pod's `telltale.dev/metrics: "false"`.
    Off,
    /// On by the webhook's `--metrics`: a pod whose port clashes gets no
    /// endpoint, with a warning (a webhook-wide default does not refuse pods).
    Webhook,
    /// On by the pod's `telltale.dev/metrics: "true"`: a clash refuses the pod.
    Pod,
}

/// Sidecar requests and limits (validated Kubernetes quantities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPU request.
    pub cpu_request: String,
    /// CPU limit, if any.
    pub cpu_limit: Option<String>,
    /// Memory request.
    pub memory_request: String,
    /// Memory limit.
    pub memory_limit: String,
}

/// Read and validate the overrides of a pod with these annotations.
pub fn parse(annotations: &BTreeMap<String, String>, settings: &Settings) -> Result<Overrides, Rejection> {
    let get = |key: &str| get(annotations, key);

    let image = match get(a::IMAGE) {
        Some(v) => {
            check_image(v).map_err(|reason| invalid(a::IMAGE, v, reason))?;
            v.to_owned()
        }
        None => settings.sidecar_image.clone(),
    };

    let mut learning = Vec::new();
    let mut parsed = BTreeMap::new();
    for (key, env) in LEARNING {
        if let Some(v) = get(key) {
            let d = humantime::parse_duration(v)
                .map_err(|e| invalid(key, v, format!("not a duration like \"48h\" or \"30m\" ({e})")))?;
            if d.is_zero() {
                return Err(invalid(key, v, "must be longer than zero".into()));
            }
            parsed.insert(key, d);
            learning.push((env, v.to_owned()));
        }
    }
    // The sidecar refuses to start with min > max, so check the pair it will
    // see: an annotated side against the other side's sidecar default too.
    let min = parsed.get(a::LEARNING_MIN_DURATION).map(|d| (a::LEARNING_MIN_DURATION, *d));
    let max = parsed.get(a::LEARNING_MAX_DURATION).map(|d| (a::LEARNING_MAX_DURATION, *d));
    if min.is_some() || max.is_some() {
        let (min_key, min) = min.unwrap_or(("the sidecar's default learning minimum", contract::LEARNING_MIN_DURATION));
        let (max_key, max) = max.unwrap_or(("the sidecar's default learning maximum", contract::LEARNING_MAX_DURATION));
        if min > max {
            return Err(Rejection::Contradiction {
                key: min_key,
                value: show(min),
                other_key: max_key,
                other_value: show(max),
            });
        }
    }

    let resources = resources(annotations)?;

    let data_host_path = match get(a::DATA_HOST_PATH) {
        Some(v) => {
            check_host_path(v).map_err(|reason| invalid(a::DATA_HOST_PATH, v, reason))?;
            Some(v.to_owned())
        }
        None => None,
    };

    let api_token_secret = match get(a::API_TOKEN_SECRET) {
        Some("") => None,
        Some(v) => {
            check_dns_subdomain(v).map_err(|reason| invalid(a::API_TOKEN_SECRET, v, reason))?;
            Some(v.to_owned())
        }
        None => settings.api_token_secret.clone(),
    };

    let sys_resource = match get(a::CAP_SYS_RESOURCE) {
        Some(v) => {
            parse_bool(v).ok_or_else(|| invalid(a::CAP_SYS_RESOURCE, v, "expected \"true\" or \"false\"".into()))?
        }
        None => false,
    };

    let sys_admin = match get(a::CAP_SYS_ADMIN) {
        Some(v) => {
            parse_bool(v).ok_or_else(|| invalid(a::CAP_SYS_ADMIN, v, "expected \"true\" or \"false\"".into()))?
        }
        None => true,
    };

    let native = match get(a::NATIVE_SIDECAR) {
        Some(v) => {
            parse_bool(v).ok_or_else(|| invalid(a::NATIVE_SIDECAR, v, "expected \"true\" or \"false\"".into()))?
        }
        None => settings.native_sidecar,
    };
    let metrics = match get(a::METRICS) {
        Some(v) => match parse_bool(v) {
            Some(true) => Metrics::Pod,
            Some(false) => Metrics::Off,
            None => return Err(invalid(a::METRICS, v, "expected \"true\" or \"false\"".into())),
        },
        None if settings.metrics => Metrics::Webhook,
        None => Metrics::Off,
    };
    let mut env = settings.sidecar_env.clone();
    if get(a::METRICS).is_some() {
        // The pod's choice replaces what `--sidecar-env` says of the endpoint
        // (on: the injector's own variables; off: none).
        env.retain(|(k, _)| !cenv::is_metrics(k));
    }
    let fleet = match fleet::for_pod(annotations, settings.fleet.as_ref())? {
        PodProfiles::Fleet(f) => Some(f),
        PodProfiles::WebhookDefault => None,
        PodProfiles::Local => {
            // A pod that keeps its profiles local gets no etcd store from
            // `--sidecar-env` either (the sidecar refuses `[profiles.etcd]`
            // with a local store).
            env.retain(|(k, _)| k != cenv::PROFILES_STORE && !k.starts_with(cenv::PROFILES_ETCD_PREFIX_VARS));
            None
        }
    };
    Ok(Overrides {
        image,
        resources,
        learning,
        data_host_path,
        api_token_secret,
        sys_resource,
        sys_admin,
        env,
        native,
        fleet,
        metrics,
    })
}

fn resources(annotations: &BTreeMap<String, String>) -> Result<Resources, Rejection> {
    let get = |key: &str| get(annotations, key);
    let quantity =
        |key: &'static str, (min, max): (f64, f64), shown: &str| -> Result<Option<(String, f64)>, Rejection> {
            let Some(v) = get(key) else { return Ok(None) };
            let n = quantity::parse(v).map_err(|e| invalid(key, v, e.to_string()))?;
            // A relative tolerance: `1000u` is `1m` even though 1000 × 1e-6 is
            // not exactly 1e-3 in binary floating point.
            let slack = 1e-9;
            if n < min * (1.0 - slack) || n > max * (1.0 + slack) {
                return Err(invalid(key, v, format!("must be within {shown}")));
            }
            Ok(Some((v.to_owned(), n)))
        };
    let (cpu, memory) = ("1m–64 (cores)", "16Mi–64Gi");
    let cpu_request = quantity(a::CPU_REQUEST, CPU_RANGE, cpu)?;
    let cpu_limit = quantity(a::CPU_LIMIT, CPU_RANGE, cpu)?;
    let memory_request = quantity(a::MEMORY_REQUEST, MEMORY_RANGE, memory)?;
    let memory_limit = quantity(a::MEMORY_LIMIT, MEMORY_RANGE, memory)?;

    let default = |q: &str| (q.to_owned(), quantity::value(q).unwrap_or(0.0));
    // A CPU limit alone below the default request lowers the request with it,
    // as the API server itself does when only a limit is given.
    let cpu_request = match (cpu_request, &cpu_limit) {
        (Some(r), _) => (a::CPU_REQUEST, r),
        (None, Some(l)) if l.1 < default(DEFAULT_CPU_REQUEST).1 => (a::CPU_LIMIT, l.clone()),
        (None, _) => ("the default CPU request", default(DEFAULT_CPU_REQUEST)),
    };
    if let Some(limit) = &cpu_limit {
        if cpu_request.1 .1 > limit.1 {
            return Err(Rejection::Contradiction {
                key: cpu_request.0,
                value: cpu_request.1 .0,
                other_key: a::CPU_LIMIT,
                other_value: limit.0.clone(),
            });
        }
    }
    // Likewise memory: the default limit grows to an annotated request above
    // it, the default request shrinks to an annotated limit below it.
    let (memory_request, memory_limit) = match (memory_request, memory_limit) {
        (Some(r), Some(l)) => {
            if r.1 > l.1 {
                return Err(Rejection::Contradiction {
                    key: a::MEMORY_REQUEST,
                    value: r.0,
                    other_key: a::MEMORY_LIMIT,
                    other_value: l.0,
                });
            }
            (r.0, l.0)
        }
        (Some(r), None) => {
            let l = default(DEFAULT_MEMORY_LIMIT);
            if r.1 > l.1 {
                (r.0.clone(), r.0)
            } else {
                (r.0, l.0)
            }
        }
        (None, Some(l)) => {
            let r = default(DEFAULT_MEMORY_REQUEST);
            if r.1 > l.1 {
                (l.0.clone(), l.0)
            } else {
                (r.0, l.0)
            }
        }
        (None, None) => (DEFAULT_MEMORY_REQUEST.to_owned(), DEFAULT_MEMORY_LIMIT.to_owned()),
    };
    Ok(Resources { cpu_request: cpu_request.1 .0, cpu_limit: cpu_limit.map(|l| l.0), memory_request, memory_limit })
}

fn get<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    annotations.get(key).map(String::as_str)
}

/// `"true"`/`"false"`, any case, surrounding spaces ignored.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn invalid(key: &'static str, value: &str, reason: String) -> Rejection {
    Rejection::InvalidAnnotation { key, value: value.to_owned(), reason }
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// An image reference the kubelet can pull: non-empty, printable, no spaces.
pub(crate) fn check_image(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("empty image".into());
    }
    if v.len() > 512 {
        return Err("longer than 512 characters".into());
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    Ok(())
}

/// A directory under [`DATA_HOST_ROOT`]: `/var/lib/telltale/<name>[/<name>…]`,
/// each name of ASCII letters, digits, `.`, `_` and `-` and neither `.` nor
/// `..`; no empty components (`//`, a trailing `/`), at most 255 bytes.
fn check_host_path(v: &str) -> Result<(), String> {
    let outside = || {
        format!(
            "must be a directory under {DATA_HOST_ROOT}/ (the data volume is writable: a host path elsewhere \
             would let the pod write to the node)"
        )
    };
    let rest = v.strip_prefix(DATA_HOST_ROOT).and_then(|r| r.strip_prefix('/')).ok_or_else(outside)?;
    if v.len() > 255 {
        return Err("longer than 255 bytes".into());
    }
    for c in rest.split('/') {
        if c.is_empty() {
            return Err("has an empty path component (`//` or a trailing `/`)".into());
        }
        if c == "." || c == ".." {
            return Err(format!("must not contain `{c}` components"));
        }
        if !c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(format!("component {c:?} has characters other than letters, digits, `.`, `_` and `-`"));
        }
    }
    Ok(())
}

/// A Kubernetes object name (RFC 1123 subdomain).
pub(crate) fn check_dns_subdomain(v: &str) -> Result<(), String> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if v.len() > 253 || !v.split('.').all(ok_label) {
        return Err("not a valid Secret name (lowercase letters, digits, `-` and `.`, at most 253)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings() -> Settings {
        Settings {
            sidecar_image: "telltale:test".into(),
            api_token_secret: Some("default-tokens".into()),
            sidecar_env: Vec::new(),
            native_sidecar: false,
            fleet: None,
            metrics: false,
        }
    }

    fn with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_come_from_settings() {
        let o = parse(&BTreeMap::new(), &settings()).unwrap();
        assert_eq!(o.image, "telltale:test");
        assert_eq!(o.api_token_secret.as_deref(), Some("default-tokens"));
        assert_eq!(o.resources.cpu_request, "50m");
        assert_eq!(o.resources.cpu_limit, None);
        assert_eq!(o.resources.memory_request, "128Mi");
        assert_eq!(o.resources.memory_limit, "256Mi");
        assert!(o.learning.is_empty() && o.data_host_path.is_none() && !o.sys_resource && o.sys_admin);
    }

    #[test]
    fn empty_secret_annotation_disables_the_default() {
        let o = parse(&with(&[(a::API_TOKEN_SECRET, "")]), &settings()).unwrap();
        assert_eq!(o.api_token_secret, None);
    }

    #[test]
    fn memory_defaults_bend_to_one_annotated_side() {
        let o = parse(&with(&[(a::MEMORY_REQUEST, "1Gi")]), &settings()).unwrap();
        assert_eq!((o.resources.memory_request.as_str(), o.resources.memory_limit.as_str()), ("1Gi", "1Gi"));
        let o = parse(&with(&[(a::MEMORY_LIMIT, "64Mi")]), &settings()).unwrap();
        assert_eq!((o.resources.memory_request.as_str(), o.resources.memory_limit.as_str()), ("64Mi", "64Mi"));
        let o = parse(&with(&[(a::CPU_LIMIT, "20m")]), &settings()).unwrap();
        assert_eq!((o.resources.cpu_request.as_str(), o.resources.cpu_limit.as_deref()), ("20m", Some("20m")));
    }

    #[test]
    fn contradictions_name_both_annotations() {
        let e = parse(&with(&[(a::MEMORY_REQUEST, "1Gi"), (a::MEMORY_LIMIT, "512Mi")]), &settings()).unwrap_err();
        let m = e.to_string();
        assert!(m.contains(a::MEMORY_REQUEST) && m.contains(a::MEMORY_LIMIT), "{m}");
        let e = parse(&with(&[(a::CPU_REQUEST, "2"), (a::CPU_LIMIT, "1")]), &settings()).unwrap_err();
        assert!(e.to_string().contains(a::CPU_LIMIT), "{e}");
        let e = parse(&with(&[(a::LEARNING_MIN_DURATION, "3d"), (a::LEARNING_MAX_DURATION, "1d")]), &settings())
            .unwrap_err();
        assert!(e.to_string().contains("learning-min-duration"), "{e}");
        // One side alone is checked against the sidecar's default for the other.
        let e = parse(&with(&[(a::LEARNING_MIN_DURATION, "200h")]), &settings()).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("learning-min-duration") && m.contains("default learning maximum") && m.contains("5days"),
            "{m}"
        );
        let e = parse(&with(&[(a::LEARNING_MAX_DURATION, "1h")]), &settings()).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("learning-max-duration") && m.contains("default learning minimum") && m.contains("2days"),
            "{m}"
        );
        assert!(parse(&with(&[(a::LEARNING_MIN_DURATION, "100h")]), &settings()).is_ok());
        assert!(parse(&with(&[(a::LEARNING_MAX_DURATION, "48h")]), &settings()).is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        for (key, value) in [
            (a::IMAGE, ""),
            (a::IMAGE, "telltale :1"),
            (a::CPU_REQUEST, "lots"),
            (a::MEMORY_LIMIT, "0"),
            (a::LEARNING_WARMUP, "soon"),
            (a::LEARNING_STABLE_PERIOD, "0s"),
            (a::DATA_HOST_PATH, "var/lib/telltale"),
            (a::DATA_HOST_PATH, "/var/../etc"),
            (a::MEMORY_LIMIT, "1e400"),
            (a::API_TOKEN_SECRET, "Tokens_1"),
            (a::CAP_SYS_RESOURCE, "yes"),
            (a::CAP_SYS_ADMIN, "no"),
            (a::METRICS, "on"),
        ] {
            let e = parse(&with(&[(key, value)]), &settings()).unwrap_err();
            let m = e.to_string();
            assert!(m.contains(key) && m.contains(&format!("{value:?}")), "{key}={value:?}: {m}");
        }
    }

    #[test]
    fn metrics_come_from_the_flag_unless_the_pod_says() {
        let on = Settings { metrics: true, ..settings() };
        assert_eq!(parse(&BTreeMap::new(), &settings()).unwrap().metrics, Metrics::Off);
        assert_eq!(parse(&BTreeMap::new(), &on).unwrap().metrics, Metrics::Webhook);
        for s in [settings(), on] {
            assert_eq!(parse(&with(&[(a::METRICS, "true")]), &s).unwrap().metrics, Metrics::Pod);
            assert_eq!(parse(&with(&[(a::METRICS, " FALSE ")]), &s).unwrap().metrics, Metrics::Off);
        }
        // The pod's choice drops `--sidecar-env`'s Prometheus variables, and only those.
        let env = vec![
            (cenv::TELEMETRY_PROMETHEUS_ENABLED.to_owned(), "true".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "http://collector:4317".to_owned()),
        ];
        let with_env = Settings { sidecar_env: env.clone(), ..settings() };
        assert_eq!(parse(&BTreeMap::new(), &with_env).unwrap().env, env);
        for v in ["true", "false"] {
            assert_eq!(parse(&with(&[(a::METRICS, v)]), &with_env).unwrap().env, env[1..], "{v}");
        }
    }

    #[test]
    fn data_host_path_stays_under_the_telltale_directory() {
        for ok in ["/var/lib/telltale/shop-checkout", "/var/lib/telltale/ns_1/web.v2", "/var/lib/telltale/a/b/c"] {
            let o = parse(&with(&[(a::DATA_HOST_PATH, ok)]), &settings()).unwrap();
            assert_eq!(o.data_host_path.as_deref(), Some(ok));
        }
        let long = format!("/var/lib/telltale/{}", "a".repeat(240));
        for bad in [
            "/proc",
            "/etc",
            "/",
            "/var/lib/telltale",
            "/var/lib/telltale/",
            "/var/lib/telltaleX/a",
            "/var/lib/telltale/../../../etc",
            "/var/lib/telltale/./x",
            "/var/lib/telltale//x",
            "/var/lib/telltale/x/",
            "/var/lib/telltale/a b",
            "/var/lib/telltale/a\nb",
            "/var/lib/telltale/ä",
            "/host/var/lib/telltale/x",
            long.as_str(),
        ] {
            let e = parse(&with(&[(a::DATA_HOST_PATH, bad)]), &settings()).unwrap_err();
            let m = e.to_string();
            assert!(m.contains(a::DATA_HOST_PATH) && m.contains(&format!("{bad:?}")), "{bad:?}: {m}");
        }
        let m = parse(&with(&[(a::DATA_HOST_PATH, "/etc")]), &settings()).unwrap_err().to_string();
        assert!(m.contains("under /var/lib/telltale/"), "{m}");
    }

    #[test]
    fn quantities_must_be_within_their_ranges() {
        for (key, ok) in [
            (a::CPU_REQUEST, "1m"),
            (a::CPU_REQUEST, "1000u"),
            (a::CPU_LIMIT, "64"),
            (a::CPU_LIMIT, "64000m"),
            (a::MEMORY_REQUEST, "16Mi"),
            (a::MEMORY_LIMIT, "64Gi"),
            (a::MEMORY_LIMIT, "1e9"),
        ] {
            assert!(parse(&with(&[(key, ok)]), &settings()).is_ok(), "{key}={ok}");
        }
        for (key, bad, why) in [
            (a::CPU_REQUEST, "0.5m", "1m–64"),
            (a::CPU_REQUEST, "0", "1m–64"),
            (a::CPU_REQUEST, "-1", "1m–64"),
            (a::CPU_LIMIT, "65", "1m–64"),
            (a::CPU_LIMIT, "1e3", "1m–64"),
            (a::MEMORY_REQUEST, "15Mi", "16Mi–64Gi"),
            (a::MEMORY_LIMIT, "65Gi", "16Mi–64Gi"),
            (a::MEMORY_LIMIT, "1Ei", "16Mi–64Gi"),
            (a::MEMORY_LIMIT, "1e400", "too large"),
            (a::MEMORY_REQUEST, "9e308", "too large"),
            (a::CPU_LIMIT, "1e99999999999", "too large"),
        ] {
            let m = parse(&with(&[(key, bad)]), &settings()).unwrap_err().to_string();
            assert!(m.contains(key) && m.contains(&format!("{bad:?}")) && m.contains(why), "{key}={bad}: {m}");
        }
    }

    proptest::proptest! {
        /// Whatever memory limit a pod asks for, an accepted one is within
        /// the range (and finite).
        #[test]
        fn accepted_memory_limits_are_in_range(
            n in "[0-9]{1,25}(\\.[0-9]{1,5})?",
            suffix in "(|[kMGTPE]|[KMGTPE]i|e[-+]?[0-9]{1,4})",
        ) {
            let q = format!("{n}{suffix}");
            if let Ok(o) = parse(&with(&[(a::MEMORY_LIMIT, &q)]), &settings()) {
                let v = quantity::parse(&o.resources.memory_limit).unwrap();
                proptest::prop_assert!(v >= MEMORY_RANGE.0 * 0.999 && v <= MEMORY_RANGE.1 * 1.001, "{q} -> {v}");
            }
        }
    }
}
