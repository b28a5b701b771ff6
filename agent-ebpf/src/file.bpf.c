/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * File telemetry: opens for writing (and creation), the first write through each open file,
 * unlink/rmdir, rename, chmod, chown, truncate, link/symlink, and opens for reading of watched
 * files.
 *
 * This kernel has no kprobes, fentry or BPF-LSM and no VFS tracepoints, so the hooks are
 * syscall tracepoints: arguments are saved at sys_enter (keyed by thread), the event is built
 * at sys_exit when the call succeeded. Opens and fd-based calls are resolved through the fd to
 * the struct file (a canonical path); name-based calls join the directory (dirfd or cwd) with
 * the name as given (flagged OSPREY_FILE_PATH_JOINED; user space normalises . and ..).
 *
 * In-kernel filters: per-op enable bits, a path-prefix trie (exclude / include for writes),
 * an inode watch list for reads (the file itself or any of its first ancestors), and one
 * MODIFY event per open file description. Everything filtered is counted. Repeats are folded
 * (fold.h): the same operation by the same process with the same attributes on the same
 * file(s) as a record sent less than osprey_config.file_fold_ns ago.
 */
#include "common.h"
#include "creds.h"
#include "fold.h"
#include "path.h"
#include "syscalls.h"

/* Inodes on the watch list (files, or directories covering everything below them). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct osprey_inode_key);
	__type(value, __u32); /* enum osprey_watch_kind */
} watch SEC(".maps");

/* Devices (superblocks) with at least one inode on the watch list: an open of a file elsewhere
 * (/proc, /sys, a tmpfs, …) skips the ancestor walk. Filled with `watch`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} watch_devs SEC(".maps");

/* Path prefixes (bytes) → enum osprey_watch_kind, longest prefix wins. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, 1); /* BPF_F_NO_PREALLOC, required for LPM tries */
	__type(key, struct prefix_key);
	__type(value, __u32);
} prefixes SEC(".maps");

/* Open file descriptions reported as opened for writing → whether a write was seen yet. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct file * */
	__type(value, __u32);
} open_writes SEC(".maps");

/*
 * Folding key: the process and operation, and a 64-bit hash of what makes two records of it
 * the same: the attributes the operation sets (open flags, chmod's mode bits that matter to
 * detection, chown's owner, truncate's length) and the object: an open file's dentry and
 * mount, or a name as the call gave it with the directory it is relative to (dentry and mount
 * of the dirfd or the cwd). The key is computed before the path is resolved, so a folded
 * record costs no path walk. Two different objects folding together needs a 64-bit collision
 * within one process and one window, and the fold is counted either way.
 */
struct file_fold_key {
	__u32 tgid;
	__u32 op;
	__u64 hash;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct file_fold_key);
	__type(value, struct fold_state);
} file_fold SEC(".maps");

static __always_inline __u64 mix(__u64 h, __u64 w)
{
	h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 29);
}

struct hash_ctx {
	struct scratch *s;
	__u32 len;
	__u64 h;
};

/* bpf_loop callback: mixes the i-th 32 bytes of the scratch data (those below len) into h, 8
 * at a time: the same hash as a word a step, a quarter of the callback calls. */
static long hash_words(__u64 i, struct hash_ctx *c)
{
	__u32 at = (__u32)i * 32;
	if (at >= c->len)
		return 1;
	const __u64 *w = (const __u64 *)&SCRATCH_DATA_AT(c->s, at & SCRATCH_MASK);
	__u32 rest = c->len - at;
	__u64 h = c->h;
#pragma unroll
	for (int k = 0; k < 4; k++) {
		if (rest == 0)
			break;
		__u64 v = w[k];
		if (rest < 8) {
			v &= (1ULL << (rest * 8)) - 1;
			rest = 0;
		} else {
			rest -= 8;
		}
		h = mix(h, v);
	}
	c->h = h;
	return rest == 0;
}

