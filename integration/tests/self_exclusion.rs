//! Telltale's own process never produces events, even inside the watched
//! cgroup. Its own test binary: it moves the test process itself.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::net::TcpListener;

use telltale_core::event::EventKind;
use telltale_integration::{kernel_tests_enabled, workload_bin, TempDir, Traced};
use telltale_sidecar::sensor::SensorOptions;
use telltale_sidecar::workload::cgroup::Cgroup;

fn own_cgroup() -> Cgroup {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).expect("unified cgroup line");
    Cgroup::open(std::path::Path::new(rel.trim_start_matches('/'))).expect("own cgroup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telltale_itself_is_never_reported() {
    if !kernel_tests_enabled("telltale_itself_is_never_reported") {
        return;
    }
    let dir = TempDir::new("self");
    let mine = dir.join("mine");
    let child_file = dir.join("child");
    std::fs::write(&mine, b"x").expect("write");
    std::fs::write(&child_file, b"x").expect("write");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let home = own_cgroup();
    let mut t = Traced::new(SensorOptions::default());

    // Move this (sensor-owning) process into the watched cgroup, act, leave.
    t.cgroup.cgroup().add_process(std::process::id()).expect("move self in");
    std::fs::read(&mine).expect("read");
    let _ = std::net::TcpStream::connect(listener.local_addr().expect("addr"));
    home.add_process(std::process::id()).expect("move self back");

    let bin = workload_bin();
    let (s, events) = t.run(&[&bin, "open", &child_file.display().to_string()]).await;
    assert!(s.success());
    let ours: Vec<_> = events.iter().filter(|e| e.process.pid == std::process::id()).collect();
    assert!(ours.is_empty(), "telltale's own events: {ours:?}");
    let paths: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File { file } if file.path.starts_with(&dir.str()) => Some(file.path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(paths, vec![child_file.display().to_string()]);
}
