//! Ways past the sensors a hostile workload would try (issue 16), end to
//! end: real eBPF programs, real processes in a test cgroup, exact events.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener};

use telltale_core::event::{Event, EventKind, Protocol};
use telltale_core::profile::Observation;
use telltale_integration::{kernel_tests_enabled, resolve, workload_bin, TempDir, Traced};
use telltale_sidecar::sensor::SensorOptions;

/// (name, type, protocol, server) of every DNS question, in order.
fn questions(events: &[Event]) -> Vec<(String, String, Protocol, IpAddr)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Dns { dns } => Some(
                dns.questions
                    .iter()
                    .map(|q| (q.name.clone(), q.qtype.clone(), dns.protocol, dns.server))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A TCP resolver on port 53 that reads each connection to its end.
fn serve_tcp(listener: &TcpListener, connections: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let l = listener.try_clone().expect("clone");
    std::thread::spawn(move || {
        (0..connections)
            .map(|_| {
                let (mut s, _) = l.accept().expect("accept");
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).expect("read");
                buf
            })
            .collect()
    })
}

/// DNS over TCP is a stream: a length prefix alone in a segment, and two
/// queries in one segment, are reassembled into every query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tcp_is_reassembled() {
    if !kernel_tests_enabled("dns_over_tcp_is_reassembled") {
        return;
    }
    // A loopback address of this test's own (sensors.rs has 127.0.0.1).
    let ip: IpAddr = "127.53.0.16".parse().expect("ip");
    let server = SocketAddr::new(ip, 53);
    let listener = TcpListener::bind(server).unwrap_or_else(|e| panic!("binding tcp {server}: {e}"));
    let served = serve_tcp(&listener, 2);
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let at = server.to_string();
    let mut all = Vec::new();
    let (s, e) = t.run(&[&bin, "dns-tcp-split", &at, "split.telltale.test", "A"]).await;
    assert!(s.success());
    all.extend(e);
    let (s, e) = t.run(&[&bin, "dns-tcp-pipelined", &at, "TXT", "first.telltale.test", "second.telltale.test"]).await;
    assert!(s.success());
    all.extend(e);
    let got = served.join().expect("server");
    assert!(got.iter().all(|c| c.len() > 20), "the resolver got the queries: {got:?}");

    let tcp = |name: &str, qtype: &str| (name.to_owned(), qtype.to_owned(), Protocol::Tcp, ip);
    assert_eq!(
        questions(&all),
        vec![tcp("split.telltale.test", "A"), tcp("first.telltale.test", "TXT"), tcp("second.telltale.test", "TXT"),]
    );
    let dns: Vec<&Event> = all.iter().filter(|e| matches!(e.kind, EventKind::Dns { .. })).collect();
    assert!(dns.iter().all(|e| e.process.path == bin && e.cgroup_id == t.cgroup.cgroup().id), "{dns:?}");
    let c = t.sensor.counters().expect("counters");
    assert_eq!(c.malformed_dns, 0, "{c:?}");
    assert_eq!(c.dns_tcp_evicted, 0);
}

/// The exec events of `events`: (path, fileless, ancestors, args).
fn execs(events: &[Event]) -> Vec<(String, bool, Vec<String>, Vec<String>)> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Exec))
        .map(|e| (e.process.path.clone(), e.process.is_fileless(), e.process.ancestors.clone(), e.process.args.clone()))
        .collect()
}

