/* SPDX-License-Identifier: GPL-2.0 */
/* The sockets a packet may go to: its own connection's, or the proxy's
 * listener or UDP socket; which of the proxy's the kernel refused to assign;
 * and, for TCP, whether a packet goes to the proxy at all (skfp_route). */
#ifndef SKFP_LIB_LOOKUP_H
#define SKFP_LIB_LOOKUP_H

#include "packet.h"

/* The verifier wants the tuple size constant: one call per family. */
static __always_inline struct bpf_sock *skfp_skc_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *t,
							__u32 family)
{
	if (family == 4)
		return bpf_skc_lookup_tcp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	return bpf_skc_lookup_tcp(skb, t, sizeof(t->ipv6), BPF_F_CURRENT_NETNS, 0);
}

/* The socket the packet belongs to as its receiver sees it (established,
 * SYN_RECV or TIME_WAIT); a listener found by the same lookup is not it.
 * A SYN that meets the proxy's TIME_WAIT socket goes to that socket: it
 * answers with an ACK, the client's RST kills it (tcp_rfc1337=0) and the SYN,
 * which a Linux client resends after TCP_TIMEOUT_MIN, reaches the listener
 * (measured: connect() 10 ms instead of 0). Handing the SYN to the listener
 * instead, as TPROXY does, fails here: TPROXY kills the TIME_WAIT socket, BPF
 * cannot, and the listener silently drops a SYN whose tuple is still in the
 * established hash, for the whole TIME_WAIT. */
