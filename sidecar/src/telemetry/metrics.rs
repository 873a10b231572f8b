//! The daemon's metrics: one set of values, read by the Prometheus endpoint
//! and by the OTLP exporter. The daemon loop publishes what it owns (kernel
//! counters, signals, profiles) once a second; the API, notification and
//! export tasks count their own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use telltale_core::audit::Verb;

use crate::sensor::{Counters, KindCounts};

/// Counter (only grows) or gauge (a current value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic total.
    Counter,
    /// Current value.
    Gauge,
}

/// A metric's name (OpenTelemetry style; Prometheus replaces dots with
/// underscores and adds `_total` to counters), help and kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Def {
    /// Dotted name.
    pub name: &'static str,
    /// Description.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
}

const fn counter(name: &'static str, help: &'static str) -> Def {
    Def { name, help, kind: MetricKind::Counter }
}

const fn gauge(name: &'static str, help: &'static str) -> Def {
    Def { name, help, kind: MetricKind::Gauge }
}

/// Failed authentications and denied calls, per action.
pub const AUTH_FAILURES: &str = "telltale.api.auth_failures";
/// Audit records of failures that could not be written.
pub const AUDIT_UNRECORDED: &str = "telltale.audit.unrecorded";
/// Anomaly log records the OTLP collector accepted.
pub const LOGS_EXPORTED: &str = "telltale.telemetry.logs_exported";
/// Anomaly log records dropped (queue full, collector unreachable).
pub const LOGS_DROPPED: &str = "telltale.telemetry.logs_dropped";

/// Every metric, in exposition order.
pub static DEFS: &[Def] = &[
    counter("telltale.events", "Events the kernel sent to user space, per kind."),
    counter("telltale.kernel.repeats_dropped", "Repeats of a behaviour dropped in the kernel, per kind."),
    counter(
        "telltale.kernel.known_filtered",
        "Behaviour already in a stable profile, filtered in the kernel, per kind.",
    ),
    counter("telltale.kernel.lost", "Ring-buffer records lost because the buffer was full, per kind."),
    counter("telltale.kernel.truncated", "Records with a truncated path, argv or payload, per kind."),
    counter("telltale.dns.malformed", "DNS payloads that were not valid queries."),
    counter(
        "telltale.dns.tcp_evicted",
        "DNS-over-TCP connections dropped from reassembly (too many open at once; their partial query is lost).",
    ),
    counter("telltale.records.undecodable", "Ring-buffer records that could not be decoded."),
    gauge("telltale.node.sidecars", "Sidecars sharing this node's set of kernel programs (at the last lease renewal)."),
    counter(
        "telltale.node.lapses",
        "Times this sidecar's node registration lapsed (not renewed in time; events of the gap were not seen).",
    ),
    counter("telltale.anomalies", "Anomalies reported, per event type and image."),
    gauge("telltale.signals", "Signals, per triage status."),
    gauge("telltale.profile.behaviours", "Behaviours in each image's profile."),
    gauge("telltale.profile.learning", "1 for the learning state of each profile and event type."),
    gauge("telltale.detector.reported", "(container, behaviour) pairs remembered as reported (bounded)."),
    counter(
        "telltale.detector.reported_forgotten",
        "Reported pairs forgotten to stay under the bound (one that comes back is reported again).",
    ),
    gauge("telltale.store.full", "1 while the data dir's disk is full (detection goes on from memory)."),
    gauge("telltale.store.backlog", "Batches waiting in memory for the disk to have space."),
    counter("telltale.store.dropped", "Batches not kept because the disk stayed full past the backlog's bound."),
    gauge(
        "telltale.fleet.connection",
        "1 for the current state of the link to the fleet's etcd (profiles.store = etcd).",
    ),
    gauge("telltale.fleet.queued", "Behaviours waiting in the durable queue for etcd."),
    counter("telltale.fleet.writes", "Write transactions sent to etcd."),
    counter("telltale.fleet.resyncs", "Full re-reads of the fleet's profiles (watch revision compacted)."),
    counter("telltale.notifications.delivered", "Notifications delivered, per target kind."),
    counter("telltale.notifications.failed", "Notification delivery attempts that failed, per target kind."),
    gauge("telltale.api.stream_clients", "Clients streaming anomalies or signals."),
    counter("telltale.api.stream_lagged", "Live items stream clients fell behind on (they resume from the store)."),
    counter(
        AUTH_FAILURES,
        "Failed authentications and denied calls, per action (audited: repeats of a kind in one record per minute).",
    ),
    counter(
        AUDIT_UNRECORDED,
        "Failed authentications and denied calls that could not be written to the audit trail (the daemon had \
         stopped); each is logged.",
    ),
    counter("telltale.telemetry.spans_exported", "Spans the OTLP collector accepted."),
    counter("telltale.telemetry.spans_dropped", "Spans dropped: export queue full or collector unreachable."),
    counter(LOGS_EXPORTED, "Anomaly log records the OTLP collector accepted."),
    counter(LOGS_DROPPED, "Anomaly log records dropped: export queue full or collector unreachable."),
];

