/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * System-level moves: BPF program/map creation by other processes, ptrace, memfd_create,
 * memory made executable (anonymous or writable), mount/umount, unshare/setns, signals sent
 * to other processes, and kernel module loads where the kernel has modules.
 */
#include "common.h"
#include "creds.h"
#include "syscalls.h"

#define BPF_MAP_CREATE 0
#define BPF_PROG_LOAD 5
#define PTRACE_TRACEME 0
#define PTRACE_POKETEXT 4
#define PTRACE_POKEDATA 5
#define PTRACE_POKEUSER 6
#define PTRACE_SETREGS 13
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define SYS_STR_MAX 256

static __always_inline bool sys_op_enabled(__u32 op)
{
	struct osprey_config *cfg = settings();
	return cfg && (cfg->system_ops & (1u << (op & 31)));
}

static __always_inline bool is_agent(void)
{
	struct osprey_config *cfg = settings();
	return cfg && cfg->agent_pid == (__u32)(bpf_get_current_pid_tgid() >> 32);
}

/* Starts a system record in scratch space. */
static __always_inline struct osprey_system *sys_rec(struct scratch *s, __u32 op, long ret)
{
	struct osprey_system *y = SCRATCH_REC(s, struct osprey_system);
	__builtin_memset(y, 0, sizeof(*y));
	y->op = op;
	y->ret = ret;
	return y;
}

/* Appends a NUL-terminated string (user or kernel memory) at `off`; returns its length. */
static __always_inline __u32 append_str(struct scratch *s, __u32 off, const void *src, bool user)
{
	if (!src)
		return 0;
	void *dst = &SCRATCH_DATA_AT(s, off & SCRATCH_MASK);
	long n = user ? bpf_probe_read_user_str(dst, SYS_STR_MAX, src)
		      : bpf_probe_read_kernel_str(dst, SYS_STR_MAX, src);
	return n > 0 ? n - 1 : 0;
}

static __always_inline void sys_emit(struct osprey_system *y, __u32 len)
{
	struct task_struct *task = bpf_get_current_task_btf();
	check_unexpected_root(task);
	fill_hdr(&y->hdr, task, OSPREY_REC_SYSTEM, sizeof(*y) + (len & (SCRATCH_DATA - 1)));
	emit_scratch(y, sizeof(*y), len, OSPREY_REC_SYSTEM);
}

static __always_inline int save_raw(__u32 op, __u64 a0, __u64 a1, __u64 a2, const char *s1,
				    const char *s2, const char *s3)
{
	struct saved_args a = {.op = op, .name = s1, .name2 = s2, .fd = -1};
	a.arg[0] = a0;
	a.arg[1] = a1;
	a.arg[2] = a2;
	a.size = (__u64)s3;
	return put_saved(&a);
}

/*
 * Emits the system record saved at enter when the call succeeded: arg[] as they were, name /
 * name2 / size (a third string pointer) as user strings.
 */
static __always_inline int sys_exit(long ret, bool ok)
{
	struct saved_args a;
	if (!take_saved(&a))
		return 0;
	/* mount, umount, unshare, setns return 0; bpf, ptrace, memfd_create a value >= 0 */
	if (ok && (a.op == OSPREY_SYS_MOUNT || a.op == OSPREY_SYS_UMOUNT || a.op == OSPREY_SYS_UNSHARE ||
		   a.op == OSPREY_SYS_SETNS))
		ok = ret == 0;
	if (!ok)
		return 0;
	if (!sys_op_enabled(a.op)) {
		count(&filtered, OSPREY_REC_SYSTEM);
		return 0;
	}
	struct scratch *s = scratch_of_this_cpu();
	if (!s)
		return 0;
	struct osprey_system *y = sys_rec(s, a.op, ret);
	y->arg0 = a.arg[0];
	y->arg1 = a.arg[1];
	y->arg2 = a.arg[2];
	if (a.op == OSPREY_SYS_PTRACE)
		y->target_pid = a.arg[1];
	__u32 off = 0;
	__u32 len = append_str(s, off, a.name, true);
	y->str.len = len;
	off += len;
	len = append_str(s, off, a.name2, true);
	y->str2.off = off;
	y->str2.len = len;
	off += len;
	len = append_str(s, off, (const char *)a.size, true);
	y->str3.off = off;
	y->str3.len = len;
	off += len;
	sys_emit(y, off);
	return 0;
}

