//! Signals and anomalies as OpenTelemetry spans. One trace per signal: its
//! trace id and root span id are derived from the signal id, so later
//! anomalies and triage updates (even after a restart) join the same trace.
//! One span per anomaly, at the event's time, with semantic-convention
//! attributes. Pure: builds `SpanData`, exports nothing.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use sha2::{Digest, Sha256};

use telltale_core::detect::{Anomaly, Container};
use telltale_core::event::EventKind;
use telltale_core::profile::EventType;
use telltale_core::signal::Signal;

/// Span name of an exec anomaly.
pub const ANOMALY_EXEC: &str = "telltale.anomaly.exec";
/// Span name of a file anomaly.
pub const ANOMALY_FILE: &str = "telltale.anomaly.file";
/// Span name of a DNS anomaly.
pub const ANOMALY_DNS: &str = "telltale.anomaly.dns";
/// Span name of a connect anomaly.
pub const ANOMALY_CONNECT: &str = "telltale.anomaly.connect";

/// The pod the sidecar watches (empty outside Kubernetes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `k8s.pod.name`.
    pub name: Option<String>,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The trace of a signal.
pub fn trace_id(signal_id: &str) -> TraceId {
    let d = digest(&["telltale.trace", signal_id]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    if b == [0; 16] {
        b[15] = 1;
    }
    TraceId::from_bytes(b)
}

fn span_id(parts: &[&str]) -> SpanId {
    let d = digest(parts);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    if b == [0; 8] {
        b[7] = 1;
    }
    SpanId::from_bytes(b)
}

/// The root span of a signal's trace.
pub fn root_span_id(signal_id: &str) -> SpanId {
    span_id(&["telltale.signal", signal_id])
}

/// Whether a signal's trace is sampled at `ratio` (the SDK's trace-id ratio
/// rule, so every span of one signal gets the same answer).
pub fn sampled(signal_id: &str, ratio: f64) -> bool {
    use opentelemetry_sdk::trace::{Sampler, ShouldSample};
    let r =
        Sampler::TraceIdRatioBased(ratio).should_sample(None, trace_id(signal_id), "", &SpanKind::Internal, &[], &[]);
    r.decision == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
}

/// The instrumentation scope of telltale's own spans.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("telltale").with_version(env!("CARGO_PKG_VERSION")).build()
}

fn strings(v: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array::String(v.into_iter().map(StringValue::from).collect()))
}

fn ms_time(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `container.*` and `k8s.*` attributes.
pub fn container_attributes(c: &Container, pod: &PodInfo) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("container.id", c.id.clone()),
        KeyValue::new("container.name", c.name.clone()),
        // The semantic conventions' image name is the repository; the short
        // name (the profile) is ours.
        KeyValue::new(
            "container.image.name",
            if c.repository.is_empty() { c.image.clone() } else { c.repository.clone() },
        ),
        KeyValue::new("telltale.image.short_name", c.image.clone()),
    ];
    // An image pinned by digest alone has no tag: its profile version is the
    // digest's start, which is no `container.image.tags` value (nor a full
    // `repo_digests` one).
    if c.tag.starts_with("sha256:") {
        a.push(KeyValue::new("telltale.image.digest_prefix", c.tag.clone()));
    } else {
        a.push(KeyValue::new("container.image.tags", strings([c.tag.clone()])));
    }
    // The container's own pod (pod mode) wins over the configured one.
    let or = |own: &str, configured: &Option<String>| {
        Some(own.to_owned()).filter(|s| !s.is_empty()).or_else(|| configured.clone())
    };
    if let Some(n) = or(&c.pod, &pod.name) {
        a.push(KeyValue::new("k8s.pod.name", n));
    }
    if let Some(n) = or(&c.namespace, &pod.namespace) {
        a.push(KeyValue::new("k8s.namespace.name", n));
    }
    a
}

fn span(
    signal_id: &str,
    id: SpanId,
    parent: SpanId,
    name: Cow<'static, str>,
    time: SystemTime,
    attributes: Vec<KeyValue>,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(trace_id(signal_id), id, TraceFlags::SAMPLED, false, TraceState::default()),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name,
        start_time: time,
        end_time: time,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope(),
    }
}

