/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one BPF object Osprey loads. Each domain lives in its own file; they are compiled as one
 * translation unit so they share the ring buffers, counters and settings maps in common.h.
 */
#include "common.h"

#include "process.bpf.c"

char LICENSE[] SEC("license") = "GPL";