fn def(name: &str) -> &'static Def {
    // DEFS is static and every caller names one of its entries.
    DEFS.iter().find(|d| d.name == name).unwrap_or(&DEFS[0])
}

/// One value of one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Which metric.
    pub def: &'static Def,
    /// Attributes / labels.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: u64,
}

/// What the daemon loop publishes every second.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonView {
    /// Kernel counters.
    pub counters: Counters,
    /// Signals per status name.
    pub signals: BTreeMap<&'static str, u64>,
    /// Behaviours per image.
    pub profiles: BTreeMap<String, u64>,
    /// (image, event type, learning state).
    pub learning: Vec<(String, &'static str, &'static str)>,
    /// The fleet link, when profiles are fleet-wide.
    pub fleet: Option<FleetGauges>,
    /// Reported pairs remembered, and forgotten to stay bounded.
    pub reported: (u64, u64),
    /// Batches waiting in memory because the disk is full.
    pub store_backlog: u64,
    /// The store refuses writes: the disk is full.
    pub store_full: bool,
    /// Batches not kept: the disk stayed full past the backlog's bound.
    pub store_dropped: u64,
}

/// The fleet link's state and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetGauges {
    /// `connected`, `disconnected` or `resyncing`.
    pub connection: &'static str,
    /// Behaviours waiting for etcd.
    pub queued: u64,
    /// Write transactions sent.
    pub writes: u64,
    /// Full re-reads.
    pub resyncs: u64,
}

/// Upper bounds (seconds) of the detection latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// Prometheus name of the detection latency histogram.
pub const LATENCY_METRIC: &str = "telltale_detection_latency_seconds";

