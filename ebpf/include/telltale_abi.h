/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * telltale_abi.h: the single source of truth for everything that crosses the
 * kernel <-> user-space boundary: ring-buffer records, map keys and values,
 * counter indexes.
 *
 * Rules:
 *  - fixed-width fields only, explicit padding, every struct size asserted;
 *  - the event kind enum and the counter enum are append-only;
 *  - bump TT_ABI_VERSION on any layout change. The Rust mirror in
 *    ebpf/src/abi.rs is checked against this header by a test.
 */
#ifndef TELLTALE_ABI_H
#define TELLTALE_ABI_H

#ifdef __TELLTALE_BPF__
/* eBPF side: fixed-width types come from vmlinux.h. */
#else
#include <linux/types.h>
#endif

#define TT_ABI_VERSION 3

/* Bounds of the variable-size parts of events. Powers of two (masks). */
#define TT_PATH_MAX 4096
#define TT_ARGS_MAX 4096
#define TT_DNS_MAX 512
#define TT_COMM_LEN 16
/* How many watched cgroup subtrees one pod (one sidecar) can register. */
#define TT_MAX_SCOPES 8
/* How many pods (sidecars) one node set of programs serves. */
#define TT_MAX_PODS 512
/* How many distinct cgroup depths the registered scopes can be at. */
#define TT_MAX_LEVELS 8

/* Event kinds (append-only). */
enum tt_event_kind {
	TT_EVENT_EXEC = 1,
	TT_EVENT_FILE = 2,
	TT_EVENT_DNS = 3,
	TT_EVENT_CONNECT = 4,
	TT_EVENT_EXIT = 5,
	TT_EVENT_MECHANISM = 6,
};

/* tt_mechanism_event.mechanism: a way to act the other sensors cannot see through. */
#define TT_MECH_IO_URING 1	/* io_uring: set up a ring or submitted a request */

/* tt_event_header.flags */
#define TT_FLAG_PATH_TRUNCATED (1u << 0)	/* a path hit TT_PATH_MAX or the walk depth */
#define TT_FLAG_ARGS_TRUNCATED (1u << 1)	/* argv longer than TT_ARGS_MAX */
#define TT_FLAG_SCRIPT (1u << 2)		/* exec of a #! script or binfmt_misc */
#define TT_FLAG_PAYLOAD_TRUNCATED (1u << 3)	/* DNS payload longer than TT_DNS_MAX */
#define TT_FLAG_PATH_RELATIVE (1u << 4)	/* exec script path is relative to cwd */
#define TT_FLAG_FILELESS (1u << 5)	/* exec of a file no mount reaches (memfd): path is its name */
#define TT_FLAG_SCRIPT_FILELESS (1u << 6)	/* the #! script is such a file: script is its name */

/* tt_dns_event.tcp_flags: the TCP header's flag bits */
#define TT_TCP_FIN (1u << 0)
#define TT_TCP_SYN (1u << 1)
#define TT_TCP_RST (1u << 2)

/* tt_file_event.access bits */
#define TT_ACCESS_READ (1u << 0)
#define TT_ACCESS_WRITE (1u << 1)
#define TT_ACCESS_CREATE (1u << 2)
#define TT_ACCESS_TRUNCATE (1u << 3)

/* Address families and protocols, as in the kernel (AF_INET, IPPROTO_TCP...). */
#define TT_AF_INET 2
#define TT_AF_INET6 10
#define TT_PROTO_TCP 6
#define TT_PROTO_UDP 17

/* Common header of every ring-buffer record. 80 bytes. */
struct tt_event_header {
	__u16 kind;		/* enum tt_event_kind */
	__u16 abi_version;	/* TT_ABI_VERSION */
	__u32 size;		/* bytes of the whole record, header included */
	__u64 ktime_ns;		/* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;	/* cgroup v2 id (inode) of the task */
	__u64 lineage;		/* hash of the executable chain of the process */
	__u64 dedup_key;	/* the in-kernel dedup key of this behaviour (0: none) */
	__u32 pid;		/* thread id */
	__u32 tgid;		/* process id */
	__u32 ppid;		/* parent process id (real_parent->tgid) */
	__u32 uid;
	__u32 gid;
	__u32 flags;		/* TT_FLAG_* */
	char comm[TT_COMM_LEN];
};

