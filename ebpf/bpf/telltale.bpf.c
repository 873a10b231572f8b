// SPDX-License-Identifier: GPL-2.0-only
/*
 * Telltale sensors, the node set: exec, file open, DNS and connect events of
 * the tasks in the watched cgroup subtrees, with in-kernel dedup of repeated
 * behaviour. One copy per node, pinned in bpffs and shared by every sidecar:
 * a task's scope (hash by watched ancestor cgroup) names the pod, and the
 * pod's own maps (its slot in the pod_* map-in-maps) receive its records,
 * dedup keys, lineages and counters. See telltale_pod.bpf.c for those maps.
 *
 * Only hooks that work without fentry/LSM/kprobes are used (see
 * shared/ENVIRONMENT.md): tp_btf sched_process_{exec,fork,exit}, tp_btf
 * sys_exit for opens, io_uring tracepoints, cgroup_skb/egress for DNS,
 * cgroup/connect* and cgroup/sendmsg* for endpoints (attached per pod).
 */
#define __TELLTALE_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "telltale_abi.h"
#include "telltale_pod_maps.h"

char LICENSE[] SEC("license") = "GPL";

#define TT_WALK_DEPTH 64
#define TT_NAME_MASK 255
#define O_TRUNC_FLAG 01000
#define O_PATH_FLAG 010000000
#define FMODE_READ_BIT 0x1
#define FMODE_WRITE_BIT 0x2
#define FMODE_CREATED_BIT 0x100000
#define ETH_P_IP_BE 0x0008
#define ETH_P_IPV6_BE 0xDD86
#define DNS_PORT 53

/* cgroup id of a watched subtree -> the pod (slot) watching it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TT_MAX_PODS * TT_MAX_SCOPES);
	__type(key, __u64);
	__type(value, struct tt_scope);
} scopes SEC(".maps");

/* The depths scopes are at (key 0). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_node_state);
} node SEC(".maps");

/*
 * The last task cgroup judged on this CPU and the verdict, valid while the
 * node's generation is unchanged: a task's scope depends only on its cgroup,
 * and most syscalls on a CPU come from the cgroup of the one before, so this
 * saves the per-depth helper calls and hash lookups on the hot path (opens),
 * in scope or not.
 */
struct scope_cache {
	__u64 cgroup_id;
	__u32 generation;
	__u32 in_scope;
	__u32 slot;
	__u32 flags;
	__u32 self_tgid;
	__u32 valid;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scope_cache);
} scope_caches SEC(".maps");

/* slot -> registration (user space only). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__type(value, struct tt_registration);
} registry SEC(".maps");

/* Each pod's own maps, by slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__array(values, struct tt_pod_events);
} pod_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__array(values, struct tt_pod_seen);
} pod_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__array(values, struct tt_pod_known);
} pod_known SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__array(values, struct tt_pod_lineages);
} pod_lineages SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__array(values, struct tt_pod_counters);
} pod_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, TT_MAX_PODS);
	__type(key, __u32);
	__array(values, struct tt_pod_cgroup_lost);
} pod_cgroup_lost SEC(".maps");

/* Path walk scratch: the path is built backwards ending at TT_PATH_MAX. */
struct walk_buf {
	__u8 buf[TT_PATH_MAX * 2];
	__u32 pos;
	__u32 truncated;
	__u64 key;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_buf);
} walk_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_exec_event);
} exec_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_file_event);
} file_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tt_dns_event);
} dns_scratch SEC(".maps");

static __always_inline __u64 mix(__u64 h, __u64 v)
{
	h ^= v;
	h *= 0x100000001b3ULL;
	h ^= h >> 29;
	return h;
}

/* The pod a task belongs to: what a watched scope says, copied. */
struct pod {
	__u32 slot;
	__u32 flags;
};

static __always_inline void count(const struct pod *p, __u32 what, __u32 kind)
{
	__u32 slot = p->slot;
	void *counters = bpf_map_lookup_elem(&pod_counters, &slot);
	if (!counters)
		return;
	__u32 idx = what * TT_KIND_SLOTS + kind;
	__u64 *v = bpf_map_lookup_elem(counters, &idx);
	if (v)
		*v += 1;
}

/*
 * Is the current task (or, with `skb`, the packet's socket) inside a watched
 * cgroup subtree, and whose? One hash lookup per depth scopes are registered
 * at, deepest first. `self` gets the watching sidecar's own pid.
 */
static __always_inline bool scope_lookup(const struct tt_node_state *n, struct pod *p, struct __sk_buff *skb,
					 __u32 *self)
{
	__u32 nlevels = n->nlevels;
	for (__u32 i = 0; i < TT_MAX_LEVELS; i++) {
		if (i >= nlevels)
			break;
		__u32 level = n->levels[i];
		__u64 id = skb ? bpf_skb_ancestor_cgroup_id(skb, level) : bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			continue;
		struct tt_scope *s = bpf_map_lookup_elem(&scopes, &id);
		if (!s)
			continue;
		p->slot = s->slot;
		p->flags = s->flags;
		*self = s->self_tgid;
		return true;
	}
	return false;
}

