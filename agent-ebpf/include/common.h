/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Maps and helpers every Osprey program shares: the per-CPU ring buffers, the loss and
 * filter counters, the settings user space writes, and the record scratch space.
 */
#ifndef OSPREY_COMMON_H
#define OSPREY_COMMON_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "osprey.h"

#define OSPREY_MAX_CPUS 512

/*
 * Attaches program `prog` to one more tracepoint besides the one its SEC() names: one program,
 * verified once, serving several hooks. build.rs reads these markers into the program table;
 * the loader ignores the section otherwise.
 */
#define ATTACH_ALSO(prog, category, name)                                                    \
	static const char __attribute__((used, section(".osprey.attach")))                  \
	attach_##prog##_##name[] = #prog " " category "/" #name;

/* The inner ring buffer type; user space creates one per possible CPU at the configured size. */
struct ringbuf_tmpl {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

/* One ring buffer per possible CPU, indexed by CPU id. max_entries is set by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct ringbuf_tmpl);
} rings SEC(".maps");

/* Records that found their ring buffer full, per CPU and record type. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OSPREY_REC_TYPE_MAX);
	__type(key, __u32);
	__type(value, __u64);
} loss SEC(".maps");

/* Events dropped on purpose by an in-kernel filter, per CPU and record type. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OSPREY_REC_TYPE_MAX);
	__type(key, __u32);
	__type(value, __u64);
} filtered SEC(".maps");

/* Records folded into a later one of the same kind (fold.h), per CPU and
 * record type: not sent, not lost. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OSPREY_REC_TYPE_MAX);
	__type(key, __u32);
	__type(value, __u64);
} folded SEC(".maps");

/* Settings from user space (one entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct osprey_config);
} config SEC(".maps");

/*
 * Scratch space to build a variable-length record before copying the used part into the ring
 * buffer. Too large for a per-CPU array (32 KiB limit), so a plain array indexed by CPU id:
 * programs run with migration disabled, and tracepoint programs of one CPU do not nest.
 */
#define SCRATCH_DATA 32768
#define SCRATCH_MASK (SCRATCH_DATA / 2 - 1) /* every write starts below SCRATCH_DATA / 2 */

/* Room before the trailing data for the largest fixed part of a record. */
#define SCRATCH_HEAD 256
_Static_assert(sizeof(struct osprey_exec) <= SCRATCH_HEAD, "exec record fits the head");
_Static_assert(sizeof(struct osprey_file) <= SCRATCH_HEAD, "file record fits the head");
_Static_assert(sizeof(struct osprey_system) <= SCRATCH_HEAD, "system record fits the head");

/* Key of the path-prefix trie (BPF_MAP_TYPE_LPM_TRIE): prefixlen in bits, then path bytes. */
#define PREFIX_MAX 256
struct prefix_key {
	__u32 prefixlen;
	__u8 data[PREFIX_MAX];
};

struct scratch {
	const unsigned char *names[OSPREY_PATH_DEPTH_MAX];
	__u32 lens[OSPREY_PATH_DEPTH_MAX];
	struct prefix_key key;
	/* a record whose fixed part ends at SCRATCH_HEAD, then its trailing data */
	__u8 buf[SCRATCH_HEAD + SCRATCH_DATA];
};

/* The record of type T under construction (its data[] starts at SCRATCH_HEAD), and byte `i`
 * of the trailing data. */
#define SCRATCH_REC(s, T) ((T *)((s)->buf + SCRATCH_HEAD - sizeof(T)))
#define SCRATCH_DATA_AT(s, i) ((s)->buf[SCRATCH_HEAD + (i)])


struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OSPREY_MAX_CPUS);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

static __always_inline struct scratch *scratch_of_this_cpu(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&scratch, &cpu);
}

static __always_inline void count(void *map, __u32 type)
{
	__u64 *n = bpf_map_lookup_elem(map, &type);
	if (n)
		*n += 1;
}

static __always_inline struct osprey_config *settings(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline void *ring_of_this_cpu(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&rings, &cpu);
}

/* UAPI ring buffer flags and queries (linux/bpf.h). */
#define OSPREY_RB_NO_WAKEUP 1
#define OSPREY_RB_FORCE_WAKEUP 2
#define OSPREY_RB_AVAIL_DATA 0
#define OSPREY_RB_RING_SIZE 1

/*
 * Whether committing a record should wake the reader: only when the ring is over a quarter
 * full. Below that the reader's periodic sweep (a few ms) collects records. A wakeup is an
 * irq_work raised by a self-IPI, measured at 12-20 us per record on virtual machines (the APIC
 * write traps to the hypervisor), which made it the largest cost of an exec or fork record.
 */
