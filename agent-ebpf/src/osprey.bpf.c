/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one BPF object Osprey loads. Each domain lives in its own file; they are compiled as one
 * translation unit so they share the ring buffers, counters and settings maps in common.h.
 */
#include "common.h"

#include "process.bpf.c"

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
	struct osprey_exec exec; /* last: it ends in a flexible array */
};
const volatile struct btf_anchor btf_anchor __attribute__((used));

char LICENSE[] SEC("license") = "GPL";