/* bpf(): program loads and map creations by anyone but the agent. */
SEC("tracepoint/syscalls/sys_enter_bpf")
int sys_bpf(struct sys_enter_ctx *ctx)
{
	__u64 cmd = ctx->args[0];
	if ((cmd != BPF_PROG_LOAD && cmd != BPF_MAP_CREATE) || is_agent())
		return 0;
	const char *attr = (const char *)ctx->args[1];
	__u32 type = 0;
	bpf_probe_read_user(&type, sizeof(type), attr);
	/* union bpf_attr: prog_name at 48 (BPF_PROG_LOAD), map_name at 28 (BPF_MAP_CREATE) */
	if (cmd == BPF_PROG_LOAD)
		return save_raw(OSPREY_SYS_BPF_PROG_LOAD, type, 0, 0, attr + 48, 0, 0);
	return save_raw(OSPREY_SYS_BPF_MAP_CREATE, type, 0, 0, attr + 28, 0, 0);
}
/* One exit program for bpf, ptrace, memfd_create, mount, umount, unshare and setns. */
SEC("tracepoint/syscalls/sys_exit_bpf")
int sys_x(struct sys_exit_ctx *ctx) { return sys_exit(ctx->ret, ctx->ret >= 0); }

SEC("tracepoint/syscalls/sys_enter_ptrace")
int sys_ptrace(struct sys_enter_ctx *ctx)
{
	__u64 req = ctx->args[0];
	if (req != PTRACE_ATTACH && req != PTRACE_SEIZE && req != PTRACE_TRACEME && req != PTRACE_POKETEXT &&
	    req != PTRACE_POKEDATA && req != PTRACE_POKEUSER && req != PTRACE_SETREGS)
		return 0;
	return save_raw(OSPREY_SYS_PTRACE, req, ctx->args[1], ctx->args[2], 0, 0, 0);
}
ATTACH_ALSO(sys_x, "syscalls", sys_exit_ptrace)

SEC("tracepoint/syscalls/sys_enter_memfd_create")
int sys_memfd_create(struct sys_enter_ctx *ctx)
{
	return save_raw(OSPREY_SYS_MEMFD_CREATE, ctx->args[1], 0, 0, (const char *)ctx->args[0], 0, 0);
}
ATTACH_ALSO(sys_x, "syscalls", sys_exit_memfd_create)

