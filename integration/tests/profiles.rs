//! `telltale run` end to end: real daemon, real sensors, real workloads in
//! container cgroups of a test pod cgroup; learning in seconds.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, telltale_bin, workload_bin, TempDir};

/// The learned mix: execs, reads, writes with per-run names, /proc/<pid>,
/// a DNS query to a local resolver address, a TCP connect.
fn mix_script(dir: &Path, port: u16) -> PathBuf {
    let w = workload_bin();
    let d = dir.display();
    let script = format!(
        "set -e\n\
         {w} open /etc/hostname\n\
         f=$(mktemp -p {d})\n\
         {w} write \"$f\"\n\
         {w} write {d}/app-$(date +%F).log\n\
         {w} open /proc/self/status\n\
         {w} dns-udp 127.0.0.1:53 learned.telltale.test A\n\
         {w} connect 127.0.0.1:{port}\n"
    );
    let path = dir.join("mix.sh");
    std::fs::write(&path, script).expect("mix script");
    path
}

fn learning(min: &str, stable: &str, max: &str) -> String {
    format!("[learning]\nmin_duration = \"{min}\"\nstable_period = \"{stable}\"\nmax_duration = \"{max}\"\nwarmup = \"0s\"\n")
}

fn accept_forever(l: TcpListener) {
    std::thread::spawn(move || for _ in l.incoming() {});
}

fn summary(a: &Value) -> (String, String, String) {
    let o = &a["observation"];
    let detail = match o["behaviour"]["type"].as_str().unwrap_or("") {
        "exec" => o["lineage"].as_array().and_then(|l| l.last()).and_then(Value::as_str).unwrap_or("").to_owned(),
        "file" => o["behaviour"]["pattern"].as_str().unwrap_or("").to_owned(),
        "dns" => o["behaviour"]["name"].as_str().unwrap_or("").to_owned(),
        "connect" => format!("{}:{}", o["behaviour"]["address"].as_str().unwrap_or(""), o["behaviour"]["port"]),
        _ => String::new(),
    };
    (a["container"]["id"].as_str().unwrap_or("").to_owned(), a["type"].as_str().unwrap_or("").to_owned(), detail)
}

#[test]
fn learn_then_detect_new_behaviour_of_each_kind() {
    if !kernel_tests_enabled("learn_then_detect_new_behaviour_of_each_kind") {
        return;
    }
    let pod = Pod::new(
        "profiles",
        &[("web1", "registry.local:5000/team/cws-webapp:v1"), ("web2", "cws-webapp:v2"), ("db1", "postgres:16")],
        &learning("3s", "3s", "120s"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    accept_forever(listener);
    let other = TcpListener::bind("127.0.0.1:0").expect("listener");
    let other_port = other.local_addr().expect("addr").port();
    accept_forever(other);
    let mix = mix_script(&pod.dir.0, port);
    let mix = mix.to_str().expect("utf-8 path");
    let daemon = pod.start();
    let (web1, web2, db1) = (pod.container("web1"), pod.container("web2"), pod.container("db1"));

    run_in(&web1, &["/bin/sh", mix]);
    run_in(&web1, &["/bin/sh", mix]);
    pod.wait_state("cws-webapp", &["exec", "file", "dns", "connect"], "stable", Duration::from_secs(60));
    let learned = pod.type_status("cws-webapp", "file").expect("file status");
    assert!(learned["behaviours"].as_u64().unwrap_or(0) >= 5, "{learned}");
    assert!(pod.anomalies().is_empty(), "no anomaly while learning: {:?}", pod.anomalies());

    // The same mix: fresh pids, new mktemp and dated names, another /proc/<pid>,
    // in the learning container and in another container of the same image.
    run_in(&web1, &["/bin/sh", mix]);
    run_in(&web2, &["/bin/sh", mix]);
    let a = pod.settle();
    assert!(a.is_empty(), "learned behaviour raised anomalies: {a:#?}");

    // One new behaviour of each kind.
    let w = workload_bin();
    run_in(&web1, &["/bin/sh", "-c", "/bin/true"]);
    run_in(&web1, &["/bin/sh", "-c", &format!("{w} open /etc/passwd")]);
    run_in(&web1, &["/bin/sh", "-c", &format!("{w} dns-udp 127.0.0.1:53 exfil.telltale.test TXT")]);
    run_in(&web1, &["/bin/sh", "-c", &format!("{w} connect 127.0.0.1:{other_port}")]);
    // Repeats in the same container are not reported again.
    run_in(&web1, &["/bin/sh", "-c", &format!("{w} open /etc/passwd")]);
    let a = pod.settle();
    let got: Vec<(String, String, String)> = a.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            ("web1".into(), "exec".into(), "/usr/bin/true".into()),
            ("web1".into(), "file".into(), "/etc/passwd".into()),
            ("web1".into(), "dns".into(), "exfil.telltale.test".into()),
            ("web1".into(), "connect".into(), format!("127.0.0.1:{other_port}")),
        ],
        "{a:#?}"
    );
    let exec = &a[0];
    assert_eq!(exec["container"]["image"], "cws-webapp");
    assert_eq!(exec["profile_version"], "v1");
    let sh = std::fs::canonicalize("/bin/sh").expect("sh").display().to_string();
    assert_eq!(exec["observation"]["lineage"], serde_json::json!([sh, "/usr/bin/true"]));
    assert_eq!(exec["event"]["process"]["ancestors"], serde_json::json!([sh]));
    assert_eq!(a[1]["event"]["file"]["path"], "/etc/passwd");

    // Lineage: the learned workload binary launched directly (no shell parent).
    run_in(&web2, &[&w, "open", "/etc/hostname"]);
    let a = pod.settle();
    let last = summary(a.last().expect("lineage anomaly"));
    assert_eq!(a.len(), 5, "{a:#?}");
    assert_eq!(last, ("web2".into(), "exec".into(), w.clone()));
    assert_eq!(a.last().expect("x")["profile_version"], "v2");

    // A different image has its own profile: the web mix is new to postgres.
    pod.wait_state("postgres", &["exec"], "stable", Duration::from_secs(30));
    run_in(&db1, &["/bin/sh", mix]);
    let a = pod.settle();
    assert!(a.iter().any(|x| x["container"]["id"] == "db1" && x["container"]["image"] == "postgres"), "{a:#?}");
    daemon.stop();
}

