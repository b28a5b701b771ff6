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

static __always_inline __u32 current_euid(struct task_struct *task)
{
	return BPF_CORE_READ(task, cred, euid.val);
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
	*caps = BPF_CORE_READ(c, cap_effective.val);
}

/* Flags a process that runs as root although the last known euid was not 0. */
static __always_inline void check_unexpected_root(struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 *known = bpf_map_lookup_elem(&known_euid, &tgid);
	if (!known || *known == 0 || current_euid(task) != 0)
		return;
	__u32 was = *known;
	remember_euid(tgid, 0); /* report once */
	void *rb = ring_of_this_cpu();
	struct osprey_cred *c = rb ? bpf_ringbuf_reserve(rb, sizeof(*c), 0) : 0;
	if (!c) {
		count(&loss, OSPREY_REC_CRED);
		return;
	}
	fill_hdr(&c->hdr, task, OSPREY_REC_CRED, sizeof(*c));
	c->op = OSPREY_CRED_UNEXPECTED_ROOT;
	c->ret = 0;
	__u32 uids[4], gids[4];
	__u64 caps;
	fill_cred_ids(task, uids, gids, &caps);
	c->new_uid = uids[0];
	c->new_euid = uids[1];
	c->new_suid = uids[2];
	c->new_fsuid = uids[3];
	c->new_gid = gids[0];
	c->new_egid = gids[1];
	c->new_sgid = gids[2];
	c->new_fsgid = gids[3];
	c->new_cap_effective = caps;
	/* only the effective uid before is known */
	c->old_uid = was;
	c->old_euid = was;
	c->old_suid = was;
	c->old_fsuid = was;
	c->old_gid = gids[0];
	c->old_egid = gids[1];
	c->old_sgid = gids[2];
	c->old_fsgid = gids[3];
	c->old_cap_effective = 0;
	c->arg0 = 0;
	c->arg1 = 0;
	c->arg2 = 0;
	bpf_ringbuf_submit(c, 0);
}

#endif /* OSPREY_CREDS_H */
