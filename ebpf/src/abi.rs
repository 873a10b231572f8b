//! `#[repr(C)]` mirror of `include/telltale_abi.h`.
//!
//! The header is the source of truth. `tests` below compares every size,
//! offset and constant here with what the C compiler produced from the header
//! (see build.rs and `bpf/abi_layout.c`). Never cast ring-buffer bytes to
//! these types: decode with [`crate::decode`].

/// `TT_ABI_VERSION`: records with another version are rejected.
pub const ABI_VERSION: u16 = 3;
/// Longest path captured by the kernel (bytes, including no NUL).
pub const PATH_MAX: usize = 4096;
/// Longest argv captured (bytes).
pub const ARGS_MAX: usize = 4096;
/// Longest DNS payload captured (bytes).
pub const DNS_MAX: usize = 512;
/// `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Watched cgroup subtrees per sensor.
pub const MAX_SCOPES: u32 = 8;
/// `TT_MAX_PODS`: pods (sidecars) one node set serves.
pub const MAX_PODS: u32 = 512;
/// `TT_MAX_LEVELS`: distinct cgroup depths the registered scopes can be at.
pub const MAX_LEVELS: usize = 8;
/// `TT_SCOPE_NO_DEDUP`: every occurrence is emitted.
pub const SCOPE_NO_DEDUP: u32 = 1 << 0;

/// `enum tt_event_kind`.
pub const EVENT_EXEC: u16 = 1;
/// File open.
pub const EVENT_FILE: u16 = 2;
/// DNS query.
pub const EVENT_DNS: u16 = 3;
/// Outbound connect / send.
pub const EVENT_CONNECT: u16 = 4;
/// Process exit.
pub const EVENT_EXIT: u16 = 5;
/// Use of a mechanism the other sensors cannot see through.
pub const EVENT_MECHANISM: u16 = 6;

/// `tt_mechanism_event.mechanism`: io_uring (a ring set up or a request submitted).
pub const MECH_IO_URING: u32 = 1;
/// `tt_mechanism_event.detail` of an io_uring ring setup (no request yet).
pub const IO_URING_SETUP: u32 = u32::MAX;

/// A path was longer than [`PATH_MAX`] or deeper than the walk allows.
pub const FLAG_PATH_TRUNCATED: u32 = 1 << 0;
/// argv was longer than [`ARGS_MAX`].
pub const FLAG_ARGS_TRUNCATED: u32 = 1 << 1;
/// The exec ran a `#!` script (or binfmt_misc program).
pub const FLAG_SCRIPT: u32 = 1 << 2;
/// The DNS payload was longer than [`DNS_MAX`].
pub const FLAG_PAYLOAD_TRUNCATED: u32 = 1 << 3;
/// The script path is relative to the cwd that follows it.
pub const FLAG_PATH_RELATIVE: u32 = 1 << 4;
/// The executed file is reached by no mount (a memfd): the exec path is its
/// dentry name (`memfd:<name>` for a memfd), raw bytes.
pub const FLAG_FILELESS: u32 = 1 << 5;
/// The `#!` script is such a file: the script bytes are its name.
pub const FLAG_SCRIPT_FILELESS: u32 = 1 << 6;

/// `tt_dns_event.tcp_flags`: FIN.
pub const TCP_FIN: u8 = 1 << 0;
/// SYN.
pub const TCP_SYN: u8 = 1 << 1;
/// RST.
pub const TCP_RST: u8 = 1 << 2;
/// Most records one TCP segment to port 53 is reported in.
pub const DNS_TCP_CHUNKS: u32 = 16;

/// File opened for reading.
pub const ACCESS_READ: u32 = 1 << 0;
/// File opened for writing.
pub const ACCESS_WRITE: u32 = 1 << 1;
/// The open created the file.
pub const ACCESS_CREATE: u32 = 1 << 2;
/// The open truncated the file.
pub const ACCESS_TRUNCATE: u32 = 1 << 3;

/// `AF_INET`.
pub const AF_INET: u8 = 2;
/// `AF_INET6`.
pub const AF_INET6: u8 = 10;
/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

