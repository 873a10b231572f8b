//! `telltale run -- CMD` owns the cgroup it creates: a daemon killed with -9
//! cannot remove it, so the next one does, with what was left running in it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telltale_integration::{kernel_tests_enabled, telltale_bin, TempDir};
use telltale_sidecar::workload::cgroup::Cgroup;

/// The daemon, killed if the test fails before it stops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_local(dir: &TempDir, argv: &[&str]) -> Running {
    std::fs::write(
        dir.join("t.toml"),
        format!("data_dir = \"{}/data\"\nimage = \"local:v1\"\n[api]\nenabled = false\n", dir.str()),
    )
    .unwrap();
    let mut child = Command::new(telltale_bin())
        .args(["run", "--config"])
        .arg(dir.join("t.toml"))
        .arg("--")
        .args(argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Log lines may come first (the next daemon frees the killed one's node slot).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        seen.push_str(&line);
        if line.contains("telltale: watching") {
            break;
        }
        assert!(n > 0 && seen.len() < 1 << 16, "the daemon did not start: {seen}");
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    Running(child)
}

#[test]
fn a_cgroup_left_by_a_killed_daemon_is_removed_by_the_next() {
    if !kernel_tests_enabled("a_cgroup_left_by_a_killed_daemon_is_removed_by_the_next") {
        return;
    }
    let dir = TempDir::new("local-stale");
    let mut first = run_local(&dir, &["sleep", "300"]);
    let root = Cgroup::root().unwrap();
    let left = root.path.join(format!("telltale-run-{}-0", first.0.id()));
    assert!(left.is_dir(), "{} exists while the daemon runs", left.display());
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let sleeper = std::fs::read_to_string(left.join("cgroup.procs")).unwrap();
    assert!(!sleeper.trim().is_empty(), "the command outlives a daemon killed with -9");

    let mut second = run_local(&dir, &["true"]);
    let start = Instant::now();
    while left.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "{} still there", left.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in sleeper.split_whitespace() {
        // Gone, or a zombie waiting for its new parent to reap it.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let state = status.lines().find_map(|l| l.strip_prefix("State:")).unwrap_or("gone").trim().to_owned();
        assert!(state == "gone" || state.starts_with('Z'), "process {pid} of the stale cgroup was killed: {state}");
    }
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(second.0.id() as i32, libc::SIGTERM) };
    assert!(second.0.wait().unwrap().success());
}
