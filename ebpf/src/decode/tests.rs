use super::*;

fn header_bytes(kind: u16, size: usize, flags: u32) -> Vec<u8> {
    let mut b = vec![0u8; size];
    put(&mut b, offset_of!(EventHeader, kind), kind);
    put(&mut b, offset_of!(EventHeader, abi_version), abi::ABI_VERSION);
    put(&mut b, offset_of!(EventHeader, size), size as u32);
    put(&mut b, offset_of!(EventHeader, ktime_ns), 42u64);
    put(&mut b, offset_of!(EventHeader, cgroup_id), 7u64);
    put(&mut b, offset_of!(EventHeader, pid), 100u32);
    put(&mut b, offset_of!(EventHeader, tgid), 100u32);
    put(&mut b, offset_of!(EventHeader, ppid), 1u32);
    put(&mut b, offset_of!(EventHeader, flags), flags);
    put(&mut b, offset_of!(EventHeader, comm), *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0");
    b
}

fn put<T: Copy>(b: &mut [u8], off: usize, v: T) {
    let n = size_of::<T>();
    // SAFETY: test helper writing plain integers into a byte buffer.
    let src = unsafe { std::slice::from_raw_parts((&v as *const T).cast::<u8>(), n) };
    b[off..off + n].copy_from_slice(src);
}

#[test]
fn decodes_a_file_record() {
    let path = b"/etc/hostname";
    let fixed = offset_of!(FileEvent, path);
    let mut b = header_bytes(abi::EVENT_FILE, fixed + path.len(), 0);
    put(&mut b, offset_of!(FileEvent, access), abi::ACCESS_READ);
    put(&mut b, offset_of!(FileEvent, path_len), path.len() as u32);
    put(&mut b, offset_of!(FileEvent, fd), 3i32);
    b[fixed..].copy_from_slice(path);
    let Record::File(f) = decode(&b).expect("decodes") else { panic!("not a file record") };
    assert_eq!(f.path, path);
    assert_eq!(f.access, abi::ACCESS_READ);
    assert_eq!(f.fd, 3);
    assert_eq!(f.header.comm, "cat");
    assert_eq!(f.header.cgroup_id, 7);
    assert_eq!(f.header.tgid, 100);
}

#[test]
fn decodes_a_mechanism_record() {
    let mut b = header_bytes(abi::EVENT_MECHANISM, size_of::<MechanismEvent>(), 0);
    put(&mut b, offset_of!(MechanismEvent, mechanism), abi::MECH_IO_URING);
    put(&mut b, offset_of!(MechanismEvent, detail), 18u32);
    let Record::Mechanism(m) = decode(&b).expect("decodes") else { panic!("not a mechanism record") };
    assert_eq!((m.mechanism, m.detail), (abi::MECH_IO_URING, 18));
    assert_eq!(m.header.tgid, 100);
    let short = header_bytes(abi::EVENT_MECHANISM, size_of::<MechanismEvent>() - 4, 0);
    assert!(matches!(decode(&short), Err(DecodeError::TooShort { .. })));
}

#[test]
fn decodes_an_exec_record_with_script_cwd_and_args() {
    let data = offset_of!(ExecEvent, data);
    let parts: [&[u8]; 4] = [b"/usr/bin/bash", b"./evil.sh", b"/tmp", b"./evil.sh\0-x\0\0"];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut b = header_bytes(abi::EVENT_EXEC, data + total, abi::FLAG_SCRIPT | abi::FLAG_PATH_RELATIVE);
    put(&mut b, offset_of!(ExecEvent, path_len), parts[0].len() as u16);
    put(&mut b, offset_of!(ExecEvent, script_len), parts[1].len() as u16);
    put(&mut b, offset_of!(ExecEvent, cwd_len), parts[2].len() as u16);
    put(&mut b, offset_of!(ExecEvent, args_len), parts[3].len() as u16);
    b[data..].copy_from_slice(&parts.concat());
    let Record::Exec(e) = decode(&b).expect("decodes") else { panic!("not an exec") };
    assert_eq!(e.path, b"/usr/bin/bash");
    assert_eq!(e.script.as_deref(), Some(&b"./evil.sh"[..]));
    assert_eq!(e.cwd.as_deref(), Some(&b"/tmp"[..]));
    assert_eq!(e.argv, vec![b"./evil.sh".to_vec(), b"-x".to_vec(), Vec::new()]);
}

#[test]
fn decodes_connect_v4_and_v6() {
    let mut b = header_bytes(abi::EVENT_CONNECT, size_of::<ConnectEvent>(), 0);
    put(&mut b, offset_of!(ConnectEvent, family), abi::AF_INET);
    put(&mut b, offset_of!(ConnectEvent, protocol), abi::PROTO_TCP);
    put(&mut b, offset_of!(ConnectEvent, port), 8080u16);
    put(&mut b, offset_of!(ConnectEvent, addr), [127u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let Record::Connect(c) = decode(&b).expect("decodes") else { panic!() };
    assert_eq!(c.address, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(c.port, 8080);
    put(&mut b, offset_of!(ConnectEvent, family), abi::AF_INET6);
    put(&mut b, offset_of!(ConnectEvent, addr), Ipv6Addr::LOCALHOST.octets());
    let Record::Connect(c) = decode(&b).expect("decodes") else { panic!() };
    assert_eq!(c.address, IpAddr::V6(Ipv6Addr::LOCALHOST));
    put(&mut b, offset_of!(ConnectEvent, family), 99u8);
    assert_eq!(decode(&b), Err(DecodeError::UnknownFamily(99)));
}

#[test]
fn rejects_short_records_bad_lengths_versions_and_kinds() {
    assert!(matches!(decode(&[0u8; 10]), Err(DecodeError::TooShort { .. })));
    let fixed = offset_of!(FileEvent, path);
    let mut b = header_bytes(abi::EVENT_FILE, fixed + 4, 0);
    put(&mut b, offset_of!(FileEvent, path_len), 5000u32);
    assert!(matches!(decode(&b), Err(DecodeError::LengthOutOfBounds { field: "path_len", .. })));
    let b = header_bytes(abi::EVENT_FILE, 90, 0);
    assert_eq!(decode(&b), Err(DecodeError::TooShort { kind: abi::EVENT_FILE, len: 90, need: fixed }));
    let b = header_bytes(abi::EVENT_FILE, 40 + 80, 0);
    assert_eq!(decode(&b[..90]), Err(DecodeError::SizeBeyondRecord { kind: abi::EVENT_FILE, size: 120, len: 90 }));
    let b = header_bytes(77, 200, 0);
    assert_eq!(decode(&b), Err(DecodeError::UnknownKind(77)));
    let mut b = header_bytes(abi::EVENT_EXIT, 88, 0);
    put(&mut b, offset_of!(EventHeader, abi_version), 9u16);
    assert_eq!(decode(&b), Err(DecodeError::AbiVersion { found: 9, expected: abi::ABI_VERSION }));
}

#[test]
fn argv_splitting() {
    assert_eq!(split_argv(b""), Vec::<Vec<u8>>::new());
    assert_eq!(split_argv(b"a\0"), vec![b"a".to_vec()]);
    assert_eq!(split_argv(b"a\0b"), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn the_header_size_bounds_the_record() {
    let exit = header_bytes(abi::EVENT_EXIT, size_of::<ExitEvent>(), 0);
    let mut longer = exit.clone();
    longer.extend_from_slice(&[0xff; 16]);
    assert_eq!(decode(&longer), decode(&exit));
    assert!(decode(&exit).is_ok());
    // A size shorter than the kind's fixed part is a short record, even
    // when more bytes arrived.
    let mut b = longer.clone();
    put(&mut b, offset_of!(EventHeader, size), 84u32);
    assert_eq!(decode(&b), Err(DecodeError::TooShort { kind: abi::EVENT_EXIT, len: 84, need: size_of::<ExitEvent>() }));
    // A size past the bytes received.
    put(&mut b, offset_of!(EventHeader, size), u32::MAX);
    assert_eq!(
        decode(&b),
        Err(DecodeError::SizeBeyondRecord { kind: abi::EVENT_EXIT, size: u32::MAX as usize, len: b.len() })
    );
}

mod fuzz {
    //! Property-based tests: hostile bytes, hostile headers, round trips.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 512, ..ProptestConfig::default() }
    }

    const HEADER: usize = size_of::<EventHeader>();

    fn ip_raw(ip: &IpAddr) -> (u8, [u8; 16]) {
        match ip {
            IpAddr::V4(v4) => {
                let mut raw = [0; 16];
                raw[..4].copy_from_slice(&v4.octets());
                (abi::AF_INET, raw)
            }
            IpAddr::V6(v6) => (abi::AF_INET6, v6.octets()),
        }
    }

    /// The bytes the kernel would emit for `r` (header `size` included).
    fn encode(r: &Record) -> Vec<u8> {
        let h = r.header();
        let (fixed, body): (usize, Vec<u8>) = match r {
            Record::Exec(e) => {
                let parts = [
                    &e.path[..],
                    e.script.as_deref().unwrap_or_default(),
                    e.cwd.as_deref().unwrap_or_default(),
                    &argv_bytes(&e.argv),
                ];
                (offset_of!(ExecEvent, data), parts.concat())
            }
            Record::File(f) => (offset_of!(FileEvent, path), f.path.clone()),
            Record::Dns(d) => (offset_of!(DnsEvent, payload), d.payload.clone()),
            Record::Connect(_) => (size_of::<ConnectEvent>(), Vec::new()),
            Record::Exit(_) => (size_of::<ExitEvent>(), Vec::new()),
            Record::Mechanism(_) => (size_of::<MechanismEvent>(), Vec::new()),
        };
        let mut b = header_bytes(h.kind, fixed + body.len(), h.flags);
        b[fixed..].copy_from_slice(&body);
        put(&mut b, offset_of!(EventHeader, ktime_ns), h.ktime_ns);
        put(&mut b, offset_of!(EventHeader, cgroup_id), h.cgroup_id);
        put(&mut b, offset_of!(EventHeader, lineage), h.lineage);
        put(&mut b, offset_of!(EventHeader, dedup_key), h.dedup_key);
        put(&mut b, offset_of!(EventHeader, pid), h.pid);
        put(&mut b, offset_of!(EventHeader, tgid), h.tgid);
        put(&mut b, offset_of!(EventHeader, ppid), h.ppid);
        put(&mut b, offset_of!(EventHeader, uid), h.uid);
        put(&mut b, offset_of!(EventHeader, gid), h.gid);
        let mut comm = [0u8; abi::COMM_LEN];
        comm[..h.comm.len()].copy_from_slice(h.comm.as_bytes());
        put(&mut b, offset_of!(EventHeader, comm), comm);
        match r {
            Record::Exec(e) => {
                let len = |v: &[u8]| v.len() as u16;
                put(&mut b, offset_of!(ExecEvent, parent_lineage), e.parent_lineage);
                put(&mut b, offset_of!(ExecEvent, path_len), len(&e.path));
                put(&mut b, offset_of!(ExecEvent, script_len), e.script.as_deref().map_or(0, len));
                put(&mut b, offset_of!(ExecEvent, cwd_len), e.cwd.as_deref().map_or(0, len));
                put(&mut b, offset_of!(ExecEvent, args_len), len(&argv_bytes(&e.argv)));
                put(&mut b, offset_of!(ExecEvent, argc), e.argv.len() as u32);
            }
            Record::File(f) => {
                put(&mut b, offset_of!(FileEvent, access), f.access);
                put(&mut b, offset_of!(FileEvent, path_len), f.path.len() as u32);
                put(&mut b, offset_of!(FileEvent, fd), f.fd);
            }
            Record::Dns(d) => {
                let (family, raw) = ip_raw(&d.server);
                put(&mut b, offset_of!(DnsEvent, family), family);
                put(&mut b, offset_of!(DnsEvent, protocol), d.protocol);
                put(&mut b, offset_of!(DnsEvent, dport), d.port);
                put(&mut b, offset_of!(DnsEvent, payload_len), d.payload_len);
                put(&mut b, offset_of!(DnsEvent, captured_len), d.payload.len() as u32);
                put(&mut b, offset_of!(DnsEvent, daddr), raw);
                put(&mut b, offset_of!(DnsEvent, tcp_seq), d.tcp_seq);
                put(&mut b, offset_of!(DnsEvent, sock_cookie), d.sock_cookie);
                put(&mut b, offset_of!(DnsEvent, tcp_flags), d.tcp_flags);
            }
            Record::Connect(c) => {
                let (family, raw) = ip_raw(&c.address);
                put(&mut b, offset_of!(ConnectEvent, family), family);
                put(&mut b, offset_of!(ConnectEvent, protocol), c.protocol);
                put(&mut b, offset_of!(ConnectEvent, port), c.port);
                put(&mut b, offset_of!(ConnectEvent, addr), raw);
            }
            Record::Exit(x) => put(&mut b, offset_of!(ExitEvent, exit_code), x.exit_code),
            Record::Mechanism(m) => {
                put(&mut b, offset_of!(MechanismEvent, mechanism), m.mechanism);
                put(&mut b, offset_of!(MechanismEvent, detail), m.detail);
            }
        }
        b
    }

    /// argv as the kernel captures it: each argument NUL-terminated.
    fn argv_bytes(argv: &[Vec<u8>]) -> Vec<u8> {
        argv.iter().flat_map(|a| a.iter().copied().chain([0])).collect()
    }

    fn header() -> impl Strategy<Value = Header> {
        (any::<[u64; 4]>(), any::<[u32; 6]>(), "[ -~]{0,16}").prop_map(|(w, n, comm)| Header {
            kind: 0,
            ktime_ns: w[0],
            cgroup_id: w[1],
            lineage: w[2],
            dedup_key: w[3],
            pid: n[0],
            tgid: n[1],
            ppid: n[2],
            uid: n[3],
            gid: n[4],
            flags: n[5],
            comm,
        })
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..max)
    }

    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)]
    }

    /// Records the kernel can emit. argv `[""]` is left out: its bytes
    /// (`"\0"`) are those of an empty argv.
    fn record() -> impl Strategy<Value = Record> {
        let no_nul = || vec(1u8..=255, 0..12);
        let exec = (
            header(),
            any::<u64>(),
            bytes(64),
            proptest::option::of(vec(any::<u8>(), 1..32)),
            proptest::option::of(bytes(32)),
            vec(no_nul(), 0..6).prop_filter("[\"\"] reads back as []", |a| a != &[Vec::<u8>::new()]),
        )
            .prop_map(|(header, parent_lineage, path, script, cwd, argv)| {
                let mut flags = header.flags & !(abi::FLAG_SCRIPT | abi::FLAG_PATH_RELATIVE);
                flags |= if script.is_some() { abi::FLAG_SCRIPT } else { 0 };
                flags |= if cwd.is_some() { abi::FLAG_PATH_RELATIVE } else { 0 };
                let header = Header { kind: abi::EVENT_EXEC, flags, ..header };
                Record::Exec(ExecRecord { header, parent_lineage, path, script, cwd, argv })
            });
        let file = (header(), any::<u32>(), any::<i32>(), bytes(128)).prop_map(|(header, access, fd, path)| {
            Record::File(FileRecord { header: Header { kind: abi::EVENT_FILE, ..header }, access, fd, path })
        });
        let dns = (
            header(),
            any::<u8>(),
            address(),
            any::<u16>(),
            any::<u32>(),
            (any::<u32>(), any::<u64>(), any::<u8>()),
            bytes(abi::DNS_MAX),
        )
            .prop_map(
                |(header, protocol, server, port, payload_len, (tcp_seq, sock_cookie, tcp_flags), payload)| {
                    let header = Header { kind: abi::EVENT_DNS, ..header };
                    Record::Dns(DnsRecord {
                        header,
                        protocol,
                        server,
                        port,
                        payload_len,
                        tcp_seq,
                        sock_cookie,
                        tcp_flags,
                        payload,
                    })
                },
            );
        let connect = (header(), any::<u8>(), address(), any::<u16>()).prop_map(|(header, protocol, address, port)| {
            Record::Connect(ConnectRecord {
                header: Header { kind: abi::EVENT_CONNECT, ..header },
                protocol,
                address,
                port,
            })
        });
        let exit = (header(), any::<u32>()).prop_map(|(header, exit_code)| {
            Record::Exit(ExitRecord { header: Header { kind: abi::EVENT_EXIT, ..header }, exit_code })
        });
        let mechanism = (header(), any::<u32>(), any::<u32>()).prop_map(|(header, mechanism, detail)| {
            Record::Mechanism(MechanismRecord {
                header: Header { kind: abi::EVENT_MECHANISM, ..header },
                mechanism,
                detail,
            })
        });
        prop_oneof![exec, file, dns, connect, exit, mechanism]
    }

    /// Offsets of a kind's length fields, with their widths.
    fn length_fields(kind: u16) -> Vec<(usize, usize)> {
        match kind {
            abi::EVENT_EXEC => vec![
                (offset_of!(ExecEvent, path_len), 2),
                (offset_of!(ExecEvent, script_len), 2),
                (offset_of!(ExecEvent, cwd_len), 2),
                (offset_of!(ExecEvent, args_len), 2),
            ],
            abi::EVENT_FILE => vec![(offset_of!(FileEvent, path_len), 4)],
            abi::EVENT_DNS => vec![(offset_of!(DnsEvent, captured_len), 4)],
            _ => Vec::new(),
        }
    }

    /// A record's bytes must lie within the size its header claims.
    fn within(r: &Record, size: usize) -> bool {
        let used = match r {
            Record::Exec(e) => {
                let args: usize = e.argv.iter().map(Vec::len).sum::<usize>() + e.argv.len().saturating_sub(1);
                offset_of!(ExecEvent, data)
                    + e.path.len()
                    + e.script.as_ref().map_or(0, Vec::len)
                    + e.cwd.as_ref().map_or(0, Vec::len)
                    + args
            }
            Record::File(f) => offset_of!(FileEvent, path) + f.path.len(),
            Record::Dns(d) => offset_of!(DnsEvent, payload) + d.payload.len(),
            Record::Connect(_) => size_of::<ConnectEvent>(),
            Record::Exit(_) => size_of::<ExitEvent>(),
            Record::Mechanism(_) => size_of::<MechanismEvent>(),
        };
        used <= size
    }

    /// What every outcome must satisfy, whatever the bytes.
    fn check(b: &[u8]) -> Result<(), TestCaseError> {
        let outcome = decode(b);
        if b.len() < HEADER {
            prop_assert_eq!(outcome, Err(DecodeError::TooShort { kind: 0, len: b.len(), need: HEADER }));
            return Ok(());
        }
        let field = |off: usize, n: usize| b[off..off + n].iter().rev().fold(0usize, |v, &x| v << 8 | usize::from(x));
        let kind = field(offset_of!(EventHeader, kind), 2) as u16;
        let version = field(offset_of!(EventHeader, abi_version), 2) as u16;
        let size = field(offset_of!(EventHeader, size), 4);
        match outcome {
            Ok(r) => {
                prop_assert_eq!(version, abi::ABI_VERSION);
                prop_assert!(size <= b.len());
                prop_assert_eq!(r.header().kind, kind);
                prop_assert!(!r.header().comm.contains('\0'));
                prop_assert!(within(&r, size), "{:?} in {} bytes", r, size);
            }
            Err(DecodeError::AbiVersion { found, .. }) => prop_assert_eq!(found, version),
            Err(DecodeError::SizeBeyondRecord { kind: k, size: s, len }) => {
                prop_assert_eq!((k, s, len), (kind, size, b.len()));
                prop_assert!(s > len);
            }
            Err(DecodeError::TooShort { len, need, .. }) => prop_assert!(len < need && len == size),
            Err(DecodeError::LengthOutOfBounds { claimed, available, .. }) => prop_assert!(claimed > available),
            Err(DecodeError::UnknownKind(k)) => {
                prop_assert_eq!(k, kind);
                prop_assert!(!(abi::EVENT_EXEC..=abi::EVENT_EXIT).contains(&k));
            }
            Err(DecodeError::UnknownFamily(f)) => prop_assert!(f != abi::AF_INET && f != abi::AF_INET6),
        }
        Ok(())
    }

    /// A header that passes the version check, with a kind (mostly known),
    /// a size (mostly the true one, sometimes past the end or too small),
    /// small length fields pointing anywhere around the end, and random
    /// bytes elsewhere.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        let kind = prop_oneof![9 => abi::EVENT_EXEC..=abi::EVENT_EXIT, 1 => any::<u16>()];
        let size = prop_oneof![
            6 => Just(None),
            1 => (0u32..8300).prop_map(Some),
            1 => any::<u32>().prop_map(Some),
        ];
        let lens = vec(prop_oneof![3 => 0u32..160, 1 => any::<u32>()], 4);
        (kind, size, lens, bytes(700), any::<u8>()).prop_map(|(kind, size, lens, tail, family)| {
            let mut b = vec![0u8; HEADER];
            b.extend_from_slice(&tail);
            put(&mut b, offset_of!(EventHeader, kind), kind);
            put(&mut b, offset_of!(EventHeader, abi_version), abi::ABI_VERSION);
            let len = b.len() as u32;
            put(&mut b, offset_of!(EventHeader, size), size.unwrap_or(len));
            for ((at, width), value) in length_fields(kind).into_iter().zip(lens) {
                if at + width <= b.len() {
                    b[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
                }
            }
            // Mostly a valid address family.
            for at in [offset_of!(DnsEvent, family), offset_of!(ConnectEvent, family)] {
                if at < b.len() && kind != abi::EVENT_EXEC {
                    b[at] = [abi::AF_INET, abi::AF_INET6, family][usize::from(family % 3)];
                }
            }
            b
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_bytes_never_panic(b in bytes(400)) {
            check(&b)?;
        }

        #[test]
        fn hostile_headers_give_typed_errors(b in hostile()) {
            check(&b)?;
        }

        #[test]
        fn records_round_trip(r in record()) {
            let b = encode(&r);
            prop_assert_eq!(decode(&b), Ok(r));
        }

        #[test]
        fn truncated_and_mutated_records_give_typed_errors(
            r in record(),
            cut in any::<proptest::sample::Index>(),
            edits in vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let b = encode(&r);
            let short = &b[..cut.index(b.len())];
            check(short)?;
            prop_assert!(decode(short).is_err(), "{} of {} bytes decoded", short.len(), b.len());
            let mut mutated = b.clone();
            for (at, byte) in edits {
                let i = at.index(mutated.len());
                mutated[i] = byte;
            }
            check(&mutated)?;
        }
    }
}
