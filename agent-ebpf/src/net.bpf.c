/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Network telemetry: TCP connects and their outcome, accepts, listens and closes with byte
 * counts; a UDP socket's first datagram to / from each peer; DNS messages (port 53) copied for
 * user space to parse.
 *
 * Attribution: TCP state changes often happen in softirq context (the SYN-ACK, the RST, the
 * final ACK), where `current` is whoever the interrupt hit. So the owner is taken where the
 * process itself acts (connect(), listen(), a UDP send, a DNS query) and kept in `socks`, keyed
 * by socket cookie; an accepted connection belongs to its listener's owner (`listeners`, keyed
 * by network namespace and port). Hooks: tp_btf/inet_sock_set_state, cgroup sock_addr programs
 * and cgroup_skb on the root cgroup v2 — no kprobes, no syscall tracepoints.
 */
#include "common.h"
#include "fold.h"
#include "net_types.h"
#include <bpf/bpf_endian.h>

/* Who owns a socket, as its owner looked when it acted. */
struct sock_owner {
	struct osprey_hdr hdr; /* the owner's header; type, size, ktime and cpu are set at emit */
	__u64 since_ns;        /* connect()/accept() time */
	__u32 flags;           /* OSPREY_NET_* flags every record of the socket carries */
	__u16 ignore;          /* the agent's own socket: report nothing */
	__u16 lport;           /* the local port once known: closing unhashes it before we look */
};

/*
 * TCP sockets' owners. A plain hash, not LRU: an LRU map may evict a live entry long before it
 * is full (per-CPU free lists), which would orphan a connection mid-flight; every TCP socket
 * reaches TCP_CLOSE, where its entry is deleted. Full: new sockets are reported owner-unknown.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64); /* socket cookie */
	__type(value, struct sock_owner);
} socks SEC(".maps");

/* UDP sockets' owners (never closed through a tracepoint: least recently used go first). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_owner);
} udp_socks SEC(".maps");

struct listen_key {
	__u32 netns;
	__u16 port;
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct listen_key);
	__type(value, struct sock_owner);
} listeners SEC(".maps");

/* UDP peers a socket already sent to / received from. */
struct peer_key {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u16 op;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct peer_key);
	__type(value, __u8);
} udp_peers SEC(".maps");

/* The rest of an owner whose header is filled. Whether it is the agent is judged from the
 * header's pid, not bpf_get_current_pid_tgid(): cgroup_skb programs may not call that on
 * Linux 6.1. */
static __always_inline void owner_finish(struct sock_owner *o, __u32 flags)
{
	struct osprey_config *cfg = settings();
	o->since_ns = o->hdr.ktime_ns;
	o->flags = flags;
	o->ignore = cfg && cfg->agent_pid == o->hdr.pid;
}

/* The current task as a socket's owner: from cgroup programs (no BTF task there). */
static __always_inline void owner_here(struct sock_owner *o, __u32 flags)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__builtin_memset(o, 0, sizeof(*o));
	fill_hdr(&o->hdr, task, OSPREY_REC_NET, 0);
	owner_finish(o, flags);
}

/* The same from a BTF tracepoint: the header by direct loads (fill_hdr_current). */
static __always_inline void owner_here_btf(struct sock_owner *o, __u32 flags)
{
	__builtin_memset(o, 0, sizeof(*o));
	fill_hdr_current(&o->hdr, OSPREY_REC_NET, 0);
	owner_finish(o, flags);
}

/* Sets a record's header from its owner (NULL: unknown, the header names no process). */
static __always_inline __u32 owner_hdr(struct osprey_hdr *h, struct sock_owner *o, __u32 type, __u32 size)
{
	__u32 flags = OSPREY_NET_OWNER_UNKNOWN;
	if (o) {
		__builtin_memcpy(h, &o->hdr, sizeof(*h));
		flags = o->flags;
	} else {
		__builtin_memset(h, 0, sizeof(*h));
	}
	h->type = type;
	h->size = size;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cpu = bpf_get_smp_processor_id();
	return flags;
}

