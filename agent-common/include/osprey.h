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
	OSPREY_REC_FILE = 4,
	OSPREY_REC_CRED = 5,
	OSPREY_REC_SYSTEM = 6,
	OSPREY_REC_NET = 7,
	OSPREY_REC_DNS = 8,
	/* one past the last tag: sizes the per-type counter maps */
	OSPREY_REC_TYPE_MAX = 9,
};

/* osprey_file.op: what happened to a file. */
enum osprey_file_op {
	OSPREY_FILE_OPEN_WRITE = 1, /* opened for writing (O_WRONLY/O_RDWR/O_TRUNC) */
	OSPREY_FILE_CREATE = 2,     /* an open created the file */
	OSPREY_FILE_MODIFY = 3,     /* first write through one open file description */
	OSPREY_FILE_READ = 4,       /* opened for reading, and the path is watched */
	OSPREY_FILE_UNLINK = 5,
	OSPREY_FILE_RMDIR = 6,
	OSPREY_FILE_RENAME = 7,     /* path -> path2 */
	OSPREY_FILE_CHMOD = 8,      /* new mode in `mode` */
	OSPREY_FILE_CHOWN = 9,      /* new owner in uid/gid (-1: unchanged) */
	OSPREY_FILE_TRUNCATE = 10,  /* new length in `size` */
	OSPREY_FILE_LINK = 11,      /* hard link: path (existing) -> path2 (new) */
	OSPREY_FILE_SYMLINK = 12,   /* path2 (new link) points to path (target, verbatim) */
	OSPREY_FILE_OP_MAX = 13,
};

/* osprey_file.pflags */
enum osprey_file_flags {
	OSPREY_FILE_PATH_TRUNC = 1 << 0,  /* path truncated */
	OSPREY_FILE_PATH2_TRUNC = 1 << 1, /* path2 truncated */
	OSPREY_FILE_PATH_JOINED = 1 << 2, /* path = directory + "/" + name as given: may hold . or .. */
	OSPREY_FILE_PATH2_JOINED = 1 << 3,
	OSPREY_FILE_WATCHED = 1 << 4,     /* the file or an ancestor directory is on the watch list */
};

/* osprey_cred.op: a credential-changing call */
enum osprey_cred_op {
	OSPREY_CRED_SETUID = 1,
	OSPREY_CRED_SETGID = 2,
	OSPREY_CRED_SETREUID = 3,
	OSPREY_CRED_SETREGID = 4,
	OSPREY_CRED_SETRESUID = 5,
	OSPREY_CRED_SETRESGID = 6,
	OSPREY_CRED_SETFSUID = 7,
	OSPREY_CRED_SETFSGID = 8,
	OSPREY_CRED_CAPSET = 9,
	/* uid became 0 with no setuid exec or credential call seen (found at a later hook) */
	OSPREY_CRED_UNEXPECTED_ROOT = 10,
};

