//! Helpers for telltale's end-to-end tests: root checks, test cgroups, and
//! running a workload inside a cgroup while collecting the sensors' events.
//!
//! Kernel tests need root and BTF. They fail when those are missing, unless
//! `TELLTALE_SKIP_KERNEL_TESTS=1` is set explicitly (then they say so).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

pub mod daemon;
pub mod otlp;
pub mod replay;

use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;

use telltale_core::event::{Event, EventKind};
use telltale_sidecar::sensor::{Sensor, SensorOptions};
use telltale_sidecar::trace::spawn_in;
use telltale_sidecar::workload::cgroup::OwnedCgroup;

/// True if kernel tests should run; false (with a message) if skipping was
/// asked for explicitly. Panics when they cannot run and skipping was not asked.
pub fn kernel_tests_enabled(test: &str) -> bool {
    if std::env::var("TELLTALE_SKIP_KERNEL_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: TELLTALE_SKIP_KERNEL_TESTS=1");
        return false;
    }
    if let Err(e) = telltale_sidecar::sensor::preflight() {
        panic!("{test} needs root, BTF and tracefs ({e}); set TELLTALE_SKIP_KERNEL_TESTS=1 to skip explicitly");
    }
    true
}

/// A sensor watching a fresh test cgroup.
#[derive(Debug)]
pub struct Traced {
    /// The sensor.
    pub sensor: Sensor,
    /// The cgroup (removed on drop).
    pub cgroup: OwnedCgroup,
}

impl Traced {
    /// Load the sensors and watch a new cgroup.
    pub fn new(options: SensorOptions) -> Self {
        let sensor = Sensor::load(&options).unwrap_or_else(|e| panic!("loading sensors: {}", chain(&e)));
        let cgroup = OwnedCgroup::create("telltale-test").unwrap_or_else(|e| panic!("creating cgroup: {}", chain(&e)));
        let mut t = Self { sensor, cgroup };
        t.sensor.watch(t.cgroup.cgroup()).unwrap_or_else(|e| panic!("watching cgroup: {}", chain(&e)));
        t
    }

    /// Run `argv` inside the cgroup until it exits; return its status and
    /// every event produced meanwhile (ring buffer drained after exit).
    pub async fn run(&mut self, argv: &[&str]) -> (ExitStatus, Vec<Event>) {
        self.run_cmd(command(argv)).await
    }

    /// [`Traced::run`] with a prepared command (e.g. with piped stdout).
    pub async fn run_cmd(&mut self, cmd: tokio::process::Command) -> (ExitStatus, Vec<Event>) {
        let shown = format!("{:?}", cmd.as_std());
        let mut child =
            spawn_in(self.cgroup.cgroup(), cmd).unwrap_or_else(|e| panic!("spawning {shown}: {}", chain(&e)));
        let mut events = Vec::new();
        let status = loop {
            tokio::select! {
                s = child.wait() => break s.expect("waiting for the workload"),
                r = self.sensor.next_events(&mut events) => r.expect("reading events"),
            }
        };
        self.sensor.drain(&mut events);
        (status, events)
    }
}

/// Helpers of the benchmarks.
pub mod bench {
    /// An unsigned number from the environment (`1_000_000` and `1,000` work).
    pub fn env_u64(name: &str, default: u64) -> u64 {
        std::env::var(name).ok().and_then(|v| v.replace(['_', ','], "").parse().ok()).unwrap_or(default)
    }

    /// The `ns_per_op N` line the workload helper prints.
    pub fn ns_per_op(stdout: &[u8]) -> f64 {
        let text = String::from_utf8_lossy(stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("ns_per_op ").and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("workload printed no ns_per_op: {text}"))
    }

    /// Resident memory of a process, MiB (0 if it is gone).
    pub fn rss_mib(pid: u32) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }

    /// The median (upper median for even lengths).
    pub fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
}

/// Wait (up to 60 s) until every event type of every profile of `image`
/// (all images when `None`) is stable, asking the daemon through the SDK.
pub async fn wait_stable(client: &telltale_client::Client, image: Option<&str>) {
    let start = std::time::Instant::now();
    loop {
        let st = client.learning_status(image).await.expect("learning status");
        let stable = telltale_client::LearningState::Stable;
        if !st.is_empty() && st.iter().all(|p| p.types.iter().all(|t| t.state == stable)) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{image:?} never stable: {st:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A command from argv.
pub fn command(argv: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(OsString::from(argv[0]));
    cmd.args(&argv[1..]);
    cmd
}

/// Error with its sources.
pub use telltale_core::error_chain as chain;

/// A binary of the workspace, next to the test and bench executables (one
/// directory up from `deps/`).
fn target_bin(name: &str, hint: &str) -> String {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| if d.ends_with("deps") { d.parent() } else { Some(d) }).expect("exe dir");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is missing: {hint}", bin.display());
    bin.display().to_string()
}

/// Path of the workload helper binary.
pub fn workload_bin() -> String {
    target_bin("tt-workload", "build it with `cargo test -p telltale-integration`")
}

/// Path of the `telltalectl` binary (built by `cargo build --workspace --bins`).
pub fn telltalectl_bin() -> String {
    target_bin("telltalectl", "build it first with `cargo build --workspace --bins` (scripts/test.sh does)")
}

/// Path of the `telltale` binary (build it first: `cargo build --workspace --bins`,
/// as scripts/test.sh does).
pub fn telltale_bin() -> String {
    target_bin("telltale", "build it first with `cargo build --workspace --bins` (scripts/test.sh does)")
}

/// The exec events, as (path, args).
pub fn execs(events: &[Event]) -> Vec<(String, Vec<String>)> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Exec))
        .map(|e| (e.process.path.clone(), e.process.args.clone()))
        .collect()
}

/// Canonical path of a program found in PATH (e.g. `sh` -> `/usr/bin/dash`).
pub fn resolve(program: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(program);
        if p.is_file() {
            return std::fs::canonicalize(&p).map(|c| c.display().to_string()).unwrap_or_default();
        }
    }
    panic!("{program} not found in PATH")
}

/// A unique scratch directory under /tmp, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Create `/tmp/telltale-<tag>-<pid>-<nanos>`.
    pub fn new(tag: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos();
        let p = std::path::PathBuf::from(format!("/tmp/telltale-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("creating temp dir");
        Self(std::fs::canonicalize(&p).expect("canonical temp dir"))
    }

    /// A path inside.
    pub fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }

    /// As a string.
    pub fn str(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
