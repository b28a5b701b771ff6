/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The exec block list that outlives the agent (response + self-protection): a separate object
 * whose program and maps are pinned in bpffs, so a blocked executable stays blocked while the
 * agent is down (killed, crashed, restarting). The sensor's proc_exec does the same check (and
 * reports the blocked exec) while the agent runs; this one kills by inode only, without a
 * record: paths are resolved to their inode when blocked.
 *
 * blk_paths and blk_hashes are not read here: they keep the block list itself (what the
 * operator blocked) in bpffs, so a restarted agent adopts it.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "osprey.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct osprey_inode_key);
	__type(value, __u32); /* enum osprey_block_reason */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blk_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct osprey_block_path);
	__type(value, struct osprey_inode_key); /* the file the path named when it was blocked */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blk_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u8[32]); /* sha256 */
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blk_hashes SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(blk_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct inode *inode = BPF_CORE_READ(bprm, file, f_inode);
	struct osprey_inode_key k = {};
	k.ino = BPF_CORE_READ(inode, i_ino);
	k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (bpf_map_lookup_elem(&blk_inodes, &k))
		bpf_send_signal(9); /* SIGKILL before the new image runs one instruction */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