/* scope_lookup() and never the sidecar's own process. */
static __always_inline bool scope_of(struct pod *p, struct __sk_buff *skb)
{
	__u32 zero = 0, self = 0;
	struct tt_node_state *n = bpf_map_lookup_elem(&node, &zero);
	if (!n || !scope_lookup(n, p, skb, &self))
		return false;
	return !(self && self == (__u32)(bpf_get_current_pid_tgid() >> 32));
}

/* scope_of() for the current task, through this CPU's cache. */
static __always_inline bool in_scope(struct pod *p)
{
	__u32 zero = 0;
	struct tt_node_state *n = bpf_map_lookup_elem(&node, &zero);
	struct scope_cache *c = bpf_map_lookup_elem(&scope_caches, &zero);
	if (!n || !c)
		return false;
	__u32 generation = n->generation;
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	if (!(c->valid && c->generation == generation && c->cgroup_id == cgroup_id)) {
		/* The generation is read first: a change racing with this lookup
		 * leaves an entry tagged with the old one, judged again next time. */
		struct pod found = {};
		__u32 self = 0;
		c->in_scope = scope_lookup(n, &found, NULL, &self);
		c->slot = found.slot;
		c->flags = found.flags;
		c->self_tgid = self;
		c->cgroup_id = cgroup_id;
		c->generation = generation;
		c->valid = 1;
	}
	if (!c->in_scope)
		return false;
	if (c->self_tgid && c->self_tgid == (__u32)(bpf_get_current_pid_tgid() >> 32))
		return false;
	p->slot = c->slot;
	p->flags = c->flags;
	return true;
}

static __always_inline __u64 lineage_of(const struct pod *p, __u32 tgid)
{
	__u32 slot = p->slot;
	void *lineages = bpf_map_lookup_elem(&pod_lineages, &slot);
	if (!lineages)
		return 0;
	__u64 *l = bpf_map_lookup_elem(lineages, &tgid);
	return l ? *l : 0;
}

static __always_inline void set_lineage(const struct pod *p, __u32 tgid, __u64 lineage)
{
	__u32 slot = p->slot;
	void *lineages = bpf_map_lookup_elem(&pod_lineages, &slot);
	if (lineages)
		bpf_map_update_elem(lineages, &tgid, &lineage, BPF_ANY);
}

/* Dedup: true if this key was reported before or is known (and counts it). */
static __always_inline bool seen_before(const struct pod *p, __u64 key, __u32 kind)
{
	if (p->flags & TT_SCOPE_NO_DEDUP)
		return false;
	__u32 slot = p->slot;
	void *known = bpf_map_lookup_elem(&pod_known, &slot);
	if (known && bpf_map_lookup_elem(known, &key)) {
		count(p, TT_CNT_KNOWN, kind);
		return true;
	}
	void *seen = bpf_map_lookup_elem(&pod_seen, &slot);
	if (seen && bpf_map_lookup_elem(seen, &key)) {
		count(p, TT_CNT_DEDUP, kind);
		return true;
	}
	return false;
}

static __always_inline void mark_seen(const struct pod *p, __u64 key)
{
	if (p->flags & TT_SCOPE_NO_DEDUP)
		return;
	__u32 slot = p->slot;
	void *seen = bpf_map_lookup_elem(&pod_seen, &slot);
	__u8 one = 1;
	if (seen)
		bpf_map_update_elem(seen, &key, &one, BPF_ANY);
}

