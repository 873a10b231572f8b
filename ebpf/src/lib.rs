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

static NODE_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/telltale.bpf.o")));
static POD_OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/telltale_pod.bpf.o")));

/// The node set's eBPF object (ELF, 8-byte aligned as the loader needs):
/// the programs, loaded once per node and shared by every sidecar on it.
pub fn node_object() -> &'static [u8] {
    &NODE_OBJECT.0
}

/// The pod object: the maps one sidecar owns (ring buffer, dedup, known,
/// lineages, counters) and `tt_whoami`.
pub fn pod_object() -> &'static [u8] {
    &POD_OBJECT.0
}

/// Names of the programs in [`node_object`], by the hook they attach to.
pub mod programs {
    /// `tp_btf` programs: (program name, BTF tracepoint). Attached once per
    /// node; their links are pinned.
    pub const BTF_TRACEPOINTS: &[(&str, &str)] = &[
        ("tt_exec", "sched_process_exec"),
        ("tt_fork", "sched_process_fork"),
        ("tt_exit", "sched_process_exit"),
        ("tt_sys_exit", "sys_exit"),
        ("tt_io_uring_create", "io_uring_create"),
        ("tt_io_uring_submit", "io_uring_submit_req"),
    ];
    /// `cgroup/connect*`, `cgroup/sendmsg*` programs: loaded once per node,
    /// pinned, attached by each sidecar to its pod's cgroup.
    pub const SOCK_ADDR: &[&str] = &["tt_connect4", "tt_connect6", "tt_sendmsg4", "tt_sendmsg6"];
    /// `cgroup_skb/egress` program (DNS), like [`SOCK_ADDR`].
    pub const SKB_EGRESS: &str = "tt_egress";
    /// `raw_tp` program of [`crate::pod_object`], run with `BPF_PROG_TEST_RUN`:
    /// returns the caller's tgid as the kernel numbers it.
    pub const WHOAMI: &str = "tt_whoami";
}

/// Names of the maps in [`node_object`] (pinned) and [`pod_object`].
pub mod maps {
    /// Node: hash, watched cgroup id -> [`crate::abi::Scope`].
    pub const SCOPES: &str = "scopes";
    /// Node: one [`crate::abi::NodeState`].
    pub const NODE: &str = "node";
    /// Node: array, slot -> [`crate::abi::Registration`].
    pub const REGISTRY: &str = "registry";
    /// Node: map-in-maps, slot -> the pod's map of the same name without
    /// the `pod_` prefix, in this order: (outer, inner).
    pub const POD_MAPS: &[(&str, &str)] = &[
        ("pod_events", EVENTS),
        ("pod_seen", SEEN),
        ("pod_known", KNOWN),
        ("pod_lineages", LINEAGES),
        ("pod_counters", COUNTERS),
        ("pod_cgroup_lost", CGROUP_LOST),
    ];
    /// Pod: ring buffer of records.
    pub const EVENTS: &str = "events";
    /// Pod: dedup LRU of reported keys.
    pub const SEEN: &str = "seen";
    /// Pod: dedup keys user space judged known: u64 -> u8, never evicted.
    pub const KNOWN: &str = "known";
    /// Pod: tgid -> lineage.
    pub const LINEAGES: &str = "lineages";
    /// Pod: per-CPU u64 counters, see `abi::CNT_*`.
    pub const COUNTERS: &str = "counters";
    /// Pod: cgroup id -> [`crate::abi::CgroupLost`].
    pub const CGROUP_LOST: &str = "cgroup_lost";
}
