//! Anomalies as OpenTelemetry log records, the form log and SIEM pipelines
//! ingest: one `WARN` record per anomaly at the event's time, a short
//! escaped line as its body, the anomaly span's attributes
//! ([`spans::anomaly_attributes`]) and, when the signal is traced, the
//! trace and span ids of the anomaly's span. Pure: fills a record, exports
//! nothing.

use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord, Severity};
use opentelemetry::trace::TraceFlags;
use opentelemetry::{Array, Value};

use telltale_core::detect::Anomaly;
use telltale_core::event::EventKind;

use super::spans::{self, PodInfo};

/// Severity text of an anomaly record.
pub const SEVERITY_TEXT: &str = "WARN";

/// Fill `record` with anomaly `a` (sequence `sequence`) of signal
/// `signal_id`; `traced`: the signal's trace is exported, so the record
/// points at the anomaly's span in it.
pub fn anomaly<R: LogRecord>(record: &mut R, a: &Anomaly, sequence: u64, signal_id: &str, pod: &PodInfo, traced: bool) {
    record.set_event_name(spans::anomaly_name(a.event_type));
    record.set_timestamp(SystemTime::from(a.time));
    record.set_severity_number(Severity::Warn);
    record.set_severity_text(SEVERITY_TEXT);
    record.set_body(AnyValue::from(body(a)));
    record.add_attributes(
        spans::anomaly_attributes(a, sequence, signal_id, pod).into_iter().map(|kv| (kv.key, any_value(kv.value))),
    );
    if traced {
        record.set_trace_context(spans::trace_id(signal_id), spans::anomaly_span_id(&a.id), Some(TraceFlags::SAMPLED));
    }
}

/// One line for people: what was new, in which container. Every name the
/// workload chose is escaped (no line breaks or terminal controls reach a
/// log viewer).
pub fn body(a: &Anomaly) -> String {
    let p = &a.event.process.path;
    let what = match &a.event.kind {
        EventKind::Exec => format!("new process {p}"),
        EventKind::File { file } => {
            let access: Vec<&str> = file.access.iter().map(|x| x.name()).collect();
            format!("{p} opened {} ({})", file.path, access.join(","))
        }
        EventKind::Dns { dns } => {
            let q: Vec<String> = dns.questions.iter().map(|q| format!("{} {}", q.name, q.qtype)).collect();
            format!("{p} resolved {}", q.join(", "))
        }
        EventKind::Connect { connect } => {
            format!("{p} connected to {}:{}/{}", connect.address, connect.port, connect.protocol)
        }
        EventKind::Mechanism { mechanism } => format!("{p} started using {mechanism}"),
    };
    let line = format!(
        "{} anomaly in container {} (image {}): {what}",
        a.event_type.name(),
        a.container.name,
        a.container.image
    );
    telltale_core::text::escape(&line).into_owned()
}

/// An attribute value as a log attribute value (arrays become lists).
fn any_value(v: Value) -> AnyValue {
    fn list<T>(items: Vec<T>, f: impl Fn(T) -> AnyValue) -> AnyValue {
        AnyValue::ListAny(Box::new(items.into_iter().map(f).collect()))
    }
    match v {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        Value::Array(Array::Bool(v)) => list(v, AnyValue::Boolean),
        Value::Array(Array::I64(v)) => list(v, AnyValue::Int),
        Value::Array(Array::F64(v)) => list(v, AnyValue::Double),
        Value::Array(Array::String(v)) => list(v, AnyValue::String),
        // `Value` and `Array` are non-exhaustive: a kind added later goes as text.
        other => AnyValue::String(other.to_string().into()),
    }
}

#[cfg(test)]
mod tests;