static __always_inline __u64 wakeup_flags(void *rb)
{
	__u64 avail = bpf_ringbuf_query(rb, OSPREY_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(rb, OSPREY_RB_RING_SIZE);
	return avail > size / 4 ? OSPREY_RB_FORCE_WAKEUP : OSPREY_RB_NO_WAKEUP;
}

/* Copies a finished record into this CPU's ring buffer; a full buffer is counted, never silent.
 * Returns whether it was sent. */
static __always_inline bool emit(void *rec, __u64 size, __u32 type)
{
	void *rb = ring_of_this_cpu();
	if (!rb || bpf_ringbuf_output(rb, rec, size, wakeup_flags(rb)) != 0) {
		count(&loss, type);
		return false;
	}
	return true;
}

/* Submits a record from reserve(). */
static __always_inline void submit(void *rec)
{
	void *rb = ring_of_this_cpu();
	bpf_ringbuf_submit(rec, rb ? wakeup_flags(rb) : 0);
}

/*
 * Reserves a fixed-size record in this CPU's ring buffer, or counts the loss and returns NULL.
 * The memory is not zeroed: set every field. Submit with bpf_ringbuf_submit().
 */
static __always_inline void *reserve(__u64 size, __u32 type)
{
	void *rb = ring_of_this_cpu();
	void *rec = rb ? bpf_ringbuf_reserve(rb, size, 0) : 0;
	if (!rec)
		count(&loss, type);
	return rec;
}

/* Copies a record built in scratch space, `fixed` bytes of fixed part plus `len` of data. */
static __always_inline bool emit_scratch(void *rec, __u64 fixed, __u32 len, __u32 type)
{
	/* every producer bounds its data below SCRATCH_DATA; the mask tells the verifier so */
	return emit(rec, fixed + (len & (SCRATCH_DATA - 1)), type);
}

static __always_inline __u64 process_start_ns(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

/*
 * The cgroup v2 id of the current task, what bpf_get_current_cgroup_id() returns. Read through
 * CO-RE because that helper is not offered to tp_btf programs before Linux 6.x (6.1 refuses it).
 */
static __always_inline __u64 current_cgroup_id(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

/* A cred's effective capabilities as one 64-bit mask: `u64 val` since 6.3, `u32 cap[2]` before. */
static __always_inline __u64 cred_cap_effective(const struct cred *cred)
{
	if (bpf_core_field_exists(cred->cap_effective.val))
		return BPF_CORE_READ(cred, cap_effective.val);
	const struct cred___words *w = (const void *)cred;
	__u64 lo = BPF_CORE_READ(w, cap_effective.cap[0]);
	__u64 hi = BPF_CORE_READ(w, cap_effective.cap[1]);
	return lo | (hi << 32);
}

#define PAIR_SPAN 128

/*
 * The 8 bytes at offsets `a` and `b` (CO-RE field offsets: constants once relocated) of the
 * kernel object at `p`, in one probe read when they lie within PAIR_SPAN bytes and 8-aligned
 * from each other (the verifier wants aligned stack loads), in two otherwise. A field narrower
 * than 8 bytes is the low end of its value (little-endian).
 */
static __always_inline void read_pair(const void *p, __u32 a, __u32 b, __u64 *va, __u64 *vb)
{
	__u32 lo = a < b ? a : b;
	__u32 hi = a < b ? b : a;
	if (hi + 8 - lo <= PAIR_SPAN && !((hi - lo) & 7)) {
		__u64 w[PAIR_SPAN / 8] = {};
		bpf_probe_read_kernel(w, hi + 8 - lo, p + lo);
		/* the lower field is w[0]; the mask keeps the other's index bounded for the verifier */
		__u64 at_lo = w[0], at_hi = w[((hi - lo) / 8) & (PAIR_SPAN / 8 - 1)];
		*va = a < b ? at_lo : at_hi;
		*vb = a < b ? at_hi : at_lo;
		return;
	}
	*va = 0;
	*vb = 0;
	bpf_probe_read_kernel(va, 8, p + a);
	bpf_probe_read_kernel(vb, 8, p + b);
}

/* Fills the common header from `task`, which must be the current task. */
static __always_inline void fill_hdr(struct osprey_hdr *h, struct task_struct *task, __u32 type,
				     __u32 size)
{
	const struct cred *cred = BPF_CORE_READ(task, cred);
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);

	h->type = type;
	h->size = size;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cpu = bpf_get_smp_processor_id();
	h->pid = BPF_CORE_READ(task, tgid);
	h->tid = BPF_CORE_READ(task, pid);
	h->ppid = BPF_CORE_READ(parent, tgid);
	h->start_ns = process_start_ns(task);
	h->parent_start_ns = process_start_ns(parent);
	h->uid = BPF_CORE_READ(cred, uid.val);
	h->gid = BPF_CORE_READ(cred, gid.val);
	h->euid = BPF_CORE_READ(cred, euid.val);
	h->egid = BPF_CORE_READ(cred, egid.val);
	h->cgroup_id = current_cgroup_id();
	/* read, not bpf_get_current_comm(): cgroup programs may not call that on Linux 6.1 */
	BPF_CORE_READ_INTO(&h->comm, task, comm);
}

/*
 * fill_hdr for the current task in programs that may call bpf_get_current_task_btf()
 * (tracepoints, raw and BTF tracepoints; not cgroup programs). The task is then a BTF pointer,
 * and the same fields are read by direct loads the verifier checks against the kernel's BTF
 * (a faulting load reads 0, as a failed probe read does) instead of one bpf_probe_read_kernel
 * call each: seventeen helper calls fewer a record.
 */
static __always_inline void fill_hdr_current(struct osprey_hdr *h, __u32 type, __u32 size)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct cred *cred = task->cred;
	struct task_struct *parent = task->real_parent;

	h->type = type;
	h->size = size;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cpu = bpf_get_smp_processor_id();
	h->pid = task->tgid;
	h->tid = task->pid;
	h->ppid = parent->tgid;
	h->start_ns = task->group_leader->start_boottime;
	h->parent_start_ns = parent->group_leader->start_boottime;
	h->uid = cred->uid.val;
	h->gid = cred->gid.val;
	h->euid = cred->euid.val;
	h->egid = cred->egid.val;
	h->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

#endif /* OSPREY_COMMON_H */
