//! `telltale trace` as a user runs it: the real binary, real sensors.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use telltale_integration::{kernel_tests_enabled, resolve, telltale_bin, workload_bin, TempDir};
use telltale_sidecar::workload::cgroup::OwnedCgroup;

fn telltale() -> Command {
    Command::new(telltale_bin())
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn leftover_cgroups(pid: u32) -> Vec<String> {
    let root = telltale_sidecar::workload::cgroup::cgroup2_mount().expect("cgroup2");
    std::fs::read_dir(root)
        .expect("list cgroups")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("telltale-trace-{pid}-")))
        .collect()
}

#[test]
fn trace_json_of_a_command() {
    if !kernel_tests_enabled("trace_json_of_a_command") {
        return;
    }
    let child = telltale()
        .args(["trace", "--json", "--", "sh", "-c", "cd /etc && cat hostname >/dev/null; exit 7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("telltale runs");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(7), "exit status of the command is kept");
    let lines = json_lines(&out.stdout);
    let cat = resolve("cat");
    let exec = lines.iter().find(|v| v["kind"] == "exec" && v["process"]["path"] == cat.as_str()).expect("exec of cat");
    assert_eq!(exec["process"]["args"], serde_json::json!(["cat", "hostname"]));
    assert_eq!(exec["process"]["ancestors"], serde_json::json!([resolve("sh")]));
    assert!(exec["time"].as_str().is_some_and(|t| t.contains('T') && t.ends_with('Z')));
    assert!(exec["cgroup_id"].as_u64().is_some_and(|c| c > 1));
    assert!(exec["process"]["ppid"].as_u64().is_some());
    let file = lines.iter().find(|v| v["kind"] == "file" && v["file"]["path"] == "/etc/hostname").expect("file event");
    assert_eq!(file["file"]["access"], serde_json::json!(["read"]));
    assert_eq!(file["process"]["path"], cat.as_str());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("summary").is_some())
        .unwrap_or_else(|| panic!("no JSON summary on stderr: {stderr}"));
    assert_eq!(summary["summary"]["events_printed"].as_u64(), Some(lines.len() as u64));
    assert_eq!(summary["summary"]["records_lost"], 0);
    assert!(summary["summary"]["repeats_dropped_in_kernel"].as_u64().is_some());
    assert!(leftover_cgroups(pid).is_empty(), "the trace cgroup is removed");
}

#[test]
fn trace_text_output_and_summary() {
    if !kernel_tests_enabled("trace_text_output_and_summary") {
        return;
    }
    let out = telltale().args(["trace", "--", "cat", "/etc/hostname"]).output().expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cat = resolve("cat");
    assert!(stdout.lines().any(|l| l.contains(" exec ") && l.contains(&cat)), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains(" file ") && l.contains("read /etc/hostname")), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("repeats dropped in kernel") && stderr.contains("records lost"), "{stderr}");
    assert!(stderr.contains("malformed DNS packets"), "{stderr}");
}

#[test]
fn unknown_command_exits_127() {
    if !kernel_tests_enabled("unknown_command_exits_127") {
        return;
    }
    let out = telltale().args(["trace", "--", "no-such-command-telltale"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-command-telltale: command not found"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn nonexistent_cgroup_is_a_clear_error() {
    if !kernel_tests_enabled("nonexistent_cgroup_is_a_clear_error") {
        return;
    }
    let out = telltale().args(["trace", "--cgroup", "/sys/fs/cgroup/no/such/cgroup"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cgroup /sys/fs/cgroup/no/such/cgroup does not exist"), "{stderr}");
    let out = telltale().args(["trace", "--cgroup", "/etc"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a cgroup v2 directory"));
}

#[test]
fn not_root_is_a_clear_error() {
    if !kernel_tests_enabled("not_root_is_a_clear_error") {
        return;
    }
    // Run the binary as `nobody` (setpriv from util-linux).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", &telltale_bin()])
        .args(["trace", "--", "true"])
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn no_command_is_a_usage_error() {
    let out = telltale().args(["trace"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give a command"));
}

#[test]
fn watch_an_existing_cgroup_until_sigint() {
    if !kernel_tests_enabled("watch_an_existing_cgroup_until_sigint") {
        return;
    }
    let cg = OwnedCgroup::create("telltale-cli").expect("cgroup");
    let dir = TempDir::new("cli");
    let marker = dir.join("marker");
    std::fs::write(&marker, b"x").expect("write");
    let mut trace = telltale()
        .args(["trace", "--json", "--cgroup"])
        .arg(&cg.cgroup().path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("telltale runs");
    // Wait until the sensors are attached: telltale says so on stderr.
    // (Log lines may come first: freeing a killed sidecar's node slot.)
    let mut stderr = BufReader::new(trace.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        seen.push_str(&line);
        if line.contains("telltale: watching") {
            break;
        }
        assert!(n > 0 && seen.len() < 1 << 16, "telltale trace did not start: {seen}");
    }
    // A workload placed in the cgroup after it was created.
    let procs = cg.cgroup().path.join("cgroup.procs");
    let script = format!("echo $$ > {} && exec {} open {}", procs.display(), workload_bin(), marker.display());
    let st = Command::new("sh").args(["-c", &script]).status().expect("workload");
    assert!(st.success());
    nix_kill(trace.id(), libc::SIGINT);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read stderr");
    let out = trace.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{rest}");
    let lines = json_lines(&out.stdout);
    assert!(
        lines.iter().any(|v| v["kind"] == "file" && v["file"]["path"] == marker.display().to_string()),
        "{lines:?}"
    );
    assert!(rest.contains("\"summary\""), "{rest}");
}

fn nix_kill(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on our own child.
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill");
}
