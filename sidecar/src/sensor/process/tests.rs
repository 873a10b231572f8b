use super::*;
use telltale_ebpf::decode::{ExecRecord, ExitRecord, FileRecord};

fn header(kind: u16, tgid: u32, ppid: u32, lineage: u64) -> Header {
    Header {
        kind,
        ktime_ns: 1_000_000_000,
        cgroup_id: 99,
        lineage,
        dedup_key: 0,
        pid: tgid,
        tgid,
        ppid,
        uid: 0,
        gid: 0,
        flags: 0,
        comm: "x".into(),
    }
}

fn exec(tgid: u32, ppid: u32, parent_lineage: u64, lineage: u64, path: &str, argv: &[&str]) -> Record {
    Record::Exec(ExecRecord {
        header: header(abi::EVENT_EXEC, tgid, ppid, lineage),
        parent_lineage,
        path: path.as_bytes().to_vec(),
        script: None,
        cwd: None,
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
    })
}

fn file(tgid: u32, ppid: u32, lineage: u64, path: &str) -> Record {
    Record::File(FileRecord {
        header: header(abi::EVENT_FILE, tgid, ppid, lineage),
        access: abi::ACCESS_READ,
        fd: 3,
        path: path.as_bytes().to_vec(),
    })
}

fn no_proc(_: u32) -> Option<ProcSnapshot> {
    None
}