/* chmod's mode bits in the key: setuid, setgid, sticky, the three execute bits, world-writable.
 * Modes that differ only in read bits and owner or group write fold together (a loop over
 * every mode is 4,096 keys otherwise). */
#define CHMOD_FOLD_BITS (07000 | 0111 | 0002)

/* Starts a key: this process, `op`, and the attributes `a` gives the operation. */
static __always_inline void fold_key_start(struct file_fold_key *k, __u32 op, const struct saved_args *a)
{
	k->tgid = bpf_get_current_pid_tgid() >> 32;
	k->op = op;
	__u64 h = mix(0, a->flags);
	if (op == OSPREY_FILE_CHMOD)
		h = mix(h, a->mode & CHMOD_FOLD_BITS);
	else if (op == OSPREY_FILE_CHOWN)
		h = mix(h, (__u64)a->uid << 32 | a->gid);
	else if (op == OSPREY_FILE_TRUNCATE)
		h = mix(h, a->size);
	k->hash = h;
}

/* Mixes a kernel path (dentry, mount) into the key: the struct path in one probe read (its
 * pointers must be plain numbers to be hashed; the verifier allows no arithmetic on BTF
 * pointers). */
static __always_inline void fold_key_path(struct file_fold_key *k, const struct path *p)
{
	struct path v = {};
	bpf_probe_read_kernel(&v, sizeof(v), p);
	k->hash = mix(mix(k->hash, (__u64)v.dentry), (__u64)v.mnt);
}

/* The key of `op` on an open file: its open flags and its path. */
static __always_inline void fold_key_file(struct file_fold_key *k, __u32 op, __u32 flags, struct file *file)
{
	struct saved_args a = {.flags = flags};
	fold_key_start(k, op, &a);
	fold_key_path(k, &file->f_path);
}

/* Mixes a user name (as read into scratch data at 0) and what it is relative to into the key;
 * `verbatim`: a symlink target, relative to nothing. */
static __always_inline void fold_key_name(struct file_fold_key *k, struct scratch *s, struct task_struct *task,
					  int dfd, const char *name, bool verbatim)
{
	long n = bpf_probe_read_user_str(&SCRATCH_DATA_AT(s, 0), OSPREY_PATH_MAX, name);
	if (n <= 0) {
		k->hash = mix(k->hash, 0);
		return;
	}
	if (!verbatim && SCRATCH_DATA_AT(s, 0) != '/') {
		if (dfd == AT_FDCWD) {
			fold_key_path(k, &task->fs->pwd); /* task->fs by a direct load */
		} else {
			struct file *dir = fd_file(task, dfd);
			if (dir)
				fold_key_path(k, &dir->f_path);
			else
				k->hash = mix(k->hash, 0);
		}
	}
	struct hash_ctx c = {.s = s, .len = n, .h = k->hash};
	bpf_loop(OSPREY_PATH_MAX / 32, hash_words, &c, 0);
	k->hash = c.h;
}

/* The fold window (osprey_config.file_fold_ns); 0: file records never fold. */
static __always_inline __u64 file_fold_window(void)
{
	struct osprey_config *cfg = settings();
	return cfg ? cfg->file_fold_ns : 0;
}

/* Whether the record of key `k` folds (counted): one like it was sent less than the window ago. */
static __always_inline bool file_folds(struct file_fold_key *k)
{
	__u64 window = file_fold_window();
	return window && fold_peek(&file_fold, k, window, OSPREY_REC_FILE);
}

#define WATCH_ANCESTORS 8

static __always_inline bool op_enabled(__u32 op)
{
	struct osprey_config *cfg = settings();
	return cfg && (cfg->file_ops & (1u << (op & 31)));
}

/*
 * Watch bits of the file's inode or of any of its first WATCH_ANCESTORS directories. The walk
 * follows d_parent, which never leaves the file's superblock, so every key has the file's
 * device: read once, and checked against watch_devs before walking at all.
 */
