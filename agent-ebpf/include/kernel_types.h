/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel types Osprey's programs read, written by hand for CO-RE.
 *
 * Only the fields we touch are declared; `preserve_access_index` makes clang record every
 * access as a relocation that libbpf/aya resolve against the running kernel's BTF, so field
 * offsets here do not matter and these definitions stay valid across kernel versions.
 * Fields that moved or were renamed between versions have a `___flavour` twin used with
 * bpf_core_field_exists().
 */
#ifndef OSPREY_KERNEL_TYPES_H
#define OSPREY_KERNEL_TYPES_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef int pid_t;
typedef unsigned short umode_t;
typedef long long loff_t;
typedef long long time64_t;
typedef __u32 dev_t;

/* Map type and flag constants come from the UAPI enum so they match the kernel. */
enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PROG_ARRAY = 3,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_CGROUP_ARRAY = 8,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	__u32 val;
} kuid_t;

typedef struct {
	__u32 val;
} kgid_t;

typedef struct {
	__u64 val;
} kernel_cap_t;

struct qstr {
	union {
		struct {
			__u32 hash;
			__u32 len;
		};
		__u64 hash_len;
	};
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct super_block {
	dev_t s_dev;
	unsigned long s_magic;
} __attribute__((preserve_access_index));

struct timespec64 {
	time64_t tv_sec;
	long tv_nsec;
} __attribute__((preserve_access_index));

struct inode {
	umode_t i_mode;
	kuid_t i_uid;
	kgid_t i_gid;
	struct super_block *i_sb;
	unsigned long i_ino;
	unsigned int __i_nlink;
	loff_t i_size;
	/* 6.11+: split seconds/nanoseconds */
	time64_t i_ctime_sec;
	__u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

/* 6.6 - 6.10 */
struct inode___timespec {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

/* up to 6.5 */
struct inode___old {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	unsigned int f_mode;
	unsigned int f_flags;
	struct path f_path;
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	struct file *vm_file;
} __attribute__((preserve_access_index));

struct kernel_siginfo {
	struct {
		int si_signo;
		int si_errno;
		int si_code;
	};
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t suid;
	kgid_t sgid;
	kuid_t euid;
	kgid_t egid;
	kuid_t fsuid;
	kgid_t fsgid;
	kernel_cap_t cap_effective;
} __attribute__((preserve_access_index));

/* Before 6.3 kernel_cap_t was two 32-bit words (_KERNEL_CAPABILITY_U32S). */
typedef struct {
	__u32 cap[2];
} kernel_cap_t___words;

struct cred___words {
	kernel_cap_t___words cap_effective;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct signal_struct {
	atomic_t live;
	int group_exit_code;
} __attribute__((preserve_access_index));

struct kernfs_node {
	u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int flags;
	pid_t pid;
	pid_t tgid;
	int exit_code;
	int exit_signal;
	u64 start_time;
	u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	const struct cred *real_cred;
	const struct cred *cred;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct files_struct *files;
	struct signal_struct *signal;
	struct css_set *cgroups;
	char comm[16];
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	struct cred *cred;
	int argc;
	int envc;
	const char *filename;
	const char *interp;
} __attribute__((preserve_access_index));

#define PF_KTHREAD 0x00200000
/* A task's saved user registers (bpf_task_pt_regs): a syscall's arguments until it returns. */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r10;
	unsigned long r8;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
} __attribute__((preserve_access_index));
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
} __attribute__((preserve_access_index));
struct pt_regs {
	struct user_pt_regs user_regs;
	__u64 orig_x0; /* x0 is the return value by the syscall's exit */
} __attribute__((preserve_access_index));
#endif

#define FMODE_WRITE 0x2        /* fmode_t: open for writing */
#define FMODE_CREATED 0x100000 /* fmode_t: the open created the file */
#define O_ACCMODE 00000003
#define O_RDONLY 00000000
#define O_WRONLY 00000001
#define O_RDWR 00000002
#define O_CREAT 00000100
#define O_TRUNC 00001000
#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
#define PROC_SUPER_MAGIC 0x9fa0
#define S_IFMT 00170000
#define S_IFDIR 0040000
#define TMPFS_MAGIC 0x01021994
#define HUGETLBFS_MAGIC 0x958458f6

#endif /* OSPREY_KERNEL_TYPES_H */
