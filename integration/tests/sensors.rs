//! The sensors, end to end: real eBPF programs, real processes in a test
//! cgroup, exact events asserted.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use telltale_core::event::{Access, Event, EventKind, Protocol};
use telltale_integration::{execs, kernel_tests_enabled, resolve, workload_bin, TempDir, Traced};
use telltale_sidecar::sensor::SensorOptions;

fn files(events: &[Event]) -> Vec<(String, Vec<Access>, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File { file } => Some((file.path.clone(), file.access.clone(), e.process.path.clone())),
            _ => None,
        })
        .collect()
}

fn files_under(events: &[Event], prefix: &str) -> BTreeSet<(String, Vec<Access>)> {
    files(events).into_iter().filter(|(p, _, _)| p.starts_with(prefix)).map(|(p, a, _)| (p, a)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_file_of_a_shell_pipeline() {
    if !kernel_tests_enabled("exec_and_file_of_a_shell_pipeline") {
        return;
    }
    let mut t = Traced::new(SensorOptions::default());
    let (status, events) = t.run(&["sh", "-c", "cd /etc && cat hostname"]).await;
    assert!(status.success());
    let sh = resolve("sh");
    let cat = resolve("cat");
    assert_eq!(
        execs(&events),
        vec![
            (sh.clone(), vec!["sh".to_owned(), "-c".to_owned(), "cd /etc && cat hostname".to_owned()]),
            (cat.clone(), vec!["cat".to_owned(), "hostname".to_owned()]),
        ]
    );
    let cat_exec = events.iter().find(|e| matches!(e.kind, EventKind::Exec) && e.process.path == cat).expect("cat");
    assert_eq!(cat_exec.process.ancestors, vec![sh.clone()]);
    assert_eq!(cat_exec.cgroup_id, t.cgroup.cgroup().id);
    let hostname: Vec<_> = files(&events).into_iter().filter(|(p, _, _)| p == "/etc/hostname").collect();
    assert_eq!(hostname, vec![("/etc/hostname".to_owned(), vec![Access::Read], cat.clone())]);
    let ev = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::File { file } if file.path == "/etc/hostname"))
        .expect("hostname event");
    assert_eq!(ev.process.ancestors, vec![sh]);
    assert_eq!(ev.process.args, vec!["cat", "hostname"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_paths_are_resolved_in_the_kernel() {
    if !kernel_tests_enabled("file_paths_are_resolved_in_the_kernel") {
        return;
    }
    let dir = TempDir::new("paths");
    let d = dir.str();
    for sub in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(dir.join("b/file"), b"x").expect("write");
    std::fs::write(dir.join("c/file2"), b"x").expect("write");
    std::fs::write(dir.join("target"), b"x").expect("write");
    std::fs::write(dir.join("o2"), b"x").expect("write");
    std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).expect("symlink");
    let shm = format!("/dev/shm/telltale-test-{}", std::process::id());
    std::fs::write(&shm, b"x").expect("shm file");

    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let steps: Vec<Vec<String>> = vec![
        vec!["chdir-open".into(), dir.join("a").display().to_string(), "../b/file".into()],
        vec!["open".into(), format!("{d}/link")],
        vec!["open".into(), format!("{d}/a/../c/./file2")],
        vec!["openat".into(), dir.join("c").display().to_string(), "../target".into()],
        vec!["write".into(), format!("{d}/new")],
        vec!["creat".into(), format!("{d}/created")],
        vec!["openat2".into(), format!("{d}/o2")],
        vec!["open".into(), shm.clone()],
    ];
    let mut all = Vec::new();
    for step in &steps {
        let mut argv = vec![bin.as_str()];
        argv.extend(step.iter().map(String::as_str));
        let (status, events) = t.run(&argv).await;
        assert!(status.success(), "{step:?}");
        all.extend(events);
    }
    let _ = std::fs::remove_file(&shm);
    let r = vec![Access::Read];
    let wct = vec![Access::Write, Access::Create, Access::Truncate];
    let expected: BTreeSet<(String, Vec<Access>)> = [
        (format!("{d}/b/file"), r.clone()),
        (format!("{d}/target"), r.clone()),
        (format!("{d}/c/file2"), r.clone()),
        (format!("{d}/new"), wct.clone()),
        (format!("{d}/created"), wct),
        (format!("{d}/o2"), r.clone()),
    ]
    .into_iter()
    .collect();
    // The directory opened by `openat` is an open too.
    let mut got = files_under(&all, &d);
    assert!(got.remove(&(format!("{d}/c"), r.clone())), "openat's directory fd: {got:?}");
    assert_eq!(got, expected);
    assert_eq!(files_under(&all, &shm), [(shm.clone(), r)].into_iter().collect());
}

/// Opens that do not go through the 64-bit open/openat/openat2 entries:
/// the i386 table reached by `int 0x80`, and open_by_handle_at (no path in
/// the call at all). Each must be the same file event as a plain open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_and_handle_opens_are_seen() {
    if !kernel_tests_enabled("compat_and_handle_opens_are_seen") {
        return;
    }
    let dir = TempDir::new("compat");
    let d = dir.str();
    for f in ["open32", "openat32", "handle"] {
        std::fs::write(dir.join(f), b"x").expect("write");
    }
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let mut all = Vec::new();
    for (cmd, file) in [("open32", "open32"), ("openat32", "openat32"), ("open-by-handle", "handle")] {
        let path = format!("{d}/{file}");
        let (status, events) = t.run(&[bin.as_str(), cmd, &path]).await;
        assert!(status.success(), "{cmd}");
        all.extend(events);
    }
    let r = vec![Access::Read];
    let expected: BTreeSet<(String, Vec<Access>)> = [
        (format!("{d}/open32"), r.clone()),
        (format!("{d}/openat32"), r.clone()),
        (format!("{d}/handle"), r.clone()),
        // The mount fd open_by_handle_at needs is a plain open of the directory.
        (d.to_string(), r),
    ]
    .into_iter()
    .collect();
    assert_eq!(files_under(&all, &d), expected);

    // A 32-bit execve is an exec like any other.
    let truebin = resolve("true");
    let (status, events) = t.run(&[bin.as_str(), "exec32", &truebin]).await;
    assert!(status.success());
    let e = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Exec) && e.process.path == truebin)
        .expect("the 32-bit execve is reported");
    assert_eq!(e.process.ancestors, vec![bin.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_overlong_paths() {
    if !kernel_tests_enabled("hostile_and_overlong_paths") {
        return;
    }
    let dir = TempDir::new("hostile");
    let weird = format!("{}/new\nline exec \u{1b}[31m", dir.str());
    std::fs::write(&weird, b"x").expect("weird file");
    // Deeper than the kernel walk (64 components): marked truncated.
    let mut deep = dir.0.clone();
    for _ in 0..70 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).expect("deep dirs");
    let deep_file = deep.join("f");
    std::fs::write(&deep_file, b"x").expect("deep file");
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let (status, events) = t.run(&[&bin, "open", &weird, &deep_file.display().to_string()]).await;
    assert!(status.success());
    let f: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File { file } if file.path.contains("/d/d/") || file.path.contains("new\nline") => Some(file),
            _ => None,
        })
        .collect();
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].path, weird);
    assert!(!f[0].truncated);
    assert!(f[1].truncated, "a 70-deep path is marked truncated");
    assert!(f[1].path.ends_with("/d/d/f"), "{}", f[1].path);
    assert!(t.sensor.counters().expect("counters").file.truncated >= 1);
}