static __always_inline __u32 watched(struct file *file)
{
	struct super_block *sb = BPF_CORE_READ(file, f_inode, i_sb);
	__u64 dev, magic;
	read_pair(sb, bpf_core_field_offset(struct super_block, s_dev),
		  bpf_core_field_offset(struct super_block, s_magic), &dev, &magic);
	struct dentry *d = 0;
	__u32 kind = 0;
	/* /proc/PID/mem of any process */
	if (magic == PROC_SUPER_MAGIC) {
		d = BPF_CORE_READ(file, f_path.dentry);
		char name[4] = {};
		bpf_probe_read_kernel(name, sizeof(name), BPF_CORE_READ(d, d_name.name));
		if (name[0] == 'm' && name[1] == 'e' && name[2] == 'm' && name[3] == 0)
			kind |= OSPREY_WATCH_READ;
	}
	struct osprey_inode_key k = {.dev = (__u32)dev}; /* dev_t: the low half, little-endian */
	if (!bpf_map_lookup_elem(&watch_devs, &k.dev))
		return kind;
	if (!d)
		d = BPF_CORE_READ(file, f_path.dentry);
	for (int i = 0; i < WATCH_ANCESTORS; i++) {
		__u64 inode, parent;
		read_pair(d, bpf_core_field_offset(struct dentry, d_inode),
			  bpf_core_field_offset(struct dentry, d_parent), &inode, &parent);
		k.ino = BPF_CORE_READ((struct inode *)inode, i_ino);
		__u32 *bits = bpf_map_lookup_elem(&watch, &k);
		if (bits)
			kind |= *bits;
		if ((struct dentry *)parent == d)
			break;
		d = (struct dentry *)parent;
	}
	return kind;
}

/* Watch bits of the longest configured prefix of the path at data offset `off`. */
static __always_inline __u32 prefix_kind(struct scratch *s, __u32 off, __u32 len)
{
	if (len > PREFIX_MAX)
		len = PREFIX_MAX;
	s->key.prefixlen = len * 8;
	bpf_probe_read_kernel(s->key.data, PREFIX_MAX, &SCRATCH_DATA_AT(s, off & SCRATCH_MASK));
	__u32 *kind = bpf_map_lookup_elem(&prefixes, &s->key);
	return kind ? *kind : 0;
}

/* Whether a write-type event on this path passes the include/exclude filters. */
static __always_inline bool write_wanted(__u32 kind)
{
	if (kind & OSPREY_WATCH_PROTECT)
		return true;
	if (kind & OSPREY_WATCH_WRITE_EXCLUDE)
		return false;
	struct osprey_config *cfg = settings();
	if (cfg && (cfg->flags & OSPREY_CFG_WRITE_INCLUDE))
		return kind & OSPREY_WATCH_WRITE_INCLUDE;
	return true;
}

static __always_inline void file_identity(struct osprey_file *f, struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	f->ino = BPF_CORE_READ(inode, i_ino);
	f->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	f->mode = BPF_CORE_READ(inode, i_mode);
	f->uid = BPF_CORE_READ(inode, i_uid.val);
	f->gid = BPF_CORE_READ(inode, i_gid.val);
	f->size = BPF_CORE_READ(inode, i_size);
}

/* Starts a file record in scratch space. */
static __always_inline struct osprey_file *file_rec(struct scratch *s, __u32 op, long ret)
{
	struct osprey_file *f = SCRATCH_REC(s, struct osprey_file);
	__builtin_memset(f, 0, sizeof(*f));
	f->op = op;
	f->ret = ret;
	return f;
}

/* Sends a file record built in scratch space, that did not fold under key `k`; `kind`: its
 * watch bits (self-protected paths never fold). */
static __always_inline void file_emit(struct osprey_file *f, struct task_struct *task, __u32 len, __u32 kind,
				      struct file_fold_key *k)
{
	check_unexpected_root(task);
	__s64 before = 0;
	struct fold_state *st = 0;
	if (file_fold_window() && !(kind & OSPREY_WATCH_PROTECT))
		st = fold_sent(&file_fold, k, &before);
	f->folded = (__u32)before;
	fill_hdr_current(&f->hdr, OSPREY_REC_FILE, sizeof(*f) + (len & (SCRATCH_DATA - 1)));
	if (!emit_scratch(f, sizeof(*f), len, OSPREY_REC_FILE))
		fold_return(st, before); /* counted lost; the next one carries them */
}

