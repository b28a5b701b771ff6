/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Process lifecycle: exec, fork/clone, exit.
 *
 * Hooks: tp_btf sched_prepare_exec (6.10+; credentials before the exec), sched_process_exec,
 * sched_process_fork, sched_process_exit. No syscall tracepoints: they would put every syscall
 * of every task on the tracing slow path.
 */
#include "common.h"
#include "creds.h"
#include "path.h"

/* Credentials of a process between sched_prepare_exec and sched_process_exec, keyed by tgid. */
struct old_creds {
	__u32 uid;
	__u32 euid;
	__u32 gid;
	__u32 egid;
	__u64 cap_effective;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct old_creds);
} exec_creds SEC(".maps");

/* The exec block list (response), filled by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct osprey_inode_key);
	__type(value, __u32);
} block_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct osprey_block_path);
	__type(value, __u32);
} block_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} block_state SEC(".maps");

/* The key of a path lookup, built per CPU (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct osprey_block_path);
} block_key SEC(".maps");

/*
 * Whether the image (inode, or the resolved path in the scratch data at 0..len) is blocked.
 * Only consulted at sched_process_exec: the new image is mapped but has not run an instruction.
 */
static __always_inline bool exec_blocked(struct osprey_inode_key *ik, struct scratch *s, __u32 len)
{
	if (bpf_map_lookup_elem(&block_inodes, ik))
		return true;
	__u32 zero = 0;
	__u32 *paths = bpf_map_lookup_elem(&block_state, &zero);
	if (!paths || *paths == 0 || len == 0 || len >= OSPREY_BLOCK_PATH_MAX)
		return false;
	struct osprey_block_path *k = bpf_map_lookup_elem(&block_key, &zero);
	if (!k)
		return false;
	__builtin_memset(k, 0, sizeof(*k));
	/* The mask in a register the verifier sees (clang drops a plain `&` after the check
	 * above, and the 6.1 verifier then finds the length unbounded). */
	__u64 n = len;
	asm volatile("%0 &= %1" : "+r"(n) : "i"(OSPREY_BLOCK_PATH_MAX - 1));
	bpf_probe_read_kernel(k->path, n, &SCRATCH_DATA_AT(s, 0));
	return bpf_map_lookup_elem(&block_paths, k) != 0;
}

/* `task`: a BTF tracepoint's argument, read by a direct load. */
static __always_inline bool is_kthread(struct task_struct *task)
{
	return task->flags & PF_KTHREAD;
}

SEC("tp_btf/sched_prepare_exec")
int BPF_PROG(proc_prepare_exec, struct task_struct *task, struct linux_binprm *bprm)
{
	const struct cred *cred = task->cred; /* BTF pointers: direct loads */
	struct old_creds old = {
		.uid = cred->uid.val,
		.euid = cred->euid.val,
		.gid = cred->gid.val,
		.egid = cred->egid.val,
		.cap_effective = cred_cap_effective(cred),
	};
	__u32 tgid = task->tgid;
	bpf_map_update_elem(&exec_creds, &tgid, &old, BPF_ANY);
	return 0;
}

/* Since 6.13 the top bit of i_ctime_nsec flags a queried timestamp (multigrain ctime). */
#define I_CTIME_QUERIED (1U << 31)

static __always_inline __u64 inode_ctime_ns(struct inode *inode)
{
	if (bpf_core_field_exists(inode->i_ctime_sec))
		return BPF_CORE_READ(inode, i_ctime_sec) * 1000000000ULL +
		       (BPF_CORE_READ(inode, i_ctime_nsec) & ~I_CTIME_QUERIED);
	struct inode___timespec *its = (void *)inode;
	if (bpf_core_field_exists(its->__i_ctime))
		return BPF_CORE_READ(its, __i_ctime.tv_sec) * 1000000000ULL +
		       BPF_CORE_READ(its, __i_ctime.tv_nsec);
	struct inode___old *iold = (void *)inode;
	return BPF_CORE_READ(iold, i_ctime.tv_sec) * 1000000000ULL +
	       BPF_CORE_READ(iold, i_ctime.tv_nsec);
}

/* A memfd's file is a pseudo dentry named "memfd:..." on tmpfs or hugetlbfs. `file`: a BTF
 * pointer (the exec's), read by direct loads. */
