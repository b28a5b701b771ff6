/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Folding: a record like one sent less than a window ago (what "like" means is the caller's
 * key) is not sent. It is counted in `folded`, and the next record of that key that is sent
 * carries how many were folded before it. A flood of identical records (a loop over one
 * connection, one file, one mode) becomes one record per window per key, while the first of
 * each key, every distinct key and every other process still arrive. The state is kept in an
 * LRU hash whose value is struct fold_state.
 */
#ifndef OSPREY_FOLD_H
#define OSPREY_FOLD_H

#include "common.h"

struct fold_state {
	__u64 sent_ns; /* when the last record of this key was sent */
	__u64 folded;  /* records folded since */
};

/* Whether a record of `key` folds: one was sent less than `window_ns` ago. Counted if so. */
static __always_inline bool fold_peek(void *map, void *key, __u64 window_ns, __u32 type)
{
	struct fold_state *st = bpf_map_lookup_elem(map, key);
	if (!st || bpf_ktime_get_boot_ns() - st->sent_ns >= window_ns)
		return false;
	__sync_fetch_and_add(&st->folded, 1);
	count(&folded, type);
	return true;
}

/*
 * A record of `key` that did not fold is being sent: *before is how many were folded before
 * it, and the result the state to give them back to (fold_return) if the record then finds its
 * ring full; NULL when there is nothing to give back.
 */
static __always_inline struct fold_state *fold_sent(void *map, void *key, __s64 *before)
{
	*before = 0;
	__u64 now = bpf_ktime_get_boot_ns();
	struct fold_state *st = bpf_map_lookup_elem(map, key);
	if (!st) {
		struct fold_state fresh = {.sent_ns = now};
		bpf_map_update_elem(map, key, &fresh, BPF_NOEXIST); /* or another CPU just did */
		return NULL;
	}
	__u64 n = __atomic_exchange_n(&st->folded, 0, __ATOMIC_RELAXED);
	*before = n > 0xffffffffULL ? 0xffffffffLL : (__s64)n;
	st->sent_ns = now;
	return n ? st : NULL;
}

/* Both: folded (NULL, *before -1) or sent (as fold_sent). */
static __always_inline struct fold_state *fold_check(void *map, void *key, __u64 window_ns, __u32 type,
						     __s64 *before)
{
	if (fold_peek(map, key, window_ns, type)) {
		*before = -1;
		return NULL;
	}
	return fold_sent(map, key, before);
}

/* A record that carried `before` folded ones was lost after all: the next one carries them. */
static __always_inline void fold_return(struct fold_state *st, __s64 before)
{
	if (st && before > 0)
		__sync_fetch_and_add(&st->folded, (__u64)before);
}

#endif
