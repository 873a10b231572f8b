//! Names that are not UTF-8 (issue 16, "what it watches must not blind
//! it"), end to end: real eBPF programs, real processes in a test cgroup.
//! A file or program name is kept byte for byte (escaped as
//! `telltale_core::text` writes names), so `a<ff>` and `a<fe>` are two
//! behaviours, never one lossy `a\u{fffd}`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use telltale_core::event::{Event, EventKind};
use telltale_core::profile::{Behaviour, Observation, Profile};
use telltale_core::text::{escape, name_from_bytes};
use telltale_integration::{chain, kernel_tests_enabled, resolve, TempDir, Traced};
use telltale_sidecar::sensor::{Sensor, SensorOptions};
use telltale_sidecar::trace::spawn_in;
use telltale_sidecar::workload::cgroup::OwnedCgroup;
use tokio::io::AsyncWriteExt;

/// `dir/name`, where `name` is any bytes.
fn raw(dir: &TempDir, name: &[u8]) -> PathBuf {
    dir.0.join(OsStr::from_bytes(name))
}

/// How the sensors name `dir/name`.
fn named(dir: &TempDir, name: &[u8]) -> String {
    name_from_bytes(raw(dir, name).as_os_str().as_bytes()).into_owned()
}

/// A copy of a system program under `name`.
fn program(dir: &TempDir, from: &str, name: &[u8]) -> PathBuf {
    let to = raw(dir, name);
    std::fs::copy(resolve(from), &to).expect("copying the program");
    to
}

/// The paths of the file events under `dir`, in order.
fn files_in(events: &[Event], dir: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}/", dir.display());
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File { file } if file.path.starts_with(&prefix) => {
                Some((e.process.path.clone(), file.path.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Files `a<ff>`, `a<fe>` and the four ASCII characters `a\xff`, opened by
/// a program named `c<ff>at`: the exec is reported with the escaped name,
/// the three files are three behaviours, and learning one leaves the
/// others new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_programs_that_are_not_utf8_stay_apart() {
    if !kernel_tests_enabled("files_and_programs_that_are_not_utf8_stay_apart") {
        return;
    }
    let dir = TempDir::new("odd-names");
    let names: [&[u8]; 3] = [b"a\xff", b"a\xfe", b"a\\xff"];
    for n in names {
        std::fs::write(raw(&dir, n), "x").expect("writing a file");
    }
    let cat = program(&dir, "cat", b"c\xffat");
    let mut cmd = tokio::process::Command::new(&cat);
    cmd.args(names.map(|n| raw(&dir, n))).stdout(Stdio::null());
    let mut t = Traced::new(SensorOptions::default());
    let (s, events) = t.run_cmd(cmd).await;
    assert!(s.success());

    let exe = named(&dir, b"c\xffat");
    assert_eq!(exe, format!("{}/c\\xffat", dir.str()));
    let exec = events.iter().find(|e| matches!(e.kind, EventKind::Exec)).expect("the exec");
    assert_eq!(exec.process.path, exe);
    let args: Vec<String> = names.iter().map(|n| named(&dir, n)).collect();
    assert_eq!(exec.process.args, [vec![exe.clone()], args.clone()].concat());

    let expected: Vec<(String, String)> = args.iter().map(|a| (exe.clone(), a.clone())).collect();
    assert_eq!(files_in(&events, &dir.0), expected);
    assert_eq!(
        args,
        [format!("{}/a\\xff", dir.str()), format!("{}/a\\xfe", dir.str()), format!("{}/a\\x5cxff", dir.str())]
    );

    // As a profile sees them: three behaviours; learning the first leaves
    // the other two new (each is its own anomaly).
    let file_obs: Vec<Observation> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::File { file } if args.contains(&file.path)))
        .flat_map(Observation::from_event)
        .collect();
    assert_eq!(file_obs.len(), 3);
    assert!(file_obs.iter().all(|o| o.lineage == [exe.clone()]));
    let mut profile = Profile::new("odd", 0);
    profile.add(&file_obs[0], "v1", 0);
    assert!(profile.contains(&file_obs[0]));
    assert!(!profile.contains(&file_obs[1]), "a<fe> is not a<ff>");
    assert!(!profile.contains(&file_obs[2]), "the text a\\xff is not a<ff>");
    assert!(matches!(&file_obs[1].behaviour, Behaviour::File { pattern, .. } if pattern.ends_with("/a\\xfe")));

    // Shown to people, the three stay apart too.
    let shown: Vec<String> = args.iter().map(|a| escape(a).into_owned()).collect();
    assert_eq!(shown, args);
}