fn event(o: Outcome) -> Event {
    match o {
        Outcome::Event(e) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[test]
fn lineage_follows_exec_chains_and_forks() {
    let mut t = ProcessTable::new(0);
    let e = event(t.feed(exec(10, 1, 0, 100, "/usr/sbin/nginx", &["nginx"]), &no_proc));
    assert_eq!(e.process.ancestors, Vec::<String>::new());
    let e = event(t.feed(exec(11, 10, 100, 200, "/bin/sh", &["sh", "-c", "curl x"]), &no_proc));
    assert_eq!(e.process.ancestors, vec!["/usr/sbin/nginx"]);
    let e = event(t.feed(exec(12, 11, 200, 300, "/usr/bin/curl", &["curl", "x"]), &no_proc));
    assert_eq!(e.process.ancestors, vec!["/usr/sbin/nginx", "/bin/sh"]);
    assert_eq!(e.process.args, vec!["curl", "x"]);
    let f = event(t.feed(file(12, 11, 300, "/etc/hosts"), &no_proc));
    assert_eq!(f.process.path, "/usr/bin/curl");
    assert_eq!(f.process.ancestors, vec!["/usr/sbin/nginx", "/bin/sh"]);
    // A forked child of sh (same lineage, no exec) is attributed to sh.
    let f = event(t.feed(file(13, 11, 200, "/tmp/x"), &no_proc));
    assert_eq!(f.process.path, "/bin/sh");
    assert_eq!(f.process.args, vec!["sh", "-c", "curl x"]);
    assert_eq!(f.process.pid, 13);
    t.feed(Record::Exit(ExitRecord { header: header(abi::EVENT_EXIT, 12, 11, 300), exit_code: 0 }), &no_proc);
    assert_eq!(t.len(), 3);
}

#[test]
fn scripts_are_reported_by_absolute_script_path() {
    let mut t = ProcessTable::new(0);
    let mut h = header(abi::EVENT_EXEC, 20, 1, 7);
    h.flags = abi::FLAG_SCRIPT | abi::FLAG_PATH_RELATIVE;
    let r = Record::Exec(ExecRecord {
        header: h,
        parent_lineage: 0,
        path: b"/usr/bin/dash".to_vec(),
        script: Some(b"./evil.sh".to_vec()),
        cwd: Some(b"/tmp/work".to_vec()),
        argv: vec![b"/bin/sh".to_vec(), b"./evil.sh".to_vec()],
    });
    let e = event(t.feed(r, &no_proc));
    assert_eq!(e.process.path, "/tmp/work/evil.sh");
    assert_eq!(e.process.interpreter.as_deref(), Some("/usr/bin/dash"));
}

#[test]
fn argv_is_bounded_and_marked() {
    let mut t = ProcessTable::new(0);
    let argv: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let e = event(t.feed(exec(30, 1, 0, 9, "/bin/echo", &refs), &no_proc));
    assert_eq!(e.process.args.len(), MAX_ARGS);
    assert!(e.process.args_truncated);
}

#[test]
fn unknown_processes_are_looked_up_once() {
    let mut t = ProcessTable::new(0);
    let lookup = |pid: u32| (pid == 40).then(|| ProcSnapshot { path: "/usr/bin/old".into(), args: vec!["old".into()] });
    let f = event(t.feed(file(40, 1, 0, "/etc/passwd"), &lookup));
    assert_eq!(f.process.path, "/usr/bin/old");
    let f = event(t.feed(file(40, 1, 0, "/etc/group"), &no_proc));
    assert_eq!(f.process.path, "/usr/bin/old", "remembered");
}

#[test]
fn malformed_dns_is_an_outcome_not_a_panic() {
    let mut t = ProcessTable::new(0);
    let r = Record::Dns(telltale_ebpf::decode::DnsRecord {
        header: header(abi::EVENT_DNS, 50, 1, 0),
        protocol: abi::PROTO_UDP,
        server: "127.0.0.1".parse().expect("ip"),
        port: 53,
        payload_len: 3,
        tcp_seq: 0,
        sock_cookie: 0,
        tcp_flags: 0,
        payload: vec![1, 2, 3],
    });
    assert!(matches!(t.feed(r, &no_proc), Outcome::MalformedDns(_)));
}

#[test]
fn time_is_boot_epoch_plus_ktime() {
    let mut t = ProcessTable::new(1_700_000_000_000_000_000);
    let e = event(t.feed(exec(1, 0, 0, 1, "/bin/true", &[]), &no_proc));
    assert_eq!(e.time.unix_timestamp(), 1_700_000_001);
}

#[test]
fn path_normalization() {
    assert_eq!(normalize_path("/tmp/./a/../b"), "/tmp/b");
    assert_eq!(normalize_path("/../../etc//passwd"), "/etc/passwd");
    assert_eq!(normalize_path("rel/x"), "/rel/x");
    assert_eq!(normalize_path("/"), "/");
}

#[test]
fn access_bits() {
    assert_eq!(access_modes(abi::ACCESS_READ | abi::ACCESS_WRITE), vec![Access::Read, Access::Write]);
    assert_eq!(access_modes(0), Vec::<Access>::new());
    assert_eq!(
        access_modes(abi::ACCESS_WRITE | abi::ACCESS_CREATE | abi::ACCESS_TRUNCATE),
        vec![Access::Write, Access::Create, Access::Truncate]
    );
}

#[test]
fn a_memfd_exec_is_named_and_never_a_path() {
    let mut t = ProcessTable::new(0);
    let mut r = exec(60, 1, 0, 61, "memfd:payload", &["x"]);
    if let Record::Exec(e) = &mut r {
        e.header.flags |= abi::FLAG_FILELESS;
    }
    let e = event(t.feed(r, &no_proc));
    assert_eq!(e.process.path, "memfd:payload");
    assert!(e.process.is_fileless());
    // The name's odd bytes are escaped, one way: a slash cannot make it a
    // path, and two names differing in one byte stay apart.
    assert_eq!(fileless_name(b"memfd:/bin/sh"), "memfd:\\x2fbin\\x2fsh");
    assert_eq!(fileless_name(b"memfd:a\xff\n\\"), "memfd:a\\xff\\x0a\\\\");
    assert_ne!(fileless_name(b"memfd:a\xff"), fileless_name(b"memfd:a\xfe"));
    assert_ne!(fileless_name(b"memfd:\\x41"), fileless_name(b"memfd:A"));
    // A path exec of a file literally named like that is a path.
    let p = event(t.feed(exec(62, 1, 0, 63, "/tmp/memfd:payload", &["x"]), &no_proc));
    assert!(!p.process.is_fileless());
    assert_ne!(p.process.path, e.process.path);
}

#[test]
fn a_memfd_script_is_named_and_its_interpreter_kept() {
    let mut t = ProcessTable::new(0);
    let mut r = exec(70, 1, 0, 71, "/usr/bin/dash", &["sh"]);
    if let Record::Exec(e) = &mut r {
        e.header.flags |= abi::FLAG_SCRIPT | abi::FLAG_SCRIPT_FILELESS;
        e.script = Some(b"memfd:s\ncript".to_vec());
    }
    let e = event(t.feed(r, &no_proc));
    assert_eq!(e.process.path, "memfd:s\\x0acript");
    assert_eq!(e.process.interpreter.as_deref(), Some("/usr/bin/dash"));
}

mod fileless_names {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Different bytes, different names; never a path.
        #[test]
        fn injective_and_never_a_path(a in proptest::collection::vec(any::<u8>(), 1..40), b in proptest::collection::vec(any::<u8>(), 1..40)) {
            let (na, nb) = (fileless_name(&a), fileless_name(&b));
            prop_assert_eq!(na == nb, a == b);
            prop_assert!(telltale_core::event::is_fileless(&na));
            prop_assert!(!na.chars().any(|c| c.is_control() || !c.is_ascii()));
        }
    }
}

fn file_bytes(tgid: u32, lineage: u64, path: &[u8]) -> Record {
    Record::File(FileRecord {
        header: header(abi::EVENT_FILE, tgid, 1, lineage),
        access: abi::ACCESS_READ,
        fd: 3,
        path: path.to_vec(),
    })
}

#[test]
fn names_that_are_not_utf8_stay_apart() {
    let mut t = ProcessTable::new(0);
    event(t.feed(exec(60, 1, 0, 61, "/bin/cat", &["cat"]), &no_proc));
    let paths: Vec<String> = [&b"/tmp/a\xff"[..], b"/tmp/a\xfe", b"/tmp/a\\xff", b"/tmp/a\xef\xbf\xbd"]
        .into_iter()
        .map(|p| match event(t.feed(file_bytes(60, 61, p), &no_proc)).kind {
            EventKind::File { file } => file.path,
            other => panic!("expected a file event, got {other:?}"),
        })
        .collect();
    assert_eq!(paths, ["/tmp/a\\xff", "/tmp/a\\xfe", "/tmp/a\\x5cxff", "/tmp/a\u{fffd}"]);
}

#[test]
fn programs_scripts_and_arguments_that_are_not_utf8_stay_apart() {
    let mut t = ProcessTable::new(0);
    let mut h = header(abi::EVENT_EXEC, 70, 1, 71);
    h.flags = abi::FLAG_SCRIPT | abi::FLAG_PATH_RELATIVE;
    let e = event(t.feed(
        Record::Exec(ExecRecord {
            header: h,
            parent_lineage: 0,
            path: b"/usr/bin/\xffsh".to_vec(),
            script: Some(b"./run\xfe.sh".to_vec()),
            cwd: Some(b"/srv/\xe9t\xe9".to_vec()),
            argv: vec![b"sh".to_vec(), b"\xfe".to_vec(), b"\xff".to_vec()],
        }),
        &no_proc,
    ));
    assert_eq!(e.process.path, "/srv/\\xe9t\\xe9/run\\xfe.sh");
    assert_eq!(e.process.interpreter.as_deref(), Some("/usr/bin/\\xffsh"));
    assert_eq!(e.process.args, ["sh", "\\xfe", "\\xff"]);
    let e = event(t.feed(
        Record::Exec(ExecRecord {
            header: header(abi::EVENT_EXEC, 72, 1, 73),
            parent_lineage: 0,
            path: b"/tmp/\xfe".to_vec(),
            script: None,
            cwd: None,
            argv: vec![],
        }),
        &no_proc,
    ));
    assert_eq!(e.process.path, "/tmp/\\xfe");
}