/// fexecve of a memfd is reported as `memfd:<name>`, fileless: two names
/// are two programs (their own lineages, even in the kernel's dedup), and
/// neither is the program of a path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memfd_exec_is_named_and_fileless() {
    if !kernel_tests_enabled("memfd_exec_is_named_and_fileless") {
        return;
    }
    let bin = workload_bin();
    let cat = resolve("cat");
    let truebin = resolve("true");
    let mut t = Traced::new(SensorOptions::default());
    let mut all = Vec::new();
    for argv in [
        vec![bin.as_str(), "memfd-exec", "payload", &truebin],
        vec![bin.as_str(), "memfd-exec", "odd/name\n", &truebin],
        // The same program under two names reads the same file: two
        // lineages, so the kernel's dedup must not fold the second read
        // into the first.
        vec![bin.as_str(), "memfd-exec", "reader-a", &cat, "/etc/hostname"],
        vec![bin.as_str(), "memfd-exec", "reader-b", &cat, "/etc/hostname"],
        vec![bin.as_str(), "exec-loop", "1", &truebin],
    ] {
        let (s, e) = t.run(&argv).await;
        assert!(s.success(), "{argv:?}");
        all.extend(e);
    }
    let w = || vec![bin.clone()];
    assert_eq!(
        execs(&all),
        vec![
            (bin.clone(), false, vec![], vec![bin.clone(), "memfd-exec".into(), "payload".into(), truebin.clone()]),
            ("memfd:payload".into(), true, w(), vec![truebin.clone()]),
            (bin.clone(), false, vec![], vec![bin.clone(), "memfd-exec".into(), "odd/name\n".into(), truebin.clone()]),
            ("memfd:odd\\x2fname\\x0a".into(), true, w(), vec![truebin.clone()]),
            (
                bin.clone(),
                false,
                vec![],
                vec![bin.clone(), "memfd-exec".into(), "reader-a".into(), cat.clone(), "/etc/hostname".into()]
            ),
            ("memfd:reader-a".into(), true, w(), vec![cat.clone(), "/etc/hostname".into()]),
            (
                bin.clone(),
                false,
                vec![],
                vec![bin.clone(), "memfd-exec".into(), "reader-b".into(), cat.clone(), "/etc/hostname".into()]
            ),
            ("memfd:reader-b".into(), true, w(), vec![cat.clone(), "/etc/hostname".into()]),
            (bin.clone(), false, vec![], vec![bin.clone(), "exec-loop".into(), "1".into(), truebin.clone()]),
            (truebin.clone(), false, w(), vec![truebin.clone()]),
        ]
    );
    let reads: Vec<&str> = all
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File { file } if file.path == "/etc/hostname" => Some(e.process.path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reads, vec!["memfd:reader-a", "memfd:reader-b"]);

    // As a profile sees them: three different process nodes.
    let node = |path: &str| {
        let e = all.iter().find(|e| matches!(e.kind, EventKind::Exec) && e.process.path == path).expect(path);
        Observation::from_event(e).remove(0)
    };
    let (a, b, p) = (node("memfd:payload"), node("memfd:odd\\x2fname\\x0a"), node(&truebin));
    assert_ne!(a, b);
    assert_ne!(a, p);
    assert_ne!(b, p);
    assert_eq!(a.lineage, vec![bin.clone(), "memfd:payload".to_owned()]);
}

/// A `#!` script run from a memfd: the script is `memfd:<name>`, fileless,
/// its interpreter the resolved shell (not "/dev/fd/N").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memfd_script_is_named_and_fileless() {
    if !kernel_tests_enabled("memfd_script_is_named_and_fileless") {
        return;
    }
    let dir = TempDir::new("memfd-script");
    let script = dir.join("s.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("script");
    let bin = workload_bin();
    let mut t = Traced::new(SensorOptions::default());
    let (s, events) = t.run(&[&bin, "memfd-exec", "dropper", &script.display().to_string()]).await;
    assert!(s.success());
    let e =
        events.iter().find(|e| matches!(e.kind, EventKind::Exec) && e.process.path != bin).expect("the script's exec");
    assert_eq!(e.process.path, "memfd:dropper");
    assert!(e.process.is_fileless());
    assert_eq!(e.process.interpreter.as_deref(), Some(resolve("sh").as_str()));
    assert_eq!(e.process.ancestors, vec![bin.clone()]);
}