/* `sk`: net_tcp_state's BTF argument, read by direct loads. */
static __always_inline void sk_addrs(struct osprey_net *r, struct sock *sk)
{
	struct sock_common *c = &sk->__sk_common;
	__u16 family = c->skc_family;
	r->family = family;
	if (family == AF_INET6) {
		__builtin_memcpy(r->laddr, c->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(r->raddr, c->skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		__be32 l = c->skc_rcv_saddr;
		__be32 d = c->skc_daddr;
		__builtin_memcpy(r->laddr, &l, 4);
		__builtin_memcpy(r->raddr, &d, 4);
	}
	r->lport = c->skc_num;
	r->rport = bpf_ntohs(c->skc_dport);
	r->netns = c->skc_net.net->ns.inum;
}

/*
 * Folding (fold.h): a TCP record of the same process, step (connect, accept, close, ...), peer
 * address and port (the peer's for outbound connections, ours for inbound: accepts from one
 * client fold whatever its source port) as one sent less than osprey_config.net_fold_ns ago.
 * A connection flood (loopback benchmarks, a client hammering one service) becomes a record
 * per second per kind; scans (every distinct peer and port) still arrive whole.
 */
struct fold_key {
	__u32 tgid;
	__u32 op;
	__u32 netns;
	__u16 port;
	__u16 family;
	__u8 raddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fold_key);
	__type(value, struct fold_state);
} net_fold SEC(".maps");

/* A connection's close that carried more data than this either way is never folded: byte
 * counts are what exfiltration shows up in. */
#define FOLD_MAX_BYTES 16384

/* fold_check() for a TCP record. */
static __always_inline struct fold_state *net_fold_check(struct sock *sk, struct sock_owner *o, __u32 op, __u32 flags,
							  __s64 *before)
{
	*before = 0;
	struct osprey_config *cfg = settings();
	if (!cfg || !cfg->net_fold_ns || op == OSPREY_NET_LISTEN)
		return NULL;
	if (op == OSPREY_NET_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		if (BPF_CORE_READ(tp, bytes_sent) > FOLD_MAX_BYTES || BPF_CORE_READ(tp, bytes_received) > FOLD_MAX_BYTES)
			return NULL;
	}
	struct fold_key k;
	__builtin_memset(&k, 0, sizeof(k));
	k.tgid = o ? o->hdr.pid : 0;
	k.op = op;
	struct sock_common *c = &sk->__sk_common; /* a BTF pointer: direct loads */
	k.netns = c->skc_net.net->ns.inum;
	k.family = c->skc_family;
	if ((flags | (o ? o->flags : 0)) & OSPREY_NET_INBOUND)
		k.port = c->skc_num;
	else
		k.port = bpf_ntohs(c->skc_dport);
	if (k.family == AF_INET6) {
		__builtin_memcpy(k.raddr, c->skc_v6_daddr.in6_u.u6_addr8, 16);
	} else {
		__be32 d = c->skc_daddr;
		__builtin_memcpy(k.raddr, &d, 4);
	}
	return fold_check(&net_fold, &k, cfg->net_fold_ns, OSPREY_REC_NET, before);
}

/* Emits one TCP record for `sk` owned by `o` (NULL: unknown). */
static __always_inline void tcp_emit(struct sock *sk, __u64 cookie, struct sock_owner *o, __u32 op, __u32 flags)
{
	if (o && o->ignore) {
		count(&filtered, OSPREY_REC_NET);
		return;
	}
	__s64 folded_before;
	struct fold_state *st = net_fold_check(sk, o, op, flags, &folded_before);
	if (folded_before < 0)
		return;
	struct osprey_net *r = reserve(sizeof(*r), OSPREY_REC_NET);
	if (!r) {
		fold_return(st, folded_before); /* counted lost; the next one carries them */
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->folded = (__u32)folded_before;
	r->flags = owner_hdr(&r->hdr, o, OSPREY_REC_NET, sizeof(*r)) | flags;
	r->op = op;
	r->protocol = IPPROTO_TCP;
	r->sock_id = cookie;
	sk_addrs(r, sk);
	if (o && r->lport == 0)
		r->lport = o->lport;
	if (o && (op != OSPREY_NET_CONNECT && op != OSPREY_NET_LISTEN && op != OSPREY_NET_ACCEPT))
		r->duration_ns = r->hdr.ktime_ns - o->since_ns;
	if (op == OSPREY_NET_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		r->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
		r->bytes_received = BPF_CORE_READ(tp, bytes_received);
		/* the peer's FIN advanced rcv_nxt by one: not data */
		if (r->bytes_received && (BPF_CORE_READ(sk, sk_shutdown) & RCV_SHUTDOWN))
			r->bytes_received--;
		r->segs_out = BPF_CORE_READ(tp, segs_out);
		r->segs_in = BPF_CORE_READ(tp, segs_in);
	}
	if (op == OSPREY_NET_REFUSED || op == OSPREY_NET_TIMEOUT || op == OSPREY_NET_FAILED)
		r->err = BPF_CORE_READ(sk, sk_err);
	submit(r);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(net_tcp_state, struct sock *sk, int oldstate, int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct sock_owner here;
	struct sock_owner *o;

	switch (newstate) {
	case TCP_SYN_SENT: /* connect(): process context */
		owner_here_btf(&here, 0);
		bpf_map_update_elem(&socks, &cookie, &here, BPF_ANY);
		tcp_emit(sk, cookie, &here, OSPREY_NET_CONNECT, 0);
		return 0;
	case TCP_LISTEN: { /* listen(): process context */
		owner_here_btf(&here, 0);
		bpf_map_update_elem(&socks, &cookie, &here, BPF_ANY);
		struct listen_key k = {
			.netns = sk->__sk_common.skc_net.net->ns.inum,
			.port = sk->__sk_common.skc_num,
		};
		bpf_map_update_elem(&listeners, &k, &here, BPF_ANY);
		tcp_emit(sk, cookie, &here, OSPREY_NET_LISTEN, 0);
		return 0;
	}
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT) {
			o = bpf_map_lookup_elem(&socks, &cookie);
			if (o)
				o->lport = sk->__sk_common.skc_num;
			tcp_emit(sk, cookie, o, OSPREY_NET_ESTABLISHED, 0);
		} else if (oldstate == TCP_SYN_RECV) {
			/* A new child socket, usually in softirq: its owner is the listener's. */
			struct listen_key k = {
				.netns = sk->__sk_common.skc_net.net->ns.inum,
				.port = sk->__sk_common.skc_num,
			};
			o = bpf_map_lookup_elem(&listeners, &k);
			if (o) {
				here = *o;
				here.since_ns = bpf_ktime_get_boot_ns();
				here.flags = OSPREY_NET_INBOUND | OSPREY_NET_OWNER_FROM_LISTENER;
				here.lport = k.port;
				bpf_map_update_elem(&socks, &cookie, &here, BPF_ANY);
				tcp_emit(sk, cookie, &here, OSPREY_NET_ACCEPT, 0);
			} else {
				tcp_emit(sk, cookie, 0, OSPREY_NET_ACCEPT, OSPREY_NET_INBOUND);
			}
		}
		return 0;
	case TCP_CLOSE:
		o = bpf_map_lookup_elem(&socks, &cookie);
		if (oldstate == TCP_SYN_SENT) {
			int err = sk->sk_err;
			__u32 op = err == ECONNREFUSED ? OSPREY_NET_REFUSED
				   : err == ETIMEDOUT  ? OSPREY_NET_TIMEOUT
						       : OSPREY_NET_FAILED;
			tcp_emit(sk, cookie, o, op, 0);
		} else if (oldstate == TCP_LISTEN) {
			struct listen_key k = {
				.netns = sk->__sk_common.skc_net.net->ns.inum,
				.port = sk->__sk_common.skc_num,
			};
			bpf_map_delete_elem(&listeners, &k);
		} else if (oldstate != TCP_SYN_RECV && oldstate != TCP_CLOSE) {
			tcp_emit(sk, cookie, o, OSPREY_NET_CLOSE, 0);
		}
		if (o)
			bpf_map_delete_elem(&socks, &cookie);
		return 0;
	}
	return 0;
}

/* A UDP datagram to (sendmsg, connect) or from (recvmsg) a peer: reported once per socket and
 * peer. Always returns 1 (allow): these programs observe, never filter. */
static __always_inline int udp_peer(struct bpf_sock_addr *ctx, __u32 op, bool v6, __u32 flags)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	struct peer_key k = {.cookie = bpf_get_socket_cookie(ctx), .port = bpf_ntohs(ctx->user_port), .op = op};
	if (v6) {
		__u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
		__builtin_memcpy(k.addr, a, 16);
	} else {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(k.addr, &a, 4);
	}
	if (bpf_map_lookup_elem(&udp_peers, &k))
		return 1;
	__u8 one = 1;
	bpf_map_update_elem(&udp_peers, &k, &one, BPF_ANY);
	struct sock_owner here;
	owner_here(&here, 0);
	bpf_map_update_elem(&udp_socks, &k.cookie, &here, BPF_ANY);
	if (here.ignore) {
		count(&filtered, OSPREY_REC_NET);
		return 1;
	}
	struct osprey_net *r = reserve(sizeof(*r), OSPREY_REC_NET);
	if (!r)
		return 1;
	__builtin_memset(r, 0, sizeof(*r));
	r->flags = owner_hdr(&r->hdr, &here, OSPREY_REC_NET, sizeof(*r)) | flags;
	r->op = op;
	r->protocol = IPPROTO_UDP;
	r->family = v6 ? AF_INET6 : AF_INET;
	r->sock_id = k.cookie;
	__builtin_memcpy(r->raddr, k.addr, 16);
	r->rport = k.port;
	struct bpf_sock *sk = ctx->sk;
	if (sk) {
		r->lport = sk->src_port;
		if (v6) {
			__u32 a[4] = {sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3]};
			__builtin_memcpy(r->laddr, a, 16);
		} else {
			__u32 a = sk->src_ip4;
			__builtin_memcpy(r->laddr, &a, 4);
		}
	}
	submit(r);
	return 1;
}

