/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The ONE definition of every record Osprey's kernel programs hand to user space.
 *
 * Included by the BPF programs (clang -target bpf) and turned into Rust by bindgen
 * (agent-common/build.rs). Rules for this file:
 *   - fixed-width types only, explicit padding, every struct's size asserted below;
 *   - a record = struct osprey_hdr + typed payload + trailing variable-length data;
 *   - variable-length data (paths, argv) lives in the trailing buffer `data[]`, addressed by
 *     struct osprey_str {off, len}, off relative to the start of `data`.
 */
#ifndef OSPREY_H
#define OSPREY_H

#ifdef __BPF__
/* BPF side: the kernel-types header already typedef'd the __uN names. */
#else
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int32_t __s32;
#endif

#define OSPREY_COMM_LEN 16

/* Bounds of the variable-length parts of a record. */
#define OSPREY_PATH_MAX 4096     /* one resolved path, NUL not included */
#define OSPREY_ARGS_MAX 8192     /* argv bytes, NUL-separated as in /proc/PID/cmdline */
#define OSPREY_FILENAME_MAX 256  /* the path as passed to execve() */
#define OSPREY_PATH_DEPTH_MAX 64 /* dentries walked when resolving a path */

/* Record type tags (osprey_hdr.type). Never reorder: append only. */
enum osprey_record_type {
	OSPREY_REC_EXEC = 1,
	OSPREY_REC_FORK = 2,
	OSPREY_REC_EXIT = 3,
	/* one past the last tag: sizes the per-type counter maps */
	OSPREY_REC_TYPE_MAX = 4,
};

/* osprey_exec.flags */
enum osprey_exec_flags {
	OSPREY_EXEC_MEMFD = 1 << 0,        /* image is a memfd (fileless) */
	OSPREY_EXEC_DELETED = 1 << 1,      /* image file had no links left at exec */
	OSPREY_EXEC_SETUID = 1 << 2,       /* exec changed the effective uid */
	OSPREY_EXEC_SETGID = 1 << 3,       /* exec changed the effective gid */
	OSPREY_EXEC_CAPS_GAINED = 1 << 4,  /* exec raised the effective capabilities */
	OSPREY_EXEC_ARGS_TRUNC = 1 << 5,   /* argv longer than OSPREY_ARGS_MAX */
	OSPREY_EXEC_PATH_TRUNC = 1 << 6,   /* executable path truncated */
	OSPREY_EXEC_CWD_TRUNC = 1 << 7,    /* cwd truncated */
	OSPREY_EXEC_CRED_UNKNOWN = 1 << 8, /* pre-exec credentials not seen: SETUID/SETGID are a guess */
};

/* osprey_fork.flags */
enum osprey_fork_flags {
	OSPREY_FORK_THREAD = 1 << 0, /* the child is a thread of the parent's process */
};

/* osprey_exit.flags */
enum osprey_exit_flags {
	OSPREY_EXIT_THREAD = 1 << 0, /* a thread exited, the process lives on */
};

/* osprey_config.flags: what the kernel programs report */
enum osprey_config_flags {
	OSPREY_CFG_THREADS = 1 << 0, /* report thread clone/exit, not only processes */
};

/* A slice of a record's trailing data. */
struct osprey_str {
	__u16 off;
	__u16 len;
};

/* Common header of every record. */
struct osprey_hdr {
	__u32 type;            /* enum osprey_record_type */
	__u32 size;            /* whole record, header and trailing data included */
	__u64 ktime_ns;        /* bpf_ktime_get_boot_ns() when the event happened */
	__u32 cpu;
	__u32 pid;             /* process id (tgid) */
	__u32 tid;             /* thread id */
	__u32 ppid;            /* real parent's process id */
	__u64 start_ns;        /* process start, ns since boot (start_boottime of the group leader) */
	__u64 parent_start_ns; /* the same for the real parent */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u64 cgroup_id;       /* cgroup v2 id */
	char comm[OSPREY_COMM_LEN];
};

/* OSPREY_REC_EXEC: a process replaced its image (after the exec succeeded). */
struct osprey_exec {
	struct osprey_hdr hdr;
	__u64 exe_ino;
	__u64 exe_ctime_ns;
	__u64 exe_size;
	__u32 exe_dev;      /* kernel dev_t of the image's filesystem */
	__u32 exe_mode;     /* inode mode: type and permission bits */
	__u32 exe_uid;      /* image file owner */
	__u32 exe_gid;
	__u32 flags;        /* enum osprey_exec_flags */
	__u32 argc;
	__u32 suid;
	__u32 sgid;
	__u32 old_uid;      /* credentials before the exec (valid unless CRED_UNKNOWN) */
	__u32 old_euid;
	__u32 old_gid;
	__u32 old_egid;
	__u32 old_pid;      /* pid before exec (differs when a thread execs) */
	__u32 _pad0;
	__u64 cap_effective;
	__u64 old_cap_effective;
	struct osprey_str exe_path;  /* the image as the kernel resolved it */
	struct osprey_str filename;  /* the path given to execve() */
	struct osprey_str args;      /* argv, NUL-separated */
	struct osprey_str cwd;
	__u8 data[];
};

/* OSPREY_REC_FORK: a task was cloned; the header describes the parent (current). */
struct osprey_fork {
	struct osprey_hdr hdr;
	__u32 child_pid;
	__u32 child_tid;
	__u64 child_start_ns;
	__u32 flags; /* enum osprey_fork_flags */
	__u32 _pad0;
};

/* OSPREY_REC_EXIT: a process (or, with OSPREY_CFG_THREADS, a thread) ended. */
struct osprey_exit {
	struct osprey_hdr hdr;
	__u32 exit_code; /* raw wait status: (status & 0xff) << 8 | signal | 0x80 core */
	__u32 flags;     /* enum osprey_exit_flags */
};

/* Settings user space writes into the CONFIG array (one entry, key 0). */
struct osprey_config {
	__u32 flags;      /* enum osprey_config_flags */
	__u32 agent_pid;  /* the agent's own process id */
};

/* Sizes are part of the ABI between kernel and user space. */
_Static_assert(sizeof(struct osprey_str) == 4, "osprey_str");
_Static_assert(sizeof(struct osprey_hdr) == 88, "osprey_hdr");
_Static_assert(sizeof(struct osprey_exec) == 88 + 112, "osprey_exec");
_Static_assert(sizeof(struct osprey_fork) == 88 + 24, "osprey_fork");
_Static_assert(sizeof(struct osprey_exit) == 88 + 8, "osprey_exit");
_Static_assert(sizeof(struct osprey_config) == 8, "osprey_config");

/* Largest record a program may emit: the exec record with all its trailing data. */
#define OSPREY_EXEC_DATA_MAX (OSPREY_PATH_MAX + OSPREY_FILENAME_MAX + OSPREY_ARGS_MAX + OSPREY_PATH_MAX)
#define OSPREY_RECORD_MAX (sizeof(struct osprey_exec) + OSPREY_EXEC_DATA_MAX)

#endif /* OSPREY_H */