/*
 * A successful exec. data[] holds path_len bytes of the absolute binary path
 * (the interpreter for scripts), then script_len bytes of the script path as
 * passed to execve (absolute, or relative to cwd: then cwd_len bytes of the
 * absolute cwd follow), then args_len bytes of NUL-separated argv.
 * With TT_FLAG_FILELESS the binary, with TT_FLAG_SCRIPT_FILELESS the script,
 * is a file no mount reaches (a memfd): instead of a path, its dentry name
 * ("memfd:<name>"), raw bytes, at most 255.
 */
struct tt_exec_event {
	struct tt_event_header hdr;
	__u64 parent_lineage;	/* lineage before this exec */
	__u16 path_len;
	__u16 script_len;
	__u16 cwd_len;
	__u16 args_len;
	__u32 argc;
	__u32 pad;
	__u8 data[TT_PATH_MAX * 4 + TT_ARGS_MAX];	/* slack: bounded offsets */
};

/* A successful open/openat/openat2/creat. */
struct tt_file_event {
	struct tt_event_header hdr;
	__u32 access;		/* TT_ACCESS_* */
	__u32 path_len;
	__s32 fd;
	__u32 pad;
	__u8 path[TT_PATH_MAX];
};

/*
 * An outgoing DNS packet (UDP or TCP, port 53).
 * UDP: payload is the DNS message, one record per datagram, deduplicated.
 * TCP: payload is raw stream bytes (length prefixes included) starting at
 * sequence number tcp_seq; a segment longer than TT_DNS_MAX comes as several
 * records (consecutive tcp_seq), at most TT_DNS_TCP_CHUNKS of them. User
 * space reassembles the stream per sock_cookie. Never deduplicated; SYN,
 * FIN and RST segments are reported even without payload.
 */
struct tt_dns_event {
	struct tt_event_header hdr;
	__u8 family;		/* TT_AF_* */
	__u8 protocol;		/* TT_PROTO_* */
	__u16 dport;		/* host byte order */
	__u32 payload_len;	/* UDP: DNS message bytes; TCP: segment bytes from tcp_seq on */
	__u32 captured_len;	/* bytes in payload[] */
	__u32 tcp_seq;		/* TCP: sequence number of payload[0] (host order) */
	__u8 daddr[16];		/* IPv4 in the first 4 bytes */
	__u64 sock_cookie;	/* TCP: the socket's cookie, the stream's identity */
	__u8 tcp_flags;		/* TCP: TT_TCP_* */
	__u8 pad[7];
	__u8 payload[TT_DNS_MAX];
};

/* Most records one TCP segment to port 53 is reported in. */
#define TT_DNS_TCP_CHUNKS 16

/* An outbound connect (TCP, connected UDP) or unconnected UDP send. */
struct tt_connect_event {
	struct tt_event_header hdr;
	__u8 family;		/* TT_AF_* */
	__u8 protocol;		/* TT_PROTO_* */
	__u16 port;		/* host byte order */
	__u32 pad;
	__u8 addr[16];		/* IPv4 in the first 4 bytes */
};

/* A process (thread-group leader) exited. */
struct tt_exit_event {
	struct tt_event_header hdr;
	__u32 exit_code;	/* task->exit_code (wait status) */
	__u32 pad;
};

/*
 * A process used a mechanism whose operations the other sensors cannot
 * resolve (io_uring requests run in the kernel, not as syscalls): the use
 * itself is the behaviour. Deduplicated per lineage, cgroup and mechanism.
 */
struct tt_mechanism_event {
	struct tt_event_header hdr;
	__u32 mechanism;	/* TT_MECH_* */
	__u32 detail;		/* io_uring: opcode of the first request seen (IORING_OP_*), 0xffffffff for ring setup */
};

/*
 * The node set: one copy of the programs per node, pinned in bpffs, shared by
 * every sidecar on it. Each sidecar (pod) owns a slot: its own ring buffer,
 * dedup LRU, known set, lineages, counters and per-cgroup loss counts, held
 * in the pod_* map-in-maps at that slot.
 */