/// A process that started before the sensor watched its cgroup is named
/// from /proc (its exe link and cmdline), byte for byte as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_older_than_the_sensor_is_named_by_its_bytes() {
    if !kernel_tests_enabled("a_process_older_than_the_sensor_is_named_by_its_bytes") {
        return;
    }
    let dir = TempDir::new("odd-names-old");
    std::fs::write(raw(&dir, b"f\xfe"), "x").expect("writing a file");
    let sh = program(&dir, "sh", b"s\xfeh");
    let file = raw(&dir, b"f\xfe");
    // The shell waits for a line, opens the file itself (a builtin's
    // redirection: no exec the sensor could see), and stays until a second
    // line, so that /proc still knows it when its event is read.
    let mut script = b"read line; : < '".to_vec();
    script.extend_from_slice(file.as_os_str().as_bytes());
    script.extend_from_slice(b"'; read line");
    let mut cmd = tokio::process::Command::new(&sh);
    cmd.arg("-c").arg(OsStr::from_bytes(&script)).arg(OsStr::from_bytes(b"arg\xff")).stdin(Stdio::piped());

    let cgroup = OwnedCgroup::create("telltale-test").unwrap_or_else(|e| panic!("creating cgroup: {}", chain(&e)));
    let mut child = spawn_in(cgroup.cgroup(), cmd).unwrap_or_else(|e| panic!("spawning: {}", chain(&e)));
    let sensor = Sensor::load(&SensorOptions::default()).unwrap_or_else(|e| panic!("loading sensors: {}", chain(&e)));
    let mut t = Traced { sensor, cgroup };
    t.sensor.watch(t.cgroup.cgroup()).unwrap_or_else(|e| panic!("watching cgroup: {}", chain(&e)));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"open\n").await.expect("writing to the shell");
    let mut events = Vec::new();
    let opened = |events: &[Event]| !files_in(events, &dir.0).is_empty();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !opened(&events) {
            t.sensor.next_events(&mut events).await.expect("reading events");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no open of the file seen: {events:?}"));
    stdin.write_all(b"exit\n").await.expect("writing to the shell");
    drop(stdin);
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.expect("waiting for the shell"),
            r = t.sensor.next_events(&mut events) => r.expect("reading events"),
        }
    };
    t.sensor.drain(&mut events);
    assert!(status.success());

    let exe = named(&dir, b"s\xfeh");
    assert_eq!(exe, format!("{}/s\\xfeh", dir.str()));
    assert_eq!(files_in(&events, &dir.0), [(exe.clone(), named(&dir, b"f\xfe"))]);
    let e = events.iter().find(|e| matches!(e.kind, EventKind::File { .. })).expect("the open");
    assert_eq!(e.process.path, exe);
    assert_eq!(e.process.args.last().map(String::as_str), Some("arg\\xff"));
}

/// Run `argv` (any bytes) inside `container` and wait for it.
fn run_bytes_in(container: &telltale_sidecar::workload::cgroup::Cgroup, argv: &[&OsStr]) {
    let procs = container.path.join("cgroup.procs");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
        .arg("sh")
        .args(argv)
        .stdout(Stdio::null())
        .status()
        .expect("workload");
    assert!(status.success(), "{argv:?} failed");
}

/// Through the daemon: a program named `c<ff>at` is learned; `a<ff>` is
/// added by hand with `telltalectl profile add`, written `a\xFF` (the
/// escaped form, upper-case); then opening `a<ff>` is known and `a<fe>`
/// is the one anomaly, with its escaped name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_added_by_hand_in_its_escaped_form_is_the_name_the_sensors_see() {
    if !kernel_tests_enabled("a_name_added_by_hand_in_its_escaped_form_is_the_name_the_sensors_see") {
        return;
    }
    use std::time::{Duration, Instant};
    use telltale_client::{Behaviour as ApiBehaviour, Client, EventType, WatchFilter};
    use telltale_core::profile::generalize::path_pattern;
    use telltale_integration::daemon::Pod;
    use telltale_integration::{telltalectl_bin, wait_stable};
    use tokio_stream::StreamExt;

    let config =
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n";
    let pod = Pod::new("odd-names-daemon", &[("app", "web:v1")], config);
    let dir = TempDir::new("odd-names-daemon-files");
    for n in [&b"a\xff"[..], b"a\xfe"] {
        std::fs::write(raw(&dir, n), "x").expect("writing a file");
    }
    let cat = program(&dir, "cat", b"c\xffat");
    let d = pod.start();
    let socket = d.socket.clone().expect("admin socket");
    let client = Client::builder(socket.clone()).connect().await.expect("connect");
    let app = pod.container("app");
    run_bytes_in(&app, &[cat.as_os_str(), OsStr::new("/etc/hostname")]);
    wait_stable(&client, Some("web")).await;

    // By hand, as a person types it: the escaped form, upper-case hex.
    let out = std::process::Command::new(telltalectl_bin())
        .args(["--socket", socket.strip_prefix("unix://").expect("unix address"), "profile", "add", "web"])
        .args(["--file", &format!("{}/a\\xFF", dir.str()), "--access", "r"])
        .args(["--process", &format!("{}/c\\xFFat", dir.str())])
        .output()
        .expect("telltalectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    run_bytes_in(&app, &[cat.as_os_str(), raw(&dir, b"a\xff").as_os_str(), raw(&dir, b"a\xfe").as_os_str()]);
    let mut all = client.watch(WatchFilter::default(), 0);
    let first = tokio::time::timeout(Duration::from_secs(20), all.next())
        .await
        .expect("an anomaly in time")
        .expect("stream open")
        .expect("ok");
    let a = &first.anomaly;
    assert_eq!(a.event_type, EventType::File, "{a:#?}");
    assert_eq!(a.lineage, [named(&dir, b"c\xffat")]);
    match &a.behaviour {
        ApiBehaviour::File { path, .. } => assert_eq!(path, &path_pattern(&named(&dir, b"a\xfe"))),
        other => panic!("not a file anomaly: {other:?}"),
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        if let Ok(Some(Ok(extra))) = tokio::time::timeout(Duration::from_millis(300), all.next()).await {
            panic!("only a<fe> is new, not {extra:#?}");
        }
    }
    let profile = client.profile("web").await.expect("profile");
    let node = profile.nodes.iter().find(|n| n.lineage == [named(&dir, b"c\xffat")]).expect("the program's node");
    assert!(node.files.iter().any(|f| f.pattern == path_pattern(&named(&dir, b"a\xff"))), "{node:#?}");
    d.stop();
}
