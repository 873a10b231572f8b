//! Telltale's eBPF sensors: the compiled C CO-RE object, the kernel<->user
//! ABI mirror ([`abi`]) and the ring-buffer record decoder ([`decode`]).
//!
//! The C side lives in `bpf/telltale.bpf.c` and `include/telltale_abi.h`;
//! build.rs compiles it with clang. Loading and attaching is the sidecar's
//! job (aya); this crate has no I/O.

pub mod abi;
pub mod decode;

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

static OBJECT_ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/telltale.bpf.o")));

/// The eBPF object file (ELF, 8-byte aligned as the loader needs).
pub fn object() -> &'static [u8] {
    &OBJECT_ALIGNED.0
}

/// Names of the programs in [`object`], by the hook they attach to.
pub mod programs {
    /// `tp_btf` programs: (program name, BTF tracepoint).
    pub const BTF_TRACEPOINTS: &[(&str, &str)] = &[
        ("tt_exec", "sched_process_exec"),
        ("tt_fork", "sched_process_fork"),
        ("tt_exit", "sched_process_exit"),
        ("tt_sys_exit", "sys_exit"),
        ("tt_io_uring_create", "io_uring_create"),
        ("tt_io_uring_submit", "io_uring_submit_req"),
    ];
    /// `cgroup/connect*`, `cgroup/sendmsg*` programs.
    pub const SOCK_ADDR: &[&str] = &["tt_connect4", "tt_connect6", "tt_sendmsg4", "tt_sendmsg6"];
    /// `cgroup_skb/egress` program (DNS).
    pub const SKB_EGRESS: &str = "tt_egress";
}

/// Names of the maps in [`object`].
pub mod maps {
    /// Ring buffer of records.
    pub const EVENTS: &str = "events";
    /// Array of [`crate::abi::Scope`].
    pub const SCOPES: &str = "scopes";
    /// Per-CPU u64 counters, see `abi::CNT_*`.
    pub const COUNTERS: &str = "counters";
    /// Dedup keys user space judged known: u64 -> u8, never evicted.
    pub const KNOWN: &str = "known";
}

/// Names of the read-only globals set before load.
pub mod globals {
    /// u32: the tgid of telltale itself (never reported).
    pub const SELF_TGID: &str = "self_tgid";
    /// u32: 0 disables the dedup LRU.
    pub const DEDUP_ENABLED: &str = "dedup_enabled";
}
