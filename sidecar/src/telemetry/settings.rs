//! What one OTLP exporter (traces, logs or metrics) uses, resolved from
//! `[telemetry.otlp]` and the standard `OTEL_EXPORTER_OTLP_*` variables
//! (pure: the environment comes in as a lookup function).
//!
//! Precedence, per setting: the key, then the signal's variable
//! (`OTEL_EXPORTER_OTLP_TRACES_*`), then the general one
//! (`OTEL_EXPORTER_OTLP_*`), then the default. Resolving here rather than in
//! the exporter library lets every bad value get an error that names it, and
//! lets the TLS setup see the endpoint actually used.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{OtlpConfig, OtlpProtocol, OtlpTlsConfig};

use super::TelemetryError;

/// Export timeout when neither key nor variable sets one (the spec's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporters, one per OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpSignal {
    /// Spans.
    Traces,
    /// Log records (anomalies).
    Logs,
    /// Metrics.
    Metrics,
}

impl OtlpSignal {
    /// `traces` / `logs` / `metrics`: the OTLP/HTTP path's last part.
    pub fn path(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Logs => "logs",
            Self::Metrics => "metrics",
        }
    }

    fn var_infix(self) -> &'static str {
        match self {
            Self::Traces => "TRACES_",
            Self::Logs => "LOGS_",
            Self::Metrics => "METRICS_",
        }
    }
}

/// One exporter's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Full URL (OTLP/HTTP: with `/v1/<signal>`).
    pub endpoint: String,
    /// Where the endpoint came from, for messages.
    pub endpoint_source: String,
    /// Timeout of one export.
    pub timeout: Duration,
    /// TLS files and domain (the keys, else the certificate variables).
    pub tls: Option<OtlpTlsConfig>,
}

impl Resolved {
    /// The endpoint is `https://`.
    pub fn is_https(&self) -> bool {
        self.endpoint.starts_with("https://")
    }
}

/// A variable's value, trimmed; unset and blank are the same.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The signal's variable, else the general one: `(name, value)`.
fn lookup(env: &dyn Fn(&str) -> Option<String>, signal: OtlpSignal, suffix: &str) -> Option<(String, String)> {
    [format!("OTEL_EXPORTER_OTLP_{}{suffix}", signal.var_infix()), format!("OTEL_EXPORTER_OTLP_{suffix}")]
        .into_iter()
        .find_map(|name| var(env, &name).map(|v| (name, v)))
}

fn invalid(msg: String) -> TelemetryError {
    TelemetryError::Invalid(msg)
}

