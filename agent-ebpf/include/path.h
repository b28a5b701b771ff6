/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Absolute path of a (dentry, vfsmount) pair, resolved in the kernel with a bounded walk — the
 * job bpf_d_path() does, which tracepoint programs may not call.
 */
#ifndef OSPREY_PATH_H
#define OSPREY_PATH_H

#include "common.h"

#define NAME_MAX_BYTES 255

static __always_inline struct mount *real_mount(struct vfsmount *vmnt)
{
	return (struct mount *)((void *)vmnt - bpf_core_field_offset(struct mount, mnt));
}

/*
 * Field offsets the walk needs. CO-RE relocations are resolved in the calling program and
 * handed to the bpf_loop callbacks, because the loader does not relocate field accesses inside
 * callback subprograms (they come out poisoned).
 */
struct path_offsets {
	__u32 mnt_root;       /* vfsmount.mnt_root */
	__u32 d_parent;       /* dentry.d_parent */
	__u32 d_name_name;    /* dentry.d_name.name */
	__u32 d_name_len;     /* dentry.d_name.len */
	__u32 mnt_parent;     /* mount.mnt_parent */
	__u32 mnt_mountpoint; /* mount.mnt_mountpoint */
	__u32 mnt;            /* mount.mnt */
	/* d_parent, d_name.len and d_name.name lie in the DENTRY_SPAN bytes from d_lo, the
	 * pointers 8-aligned from it (every kernel's struct dentry has them side by side): one read
	 * a step instead of three. */
	__u32 d_lo;
	bool d_joint;
};

#define DENTRY_SPAN 32

static __always_inline void *read_ptr(void *base, __u32 off)
{
	void *v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), base + off);
	return v;
}

static __always_inline __u32 read_u32(void *base, __u32 off)
{
	__u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), base + off);
	return v;
}

struct walk_ctx {
	struct path_offsets o;
	struct scratch *s;
	struct dentry *dentry;
	struct vfsmount *vmnt;
	struct mount *mnt;
	struct dentry *mnt_root; /* vmnt's, read once a mount */
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	__u32 depth;
	bool done;
};

/* The 8 bytes at `off` (8-aligned, below DENTRY_SPAN) of a span read into `w`. */
static __always_inline __u64 span_word(const __u64 *w, __u32 off)
{
	switch ((off >> 3) & 3) {
	case 0: return w[0];
	case 1: return w[1];
	case 2: return w[2];
	default: return w[3];
	}
}

/* A dentry's parent, name and name length. */
static __always_inline struct dentry *read_dentry(struct walk_ctx *c, struct dentry *dentry,
						   const unsigned char **name, __u32 *len)
{
	if (!c->o.d_joint) {
		*name = read_ptr(dentry, c->o.d_name_name);
		*len = read_u32(dentry, c->o.d_name_len);
		return read_ptr(dentry, c->o.d_parent);
	}
	__u64 w[DENTRY_SPAN / 8] = {};
	bpf_probe_read_kernel(w, sizeof(w), (void *)dentry + c->o.d_lo);
	__u32 at = c->o.d_name_len - c->o.d_lo;
	*name = (const unsigned char *)span_word(w, c->o.d_name_name - c->o.d_lo);
	*len = (__u32)(span_word(w, at & ~7U) >> ((at & 7) * 8));
	return (struct dentry *)span_word(w, c->o.d_parent - c->o.d_lo);
}

/* One step up the tree: records the current component's name, or crosses a mount. */
static long walk_up(__u64 i, struct walk_ctx *c)
{
	struct dentry *dentry = c->dentry;
	if (dentry == c->root_dentry && c->vmnt == c->root_mnt) {
		c->done = true;
		return 1;
	}
	const unsigned char *name;
	__u32 len;
	struct dentry *parent = read_dentry(c, dentry, &name, &len);
	__u32 at = c->depth & (OSPREY_PATH_DEPTH_MAX - 1);
	if (dentry == c->mnt_root || dentry == parent) {
		if (dentry != c->mnt_root) {
			/* pseudo or disconnected dentry: its own name is the path */
			c->s->names[at] = name;
			c->s->lens[at] = len;
			c->depth++;
			c->done = true;
			return 1;
		}
		struct mount *mparent = read_ptr(c->mnt, c->o.mnt_parent);
		if (mparent == c->mnt) {
			c->done = true; /* the namespace's root mount */
			return 1;
		}
		c->dentry = read_ptr(c->mnt, c->o.mnt_mountpoint);
		c->mnt = mparent;
		c->vmnt = (void *)mparent + c->o.mnt;
		c->mnt_root = read_ptr(c->vmnt, c->o.mnt_root);
		return 0;
	}
	c->s->names[at] = name;
	c->s->lens[at] = len;
	c->depth++;
	c->dentry = parent;
	return 0;
}

