//! A daemon killed with -9 in the middle of a burst of anomalies leaves a
//! store in which every stored anomaly is in its signal, every signal change
//! is logged and every notification is queued: one batch, one transaction,
//! nothing half-written and nothing to repair. A restart changes nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telltale_client::{Client, NotificationRule, NotificationTarget};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, wait_stable, workload_bin};
use telltale_sidecar::store::Store;

fn check_consistent(data: &std::path::Path, rule_id: &str) -> (u64, Vec<telltale_core::signal::Signal>) {
    let store = Store::open_read_only(data).unwrap();
    let anomalies = store.anomalies_after(0, usize::MAX).unwrap();
    let signals = store.signals().unwrap();
    let changes = store.signal_changes_after(0, usize::MAX).unwrap();
    let due = store.due(i64::MAX, 1000).unwrap();
    let stored = anomalies.len() as u64;
    let counted: u64 = signals.iter().map(|s| s.anomaly_count.max(s.entries.len() as u64)).sum();
    assert_eq!(counted, stored, "every stored anomaly is counted in its signal, once");
    for s in &signals {
        let last = changes.iter().rev().find(|(_, c)| c.signal.id == s.id).expect("each signal's change is logged");
        assert_eq!(last.1.signal.version, s.version, "the last logged change is the signal as stored");
        assert!(
            due.iter().any(|d| d.rule_id == rule_id && d.signal_id == s.id),
            "a notification about {} is queued",
            s.id
        );
    }
    let mut seqs: Vec<u64> = anomalies.iter().map(|(s, _)| *s).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), anomalies.len(), "sequence numbers are unique");
    (stored, signals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_leaves_signals_log_and_outbox_consistent() {
    if !kernel_tests_enabled("kill_9_during_a_burst_leaves_signals_log_and_outbox_consistent") {
        return;
    }
    let cfg = "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
               [api]\nlisten = \"127.0.0.1:0\"\n";
    let pod = Pod::new("crash", &[("app", "crash-app:v1")], cfg);
    let app = pod.container("app");
    let w = workload_bin();
    // DNS is captured on port 53 (the documented scope); an address of its own in 127/8.
    let dns = UdpSocket::bind("127.0.0.97:53").unwrap();
    let dns_addr = dns.local_addr().unwrap();
    let d = pod.start();
    let client = Client::builder(d.socket.clone().unwrap()).connect().await.unwrap();
    // The burst's process is learned (so each new name is its own anomaly,
    // not folded into a new process's one).
    let addr = dns_addr.to_string();
    run_in(&app, &[w.as_str(), "dns-many", &addr, "learn", "1"]);
    wait_stable(&client, Some("crash-app")).await;
    // A target that never answers: every message stays queued.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let rule = client
        .create_rule(NotificationRule {
            id: String::new(),
            name: "all".into(),
            enabled: true,
            query: "rule_id:anomaly_detection".into(),
            targets: vec![NotificationTarget::Webhook {
                url: format!("http://{closed}/hook"),
                secret: None,
                headers: Default::default(),
            }],
            notify_on_update: true,
        })
        .await
        .unwrap();

    // A burst of distinct DNS names (one anomaly each), killed mid-way.
    let procs = app.path.join("cgroup.procs");
    let mut burst = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
        .args(["sh", w.as_str(), "dns-many", &addr, "burst", "20000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let data = pod.dir.join("data");
    let start = Instant::now();
    loop {
        let n = Store::open_read_only(&data).and_then(|s| s.anomalies_after(0, usize::MAX)).map_or(0, |a| a.len());
        if n >= 300 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the burst raised only {n} anomalies");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    let _ = burst.kill();
    let _ = burst.wait();

    let (stored, before) = check_consistent(&data, &rule.id);
    assert!(stored >= 300, "{stored}");

    // A restart neither re-counts nor re-announces anything.
    let d = pod.start();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    d.stop();
    let (after_stored, after) = check_consistent(&data, &rule.id);
    assert_eq!(after_stored, stored);
    let counts = |s: &[telltale_core::signal::Signal]| {
        s.iter().map(|x| (x.id.clone(), x.anomaly_count, x.version)).collect::<Vec<_>>()
    };
    assert_eq!(counts(&after), counts(&before), "a restart changes no signal");
}