/* Reports `op` on an open file (canonical path through the struct file), unless it folds.
 * Returns 1 when it was reported or folded, 0 when filtered out. */
static __always_inline int report_file(struct file *file, __u32 op, long ret, __u32 flags,
				       __u32 kind)
{
	struct file_fold_key k;
	fold_key_file(&k, op, flags, file);
	if (file_folds(&k))
		return 1;
	struct scratch *s = scratch_of_this_cpu();
	if (!s)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct osprey_file *f = file_rec(s, op, ret);
	bool trunc = false;
	__u32 len = resolve_kpath(s, 0, &file->f_path, task, &trunc);
	kind |= prefix_kind(s, 0, len);
	if (!write_wanted(kind)) {
		count(&filtered, OSPREY_REC_FILE);
		return 0;
	}
	file_identity(f, file);
	f->flags = flags;
	f->path.len = len;
	f->pflags = (trunc ? OSPREY_FILE_PATH_TRUNC : 0) | ((kind & OSPREY_WATCH_READ) ? OSPREY_FILE_WATCHED : 0);
	file_emit(f, task, len, kind, &k);
	return 1;
}

/* Syscall numbers of the file operations read at exit (the architecture's own table), and the
 * saved user registers that hold their first five arguments. */
#if defined(__TARGET_ARCH_x86)
enum {
	NR_truncate = 76, NR_ftruncate = 77, NR_rename = 82, NR_rmdir = 84, NR_link = 86,
	NR_unlink = 87, NR_symlink = 88, NR_chmod = 90, NR_fchmod = 91, NR_chown = 92,
	NR_fchown = 93, NR_lchown = 94, NR_fchownat = 260, NR_unlinkat = 263, NR_renameat = 264,
	NR_linkat = 265, NR_symlinkat = 266, NR_fchmodat = 268, NR_renameat2 = 316,
	NR_fchmodat2 = 452, NR_open = 2, NR_creat = 85, NR_openat = 257, NR_openat2 = 437,
};
#define SYSCALL_ARGS(r, a) do { a[0] = r->di; a[1] = r->si; a[2] = r->dx; a[3] = r->r10; a[4] = r->r8; } while (0)
#elif defined(__TARGET_ARCH_arm64)
/* asm-generic numbers; the calls arm64 lacks (chmod, rename, ...) get numbers no call has */
enum {
	NR_unlinkat = 35, NR_symlinkat = 36, NR_linkat = 37, NR_truncate = 45, NR_ftruncate = 46,
	NR_fchmod = 52, NR_fchmodat = 53, NR_fchownat = 54, NR_fchown = 55, NR_renameat2 = 276,
	NR_fchmodat2 = 452,
	NR_renameat = -2, NR_rename = -3, NR_rmdir = -4, NR_link = -5, NR_unlink = -6,
	NR_symlink = -7, NR_chmod = -8, NR_chown = -9, NR_lchown = -10,
	NR_openat = 56, NR_openat2 = 437, NR_open = -11, NR_creat = -12,
};
#define SYSCALL_ARGS(r, a) do { a[0] = r->orig_x0; a[1] = r->user_regs.regs[1]; a[2] = r->user_regs.regs[2]; \
				a[3] = r->user_regs.regs[3]; a[4] = r->user_regs.regs[4]; } while (0)
#else
#error "file operations read at exit: no syscall table for this architecture"
#endif

/* The returning syscall's first five arguments, from the current task's saved user registers
 * (direct loads: bpf_task_pt_regs gives a BTF pointer). */
static __always_inline void syscall_args(__u64 x[5])
{
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	SYSCALL_ARGS(r, x);
}