/* A record the pod's ring buffer had no room for: whose it was. */
static __always_inline void count_lost(const struct pod *p, __u64 cgroup_id, __u32 kind)
{
	count(p, TT_CNT_LOST, kind);
	__u32 slot = p->slot;
	void *lost = bpf_map_lookup_elem(&pod_cgroup_lost, &slot);
	if (!lost)
		return;
	struct tt_cgroup_lost *c = bpf_map_lookup_elem(lost, &cgroup_id);
	if (!c) {
		struct tt_cgroup_lost zero = {};
		bpf_map_update_elem(lost, &cgroup_id, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(lost, &cgroup_id);
		if (!c)
			return;
	}
	__sync_fetch_and_add(&c->lost[kind & (TT_KIND_SLOTS - 1)], 1);
}

static __always_inline void fill_header(struct tt_event_header *h, __u16 kind, __u64 lineage)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	h->kind = kind;
	h->abi_version = TT_ABI_VERSION;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->lineage = lineage;
	h->dedup_key = 0;
	h->pid = (__u32)pid_tgid;
	h->tgid = pid_tgid >> 32;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->flags = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Emit a record of `size` bytes from scratch memory to the pod; count it. */
static __always_inline void emit(const struct pod *p, void *rec, __u64 size, __u32 kind, __u64 key)
{
	struct tt_event_header *h = rec;
	h->size = size;
	h->dedup_key = key;
	__u32 slot = p->slot;
	void *events = bpf_map_lookup_elem(&pod_events, &slot);
	if (!events || bpf_ringbuf_output(events, rec, size, 0) < 0) {
		count_lost(p, h->cgroup_id, kind);
		return;
	}
	count(p, TT_CNT_EMITTED, kind);
	if (h->flags & (TT_FLAG_PATH_TRUNCATED | TT_FLAG_ARGS_TRUNCATED | TT_FLAG_PAYLOAD_TRUNCATED))
		count(p, TT_CNT_TRUNCATED, kind);
	/* Only what reached user space is deduplicated from now on. */
	if (key)
		mark_seen(p, key);
}

/*
 * Resolve `path` to an absolute path (relative to the task's root) into
 * w->buf[w->pos .. TT_PATH_MAX), following mount points up to the root.
 * w->key gets a hash of the dentries walked (identity of the file).
 * Returns the length of the path. A global (separately verified) function:
 * the kernel pointer is a plain number to the verifier.
 */
__noinline __u32 walk_path(__u64 path_ptr, struct walk_buf *w)
{
	const struct path *path = (const struct path *)path_ptr;
	if (!w)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	struct dentry *dentry = BPF_CORE_READ(path, dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	bool done = false;

	w->pos = TT_PATH_MAX;
	w->truncated = 0;
	w->key = 0xcbf29ce484222325ULL;

	for (int i = 0; i < TT_WALK_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			done = true;
			break;
		}
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
		if (dentry == mnt_root || dentry == parent) {
			struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
			if (dentry != mnt_root || mnt == mnt_parent) {
				/* The global root, or outside the task's root. */
				done = true;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			vfsmnt = (struct vfsmount *)__builtin_preserve_access_index(&mnt->mnt);
			w->key = mix(w->key, (__u64)mnt);
			continue;
		}
		struct qstr name;
		bpf_core_read(&name, sizeof(name), &dentry->d_name);
		__u32 len = name.len & TT_NAME_MASK;
		__u32 pos = w->pos;
		if (len + 1 >= pos) {
			w->truncated = 1;
			break;
		}
		pos -= len;
		bpf_probe_read_kernel(&w->buf[pos & (TT_PATH_MAX - 1)], len, name.name);
		pos -= 1;
		w->buf[pos & (TT_PATH_MAX - 1)] = '/';
		w->pos = pos;
		w->key = mix(w->key, (__u64)dentry ^ name.hash_len);
		dentry = parent;
	}
	if (!done)
		w->truncated = 1;
	if (w->pos == TT_PATH_MAX) {
		w->pos = TT_PATH_MAX - 1;
		w->buf[TT_PATH_MAX - 1] = '/';
	}
	return TT_PATH_MAX - w->pos;
}

static __always_inline struct walk_buf *walk_buf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&walk_scratch, &zero);
}

/* Copy the walked path (len < TT_PATH_MAX) to dst. */
static __always_inline void copy_walked(__u8 *dst, struct walk_buf *w, __u32 len)
{
	bpf_probe_read_kernel(dst, len & (TT_PATH_MAX - 1), &w->buf[w->pos & (TT_PATH_MAX - 1)]);
}

/* ---------------------------------------------------------------- exec */

/* Hash data[off .. off+len) of an exec record in 8-byte words. */
__noinline __u64 hash_bytes(struct tt_exec_event *e, __u32 off, __u32 len, __u64 h)
{
	if (!e)
		return h;
	for (__u32 i = 0; i < TT_PATH_MAX / 8; i++) {
		if (i * 8 >= len)
			break;
		__u64 word = 0;
		bpf_probe_read_kernel(&word, sizeof(word), &e->data[(off + i * 8) & (TT_PATH_MAX * 2 - 1)]);
		__u32 rem = len - i * 8;
		if (rem < 8)
			word &= (1ULL << (rem * 8)) - 1;
		h = mix(h, word);
	}
	return h;
}

/*
 * A file no mount reaches: its dentry is its own parent without being a
 * mount's root (a memfd, or another file made with alloc_file_pseudo). The
 * path walk would end at once and say "/"; its dentry name ("memfd:<name>")
 * is what identifies it.
 */
static __always_inline bool is_detached(struct file *file)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *m = BPF_CORE_READ(file, f_path.mnt);
	return d && d == BPF_CORE_READ(d, d_parent) && d != BPF_CORE_READ(m, mnt_root);
}

/* Seed of the identity of a fileless program: never that of a path walk. */
#define TT_FILELESS_SEED 0x6d656d66642d6578ULL