#[test]
fn a_type_that_never_settles_is_unstable_and_silent() {
    if !kernel_tests_enabled("a_type_that_never_settles_is_unstable_and_silent") {
        return;
    }
    let pod = Pod::new("unstable", &[("app", "noisy:v1")], &learning("2s", "2s", "5s"));
    let daemon = pod.start();
    let app = pod.container("app");
    let w = workload_bin();
    // A new DNS name every 300 ms for 6 s: dns never gets 2 quiet seconds.
    let script =
        format!("i=0; while [ $i -lt 20 ]; do {w} dns-udp 127.0.0.1:53 n$i.noisy.test A; i=$((i+1)); sleep 0.3; done");
    run_in(&app, &["/bin/sh", "-c", &script]);
    pod.wait_state("noisy", &["dns"], "unstable", Duration::from_secs(20));
    pod.wait_state("noisy", &["exec", "connect"], "stable", Duration::from_secs(20));
    run_in(&app, &["/bin/sh", "-c", &format!("{w} dns-udp 127.0.0.1:53 brand-new.noisy.test A")]);
    let a = pod.settle();
    assert!(a.iter().all(|x| x["type"] != "dns"), "unstable types raise nothing: {a:#?}");
    let text =
        Command::new(telltale_bin()).args(["status", "--data-dir"]).arg(pod.dir.join("data")).output().expect("status");
    assert!(String::from_utf8_lossy(&text.stdout).contains("never settled"));
    daemon.stop();
}

#[test]
fn kill_9_keeps_profile_state_and_learning_clock() {
    if !kernel_tests_enabled("kill_9_keeps_profile_state_and_learning_clock") {
        return;
    }
    let pod = Pod::new("restart", &[("app", "restart-app:v1")], &learning("4s", "2s", "120s"));
    let app = pod.container("app");
    let w = workload_bin();
    let daemon = pod.start();
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    std::thread::sleep(Duration::from_millis(1500));
    let before = pod.type_status("restart-app", "file").expect("file status");
    assert_eq!(before["state"], "learning");
    assert!(before["behaviours"].as_u64().unwrap_or(0) >= 1, "{before}");
    daemon.kill9();

    // Learning does not start over: same start time, same behaviours.
    let daemon = pod.start();
    let after = pod.type_status("restart-app", "file").expect("file status");
    assert_eq!(after["learning_started"], before["learning_started"]);
    assert!(after["behaviours"].as_u64() >= before["behaviours"].as_u64());
    pod.wait_state("restart-app", &["exec", "file", "dns", "connect"], "stable", Duration::from_secs(30));
    let stable = pod.type_status("restart-app", "file").expect("status");
    daemon.kill9();

    // Stable survives too, and the profile still knows what it learned.
    let daemon = pod.start();
    assert_eq!(pod.type_status("restart-app", "file").expect("status")["since"], stable["since"]);
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/group")]);
    let a = pod.settle();
    let got: Vec<_> = a.iter().map(summary).collect();
    assert_eq!(got, vec![("app".into(), "file".into(), "/etc/group".into())], "{a:#?}");
    daemon.stop();
}

#[test]
fn bad_configuration_is_rejected_naming_the_key() {
    let dir = TempDir::new("badcfg");
    let cfg = dir.join("t.toml");
    std::fs::write(&cfg, "[learning]\nstable_perod = \"2s\"\n").expect("write");
    let out = Command::new(telltale_bin()).arg("run").arg("--config").arg(&cfg).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("stable_perod"), "{e}");
    let out = Command::new(telltale_bin())
        .arg("run")
        .env("TELLTALE_LEARNING__WARMUP", "forever")
        .arg("--data-dir")
        .arg(dir.join("d"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("learning.warmup"), "{e}");
    // A corrupt database is a clear error naming the file, never a reset.
    std::fs::create_dir_all(dir.join("bad")).expect("mkdir");
    std::fs::write(dir.join("bad/telltale.db"), vec![0x42; 4096]).expect("write");
    let out =
        Command::new(telltale_bin()).args(["status", "--data-dir"]).arg(dir.join("bad")).output().expect("status");
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("telltale.db") && e.contains("corrupt"), "{e}");
    assert_eq!(std::fs::read(dir.join("bad/telltale.db")).expect("still there"), vec![0x42; 4096]);
}