/* The open flags of the open-family syscall `nr` that is returning; false for another. */
static __always_inline bool open_flags_at_exit(long nr, __u32 *flags)
{
	__u64 x[5];
	syscall_args(x);
	switch (nr) {
	case NR_openat:
		*flags = x[2];
		return true;
	case NR_open:
		*flags = x[1];
		return true;
	case NR_creat:
		*flags = O_CREAT | O_WRONLY | O_TRUNC;
		return true;
	case NR_openat2: {
		__u64 how = 0; /* struct open_how { u64 flags; ... } */
		bpf_probe_read_user(&how, sizeof(how), (void *)x[2]);
		*flags = how;
		return true;
	}
	default:
		return false;
	}
}

static __always_inline int on_open_exit(long nr, long ret)
{
	if (ret < 0)
		return 0;
	__u32 flags;
	if (!open_flags_at_exit(nr, &flags))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = fd_file(task, ret);
	if (!file)
		return 0;
	bool writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	if (!writing) {
		__u32 kind = watched(file);
		if (!(kind & OSPREY_WATCH_READ) || !op_enabled(OSPREY_FILE_READ))
			return 0; /* unwatched reads are not events: not counted either */
		struct file_fold_key k;
		fold_key_file(&k, OSPREY_FILE_READ, flags, file);
		if (file_folds(&k))
			return 0;
		struct scratch *s = scratch_of_this_cpu();
		if (!s)
			return 0;
		struct osprey_file *f = file_rec(s, OSPREY_FILE_READ, ret);
		bool trunc = false;
		__u32 len = resolve_kpath(s, 0, &file->f_path, task, &trunc);
		file_identity(f, file);
		f->flags = flags;
		f->path.len = len;
		f->pflags = OSPREY_FILE_WATCHED | (trunc ? OSPREY_FILE_PATH_TRUNC : 0);
		file_emit(f, task, len, kind, &k);
		return 0;
	}
	bool created = BPF_CORE_READ(file, f_mode) & FMODE_CREATED;
	__u32 op = created ? OSPREY_FILE_CREATE : OSPREY_FILE_OPEN_WRITE;
	if (!op_enabled(op)) {
		count(&filtered, OSPREY_REC_FILE);
		return 0;
	}
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != 0100000 /* S_IFREG */) {
		count(&filtered, OSPREY_REC_FILE); /* devices, fifos, sockets */
		return 0;
	}
	/* tracked for its first write (MODIFY) when it can be written: O_RDONLY|O_TRUNC cannot */
	if (report_file(file, op, ret, flags, watched(file)) && (BPF_CORE_READ(file, f_mode) & FMODE_WRITE)) {
		__u64 key = (__u64)file;
		__u32 written = 0;
		bpf_map_update_elem(&open_writes, &key, &written, BPF_ANY);
	}
	return 0;
}

/* First write through a reported open file description → MODIFY; later ones are counted. */
static __always_inline int on_write(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = fd_file(task, fd);
	if (!file)
		return 0;
	__u64 key = (__u64)file;
	__u32 *written = bpf_map_lookup_elem(&open_writes, &key);
	if (!written)
		return 0; /* not a file we reported (socket, pipe, excluded path) */
	if (*written) {
		count(&filtered, OSPREY_REC_FILE);
		return 0;
	}
	*written = 1;
	if (!op_enabled(OSPREY_FILE_MODIFY)) {
		count(&filtered, OSPREY_REC_FILE);
		return 0;
	}
	report_file(file, OSPREY_FILE_MODIFY, 0, BPF_CORE_READ(file, f_flags), 0);
	return 0;
}

/*
 * Writes `name` (a user pointer) as an absolute path at data offset `off`: as given when it
 * starts with '/', else joined to the directory `dfd` refers to (or the cwd for AT_FDCWD).
 * *base is the length of that directory's part ("/dir/"), 0 for a name as given; when it is
 * not 0 on the call, the same directory's part lies at data offset 0 (the first name of a
 * rename or link relative to the same dfd) and is copied instead of walked again.
 */
