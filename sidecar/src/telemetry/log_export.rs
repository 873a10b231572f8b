//! The anomaly log record export path. Detection hands each anomaly to a
//! bounded queue with a non-blocking send (a full queue drops it, counted);
//! one task turns anomalies into records and emits them through the SDK's
//! logger into its batch processor, which batches them on its own thread
//! and hands them to the OTLP exporter (which retries a failed export
//! within its timeout). [`Bounded`] keeps what waits there within
//! `queue_size` and [`Counted`] counts what the collector took and what was
//! lost, so every record is either exported or counted as dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::logs::Logger as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLogger};
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;

use super::logs;
use super::metrics::{Metrics, LOGS_DROPPED};
use super::spans::{self, PodInfo};
use crate::bus::Sequenced;

/// An anomaly (as streamed) and its signal's id.
pub type Item = (Sequenced, String);

/// Where detection queues anomalies for log export.
#[derive(Debug, Clone)]
pub struct LogQueue {
    tx: mpsc::Sender<Item>,
    metrics: Arc<Metrics>,
}

impl LogQueue {
    /// A queue of `capacity` anomalies and its receiving end.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Item>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, metrics }, rx)
    }

    /// Queue an anomaly; when the queue is full it is dropped and counted.
    pub fn push(&self, a: Sequenced, signal_id: String) {
        if self.tx.try_send((a, signal_id)).is_err() {
            self.metrics.logs_dropped(1);
        }
    }
}

/// How records are filled.
#[derive(Debug, Clone)]
pub struct Records {
    /// The watched pod (`k8s.*` attributes).
    pub pod: PodInfo,
    /// The share of signals whose traces are exported (`None`: traces are
    /// off): a record links its trace only when there is one.
    pub traced: Option<f64>,
}

impl Records {
    fn traced(&self, signal_id: &str) -> bool {
        self.traced.is_some_and(|ratio| spans::sampled(signal_id, ratio))
    }
}

/// Emit a record per anomaly arriving on `rx` until every sender is gone.
pub async fn run(logger: SdkLogger, mut rx: mpsc::Receiver<Item>, r: Records) {
    while let Some((a, signal_id)) = rx.recv().await {
        let mut record = logger.create_log_record();
        logs::anomaly(&mut record, &a.1, a.0, &signal_id, &r.pod, r.traced(&signal_id));
        logger.emit(record);
    }
}

/// Records between [`Bounded`] and [`Counted`]: taken in, not yet exported
/// or dropped.
#[derive(Debug, Clone)]
pub struct InFlight {
    waiting: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl InFlight {
    /// Nothing in flight yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { waiting: Arc::default(), metrics }
    }
}

/// Lets at most `capacity` records wait in the processor it wraps (the
/// SDK's batch processor, with a queue of the same size, so it never drops
/// on its own, uncounted); more are dropped and counted.
#[derive(Debug)]
pub struct Bounded<P> {
    /// The wrapped processor.
    pub inner: P,
    /// Most records waiting.
    pub capacity: usize,
    /// Shared with the exporter's [`Counted`].
    pub in_flight: InFlight,
}

impl<P: LogProcessor> LogProcessor for Bounded<P> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let waiting = &self.in_flight.waiting;
        if waiting.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            waiting.fetch_sub(1, Ordering::AcqRel);
            self.in_flight.metrics.logs_dropped(1);
            return;
        }
        self.inner.emit(record, scope);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what the wrapped exporter delivers and loses, and says (once)
/// when export starts failing and when it resumes.
#[derive(Debug)]
pub struct Counted<E> {
    inner: E,
    in_flight: InFlight,
    failing: AtomicBool,
}

impl<E> Counted<E> {
    /// Count `inner`'s exports.
    pub fn new(inner: E, in_flight: InFlight) -> Self {
        Self { inner, in_flight, failing: AtomicBool::new(false) }
    }
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.in_flight.waiting.fetch_sub(n, Ordering::AcqRel);
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let metrics = &self.in_flight.metrics;
        match &result {
            Ok(()) => {
                metrics.logs_exported(n);
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("OTLP log export resumed.");
                }
            }
            Err(e) => {
                metrics.logs_dropped(n);
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        error = %e,
                        "OTLP log export failed: anomaly log records are dropped (counted in {LOGS_DROPPED}) until \
                         the collector answers; detection goes on."
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests;
