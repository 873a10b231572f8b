//! A burst of new behaviour in one pod, and how much of it reaches the
//! profile for each size of the pod's ring buffer; the daemon's memory
//! after it.
//!
//! `cargo bench -p telltale-integration --bench burst` (root needed). For
//! each size in `RINGS` (bytes; default 262144,1048576,2097152,8388608) a
//! `telltale run` daemon watches a pod with one container (image
//! `burst:v1`, learning), in which `FILES` (default 200,000) distinct files
//! are created and opened while `EXECS` (default 10,000) `/bin/true` run
//! at the same time. Printed: the records the kernel sent and lost (all
//! charged to `burst`'s profile), the share kept, and the daemon's RSS.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::process::Command;
use std::time::{Duration, Instant};

use telltale_integration::bench::{env_u64, rss_mib};
use telltale_integration::daemon::Pod;
use telltale_integration::{kernel_tests_enabled, telltale_bin, workload_bin, TempDir};
use telltale_sidecar::trace::spawn_in;

/// (records to user space, records lost) from `telltale status`.
fn kernel_counts(pod: &Pod) -> (u64, u64) {
    let out =
        Command::new(telltale_bin()).args(["status", "--data-dir"]).arg(pod.dir.join("data")).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("sensors:")).unwrap_or_default().to_owned();
    let number_before = |what: &str| -> u64 {
        line.split(", ")
            .find_map(|part| part.trim_start_matches("sensors: ").strip_suffix(what).map(str::trim))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (number_before("events to user space"), number_before("records lost"))
}

fn profile_lost(pod: &Pod, image: &str) -> u64 {
    let out = Command::new(telltale_bin())
        .args(["status", "--json", "--data-dir"])
        .arg(pod.dir.join("data"))
        .output()
        .expect("status");
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.iter()
        .filter(|p| p["image"] == image)
        .flat_map(|p| p["types"].as_array().cloned().unwrap_or_default())
        .map(|t| t["lost_events"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !kernel_tests_enabled("burst") {
        return;
    }
    let files = env_u64("FILES", 200_000).to_string();
    let execs = env_u64("EXECS", 10_000).to_string();
    let rings: Vec<u64> = std::env::var("RINGS")
        .unwrap_or_else(|_| "262144,1048576,2097152,8388608".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let node_dir = format!("/sys/fs/bpf/telltale-burst-{}", std::process::id());
    let bin = workload_bin();
    println!("burst: {files} distinct files + {execs} execs of /bin/true at once, in one container");
    println!("ring buffer  to user space      lost   kept    lost charged to burst's profile   daemon RSS after");
    for ring in rings {
        let pod = Pod::new(
            &format!("burst-{ring}"),
            &[("app", "burst:v1")],
            &format!("[sensor]\nnode_dir = \"{node_dir}\"\nring_buffer = {ring}\n"),
        );
        let daemon = pod.start();
        let dir = TempDir::new("burst-files");
        let app = pod.container("app");
        let mut open = tokio::process::Command::new(&bin);
        open.args(["open-distinct", &dir.str(), &files]);
        let mut exec = tokio::process::Command::new(&bin);
        exec.args(["exec-loop", &execs, "/bin/true"]).stdout(std::process::Stdio::null());
        let (a, b) = (spawn_in(&app, open).expect("spawn"), spawn_in(&app, exec).expect("spawn"));
        let (a, b) = (a.wait_with_output().await.expect("wait"), b.wait_with_output().await.expect("wait"));
        assert!(a.status.success() && b.status.success(), "burst workload failed");
        // Until the counters (saved once a second) stop moving.
        let start = Instant::now();
        let mut last = (u64::MAX, u64::MAX);
        loop {
            std::thread::sleep(Duration::from_millis(1500));
            let now = kernel_counts(&pod);
            if now == last || start.elapsed() > Duration::from_secs(120) {
                break;
            }
            last = now;
        }
        let (sent, lost) = last;
        let charged = profile_lost(&pod, "burst");
        let rss = rss_mib(daemon.child.id());
        println!(
            "{:>8} KiB  {sent:>13}  {lost:>8}  {:>5.1} %  {charged:>32}  {rss:>12.1} MiB",
            ring / 1024,
            100.0 * sent as f64 / (sent + lost).max(1) as f64
        );
        daemon.stop();
    }
    let _ = std::fs::remove_dir(&node_dir);
}
