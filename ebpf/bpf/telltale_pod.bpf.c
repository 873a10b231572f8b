// SPDX-License-Identifier: GPL-2.0-only
/*
 * The maps of one pod: created by that pod's sidecar (so they are freed with
 * it and charged to it) and put in its slot of the node set's pod_* maps.
 * tt_whoami tells the sidecar its own process id as the kernel numbers it
 * (outside any pid namespace), so the node programs can leave it out.
 */
#define __TELLTALE_BPF__
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "telltale_abi.h"
#include "telltale_pod_maps.h"

char LICENSE[] SEC("license") = "GPL";

struct tt_pod_events events SEC(".maps");
struct tt_pod_seen seen SEC(".maps");
struct tt_pod_known known SEC(".maps");
struct tt_pod_lineages lineages SEC(".maps");
struct tt_pod_counters counters SEC(".maps");
struct tt_pod_cgroup_lost cgroup_lost SEC(".maps");

/* Run with BPF_PROG_TEST_RUN: returns the caller's tgid. */
SEC("raw_tp")
int tt_whoami(void *ctx)
{
	return bpf_get_current_pid_tgid() >> 32;
}
