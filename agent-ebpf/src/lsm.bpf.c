/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Prevention (self-protection) with BPF-LSM: deny what would blind the agent.
 *
 *   lsm/task_kill            signals aimed at a protected process (the agent), except from init
 *                            (pid 1 of the initial pid namespace: systemd or the container runtime's
 *                            orderly shutdown) and from the agent itself; signal 0 (a liveness
 *                            probe) passes;
 *   lsm/ptrace_access_check  PTRACE_MODE_ATTACH on a protected process: ptrace attach,
 *                            /proc/PID/mem, pidfd_getfd, process_vm_readv/writev. Read-mode checks
 *                            (/proc/PID/fdinfo, environ, exe) pass so ps and lsof keep working;
 *   lsm/bpf                  bpf() commands that change a protected map (update, delete, freeze,
 *                            batch) or a protected link (detach, update), found through the fd the
 *                            caller passes; reading and listing stay allowed.
 *
 * A separate object from the sensor's, loaded only where BPF-LSM works (`bpf` in
 * /sys/kernel/security/lsm and the load is accepted): elsewhere the agent falls back to
 * detection. Every denial is counted in user space from the `denials` ring buffer.
 *
 * The object also carries two empty probe programs (kprobe, fentry) that the agent loads and
 * attaches once to learn, and report, which hook types this kernel offers.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "osprey.h"

#define EPERM 1
#define PTRACE_MODE_ATTACH 0x02

/* enum bpf_cmd (UAPI) values this object looks at. */
#define BPF_MAP_UPDATE_ELEM 2
#define BPF_MAP_DELETE_ELEM 3
#define BPF_MAP_LOOKUP_AND_DELETE_ELEM 21
#define BPF_MAP_FREEZE 22
#define BPF_MAP_LOOKUP_AND_DELETE_BATCH 25
#define BPF_MAP_UPDATE_BATCH 26
#define BPF_MAP_DELETE_BATCH 27
#define BPF_LINK_UPDATE 29
#define BPF_LINK_DETACH 34
/* offsetof(union bpf_attr, batch.map_fd): in_batch, out_batch, keys, values (u64), count (u32) */
#define BATCH_MAP_FD_OFF 36

/* The processes this object protects: the agent's tgid, written by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u8);
} protected_tgids SEC(".maps");

/* The agent's maps and links, by kernel id (struct osprey_protected_id), written by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct osprey_protected_id);
	__type(value, __u8);
} protected_ids SEC(".maps");

/* One struct osprey_denial per denied operation. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} denials SEC(".maps");

/* Denials that found `denials` full, [0]. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} denials_lost SEC(".maps");

/* Kernel objects behind a bpf() fd: only the fields read here (CO-RE). */
struct file___lsm {
	void *private_data;
} __attribute__((preserve_access_index));

struct bpf_map {
	u32 id;
} __attribute__((preserve_access_index));

struct bpf_link {
	u32 id;
} __attribute__((preserve_access_index));

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline bool is_protected(__u32 tgid)
{
	return bpf_map_lookup_elem(&protected_tgids, &tgid) != NULL;
}

/* The agent itself and init (orderly shutdown) may act on the agent. */
static __always_inline bool trusted_actor(__u32 actor)
{
	return actor == 1 || is_protected(actor);
}

static __always_inline void report(__u32 hook, __u32 target, __u32 arg, __u32 object)
{
	struct osprey_denial *d = bpf_ringbuf_reserve(&denials, sizeof(*d), 0);
	if (!d) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&denials_lost, &zero);
		if (lost)
			*lost += 1;
		return;
	}
	__u64 id = bpf_get_current_pid_tgid();
	d->ktime = bpf_ktime_get_boot_ns();
	d->hook = hook;
	d->actor_pid = id >> 32;
	d->actor_tid = (__u32)id;
	d->target_pid = target;
	d->arg = arg;
	d->object = object;
	bpf_get_current_comm(d->comm, sizeof(d->comm));
	bpf_ringbuf_submit(d, 0);
}

SEC("lsm/task_kill")
int BPF_PROG(lsm_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	__u32 target = p->tgid;
	if (sig == 0 || !is_protected(target))
		return 0;
	if (trusted_actor(current_tgid()))
		return 0;
	report(OSPREY_DENY_SIGNAL, target, sig, 0);
	return -EPERM;
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(lsm_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	__u32 target = child->tgid;
	if (!(mode & PTRACE_MODE_ATTACH) || !is_protected(target))
		return 0;
	if (trusted_actor(current_tgid()))
		return 0;
	report(OSPREY_DENY_PTRACE, target, mode, 0);
	return -EPERM;
}

/* The object behind the caller's file descriptor `fd` (a map or a link for the commands below;
 * if the fd is something else the kernel rejects the command anyway). */
static __always_inline void *fd_object(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file___lsm *file = NULL;
	if (bpf_core_read(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	return BPF_CORE_READ(file, private_data);
}

/* The id of the protected object a command changes, or 0. */
static __always_inline __u32 protected_target(int cmd, void *attr)
{
	__u32 kind, off = 0;
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_FREEZE:
		kind = OSPREY_OBJ_MAP;
		break;
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
		kind = OSPREY_OBJ_MAP;
		off = BATCH_MAP_FD_OFF;
		break;
	case BPF_LINK_UPDATE:
	case BPF_LINK_DETACH:
		kind = OSPREY_OBJ_LINK;
		break;
	default:
		return 0;
	}
	int fd = -1;
	if (bpf_probe_read_kernel(&fd, sizeof(fd), attr + off))
		return 0;
	void *obj = fd_object(fd);
	if (!obj)
		return 0;
	struct osprey_protected_id key = { .kind = kind };
	if (kind == OSPREY_OBJ_MAP)
		key.id = BPF_CORE_READ((struct bpf_map *)obj, id);
	else
		key.id = BPF_CORE_READ((struct bpf_link *)obj, id);
	if (key.id && bpf_map_lookup_elem(&protected_ids, &key))
		return key.id;
	return 0;
}

/* security_bpf(cmd, attr, size[, kernel]): the arguments after attr changed across versions,
 * so the previous return value is not read here (this is the only BPF-LSM program on it). */
SEC("lsm/bpf")
int BPF_PROG(lsm_bpf, int cmd, void *attr)
{
	if (trusted_actor(current_tgid()))
		return 0;
	__u32 object = protected_target(cmd, attr);
	if (!object)
		return 0;
	report(OSPREY_DENY_BPF, 0, cmd, object);
	return -EPERM;
}

/* Feature probes: loaded and attached once at startup, then dropped. */
SEC("kprobe/security_task_kill")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/security_task_kill")
int BPF_PROG(probe_fentry)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
