//! What OpenTelemetry export costs detection: a burst of distinct DNS names
//! (each one an anomaly, each one a span) through the real daemon with real
//! sensors, timed until an SDK watcher has every anomaly, with export off
//! (the baseline, same run), to a live OTLP receiver, to one that takes 3 s
//! to answer each export (slower than the 2 s export timeout), and to a
//! collector that is down.
//!
//! `cargo bench -p telltale-integration --bench telemetry_export` (root;
//! build the release binaries first). Env: `BURST` (default 20000), `ROUNDS` (3).

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench code

use std::time::{Duration, Instant};

use telltale_client::{Client, EventType, WatchFilter};
use telltale_integration::bench::{env_u64, median};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::otlp::{serve, Receiver};
use telltale_integration::{kernel_tests_enabled, wait_stable, workload_bin};
use tokio_stream::StreamExt;

/// A sample of the Prometheus text (`name value` lines without labels).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Anomalies/s of one burst, and (spans exported, spans dropped).
async fn round(mode: &str, endpoint: Option<String>, burst: u64, round: u64) -> (f64, f64, f64) {
    let mut cfg =
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
                   [api]\nlisten = \"127.0.0.1:0\"\nstream_buffer = 262144\n\
                   [telemetry.prometheus]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"
            .to_owned();
    if let Some(e) = &endpoint {
        cfg.push_str(&format!("[telemetry.otlp]\nendpoint = \"{e}\"\ntimeout = \"2s\"\n"));
    }
    let pod = Pod::new(&format!("otel-bench-{mode}"), &[("app", "bench:v1")], &cfg);
    let d = pod.start();
    let client = Client::builder(d.socket.clone().expect("admin socket")).connect().await.expect("connect");
    let w = workload_bin();
    let app = pod.container("app");
    run_in(&app, &["/bin/sh", "-c", &format!("{w} dns-udp 127.0.0.1:53 learn.telltale.test A")]);
    wait_stable(&client, Some("bench")).await;
    let mut s = client.watch(WatchFilter { event_type: Some(EventType::Dns), ..WatchFilter::default() }, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    run_in(&app, &["/bin/sh", "-c", &format!("{w} dns-many 127.0.0.1:53 r{round}{mode} {burst}")]);
    let mut n = 0;
    while n < burst {
        let _ = tokio::time::timeout(Duration::from_secs(60), s.next()).await.expect("in time");
        n += 1;
    }
    let rate = burst as f64 / t0.elapsed().as_secs_f64();
    // Give the exporter its batch delay and retries before reading its counters.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let text = reqwest::get(d.metrics.clone().expect("metrics")).await.expect("GET").text().await.expect("body");
    let (exported, dropped) = (
        sample(&text, "telltale_telemetry_spans_exported_total"),
        sample(&text, "telltale_telemetry_spans_dropped_total"),
    );
    d.stop();
    (rate, exported, dropped)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !kernel_tests_enabled("telemetry_export") {
        return;
    }
    let burst = env_u64("BURST", 20_000);
    let rounds = env_u64("ROUNDS", 3);
    let receiver = Receiver::default();
    let (addr, _stop, _task) = serve("127.0.0.1:0".parse().unwrap(), receiver.clone()).await;
    let slow = Receiver::default();
    slow.0.lock().unwrap().delay = Duration::from_secs(3);
    let (slow_addr, _stop_slow, _slow_task) = serve("127.0.0.1:0".parse().unwrap(), slow.clone()).await;
    let modes: [(&str, Option<String>); 4] = [
        ("off", None),
        ("receiver", Some(format!("http://{addr}"))),
        ("slow", Some(format!("http://{slow_addr}"))),
        ("down", Some("http://127.0.0.1:9".into())),
    ];
    let mut results = Vec::new();
    for (mode, endpoint) in &modes {
        let mut rates = Vec::new();
        let mut last = (0.0, 0.0);
        for r in 0..rounds {
            let (rate, exported, dropped) = round(mode, endpoint.clone(), burst, r).await;
            rates.push(rate);
            last = (exported, dropped);
        }
        results.push((*mode, median(rates), last));
    }
    let base = results[0].1;
    for (mode, rate, (exported, dropped)) in &results {
        println!(
            "export {mode:>8}: {burst} anomalies (+ spans) in a burst, median of {rounds}: {rate:.0} anomalies/s \
             ({:.2}x of export off); last round: {exported:.0} spans exported, {dropped:.0} dropped",
            rate / base
        );
    }
}
