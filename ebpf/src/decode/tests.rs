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
    let b = header_bytes(abi::EVENT_FILE, 40 + 80, 0);
    assert!(matches!(decode(&b[..90]), Err(DecodeError::TooShort { kind: abi::EVENT_FILE, .. })));
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
