use super::*;
use opentelemetry::logs::{Logger, LoggerProvider};
use opentelemetry::Key;
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLoggerProvider};
use telltale_core::detect::Container;
use telltale_core::event::build;
use telltale_core::profile::Observation;
use telltale_core::workload::image::ImageRef;

fn anomaly_from(event: telltale_core::event::Event) -> Anomaly {
    let observation = Observation::from_event(&event).remove(0);
    Anomaly {
        id: "a7".into(),
        time: time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        time_ms: 1_700_000_000_000,
        container: Container::new("c1", "app", &ImageRef::parse("registry.example.com/shop/web:v3").unwrap(), 1, 0),
        event_type: observation.event_type(),
        profile_version: "v3".into(),
        observation,
        event,
    }
}

fn record() -> SdkLogRecord {
    SdkLoggerProvider::builder().build().logger("test").create_log_record()
}

fn attr<'a>(r: &'a SdkLogRecord, key: &str) -> Option<&'a AnyValue> {
    r.attributes_iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
}

#[test]
fn a_file_anomaly_is_a_warn_record_with_the_span_attributes_and_its_trace() {
    let a = anomaly_from(build::read(1, build::process("/usr/bin/cat", &["/bin/sh"]), "/etc/passwd"));
    let pod = PodInfo { name: Some("shop-web-7d9f".into()), namespace: Some("shop".into()) };
    let mut r = record();
    anomaly(&mut r, &a, 42, "sig-1", &pod, true);

    assert_eq!(r.event_name(), Some("telltale.anomaly.file"));
    assert_eq!(r.severity_number(), Some(Severity::Warn));
    assert_eq!(r.severity_text(), Some("WARN"));
    assert_eq!(r.timestamp(), Some(SystemTime::from(a.time)));
    assert_eq!(
        r.body(),
        Some(&AnyValue::from("file anomaly in container app (image web): /usr/bin/cat opened /etc/passwd (read)"))
    );
    let t = r.trace_context().expect("a traced signal links its trace");
    assert_eq!(t.trace_id, spans::trace_id("sig-1"));
    assert_eq!(t.span_id, spans::anomaly(&a, 42, "sig-1", &pod).span_context.span_id(), "the anomaly's own span");
    assert_eq!(t.trace_flags, Some(TraceFlags::SAMPLED));

    // Exactly the span's attributes, arrays as lists.
    let span = spans::anomaly(&a, 42, "sig-1", &pod);
    let keys: Vec<&Key> = r.attributes_iter().map(|(k, _)| k).collect();
    let span_keys: Vec<&Key> = span.attributes.iter().map(|kv| &kv.key).collect();
    assert_eq!(keys, span_keys);
    assert_eq!(attr(&r, "file.path"), Some(&AnyValue::from("/etc/passwd")));
    assert_eq!(attr(&r, "telltale.sequence"), Some(&AnyValue::Int(42)));
    assert_eq!(attr(&r, "k8s.namespace.name"), Some(&AnyValue::from("shop")));
    assert_eq!(
        attr(&r, "telltale.process.lineage"),
        Some(&AnyValue::ListAny(Box::new(vec![AnyValue::from("/bin/sh"), AnyValue::from("/usr/bin/cat")])))
    );
}

#[test]
fn an_untraced_signal_leaves_the_trace_context_unset() {
    let a = anomaly_from(build::exec(1, build::process("/usr/bin/true", &["/bin/sh"])));
    let mut r = record();
    anomaly(&mut r, &a, 1, "sig-2", &PodInfo::default(), false);
    assert!(r.trace_context().is_none());
    assert_eq!(r.event_name(), Some("telltale.anomaly.exec"));
    assert_eq!(r.body(), Some(&AnyValue::from("exec anomaly in container app (image web): new process /usr/bin/true")));
    assert_eq!(attr(&r, "k8s.pod.name"), None, "no pod outside Kubernetes");
}

#[test]
fn names_the_workload_chose_are_escaped_in_the_body() {
    let a = anomaly_from(build::read(1, build::process("/usr/bin/cat", &[]), "/tmp/x\nERROR forged line\u{1b}[2J"));
    let body = body(&a);
    assert_eq!(
        body,
        "file anomaly in container app (image web): /usr/bin/cat opened /tmp/x\\nERROR forged line\\x1b[2J (read)"
    );
    // The attribute keeps the path as it is: it is data, not a line.
    let mut r = record();
    anomaly(&mut r, &a, 1, "s", &PodInfo::default(), false);
    assert_eq!(attr(&r, "file.path"), Some(&AnyValue::from("/tmp/x\nERROR forged line\u{1b}[2J")));
}

#[test]
fn attribute_values_convert_one_to_one() {
    assert_eq!(any_value(Value::from(true)), AnyValue::Boolean(true));
    assert_eq!(any_value(Value::F64(0.5)), AnyValue::Double(0.5));
    assert_eq!(
        any_value(Value::Array(Array::I64(vec![1, 2]))),
        AnyValue::ListAny(Box::new(vec![AnyValue::Int(1), AnyValue::Int(2)]))
    );
}