/* mprotect(PROT_EXEC) of an anonymous or writable mapping: the VMA tells which. */
struct vma_ctx {
	__u32 vm_file_off;
	__u32 anonymous;
};

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, struct vma_ctx *c)
{
	void *file = 0;
	bpf_probe_read_kernel(&file, sizeof(file), (void *)vma + c->vm_file_off);
	c->anonymous = file == 0;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mprotect")
int sys_mprotect(struct sys_enter_ctx *ctx)
{
	__u64 prot = ctx->args[2];
	if (!(prot & PROT_EXEC))
		return 0;
	return save_raw(OSPREY_SYS_MPROTECT_EXEC, ctx->args[0], ctx->args[1], prot, 0, 0, 0);
}
SEC("tracepoint/syscalls/sys_exit_mprotect")
int sys_mprotect_x(struct sys_exit_ctx *ctx)
{
	if (ctx->ret != 0) {
		struct saved_args a;
		take_saved(&a);
		return 0;
	}
	struct saved_args *a = peek_saved();
	if (!a || a->op != OSPREY_SYS_MPROTECT_EXEC)
		return sys_exit(0, true);
	struct vma_ctx c = {.vm_file_off = bpf_core_field_offset(struct vm_area_struct, vm_file)};
	bpf_find_vma(bpf_get_current_task_btf(), a->arg[0], vma_cb, &c, 0);
	if (!c.anonymous && !(a->arg[2] & PROT_WRITE)) {
		drop_saved(); /* file-backed, read+exec: the loader's normal work */
		return 0;
	}
	return sys_exit(0, true);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int sys_mmap(struct sys_enter_ctx *ctx)
{
	__u64 prot = ctx->args[2], flags = ctx->args[3];
	if (!(prot & PROT_EXEC) || !((flags & MAP_ANONYMOUS) || (prot & PROT_WRITE)))
		return 0;
	return save_raw(OSPREY_SYS_MMAP_EXEC, ctx->args[0], ctx->args[1], prot, 0, 0, 0);
}
SEC("tracepoint/syscalls/sys_exit_mmap")
int sys_mmap_x(struct sys_exit_ctx *ctx)
{
	/* mmap returns an address; errors are -4095..-1 */
	return sys_exit(ctx->ret, (unsigned long)ctx->ret < (unsigned long)-4095);
}

SEC("tracepoint/syscalls/sys_enter_mount")
int sys_mount(struct sys_enter_ctx *ctx)
{
	return save_raw(OSPREY_SYS_MOUNT, ctx->args[3], 0, 0, (const char *)ctx->args[0],
			(const char *)ctx->args[1], (const char *)ctx->args[2]);
}
ATTACH_ALSO(sys_x, "syscalls", sys_exit_mount)

SEC("tracepoint/syscalls/sys_enter_umount")
int sys_umount(struct sys_enter_ctx *ctx)
{
	return save_raw(OSPREY_SYS_UMOUNT, ctx->args[1], 0, 0, (const char *)ctx->args[0], 0, 0);
}
ATTACH_ALSO(sys_x, "syscalls", sys_exit_umount)

SEC("tracepoint/syscalls/sys_enter_unshare")
int sys_unshare(struct sys_enter_ctx *ctx)
{
	return save_raw(OSPREY_SYS_UNSHARE, ctx->args[0], 0, 0, 0, 0, 0);
}
ATTACH_ALSO(sys_x, "syscalls", sys_exit_unshare)

SEC("tracepoint/syscalls/sys_enter_setns")
int sys_setns(struct sys_enter_ctx *ctx)
{
	return save_raw(OSPREY_SYS_SETNS, ctx->args[1], ctx->args[0], 0, 0, 0, 0);
}
ATTACH_ALSO(sys_x, "syscalls", sys_exit_setns)

/*
 * A signal sent by a process (kill, tkill, sigqueue: si_code <= 0) to another process. Signals
 * the kernel raises itself (SIGCHLD, SIGSEGV, SIGPIPE...) have si_code > 0 or no siginfo.
 */
SEC("tp_btf/signal_generate")
int BPF_PROG(sys_signal, int sig, struct kernel_siginfo *info, struct task_struct *target, int group,
	     int result)
{
	if ((unsigned long)info <= 1)
		return 0; /* SEND_SIG_NOINFO / SEND_SIG_PRIV: from the kernel */
	int code = BPF_CORE_READ(info, si_code);
	if (code > 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 target_tgid = BPF_CORE_READ(target, tgid);
	if (target_tgid == BPF_CORE_READ(task, tgid))
		return 0;
	if (!sys_op_enabled(OSPREY_SYS_SIGNAL)) {
		count(&filtered, OSPREY_REC_SYSTEM);
		return 0;
	}
	struct osprey_system *y = reserve(sizeof(*y), OSPREY_REC_SYSTEM);
	if (!y)
		return 0;
	__builtin_memset(y, 0, sizeof(*y));
	fill_hdr(&y->hdr, task, OSPREY_REC_SYSTEM, sizeof(*y));
	y->op = OSPREY_SYS_SIGNAL;
	y->ret = result;
	y->target_pid = target_tgid;
	y->target_start_ns = process_start_ns(target);
	y->arg0 = sig;
	y->arg1 = result;
	y->arg2 = code;
	submit(y);
	return 0;
}

/* Kernel modules (absent on kernels built without CONFIG_MODULES: the hook is optional). */
struct module {
	char name[56];
} __attribute__((preserve_access_index));

SEC("tp_btf/module_load")
int BPF_PROG(sys_module_load, struct module *mod)
{
	if (!sys_op_enabled(OSPREY_SYS_MODULE_LOAD))
		return 0;
	struct scratch *s = scratch_of_this_cpu();
	if (!s)
		return 0;
	struct osprey_system *y = sys_rec(s, OSPREY_SYS_MODULE_LOAD, 0);
	__u32 len = append_str(s, 0, mod->name, false);
	y->str.len = len;
	sys_emit(y, len);
	return 0;
}