/// The root span of a new signal, at its first anomaly's time.
pub fn signal_opened(s: &Signal, pod: &PodInfo) -> SpanData {
    let mut attrs = container_attributes(&s.container, pod);
    attrs.extend([
        KeyValue::new("telltale.signal.id", s.id.clone()),
        KeyValue::new("telltale.signal.rule_id", s.rule_id.clone()),
        KeyValue::new("telltale.signal.severity", s.severity.name()),
        KeyValue::new("telltale.signal.status", s.status.name()),
    ]);
    span(&s.id, root_span_id(&s.id), SpanId::INVALID, "telltale.signal".into(), ms_time(s.first_seen_ms), attrs)
}

/// A triage change (status, assignee, marked benign) of a signal.
pub fn signal_updated(s: &Signal, principal: &str, now: SystemTime, pod: &PodInfo) -> SpanData {
    let version = s.version.to_string();
    let mut attrs = container_attributes(&s.container, pod);
    attrs.extend([
        KeyValue::new("telltale.signal.id", s.id.clone()),
        KeyValue::new("telltale.signal.status", s.status.name()),
        KeyValue::new("telltale.signal.assignee", s.assignee.clone().unwrap_or_default()),
        KeyValue::new("telltale.signal.version", i64::try_from(s.version).unwrap_or(i64::MAX)),
        KeyValue::new("telltale.signal.anomaly_count", i64::try_from(s.anomaly_count).unwrap_or(i64::MAX)),
        KeyValue::new("telltale.principal", principal.to_owned()),
    ]);
    let id = span_id(&["telltale.signal.update", &s.id, &version]);
    span(&s.id, id, root_span_id(&s.id), "telltale.signal.update".into(), now, attrs)
}

/// The attributes of one anomaly of signal `signal_id`: its span and its log
/// record carry the same ones.
pub fn anomaly_attributes(a: &Anomaly, sequence: u64, signal_id: &str, pod: &PodInfo) -> Vec<KeyValue> {
    let p = &a.event.process;
    let mut attrs = container_attributes(&a.container, pod);
    attrs.extend([
        KeyValue::new("process.pid", i64::from(p.pid)),
        KeyValue::new("process.parent_pid", i64::from(p.ppid)),
        KeyValue::new("process.executable.path", p.path.clone()),
        KeyValue::new("process.command_args", strings(p.args.iter().cloned())),
        KeyValue::new("telltale.process.lineage", strings(a.observation.lineage.iter().cloned())),
        KeyValue::new("telltale.event.type", a.event_type.name()),
        KeyValue::new("telltale.profile.version", a.profile_version.clone()),
        KeyValue::new("telltale.sequence", i64::try_from(sequence).unwrap_or(i64::MAX)),
        KeyValue::new("telltale.signal.id", signal_id.to_owned()),
        KeyValue::new("telltale.anomaly.id", a.id.clone()),
    ]);
    match &a.event.kind {
        EventKind::Exec => {}
        EventKind::File { file } => {
            attrs.push(KeyValue::new("file.path", file.path.clone()));
            attrs.push(KeyValue::new("telltale.file.access", strings(file.access.iter().map(|x| x.name().to_owned()))));
        }
        EventKind::Dns { dns } => {
            if let Some(q) = dns.questions.first() {
                attrs.push(KeyValue::new("dns.question.name", q.name.clone()));
                attrs.push(KeyValue::new("telltale.dns.question.type", q.qtype.clone()));
            }
            transport(&mut attrs, dns.protocol);
        }
        EventKind::Connect { connect } => {
            attrs.push(KeyValue::new("server.address", connect.address.to_string()));
            attrs.push(KeyValue::new("server.port", i64::from(connect.port)));
            transport(&mut attrs, connect.protocol);
        }
        EventKind::Mechanism { mechanism } => {
            attrs.push(KeyValue::new("telltale.mechanism", mechanism.name()));
        }
    }
    attrs
}