/* Copy the dentry name of `file` (at most TT_NAME_MASK bytes) to dst. */
static __always_inline __u32 copy_dentry_name(__u8 *dst, struct file *file)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct qstr name;
	bpf_core_read(&name, sizeof(name), &d->d_name);
	__u32 len = name.len & TT_NAME_MASK;
	if (bpf_probe_read_kernel(dst, len, name.name) < 0)
		return 0;
	return len;
}

/*
 * N of "/dev/fd/N", the name the kernel gives the file of
 * execveat(fd, "", AT_EMPTY_PATH) (fexecve), read from data[off .. off+len);
 * -1 for any other name. For a #! script that file is still open at fd N
 * when the new program starts (a close-on-exec one cannot run a script).
 */
static __always_inline long dev_fd_number(struct tt_exec_event *e, __u32 off, __u32 len)
{
	const char prefix[] = "/dev/fd/";
	if (len < 9 || len > 16)
		return -1;
	for (__u32 i = 0; i < 8; i++)
		if (e->data[(off + i) & (TT_PATH_MAX * 2 - 1)] != prefix[i])
			return -1;
	long n = 0;
	for (__u32 i = 8; i < 16; i++) {
		if (i >= len)
			break;
		__u8 c = e->data[(off + i) & (TT_PATH_MAX * 2 - 1)];
		if (c < '0' || c > '9')
			return -1;
		n = n * 10 + (c - '0');
	}
	return n;
}

