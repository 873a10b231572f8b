//! Cost of the sensors on the traced workload, measured in one run against
//! an untraced baseline in the same kind of cgroup.
//!
//! `cargo bench -p telltale-integration --bench sensor_overhead`
//! (root needed). Env: `OPENS` (default 1,000,000), `EXECS` (2,000),
//! `ROUNDS` (3; the median of the rounds is reported).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::process::Stdio;

use telltale_integration::bench::{env_u64, median, ns_per_op};
use telltale_integration::{command, kernel_tests_enabled, workload_bin, TempDir, Traced};
use telltale_sidecar::sensor::SensorOptions;
use telltale_sidecar::trace::spawn_in;
use telltale_sidecar::workload::cgroup::OwnedCgroup;

async fn untraced(argv: &[&str]) -> f64 {
    let cg = OwnedCgroup::create("telltale-bench").expect("cgroup");
    let mut cmd = command(argv);
    cmd.stdout(Stdio::piped());
    let child = spawn_in(cg.cgroup(), cmd).expect("spawn");
    let out = child.wait_with_output().await.expect("wait");
    assert!(out.status.success(), "{argv:?} failed");
    ns_per_op(&out.stdout)
}

async fn traced(argv: &[&str]) -> (f64, u64, u64) {
    let mut t = Traced::new(SensorOptions::default());
    let mut cmd = command(argv);
    let out_path = format!("/tmp/telltale-bench-out-{}", std::process::id());
    let file = std::fs::File::create(&out_path).expect("output file");
    cmd.stdout(Stdio::from(file));
    let (status, events) = t.run_cmd(cmd).await;
    assert!(status.success(), "{argv:?} failed");
    let stdout = std::fs::read(&out_path).expect("read output");
    let _ = std::fs::remove_file(&out_path);
    let c = t.sensor.counters().expect("counters");
    (ns_per_op(&stdout), events.len() as u64, c.events().dropped_repeats)
}

async fn compare(label: &str, argv: &[&str], rounds: u64) {
    let mut base = Vec::new();
    let mut with = Vec::new();
    let mut last = (0, 0);
    for _ in 0..rounds {
        base.push(untraced(argv).await);
        let (ns, events, dropped) = traced(argv).await;
        with.push(ns);
        last = (events, dropped);
    }
    let (b, w) = (median(base), median(with));
    println!(
        "{label:<28} untraced {b:>10.1} ns/op   traced {w:>10.1} ns/op   ratio {:.3}   \
         (last traced run: {} events to user space, {} repeats dropped in kernel)",
        w / b,
        last.0,
        last.1
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !kernel_tests_enabled("sensor_overhead") {
        return;
    }
    let opens = env_u64("OPENS", 1_000_000);
    let execs = env_u64("EXECS", 2_000);
    let rounds = env_u64("ROUNDS", 3).max(1);
    let dir = TempDir::new("bench");
    let file = dir.join("data");
    std::fs::write(&file, b"x").expect("bench file");
    let bin = workload_bin();
    println!("sensor_overhead: {opens} open+close, {execs} execs, median of {rounds} rounds");
    let n = opens.to_string();
    compare("open+close (same file)", &[&bin, "open-loop", &file.display().to_string(), &n], rounds).await;
    let e = execs.to_string();
    compare("exec /bin/true", &[&bin, "exec-loop", &e, "/bin/true"], rounds).await;
}