struct write_ctx {
	struct scratch *s;
	__u32 off;
	__u32 len;
	__u32 depth;
	bool trunc;
};

/* Appends "/<name>" for the i-th component counted from the top. */
static long write_down(__u64 i, struct write_ctx *c)
{
	__u32 at = (c->depth - 1 - (__u32)i) & (OSPREY_PATH_DEPTH_MAX - 1);
	__u32 n = c->s->lens[at];
	if (n > NAME_MAX_BYTES)
		n = NAME_MAX_BYTES;
	if (c->len + 1 + n > OSPREY_PATH_MAX) {
		c->trunc = true;
		return 1;
	}
	SCRATCH_DATA_AT(c->s, (c->off + c->len) & SCRATCH_MASK) = '/';
	c->len++;
	__u32 pos = (c->off + c->len) & SCRATCH_MASK;
	barrier_var(n);
	if (n > NAME_MAX_BYTES)
		return 1;
	bpf_probe_read_kernel(&SCRATCH_DATA_AT(c->s, pos), n, c->s->names[at]);
	c->len += n;
	return 0;
}

/*
 * Writes the path of (dentry, vmnt) as seen from the root (root_dentry, root_mnt) into the
 * scratch record's trailing data starting at `off`, without a NUL. Returns the number of bytes
 * written and sets *trunc when the path was deeper than OSPREY_PATH_DEPTH_MAX or longer than
 * OSPREY_PATH_MAX. A pseudo dentry (memfd, pipe, anonymous inode) yields "/<its name>", as d_path
 * does. Both walks run under bpf_loop so the verifier checks each step once.
 */
static __always_inline __u32 resolve_path(struct scratch *s, __u32 off, struct dentry *dentry,
					  struct vfsmount *vmnt, struct dentry *root_dentry,
					  struct vfsmount *root_mnt, bool *trunc)
{
	__u32 d_parent = bpf_core_field_offset(struct dentry, d_parent);
	__u32 d_name_name = bpf_core_field_offset(struct dentry, d_name.name);
	__u32 d_name_len = bpf_core_field_offset(struct dentry, d_name.len);
	__u32 lo = d_parent < d_name_name ? d_parent : d_name_name;
	lo = lo < d_name_len ? lo : d_name_len;
	__u32 hi = d_parent > d_name_name ? d_parent : d_name_name;
	bool joint = hi + 8 <= lo + DENTRY_SPAN && d_name_len + 4 <= lo + DENTRY_SPAN &&
		     !((d_parent - lo) & 7) && !((d_name_name - lo) & 7);
	struct walk_ctx w = {
		.o = {
			.mnt_root = bpf_core_field_offset(struct vfsmount, mnt_root),
			.d_parent = d_parent,
			.d_name_name = d_name_name,
			.d_name_len = d_name_len,
			.mnt_parent = bpf_core_field_offset(struct mount, mnt_parent),
			.mnt_mountpoint = bpf_core_field_offset(struct mount, mnt_mountpoint),
			.mnt = bpf_core_field_offset(struct mount, mnt),
			.d_lo = lo,
			.d_joint = joint,
		},
		.s = s,
		.dentry = dentry,
		.vmnt = vmnt,
		.mnt = real_mount(vmnt),
		.mnt_root = BPF_CORE_READ(vmnt, mnt_root),
		.root_dentry = root_dentry,
		.root_mnt = root_mnt,
	};
	bpf_loop(OSPREY_PATH_DEPTH_MAX, walk_up, &w, 0);
	if (!w.done)
		*trunc = true;

	struct write_ctx c = {.s = s, .off = off, .depth = w.depth};
	bpf_loop(w.depth, write_down, &c, 0);
	if (c.trunc)
		*trunc = true;
	if (c.len == 0) {
		SCRATCH_DATA_AT(s, off & SCRATCH_MASK) = '/';
		c.len = 1;
	}
	return c.len;
}

/* The same for a `struct path` the kernel holds. `task` must be a BTF pointer (the current
 * task, or a BTF tracepoint's): its root is read by direct loads. */
static __always_inline __u32 resolve_kpath(struct scratch *s, __u32 off, const struct path *p,
					   struct task_struct *task, bool *trunc)
{
	struct dentry *dentry = BPF_CORE_READ(p, dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(p, mnt);
	struct fs_struct *fs = task->fs;
	return resolve_path(s, off, dentry, vmnt, fs->root.dentry, fs->root.mnt, trunc);
}

/* The same for the working directory of `task` (a BTF pointer), all by direct loads. */
static __always_inline __u32 resolve_cwd(struct scratch *s, __u32 off, struct task_struct *task, bool *trunc)
{
	struct fs_struct *fs = task->fs;
	return resolve_path(s, off, fs->pwd.dentry, fs->pwd.mnt, fs->root.dentry, fs->root.mnt, trunc);
}

#endif /* OSPREY_PATH_H */