/* The file at descriptor `fd` of the current task, or NULL. */
static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	if (fd < 0 || fd >= fdt->max_fds)
		return NULL;
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd & 0xffffff]);
	return file;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tt_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct pod p;
	if (!in_scope(&p))
		return 0;
	__u32 zero = 0;
	struct tt_exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	struct walk_buf *w = walk_buf();
	if (!e || !w)
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 parent_lineage = lineage_of(&p, tgid);
	fill_header(&e->hdr, TT_EVENT_EXEC, 0);
	e->parent_lineage = parent_lineage;
	e->script_len = 0;
	e->cwd_len = 0;
	e->argc = 0;
	e->pad = 0;

	/* The binary that runs: for scripts, the interpreter. */
	struct file *file = BPF_CORE_READ(bprm, file);
	__u32 len;
	__u64 exe_key;
	if (is_detached(file)) {
		/* fexecve of a memfd: its name, hashed apart from any path. */
		len = copy_dentry_name(e->data, file);
		e->hdr.flags |= TT_FLAG_FILELESS;
		exe_key = hash_bytes(e, 0, len, mix(0xcbf29ce484222325ULL, TT_FILELESS_SEED));
	} else {
		len = walk_path((__u64)__builtin_preserve_access_index(&file->f_path), w);
		copy_walked(e->data, w, len);
		if (w->truncated)
			e->hdr.flags |= TT_FLAG_PATH_TRUNCATED;
		exe_key = w->key;
	}
	e->path_len = len;
	__u32 off = len & (TT_PATH_MAX - 1);

	/* #! scripts (and binfmt_misc): keep the script path as passed. */
	const char *filename = BPF_CORE_READ(bprm, filename);
	const char *interp = BPF_CORE_READ(bprm, interp);
	if (filename != interp) {
		e->hdr.flags |= TT_FLAG_SCRIPT;
		long n = bpf_probe_read_kernel_str(&e->data[off], TT_PATH_MAX, filename);
		if (n > 1) {
			__u32 slen = (n - 1) & (TT_PATH_MAX - 1);
			struct file *sf = fd_file(dev_fd_number(e, off, slen));
			if (sf && is_detached(sf)) {
				/* A script in a memfd: "/dev/fd/N" says nothing; its name. */
				e->hdr.flags |= TT_FLAG_SCRIPT_FILELESS;
				slen = copy_dentry_name(&e->data[off], sf);
				e->script_len = slen;
				exe_key = hash_bytes(e, off, slen, mix(exe_key, TT_FILELESS_SEED));
				off = (off + slen) & (TT_PATH_MAX * 4 - 1);
			} else if (e->data[off & (TT_PATH_MAX * 2 - 1)] != '/') {
				e->script_len = slen;
				exe_key = hash_bytes(e, off, slen, exe_key);
				e->hdr.flags |= TT_FLAG_PATH_RELATIVE;
				off = (off + slen) & (TT_PATH_MAX * 2 - 1);
				struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
				struct fs_struct *fs = BPF_CORE_READ(cur, fs);
				__u32 clen = walk_path((__u64)__builtin_preserve_access_index(&fs->pwd), w);
				bpf_probe_read_kernel(&e->data[off], clen & (TT_PATH_MAX - 1),
						      &w->buf[w->pos & (TT_PATH_MAX - 1)]);
				e->cwd_len = clen;
				exe_key = mix(exe_key, w->key);
				off = (off + clen) & (TT_PATH_MAX * 4 - 1);
			} else {
				e->script_len = slen;
				exe_key = hash_bytes(e, off, slen, exe_key);
				off = (off + slen) & (TT_PATH_MAX * 4 - 1);
			}
		}
	}

	/* argv of the new program. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u64 alen = arg_end - arg_start;
	if (alen > TT_ARGS_MAX) {
		alen = TT_ARGS_MAX;
		e->hdr.flags |= TT_FLAG_ARGS_TRUNCATED;
	}
	off &= (TT_PATH_MAX * 4 - 1);
	alen &= (TT_ARGS_MAX * 2 - 1);
	if (alen > TT_ARGS_MAX)
		alen = TT_ARGS_MAX;
	if (bpf_probe_read_user(&e->data[off], alen, (void *)arg_start) == 0)
		e->args_len = alen;
	else
		e->args_len = 0;

	__u64 lineage = mix(parent_lineage, exe_key);
	e->hdr.lineage = lineage;
	set_lineage(&p, tgid, lineage);

	__u64 size = offsetof(struct tt_exec_event, data) + off + e->args_len;
	if (size > sizeof(*e))
		return 0;
	/* Every successful exec is reported: no dedup key. */
	emit(&p, e, size, TT_EVENT_EXEC, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tt_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads share the process entry; new processes inherit the lineage. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	struct pod p;
	if (!in_scope(&p))
		return 0;
	__u32 slot = p.slot;
	void *lineages = bpf_map_lookup_elem(&pod_lineages, &slot);
	if (!lineages)
		return 0;
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u64 *l = bpf_map_lookup_elem(lineages, &ptgid);
	if (l) {
		__u64 v = *l;
		bpf_map_update_elem(lineages, &ctgid, &v, BPF_ANY);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tt_exit, struct task_struct *task)
{
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	struct pod p;
	if (!in_scope(&p))
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 slot = p.slot;
	void *lineages = bpf_map_lookup_elem(&pod_lineages, &slot);
	__u64 *l = lineages ? bpf_map_lookup_elem(lineages, &tgid) : NULL;
	struct tt_exit_event e = {};
	fill_header(&e.hdr, TT_EVENT_EXIT, l ? *l : 0);
	e.exit_code = BPF_CORE_READ(task, exit_code);
	if (l && lineages)
		bpf_map_delete_elem(lineages, &tgid);
	emit(&p, &e, sizeof(e), TT_EVENT_EXIT, 0);
	return 0;
}

/* ---------------------------------------------------------------- files */

/*
 * One BTF tracepoint on sys_exit handles every open flavour: the syscall
 * number and arguments come from the saved user registers, so no sys_enter
 * program (and no per-thread map) is needed. tp_btf avoids the cost of
 * building trace records that tp/syscalls programs pay, and reads kernel
 * structs with plain loads instead of probe-read helper calls.
 */
#if defined(__TARGET_ARCH_x86)
#define TT_NR_OPEN 2
#define TT_NR_CREAT 85
#define TT_NR_OPENAT 257
#define TT_NR_OPEN_BY_HANDLE_AT 304
#define TT_NR_OPENAT2 437
/*
 * 32-bit calls (int 0x80, sysenter from a compat task) use the i386 table:
 * the same number means another call there (295 is preadv on x86_64,
 * openat on i386), so the task's TS_COMPAT status picks the table. Their
 * arguments arrive in bx, cx, dx.
 */
#define TT_NR32_OPEN 5
#define TT_NR32_CREAT 8
#define TT_NR32_OPENAT 295
#define TT_NR32_OPEN_BY_HANDLE_AT 342
#define TT_NR32_OPENAT2 437
#define TT_TS_COMPAT 0x0002
#define TT_SYSCALL_NR(regs) ((regs)->orig_ax)
#define TT_SYSCALL_ARG2(regs) ((regs)->si)
#define TT_SYSCALL_ARG3(regs) ((regs)->dx)
#define TT_SYSCALL32_ARG1(regs) ((regs)->bx)
#define TT_SYSCALL32_ARG2(regs) ((regs)->cx)
#define TT_SYSCALL32_ARG3(regs) ((regs)->dx)
#elif defined(__TARGET_ARCH_arm64)
#define TT_NR_OPEN -1
#define TT_NR_CREAT -1
#define TT_NR_OPENAT 56
#define TT_NR_OPEN_BY_HANDLE_AT 265
#define TT_NR_OPENAT2 437
#define TT_SYSCALL_NR(regs) ((regs)->syscallno)
#define TT_SYSCALL_ARG2(regs) ((regs)->regs[1])
#define TT_SYSCALL_ARG3(regs) ((regs)->regs[2])
#else
#error "unsupported architecture"
#endif

static __always_inline int on_open_exit(const struct pod *p, long ret, __u32 flags)
{
	if (ret < 0 || (flags & O_PATH_FLAG))
		return 0;

	/* task is a BTF pointer: plain (fault-safe) loads, no helper calls. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct file **fds = task->files->fdt->fd;
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[ret & 0xffffff]);
	if (!file)
		return 0;
	__u32 fmode = BPF_CORE_READ(file, f_mode);
	__u32 access = 0;
	if (fmode & FMODE_READ_BIT)
		access |= TT_ACCESS_READ;
	if (fmode & FMODE_WRITE_BIT)
		access |= TT_ACCESS_WRITE;
	if (fmode & FMODE_CREATED_BIT)
		access |= TT_ACCESS_CREATE;
	if ((flags & O_TRUNC_FLAG) && (fmode & FMODE_WRITE_BIT))
		access |= TT_ACCESS_TRUNCATE;

	/*
	 * Dedup key without walking the path: the file's dentry, its name hash,
	 * its parent and the mount identify the path (a rename changes the name
	 * hash or the parent; a bind mount changes the mount). Only a miss pays
	 * for the walk below.
	 */
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *mnt = BPF_CORE_READ(file, f_path.mnt);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	__u64 hash_len = BPF_CORE_READ(dentry, d_name.hash_len);
	__u32 tgid = task->tgid;
	__u64 lineage = lineage_of(p, tgid);
	__u64 key = mix(mix(mix(mix(mix(mix(mix(lineage, bpf_get_current_cgroup_id()), (__u64)dentry), (__u64)mnt),
					(__u64)parent),
				    hash_len),
				access),
			TT_EVENT_FILE);
	if (seen_before(p, key, TT_EVENT_FILE))
		return 0;

	struct walk_buf *w = walk_buf();
	if (!w)
		return 0;
	__u32 len = walk_path((__u64)__builtin_preserve_access_index(&file->f_path), w);

	__u32 zero = 0;
	struct tt_file_event *e = bpf_map_lookup_elem(&file_scratch, &zero);
	if (!e)
		return 0;
	fill_header(&e->hdr, TT_EVENT_FILE, lineage);
	if (w->truncated)
		e->hdr.flags |= TT_FLAG_PATH_TRUNCATED;
	e->access = access;
	e->fd = ret;
	e->pad = 0;
	e->path_len = len;
	copy_walked(e->path, w, len);
	emit(p, e, offsetof(struct tt_file_event, path) + (len & (TT_PATH_MAX - 1)), TT_EVENT_FILE, key);
	return 0;
}

#if defined(__TARGET_ARCH_x86)
/* The open flags of a 32-bit call, or -1 when it opens nothing. */
static __always_inline long compat_open_flags(struct pt_regs *regs, long nr)
{
	if (nr == TT_NR32_OPENAT || nr == TT_NR32_OPEN_BY_HANDLE_AT)
		return (__u32)TT_SYSCALL32_ARG3(regs);
	if (nr == TT_NR32_OPEN)
		return (__u32)TT_SYSCALL32_ARG2(regs);
	if (nr == TT_NR32_CREAT)
		return O_TRUNC_FLAG;
	if (nr == TT_NR32_OPENAT2) {
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)(__u64)(__u32)TT_SYSCALL32_ARG3(regs));
		return (__u32)how.flags;
	}
	return -1;
}
#endif

