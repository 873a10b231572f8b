use super::*;
use core::mem::{offset_of, size_of, size_of_val};

include!(concat!(env!("OUT_DIR"), "/abi_layout.rs"));

macro_rules! field {
    ($t:ty, $f:ident) => {{
        let v = core::mem::MaybeUninit::<$t>::uninit();
        // SAFETY: only the address of the field is taken, nothing is read.
        let size = size_of_val(unsafe { &(*v.as_ptr()).$f });
        (offset_of!($t, $f), size)
    }};
}

/// (offset, size) of a field in the Rust mirror, by the C names.
fn rust_layout(s: &str, f: &str) -> Option<(usize, usize)> {
    Some(match (s, f) {
        ("tt_event_header", "") => (0, size_of::<EventHeader>()),
        ("tt_event_header", "kind") => field!(EventHeader, kind),
        ("tt_event_header", "abi_version") => field!(EventHeader, abi_version),
        ("tt_event_header", "size") => field!(EventHeader, size),
        ("tt_event_header", "ktime_ns") => field!(EventHeader, ktime_ns),
        ("tt_event_header", "cgroup_id") => field!(EventHeader, cgroup_id),
        ("tt_event_header", "lineage") => field!(EventHeader, lineage),
        ("tt_event_header", "dedup_key") => field!(EventHeader, dedup_key),
        ("tt_event_header", "pid") => field!(EventHeader, pid),
        ("tt_event_header", "tgid") => field!(EventHeader, tgid),
        ("tt_event_header", "ppid") => field!(EventHeader, ppid),
        ("tt_event_header", "uid") => field!(EventHeader, uid),
        ("tt_event_header", "gid") => field!(EventHeader, gid),
        ("tt_event_header", "flags") => field!(EventHeader, flags),
        ("tt_event_header", "comm") => field!(EventHeader, comm),
        ("tt_exec_event", "") => (0, size_of::<ExecEvent>()),
        ("tt_exec_event", "hdr") => field!(ExecEvent, hdr),
        ("tt_exec_event", "parent_lineage") => field!(ExecEvent, parent_lineage),
        ("tt_exec_event", "path_len") => field!(ExecEvent, path_len),
        ("tt_exec_event", "script_len") => field!(ExecEvent, script_len),
        ("tt_exec_event", "cwd_len") => field!(ExecEvent, cwd_len),
        ("tt_exec_event", "args_len") => field!(ExecEvent, args_len),
        ("tt_exec_event", "argc") => field!(ExecEvent, argc),
        ("tt_exec_event", "pad") => field!(ExecEvent, pad),
        ("tt_exec_event", "data") => field!(ExecEvent, data),
        ("tt_file_event", "") => (0, size_of::<FileEvent>()),
        ("tt_file_event", "hdr") => field!(FileEvent, hdr),
        ("tt_file_event", "access") => field!(FileEvent, access),
        ("tt_file_event", "path_len") => field!(FileEvent, path_len),
        ("tt_file_event", "fd") => field!(FileEvent, fd),
        ("tt_file_event", "pad") => field!(FileEvent, pad),
        ("tt_file_event", "path") => field!(FileEvent, path),
        ("tt_dns_event", "") => (0, size_of::<DnsEvent>()),
        ("tt_dns_event", "hdr") => field!(DnsEvent, hdr),
        ("tt_dns_event", "family") => field!(DnsEvent, family),
        ("tt_dns_event", "protocol") => field!(DnsEvent, protocol),
        ("tt_dns_event", "dport") => field!(DnsEvent, dport),
        ("tt_dns_event", "payload_len") => field!(DnsEvent, payload_len),
        ("tt_dns_event", "captured_len") => field!(DnsEvent, captured_len),
        ("tt_dns_event", "tcp_seq") => field!(DnsEvent, tcp_seq),
        ("tt_dns_event", "daddr") => field!(DnsEvent, daddr),
        ("tt_dns_event", "sock_cookie") => field!(DnsEvent, sock_cookie),
        ("tt_dns_event", "tcp_flags") => field!(DnsEvent, tcp_flags),
        ("tt_dns_event", "pad") => field!(DnsEvent, pad),
        ("tt_dns_event", "payload") => field!(DnsEvent, payload),
        ("tt_connect_event", "") => (0, size_of::<ConnectEvent>()),
        ("tt_connect_event", "hdr") => field!(ConnectEvent, hdr),
        ("tt_connect_event", "family") => field!(ConnectEvent, family),
        ("tt_connect_event", "protocol") => field!(ConnectEvent, protocol),
        ("tt_connect_event", "port") => field!(ConnectEvent, port),
        ("tt_connect_event", "pad") => field!(ConnectEvent, pad),
        ("tt_connect_event", "addr") => field!(ConnectEvent, addr),
        ("tt_exit_event", "") => (0, size_of::<ExitEvent>()),
        ("tt_exit_event", "hdr") => field!(ExitEvent, hdr),
        ("tt_exit_event", "exit_code") => field!(ExitEvent, exit_code),
        ("tt_exit_event", "pad") => field!(ExitEvent, pad),
        ("tt_mechanism_event", "") => (0, size_of::<MechanismEvent>()),
        ("tt_mechanism_event", "hdr") => field!(MechanismEvent, hdr),
        ("tt_mechanism_event", "mechanism") => field!(MechanismEvent, mechanism),
        ("tt_mechanism_event", "detail") => field!(MechanismEvent, detail),
        ("tt_scope", "") => (0, size_of::<Scope>()),
        ("tt_node_state", "") => (0, size_of::<NodeState>()),
        ("tt_node_state", "nlevels") => field!(NodeState, nlevels),
        ("tt_node_state", "generation") => field!(NodeState, generation),
        ("tt_node_state", "levels") => field!(NodeState, levels),
        ("tt_registration", "") => (0, size_of::<Registration>()),
        ("tt_registration", "owner") => field!(Registration, owner),
        ("tt_registration", "lease_ns") => field!(Registration, lease_ns),
        ("tt_registration", "since_ns") => field!(Registration, since_ns),
        ("tt_registration", "host_tgid") => field!(Registration, host_tgid),
        ("tt_registration", "nscopes") => field!(Registration, nscopes),
        ("tt_registration", "cgroups") => field!(Registration, cgroups),
        ("tt_registration", "name") => field!(Registration, name),
        ("tt_cgroup_lost", "") => (0, size_of::<CgroupLost>()),
        ("tt_cgroup_lost", "lost") => field!(CgroupLost, lost),
        ("tt_scope", "slot") => field!(Scope, slot),
        ("tt_scope", "level") => field!(Scope, level),
        ("tt_scope", "self_tgid") => field!(Scope, self_tgid),
        ("tt_scope", "flags") => field!(Scope, flags),
        _ => return None,
    })
}

