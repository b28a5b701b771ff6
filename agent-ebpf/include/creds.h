/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Credential bookkeeping shared by every domain: the last effective uid Osprey saw for each
 * process (from exec, fork and the credential calls), and the check that flags a process whose
 * effective uid became 0 without any of those — the mark of a kernel privilege-escalation.
 */
#ifndef OSPREY_CREDS_H
#define OSPREY_CREDS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* effective uid last seen through a known path */
} known_euid SEC(".maps");

/* `task`: a BTF pointer (the current task). */
static __always_inline __u32 current_euid(struct task_struct *task)
{
	return task->cred->euid.val; /* a BTF pointer: direct loads */
}

static __always_inline void remember_euid(__u32 tgid, __u32 euid)
{
	bpf_map_update_elem(&known_euid, &tgid, &euid, BPF_ANY);
}

static __always_inline void fill_cred_ids(struct task_struct *task, __u32 *uids, __u32 *gids, __u64 *caps)
{
	const struct cred *c = BPF_CORE_READ(task, cred);
	uids[0] = BPF_CORE_READ(c, uid.val);
	uids[1] = BPF_CORE_READ(c, euid.val);
	uids[2] = BPF_CORE_READ(c, suid.val);
	uids[3] = BPF_CORE_READ(c, fsuid.val);
	gids[0] = BPF_CORE_READ(c, gid.val);
	gids[1] = BPF_CORE_READ(c, egid.val);
	gids[2] = BPF_CORE_READ(c, sgid.val);
	gids[3] = BPF_CORE_READ(c, fsgid.val);
	*caps = cred_cap_effective(c);
}

/* Credentials before and after a change. */
struct cred_ids {
	__u32 uids[4]; /* uid, euid, suid, fsuid */
	__u32 gids[4]; /* gid, egid, sgid, fsgid */
	__u64 caps;    /* effective capabilities */
};

/* Reserves, fills and submits a credential record; a full ring is counted. */
static __always_inline void emit_cred(struct task_struct *task, __u32 op, long ret, const struct cred_ids *before,
				      const struct cred_ids *after, const __u64 *args)
{
	struct osprey_cred *c = reserve(sizeof(*c), OSPREY_REC_CRED);
	if (!c)
		return;
	fill_hdr_current(&c->hdr, OSPREY_REC_CRED, sizeof(*c));
	c->op = op;
	c->ret = ret;
	c->old_uid = before->uids[0];
	c->old_euid = before->uids[1];
	c->old_suid = before->uids[2];
	c->old_fsuid = before->uids[3];
	c->old_gid = before->gids[0];
	c->old_egid = before->gids[1];
	c->old_sgid = before->gids[2];
	c->old_fsgid = before->gids[3];
	c->old_cap_effective = before->caps;
	c->new_uid = after->uids[0];
	c->new_euid = after->uids[1];
	c->new_suid = after->uids[2];
	c->new_fsuid = after->uids[3];
	c->new_gid = after->gids[0];
	c->new_egid = after->gids[1];
	c->new_sgid = after->gids[2];
	c->new_fsgid = after->gids[3];
	c->new_cap_effective = after->caps;
	c->arg0 = args[0];
	c->arg1 = args[1];
	c->arg2 = args[2];
	submit(c);
}

/* Flags a process that runs as root although the last known euid was not 0. */
static __always_inline void check_unexpected_root(struct task_struct *task)
{
	__u32 tgid = task->tgid;
	__u32 *known = bpf_map_lookup_elem(&known_euid, &tgid);
	if (!known || *known == 0 || current_euid(task) != 0)
		return;
	__u32 was = *known;
	remember_euid(tgid, 0); /* report once */
	struct cred_ids now = {}, before = {};
	fill_cred_ids(task, now.uids, now.gids, &now.caps);
	/* only the effective uid before is known; the rest is reported as it is now */
	before = now;
	for (int i = 0; i < 4; i++)
		before.uids[i] = was;
	before.caps = 0;
	__u64 no_args[3] = {};
	emit_cred(task, OSPREY_CRED_UNEXPECTED_ROOT, 0, &before, &now, no_args);
}

#endif /* OSPREY_CREDS_H */