SEC("tp_btf/sys_exit")
int BPF_PROG(tt_sys_exit, struct pt_regs *regs, long ret)
{
	if (ret < 0)
		return 0;
	long nr = TT_SYSCALL_NR(regs);
	__u32 flags;
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->thread_info.status & TT_TS_COMPAT) {
		long f = compat_open_flags(regs, nr);
		if (f < 0)
			return 0;
		struct pod p;
		if (!in_scope(&p))
			return 0;
		return on_open_exit(&p, ret, (__u32)f);
	}
#endif
	if (nr == TT_NR_OPENAT || nr == TT_NR_OPEN_BY_HANDLE_AT) {
		/* open_by_handle_at(mount_fd, handle, flags): flags third, as openat. */
		flags = TT_SYSCALL_ARG3(regs);
	} else if (nr == TT_NR_OPEN) {
		flags = TT_SYSCALL_ARG2(regs);
	} else if (nr == TT_NR_CREAT) {
		flags = O_TRUNC_FLAG; /* creat() is open(O_CREAT|O_WRONLY|O_TRUNC) */
	} else if (nr == TT_NR_OPENAT2) {
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)TT_SYSCALL_ARG3(regs));
		flags = how.flags;
	} else {
		return 0;
	}
	struct pod p;
	if (!in_scope(&p))
		return 0;
	return on_open_exit(&p, ret, flags);
}

/* ---------------------------------------------------------------- io_uring */

/*
 * io_uring requests (IORING_OP_OPENAT, CONNECT, ...) run inside the kernel,
 * not as syscalls, so the sys_exit program never sees them. What can be
 * seen is that a process uses io_uring at all: a ring set up
 * (io_uring_create) or a request submitted (io_uring_submit_req, which also
 * covers rings inherited or passed in, and SQPOLL threads, which belong to
 * the process). One record per lineage, cgroup and mechanism: the dedup
 * key does not depend on the opcode, so the hot submission path costs one
 * scope check and one LRU lookup.
 */