struct Resolver {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Resolver {
    fn bind(ip: IpAddr) -> Self {
        let a = SocketAddr::new(ip, 53);
        let udp = UdpSocket::bind(a).unwrap_or_else(|e| panic!("binding udp {a}: {e} (is a resolver running?)"));
        let tcp = TcpListener::bind(a).unwrap_or_else(|e| panic!("binding tcp {a}: {e}"));
        udp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        Self { udp, tcp }
    }

    fn serve_tcp_once(&self) -> std::thread::JoinHandle<Vec<u8>> {
        let l = self.tcp.try_clone().expect("clone");
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("read");
            let _ = s.write_all(&[]);
            buf
        })
    }

    fn recv_udp(&self) -> Vec<u8> {
        let mut buf = [0u8; 1500];
        let (n, _) = self.udp.recv_from(&mut buf).expect("udp query received");
        buf[..n].to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_queries_over_udp_and_tcp_v4_and_v6() {
    if !kernel_tests_enabled("dns_queries_over_udp_and_tcp_v4_and_v6") {
        return;
    }
    // The only test binding port 53 on loopback.
    let v4 = Resolver::bind("127.0.0.1".parse().expect("ip"));
    let v6 = Resolver::bind("::1".parse().expect("ip"));
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let mut all = Vec::new();

    let (s, e) = t.run(&[&bin, "dns-udp", "127.0.0.1:53", "udp4.telltale.test", "A"]).await;
    assert!(s.success());
    all.extend(e);
    assert!(!v4.recv_udp().is_empty());
    let (s, e) = t.run(&[&bin, "dns-udp", "[::1]:53", "udp6.telltale.test", "AAAA"]).await;
    assert!(s.success());
    all.extend(e);
    assert!(!v6.recv_udp().is_empty());
    let h = v4.serve_tcp_once();
    let (s, e) = t.run(&[&bin, "dns-tcp", "127.0.0.1:53", "tcp4.telltale.test", "TXT"]).await;
    assert!(s.success());
    all.extend(e);
    assert!(h.join().expect("tcp server").len() > 2);
    let h = v6.serve_tcp_once();
    let (s, e) = t.run(&[&bin, "dns-tcp", "[::1]:53", "tcp6.telltale.test", "MX"]).await;
    assert!(s.success());
    all.extend(e);
    assert!(h.join().expect("tcp server").len() > 2);
    // Garbage to port 53: counted as malformed, no event, nothing breaks.
    let (s, e) = t.run(&[&bin, "raw-udp", "127.0.0.1:53", "deadbeef00ff00ff00ff00ff00ff"]).await;
    assert!(s.success());
    all.extend(e);
    let _ = v4.recv_udp();

    let got: Vec<(String, String, Protocol, String)> = all
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Dns { dns } => Some(
                dns.questions
                    .iter()
                    .map(|q| (q.name.clone(), q.qtype.clone(), dns.protocol, dns.server.to_string()))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        got,
        vec![
            ("udp4.telltale.test".into(), "A".into(), Protocol::Udp, "127.0.0.1".into()),
            ("udp6.telltale.test".into(), "AAAA".into(), Protocol::Udp, "::1".into()),
            ("tcp4.telltale.test".into(), "TXT".into(), Protocol::Tcp, "127.0.0.1".into()),
            ("tcp6.telltale.test".into(), "MX".into(), Protocol::Tcp, "::1".into()),
        ]
    );
    let dns_events: Vec<&Event> = all.iter().filter(|e| matches!(e.kind, EventKind::Dns { .. })).collect();
    assert!(dns_events.iter().all(|e| e.process.path.ends_with("/tt-workload")));
    assert_eq!(t.sensor.counters().expect("counters").malformed_dns, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connects_v4_and_v6() {
    if !kernel_tests_enabled("outbound_connects_v4_and_v6") {
        return;
    }
    let l4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
    let l6 = TcpListener::bind("[::1]:0").expect("bind v6");
    let u4 = UdpSocket::bind("127.0.0.1:0").expect("bind udp v4");
    let u6 = UdpSocket::bind("[::1]:0").expect("bind udp v6");
    let (a4, a6) = (l4.local_addr().expect("addr"), l6.local_addr().expect("addr"));
    let (b4, b6) = (u4.local_addr().expect("addr"), u6.local_addr().expect("addr"));
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let mut all = Vec::new();
    for (cmd, addr) in [("connect", a4), ("connect", a6), ("udp-send", b4), ("udp-connect", b6), ("udp-send", b6)] {
        let (s, e) = t.run(&[&bin, cmd, &addr.to_string()]).await;
        assert!(s.success(), "{cmd} {addr}");
        all.extend(e);
    }
    let got: Vec<(Protocol, SocketAddr)> = all
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Connect { connect } => Some((connect.protocol, SocketAddr::new(connect.address, connect.port))),
            _ => None,
        })
        .collect();
    // udp-send to b6 repeats udp-connect to b6 by the same program: dropped.
    assert_eq!(got, vec![(Protocol::Tcp, a4), (Protocol::Tcp, a6), (Protocol::Udp, b4), (Protocol::Udp, b6)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_outside_the_cgroup_produce_nothing() {
    if !kernel_tests_enabled("processes_outside_the_cgroup_produce_nothing") {
        return;
    }
    let dir = TempDir::new("scope");
    let outside_file = dir.join("outside");
    let inside_file = dir.join("inside");
    std::fs::write(&outside_file, b"x").expect("write");
    std::fs::write(&inside_file, b"x").expect("write");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    // Outside: same kinds of behaviour, by a process in our own cgroup.
    let out = std::process::Command::new(&bin)
        .args(["open", &outside_file.display().to_string()])
        .status()
        .expect("outside open");
    assert!(out.success());
    let outside = std::process::Command::new(&bin).args(["connect", &addr]).spawn().expect("outside connect");
    let outside_pid = outside.id();
    let _ = outside.wait_with_output();
    std::fs::read(&outside_file).expect("the test itself reads it too");
    // Inside: a marker that must be seen.
    let (s, events) = t.run(&[&bin, "open", &inside_file.display().to_string()]).await;
    assert!(s.success());
    let paths = files_under(&events, &dir.str());
    assert_eq!(paths, [(inside_file.display().to_string(), vec![Access::Read])].into_iter().collect());
    assert!(events.iter().all(|e| e.process.pid != outside_pid && e.process.pid != std::process::id()));
    assert!(events.iter().all(|e| e.cgroup_id == t.cgroup.cgroup().id));
    assert!(!events.iter().any(|e| matches!(&e.kind, EventKind::Connect { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_opens_are_dropped_in_the_kernel() {
    if !kernel_tests_enabled("repeated_opens_are_dropped_in_the_kernel") {
        return;
    }
    let dir = TempDir::new("dedup");
    let file = dir.join("hot");
    std::fs::write(&file, b"x").expect("write");
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let before = t.sensor.counters().expect("counters").file.dropped_repeats;
    let (s, events) = t.run(&[&bin, "open-n", &file.display().to_string(), "100000"]).await;
    assert!(s.success());
    let hot = files_under(&events, &dir.str());
    assert_eq!(hot.len(), 1, "one event for 100,000 opens: {hot:?}");
    let all_file_events = files(&events).len() as u64;
    let c = t.sensor.counters().expect("counters");
    let dropped = c.file.dropped_repeats - before;
    assert!((99_999..=100_100).contains(&dropped), "dropped {dropped}");
    assert!(all_file_events < 50, "a handful of file events, got {all_file_events}");
    assert_eq!(c.events().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dedup_every_open_is_reported() {
    if !kernel_tests_enabled("without_dedup_every_open_is_reported") {
        return;
    }
    let dir = TempDir::new("nodedup");
    let file = dir.join("hot");
    std::fs::write(&file, b"x").expect("write");
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions { dedup: false, ..SensorOptions::default() });
    let (s, events) = t.run(&[&bin, "open-n", &file.display().to_string(), "1000"]).await;
    assert!(s.success());
    let n = files(&events).iter().filter(|(p, _, _)| p.starts_with(&dir.str())).count();
    assert_eq!(n, 1000);
    assert_eq!(t.sensor.counters().expect("counters").file.dropped_repeats, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reported_with_their_path() {
    if !kernel_tests_enabled("scripts_are_reported_with_their_path") {
        return;
    }
    let dir = TempDir::new("script");
    let script = dir.join("evil.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut t = Traced::new(SensorOptions::default());
    let cmd = format!("cd {} && ./evil.sh", dir.str());
    let (s, events) = t.run(&["sh", "-c", &cmd]).await;
    assert!(s.success());
    let e = events
        .iter()
        .find(|e| matches!(e.kind, EventKind::Exec) && e.process.path.ends_with("evil.sh"))
        .expect("script exec");
    assert_eq!(e.process.path, script.display().to_string());
    assert_eq!(e.process.interpreter.as_deref(), Some(resolve("sh").as_str()));
    assert_eq!(e.process.ancestors, vec![resolve("sh")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_argv_is_bounded_and_marked() {
    if !kernel_tests_enabled("long_argv_is_bounded_and_marked") {
        return;
    }
    let mut t = Traced::new(SensorOptions::default());
    let long = "x".repeat(3000);
    let mut argv = vec!["/bin/true"];
    argv.extend(std::iter::repeat_n(long.as_str(), 3));
    let (s, events) = t.run(&argv).await;
    assert!(s.success());
    let e = events.iter().find(|e| matches!(e.kind, EventKind::Exec)).expect("exec");
    assert!(e.process.args_truncated);
    assert_eq!(e.process.args[0], "/bin/true");
    assert!(e.process.args.iter().map(String::len).sum::<usize>() <= 4096);
    let mut t2 = Traced::new(SensorOptions::default());
    let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let mut argv = vec!["/bin/true"];
    argv.extend(many.iter().map(String::as_str));
    let (_, events) = t2.run(&argv).await;
    let e = events.iter().find(|e| matches!(e.kind, EventKind::Exec)).expect("exec");
    assert_eq!(e.process.args.len(), 16);
    assert!(e.process.args_truncated);
}