static __always_inline __u32 put_user_path(struct scratch *s, __u32 off, struct task_struct *task,
					   int dfd, const char *name, __u32 *pflags,
					   __u32 joined_flag, __u32 trunc_flag, __u32 *base)
{
	char first = 0;
	bpf_probe_read_user(&first, 1, name);
	__u32 len = 0;
	if (first != '/' && *base) {
		/* masked for the verifier: a base is at most OSPREY_PATH_MAX + 1 bytes */
		len = *base & (2 * OSPREY_PATH_MAX - 1);
		bpf_probe_read_kernel(&SCRATCH_DATA_AT(s, off & SCRATCH_MASK), len, &SCRATCH_DATA_AT(s, 0));
		*pflags |= joined_flag;
	} else if (first != '/') {
		bool trunc = false;
		if (dfd == AT_FDCWD) {
			len = resolve_cwd(s, off, task, &trunc);
		} else {
			struct file *dir = fd_file(task, dfd);
			if (dir)
				len = resolve_kpath(s, off, &dir->f_path, task, &trunc);
		}
		if (trunc)
			*pflags |= trunc_flag;
		if (len == 1)
			len = 0; /* the base is "/" itself */
		SCRATCH_DATA_AT(s, (off + len) & SCRATCH_MASK) = '/';
		len++;
		*pflags |= joined_flag;
		*base = trunc ? 0 : len; /* a truncated base is walked again, to flag it again */
	} else {
		*base = 0;
	}
	long n = bpf_probe_read_user_str(&SCRATCH_DATA_AT(s, (off + len) & SCRATCH_MASK), OSPREY_PATH_MAX,
					 name);
	if (n > 0)
		len += n - 1;
	if (n == OSPREY_PATH_MAX)
		*pflags |= trunc_flag;
	return len;
}

/*
 * The arguments of the name-based syscall `nr` that is returning (syscall_args), in the form
 * the rest of the exit path takes. False for a syscall that is not one of them.
 */
static __always_inline bool args_at_exit(long nr, struct saved_args *a)
{
	__u64 x[5];
	syscall_args(x);
	__builtin_memset(a, 0, sizeof(*a));
	a->dfd = AT_FDCWD;
	a->dfd2 = AT_FDCWD;
	a->fd = -1;
	switch (nr) {
	case NR_unlinkat:
		a->op = OSPREY_FILE_UNLINK, a->dfd = x[0], a->name = (void *)x[1], a->flags = x[2];
		break;
	case NR_unlink:
		a->op = OSPREY_FILE_UNLINK, a->name = (void *)x[0];
		break;
	case NR_rmdir:
		a->op = OSPREY_FILE_UNLINK, a->name = (void *)x[0], a->flags = AT_REMOVEDIR;
		break;
	case NR_renameat2:
		a->flags = x[4];
		/* fall through */
	case NR_renameat:
		a->op = OSPREY_FILE_RENAME, a->dfd = x[0], a->name = (void *)x[1], a->dfd2 = x[2],
		a->name2 = (void *)x[3];
		break;
	case NR_rename:
		a->op = OSPREY_FILE_RENAME, a->name = (void *)x[0], a->name2 = (void *)x[1];
		break;
	case NR_linkat:
		a->op = OSPREY_FILE_LINK, a->dfd = x[0], a->name = (void *)x[1], a->dfd2 = x[2],
		a->name2 = (void *)x[3], a->flags = x[4];
		break;
	case NR_link:
		a->op = OSPREY_FILE_LINK, a->name = (void *)x[0], a->name2 = (void *)x[1];
		break;
	case NR_symlinkat:
		a->op = OSPREY_FILE_SYMLINK, a->name = (void *)x[0], a->dfd2 = x[1], a->name2 = (void *)x[2];
		break;
	case NR_symlink:
		a->op = OSPREY_FILE_SYMLINK, a->name = (void *)x[0], a->name2 = (void *)x[1];
		break;
	case NR_chmod:
		a->op = OSPREY_FILE_CHMOD, a->name = (void *)x[0], a->mode = x[1];
		break;
	case NR_fchmodat:
	case NR_fchmodat2:
		a->op = OSPREY_FILE_CHMOD, a->dfd = x[0], a->name = (void *)x[1], a->mode = x[2];
		break;
	case NR_fchmod:
		a->op = OSPREY_FILE_CHMOD, a->fd = x[0], a->mode = x[1];
		break;
	case NR_chown:
	case NR_lchown:
		a->op = OSPREY_FILE_CHOWN, a->name = (void *)x[0], a->uid = x[1], a->gid = x[2];
		break;
	case NR_fchownat:
		a->op = OSPREY_FILE_CHOWN, a->dfd = x[0], a->name = (void *)x[1], a->uid = x[2], a->gid = x[3];
		break;
	case NR_fchown:
		a->op = OSPREY_FILE_CHOWN, a->fd = x[0], a->uid = x[1], a->gid = x[2];
		break;
	case NR_truncate:
		a->op = OSPREY_FILE_TRUNCATE, a->name = (void *)x[0], a->size = x[1];
		break;
	case NR_ftruncate:
		a->op = OSPREY_FILE_TRUNCATE, a->fd = x[0], a->size = x[1];
		break;
	default:
		return false;
	}
	return true;
}