/// Resolve `signal`'s exporter settings.
pub fn resolve(
    o: &OtlpConfig,
    signal: OtlpSignal,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, TelemetryError> {
    let protocol = match (o.protocol, lookup(env, signal, "PROTOCOL")) {
        (Some(p), _) => p,
        (None, None) => OtlpProtocol::Grpc,
        (None, Some((_, v))) if v == "grpc" => OtlpProtocol::Grpc,
        (None, Some((_, v))) if v == "http/protobuf" => OtlpProtocol::HttpProtobuf,
        (None, Some((name, v))) => {
            return Err(invalid(format!("{name}={v:?} is not supported: use grpc or http/protobuf")))
        }
    };
    let http_path = |base: &str| match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::HttpProtobuf => format!("{}/v1/{}", base.trim_end_matches('/'), signal.path()),
    };
    let signal_var = format!("OTEL_EXPORTER_OTLP_{}ENDPOINT", signal.var_infix());
    let (endpoint, endpoint_source) = if let Some(e) = &o.endpoint {
        (http_path(e), "key `telemetry.otlp.endpoint`".to_owned())
    } else if let Some(e) = var(env, &signal_var) {
        // The spec: a signal's own endpoint is used as it is.
        (e, signal_var)
    } else if let Some(e) = var(env, "OTEL_EXPORTER_OTLP_ENDPOINT") {
        (http_path(&e), "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned())
    } else {
        let default = match protocol {
            OtlpProtocol::Grpc => "http://localhost:4317",
            OtlpProtocol::HttpProtobuf => "http://localhost:4318",
        };
        (http_path(default), "the default endpoint".to_owned())
    };
    let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
    if !scheme_ok || endpoint.parse::<http::Uri>().map_or(true, |u| u.host().is_none()) {
        return Err(invalid(format!("{endpoint_source} = {endpoint:?}: expected an http:// or https:// URL")));
    }

    let timeout = match (o.timeout, lookup(env, signal, "TIMEOUT")) {
        (Some(t), _) => t,
        (None, None) => DEFAULT_TIMEOUT,
        (None, Some((name, v))) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => return Err(invalid(format!("{name}={v:?}: expected milliseconds, more than 0"))),
        },
    };

    let from_env = |suffix: &str| lookup(env, signal, suffix).map(|(_, v)| PathBuf::from(v));
    let tls = match &o.tls {
        Some(t) => Some(t.clone()),
        None => {
            let t = OtlpTlsConfig {
                ca: from_env("CERTIFICATE"),
                cert: from_env("CLIENT_CERTIFICATE"),
                key: from_env("CLIENT_KEY"),
                domain: None,
            };
            (t != OtlpTlsConfig::default()).then_some(t)
        }
    };
    let r = Resolved { protocol, endpoint, endpoint_source, timeout, tls };
    if r.tls.is_some() && !r.is_https() {
        return Err(invalid(format!(
            "TLS is configured (telemetry.otlp.tls or OTEL_EXPORTER_OTLP_*CERTIFICATE/CLIENT_KEY) but {} = {:?} \
             is not an https:// URL: the connection would be plain text",
            r.endpoint_source, r.endpoint
        )));
    }
    if let Some(t) = &r.tls {
        if t.cert.is_some() != t.key.is_some() {
            return Err(invalid(
                "a client certificate and its key go together (telemetry.otlp.tls.cert and .key, or \
                 OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY)"
                    .into(),
            ));
        }
        if protocol == OtlpProtocol::HttpProtobuf && t.domain.is_some() {
            return Err(invalid(
                "key `telemetry.otlp.tls.domain` applies to grpc; with http/protobuf the URL's host is verified".into(),
            ));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k: &str| m.get(k).cloned()
    }

    fn otlp() -> OtlpConfig {
        OtlpConfig::default()
    }

    #[test]
    fn defaults() {
        let r = resolve(&otlp(), OtlpSignal::Traces, &env(&[])).unwrap();
        assert_eq!(r.protocol, OtlpProtocol::Grpc);
        assert_eq!(r.endpoint, "http://localhost:4317");
        assert_eq!(r.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.tls, None);
    }

    #[test]
    fn signal_variables_beat_general_ones_and_keys_beat_both() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example:443/custom/path"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "700"),
        ]);
        let t = resolve(&otlp(), OtlpSignal::Traces, &e).unwrap();
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.endpoint, "https://traces.example:443/custom/path", "a signal's endpoint is used as it is");
        assert_eq!(t.timeout, Duration::from_millis(2500));
        let m = resolve(&otlp(), OtlpSignal::Metrics, &e).unwrap();
        assert_eq!(m.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(m.endpoint, "https://collector:4318/v1/metrics");
        assert_eq!(m.timeout, Duration::from_millis(700));
        // Logs have their own variables too, else the general ones.
        let l = resolve(&otlp(), OtlpSignal::Logs, &e).unwrap();
        assert_eq!((l.protocol, l.endpoint.as_str()), (OtlpProtocol::Grpc, "https://collector:4318/"));
        let l = resolve(
            &otlp(),
            OtlpSignal::Logs,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "1500"),
            ]),
        )
        .unwrap();
        assert_eq!(l.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(l.timeout, Duration::from_millis(1500));

        let keys = OtlpConfig {
            endpoint: Some("http://otel:4317".into()),
            protocol: Some(OtlpProtocol::Grpc),
            timeout: Some(Duration::from_secs(3)),
            ..otlp()
        };
        let m = resolve(&keys, OtlpSignal::Metrics, &e).unwrap();
        assert_eq!(
            (m.protocol, m.endpoint.as_str(), m.timeout),
            (OtlpProtocol::Grpc, "http://otel:4317", Duration::from_secs(3))
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"),
        ] {
            let e = resolve(&otlp(), OtlpSignal::Traces, &env(&[(var, value)])).unwrap_err().to_string();
            assert!(e.contains(var), "{var}={value}: {e}");
        }
    }

    #[test]
    fn tls_needs_https_and_may_come_from_the_environment() {
        let tls = OtlpConfig {
            endpoint: Some("http://otel:4317".into()),
            tls: Some(OtlpTlsConfig { ca: Some("/ca.pem".into()), ..Default::default() }),
            ..otlp()
        };
        let e = resolve(&tls, OtlpSignal::Traces, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("telemetry.otlp.endpoint") && e.contains("https://"), "{e}");

        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:4317"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/etc/c.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/k.pem"),
        ]);
        let t = resolve(&otlp(), OtlpSignal::Traces, &e).unwrap().tls.unwrap();
        assert_eq!(
            (t.ca.unwrap(), t.cert.unwrap(), t.key.unwrap()),
            ("/etc/ca.pem".into(), "/etc/c.pem".into(), "/etc/k.pem".into())
        );
        let m = resolve(&otlp(), OtlpSignal::Metrics, &e).unwrap().tls.unwrap();
        assert_eq!((m.ca.as_deref(), m.cert, m.key), (Some(std::path::Path::new("/etc/ca.pem")), None, None));
        let half = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel:4317"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/c.pem"),
        ]);
        let err = resolve(&otlp(), OtlpSignal::Metrics, &half).unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
    }
}
