//! The span export path: a bounded queue that never blocks the caller (a
//! full queue drops the item and counts it), and one task that turns items
//! into spans, batches them and hands them to the OTLP exporter, retrying a
//! failed batch a few times before dropping it (counted), so that a
//! collector that is down or slow costs detection one `try_send` per
//! anomaly and export resumes when it returns.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::spans::{self, PodInfo};
use crate::bus::Sequenced;
use std::time::SystemTime;
use telltale_core::signal::Signal;

/// What detection hands to the exporter; spans are built on the export task.
#[derive(Debug)]
pub enum Item {
    /// A finished span (API calls, from the SDK tracer).
    Span(Box<SpanData>),
    /// A new signal (its summary: no entries).
    Opened(Box<Signal>),
    /// An anomaly (as streamed: sequence and anomaly) of a signal.
    Anomaly(Sequenced, String),
    /// A triage change of a signal, by a principal, at a time.
    Updated(Box<Signal>, String, SystemTime),
}

/// Turn an item into its span: `None` when the signal's trace is not sampled.
pub fn span_of(item: Item, pod: &PodInfo, ratio: f64) -> Option<SpanData> {
    match item {
        Item::Span(s) => Some(*s),
        Item::Opened(s) => spans::sampled(&s.id, ratio).then(|| spans::signal_opened(&s, pod)),
        Item::Anomaly(a, id) => spans::sampled(&id, ratio).then(|| spans::anomaly(&a.1, a.0, &id, pod)),
        Item::Updated(s, who, at) => spans::sampled(&s.id, ratio).then(|| spans::signal_updated(&s, &who, at, pod)),
    }
}

/// Where items are queued for export.
#[derive(Debug, Clone)]
pub struct SpanQueue {
    tx: mpsc::Sender<Item>,
    metrics: Arc<Metrics>,
}

impl SpanQueue {
    /// A queue of `capacity` items and its receiving end.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Item>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, metrics }, rx)
    }

    /// Queue an item; when the queue is full it is dropped and counted.
    pub fn push(&self, item: Item) {
        if self.tx.try_send(item).is_err() {
            self.metrics.spans_dropped(1);
        }
    }
}

/// Span building, batching and retry settings.
#[derive(Debug, Clone)]
pub struct Batching {
    /// The watched pod (`k8s.*` attributes).
    pub pod: PodInfo,
    /// Share of signals traced.
    pub sampling: f64,
    /// Spans per export request.
    pub size: usize,
    /// Longest wait for a batch to fill.
    pub delay: Duration,
    /// Attempts per batch before it is dropped.
    pub attempts: u32,
    /// First wait between attempts (doubles each time).
    pub backoff: Duration,
}

/// Export what arrives on `rx` until every sender is gone, then shut the
/// exporter down.
pub async fn run<E: SpanExporter>(exporter: E, mut rx: mpsc::Receiver<Item>, b: Batching, metrics: Arc<Metrics>) {
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch: Vec<SpanData> = span_of(first, &b.pod, b.sampling).into_iter().collect();
        let deadline = tokio::time::Instant::now() + b.delay;
        while batch.len() < b.size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => batch.extend(span_of(item, &b.pod, b.sampling)),
                Ok(None) | Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let n = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let mut wait = b.backoff;
        let mut result = Ok(());
        for attempt in 0..b.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            result = exporter.export(batch.clone()).await;
            if result.is_ok() {
                break;
            }
        }
        match result {
            Ok(()) => {
                metrics.spans_exported(n);
                if failing {
                    tracing::info!("OTLP trace export resumed.");
                    failing = false;
                }
            }
            Err(e) => {
                metrics.spans_dropped(n);
                if !failing {
                    tracing::warn!(
                        error = %e,
                        "OTLP trace export failed: spans are dropped (counted in telltale.telemetry.spans_dropped) \
                         until the collector answers; detection goes on."
                    );
                    failing = true;
                }
            }
        }
    }
    if let Err(e) = exporter.shutdown() {
        tracing::debug!(error = %e, "OTLP span exporter shutdown.");
    }
}

/// Feeds the spans the SDK tracer ends (API calls) into the queue.
#[derive(Debug)]
pub struct QueueProcessor(pub SpanQueue);

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.push(Item::Span(Box::new(span)));
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An exporter whose collector can be switched off: the unit under test
    /// is the queue/batch/retry logic, not OTLP.
    #[derive(Debug, Default)]
    struct Switch {
        down: AtomicBool,
        received: AtomicUsize,
    }

    #[derive(Debug)]
    struct Exp(Arc<Switch>);

    impl SpanExporter for Exp {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if self.0.down.load(Ordering::SeqCst) {
                return Err(OTelSdkError::InternalFailure("collector down".into()));
            }
            self.0.received.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    fn span(i: u64) -> Item {
        let c = telltale_core::detect::Container::new(
            "c",
            "c",
            &telltale_core::workload::image::ImageRef::parse("a:b").unwrap(),
            1,
            0,
        );
        let s = telltale_core::signal::Signal {
            id: format!("s{i}"),
            rule_id: String::new(),
            severity: telltale_core::signal::Severity::Low,
            status: telltale_core::signal::Status::Open,
            assignee: None,
            container: c,
            first_seen_ms: 0,
            last_seen_ms: 0,
            entries: vec![],
            anomaly_count: 0,
            version: 0,
        };
        Item::Opened(Box::new(s))
    }

    #[tokio::test]
    async fn a_down_collector_drops_counted_spans_and_export_resumes() {
        let metrics = Arc::new(Metrics::default());
        let switch = Arc::new(Switch::default());
        let (q, rx) = SpanQueue::new(8, metrics.clone());
        let b = Batching {
            pod: PodInfo::default(),
            sampling: 1.0,
            size: 4,
            delay: Duration::from_millis(20),
            attempts: 2,
            backoff: Duration::from_millis(5),
        };
        let task = tokio::spawn(run(Exp(switch.clone()), rx, b, metrics.clone()));
        switch.down.store(true, Ordering::SeqCst);
        for i in 0..20 {
            q.push(span(i)); // never blocks: the queue holds 8
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let dropped = |m: &Metrics| {
            m.samples().iter().find(|s| s.def.name == "telltale.telemetry.spans_dropped").map(|s| s.value).unwrap()
        };
        assert_eq!(dropped(&metrics), 20, "12 at the full queue, 8 after failed attempts");
        assert_eq!(switch.received.load(Ordering::SeqCst), 0);
        switch.down.store(false, Ordering::SeqCst);
        for i in 0..5 {
            q.push(span(i));
        }
        drop(q);
        task.await.unwrap();
        assert_eq!(switch.received.load(Ordering::SeqCst), 5);
        assert_eq!(dropped(&metrics), 20);
    }
}
