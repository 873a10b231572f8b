//! A learned (stable) workload repeating known behaviour under the real
//! daemon: events reaching user space per second, and its open+close cost
//! against an untraced baseline measured in the same run.
//!
//! `cargo bench -p telltale-integration --bench stable_workload` (root).
//! Env: `OPENS` (default 1,000,000), `ROUNDS` (3, median reported).

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench code

use std::process::Command;
use std::time::{Duration, Instant};

use telltale_integration::bench::{env_u64, median};
use telltale_integration::daemon::Pod;
use telltale_integration::{kernel_tests_enabled, workload_bin};
use telltale_sidecar::store::Store;
use telltale_sidecar::workload::cgroup::{Cgroup, OwnedCgroup};

/// Run the open loop in `cg`; returns ns/op printed by the workload.
fn open_loop(cg: &Cgroup, file: &str, n: u64) -> f64 {
    let procs = cg.path.join("cgroup.procs");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec {} open-loop {file} {n}", procs.display(), workload_bin()))
        .output()
        .expect("workload");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("ns_per_op ")).and_then(|v| v.trim().parse().ok()).expect("ns_per_op")
}

fn emitted(data: &std::path::Path) -> (u64, u64, i64) {
    let store = Store::open_read_only(data).expect("store");
    let c = store.meta_json(telltale_sidecar::daemon::SENSOR_COUNTERS).expect("meta").expect("counters saved");
    let sum = |f: &str| ["exec", "file", "dns", "connect"].iter().map(|k| c[*k][f].as_u64().unwrap_or(0)).sum();
    (sum("emitted"), sum("filtered_known"), c["updated_ms"].as_i64().unwrap_or(0))
}

/// Wait for the daemon's next counters snapshot after `after_ms`.
fn fresh_counters(data: &std::path::Path, after_ms: i64) -> (u64, u64) {
    loop {
        let (e, k, at) = emitted(data);
        if at > after_ms {
            return (e, k);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    if !kernel_tests_enabled("stable_workload") {
        return;
    }
    let opens = env_u64("OPENS", 1_000_000);
    let rounds = env_u64("ROUNDS", 3).max(1);
    let pod = Pod::new(
        "stable-bench",
        &[("app", "bench:v1")],
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"60s\"\nwarmup = \"0s\"\n",
    );
    let file = pod.dir.join("hot").display().to_string();
    std::fs::write(&file, b"x").expect("file");
    let data = pod.dir.join("data");
    let app = pod.container("app");
    let daemon = pod.start();

    // Learn the workload, then wait until every type is stable.
    for _ in 0..3 {
        open_loop(&app, &file, 1000);
    }
    let start = Instant::now();
    loop {
        let store = Store::open_read_only(&data).expect("store");
        let profiles = store.load_profiles().expect("profiles");
        let stable = profiles.iter().any(|p| {
            p.image == "bench"
                && telltale_core::profile::EventType::ALL
                    .iter()
                    .all(|t| p.clock(*t).state == telltale_core::profile::lifecycle::State::Stable)
        });
        if stable {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "profile never became stable");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (mut traced, mut base, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let plain = OwnedCgroup::create("telltale-bench-plain").expect("cgroup");
    for _ in 0..rounds {
        base.push(open_loop(plain.cgroup(), &file, opens));
        let (e0, k0) = fresh_counters(&data, telltale_core::clock::now_ms());
        let t0 = Instant::now();
        traced.push(open_loop(&app, &file, opens));
        let secs = t0.elapsed().as_secs_f64();
        let (e1, k1) = fresh_counters(&data, telltale_core::clock::now_ms());
        rates.push((e1 - e0) as f64 / secs);
        println!(
            "round: {} events reached user space in {secs:.2} s ({} known repeats filtered in kernel)",
            e1 - e0,
            k1 - k0
        );
    }
    let (b, t) = (median(base), median(traced));
    println!(
        "stable workload, {opens} open+close: untraced {b:.1} ns/op, traced by the daemon {t:.1} ns/op, ratio {:.3} \
         (target <= 1.3); events to user space {:.2}/s (target ~0)",
        t / b,
        median(rates)
    );
    daemon.stop();
}