SEC("cgroup/sendmsg4")
int net_udp_send4(struct bpf_sock_addr *ctx) { return udp_peer(ctx, OSPREY_NET_UDP_SEND, false, 0); }
SEC("cgroup/sendmsg6")
int net_udp_send6(struct bpf_sock_addr *ctx) { return udp_peer(ctx, OSPREY_NET_UDP_SEND, true, 0); }
SEC("cgroup/connect4")
int net_udp_conn4(struct bpf_sock_addr *ctx)
{
	return udp_peer(ctx, OSPREY_NET_UDP_SEND, false, OSPREY_NET_UDP_CONNECTED);
}
SEC("cgroup/connect6")
int net_udp_conn6(struct bpf_sock_addr *ctx)
{
	return udp_peer(ctx, OSPREY_NET_UDP_SEND, true, OSPREY_NET_UDP_CONNECTED);
}
SEC("cgroup/recvmsg4")
int net_udp_recv4(struct bpf_sock_addr *ctx) { return udp_peer(ctx, OSPREY_NET_UDP_RECV, false, 0); }
SEC("cgroup/recvmsg6")
int net_udp_recv6(struct bpf_sock_addr *ctx) { return udp_peer(ctx, OSPREY_NET_UDP_RECV, true, 0); }

/* ---- DNS: cgroup_skb on the root cgroup v2, every packet of every process ---- */