static __always_inline int on_mechanism(__u32 mechanism, __u32 detail)
{
	struct pod p;
	if (!in_scope(&p))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 lineage = lineage_of(&p, tgid);
	__u64 key = mix(mix(mix(lineage, bpf_get_current_cgroup_id()), mechanism), TT_EVENT_MECHANISM);
	if (seen_before(&p, key, TT_EVENT_MECHANISM))
		return 0;
	struct tt_mechanism_event e = {};
	fill_header(&e.hdr, TT_EVENT_MECHANISM, lineage);
	e.mechanism = mechanism;
	e.detail = detail;
	emit(&p, &e, sizeof(e), TT_EVENT_MECHANISM, key);
	return 0;
}

SEC("tp_btf/io_uring_create")
int BPF_PROG(tt_io_uring_create, int fd, void *ring, __u32 sq_entries, __u32 cq_entries, __u32 flags)
{
	return on_mechanism(TT_MECH_IO_URING, 0xffffffff);
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(tt_io_uring_submit, struct io_kiocb *req)
{
	return on_mechanism(TT_MECH_IO_URING, BPF_CORE_READ(req, opcode));
}

/* ---------------------------------------------------------------- connect */

static __always_inline int on_sock_addr(struct bpf_sock_addr *ctx, __u8 family)
{
	struct pod p;
	if (!in_scope(&p))
		return 1;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 lineage = lineage_of(&p, tgid);
	struct tt_connect_event e = {};
	e.family = family;
	e.protocol = ctx->protocol;
	e.port = bpf_ntohs((__u16)ctx->user_port);
	if (family == TT_AF_INET) {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(e.addr, &a, 4);
	} else {
		__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2],
		      a3 = ctx->user_ip6[3];
		__builtin_memcpy(&e.addr[0], &a0, 4);
		__builtin_memcpy(&e.addr[4], &a1, 4);
		__builtin_memcpy(&e.addr[8], &a2, 4);
		__builtin_memcpy(&e.addr[12], &a3, 4);
	}
	__u64 a_lo, a_hi;
	__builtin_memcpy(&a_lo, &e.addr[0], 8);
	__builtin_memcpy(&a_hi, &e.addr[8], 8);
	__u64 key = mix(mix(mix(mix(mix(lineage, bpf_get_current_cgroup_id()), a_lo), a_hi),
			    ((__u64)e.family << 32) | ((__u64)e.protocol << 16) | e.port),
			TT_EVENT_CONNECT);
	if (seen_before(&p, key, TT_EVENT_CONNECT))
		return 1;
	fill_header(&e.hdr, TT_EVENT_CONNECT, lineage);
	emit(&p, &e, sizeof(e), TT_EVENT_CONNECT, key);
	return 1;
}

SEC("cgroup/connect4")
int tt_connect4(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, TT_AF_INET);
}

SEC("cgroup/connect6")
int tt_connect6(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, TT_AF_INET6);
}

SEC("cgroup/sendmsg4")
int tt_sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, TT_AF_INET);
}

SEC("cgroup/sendmsg6")
int tt_sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_sock_addr(ctx, TT_AF_INET6);
}

/* ---------------------------------------------------------------- dns */

/*
 * DNS over TCP: a message may span segments and a segment may hold several
 * messages, so the stream bytes are reported as they are (length prefixes
 * included, with their sequence number and the socket cookie) and user
 * space reassembles them. A segment longer than TT_DNS_MAX goes out in
 * TT_DNS_MAX chunks, at most TT_DNS_TCP_CHUNKS of them; the last one's
 * payload_len says how much was left out. SYN, FIN and RST are reported so
 * user space knows where a stream starts and ends. No dedup: a repeated
 * prefix or chunk is not a repeated query.
 */
