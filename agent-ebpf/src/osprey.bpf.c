/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one BPF object Osprey loads. Each domain lives in its own file; they are compiled as one
 * translation unit so they share the ring buffers, counters and settings maps in common.h.
 */
#include "common.h"

#include "process.bpf.c"
#include "file.bpf.c"
#include "cred.bpf.c"
#include "system.bpf.c"
#include "net.bpf.c"
#include "protect.bpf.c"

/*
 * Anchors every record type in the object's BTF (BTF keeps only types reachable from globals),
 * so the layout test and `bpftool btf dump` see the layouts clang produced for the BPF target.
 */
struct btf_anchor {
	struct osprey_hdr hdr;
	struct osprey_str str;
	struct osprey_fork fork;
	struct osprey_exit exit;
	struct osprey_config config;
	struct osprey_inode_key inode_key;
	struct osprey_cred cred;
	struct osprey_block_path block_path;
	struct osprey_iso_rule iso_rule; /* used by isolate.bpf.c, a separate object */
	struct osprey_net net;
	struct osprey_protect_config protect_config;
	struct osprey_protected_id protected_id; /* used by lsm.bpf.c, a separate object */
	struct osprey_denial denial;              /* likewise */
};
const volatile struct btf_anchor btf_anchor __attribute__((used));
/* records ending in a flexible array cannot be members: one global each */
const volatile struct osprey_exec btf_anchor_exec __attribute__((used));
const volatile struct osprey_file btf_anchor_file __attribute__((used));
const volatile struct osprey_system btf_anchor_system __attribute__((used));
const volatile struct osprey_dns btf_anchor_dns __attribute__((used));

char LICENSE[] SEC("license") = "GPL";