/// Counter slots per counter kind (indexed by event kind).
pub const KIND_SLOTS: u32 = 8;
/// Records written to the ring buffer.
pub const CNT_EMITTED: u32 = 0;
/// Repeats dropped by the in-kernel dedup LRU.
pub const CNT_DEDUP: u32 = 1;
/// Records lost because the ring buffer was full.
pub const CNT_LOST: u32 = 2;
/// Records emitted with a truncated path, argv or payload.
pub const CNT_TRUNCATED: u32 = 3;
/// Dropped because user space marked the behaviour known.
pub const CNT_KNOWN: u32 = 4;
/// Number of counter kinds.
pub const CNT_NR: u32 = 5;
/// Entries of the per-CPU `counters` map.
pub const COUNTERS: u32 = CNT_NR * KIND_SLOTS;

/// `struct tt_event_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EventHeader {
    pub kind: u16,
    pub abi_version: u16,
    pub size: u32,
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub lineage: u64,
    pub dedup_key: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub comm: [u8; COMM_LEN],
}

/// `struct tt_exec_event` (fixed part; `data` follows).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    pub parent_lineage: u64,
    pub path_len: u16,
    pub script_len: u16,
    pub cwd_len: u16,
    pub args_len: u16,
    pub argc: u32,
    pub pad: u32,
    pub data: [u8; PATH_MAX * 4 + ARGS_MAX],
}

/// `struct tt_file_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FileEvent {
    pub hdr: EventHeader,
    pub access: u32,
    pub path_len: u32,
    pub fd: i32,
    pub pad: u32,
    pub path: [u8; PATH_MAX],
}

/// `struct tt_dns_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DnsEvent {
    pub hdr: EventHeader,
    pub family: u8,
    pub protocol: u8,
    pub dport: u16,
    pub payload_len: u32,
    pub captured_len: u32,
    pub tcp_seq: u32,
    pub daddr: [u8; 16],
    pub sock_cookie: u64,
    pub tcp_flags: u8,
    pub pad: [u8; 7],
    pub payload: [u8; DNS_MAX],
}

/// `struct tt_connect_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ConnectEvent {
    pub hdr: EventHeader,
    pub family: u8,
    pub protocol: u8,
    pub port: u16,
    pub pad: u32,
    pub addr: [u8; 16],
}

/// `struct tt_exit_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExitEvent {
    pub hdr: EventHeader,
    pub exit_code: u32,
    pub pad: u32,
}

/// `struct tt_mechanism_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MechanismEvent {
    pub hdr: EventHeader,
    pub mechanism: u32,
    pub detail: u32,
}

/// `struct tt_scope`: value of the node's `scopes` hash (key: cgroup id).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub slot: u32,
    pub level: u32,
    pub self_tgid: u32,
    pub flags: u32,
}

/// `struct tt_node_state`: the node's `node` array, key 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeState {
    pub nlevels: u32,
    pub generation: u32,
    pub levels: [u32; MAX_LEVELS],
}

/// `struct tt_registration`: value of the node's `registry` array.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub owner: u64,
    pub lease_ns: u64,
    pub since_ns: u64,
    pub host_tgid: u32,
    pub nscopes: u32,
    pub cgroups: [u64; MAX_SCOPES as usize],
    pub name: [u8; 64],
}

impl Default for Registration {
    fn default() -> Self {
        Self {
            owner: 0,
            lease_ns: 0,
            since_ns: 0,
            host_tgid: 0,
            nscopes: 0,
            cgroups: [0; MAX_SCOPES as usize],
            name: [0; 64],
        }
    }
}

/// `struct tt_cgroup_lost`: value of a pod's `cgroup_lost` hash.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLost {
    pub lost: [u64; KIND_SLOTS as usize],
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 80);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 80 + 24 + PATH_MAX * 4 + ARGS_MAX);
const _: () = assert!(core::mem::size_of::<FileEvent>() == 80 + 16 + PATH_MAX);
const _: () = assert!(core::mem::size_of::<DnsEvent>() == 80 + 48 + DNS_MAX);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 80 + 24);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 88);
const _: () = assert!(core::mem::size_of::<MechanismEvent>() == 88);
const _: () = assert!(core::mem::size_of::<Scope>() == 16);
const _: () = assert!(core::mem::size_of::<NodeState>() == 8 + 4 * MAX_LEVELS);
const _: () = assert!(core::mem::size_of::<Registration>() == 32 + 8 * MAX_SCOPES as usize + 64);
const _: () = assert!(core::mem::size_of::<CgroupLost>() == 8 * KIND_SLOTS as usize);

#[cfg(test)]
mod tests;