/* Name-based operations (unlink, rmdir, rename, chmod, chown, truncate, link, symlink). */
static __always_inline int on_path_exit(long nr, long ret)
{
	if (ret < 0)
		return 0;
	struct saved_args args;
	if (!args_at_exit(nr, &args))
		return 0;
	__u32 op = args.op;
	if (op == OSPREY_FILE_UNLINK && (args.flags & AT_REMOVEDIR))
		op = OSPREY_FILE_RMDIR;
	if (!op_enabled(op)) {
		count(&filtered, OSPREY_REC_FILE);
		return 0;
	}
	struct scratch *s = scratch_of_this_cpu();
	if (!s)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = 0;
	struct file_fold_key k;
	fold_key_start(&k, op, &args);
	if (args.fd >= 0) {
		file = fd_file(task, args.fd);
		if (!file)
			return 0;
		fold_key_path(&k, &file->f_path);
	} else if (file_fold_window()) { /* names are read and hashed only to fold */
		fold_key_name(&k, s, task, args.dfd, args.name, op == OSPREY_FILE_SYMLINK);
		if (args.name2)
			fold_key_name(&k, s, task, args.dfd2, args.name2, false);
	}
	if (file_folds(&k))
		return 0;
	struct osprey_file *f = file_rec(s, op, ret);
	__u32 pflags = 0;
	__u32 len;
	__u32 base = 0; /* the first name's directory part, reused by the second (put_user_path) */
	if (file) {
		/* fchmod, fchown, ftruncate: the file behind the fd */
		bool trunc = false;
		len = resolve_kpath(s, 0, &file->f_path, task, &trunc);
		if (trunc)
			pflags |= OSPREY_FILE_PATH_TRUNC;
		file_identity(f, file);
	} else if (op == OSPREY_FILE_SYMLINK) {
		/* the target is stored verbatim, not resolved */
		long n = bpf_probe_read_user_str(&SCRATCH_DATA_AT(s, 0), OSPREY_PATH_MAX, args.name);
		len = n > 0 ? n - 1 : 0;
	} else {
		len = put_user_path(s, 0, task, args.dfd, args.name, &pflags, OSPREY_FILE_PATH_JOINED,
				    OSPREY_FILE_PATH_TRUNC, &base);
	}
	if (len > OSPREY_PATH_MAX * 2 + 1)
		len = OSPREY_PATH_MAX * 2 + 1;
	f->path.len = len;
	__u32 off = len;
	__u32 kind = prefix_kind(s, 0, len);
	if (args.name2) {
		if (args.dfd2 != args.dfd)
			base = 0;
		__u32 len2 = put_user_path(s, off, task, args.dfd2, args.name2, &pflags,
					   OSPREY_FILE_PATH2_JOINED, OSPREY_FILE_PATH2_TRUNC, &base);
		if (len2 > OSPREY_PATH_MAX * 2 + 1)
			len2 = OSPREY_PATH_MAX * 2 + 1;
		f->path2.off = off;
		f->path2.len = len2;
		kind |= prefix_kind(s, off, len2);
		off += len2;
	}
	if (!write_wanted(kind)) {
		count(&filtered, OSPREY_REC_FILE);
		return 0;
	}
	f->pflags = pflags;
	f->flags = args.flags;
	if (op == OSPREY_FILE_CHMOD)
		f->mode = args.mode;
	if (op == OSPREY_FILE_CHOWN) {
		f->uid = args.uid;
		f->gid = args.gid;
	}
	if (op == OSPREY_FILE_TRUNCATE)
		f->size = args.size;
	file_emit(f, task, off, kind, &k);
	return 0;
}

