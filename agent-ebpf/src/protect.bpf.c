/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Self-protection: who aims at the agent. Always attached (domain "prot"), whatever the
 * sys domain's settings say.
 *
 * - Signals to an agent process, seen at sys_enter of kill/tkill/tgkill, i.e. in the sender's
 *   context BEFORE the signal exists. A signal the agent cannot handle (SIGKILL, SIGSTOP and
 *   every default-fatal signal except the SIGTERM/SIGINT it stops on) holds the sender in
 *   this program, for at most `grace_ms`, until the agent acknowledges (map `prot_ack`) that
 *   it wrote and flushed the alert: the alert is out before the agent dies. There is no way
 *   to cancel the syscall without BPF-LSM: with enforcement on, the sender also gets SIGKILL
 *   (bpf_send_signal), which the kernel delivers when the syscall returns - after the kill
 *   went through (docs/self-protection.md has the measurement).
 * - bpf() commands by other processes on the agent's programs, maps and links (ids in map
 *   `prot_ids`), pinned-object lookups, and programs attached by others.
 */
#include "common.h"
#include "syscalls.h"

#define SIGINT 2
#define SIGKILL 9
#define SIGPIPE 13
#define SIGTERM 15
#define SIGCHLD 17
#define SIGCONT 18
#define SIGSTOP 19
#define SIGURG 23
#define SIGWINCH 28

/* bpf() commands (uapi/linux/bpf.h) */
#define BPF_MAP_UPDATE_ELEM 2
#define BPF_MAP_DELETE_ELEM 3
#define BPF_OBJ_GET 7
#define BPF_PROG_ATTACH 8
#define BPF_PROG_DETACH 9
#define BPF_PROG_GET_FD_BY_ID 13
#define BPF_MAP_GET_FD_BY_ID 14
#define BPF_RAW_TRACEPOINT_OPEN 17
#define BPF_LINK_CREATE 28
#define BPF_LINK_UPDATE 29
#define BPF_LINK_GET_FD_BY_ID 30
#define BPF_LINK_DETACH 34

struct bpf_prog_aux {
	__u32 id;
} __attribute__((preserve_access_index));
struct bpf_prog {
	struct bpf_prog_aux *aux;
} __attribute__((preserve_access_index));
struct bpf_map {
	__u32 id;
} __attribute__((preserve_access_index));
struct bpf_link {
	__u32 id;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* pid */
	__type(value, __u32); /* enum osprey_protect_pid */
} prot_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* enum osprey_protect_kind << 32 | id */
	__type(value, __u32);
} prot_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct osprey_protect_config);
} prot_cfg SEC(".maps");

/* [0]: last sequence number handed out; [1]: last one the agent acknowledged. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} prot_seq SEC(".maps");

/* Tamper records only: read apart from the per-CPU event rings, never behind their backlog. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} prot_ring SEC(".maps");

static __always_inline struct osprey_protect_config *prot_settings(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&prot_cfg, &zero);
}

static __always_inline __u32 pid_flags(__u32 pid)
{
	__u32 *f = bpf_map_lookup_elem(&prot_pids, &pid);
	return f ? *f : 0;
}

/* The caller is the agent itself: in prot_pids, or (while the agent attaches its programs,
 * before self-protection fills prot_pids) the pid the sensor's settings name. */
static __always_inline bool actor_is_agent(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct osprey_config *cfg = settings();
	return (cfg && cfg->agent_pid == tgid) || (pid_flags(tgid) & OSPREY_PROTECT_TGID);
}

static __always_inline __u64 next_seq(void)
{
	__u32 zero = 0;
	__u64 *s = bpf_map_lookup_elem(&prot_seq, &zero);
	return s ? __sync_fetch_and_add(s, 1) + 1 : 0;
}

/* Signals the agent cannot outlive or handle: everything default-fatal but SIGTERM/SIGINT. */
static __always_inline bool fatal_signal(__u64 sig)
{
	return sig != 0 && sig != SIGTERM && sig != SIGINT && sig != SIGCHLD && sig != SIGCONT &&
	       sig != SIGURG && sig != SIGWINCH && sig != SIGPIPE && sig < 32;
}

