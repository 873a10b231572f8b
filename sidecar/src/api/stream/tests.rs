use super::*;
use std::time::Duration;

use telltale_core::detect::{Anomaly, Change, Container};
use telltale_core::event::build;
use telltale_core::profile::{EventType, Observation};
use telltale_core::workload::image::ImageRef;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::store::Batch;

/// Long enough for anything that should happen to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A fresh, absent directory under the temporary directory.
fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("telltale-api-stream-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Anomaly `id`: container `c1` of image `web` read `/data/<id>`.
fn anomaly(id: &str) -> Anomaly {
    let event = build::read(5, build::process("/bin/app", &["/bin/sh"]), &format!("/data/{id}"));
    let observation = Observation::from_event(&event).into_iter().next().expect("a file observation");
    Anomaly {
        id: id.into(),
        time: time::OffsetDateTime::UNIX_EPOCH,
        time_ms: 1,
        container: Container::new("c1", "web", &ImageRef::parse("web:v1").expect("image"), 5, 0),
        event_type: EventType::File,
        profile_version: "v1".into(),
        observation,
        event,
    }
}

/// A store in `dir` holding anomalies `a<seq>` under each of `seqs`.
fn store_with(dir: &std::path::Path, seqs: std::ops::RangeInclusive<u64>) {
    let mut store = Store::open(dir).expect("open store");
    let items: Vec<(u64, Anomaly)> = seqs.map(|s| (s, anomaly(&format!("a{s}")))).collect();
    let batch = Batch {
        changes: items.iter().map(|(_, a)| Change::Anomaly(Box::new(a.clone()))).collect(),
        anomaly_sequences: items.iter().map(|(s, _)| *s).collect(),
        now_ms: 1,
        ..Batch::default()
    };
    store.commit(&batch).expect("commit");
}

/// What a test stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Item(u64, String),
    Lagged { skipped: u64, resume_after: u64 },
}

fn item(seq: u64, a: &Anomaly) -> Got {
    Got::Item(seq, a.id.clone())
}

fn lagged(l: pb::Lagged) -> Got {
    assert!(l.message.contains(&format!("after_sequence={}", l.resume_after)), "{}", l.message);
    Got::Lagged { skipped: l.skipped, resume_after: l.resume_after }
}

fn items(seqs: &[u64]) -> Vec<Got> {
    seqs.iter().map(|s| Got::Item(*s, format!("a{s}"))).collect()
}

fn publish(live: &broadcast::Sender<Arc<(u64, Anomaly)>>, seqs: std::ops::RangeInclusive<u64>) {
    for s in seqs {
        live.send(Arc::new((s, anomaly(&format!("a{s}"))))).expect("a subscriber");
    }
}

/// The current value of metric `name`.
fn sample(m: &Metrics, name: &str) -> u64 {
    m.samples().into_iter().find(|s| s.def.name == name).map(|s| s.value).expect("the metric")
}

struct Fixture {
    streams: Streams,
    closing: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

fn fixture() -> Fixture {
    let (closing, rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    Fixture { streams: Streams::new(rx, metrics.clone()), closing, metrics }
}

fn feed(
    live: broadcast::Receiver<Arc<(u64, Anomaly)>>,
    dir: &std::path::Path,
    accept: impl Fn(&Anomaly) -> bool + Send + 'static,
) -> Feed<Anomaly, Got> {
    Feed {
        live,
        backlog: Backlog::new(dir.to_owned(), Store::anomalies_after).page_size(2),
        accept: Box::new(accept),
        item,
        lagged,
    }
}

async fn next(s: &mut ReceiverStream<Result<Got, Status>>) -> Option<Result<Got, Status>> {
    tokio::time::timeout(PATIENCE, s.next()).await.expect("the stream answers")
}

async fn take(s: &mut ReceiverStream<Result<Got, Status>>, n: usize) -> Vec<Got> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(s).await.expect("an item").expect("not an error"));
    }
    out
}