/* opens: the exit program reads the flags from the saved registers (open_flags_at_exit) */
SEC("tracepoint/syscalls/sys_exit_openat")
int file_open_x(struct sys_exit_ctx *ctx) { return on_open_exit(ctx->nr, ctx->ret); }
ATTACH_ALSO(file_open_x, "syscalls", sys_exit_open)
ATTACH_ALSO(file_open_x, "syscalls", sys_exit_creat)
ATTACH_ALSO(file_open_x, "syscalls", sys_exit_openat2)

/* writes and closes */
SEC("tracepoint/syscalls/sys_enter_write")
int file_write(struct sys_enter_ctx *ctx) { return on_write(ctx->args[0]); }
ATTACH_ALSO(file_write, "syscalls", sys_enter_pwrite64)
ATTACH_ALSO(file_write, "syscalls", sys_enter_writev)
ATTACH_ALSO(file_write, "syscalls", sys_enter_pwritev)
SEC("tracepoint/syscalls/sys_enter_close")
int file_close(struct sys_enter_ctx *ctx)
{
	struct file *file = fd_file(bpf_get_current_task_btf(), ctx->args[0]);
	/* only files opened for writing are ever in open_writes: skip the map for the rest */
	if (file && (BPF_CORE_READ(file, f_mode) & FMODE_WRITE)) {
		__u64 key = (__u64)file;
		bpf_map_delete_elem(&open_writes, &key);
	}
	return 0;
}

/*
 * Name-based operations: one exit program on every such syscall, which reads the call's
 * arguments from the task's saved user registers (they are the syscall's arguments until it
 * returns) by its number. No enter program: one program a call instead of two, and nothing
 * to hand over between them. An operation whose syscall this architecture lacks (chmod on
 * arm64, fchmodat2 before 6.6) has no tracepoint, and is skipped at attach.
 */
SEC("tracepoint/syscalls/sys_exit_unlinkat")
int file_path_x(struct sys_exit_ctx *ctx) { return on_path_exit(ctx->nr, ctx->ret); }
#define PATH_OP_EXIT(sys) ATTACH_ALSO(file_path_x, "syscalls", sys_exit_##sys)
PATH_OP_EXIT(unlink)
PATH_OP_EXIT(rmdir)
PATH_OP_EXIT(renameat2)
PATH_OP_EXIT(renameat)
PATH_OP_EXIT(rename)
PATH_OP_EXIT(linkat)
PATH_OP_EXIT(link)
PATH_OP_EXIT(symlinkat)
PATH_OP_EXIT(symlink)
PATH_OP_EXIT(chmod)
PATH_OP_EXIT(fchmodat)
PATH_OP_EXIT(fchmodat2)
PATH_OP_EXIT(fchmod)
PATH_OP_EXIT(chown)
PATH_OP_EXIT(lchown)
PATH_OP_EXIT(fchownat)
PATH_OP_EXIT(fchown)
PATH_OP_EXIT(truncate)
PATH_OP_EXIT(ftruncate)