/* SIGKILL the current process when enforcement is on; never init or the agent. */
static __always_inline __u32 enforce(void)
{
	struct osprey_protect_config *cfg = prot_settings();
	if (!cfg || !(cfg->flags & OSPREY_PROTECT_ENFORCE) || (cfg->flags & OSPREY_PROTECT_STOPPING))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid <= 1 || actor_is_agent())
		return 0;
	return bpf_send_signal(SIGKILL) == 0 ? OSPREY_TAMPER_KILLED : 0;
}

struct ack_wait {
	__u64 seq;
	__u64 deadline;
};

static long ack_cb(__u64 i, struct ack_wait *w)
{
	__u32 one = 1;
	__u64 *acked = bpf_map_lookup_elem(&prot_seq, &one);
	if (acked && *(volatile __u64 *)acked >= w->seq)
		return 1;
	return bpf_ktime_get_ns() > w->deadline;
}

/* Emits a tamper record into prot_ring now, waking its reader (it must not wait for a sweep). */
static __always_inline void tamper_emit(__u32 op, __u32 target, __u64 a0, __u64 a1, __u64 a2,
					const char *ustr)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct scratch *s = scratch_of_this_cpu();
	if (!s)
		return;
	struct osprey_system *y = SCRATCH_REC(s, struct osprey_system);
	__builtin_memset(y, 0, sizeof(*y));
	y->op = op;
	y->target_pid = target;
	y->arg0 = a0;
	y->arg1 = a1;
	y->arg2 = a2;
	__u32 len = 0;
	if (ustr) {
		long n = bpf_probe_read_user_str(&SCRATCH_DATA_AT(s, 0), 256, ustr);
		len = n > 0 ? n - 1 : 0;
	}
	y->str.len = len;
	fill_hdr(&y->hdr, task, OSPREY_REC_SYSTEM, sizeof(*y) + (len & 511));
	if (bpf_ringbuf_output(&prot_ring, y, sizeof(*y) + (len & 511), OSPREY_RB_FORCE_WAKEUP) != 0)
		count(&loss, OSPREY_REC_SYSTEM);
}

/*
 * A signal to `pid` (kill() semantics: > 0 a process, -1 everyone, < -1 a process group;
 * tkill: a thread) through syscall `call`.
 */
