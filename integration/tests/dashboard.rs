//! Every series the Grafana dashboard queries exists in a real daemon's
//! `/metrics` (replayed events, real pipeline, real notification delivery),
//! so the dashboard never shows "no data" for a name that does not exist.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::collections::BTreeSet;
use std::time::Duration;

use telltale_client::{Client, NotificationRule, NotificationTarget};
use telltale_integration::replay::{exec, read, Running};

/// Metric names in a PromQL expression (ours and the process ones).
fn series(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("telltale_") || word.starts_with("process_") {
                out.insert(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_queries_exists() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/observability/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut wanted = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            wanted.extend(series(target["expr"].as_str().unwrap()));
        }
    }
    assert!(wanted.len() >= 15, "{wanted:?}");

    let r = Running::start(
        "dashboard",
        "[api]\nlisten = \"127.0.0.1:0\"\n[telemetry.prometheus]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let client = Client::builder(r.socket()).connect().await.unwrap();
    // One rule that delivers (a local listener) and one that fails (a closed port).
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(sink, app).await });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for url in [format!("http://{sink_addr}/hook"), format!("http://{closed}/hook")] {
        let rule = NotificationRule {
            id: String::new(),
            name: "dash".into(),
            enabled: true,
            query: "rule_id:anomaly_detection".into(),
            targets: vec![NotificationTarget::Webhook { url, secret: None, headers: Default::default() }],
            notify_on_update: false,
        };
        client.create_rule(rule).await.unwrap();
    }
    r.replay.send(vec![exec(), read("/etc/app.conf")]);
    let learned = async {
        while client.learning_status(Some("web")).await.map_or(true, |st| st.is_empty() || st[0].behaviours < 2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), learned).await.unwrap();
    r.at_ms(20_000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.at_ms(21_000);
    r.replay.send(vec![read("/etc/shadow")]);

    let url = format!("http://{}/metrics", r.at.metrics.expect("the metrics endpoint listens"));
    let mut missing = wanted.clone();
    let start = std::time::Instant::now();
    while !missing.is_empty() && start.elapsed() < Duration::from_secs(20) {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let present: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect();
        missing.retain(|m| !present.contains(m));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(missing.is_empty(), "the dashboard queries series the daemon does not export: {missing:?}");
    r.stop().await;
}