static __always_inline struct bpf_sock *skfp_lookup_conn(struct __sk_buff *skb, struct skfp_pkt *p)
{
	struct bpf_sock *sk;

	sk = skfp_skc_lookup(skb, &p->tuple, p->family);
	if (sk && sk->state == BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

static __always_inline struct bpf_sock *skfp_udp_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *t, __u32 family)
{
	if (family == 4)
		return bpf_sk_lookup_udp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	return bpf_sk_lookup_udp(skb, t, sizeof(t->ipv6), BPF_F_CURRENT_NETNS, 0);
}

/* The proxy's socket for the packet's family and protocol, or NULL: its TCP
 * listener, or its UDP socket (not connected). The packet's own source goes
 * into the lookup so SO_REUSEPORT groups spread as usual. */
static __always_inline struct bpf_sock *skfp_lookup_proxy(struct __sk_buff *skb, const struct skfp_config *cfg,
							  const struct skfp_pkt *p)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (p->family == 4) {
		if (!(cfg->flags & SKFP_CFG_HAS_PROXY_V4))
			return NULL;
		t.ipv4.saddr = p->tuple.ipv4.saddr;
		t.ipv4.sport = p->tuple.ipv4.sport;
		t.ipv4.daddr = cfg->proxy_addr4;
		t.ipv4.dport = bpf_htons(cfg->proxy_port);
	} else {
		if (!(cfg->flags & SKFP_CFG_HAS_PROXY_V6))
			return NULL;
		__builtin_memcpy(t.ipv6.saddr, p->tuple.ipv6.saddr, 16);
		t.ipv6.sport = p->tuple.ipv6.sport;
		__builtin_memcpy(t.ipv6.daddr, cfg->proxy_addr6, 16);
		t.ipv6.dport = bpf_htons(cfg->proxy_port);
	}
	if (p->proto == IPPROTO_UDP) {
		sk = skfp_udp_lookup(skb, &t, p->family);
		if (sk && sk->state == BPF_TCP_ESTABLISHED) {
			bpf_sk_release(sk);
			return NULL;
		}
		return sk;
	}
	sk = skfp_skc_lookup(skb, &t, p->family);
	if (sk && sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

/* Kernels before 6.5 refuse to assign a socket of a SO_REUSEPORT group
 * (v2ray and xray open theirs so; bpf_sk_assign returns -ESOCKTNOSUPPORT).
 * The ingress side notes the refused socket per family and protocol; while
 * the uplink finds that same socket (for at most SKFP_REFUSED_NS after the
 * last refusal), new connections and datagrams are treated as if no proxy
 * listened (--proxy-down decides), and `skfp status` says why. A proxy
 * started anew usually has another socket and is tried at once; one whose
 * socket got the refused one's address is tried once the note is
 * SKFP_REFUSED_NS old (a refusal renews it only when a packet was tried). */
#define SKFP_REFUSED_NS (5ull * 1000000000ull)

struct skfp_refusal {
	__u64 sk; /* the socket's kernel address */
	__u64 at; /* bpf_ktime_get_ns() of the last refusal */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4); /* (family 6) * 2 + (UDP) */
	__type(key, __u32);
	__type(value, struct skfp_refusal);
} skfp_assign_refused SEC(".maps");

static __always_inline __u32 skfp_refused_slot(const struct skfp_pkt *p)
{
	return (p->family == 6) * 2 + (p->proto == IPPROTO_UDP);
}

static __always_inline void skfp_note_refused(const struct skfp_pkt *p, __u64 sk)
{
	struct skfp_refusal r = {.sk = sk, .at = bpf_ktime_get_ns()};
	__u32 slot = skfp_refused_slot(p);

	bpf_map_update_elem(&skfp_assign_refused, &slot, &r, BPF_ANY);
	skfp_count(SKFP_CNT_ASSIGN_REFUSED, 1);
}

/* sk: the proxy socket the lookup found (still held). */
static __always_inline int skfp_proxy_refused(const struct skfp_pkt *p, struct bpf_sock *sk)
{
	__u32 slot = skfp_refused_slot(p);
	struct skfp_refusal *r = bpf_map_lookup_elem(&skfp_assign_refused, &slot);

	return r && r->sk == (__u64)sk && bpf_ktime_get_ns() - r->at < SKFP_REFUSED_NS;
}

/* skfp_assign: the proxy's socket refused the packet. */
#define SKFP_REFUSED 100

enum skfp_verdict {
	SKFP_TO_PROXY, /* its proxy connection exists, or a SYN and the proxy listens */
	SKFP_DIRECT,   /* not a connection the proxy has: leave it alone */
	SKFP_NO_PROXY, /* a SYN and no proxy: --proxy-down decides */
};

/* Only a client's SYN decides whether a connection goes to the proxy; any
 * other packet follows its connection. A non-SYN without a proxy connection
 * is the host's server answering an inbound connection, a connection older
 * than `skfp up`, or one opened directly while the proxy was down: all must
 * stay direct (redirected, the proxy's listener would reset them). */
static __always_inline enum skfp_verdict skfp_route(struct __sk_buff *skb, const struct skfp_config *cfg,
						    struct skfp_pkt *p)
{
	struct bpf_sock *sk;
	int refused;

	sk = skfp_lookup_conn(skb, p);
	if (sk) {
		bpf_sk_release(sk);
		return SKFP_TO_PROXY;
	}
	if (!skfp_pkt_is_syn(p))
		return SKFP_DIRECT;
	sk = skfp_lookup_proxy(skb, cfg, p);
	if (!sk)
		return SKFP_NO_PROXY;
	refused = skfp_proxy_refused(p, sk);
	bpf_sk_release(sk);
	return refused ? SKFP_NO_PROXY : SKFP_TO_PROXY;
}

/* A connected UDP socket bound to the packet's destination (TPROXY's
 * "established" UDP lookup): a proxy that answers from such a socket gets the
 * flow's next datagrams on it. */
static __always_inline struct bpf_sock *skfp_udp_lookup_conn(struct __sk_buff *skb, struct skfp_pkt *p)
{
	struct bpf_sock *sk = skfp_udp_lookup(skb, &p->tuple, p->family);
	int bound;

	if (!sk)
		return NULL;
	if (p->family == 4)
		bound = sk->src_ip4 != 0;
	else
		bound = (sk->src_ip6[0] | sk->src_ip6[1] | sk->src_ip6[2] | sk->src_ip6[3]) != 0;
	if (sk->state != BPF_TCP_ESTABLISHED || !bound) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

#endif /* SKFP_LIB_LOOKUP_H */