/* osprey_system.op */
enum osprey_system_op {
	OSPREY_SYS_MODULE_LOAD = 1,  /* arg0 = flags; name in str */
	OSPREY_SYS_BPF_PROG_LOAD = 2,/* arg0 = program type; name in str */
	OSPREY_SYS_BPF_MAP_CREATE = 3,/* arg0 = map type; name in str */
	OSPREY_SYS_PTRACE = 4,       /* arg0 = request, target = traced pid */
	OSPREY_SYS_MEMFD_CREATE = 5, /* arg0 = flags; name in str */
	OSPREY_SYS_MPROTECT_EXEC = 6,/* arg0 = addr, arg1 = len, arg2 = prot; anonymous or writable */
	OSPREY_SYS_MMAP_EXEC = 7,    /* same, for mmap */
	OSPREY_SYS_MOUNT = 8,        /* arg0 = flags; str = source, str2 = target, str3 = fstype */
	OSPREY_SYS_UMOUNT = 9,       /* arg0 = flags; str = target */
	OSPREY_SYS_UNSHARE = 10,     /* arg0 = clone flags */
	OSPREY_SYS_SETNS = 11,       /* arg0 = nstype, arg1 = fd */
	OSPREY_SYS_SIGNAL = 12,      /* arg0 = signal, target = receiving pid, arg1 = result */
	/* Self-protection (always reported, at syscall entry, in the actor's context): */
	OSPREY_SYS_TAMPER_SIGNAL = 13, /* arg0 = signal, arg1 = enum osprey_tamper_call, arg2 = seq << 8 |
					  enum osprey_tamper_flags; target = the protected pid (or the
					  kill() pid argument: -1, -pgrp) */
	OSPREY_SYS_TAMPER_BPF = 14,  /* arg0 = bpf command, arg1 = object kind << 32 | object id (enum
					osprey_protect_kind; 0 if unresolved), arg2 = seq << 8 | flags;
					str = the path of BPF_OBJ_GET */
	OSPREY_SYS_BPF_ATTACH = 15,  /* a program attached by another process: arg0 = bpf command
					(BPF_RAW_TRACEPOINT_OPEN, BPF_LINK_CREATE, BPF_PROG_ATTACH), arg1 =
					program id, arg2 = attach type; str = raw tracepoint name */
	OSPREY_SYS_TAMPER_PTRACE = 16, /* ptrace/process_vm_* aimed at an agent process: arg0 = ptrace
					  request (or 0), arg1 = enum osprey_tamper_call, arg2 = seq << 8 |
					  flags; target = the agent pid */
	OSPREY_SYS_OP_MAX = 17,
};

/* osprey_net.op: a socket's life, as the kernel saw it */
enum osprey_net_op {
	OSPREY_NET_CONNECT = 1,     /* TCP connect() started (SYN_SENT); the local port may be 0 */
	OSPREY_NET_ESTABLISHED = 2, /* an outbound TCP connection was established */
	OSPREY_NET_REFUSED = 3,     /* an outbound TCP connect failed: ECONNREFUSED (reset) */
	OSPREY_NET_TIMEOUT = 4,     /* ... ETIMEDOUT */
	OSPREY_NET_FAILED = 5,      /* ... another error in `err`, 0: closed before it completed */
	OSPREY_NET_ACCEPT = 6,      /* an inbound TCP connection was established (listener's owner) */
	OSPREY_NET_LISTEN = 7,      /* a TCP socket started listening */
	OSPREY_NET_CLOSE = 8,       /* an established TCP connection ended: byte and segment counts */
	OSPREY_NET_UDP_SEND = 9,    /* first datagram from a UDP socket to a peer (or its connect()) */
	OSPREY_NET_UDP_RECV = 10,   /* first datagram a UDP socket received from a peer */
	OSPREY_NET_OP_MAX = 11,
};

/* osprey_net.flags, osprey_dns.flags */
enum osprey_net_flags {
	OSPREY_NET_OWNER_UNKNOWN = 1 << 0, /* the socket predates the agent: the header names no process */
	OSPREY_NET_INBOUND = 1 << 1,       /* the peer initiated the connection */
	OSPREY_NET_UDP_CONNECTED = 1 << 2, /* UDP connect(): every datagram goes to this peer */
	OSPREY_NET_OWNER_FROM_LISTENER = 1 << 3, /* attributed to the listening socket's owner */
	OSPREY_DNS_RESPONSE = 1 << 4,      /* osprey_dns: received from port 53 (else sent to it) */
	OSPREY_DNS_TRUNCATED = 1 << 5,     /* osprey_dns: payload longer than OSPREY_DNS_MAX */
};

/* Largest DNS payload copied into a record. */
#define OSPREY_DNS_MAX 1024

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
	OSPREY_EXEC_BLOCKED = 1 << 9,      /* image is on the block list: SIGKILL sent before it ran */
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
	OSPREY_CFG_WRITE_INCLUDE = 1 << 1, /* report writes only under an include directory */
};

/* Keys of the `watch` map: an inode, with the kernel's dev_t encoding (MAJOR << 20 | MINOR). */
struct osprey_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad0;
};

/* Exec block list (response): `block_inodes` is keyed by struct osprey_inode_key, `block_paths`
 * by a NUL-padded executable path of at most OSPREY_BLOCK_PATH_MAX - 1 bytes. The value says why
 * (enum osprey_block_reason). `block_state[0]` counts path entries: 0 skips the path lookup. */