static __always_inline bool is_memfd(struct file *file)
{
	struct dentry *d = file->f_path.dentry;
	if (d->d_parent != d)
		return false;
	unsigned long magic = file->f_inode->i_sb->s_magic;
	if (magic != TMPFS_MAGIC && magic != HUGETLBFS_MAGIC)
		return false;
	char prefix[6] = {};
	bpf_probe_read_kernel(prefix, sizeof(prefix), d->d_name.name);
	return prefix[0] == 'm' && prefix[1] == 'e' && prefix[2] == 'm' && prefix[3] == 'f' &&
	       prefix[4] == 'd' && prefix[5] == ':';
}

static __always_inline struct osprey_str put_str(__u32 off, __u32 len)
{
	struct osprey_str s = {.off = off, .len = len};
	return s;
}

/*
 * The credentials before the exec (saved by proc_prepare_exec) compared with those after it:
 * fills e->old_* and returns the SETUID/SETGID/CAPS_GAINED/CRED_UNKNOWN flags. A global
 * function, so the verifier checks it once instead of once per path through proc_exec (the 6.1
 * verifier otherwise gives up on proc_exec: over a million instructions).
 */
__attribute__((noinline)) int exec_cred_flags(struct osprey_exec *e, __u32 tgid, __u64 uids, __u64 gids, __u64 caps)
{
	if (!e)
		return 0;
	__u32 uid = (__u32)uids, euid = uids >> 32, gid = (__u32)gids, egid = gids >> 32;
	__u32 flags = 0;
	struct old_creds *old = bpf_map_lookup_elem(&exec_creds, &tgid);
	if (old) {
		e->old_uid = old->uid;
		e->old_euid = old->euid;
		e->old_gid = old->gid;
		e->old_egid = old->egid;
		e->old_cap_effective = old->cap_effective;
		if (old->euid != euid)
			flags |= OSPREY_EXEC_SETUID;
		if (old->egid != egid)
			flags |= OSPREY_EXEC_SETGID;
		if (caps & ~old->cap_effective)
			flags |= OSPREY_EXEC_CAPS_GAINED;
		bpf_map_delete_elem(&exec_creds, &tgid);
	} else {
		/* no sched_prepare_exec on this kernel: judge by the result */
		flags |= OSPREY_EXEC_CRED_UNKNOWN;
		e->old_uid = uid;
		e->old_euid = uid;
		e->old_gid = gid;
		e->old_egid = gid;
		e->old_cap_effective = caps;
		if (euid != uid)
			flags |= OSPREY_EXEC_SETUID;
		if (egid != gid)
			flags |= OSPREY_EXEC_SETGID;
	}
	return flags;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(proc_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct scratch *s = scratch_of_this_cpu();
	if (!s)
		return 0;
	struct osprey_exec *e = SCRATCH_REC(s, struct osprey_exec);
	__u32 flags = 0;
	bool trunc = false;

	/* the image (task, bprm and what they point to are BTF pointers: direct loads) */
	struct file *file = bprm->file;
	struct inode *inode = file->f_inode;
	e->exe_ino = inode->i_ino;
	e->exe_dev = inode->i_sb->s_dev;
	e->exe_ctime_ns = inode_ctime_ns(inode);
	e->exe_size = inode->i_size;
	e->exe_mode = inode->i_mode;
	e->exe_uid = inode->i_uid.val;
	e->exe_gid = inode->i_gid.val;
	if (is_memfd(file))
		flags |= OSPREY_EXEC_MEMFD;
	else if (inode->__i_nlink == 0)
		flags |= OSPREY_EXEC_DELETED;

	/* credentials after the exec, compared with those before it */
	const struct cred *cred = task->cred;
	__u32 uid = cred->uid.val;
	__u32 euid = cred->euid.val;
	__u32 gid = cred->gid.val;
	__u32 egid = cred->egid.val;
	__u64 caps = cred_cap_effective(cred);
	e->suid = cred->suid.val;
	e->sgid = cred->sgid.val;
	e->cap_effective = caps;
	__u32 tgid = task->tgid;
	flags |= exec_cred_flags(e, tgid, ((__u64)euid << 32) | uid, ((__u64)egid << 32) | gid, caps);
	e->old_pid = old_pid;
	e->argc = bprm->argc;
	remember_euid(tgid, euid);

	/* trailing data: exe path, filename, argv, cwd */
	__u32 off = 0;
	__u32 len = resolve_kpath(s, off, &file->f_path, task, &trunc);
	if (trunc)
		flags |= OSPREY_EXEC_PATH_TRUNC;
	e->exe_path = put_str(off, len);
	off += len;

	struct osprey_inode_key ik = {.ino = e->exe_ino, .dev = e->exe_dev};
	if (exec_blocked(&ik, s, len)) {
		/* delivered on the way back to user space: the new image never runs */
		bpf_send_signal(9 /* SIGKILL */);
		flags |= OSPREY_EXEC_BLOCKED;
	}

	long n = bpf_probe_read_kernel_str(&SCRATCH_DATA_AT(s, off & SCRATCH_MASK), OSPREY_FILENAME_MAX,
					   bprm->filename);
	len = n > 0 ? n - 1 : 0; /* without the NUL */
	e->filename = put_str(off, len);
	off += len;

	struct mm_struct *mm = task->mm;
	unsigned long arg_start = mm->arg_start;
	unsigned long arg_end = mm->arg_end;
	__u64 alen = arg_end > arg_start ? arg_end - arg_start : 0;
	if (alen > OSPREY_ARGS_MAX) {
		alen = OSPREY_ARGS_MAX;
		flags |= OSPREY_EXEC_ARGS_TRUNC;
	}
	barrier_var(alen);
	if (alen > OSPREY_ARGS_MAX)
		alen = 0;
	__u32 pos = off & SCRATCH_MASK;
	if (alen && bpf_probe_read_user(&SCRATCH_DATA_AT(s, pos), alen, (void *)arg_start) != 0)
		alen = 0;
	e->args = put_str(off, alen);
	off += alen;

	trunc = false;
	len = resolve_cwd(s, off, task, &trunc);
	if (trunc)
		flags |= OSPREY_EXEC_CWD_TRUNC;
	e->cwd = put_str(off, len);
	off += len;

	e->flags = flags;
	fill_hdr_current(&e->hdr, OSPREY_REC_EXEC, sizeof(*e) + (off & (SCRATCH_DATA - 1)));
	emit_scratch(e, sizeof(*e), off, OSPREY_REC_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(proc_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = child->pid;
	__u32 child_tgid = child->tgid;
	bool thread = child_pid != child_tgid;
	struct osprey_config *cfg = settings();
	bool threads = cfg && (cfg->flags & OSPREY_CFG_THREADS);

	if (is_kthread(child) || (thread && !threads)) {
		count(&filtered, OSPREY_REC_FORK);
		return 0;
	}
	struct osprey_fork *f = reserve(sizeof(*f), OSPREY_REC_FORK);
	if (!f)
		return 0;
	struct task_struct *current = bpf_get_current_task_btf();
	fill_hdr_current(&f->hdr, OSPREY_REC_FORK, sizeof(*f));
	check_unexpected_root(current);
	remember_euid(child_tgid, current_euid(current));
	f->child_pid = child_tgid;
	f->child_tid = child_pid;
	f->child_start_ns = child->group_leader->start_boottime;
	f->flags = thread ? OSPREY_FORK_THREAD : 0;
	f->_pad0 = 0;
	submit(f);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *task)
{
	/* signal->live reaches 0 when the last thread of the process exits */
	bool group_dead = task->signal->live.counter == 0;
	struct osprey_config *cfg = settings();
	bool threads = cfg && (cfg->flags & OSPREY_CFG_THREADS);

	if (is_kthread(task) || (!group_dead && !threads)) {
		count(&filtered, OSPREY_REC_EXIT);
		return 0;
	}
	struct osprey_exit *x = reserve(sizeof(*x), OSPREY_REC_EXIT);
	if (!x)
		return 0;
	fill_hdr_current(&x->hdr, OSPREY_REC_EXIT, sizeof(*x));
	x->exit_code = task->exit_code;
	if (group_dead) {
		__u32 tgid = task->tgid;
		bpf_map_delete_elem(&known_euid, &tgid);
	}
	x->flags = group_dead ? 0 : OSPREY_EXIT_THREAD;
	submit(x);
	return 0;
}