static __always_inline int tcp_dns(const struct pod *p, struct __sk_buff *skb, struct tt_dns_event *e, __u32 l4)
{
	struct tcphdr tcp;
	if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)) < 0)
		return 1;
	if (tcp.dest != bpf_htons(DNS_PORT))
		return 1;
	__u32 off = l4 + tcp.doff * 4;
	__u32 len = skb->len > off ? skb->len - off : 0;
	__u8 flags = (tcp.fin ? TT_TCP_FIN : 0) | (tcp.syn ? TT_TCP_SYN : 0) | (tcp.rst ? TT_TCP_RST : 0);
	if (!len && !flags)
		return 1; /* a bare ACK */

	fill_header(&e->hdr, TT_EVENT_DNS, 0);
	e->hdr.lineage = lineage_of(p, e->hdr.tgid);
	e->hdr.cgroup_id = bpf_skb_cgroup_id(skb);
	e->protocol = TT_PROTO_TCP;
	e->dport = DNS_PORT;
	e->sock_cookie = bpf_get_socket_cookie(skb);
	e->tcp_flags = flags;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	/* A SYN takes one sequence number: its data (TCP Fast Open) follows. */
	__u32 seq = bpf_ntohl(tcp.seq) + (tcp.syn ? 1 : 0);

	for (__u32 i = 0; i < TT_DNS_TCP_CHUNKS; i++) {
		__u32 done = i * TT_DNS_MAX;
		if (i > 0 && done >= len)
			break;
		__u32 rest = len - done;
		__u64 n = rest;
		if (n > TT_DNS_MAX)
			n = TT_DNS_MAX;
		e->tcp_seq = seq + done;
		e->hdr.flags = 0;
		if (i == TT_DNS_TCP_CHUNKS - 1 && rest > TT_DNS_MAX) {
			/* The last chunk: the rest of the segment is left out. */
			e->payload_len = rest;
			e->hdr.flags = TT_FLAG_PAYLOAD_TRUNCATED;
		} else {
			e->payload_len = n;
		}
		asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(TT_DNS_MAX * 2 - 1));
		if (n > TT_DNS_MAX)
			return 1;
		if (n && bpf_skb_load_bytes(skb, off + done, e->payload, n) < 0)
			return 1;
		e->captured_len = n;
		emit(p, e, offsetof(struct tt_dns_event, payload) + n, TT_EVENT_DNS, 0);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int tt_egress(struct __sk_buff *skb)
{
	struct pod p;
	if (!scope_of(&p, skb))
		return 1;
	__u32 zero = 0;
	struct tt_dns_event *e = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!e)
		return 1;

	__u32 l4 = 0;
	__u8 proto = 0;
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (skb->protocol == ETH_P_IP_BE) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return 1;
		if (ip.frag_off & bpf_htons(0x1fff))
			return 1;
		proto = ip.protocol;
		l4 = (ip.ihl & 0xf) * 4;
		e->family = TT_AF_INET;
		__builtin_memcpy(e->daddr, &ip.daddr, 4);
	} else if (skb->protocol == ETH_P_IPV6_BE) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return 1;
		proto = ip6.nexthdr;
		l4 = sizeof(ip6);
		e->family = TT_AF_INET6;
		__builtin_memcpy(e->daddr, &ip6.daddr, 16);
	} else {
		return 1;
	}

	if (proto == TT_PROTO_TCP)
		return tcp_dns(&p, skb, e, l4);
	if (proto != TT_PROTO_UDP)
		return 1;
	struct udphdr udp;
	if (bpf_skb_load_bytes(skb, l4, &udp, sizeof(udp)) < 0)
		return 1;
	if (udp.dest != bpf_htons(DNS_PORT))
		return 1;
	__u32 payload_off = l4 + sizeof(udp);
	if (skb->len <= payload_off)
		return 1;
	__u32 payload_len = skb->len - payload_off;

	fill_header(&e->hdr, TT_EVENT_DNS, 0);
	__u32 tgid = e->hdr.tgid;
	e->hdr.lineage = lineage_of(&p, tgid);
	e->hdr.cgroup_id = bpf_skb_cgroup_id(skb);
	e->protocol = proto;
	e->dport = DNS_PORT;
	e->payload_len = payload_len;
	e->tcp_seq = 0;
	e->sock_cookie = 0;
	e->tcp_flags = 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	__u64 n = payload_len;
	if (n > TT_DNS_MAX) {
		n = TT_DNS_MAX;
		e->hdr.flags |= TT_FLAG_PAYLOAD_TRUNCATED;
	}
	/* Bound n for the verifier in a way clang cannot reorder. */
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(TT_DNS_MAX * 2 - 1));
	if (n == 0 || n > TT_DNS_MAX)
		return 1;
	if (bpf_skb_load_bytes(skb, payload_off, e->payload, n) < 0)
		return 1;
	e->captured_len = n;

	/* Dedup on the message without its 16-bit id. */
	__u64 key = mix(mix(mix(e->hdr.lineage, e->hdr.cgroup_id), proto), TT_EVENT_DNS);
	for (__u32 i = 0; i < TT_DNS_MAX / 8; i++) {
		if (i * 8 >= n)
			break;
		__u64 word;
		__builtin_memcpy(&word, &e->payload[(i * 8) & (TT_DNS_MAX - 1)], 8);
		__u32 rem = n - i * 8;
		if (rem < 8)
			word &= (1ULL << (rem * 8)) - 1;
		if (i == 0)
			word &= ~0xffffULL;
		key = mix(key, word);
	}
	if (seen_before(&p, key, TT_EVENT_DNS))
		return 1;
	emit(&p, e, offsetof(struct tt_dns_event, payload) + n, TT_EVENT_DNS, key);
	return 1;
}
