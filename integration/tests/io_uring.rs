//! io_uring use is a behaviour (issue 16): its requests (IORING_OP_OPENAT
//! and the rest) run in the kernel, not as syscalls, so the file sensor
//! never sees them; the use of io_uring itself is reported, once per
//! process lineage, and learned like any behaviour of the process node.
//! Real eBPF, real processes in a test cgroup, the real detector.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::Duration;

use telltale_core::detect::{Change, Container, Detector};
use telltale_core::event::{Event, EventKind, Mechanism};
use telltale_core::profile::lifecycle::LearningConfig;
use telltale_core::profile::{Behaviour, EventType};
use telltale_core::workload::image::ImageRef;
use telltale_integration::{kernel_tests_enabled, workload_bin, TempDir, Traced};
use telltale_sidecar::sensor::SensorOptions;

fn mechanisms(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| matches!(e.kind, EventKind::Mechanism { .. })).collect()
}

fn anomalies(changes: &[Change]) -> Vec<&telltale_core::detect::Anomaly> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Anomaly(a) => Some(a.as_ref()),
            _ => None,
        })
        .collect()
}

/// A process that never used io_uring while its profile learned, and then
/// opens a file through io_uring, is exactly one anomaly: it started using
/// io_uring. The same process doing it again is reported no more (the
/// kernel drops the repeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_starts_using_io_uring_is_an_anomaly() {
    if !kernel_tests_enabled("a_process_that_starts_using_io_uring_is_an_anomaly") {
        return;
    }
    let dir = TempDir::new("io-uring");
    let file = dir.join("data");
    std::fs::write(&file, b"x").expect("write");
    let file = file.display().to_string();
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let cfg = LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
    };
    let mut d = Detector::new(cfg, vec![], vec![]);
    let image = ImageRef::parse("uring:v1").expect("image");
    d.add_container(Container::new("c1", "uring", &image, t.cgroup.cgroup().id, 0), 0);

    // Learning: the same program, opening the same file with a plain open.
    let (s, learned) = t.run(&[&bin, "open", &file]).await;
    assert!(s.success());
    assert!(mechanisms(&learned).is_empty(), "no io_uring yet: {learned:?}");
    for e in &learned {
        assert!(anomalies(&d.on_event(e, 1_000).changes).is_empty());
    }
    d.tick(20_000, &Default::default());
    let profile = d.profile("uring").expect("profile");
    for ty in EventType::ALL {
        assert_eq!(profile.clock(ty).state.name(), "stable", "{ty:?}");
    }

    // Stable: the same program opens the file through io_uring.
    let (s, events) = t.run(&[&bin, "io-uring-open", &file]).await;
    assert!(s.success(), "io-uring-open failed");
    let used = mechanisms(&events);
    assert_eq!(used.len(), 1, "one record for the ring set up and the request: {events:?}");
    assert_eq!(used[0].kind, EventKind::Mechanism { mechanism: Mechanism::IoUring });
    assert_eq!(used[0].process.path, bin);
    assert_eq!(used[0].cgroup_id, t.cgroup.cgroup().id);
    assert!(
        !events.iter().any(|e| matches!(&e.kind, EventKind::File { file: f } if f.path == file)),
        "the io_uring open is no syscall: no file event (that is why the mechanism is reported)"
    );
    let mut all = Vec::new();
    for e in &events {
        all.extend(d.on_event(e, 21_000).changes);
    }
    let found = anomalies(&all);
    assert_eq!(found.len(), 1, "exactly one anomaly: {found:#?}");
    let a = found[0];
    assert_eq!(a.event_type, EventType::Exec);
    assert_eq!(a.observation.lineage, vec![bin.clone()]);
    assert_eq!(a.observation.behaviour, Behaviour::Mechanism { mechanism: Mechanism::IoUring });
    let (signal, _) = telltale_core::signal::Signals::default().on_anomaly(1, a);
    let events = signal.overview().events;
    assert!(events.iter().any(|l| l.contains(&format!("{bin} started using io_uring"))), "{events:?}");

    // Again: dropped in the kernel, per lineage.
    let before = t.sensor.counters().expect("counters").mechanism;
    let (s, again) = t.run(&[&bin, "io-uring-open", &file]).await;
    assert!(s.success());
    assert!(mechanisms(&again).is_empty(), "{again:?}");
    let after = t.sensor.counters().expect("counters").mechanism;
    assert!(after.dropped_repeats > before.dropped_repeats, "{before:?} {after:?}");
    assert_eq!(after.emitted, 1);
}

/// io_uring used by a process outside the watched cgroup is not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_outside_the_cgroup_produces_nothing() {
    if !kernel_tests_enabled("io_uring_outside_the_cgroup_produces_nothing") {
        return;
    }
    let dir = TempDir::new("io-uring-outside");
    let file = dir.join("data");
    std::fs::write(&file, b"x").expect("write");
    let file = file.display().to_string();
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let out = std::process::Command::new(&bin).args(["io-uring-open", &file]).status().expect("outside io_uring");
    assert!(out.success());
    // Inside: a marker without io_uring, which drains what came before.
    let (s, events) = t.run(&[&bin, "open", &file]).await;
    assert!(s.success());
    assert!(mechanisms(&events).is_empty(), "{events:?}");
    assert!(events.iter().all(|e| e.cgroup_id == t.cgroup.cgroup().id));
    assert_eq!(t.sensor.counters().expect("counters").mechanism.emitted, 0);
}
