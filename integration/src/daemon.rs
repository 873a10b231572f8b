//! Running the real daemon in tests: a pod cgroup with container cgroups,
//! `telltale run` over it, `telltale status`, and the anomalies it writes.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use telltale_sidecar::workload::cgroup::{Cgroup, OwnedCgroup};

use crate::{telltale_bin, TempDir};

/// A test pod cgroup with container cgroups and a daemon configuration.
#[derive(Debug)]
pub struct Pod {
    /// The pod cgroup.
    pub pod: OwnedCgroup,
    /// Scratch directory: config, data, anomalies file.
    pub dir: TempDir,
}

impl Pod {
    /// Containers as (cgroup name, image); `extra` is appended to the config.
    pub fn new(tag: &str, containers: &[(&str, &str)], extra: &str) -> Self {
        let pod = OwnedCgroup::create("telltale-pod").expect("pod cgroup");
        let dir = TempDir::new(tag);
        let mut cfg = format!("data_dir = \"{}/data\"\n{extra}\n", dir.str());
        if !extra.contains("[api]") {
            // Tests run daemons side by side: never the default port.
            cfg.push_str("[api]\nlisten = \"127.0.0.1:0\"\n");
        }
        for (name, image) in containers {
            pod.cgroup().create_child(name).expect("container cgroup");
            cfg.push_str(&format!("[[containers]]\ncgroup = \"{name}\"\nimage = \"{image}\"\n"));
        }
        std::fs::write(dir.join("telltale.toml"), cfg).expect("config");
        Self { pod, dir }
    }

    /// The cgroup of container `name`.
    pub fn container(&self, name: &str) -> Cgroup {
        Cgroup::open(&self.pod.cgroup().path.join(name)).expect("container")
    }

    /// Where the daemon writes anomalies (JSON lines).
    pub fn anomalies_path(&self) -> PathBuf {
        self.dir.join("anomalies.jsonl")
    }

    /// Start `telltale run` on the pod; returns once it is watching.
    pub fn start(&self) -> Daemon {
        self.start_with_env(&[])
    }

    fn run_command(&self, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(telltale_bin());
        c.envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(self.dir.join("telltale.toml"))
            .arg("--cgroup")
            .arg(&self.pod.cgroup().path)
            .arg("--anomalies-json")
            .arg(self.anomalies_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `telltale run` with these variables must refuse to start (within
    /// 20 s); returns what it printed.
    pub fn run_expect_failure_with_env(&self, env: &[(&str, &str)]) -> String {
        let mut child = self.run_command(env).spawn().expect("telltale run");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("telltale run started although it should have refused to");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
        assert!(!status.success(), "exit status {status}: {err}");
        err
    }

    /// Start `telltale run`, do `action` once it watches, and wait (up to
    /// `timeout`) for the daemon to exit by itself. Returns its status and
    /// everything it printed on stderr.
    pub fn run_until_exit(&self, action: impl FnOnce(), timeout: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.run_command(&[]).spawn().expect("telltale run");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let first = read_until_watching(&mut stderr);
        let rest = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut all);
            all
        });
        action();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("telltale run did not exit within {timeout:?}: {}", rest.join().unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (status, first + &rest.join().unwrap_or_default())
    }

    /// [`Pod::start`] with extra environment variables.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let mut child = self.run_command(env).spawn().expect("telltale run");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let line = read_until_watching(&mut stderr);
        let last = line.lines().last().unwrap_or_default();
        let after =
            |marker: &str| last.trim().split(marker).nth(1).and_then(|r| r.split(';').next()).map(str::to_owned);
        let api = after("; API on ").map(|a| format!("http://{a}"));
        let socket = after("; admin socket ").map(|p| format!("unix://{p}"));
        let metrics = after("; metrics on ");
        // Keep draining stderr so the daemon never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stderr.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Daemon { child, api, socket, metrics }
    }

    /// `telltale status --json`.
    pub fn status(&self) -> Vec<Value> {
        let out = Command::new(telltale_bin())
            .args(["status", "--json", "--data-dir"])
            .arg(self.dir.join("data"))
            .output()
            .expect("status");
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("status json")
    }

    /// Status of one event type of one image.
    pub fn type_status(&self, image: &str, t: &str) -> Option<Value> {
        self.status()
            .into_iter()
            .find(|p| p["image"] == image)
            .and_then(|p| p["types"].as_array().and_then(|ts| ts.iter().find(|x| x["type"] == t).cloned()))
    }

    /// Wait until every type in `types` of `image` is in `state`.
    pub fn wait_state(&self, image: &str, types: &[&str], state: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let all = types.iter().all(|t| self.type_status(image, t).is_some_and(|s| s["state"] == state));
            if all {
                return;
            }
            assert!(start.elapsed() < timeout, "{image} {types:?} not {state} after {timeout:?}: {:?}", self.status());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Anomalies written so far.
    pub fn anomalies(&self) -> Vec<Value> {
        std::fs::read_to_string(self.anomalies_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("anomaly json"))
            .collect()
    }

    /// Wait until the daemon has processed everything (anomaly count stops changing).
    /// Anomalies once the daemon has stopped writing new ones.
    pub fn settle(&self) -> Vec<Value> {
        let mut last = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(700));
            let a = self.anomalies();
            if a.len() == last {
                return a;
            }
            last = a.len();
        }
    }
}

/// Read the daemon's stderr up to its "telltale: watching" line (log lines,
/// such as a retried notification from an earlier run's outbox, may come
/// first); everything read so far, that line last. Panics on EOF.
fn read_until_watching(stderr: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read");
        all.push_str(&line);
        if line.contains("telltale: watching") {
            return all;
        }
        assert!(n > 0 && all.len() < 1 << 20, "daemon did not start: {all}");
    }
}

/// A running `telltale run`.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// The API address it printed, if any (TCP: needs a token).
    pub api: Option<String>,
    /// Its local admin socket as an address (`unix://…`), if any: admin
    /// without a token for callers outside the pod cgroup (the tests).
    pub socket: Option<String>,
    /// The Prometheus endpoint URL it printed, if any.
    pub metrics: Option<String>,
}

impl Daemon {
    /// SIGTERM, and check it exits cleanly.
    pub fn stop(mut self) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "daemon exit: {status}");
    }

    /// kill -9.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

/// Run `argv` inside `container`, wait for it, and return what it did
/// (whether it succeeded or not).
pub fn output_in(container: &Cgroup, argv: &[&str]) -> std::process::Output {
    let procs = container.path.join("cgroup.procs");
    Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
        .arg("sh")
        .args(argv)
        .output()
        .expect("workload")
}

/// Run `argv` inside `container` and wait for it.
pub fn run_in(container: &Cgroup, argv: &[&str]) {
    let procs = container.path.join("cgroup.procs");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
        .arg("sh")
        .args(argv)
        .status()
        .expect("workload");
    assert!(status.success(), "{argv:?} failed");
}
