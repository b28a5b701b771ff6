/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Credential changes: the setuid family and capset, with the credentials before (saved at
 * sys_enter) and after (read at sys_exit). Reported when the call changed anything.
 */
#include "common.h"
#include "creds.h"
#include "syscalls.h"

struct cred_before {
	__u32 op;
	struct cred_ids ids;
	__u64 args[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct cred_before);
} cred_pending SEC(".maps");

/*
 * Saves the credentials before the call and its first `nargs` arguments. A tracepoint program
 * may not read past its tracepoint's record (the kernel refuses to attach it), so a
 * one-argument syscall's program reads one slot only.
 */
static __always_inline int cred_enter(__u32 op, struct sys_enter_ctx *ctx, int nargs)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cred_before b = {.op = op};
	fill_cred_ids(task, b.ids.uids, b.ids.gids, &b.ids.caps);
	b.args[0] = ctx->args[0];
	if (nargs > 1)
		b.args[1] = ctx->args[1];
	if (nargs > 2)
		b.args[2] = ctx->args[2];
	__u64 tid = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&cred_pending, &tid, &b, BPF_ANY);
	return 0;
}

static __always_inline int cred_exit(struct sys_exit_ctx *ctx)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct cred_before *b = bpf_map_lookup_elem(&cred_pending, &tid);
	if (!b)
		return 0;
	struct cred_before before = *b;
	bpf_map_delete_elem(&cred_pending, &tid);
	struct task_struct *task = bpf_get_current_task_btf();
	struct cred_ids now = {};
	fill_cred_ids(task, now.uids, now.gids, &now.caps);
	remember_euid(BPF_CORE_READ(task, tgid), now.uids[1]);
	bool changed = now.caps != before.ids.caps;
	for (int i = 0; i < 4; i++)
		changed |= now.uids[i] != before.ids.uids[i] || now.gids[i] != before.ids.gids[i];
	if (!changed) {
		count(&filtered, OSPREY_REC_CRED);
		return 0;
	}
	emit_cred(task, before.op, ctx->ret, &before.ids, &now, before.args);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int cred_x(struct sys_exit_ctx *ctx) { return cred_exit(ctx); }

#define CRED_CALL(sys, op, nargs)                                                           \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                                           \
	int cred_##sys(struct sys_enter_ctx *ctx) { return cred_enter(op, ctx, nargs); }    \
	ATTACH_ALSO(cred_x, "syscalls", sys_exit_##sys)

SEC("tracepoint/syscalls/sys_enter_setuid")
int cred_setuid(struct sys_enter_ctx *ctx) { return cred_enter(OSPREY_CRED_SETUID, ctx, 1); }
CRED_CALL(setgid, OSPREY_CRED_SETGID, 1)
CRED_CALL(setreuid, OSPREY_CRED_SETREUID, 2)
CRED_CALL(setregid, OSPREY_CRED_SETREGID, 2)
CRED_CALL(setresuid, OSPREY_CRED_SETRESUID, 3)
CRED_CALL(setresgid, OSPREY_CRED_SETRESGID, 3)
CRED_CALL(setfsuid, OSPREY_CRED_SETFSUID, 1)
CRED_CALL(setfsgid, OSPREY_CRED_SETFSGID, 1)
CRED_CALL(capset, OSPREY_CRED_CAPSET, 2)