/// Observations of one histogram series: a count per bucket (the last is
/// `+Inf`), their sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Per bucket of [`LATENCY_BUCKETS`], then `+Inf`; not cumulative.
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        let i = LATENCY_BUCKETS.iter().position(|b| v <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// The shared metric values.
#[derive(Debug, Default)]
pub struct Metrics {
    daemon: Mutex<DaemonView>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    anomalies: Mutex<BTreeMap<(&'static str, String), u64>>,
    notifications: Mutex<BTreeMap<(String, bool), u64>>,
    stream_clients: AtomicU64,
    stream_lagged: AtomicU64,
    spans_exported: AtomicU64,
    spans_dropped: AtomicU64,
    logs_exported: AtomicU64,
    logs_dropped: AtomicU64,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    audit_unrecorded: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind: keep using them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stream client; the gauge counts it until this is dropped.
#[derive(Debug)]
pub struct StreamClient(std::sync::Arc<Metrics>);

impl Drop for StreamClient {
    fn drop(&mut self) {
        self.0.stream_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Replace what the daemon loop owns.
    pub fn set_daemon(&self, view: DaemonView) {
        *lock(&self.daemon) = view;
    }

    /// Count an anomaly.
    pub fn anomaly(&self, event_type: &'static str, image: &str) {
        *lock(&self.anomalies).entry((event_type, image.to_owned())).or_default() += 1;
    }

    /// Time from the kernel event to the anomaly published, per event type.
    /// Negative values (clock steps) count as 0.
    pub fn detection_latency(&self, event_type: &'static str, seconds: f64) {
        lock(&self.latency).entry(event_type).or_default().observe(seconds.max(0.0));
    }

    /// The latency histogram of each event type.
    pub fn latencies(&self) -> BTreeMap<&'static str, Histogram> {
        lock(&self.latency).clone()
    }

    /// Count a notification attempt.
    pub fn notification(&self, target_kind: &str, delivered: bool) {
        *lock(&self.notifications).entry((target_kind.to_owned(), delivered)).or_default() += 1;
    }

    /// A stream client connected.
    pub fn stream_client(self: &std::sync::Arc<Self>) -> StreamClient {
        self.stream_clients.fetch_add(1, Ordering::Relaxed);
        StreamClient(self.clone())
    }

    /// A stream client missed `n` live items.
    pub fn stream_lagged(&self, n: u64) {
        self.stream_lagged.fetch_add(n, Ordering::Relaxed);
    }

    /// Spans accepted by the collector.
    pub fn spans_exported(&self, n: u64) {
        self.spans_exported.fetch_add(n, Ordering::Relaxed);
    }

    /// Spans dropped.
    pub fn spans_dropped(&self, n: u64) {
        self.spans_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Anomaly log records accepted by the collector.
    pub fn logs_exported(&self, n: u64) {
        self.logs_exported.fetch_add(n, Ordering::Relaxed);
    }

    /// Anomaly log records dropped.
    pub fn logs_dropped(&self, n: u64) {
        self.logs_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// A failed authentication or a denied call (`action`: the audit verb).
    pub fn auth_failure(&self, action: &'static str) {
        *lock(&self.auth_failures).entry(action).or_default() += 1;
    }

    /// `n` failures could not be written to the audit trail.
    pub fn audit_unrecorded(&self, n: u64) {
        self.audit_unrecorded.fetch_add(n, Ordering::Relaxed);
    }

    /// Every current value.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut push = |name: &str, labels: Vec<(&'static str, String)>, value: u64| {
            out.push(Sample { def: def(name), labels, value });
        };
        let d = lock(&self.daemon).clone();
        let c = &d.counters;
        let kinds: [(&str, &KindCounts); 5] = [
            ("exec", &c.exec),
            ("file", &c.file),
            ("dns", &c.dns),
            ("connect", &c.connect),
            ("mechanism", &c.mechanism),
        ];
        type Field = fn(&KindCounts) -> u64;
        let per_kind: [(&str, Field); 5] = [
            ("telltale.events", |k| k.emitted),
            ("telltale.kernel.repeats_dropped", |k| k.dropped_repeats),
            ("telltale.kernel.known_filtered", |k| k.filtered_known),
            ("telltale.kernel.lost", |k| k.lost),
            ("telltale.kernel.truncated", |k| k.truncated),
        ];
        for (name, field) in per_kind {
            for (kind, counts) in kinds {
                push(name, vec![("kind", kind.to_owned())], field(counts));
            }
        }
        push("telltale.dns.malformed", vec![], c.malformed_dns);
        push("telltale.dns.tcp_evicted", vec![], c.dns_tcp_evicted);
        push("telltale.records.undecodable", vec![], c.undecodable);
        if let Some(n) = c.node {
            push("telltale.node.sidecars", vec![], u64::from(n.sidecars));
            push("telltale.node.lapses", vec![], n.lapses);
        }
        for ((t, image), n) in lock(&self.anomalies).iter() {
            push("telltale.anomalies", vec![("type", (*t).to_owned()), ("image", image.clone())], *n);
        }
        for (status, n) in &d.signals {
            push("telltale.signals", vec![("status", (*status).to_owned())], *n);
        }
        for (image, n) in &d.profiles {
            push("telltale.profile.behaviours", vec![("image", image.clone())], *n);
        }
        // One series per state, 1 for the current one and 0 for the others,
        // so a state left shows as 0 rather than as a vanished series.
        for (image, t, current) in &d.learning {
            for state in telltale_core::profile::lifecycle::State::ALL.map(|s| s.name()) {
                let labels = vec![("image", image.clone()), ("type", (*t).to_owned()), ("state", state.to_owned())];
                push("telltale.profile.learning", labels, u64::from(state == *current));
            }
        }
        push("telltale.detector.reported", vec![], d.reported.0);
        push("telltale.detector.reported_forgotten", vec![], d.reported.1);
        push("telltale.store.full", vec![], u64::from(d.store_full));
        push("telltale.store.backlog", vec![], d.store_backlog);
        push("telltale.store.dropped", vec![], d.store_dropped);
        if let Some(f) = &d.fleet {
            for state in ["connected", "disconnected", "resyncing"] {
                push("telltale.fleet.connection", vec![("state", state.to_owned())], u64::from(state == f.connection));
            }
            push("telltale.fleet.queued", vec![], f.queued);
            push("telltale.fleet.writes", vec![], f.writes);
            push("telltale.fleet.resyncs", vec![], f.resyncs);
        }
        for ((target, delivered), n) in lock(&self.notifications).iter() {
            let name = if *delivered { "telltale.notifications.delivered" } else { "telltale.notifications.failed" };
            push(name, vec![("target", target.clone())], *n);
        }
        push("telltale.api.stream_clients", vec![], self.stream_clients.load(Ordering::Relaxed));
        push("telltale.api.stream_lagged", vec![], self.stream_lagged.load(Ordering::Relaxed));
        let failures = lock(&self.auth_failures).clone();
        for action in [Verb::Authenticate, Verb::Authorize].map(Verb::name) {
            push(AUTH_FAILURES, vec![("action", action.to_owned())], failures.get(action).copied().unwrap_or(0));
        }
        push(AUDIT_UNRECORDED, vec![], self.audit_unrecorded.load(Ordering::Relaxed));
        push("telltale.telemetry.spans_exported", vec![], self.spans_exported.load(Ordering::Relaxed));
        push("telltale.telemetry.spans_dropped", vec![], self.spans_dropped.load(Ordering::Relaxed));
        push(LOGS_EXPORTED, vec![], self.logs_exported.load(Ordering::Relaxed));
        push(LOGS_DROPPED, vec![], self.logs_dropped.load(Ordering::Relaxed));
        out
    }
}

/// The Prometheus name of a metric.
pub fn prometheus_name(def: &Def) -> String {
    def.name.replace('.', "_")
}

/// Prometheus / OpenMetrics exposition of the current values.
#[derive(Debug)]
pub struct PrometheusCollector(pub std::sync::Arc<Metrics>);

impl prometheus_client::collector::Collector for PrometheusCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let samples = self.0.samples();
        for def in DEFS {
            let of_def: Vec<&Sample> = samples.iter().filter(|s| std::ptr::eq(s.def, def)).collect();
            if of_def.is_empty() {
                continue;
            }
            let name = prometheus_name(def);
            let kind = match def.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(&name, def.help, None, kind)?;
            for s in of_def {
                let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let metric = family.encode_family(&labels)?;
                match def.kind {
                    MetricKind::Counter => ConstCounter::new(s.value).encode(metric)?,
                    MetricKind::Gauge => ConstGauge::new(i64::try_from(s.value).unwrap_or(i64::MAX)).encode(metric)?,
                }
            }
        }
        let latencies = self.0.latencies();
        if !latencies.is_empty() {
            let mut family = encoder.encode_descriptor(
                LATENCY_METRIC,
                "Time from the kernel event to its anomaly being published (committed, streamed), per event type.",
                None,
                MetricType::Histogram,
            )?;
            for (t, h) in latencies {
                let bounds = LATENCY_BUCKETS.iter().copied().chain(std::iter::once(f64::INFINITY));
                let buckets: Vec<(f64, u64)> = bounds.zip(h.buckets).collect();
                family
                    .encode_family(&[("type", t)])?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, h.count, &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// The text served at `/metrics`.
pub fn prometheus_text(metrics: &std::sync::Arc<Metrics>) -> Result<String, std::fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(PrometheusCollector(metrics.clone())));
    registry.register_collector(Box::new(super::process::ProcessCollector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Register every metric as an observable instrument of `meter`.
pub fn register_otel(meter: &opentelemetry::metrics::Meter, metrics: &std::sync::Arc<Metrics>) {
    for def in DEFS {
        let m = metrics.clone();
        let observe = move |values: &mut dyn FnMut(u64, &[opentelemetry::KeyValue])| {
            for s in m.samples().into_iter().filter(|s| std::ptr::eq(s.def, def)) {
                let attrs: Vec<opentelemetry::KeyValue> =
                    s.labels.into_iter().map(|(k, v)| opentelemetry::KeyValue::new(k, v)).collect();
                values(s.value, &attrs);
            }
        };
        match def.kind {
            MetricKind::Counter => {
                meter
                    .u64_observable_counter(def.name)
                    .with_description(def.help)
                    .with_callback(move |o| observe(&mut |v, a| o.observe(v, a)))
                    .build();
            }
            MetricKind::Gauge => {
                meter
                    .u64_observable_gauge(def.name)
                    .with_description(def.help)
                    .with_callback(move |o| observe(&mut |v, a| o.observe(v, a)))
                    .build();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_family_once_with_labels() {
        let m = std::sync::Arc::new(Metrics::default());
        let mut view = DaemonView::default();
        view.counters.exec.emitted = 7;
        view.counters.file.dropped_repeats = 3;
        view.signals.insert("open", 2);
        view.profiles.insert("web".into(), 12);
        view.learning.push(("web".into(), "exec", "stable"));
        m.set_daemon(view);
        m.anomaly("exec", "web");
        m.anomaly("exec", "web");
        m.notification("webhook", true);
        let client = m.stream_client();
        let text = prometheus_text(&m).unwrap();
        assert!(text.contains("# TYPE telltale_events counter"), "{text}");
        assert!(text.contains("telltale_events_total{kind=\"exec\"} 7"), "{text}");
        assert!(text.contains("telltale_kernel_repeats_dropped_total{kind=\"file\"} 3"), "{text}");
        assert!(text.contains("telltale_anomalies_total{type=\"exec\",image=\"web\"} 2"), "{text}");
        assert!(text.contains("telltale_signals{status=\"open\"} 2"), "{text}");
        assert!(text.contains("telltale_profile_learning{image=\"web\",type=\"exec\",state=\"stable\"} 1"), "{text}");
        assert!(text.contains("telltale_profile_learning{image=\"web\",type=\"exec\",state=\"learning\"} 0"), "{text}");
        assert!(text.contains("telltale_profile_learning{image=\"web\",type=\"exec\",state=\"unstable\"} 0"), "{text}");
        assert!(text.contains("telltale_notifications_delivered_total{target=\"webhook\"} 1"), "{text}");
        assert!(text.contains("telltale_api_stream_clients 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        drop(client);
        assert!(prometheus_text(&m).unwrap().contains("telltale_api_stream_clients 0"));
    }

    #[test]
    fn detection_latency_is_a_histogram_per_type() {
        let m = std::sync::Arc::new(Metrics::default());
        for v in [0.0015, 0.003, 0.003, 0.04, 9.0, -1.0] {
            m.detection_latency("file", v);
        }
        m.detection_latency("exec", 0.0009);
        let text = prometheus_text(&m).unwrap();
        assert!(text.contains("# TYPE telltale_detection_latency_seconds histogram"), "{text}");
        for line in [
            "telltale_detection_latency_seconds_bucket{le=\"0.001\",type=\"file\"} 1",
            "telltale_detection_latency_seconds_bucket{le=\"0.002\",type=\"file\"} 2",
            "telltale_detection_latency_seconds_bucket{le=\"0.005\",type=\"file\"} 4",
            "telltale_detection_latency_seconds_bucket{le=\"0.05\",type=\"file\"} 5",
            "telltale_detection_latency_seconds_bucket{le=\"5.0\",type=\"file\"} 5",
            "telltale_detection_latency_seconds_bucket{le=\"+Inf\",type=\"file\"} 6",
            "telltale_detection_latency_seconds_count{type=\"file\"} 6",
            "telltale_detection_latency_seconds_bucket{le=\"0.001\",type=\"exec\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn auth_failures_per_action_and_unrecorded_audit_records() {
        let m = std::sync::Arc::new(Metrics::default());
        let text = prometheus_text(&m).unwrap();
        assert!(text.contains("telltale_api_auth_failures_total{action=\"authorize\"} 0"), "{text}");
        assert!(text.contains("telltale_audit_unrecorded_total 0"), "{text}");
        m.auth_failure(Verb::Authenticate.name());
        m.auth_failure(Verb::Authenticate.name());
        m.audit_unrecorded(3);
        let text = prometheus_text(&m).unwrap();
        assert!(text.contains("telltale_api_auth_failures_total{action=\"authenticate\"} 2"), "{text}");
        assert!(text.contains("telltale_audit_unrecorded_total 3"), "{text}");
    }

    #[test]
    fn hostile_label_values_are_escaped() {
        let m = std::sync::Arc::new(Metrics::default());
        m.anomaly("dns", "we\"b\n\\x");
        let text = prometheus_text(&m).unwrap();
        assert!(text.contains(r#"image="we\"b\n\\x""#), "{text}");
    }
}
