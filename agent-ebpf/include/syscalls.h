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

/* A syscall's arguments as an exit program takes them: kept by an enter program (the system
 * calls) or read at exit from the saved registers (the file operations). */
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

struct pending_args {
	struct saved_args a;
	__u64 set; /* a holds arguments not taken yet */
};

/*
 * One pending syscall per thread, in the thread's own BPF storage: a pointer away from the
 * task, where a hash keyed by thread id cost ~270 ns per save in a file-syscall storm. The slot
 * is created at a thread's first save and freed with the thread.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, 1); /* BPF_F_NO_PREALLOC, required for local storage */
	__type(key, int);
	__type(value, struct pending_args);
} pending SEC(".maps");

/* This thread's pending slot; created when `create`. NULL if there is none (or no memory). */
static __always_inline struct pending_args *pending_slot(bool create)
{
	return bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Keeps `a` for this thread's sys_exit. */
static __always_inline int put_saved(const struct saved_args *a)
{
	struct pending_args *p = pending_slot(true);
	if (p) {
		p->a = *a;
		p->set = 1;
	}
	return 0;
}

/* What this thread's enter program saved and nobody took yet, left in place; or NULL. */
static __always_inline struct saved_args *peek_saved(void)
{
	struct pending_args *p = pending_slot(false);
	return p && p->set ? &p->a : 0;
}

/* Forgets what this thread's enter program saved. */
static __always_inline void drop_saved(void)
{
	struct pending_args *p = pending_slot(false);
	if (p)
		p->set = 0;
}

/* Takes (and removes) what the enter program of this thread saved. */
static __always_inline bool take_saved(struct saved_args *out)
{
	struct pending_args *p = pending_slot(false);
	if (!p || !p->set)
		return false;
	*out = p->a;
	p->set = 0;
	return true;
}

/*
 * The struct file behind `fd` in `task`'s table, or NULL. `task` must be a BTF pointer
 * (bpf_get_current_task_btf()): the table is reached by direct loads the verifier checks (a
 * faulting one reads 0), only the slot itself by a probe read. Every write and close runs this.
 */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return 0;
	struct fdtable *fdt = task->files->fdt;
	if (!fdt || (__u64)fd >= fdt->max_fds)
		return 0;
	struct file *file = 0;
	bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]);
	return file;
}

#endif /* OSPREY_SYSCALLS_H */