struct iphdr_min {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6hdr_min {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/*
 * Copies `size` (a constant) bytes at `off` of the packet into `to`: straight from its linear
 * part when they lie there, with no helper call (every packet of every process passes here),
 * else through bpf_skb_load_bytes. 0 when copied.
 */
static __always_inline int skb_read(struct __sk_buff *skb, __u32 off, void *to, __u32 size)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (off <= 64 && data + off + size <= end) {
		__builtin_memcpy(to, data + off, size);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, size);
}

/* Copies a DNS message from `skb` when it goes to port 53 (egress) or comes from it (ingress):
 * the client side of DNS. Servers' traffic (to/from their port 53) is left alone. */
static __always_inline int dns_skb(struct __sk_buff *skb, bool egress)
{
	__u8 laddr[16] = {}, raddr[16] = {};
	__u32 l4off, family;
	__u8 proto;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr_min ip;
		if (skb_read(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.frag_off & bpf_htons(0x1fff))
			return 1; /* a later fragment: no transport header */
		proto = ip.protocol;
		l4off = (ip.ver_ihl & 0xf) * 4;
		family = AF_INET;
		__builtin_memcpy(laddr, egress ? &ip.saddr : &ip.daddr, 4);
		__builtin_memcpy(raddr, egress ? &ip.daddr : &ip.saddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr_min ip6;
		if (skb_read(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		proto = ip6.nexthdr; /* extension headers: not DNS we follow */
		l4off = sizeof(ip6);
		family = AF_INET6;
		__builtin_memcpy(laddr, egress ? ip6.saddr : ip6.daddr, 16);
		__builtin_memcpy(raddr, egress ? ip6.daddr : ip6.saddr, 16);
	} else {
		return 1;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return 1;
	/* The ports first: nearly every packet is not DNS and ends here, one load later. */
	__be16 ports[2]; /* source, destination: the first 4 bytes of UDP and TCP headers */
	if (skb_read(skb, l4off, ports, sizeof(ports)))
		return 1;
	__u16 lport = bpf_ntohs(egress ? ports[0] : ports[1]);
	__u16 rport = bpf_ntohs(egress ? ports[1] : ports[0]);
	if (rport != DNS_PORT)
		return 1;
	__u32 payload = l4off + 8;
	if (proto == IPPROTO_TCP) {
		__u8 doff;
		if (skb_read(skb, l4off + 12, &doff, 1))
			return 1;
		payload = l4off + (doff >> 4) * 4;
	}
	if (skb->len <= payload)
		return 1; /* a bare TCP ACK, or nothing */
	__u32 wire = skb->len - payload;
	__u32 len = wire < OSPREY_DNS_MAX ? wire : OSPREY_DNS_MAX;
	/* 1..OSPREY_DNS_MAX in a form the verifier can follow (wire >= 1 here) */
	len = ((len - 1) & (OSPREY_DNS_MAX - 1)) + 1;

	__u64 cookie = bpf_get_socket_cookie(skb);
	void *owners = proto == IPPROTO_UDP ? (void *)&udp_socks : (void *)&socks;
	struct sock_owner *o = bpf_map_lookup_elem(owners, &cookie);
	struct sock_owner here;
	if (!o && egress) {
		owner_here(&here, 0);
		bpf_map_update_elem(owners, &cookie, &here, BPF_ANY);
		o = &here;
	}
	if (o && o->ignore) {
		count(&filtered, OSPREY_REC_DNS);
		return 1;
	}
	struct osprey_dns *r = reserve(sizeof(*r) + OSPREY_DNS_MAX, OSPREY_REC_DNS);
	if (!r)
		return 1;
	__builtin_memset(r, 0, sizeof(*r));
	__u32 flags = owner_hdr(&r->hdr, o, OSPREY_REC_DNS, sizeof(*r) + len);
	r->flags = (flags & OSPREY_NET_OWNER_UNKNOWN) | (egress ? 0 : OSPREY_DNS_RESPONSE) |
		   (wire > OSPREY_DNS_MAX ? OSPREY_DNS_TRUNCATED : 0);
	r->family = family;
	r->protocol = proto;
	__builtin_memcpy(r->laddr, laddr, 16);
	__builtin_memcpy(r->raddr, raddr, 16);
	r->lport = lport;
	r->rport = rport;
	r->wire_len = wire;
	r->sock_id = cookie;
	if (bpf_skb_load_bytes(skb, payload, r->data, len)) {
		len = 0;
		r->hdr.size = sizeof(*r);
	}
	r->len = len;
	submit(r);
	return 1;
}

SEC("cgroup_skb/egress")
int net_dns_egress(struct __sk_buff *skb) { return dns_skb(skb, true); }
SEC("cgroup_skb/ingress")
int net_dns_ingress(struct __sk_buff *skb) { return dns_skb(skb, false); }
