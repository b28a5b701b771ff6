/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Network isolation (response): cgroup_skb programs attached to an isolated cgroup (a pod, a
 * container, a systemd unit, or the root cgroup for the whole host) pass only the packets an
 * allow rule names and drop everything else, both ways.
 *
 * A separate object from the sensor's: user space loads it on the first isolation, pins its
 * maps by name and the links of each isolated cgroup in bpffs, so isolation outlives the agent
 * and a restarted agent finds it again.
 */
#include "net_types.h" /* struct __sk_buff, ETH_P_*, IPPROTO_* */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "osprey.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OSPREY_ISO_RULES_MAX);
	__type(key, __u32);
	__type(value, struct osprey_iso_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iso_allow SEC(".maps");

/* [0] = rules in use in iso_allow */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iso_allow_n SEC(".maps");

/* Dropped packets: [0] ingress, [1] egress. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iso_dropped SEC(".maps");

struct packet {
	__u8 family; /* 4 or 6 */
	__u8 proto;
	__u16 port; /* host order: the peer's port */
	__u8 addr[16]; /* the peer's address (v4 in the first 4 bytes) */
};

/* The peer of this packet: its destination on egress, its source on ingress. */
static __always_inline int peer_of(struct __sk_buff *skb, bool egress, struct packet *p)
{
	__u32 l4 = 0;
	__u16 proto = bpf_ntohs(skb->protocol);
	if (proto == ETH_P_IP) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)))
			return -1;
		p->family = 4;
		p->proto = ip[9];
		__builtin_memcpy(p->addr, egress ? &ip[16] : &ip[12], 4);
		l4 = (ip[0] & 0x0f) * 4;
	} else if (proto == ETH_P_IPV6) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, 0, ip6, sizeof(ip6)))
			return -1;
		p->family = 6;
		p->proto = ip6[6]; /* extension headers are not walked: such packets match no port */
		__builtin_memcpy(p->addr, egress ? &ip6[24] : &ip6[8], 16);
		l4 = 40;
	} else {
		return 1; /* not IP */
	}
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, l4 & 0xff, ports, sizeof(ports)) == 0)
			p->port = bpf_ntohs(egress ? ports[1] : ports[0]);
	}
	return 0;
}

static __always_inline bool prefix_match(const __u8 *a, const __u8 *b, __u32 bits)
{
	for (int i = 0; i < 16; i++) {
		if (bits == 0)
			return true;
		__u8 mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
		if ((a[i] ^ b[i]) & mask)
			return false;
		bits = bits >= 8 ? bits - 8 : 0;
	}
	return true;
}

struct match {
	struct packet p;
	__u32 rules;
	bool allowed;
};

/* bpf_loop callback: does rule `i` allow the packet? 1 stops the loop. */
static long match_rule(__u32 i, void *data)
{
	struct match *m = data;
	if (i >= m->rules)
		return 1;
	__u32 k = i;
	struct osprey_iso_rule *r = bpf_map_lookup_elem(&iso_allow, &k);
	if (!r)
		return 1;
	if (r->family != m->p.family || (r->proto && r->proto != m->p.proto) || (r->port && r->port != m->p.port))
		return 0;
	if (prefix_match(r->addr, m->p.addr, r->prefixlen)) {
		m->allowed = true;
		return 1;
	}
	return 0;
}

static __always_inline bool allowed(struct match *m)
{
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&iso_allow_n, &zero);
	if (!n)
		return false;
	m->rules = *n;
	bpf_loop(OSPREY_ISO_RULES_MAX, match_rule, m, 0);
	return m->allowed;
}

static __always_inline int decide(struct __sk_buff *skb, bool egress)
{
	struct match m = {};
	int r = peer_of(skb, egress, &m.p);
	if (r > 0)
		return 1;
	if (r == 0 && allowed(&m))
		return 1;
	__u32 k = egress;
	__u64 *dropped = bpf_map_lookup_elem(&iso_dropped, &k);
	if (dropped)
		*dropped += 1;
	return 0;
}

SEC("cgroup_skb/egress")
int iso_egress(struct __sk_buff *skb)
{
	return decide(skb, true);
}

SEC("cgroup_skb/ingress")
int iso_ingress(struct __sk_buff *skb)
{
	return decide(skb, false);
}

/* Anchors the rule layout in BTF for the layout test. */
const volatile struct osprey_iso_rule btf_anchor_iso_rule __attribute__((used));

char LICENSE[] SEC("license") = "GPL";