static __always_inline int tamper_signal(__s64 pid, __u64 sig, __u32 call)
{
	if (sig == 0 || actor_is_agent())
		return 0;
	__u32 flags = 0, target;
	struct osprey_config *cfg = settings();
	if (pid == -1) {
		target = cfg ? cfg->agent_pid : 0;
		flags = OSPREY_TAMPER_GROUP;
	} else if (pid < -1) {
		if (!(pid_flags(-pid) & OSPREY_PROTECT_PGRP))
			return 0;
		target = -pid;
		flags = OSPREY_TAMPER_GROUP;
	} else {
		__u32 want = call == OSPREY_TAMPER_TKILL ? OSPREY_PROTECT_TID | OSPREY_PROTECT_TGID
							 : OSPREY_PROTECT_TGID;
		if (pid == 0 || !(pid_flags(pid) & want))
			return 0;
		target = pid;
	}
	if (!target)
		return 0;
	bool fatal = fatal_signal(sig);
	struct osprey_protect_config *pc = prot_settings();
	bool stopping = pc && (pc->flags & OSPREY_PROTECT_STOPPING);
	__u32 grace = pc && !stopping ? pc->grace_ms : 0;
	if (fatal) {
		flags |= OSPREY_TAMPER_FATAL;
		flags |= enforce();
		if (grace)
			flags |= OSPREY_TAMPER_WAITED;
	}
	__u64 seq = next_seq();
	tamper_emit(OSPREY_SYS_TAMPER_SIGNAL, target, sig, call, seq << 8 | flags, 0);
	if (fatal && grace) {
		struct ack_wait w = {.seq = seq, .deadline = bpf_ktime_get_ns() + (__u64)grace * 1000000};
		bpf_loop(1 << 23, ack_cb, &w, 0);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_kill")
int prot_kill(struct sys_enter_ctx *ctx)
{
	return tamper_signal((int)ctx->args[0], ctx->args[1], OSPREY_TAMPER_KILL);
}

SEC("tracepoint/syscalls/sys_enter_tkill")
int prot_tkill(struct sys_enter_ctx *ctx)
{
	return tamper_signal((int)ctx->args[0], ctx->args[1], OSPREY_TAMPER_TKILL);
}

SEC("tracepoint/syscalls/sys_enter_tgkill")
int prot_tgkill(struct sys_enter_ctx *ctx)
{
	int tgid = ctx->args[0];
	return tgid > 0 ? tamper_signal(tgid, ctx->args[2], OSPREY_TAMPER_TGKILL) : 0;
}

/* The name of the anonymous inode behind a bpf fd: "bpf_link", "bpf-map", "bpf-prog". */
static __always_inline __u32 bpf_fd_kind(struct file *f)
{
	char name[9] = {};
	const unsigned char *p = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(name, sizeof(name), p) < 0)
		return 0;
	if (name[0] != 'b' || name[1] != 'p' || name[2] != 'f')
		return 0;
	if (name[4] == 'l' && name[5] == 'i' && name[6] == 'n' && name[7] == 'k')
		return OSPREY_PROTECT_LINK;
	if (name[4] == 'm' && name[5] == 'a' && name[6] == 'p')
		return OSPREY_PROTECT_MAP;
	if (name[4] == 'p' && name[5] == 'r' && name[6] == 'o' && name[7] == 'g')
		return OSPREY_PROTECT_PROG;
	return 0;
}

/* kind << 32 | id of the BPF object behind `fd` of the current task, if it is of `want`. */
static __always_inline __u64 bpf_fd_object(long fd, __u32 want)
{
	struct file *f = fd_file(bpf_get_current_task_btf(), fd);
	if (!f || bpf_fd_kind(f) != want)
		return 0;
	void *obj = BPF_CORE_READ(f, private_data);
	__u32 id = 0;
	if (want == OSPREY_PROTECT_LINK)
		id = BPF_CORE_READ((struct bpf_link *)obj, id);
	else if (want == OSPREY_PROTECT_MAP)
		id = BPF_CORE_READ((struct bpf_map *)obj, id);
	else
		id = BPF_CORE_READ((struct bpf_prog *)obj, aux, id);
	return id ? (__u64)want << 32 | id : 0;
}

static __always_inline bool protected_object(__u64 key)
{
	return key && bpf_map_lookup_elem(&prot_ids, &key);
}

SEC("tracepoint/syscalls/sys_enter_bpf")
int prot_bpf(struct sys_enter_ctx *ctx)
{
	__u64 cmd = ctx->args[0];
	const __u32 *attr = (const __u32 *)ctx->args[1];
	__u32 a[3] = {};
	__u64 key = 0;
	bool detach = false;
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_PROG_DETACH:
	case BPF_LINK_UPDATE:
	case BPF_LINK_DETACH:
	case BPF_PROG_GET_FD_BY_ID:
	case BPF_MAP_GET_FD_BY_ID:
	case BPF_LINK_GET_FD_BY_ID:
	case BPF_OBJ_GET:
	case BPF_RAW_TRACEPOINT_OPEN:
	case BPF_LINK_CREATE:
	case BPF_PROG_ATTACH:
		break;
	default:
		return 0;
	}
	if (actor_is_agent())
		return 0;
	bpf_probe_read_user(a, sizeof(a), attr);
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM: /* map_fd at 0 */
		key = bpf_fd_object(a[0], OSPREY_PROTECT_MAP);
		break;
	case BPF_PROG_DETACH: /* target_fd at 0, attach_bpf_fd at 4 */
		key = bpf_fd_object(a[1], OSPREY_PROTECT_PROG);
		detach = true;
		break;
	case BPF_LINK_UPDATE: /* link_fd at 0 */
	case BPF_LINK_DETACH:
		key = bpf_fd_object(a[0], OSPREY_PROTECT_LINK);
		detach = true;
		break;
	case BPF_PROG_GET_FD_BY_ID: /* id at 0 */
		key = (__u64)OSPREY_PROTECT_PROG << 32 | a[0];
		break;
	case BPF_MAP_GET_FD_BY_ID:
		key = (__u64)OSPREY_PROTECT_MAP << 32 | a[0];
		break;
	case BPF_LINK_GET_FD_BY_ID:
		key = (__u64)OSPREY_PROTECT_LINK << 32 | a[0];
		break;
	case BPF_OBJ_GET: { /* pathname (u64) at 0: user space compares it with the pin dir */
		const char *path = (const char *)((__u64)a[1] << 32 | a[0]);
		tamper_emit(OSPREY_SYS_TAMPER_BPF, 0, cmd, 0, next_seq() << 8, path);
		return 0;
	}
	case BPF_RAW_TRACEPOINT_OPEN: { /* name (u64) at 0, prog_fd at 8 */
		__u64 p[2] = {};
		bpf_probe_read_user(p, sizeof(p), attr);
		__u64 prog = bpf_fd_object((__u32)p[1], OSPREY_PROTECT_PROG);
		tamper_emit(OSPREY_SYS_BPF_ATTACH, 0, cmd, (__u32)prog, 0, (const char *)p[0]);
		return 0;
	}
	case BPF_LINK_CREATE: /* prog_fd at 0, target_fd at 4, attach_type at 8 */
	case BPF_PROG_ATTACH: /* target_fd at 0, attach_bpf_fd at 4, attach_type at 8 */
	{
		__u64 prog = bpf_fd_object(cmd == BPF_LINK_CREATE ? a[0] : a[1], OSPREY_PROTECT_PROG);
		tamper_emit(OSPREY_SYS_BPF_ATTACH, 0, cmd, (__u32)prog, a[2], 0);
		return 0;
	}
	}
	if (!protected_object(key))
		return 0;
	__u32 flags = detach ? enforce() : 0;
	tamper_emit(OSPREY_SYS_TAMPER_BPF, 0, cmd, key, next_seq() << 8 | flags, 0);
	return 0;
}