/* Map "scopes": hash, cgroup id of a watched subtree -> the pod watching it. */
struct tt_scope {
	__u32 slot;		/* the pod's index in the pod_* maps */
	__u32 level;		/* depth of that cgroup below the cgroup2 root */
	__u32 self_tgid;	/* the sidecar's own process (host pid): never reported */
	__u32 flags;		/* TT_SCOPE_* */
};

/* tt_scope.flags */
#define TT_SCOPE_NO_DEDUP (1u << 0)	/* every occurrence is emitted (telltale trace --all) */

/*
 * Map "node": one entry, key 0. The distinct depths of the registered scopes,
 * deepest first: a task's scope is found by one hash lookup per depth, and
 * the deepest watched ancestor wins.
 */
struct tt_node_state {
	__u32 nlevels;
	__u32 generation;	/* changes with every change of the scopes (invalidates per-CPU caches) */
	__u32 levels[TT_MAX_LEVELS];
};

/*
 * Map "registry": array, slot -> who holds it. Read and written by user
 * space only, under the node set's lock; a lease not renewed in time frees
 * the slot.
 */
struct tt_registration {
	__u64 owner;		/* random token of the sidecar holding the slot; 0: free */
	__u64 lease_ns;		/* CLOCK_BOOTTIME of its last renewal */
	__u64 since_ns;		/* CLOCK_BOOTTIME of its registration */
	__u32 host_tgid;	/* the sidecar's process, as the kernel numbers it */
	__u32 nscopes;		/* cgroups[0 .. nscopes) are its keys in "scopes" */
	__u64 cgroups[TT_MAX_SCOPES];
	char name[64];		/* who it is (pod name), for people reading the map */
};

/* Per-pod map "cgroup_lost": hash, cgroup id -> records lost per kind. */
struct tt_cgroup_lost {
	__u64 lost[8];		/* by enum tt_event_kind (TT_KIND_SLOTS) */
};

/* Per-CPU counters (append-only). Index = TT_CNT_<what> * TT_KIND_SLOTS + kind. */
#define TT_KIND_SLOTS 8
enum tt_counter {
	TT_CNT_EMITTED = 0,	/* records written to the ring buffer */
	TT_CNT_DEDUP = 1,	/* repeats dropped by the seen LRU */
	TT_CNT_LOST = 2,	/* records lost: ring buffer full */
	TT_CNT_TRUNCATED = 3,	/* records emitted with a truncated path/args/payload */
	TT_CNT_KNOWN = 4,	/* dropped: user space marked the behaviour known */
	TT_CNT_NR = 5,
};
#define TT_COUNTERS (TT_CNT_NR * TT_KIND_SLOTS)

_Static_assert(sizeof(struct tt_event_header) == 80, "tt_event_header size");
_Static_assert(sizeof(struct tt_exec_event) == 80 + 24 + TT_PATH_MAX * 4 + TT_ARGS_MAX, "tt_exec_event size");
_Static_assert(sizeof(struct tt_file_event) == 80 + 16 + TT_PATH_MAX, "tt_file_event size");
_Static_assert(sizeof(struct tt_dns_event) == 80 + 48 + TT_DNS_MAX, "tt_dns_event size");
_Static_assert(sizeof(struct tt_connect_event) == 80 + 24, "tt_connect_event size");
_Static_assert(sizeof(struct tt_exit_event) == 88, "tt_exit_event size");
_Static_assert(sizeof(struct tt_mechanism_event) == 88, "tt_mechanism_event size");
_Static_assert(sizeof(struct tt_scope) == 16, "tt_scope size");
_Static_assert(sizeof(struct tt_node_state) == 8 + 4 * TT_MAX_LEVELS, "tt_node_state size");
_Static_assert(sizeof(struct tt_registration) == 32 + 8 * TT_MAX_SCOPES + 64, "tt_registration size");
_Static_assert(sizeof(struct tt_cgroup_lost) == 8 * TT_KIND_SLOTS, "tt_cgroup_lost size");

#endif /* TELLTALE_ABI_H */
