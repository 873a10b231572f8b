//! The queue/bound/count logic around the SDK's batch processor, with an
//! exporter whose collector can be held or switched off (OTLP itself is
//! tested end to end in `integration/tests/telemetry.rs`).

use super::*;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::logs::{BatchConfigBuilder, BatchLogProcessor, SdkLoggerProvider};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Default)]
struct Collector {
    /// Exports wait while set (a slow collector).
    hold: AtomicBool,
    /// Exports fail while set.
    down: AtomicBool,
    /// An export has started.
    entered: AtomicBool,
    /// Event names and bodies of what was accepted.
    received: Mutex<Vec<(Option<&'static str>, String)>>,
}

#[derive(Debug)]
struct Exp(Arc<Collector>);

impl LogExporter for Exp {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.0.entered.store(true, Ordering::SeqCst);
        while self.0.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.0.down.load(Ordering::SeqCst) {
            return Err(OTelSdkError::InternalFailure("collector down".into()));
        }
        let mut got = self.0.received.lock().unwrap();
        for (r, _) in batch.iter() {
            got.push((r.event_name(), format!("{:?}", r.body())));
        }
        Ok(())
    }
}

fn provider(collector: &Arc<Collector>, capacity: usize, metrics: &Arc<Metrics>) -> SdkLoggerProvider {
    let in_flight = InFlight::new(metrics.clone());
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(capacity)
        .with_max_export_batch_size(4)
        .with_scheduled_delay(Duration::from_millis(10))
        .build();
    let batch =
        BatchLogProcessor::builder(Counted::new(Exp(collector.clone()), in_flight.clone())).with_batch_config(config);
    SdkLoggerProvider::builder().with_log_processor(Bounded { inner: batch.build(), capacity, in_flight }).build()
}

fn value(m: &Metrics, name: &str) -> u64 {
    m.samples().iter().find(|s| s.def.name == name).map(|s| s.value).unwrap()
}

fn emit(logger: &SdkLogger, n: usize) {
    for _ in 0..n {
        logger.emit(logger.create_log_record());
    }
}

#[test]
fn every_record_is_exported_or_counted_as_dropped() {
    let metrics = Arc::new(Metrics::default());
    let collector = Arc::new(Collector::default());
    let provider = provider(&collector, 8, &metrics);
    let logger = provider.logger("test");

    // A slow collector: the first export hangs; 8 records may wait, the rest are dropped.
    collector.hold.store(true, Ordering::SeqCst);
    emit(&logger, 1);
    let start = Instant::now();
    while !collector.entered.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(10), "the batch processor never exported");
        std::thread::sleep(Duration::from_millis(2));
    }
    emit(&logger, 20);
    assert_eq!(value(&metrics, LOGS_DROPPED), 13);
    collector.hold.store(false, Ordering::SeqCst);
    provider.force_flush().unwrap();
    assert_eq!(collector.received.lock().unwrap().len(), 8);
    assert_eq!(value(&metrics, super::super::metrics::LOGS_EXPORTED), 8);

    // A collector that is down: what was sent is counted as dropped.
    collector.down.store(true, Ordering::SeqCst);
    emit(&logger, 3);
    let _ = provider.force_flush();
    assert_eq!(value(&metrics, LOGS_DROPPED), 16);

    // It comes back; shutdown exports what is left.
    collector.down.store(false, Ordering::SeqCst);
    emit(&logger, 2);
    provider.shutdown().unwrap();
    assert_eq!(collector.received.lock().unwrap().len(), 10);
    assert_eq!(value(&metrics, super::super::metrics::LOGS_EXPORTED), 10);
    assert_eq!(value(&metrics, LOGS_DROPPED), 16);
}

fn anomaly(path: &str) -> Sequenced {
    use telltale_core::event::build;
    let event = build::read(1, build::process("/usr/bin/cat", &[]), path);
    let observation = telltale_core::profile::Observation::from_event(&event).remove(0);
    let image = telltale_core::workload::image::ImageRef::parse("web:v1").unwrap();
    Arc::new((
        7,
        telltale_core::detect::Anomaly {
            id: format!("a-{path}"),
            time: event.time,
            time_ms: 0,
            container: telltale_core::detect::Container::new("c1", "app", &image, 1, 0),
            event_type: observation.event_type(),
            profile_version: "v1".into(),
            observation,
            event,
        },
    ))
}

#[tokio::test]
async fn queued_anomalies_become_records_and_a_full_queue_counts_drops() {
    let metrics = Arc::new(Metrics::default());
    let collector = Arc::new(Collector::default());
    let provider = provider(&collector, 64, &metrics);
    let (queue, rx) = LogQueue::new(2, metrics.clone());
    for p in ["/etc/a", "/etc/b", "/etc/c"] {
        queue.push(anomaly(p), "sig".into()); // the task is not running yet: the third is dropped
    }
    assert_eq!(value(&metrics, LOGS_DROPPED), 1);
    drop(queue);
    let records = Records { pod: PodInfo::default(), traced: None };
    run(provider.logger("telltale"), rx, records).await;
    tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().unwrap();
    let got = collector.received.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, Some("telltale.anomaly.file"));
    assert!(got[0].1.contains("/usr/bin/cat opened /etc/a (read)"), "{got:?}");
    assert!(got[1].1.contains("/etc/b"), "{got:?}");
}
