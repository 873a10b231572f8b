//! Many pods on one node: what N sidecars cost a process that none of them
//! watches, and how much memory each sidecar holds.
//!
//! `cargo bench -p telltale-integration --bench many_sidecars` (root needed).
//! For each N in `COUNTS` (default 1,2,4,8,16,32) it starts N `telltale run
//! --cgroup` daemons, one empty pod cgroup each, sharing one node set; then
//! an unrelated process (in a cgroup of its own) does `OPENS` (default
//! 200,000) open+close of a small file, `ROUNDS` (3) times, interleaved with
//! the same run without any sidecar; the medians and their ratio are
//! printed, with the daemons' resident memory (the first, which loaded the
//! node set, apart from the others).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::process::Stdio;

use telltale_integration::bench::{env_u64, median, ns_per_op, rss_mib};
use telltale_integration::daemon::{Daemon, Pod};
use telltale_integration::{command, kernel_tests_enabled, workload_bin, TempDir};
use telltale_sidecar::trace::spawn_in;
use telltale_sidecar::workload::cgroup::OwnedCgroup;

/// One run of the unrelated workload, in a cgroup no sidecar watches.
async fn unrelated(argv: &[&str]) -> f64 {
    let cg = OwnedCgroup::create("telltale-bench").expect("cgroup");
    let mut cmd = command(argv);
    cmd.stdout(Stdio::piped());
    let out = spawn_in(cg.cgroup(), cmd).expect("spawn").wait_with_output().await.expect("wait");
    assert!(out.status.success(), "{argv:?} failed");
    ns_per_op(&out.stdout)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !kernel_tests_enabled("many_sidecars") {
        return;
    }
    let opens = env_u64("OPENS", 200_000).to_string();
    let rounds = env_u64("ROUNDS", 3).max(1);
    let counts: Vec<usize> = std::env::var("COUNTS")
        .unwrap_or_else(|_| "1,2,4,8,16,32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let node_dir = format!("/sys/fs/bpf/telltale-bench-{}", std::process::id());
    let dir = TempDir::new("many");
    let file = dir.join("data").display().to_string();
    std::fs::write(&file, b"x").expect("bench file");
    let bin = workload_bin();
    let argv = [bin.as_str(), "open-loop", file.as_str(), opens.as_str()];
    let _ = unrelated(&argv).await; // warm the caches

    println!("sidecars  no sidecar ns/op  with ns/op  ratio   RSS first (loads the set)  RSS others (median, max)");
    for &n in &counts {
        let pods: Vec<Pod> = (0..n)
            .map(|i| Pod::new(&format!("many-{i}"), &[], &format!("[sensor]\nnode_dir = \"{node_dir}\"\n")))
            .collect();
        // One after the other: the first loads the node set.
        let daemons: Vec<Daemon> = pods.iter().map(Pod::start).collect();
        let mut base = Vec::new();
        let mut with = Vec::new();
        for _ in 0..rounds {
            with.push(unrelated(&argv).await);
        }
        // The baseline: the same runs with every daemon stopped (the set is
        // unpinned when the last one leaves), measured right after.
        let rss: Vec<u64> = daemons.iter().map(|d| (rss_mib(d.child.id()) * 1024.0) as u64).collect();
        for d in daemons {
            d.stop();
        }
        assert!(
            std::fs::read_dir(&node_dir).map(|mut d| d.next().is_none()).unwrap_or(true),
            "the node set is still pinned after every sidecar stopped"
        );
        for _ in 0..rounds {
            base.push(unrelated(&argv).await);
        }
        let (b, w) = (median(base), median(with));
        let first = rss.first().copied().unwrap_or(0);
        let mut others: Vec<u64> = rss.iter().skip(1).copied().collect();
        others.sort_unstable();
        let others_text = if others.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1} MiB, {:.1} MiB",
                others[others.len() / 2] as f64 / 1024.0,
                others[others.len() - 1] as f64 / 1024.0
            )
        };
        println!("{n:>8}  {b:>16.1}  {w:>10.1}  {:>5.3}   {:>24.1} MiB  {others_text}", w / b, first as f64 / 1024.0);
    }
    let _ = std::fs::remove_dir(&node_dir);
}
