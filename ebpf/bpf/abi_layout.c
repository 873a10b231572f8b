// SPDX-License-Identifier: Apache-2.0
/*
 * Host program run by build.rs: prints the layout of every ABI struct as
 * Rust source, so the Rust mirror (src/abi.rs) is tested against the header.
 */
#include <stddef.h>
#include <stdio.h>
#include "telltale_abi.h"

#define S(s) printf("    (\"%s\", \"\", 0, %zu),\n", #s, sizeof(struct s));
#define F(s, f) printf("    (\"%s\", \"%s\", %zu, %zu),\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f));

int main(void)
{
	printf("/// (struct, field, offset, size) as compiled from telltale_abi.h;\n");
	printf("/// field \"\" is the whole struct.\n");
	printf("pub const C_LAYOUT: &[(&str, &str, usize, usize)] = &[\n");
	S(tt_event_header)
	F(tt_event_header, kind) F(tt_event_header, abi_version) F(tt_event_header, size)
	F(tt_event_header, ktime_ns) F(tt_event_header, cgroup_id) F(tt_event_header, lineage)
	F(tt_event_header, dedup_key) F(tt_event_header, pid) F(tt_event_header, tgid)
	F(tt_event_header, ppid) F(tt_event_header, uid) F(tt_event_header, gid)
	F(tt_event_header, flags) F(tt_event_header, comm)
	S(tt_exec_event)
	F(tt_exec_event, hdr) F(tt_exec_event, parent_lineage) F(tt_exec_event, path_len)
	F(tt_exec_event, script_len) F(tt_exec_event, cwd_len) F(tt_exec_event, args_len)
	F(tt_exec_event, argc) F(tt_exec_event, pad) F(tt_exec_event, data)
	S(tt_file_event)
	F(tt_file_event, hdr) F(tt_file_event, access) F(tt_file_event, path_len)
	F(tt_file_event, fd) F(tt_file_event, pad) F(tt_file_event, path)
	S(tt_dns_event)
	F(tt_dns_event, hdr) F(tt_dns_event, family) F(tt_dns_event, protocol)
	F(tt_dns_event, dport) F(tt_dns_event, payload_len) F(tt_dns_event, captured_len)
	F(tt_dns_event, tcp_seq) F(tt_dns_event, daddr) F(tt_dns_event, sock_cookie)
	F(tt_dns_event, tcp_flags) F(tt_dns_event, pad) F(tt_dns_event, payload)
	S(tt_connect_event)
	F(tt_connect_event, hdr) F(tt_connect_event, family) F(tt_connect_event, protocol)
	F(tt_connect_event, port) F(tt_connect_event, pad) F(tt_connect_event, addr)
	S(tt_exit_event)
	F(tt_exit_event, hdr) F(tt_exit_event, exit_code) F(tt_exit_event, pad)
	S(tt_mechanism_event)
	F(tt_mechanism_event, hdr) F(tt_mechanism_event, mechanism) F(tt_mechanism_event, detail)
	S(tt_scope)
	F(tt_scope, slot) F(tt_scope, level) F(tt_scope, self_tgid) F(tt_scope, flags)
	S(tt_node_state)
	F(tt_node_state, nlevels) F(tt_node_state, generation) F(tt_node_state, levels)
	S(tt_registration)
	F(tt_registration, owner) F(tt_registration, lease_ns) F(tt_registration, since_ns)
	F(tt_registration, host_tgid) F(tt_registration, nscopes) F(tt_registration, cgroups)
	F(tt_registration, name)
	S(tt_cgroup_lost)
	F(tt_cgroup_lost, lost)
	printf("];\n");
	printf("pub const C_CONSTANTS: &[(&str, u64)] = &[\n");
#define C(n) printf("    (\"%s\", %llu),\n", #n, (unsigned long long)(n));
	C(TT_ABI_VERSION) C(TT_PATH_MAX) C(TT_ARGS_MAX) C(TT_DNS_MAX) C(TT_COMM_LEN)
	C(TT_MAX_SCOPES) C(TT_EVENT_EXEC) C(TT_EVENT_FILE) C(TT_EVENT_DNS) C(TT_EVENT_CONNECT)
	C(TT_EVENT_EXIT) C(TT_FLAG_PATH_TRUNCATED) C(TT_FLAG_ARGS_TRUNCATED) C(TT_FLAG_SCRIPT)
	C(TT_FLAG_PAYLOAD_TRUNCATED) C(TT_FLAG_PATH_RELATIVE) C(TT_FLAG_FILELESS) C(TT_FLAG_SCRIPT_FILELESS)
	C(TT_TCP_FIN) C(TT_TCP_SYN) C(TT_TCP_RST) C(TT_DNS_TCP_CHUNKS) C(TT_ACCESS_READ) C(TT_ACCESS_WRITE)
	C(TT_ACCESS_CREATE) C(TT_ACCESS_TRUNCATE) C(TT_AF_INET) C(TT_AF_INET6) C(TT_PROTO_TCP)
	C(TT_PROTO_UDP) C(TT_KIND_SLOTS) C(TT_CNT_EMITTED) C(TT_CNT_DEDUP) C(TT_CNT_LOST)
	C(TT_CNT_TRUNCATED) C(TT_CNT_KNOWN) C(TT_CNT_NR) C(TT_COUNTERS)
	C(TT_EVENT_MECHANISM) C(TT_MECH_IO_URING) C(TT_MAX_PODS) C(TT_MAX_LEVELS) C(TT_SCOPE_NO_DEDUP)
	printf("];\n");
	return 0;
}