#[test]
fn rust_mirror_matches_the_c_header() {
    assert!(C_LAYOUT.len() > 50, "the layout probe printed too little");
    for &(s, f, offset, size) in C_LAYOUT {
        let rust = rust_layout(s, f).unwrap_or_else(|| panic!("{s}.{f} has no Rust mirror"));
        assert_eq!(rust, (offset, size), "{s}.{f}: Rust (offset, size) differs from C");
    }
}

#[test]
fn constants_match_the_c_header() {
    let rust: &[(&str, u64)] = &[
        ("TT_ABI_VERSION", ABI_VERSION.into()),
        ("TT_PATH_MAX", PATH_MAX as u64),
        ("TT_ARGS_MAX", ARGS_MAX as u64),
        ("TT_DNS_MAX", DNS_MAX as u64),
        ("TT_COMM_LEN", COMM_LEN as u64),
        ("TT_MAX_SCOPES", MAX_SCOPES.into()),
        ("TT_MAX_PODS", MAX_PODS.into()),
        ("TT_MAX_LEVELS", MAX_LEVELS as u64),
        ("TT_SCOPE_NO_DEDUP", SCOPE_NO_DEDUP.into()),
        ("TT_EVENT_EXEC", EVENT_EXEC.into()),
        ("TT_EVENT_FILE", EVENT_FILE.into()),
        ("TT_EVENT_DNS", EVENT_DNS.into()),
        ("TT_EVENT_CONNECT", EVENT_CONNECT.into()),
        ("TT_EVENT_EXIT", EVENT_EXIT.into()),
        ("TT_FLAG_PATH_TRUNCATED", FLAG_PATH_TRUNCATED.into()),
        ("TT_FLAG_ARGS_TRUNCATED", FLAG_ARGS_TRUNCATED.into()),
        ("TT_FLAG_SCRIPT", FLAG_SCRIPT.into()),
        ("TT_FLAG_PAYLOAD_TRUNCATED", FLAG_PAYLOAD_TRUNCATED.into()),
        ("TT_FLAG_PATH_RELATIVE", FLAG_PATH_RELATIVE.into()),
        ("TT_FLAG_FILELESS", FLAG_FILELESS.into()),
        ("TT_FLAG_SCRIPT_FILELESS", FLAG_SCRIPT_FILELESS.into()),
        ("TT_TCP_FIN", TCP_FIN.into()),
        ("TT_TCP_SYN", TCP_SYN.into()),
        ("TT_TCP_RST", TCP_RST.into()),
        ("TT_DNS_TCP_CHUNKS", DNS_TCP_CHUNKS.into()),
        ("TT_ACCESS_READ", ACCESS_READ.into()),
        ("TT_ACCESS_WRITE", ACCESS_WRITE.into()),
        ("TT_ACCESS_CREATE", ACCESS_CREATE.into()),
        ("TT_ACCESS_TRUNCATE", ACCESS_TRUNCATE.into()),
        ("TT_AF_INET", AF_INET.into()),
        ("TT_AF_INET6", AF_INET6.into()),
        ("TT_PROTO_TCP", PROTO_TCP.into()),
        ("TT_PROTO_UDP", PROTO_UDP.into()),
        ("TT_KIND_SLOTS", KIND_SLOTS.into()),
        ("TT_CNT_EMITTED", CNT_EMITTED.into()),
        ("TT_CNT_DEDUP", CNT_DEDUP.into()),
        ("TT_CNT_LOST", CNT_LOST.into()),
        ("TT_CNT_TRUNCATED", CNT_TRUNCATED.into()),
        ("TT_CNT_KNOWN", CNT_KNOWN.into()),
        ("TT_CNT_NR", CNT_NR.into()),
        ("TT_COUNTERS", COUNTERS.into()),
        ("TT_EVENT_MECHANISM", EVENT_MECHANISM.into()),
        ("TT_MECH_IO_URING", MECH_IO_URING.into()),
    ];
    assert_eq!(rust.len(), C_CONSTANTS.len(), "a constant is missing on one side");
    for (name, value) in rust {
        let c = C_CONSTANTS.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(c, Some(*value), "{name}");
    }
}
