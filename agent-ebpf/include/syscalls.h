/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Syscall tracepoints: their context layout, the per-thread store of arguments saved at
 * sys_enter for the matching sys_exit, and fd → struct file.
 */
#ifndef OSPREY_SYSCALLS_H
#define OSPREY_SYSCALLS_H

#include "common.h"

/* tracepoint/syscalls/sys_enter_*: common fields, syscall nr, then six u64 argument slots. */
struct sys_enter_ctx {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};

/* tracepoint/syscalls/sys_exit_*: common fields, syscall nr, return value. */
struct sys_exit_ctx {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

/* What an enter program keeps for its exit program. */
struct saved_args {
	__u32 op;
	__s32 dfd;
	__s32 dfd2;
	__s32 fd;      /* for fd-based calls, else -1 */
	const char *name;
	const char *name2;
	__u32 flags;
	__u32 mode;
	__u32 uid;
	__u32 gid;
	__u64 size;
	__u64 arg[3];  /* raw arguments for calls that need them */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid: one pending syscall per thread */
	__type(value, struct saved_args);
} pending SEC(".maps");

static __always_inline int save2(__u32 op, int dfd, const char *name, int dfd2, const char *name2,
				 __u32 flags)
{
	struct saved_args a = {
		.op = op, .dfd = dfd, .name = name, .dfd2 = dfd2, .name2 = name2, .flags = flags, .fd = -1,
	};
	__u64 tid = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&pending, &tid, &a, BPF_ANY);
	return 0;
}

static __always_inline int save(__u32 op, int dfd, const char *name, __u32 flags, __u32 mode)
{
	struct saved_args a = {.op = op, .dfd = dfd, .name = name, .flags = flags, .mode = mode, .fd = -1};
	__u64 tid = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&pending, &tid, &a, BPF_ANY);
	return 0;
}

/* Takes (and removes) what the enter program of this thread saved. */
static __always_inline bool take_saved(struct saved_args *out)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct saved_args *a = bpf_map_lookup_elem(&pending, &tid);
	if (!a)
		return false;
	*out = *a;
	bpf_map_delete_elem(&pending, &tid);
	return true;
}

/* The struct file behind `fd` in `task`'s table, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return 0;
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || (__u64)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

#endif /* OSPREY_SYSCALLS_H */
