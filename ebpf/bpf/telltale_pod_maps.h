/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The maps one pod (one sidecar) owns, as types: the pod object declares one
 * of each, the node object's pod_* map-in-maps use them as inner-map
 * templates. One definition, so an inner map always matches its outer map
 * (type, key and value sizes, flags).
 */
#ifndef TELLTALE_POD_MAPS_H
#define TELLTALE_POD_MAPS_H

#ifndef BPF_F_NO_PREALLOC
#define BPF_F_NO_PREALLOC (1U << 0)
#endif

/* Records for this pod's sidecar. Sized by the sidecar (set_max_entries). */
struct tt_pod_events {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
};

/* Dedup keys of behaviour already reported (evicted least recently used). */
struct tt_pod_seen {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
};

/*
 * Dedup keys user space judged already in the profile. Never evicted, so a
 * learned workload stays quiet; allocated as it fills.
 */
struct tt_pod_known {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, __u8);
};

/* tgid -> lineage hash (chain of executables), inherited on fork. */
struct tt_pod_lineages {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
};

/* Per-CPU counters, TT_CNT_<what> * TT_KIND_SLOTS + kind. */
struct tt_pod_counters {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TT_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
};

/*
 * cgroup id -> records lost per kind (struct tt_cgroup_lost): whose records
 * the full ring cost. value_size, not __type: as an inner-map template the
 * struct would only be a forward declaration in the object's BTF.
 */
struct tt_pod_cgroup_lost {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(struct tt_cgroup_lost));
};

#endif /* TELLTALE_POD_MAPS_H */