/* ptrace and process_vm_readv/writev aimed at an agent process (a tracer can stop, read, rewrite
 * or kill it). PTRACE_TRACEME names no target; requests on a tracee need an attach first. */
static __always_inline int tamper_trace(__u32 pid, __u64 request, __u32 call, bool hostile)
{
	if (!(pid_flags(pid) & (OSPREY_PROTECT_TGID | OSPREY_PROTECT_TID)) || actor_is_agent())
		return 0;
	__u32 flags = hostile ? enforce() : 0;
	tamper_emit(OSPREY_SYS_TAMPER_PTRACE, pid, request, call, next_seq() << 8 | flags, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int prot_ptrace(struct sys_enter_ctx *ctx)
{
	__u64 req = ctx->args[0];
	if (req == 0 /* PTRACE_TRACEME */)
		return 0;
	/* Requests that rewrite the agent (POKETEXT/DATA/USER, SETREGS) are enforced. An attach is
	 * only alerted: killing the tracer after PTRACE_ATTACH's SIGSTOP would leave the agent
	 * stopped (the tracee stays in group stop when its tracer exits). */
	bool hostile = (req >= 4 && req <= 6) || req == 13;
	return tamper_trace(ctx->args[1], req, OSPREY_TAMPER_PTRACE, hostile);
}

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int prot_vm_write(struct sys_enter_ctx *ctx)
{
	return tamper_trace(ctx->args[0], 0, OSPREY_TAMPER_VM_WRITE, true);
}

SEC("tracepoint/syscalls/sys_enter_process_vm_readv")
int prot_vm_read(struct sys_enter_ctx *ctx)
{
	return tamper_trace(ctx->args[0], 0, OSPREY_TAMPER_VM_READ, false);
}