/// The span name of an anomaly of type `t` (also its log record's event name).
pub fn anomaly_name(t: EventType) -> &'static str {
    match t {
        EventType::Exec => ANOMALY_EXEC,
        EventType::File => ANOMALY_FILE,
        EventType::Dns => ANOMALY_DNS,
        EventType::Connect => ANOMALY_CONNECT,
    }
}

/// The span id of anomaly `anomaly_id` (its log record points at it).
pub fn anomaly_span_id(anomaly_id: &str) -> SpanId {
    span_id(&["telltale.anomaly", anomaly_id])
}

/// The span of one anomaly of signal `signal_id`.
pub fn anomaly(a: &Anomaly, sequence: u64, signal_id: &str, pod: &PodInfo) -> SpanData {
    let attrs = anomaly_attributes(a, sequence, signal_id, pod);
    let name = anomaly_name(a.event_type).into();
    span(signal_id, anomaly_span_id(&a.id), root_span_id(signal_id), name, SystemTime::from(a.time), attrs)
}

/// `network.transport` takes the semantic conventions' values (`tcp`,
/// `udp`); another IP protocol goes in `telltale.network.protocol` by number.
fn transport(attrs: &mut Vec<KeyValue>, p: telltale_core::event::Protocol) {
    match p {
        telltale_core::event::Protocol::Other(n) => {
            attrs.push(KeyValue::new("telltale.network.protocol", i64::from(n)))
        }
        known => attrs.push(KeyValue::new("network.transport", known.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
        s.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }

    #[test]
    fn ids_are_stable_per_signal_and_distinct_across_signals() {
        assert_eq!(trace_id("s1"), trace_id("s1"));
        assert_ne!(trace_id("s1"), trace_id("s2"));
        assert_ne!(root_span_id("s1"), SpanId::INVALID);
        assert!(sampled("s1", 1.0));
        assert!(!sampled("s1", 0.0));
        let at_half = (0..200).filter(|i| sampled(&format!("sig-{i}"), 0.5)).count();
        assert!((60..140).contains(&at_half), "{at_half}");
    }

    fn anomaly_of(kind: EventKind, behaviour: telltale_core::profile::Behaviour) -> Anomaly {
        let mut e =
            telltale_core::event::build::read(1, telltale_core::event::build::process("/usr/bin/curl", &[]), "");
        e.kind = kind;
        let observation = telltale_core::profile::Observation { lineage: vec!["/usr/bin/curl".into()], behaviour };
        Anomaly {
            id: "a2".into(),
            time: e.time,
            time_ms: 0,
            container: Container::new(
                "c1",
                "web",
                &telltale_core::workload::image::ImageRef::parse("web:v1").unwrap(),
                1,
                0,
            ),
            event_type: observation.event_type(),
            profile_version: "v1".into(),
            observation,
            event: e,
        }
    }

    #[test]
    fn a_digest_is_not_a_tag() {
        let image = telltale_core::workload::image::ImageRef::parse("reg/web:v2").unwrap();
        let mut c = Container::new("c1", "web", &image, 1, 0);
        let a = container_attributes(&c, &PodInfo::default());
        assert!(a.iter().any(|kv| kv.key.as_str() == "container.image.tags"));
        c.tag = "sha256:0123456789ab".into();
        let a = container_attributes(&c, &PodInfo::default());
        assert!(!a.iter().any(|kv| kv.key.as_str() == "container.image.tags"), "{a:?}");
        let d = a.iter().find(|kv| kv.key.as_str() == "telltale.image.digest_prefix").unwrap();
        assert_eq!(d.value, Value::from("sha256:0123456789ab"));
    }

    #[test]
    fn dns_and_connect_anomalies_carry_network_attributes() {
        use telltale_core::event::{DnsQuery, DnsQuestion, Endpoint, Protocol};
        let q = DnsQuestion { name: "exfil.example.net".into(), qtype: "TXT".into() };
        let dns = anomaly_of(
            EventKind::Dns {
                dns: DnsQuery { questions: vec![q.clone()], protocol: Protocol::Udp, server: [10, 0, 0, 10].into() },
            },
            telltale_core::profile::Behaviour::Dns { name: q.name.clone(), qtype: q.qtype.clone() },
        );
        let s = anomaly(&dns, 1, "sig", &PodInfo::default());
        assert_eq!(attr(&s, "dns.question.name"), Some(&Value::from("exfil.example.net")));
        assert_eq!(attr(&s, "network.transport"), Some(&Value::from("udp")));
        assert_eq!(attr(&s, "k8s.pod.name"), None, "no pod outside Kubernetes");
        let ep = Endpoint { protocol: Protocol::Tcp, address: "203.0.113.7".parse().unwrap(), port: 3333 };
        let connect = anomaly_of(
            EventKind::Connect { connect: ep.clone() },
            telltale_core::profile::Behaviour::Connect { protocol: ep.protocol, address: ep.address, port: ep.port },
        );
        let s = anomaly(&connect, 2, "sig", &PodInfo::default());
        assert_eq!(attr(&s, "server.address"), Some(&Value::from("203.0.113.7")));
        assert_eq!(attr(&s, "server.port"), Some(&Value::I64(3333)));
        assert_eq!(attr(&s, "network.transport"), Some(&Value::from("tcp")));
        assert_eq!(s.name, "telltale.anomaly.connect");
        // SCTP (132): not a semantic-convention transport value.
        let sctp = Endpoint { protocol: Protocol::Other(132), ..ep };
        let connect = anomaly_of(
            EventKind::Connect { connect: sctp.clone() },
            telltale_core::profile::Behaviour::Connect {
                protocol: sctp.protocol,
                address: sctp.address,
                port: sctp.port,
            },
        );
        let s = anomaly(&connect, 3, "sig", &PodInfo::default());
        assert_eq!(attr(&s, "network.transport"), None);
        assert_eq!(attr(&s, "telltale.network.protocol"), Some(&Value::I64(132)));
    }

    #[test]
    fn an_exec_anomaly_becomes_a_child_span_with_semantic_attributes() {
        let mut e = telltale_core::event::build::read(
            1,
            telltale_core::event::build::process("/usr/bin/curl", &["/bin/sh"]),
            "",
        );
        e.kind = EventKind::Exec;
        let image = telltale_core::workload::image::ImageRef::parse("reg/cws-webapp:v2").unwrap();
        let observation = telltale_core::profile::Observation {
            lineage: vec!["/bin/sh".into(), "/usr/bin/curl".into()],
            behaviour: telltale_core::profile::Behaviour::Exec,
        };
        let a = Anomaly {
            id: "a1".into(),
            time: e.time,
            time_ms: 0,
            container: Container::new("c1", "web", &image, 1, 0),
            event_type: observation.event_type(),
            profile_version: "v2".into(),
            observation,
            event: e,
        };
        let pod = PodInfo { name: Some("web-1".into()), namespace: Some("prod".into()) };
        let s = anomaly(&a, 42, "sig-1", &pod);
        assert_eq!(s.span_context.trace_id(), trace_id("sig-1"));
        assert_eq!(s.parent_span_id, root_span_id("sig-1"));
        assert_eq!(s.start_time, SystemTime::from(a.time));
        assert_eq!(attr(&s, "container.image.name"), Some(&Value::from("reg/cws-webapp")));
        assert_eq!(attr(&s, "telltale.image.short_name"), Some(&Value::from("cws-webapp")));
        assert_eq!(attr(&s, "k8s.pod.name"), Some(&Value::from("web-1")));
        assert_eq!(attr(&s, "k8s.namespace.name"), Some(&Value::from("prod")));
        assert_eq!(attr(&s, "process.pid"), Some(&Value::I64(i64::from(a.event.process.pid))));
        assert_eq!(attr(&s, "process.executable.path"), Some(&Value::from(a.event.process.path.clone())));
        assert_eq!(attr(&s, "telltale.sequence"), Some(&Value::I64(42)));
        assert_eq!(attr(&s, "telltale.signal.id"), Some(&Value::from("sig-1")));
        assert_eq!(s.name, "telltale.anomaly.exec");
    }
}