/// Wait until the forwarding task let go of the live feed.
async fn until_gone(live: &broadcast::Sender<Arc<(u64, Anomaly)>>) {
    tokio::time::timeout(PATIENCE, async {
        while live.receiver_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the forwarding task ends");
}

#[tokio::test]
async fn stored_items_then_live_ones_each_once_in_order() {
    let dir = tmp("handoff");
    store_with(&dir, 1..=5);
    let f = fixture();
    let (live, _) = broadcast::channel(16);
    let rx = live.subscribe();
    // Published while the client connects: 4 and 5 are also stored.
    publish(&live, 4..=7);
    let mut s = f.streams.follow(feed(rx, &dir, |_| true), 1);
    assert_eq!(take(&mut s, 6).await, items(&[2, 3, 4, 5, 6, 7]));
    // Later items follow, and a repeat of an old one is not sent again.
    live.send(Arc::new((3, anomaly("a3")))).expect("subscriber");
    publish(&live, 8..=8);
    assert_eq!(take(&mut s, 1).await, items(&[8]));
    assert_eq!(sample(&f.metrics, "telltale.api.stream_clients"), 1);

    // The daemon closes: the client is told and the stream ends.
    f.closing.send_replace(true);
    let end = next(&mut s).await.expect("a notice").expect_err("an error");
    assert_eq!(end.code(), Code::Unavailable);
    assert!(next(&mut s).await.is_none());
    until_gone(&live).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_filter_skips_items_but_not_their_sequence_numbers() {
    let dir = tmp("filter");
    store_with(&dir, 1..=4);
    let f = fixture();
    let (live, _) = broadcast::channel(16);
    let rx = live.subscribe();
    publish(&live, 3..=6);
    let even = |a: &Anomaly| a.id.trim_start_matches('a').parse::<u64>().is_ok_and(|n| n % 2 == 0);
    let mut s = f.streams.follow(feed(rx, &dir, even), 0);
    assert_eq!(take(&mut s, 3).await, items(&[2, 4, 6]));
    publish(&live, 7..=8);
    assert_eq!(take(&mut s, 1).await, items(&[8]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_that_falls_behind_is_told_where_to_resume() {
    let dir = tmp("lag");
    store_with(&dir, 1..=3);
    let f = fixture();
    let (live, _) = broadcast::channel(2);
    let rx = live.subscribe();
    // Six live items into a feed that holds two: four are lost to this client.
    publish(&live, 4..=9);
    let mut s = f.streams.follow(feed(rx, &dir, |_| true), 0);
    let mut got = take(&mut s, 4).await;
    assert_eq!(got.pop(), Some(Got::Lagged { skipped: 4, resume_after: 3 }));
    assert_eq!(got, items(&[1, 2, 3]));
    assert!(next(&mut s).await.is_none(), "the stream ends after the notice");
    assert_eq!(sample(&f.metrics, "telltale.api.stream_lagged"), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_store_ends_the_stream_with_an_error() {
    let dir = tmp("missing");
    let f = fixture();
    let (live, _) = broadcast::channel(4);
    let mut s = f.streams.follow(feed(live.subscribe(), &dir, |_| true), 0);
    let e = next(&mut s).await.expect("an error").expect_err("an error");
    assert_eq!(e.code(), Code::Internal);
    assert!(e.message().starts_with("store: no telltale database at"), "{}", e.message());
    assert!(next(&mut s).await.is_none());
}

#[tokio::test]
async fn closing_ends_a_stream_whose_client_does_not_read() {
    let dir = tmp("stuck");
    // More stored items than the hand-off to the transport holds.
    store_with(&dir, 1..=(CLIENT_QUEUE as u64 + 10));
    let f = fixture();
    let (live, _) = broadcast::channel(4);
    let s = f.streams.follow(feed(live.subscribe(), &dir, |_| true), 0);
    // Let the task fill the queue and block on the client.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(live.receiver_count(), 1);
    f.closing.send_replace(true);
    until_gone(&live).await;
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_that_leaves_is_let_go_while_nothing_happens() {
    let dir = tmp("leave");
    store_with(&dir, 1..=1);
    let f = fixture();
    let (live, _) = broadcast::channel(4);
    let mut s = f.streams.follow(feed(live.subscribe(), &dir, |_| true), 0);
    assert_eq!(take(&mut s, 1).await, items(&[1]));
    drop(s);
    until_gone(&live).await;
    assert_eq!(sample(&f.metrics, "telltale.api.stream_clients"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