#define OSPREY_BLOCK_PATH_MAX 256
struct osprey_block_path {
	char path[OSPREY_BLOCK_PATH_MAX];
};

enum osprey_block_reason {
	OSPREY_BLOCK_BY_HASH = 1,   /* the image's sha256 is blocked */
	OSPREY_BLOCK_BY_PATH = 2,   /* the image's path is blocked */
	OSPREY_BLOCK_BY_INODE = 3,  /* the image file itself is blocked */
};

/* Network isolation (response): allow rules of the isolation programs, in map `iso_allow`. A
 * packet of an isolated cgroup passes when its peer (destination on egress, source on ingress)
 * matches a rule; everything else is dropped. */
#define OSPREY_ISO_RULES_MAX 64
struct osprey_iso_rule {
	__u8 family;    /* 4 or 6 */
	__u8 prefixlen; /* leading bits of addr that must match: 0..32 or 0..128 */
	__u8 proto;     /* 6 TCP, 17 UDP, 0 any */
	__u8 _pad0;
	__u16 port;     /* the peer's port, host order; 0 any */
	__u16 _pad1;
	__u8 addr[16];  /* IPv4 in the first 4 bytes */
};

/* Values of the `watch` map: what the inode (a file, or a directory and all below it) is. */
enum osprey_watch_kind {
	OSPREY_WATCH_READ = 1 << 0,          /* report opens for reading */
	OSPREY_WATCH_WRITE_EXCLUDE = 1 << 1, /* never report writes */
	OSPREY_WATCH_WRITE_INCLUDE = 1 << 2, /* report writes (with OSPREY_CFG_WRITE_INCLUDE) */
	OSPREY_WATCH_PROTECT = 1 << 3,       /* Osprey's own files (self-protection) */
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

/* OSPREY_REC_FILE */
struct osprey_file {
	struct osprey_hdr hdr;
	__u32 op;      /* enum osprey_file_op */
	__s32 ret;     /* the syscall's result: fd, 0 or -errno */
	__u32 flags;   /* open flags */
	__u32 mode;    /* file mode (type and permissions), or the new mode for chmod */
	__u32 uid;     /* file owner, or the new owner for chown */
	__u32 gid;
	__u64 size;    /* file size, or the new length for truncate */
	__u64 ino;     /* 0 when the file was not resolved to an inode */
	__u32 dev;
	__u32 pflags;  /* enum osprey_file_flags */
	struct osprey_str path;
	struct osprey_str path2;
	__u32 folded;  /* records of the same process, operation, attributes and path(s) folded
			  since the last one sent (osprey_config.file_fold_ns) */
	__u32 _pad0;
	__u8 data[];
};

/* OSPREY_REC_CRED: credentials before and after a change (the header holds the new ones). */
struct osprey_cred {
	struct osprey_hdr hdr;
	__u32 op;    /* enum osprey_cred_op */
	__s32 ret;
	__u32 old_uid, old_euid, old_suid, old_fsuid;
	__u32 old_gid, old_egid, old_sgid, old_fsgid;
	__u32 new_uid, new_euid, new_suid, new_fsuid;
	__u32 new_gid, new_egid, new_sgid, new_fsgid;
	__u64 old_cap_effective;
	__u64 new_cap_effective;
	__u64 arg0, arg1, arg2; /* the call's arguments */
};

/* OSPREY_REC_SYSTEM: module/BPF loads, ptrace, memfd, executable memory, mounts, namespaces,
 * signals to other processes. */
struct osprey_system {
	struct osprey_hdr hdr;
	__u32 op;       /* enum osprey_system_op */
	__s32 ret;
	__u32 target_pid;
	__u32 _pad0;
	__u64 target_start_ns;
	__u64 arg0, arg1, arg2;
	struct osprey_str str;
	struct osprey_str str2;
	struct osprey_str str3;
	__u32 _pad1;
	__u8 data[];
};

/*
 * OSPREY_REC_NET: one step of a TCP connection, or a UDP socket's first datagram to / from a
 * peer. Addresses: AF_INET in the first 4 bytes, network order; AF_INET6 all 16 (v4-mapped
 * stays as the socket saw it). Ports in host order. "local" is this host's end.
 */
struct osprey_net {
	struct osprey_hdr hdr;
	__u32 op;       /* enum osprey_net_op */
	__u16 family;   /* AF_INET (2) or AF_INET6 (10) */
	__u8 protocol;  /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 _pad0;
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__s32 err;      /* sk_err of a failed connect */
	__u32 flags;    /* enum osprey_net_flags */
	__u32 netns;    /* network namespace inode number */
	__u64 sock_id;  /* socket cookie: the same for every record of one socket */
	__u64 bytes_sent;     /* data bytes (retransmissions included), CLOSE only */
	__u64 bytes_received; /* data bytes */
	__u32 segs_out;
	__u32 segs_in;
	__u64 duration_ns;    /* since connect()/accept(), outcomes and CLOSE; 0 when unknown */
	__u32 folded;   /* records of the same process, step, peer and port folded since the last
			   one sent (osprey_config.net_fold_ns), each counted in `folded` as well */
	__u32 _pad1;
};

/* OSPREY_REC_DNS: a DNS message (UDP or TCP port 53) this host's process sent or received. */
struct osprey_dns {
	struct osprey_hdr hdr;
	__u16 family;
	__u8 protocol;
	__u8 _pad0;
	__u32 flags;    /* enum osprey_net_flags: OSPREY_DNS_* */
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u32 len;      /* payload bytes in data[] */
	__u32 wire_len; /* payload bytes on the wire */
	__u32 netns;
	__u64 sock_id;
	__u8 data[];
};

/* Self-protection: the syscall a tamper signal came through (osprey_system.arg1). */
enum osprey_tamper_call {
	OSPREY_TAMPER_KILL = 1,
	OSPREY_TAMPER_TKILL = 2,
	OSPREY_TAMPER_TGKILL = 3,
	OSPREY_TAMPER_PIDFD = 4, /* pidfd_send_signal */
	OSPREY_TAMPER_PTRACE = 5,
	OSPREY_TAMPER_VM_READ = 6,  /* process_vm_readv */
	OSPREY_TAMPER_VM_WRITE = 7, /* process_vm_writev */
};

/* Self-protection: low 8 bits of osprey_system.arg2 of OSPREY_SYS_TAMPER_* records. */
enum osprey_tamper_flags {
	OSPREY_TAMPER_KILLED = 1 << 0, /* enforcement: SIGKILL sent to the actor before its syscall ran */
	OSPREY_TAMPER_FATAL = 1 << 1,  /* the signal kills or stops the agent without its handlers */
	OSPREY_TAMPER_WAITED = 1 << 2, /* the actor was held until the agent acknowledged the record */
	OSPREY_TAMPER_GROUP = 1 << 3,  /* kill(-1) or kill(-pgrp): the agent is one of many targets */
};

/* Kinds of protected BPF objects: keys of map `prot_ids` are kind << 32 | id. */
enum osprey_protect_kind {
	OSPREY_PROTECT_PROG = 1,
	OSPREY_PROTECT_MAP = 2,
	OSPREY_PROTECT_LINK = 3,
};

/* Values of map `prot_pids` (key: a pid): what the pid is to the agent. */
enum osprey_protect_pid {
	OSPREY_PROTECT_TGID = 1 << 0, /* an agent process (kill, tgkill, pidfd) */
	OSPREY_PROTECT_PGRP = 1 << 1, /* the agent's process group (kill(-pgrp)) */
	OSPREY_PROTECT_TID = 1 << 2,  /* a thread of the agent (tkill) */
};

/* osprey_protect_config.flags */
enum osprey_protect_flags {
	OSPREY_PROTECT_ENFORCE = 1 << 0,  /* SIGKILL the actor of a fatal signal, a bpf() detach or a
					     ptrace attach / process_vm_writev on the agent */
	OSPREY_PROTECT_STOPPING = 1 << 1, /* orderly shutdown under way: nothing is enforced */
};

/* Self-protection settings (map `prot_cfg`, key 0). */
struct osprey_protect_config {
	__u32 flags;    /* enum osprey_protect_flags */
	__u32 grace_ms; /* how long the actor of a fatal signal is held for the agent's ack, 0: never */
};

/* Prevention (lsm.bpf.c, a separate object loaded only where BPF-LSM works): what was denied.
 * One record per denial in that object's own ring buffer `denials`. */
enum osprey_denial_hook {
	OSPREY_DENY_SIGNAL = 1, /* lsm/task_kill: a signal aimed at a protected process; arg = signal */
	OSPREY_DENY_PTRACE = 2, /* lsm/ptrace_access_check: arg = ptrace mode bits */
	OSPREY_DENY_BPF = 3,    /* lsm/bpf: arg = bpf() command, object = the protected object's id */
};

/* Kinds of protected BPF objects (key of map `protected_ids`). */
enum osprey_bpf_object {
	OSPREY_OBJ_MAP = 1,
	OSPREY_OBJ_LINK = 2,
};

struct osprey_protected_id {
	__u32 kind; /* enum osprey_bpf_object */
	__u32 id;   /* the kernel's id of the map or link */
};

struct osprey_denial {
	__u64 ktime;      /* bpf_ktime_get_boot_ns() */
	__u32 hook;       /* enum osprey_denial_hook */
	__u32 actor_pid;  /* the caller's tgid (init pid namespace) */
	__u32 actor_tid;
	__u32 target_pid; /* the protected process (signal, ptrace); 0 for bpf() */
	__u32 arg;        /* signal number, ptrace mode or bpf() command */
	__u32 object;     /* protected map or link id (bpf()); 0 otherwise */
	char comm[OSPREY_COMM_LEN]; /* the caller's */
};

/* Settings user space writes into the CONFIG array (one entry, key 0). */
struct osprey_config {
	__u32 flags;      /* enum osprey_config_flags */
	__u32 agent_pid;  /* the agent's own process id */
	__u32 file_ops;   /* bit (1 << op) set: report that enum osprey_file_op */
	__u32 system_ops; /* bit (1 << op) set: report that enum osprey_system_op */
	__u64 net_fold_ns; /* a TCP record like one sent less than this ago is folded; 0: never */
	__u64 file_fold_ns; /* the same for file records */
};

/* Sizes are part of the ABI between kernel and user space. */
_Static_assert(sizeof(struct osprey_str) == 4, "osprey_str");
_Static_assert(sizeof(struct osprey_hdr) == 88, "osprey_hdr");
_Static_assert(sizeof(struct osprey_exec) == 88 + 112, "osprey_exec");
_Static_assert(sizeof(struct osprey_fork) == 88 + 24, "osprey_fork");
_Static_assert(sizeof(struct osprey_exit) == 88 + 8, "osprey_exit");
_Static_assert(sizeof(struct osprey_file) == 88 + 64, "osprey_file");
_Static_assert(sizeof(struct osprey_cred) == 88 + 112, "osprey_cred");
_Static_assert(sizeof(struct osprey_system) == 88 + 64, "osprey_system");
_Static_assert(sizeof(struct osprey_net) == 88 + 104, "osprey_net");
_Static_assert(sizeof(struct osprey_dns) == 88 + 64, "osprey_dns");
_Static_assert(sizeof(struct osprey_inode_key) == 16, "osprey_inode_key");
_Static_assert(sizeof(struct osprey_config) == 32, "osprey_config");
_Static_assert(sizeof(struct osprey_protect_config) == 8, "osprey_protect_config");
_Static_assert(sizeof(struct osprey_iso_rule) == 24, "osprey_iso_rule");
_Static_assert(sizeof(struct osprey_protected_id) == 8, "osprey_protected_id");
_Static_assert(sizeof(struct osprey_denial) == 48, "osprey_denial");
_Static_assert(sizeof(struct osprey_block_path) == OSPREY_BLOCK_PATH_MAX, "osprey_block_path");

/* Largest record a program may emit: the exec record with all its trailing data. */
#define OSPREY_EXEC_DATA_MAX (OSPREY_PATH_MAX + OSPREY_FILENAME_MAX + OSPREY_ARGS_MAX + OSPREY_PATH_MAX)
#define OSPREY_RECORD_MAX (sizeof(struct osprey_exec) + OSPREY_EXEC_DATA_MAX)

#endif /* OSPREY_H */
