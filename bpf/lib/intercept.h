/* SPDX-License-Identifier: GPL-2.0 */
/* Transparent-proxy interception with tc, what iptables TPROXY does without
 * netfilter:
 *  - skfp_tc_egress (clsact egress of each uplink): TCP and UDP that should
 *    reach the proxy get skb->mark = fwmark and are turned around into lo's
 *    ingress;
 *  - skfp_tc_lo_ingress (clsact ingress of lo): hands those packets to the
 *    proxy's socket with bpf_sk_assign;
 *  - skfp_tc_lan_ingress (clsact ingress of each --lan interface): hands what
 *    LAN clients send through the host to the proxy's sockets directly;
 *  - skfp_tc_uplink_ingress (clsact ingress of each uplink, with UDP): notes
 *    the UDP flows that came in to a local socket, so that the host's own UDP
 *    servers answer their clients directly.
 * Policy routing delivers the marked packets locally although their
 * destination is remote: `ip rule add fwmark FWMARK lookup T` +
 * `ip route add local default dev lo table T` (and -6), lo accept_local=1.
 * The proxy's listener must be IP_TRANSPARENT, or its SYN-ACK, sent from the
 * original destination, has no route.
 * Uplinks must carry Ethernet headers (`ip -j link`: link_type "ether"):
 * a redirect from an L3 device (wireguard, tun) would need a pushed header. */
#ifndef SKFP_LIB_INTERCEPT_H
#define SKFP_LIB_INTERCEPT_H

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "maps.h"

#define SKFP_TCP_SYN 0x02
#define SKFP_TCP_RST 0x04
#define SKFP_TCP_ACK 0x10

/* Keys of the bypass LPM tries. prefixlen is host order (what LPM tries
 * want); addr is the address as it stands in the packet (network order), so
 * 10.0.0.0/8 is `key hex 08 00 00 00 0a 00 00 00`. */
struct skfp_lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct skfp_lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* What `skfp down` must undo (struct skfp_record), one entry. It lives in
 * this object because every kernel skfp supports loads it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct skfp_record);
} skfp_record SEC(".maps");

/* IPv4 destinations that go direct (--bypass CIDRs); value unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SKFP_BYPASS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* LPM tries refuse preallocation */
	__type(key, struct skfp_lpm4_key);
	__type(value, __u8);
} skfp_bypass4 SEC(".maps");

/* IPv6 destinations that go direct (--bypass CIDRs); value unused. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SKFP_BYPASS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct skfp_lpm6_key);
	__type(value, __u8);
} skfp_bypass6 SEC(".maps");

/* Destination ports that go direct, key host order; value unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKFP_BYPASS_MAX);
	__type(key, __u16);
	__type(value, __u8);
} skfp_bypass_ports SEC(".maps");

/* --intercept-cgroup / --bypass-cgroup: cgroup v2 ids (the directory's inode
 * number) -> SKFP_CGROUP_*. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKFP_CGROUPS_MAX);
	__type(key, __u64);
	__type(value, __u8);
} skfp_cgroups SEC(".maps");

/* Levels of the cgroup tree looked at, from the root: deeper cgroups are
 * judged by their ancestor at this depth. */
#define SKFP_CGROUP_DEPTH 16

/* Whether the packet's socket is in interception's scope: the deepest listed
 * cgroup among its cgroup and that cgroup's ancestors decides; none listed:
 * in scope unless only listed cgroups are (SKFP_CFG_CGROUP_ONLY). */
static __always_inline int skfp_cgroup_in_scope(struct __sk_buff *skb, const struct skfp_config *cfg)
{
	__u8 decision = 0, *v;
	__u64 id;

	if (!(cfg->flags & SKFP_CFG_CGROUP_SCOPE))
		return 1;
#pragma unroll
	for (int level = 0; level < SKFP_CGROUP_DEPTH; level++) {
		id = bpf_skb_ancestor_cgroup_id(skb, level);
		if (!id)
			break;
		v = bpf_map_lookup_elem(&skfp_cgroups, &id);
		if (v)
			decision = *v;
	}
	if (decision == SKFP_CGROUP_BYPASS)
		return 0;
	return decision == SKFP_CGROUP_INTERCEPT || !(cfg->flags & SKFP_CFG_CGROUP_ONLY);
}

/* What the programs need of one TCP or UDP packet. */
struct skfp_pkt {
	struct bpf_sock_tuple tuple; /* network order, as the lookup helpers take it */
	__u32 family;                /* 4 or 6 */
	__u32 seq;                   /* TCP: host order */
	__u32 l4_off;                /* offset of the TCP/UDP header (0 in a fragment) */
	__u8 proto;                  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;                  /* TCP flags byte (SKFP_TCP_*) */
	__u8 frag;                   /* UDP: a fragment (first or later): ports left 0 */
	__u8 _pad;
};

static __always_inline int skfp_pkt_is_syn(const struct skfp_pkt *p)
{
	return (p->flags & (SKFP_TCP_SYN | SKFP_TCP_ACK | SKFP_TCP_RST)) == SKFP_TCP_SYN;
}

/* IPv6 extension headers walked before giving up on a packet. */
#define SKFP_IPV6_EXT_MAX 4

/* The IPv6 header chain up to TCP or UDP: hop-by-hop, routing and
 * destination options are skipped; a fragment header ends the walk (what
 * follows it may be payload). Returns the protocol, or -1. */
static __always_inline int skfp_ipv6_walk(struct __sk_buff *skb, __u8 nexthdr, __u32 *off, __u8 *frag)
{
	__u8 h[2];

#pragma unroll
	for (int i = 0; i < SKFP_IPV6_EXT_MAX; i++) {
		switch (nexthdr) {
		case IPPROTO_TCP:
		case IPPROTO_UDP:
			return nexthdr;
		case IPPROTO_FRAGMENT:
			if (bpf_skb_load_bytes(skb, *off, h, 1))
				return -1;
			*frag = 1;
			return h[0];
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			if (bpf_skb_load_bytes(skb, *off, h, 2))
				return -1;
			nexthdr = h[0];
			*off += (h[1] + 1) * 8;
			break;
		default:
			return -1;
		}
	}
	return nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP ? nexthdr : -1;
}

/* Parses Ethernet + IPv4/IPv6 (extension headers walked) + TCP or UDP.
 * Returns 0, or -1 for anything else, which the callers let through
 * untouched. A TCP fragment is "anything else" (TCP segments to fit the
 * path); a UDP fragment parses with frag set and no ports. */
static __always_inline int skfp_parse(struct __sk_buff *skb, struct skfp_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 off;
	int proto;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return -1;
		proto = ip->protocol;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			return -1;
		p->family = 4;
		p->tuple.ipv4.saddr = ip->saddr;
		p->tuple.ipv4.daddr = ip->daddr;
		off = sizeof(*eth) + ip->ihl * 4;
		if (ip->frag_off & bpf_htons(0x3fff))
			p->frag = 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
		off = sizeof(*eth) + sizeof(*ip6);
		proto = skfp_ipv6_walk(skb, ip6->nexthdr, &off, &p->frag);
		if (proto < 0)
			return -1;
	} else {
		return -1;
	}
	p->proto = proto;
	if (p->frag)
		return proto == IPPROTO_UDP ? 0 : -1;
	p->l4_off = off;
	if (proto == IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
			return -1;
		p->flags = ((__u8 *)&th)[13];
		p->seq = bpf_ntohl(th.seq);
		if (p->family == 4) {
			p->tuple.ipv4.sport = th.source;
			p->tuple.ipv4.dport = th.dest;
		} else {
			p->tuple.ipv6.sport = th.source;
			p->tuple.ipv6.dport = th.dest;
		}
	} else {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)))
			return -1;
		if (p->family == 4) {
			p->tuple.ipv4.sport = uh.source;
			p->tuple.ipv4.dport = uh.dest;
		} else {
			p->tuple.ipv6.sport = uh.source;
			p->tuple.ipv6.dport = uh.dest;
		}
	}
	return 0;
}

static __always_inline __u16 skfp_dport(const struct skfp_pkt *p)
{
	return bpf_ntohs(p->family == 4 ? p->tuple.ipv4.dport : p->tuple.ipv6.dport);
}

/* Destinations that never go to the proxy: loopback, link-local, multicast
 * (and reserved/broadcast) always; RFC 1918 / ULA when asked; the user's
 * CIDRs and ports. */
static __always_inline int skfp_bypass(const struct skfp_config *cfg, const struct skfp_pkt *p)
{
	__u16 dport = skfp_dport(p);
	int private = cfg->flags & SKFP_CFG_BYPASS_PRIVATE;

	if (bpf_map_lookup_elem(&skfp_bypass_ports, &dport))
		return 1;
	if (p->family == 4) {
		__u32 d = bpf_ntohl(p->tuple.ipv4.daddr);
		struct skfp_lpm4_key k4 = {.prefixlen = 32};

		if ((d >> 24) == 0 || (d >> 24) == 127 || (d >> 16) == 0xa9fe || d >= 0xe0000000)
			return 1;
		if (private && ((d >> 24) == 10 || (d >> 20) == 0xac1 || (d >> 16) == 0xc0a8))
			return 1;
		__builtin_memcpy(k4.addr, &p->tuple.ipv4.daddr, 4);
		return bpf_map_lookup_elem(&skfp_bypass4, &k4) != NULL;
	} else {
		const __u32 *d = p->tuple.ipv6.daddr;
		__u32 w0 = bpf_ntohl(d[0]);
		struct skfp_lpm6_key k6 = {.prefixlen = 128};

		if ((w0 >> 24) == 0xff || (w0 >> 22) == (0xfe80 >> 6))
			return 1;
		if (d[0] == 0 && d[1] == 0 && d[2] == 0 && (d[3] == 0 || d[3] == bpf_htonl(1)))
			return 1;
		if (private && (w0 >> 25) == (0xfc00 >> 9))
			return 1;
		__builtin_memcpy(k6.addr, d, 16);
		return bpf_map_lookup_elem(&skfp_bypass6, &k6) != NULL;
	}
}

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

static __always_inline __u16 skfp_csum_fold(__s64 csum)
{
	__u32 sum = (__u32)csum;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Pseudo headers for the TCP checksum (RFC 793, RFC 8200 8.1). */
struct skfp_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct skfp_pseudo6 {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__u8 zero[3];
	__u8 proto;
};

/* Fail-fast: turns the client's SYN into the RST|ACK a closed port would
 * send (RFC 793) and delivers it to the uplink's ingress, so connect() fails
 * at once with ECONNREFUSED. Nothing leaves the host. The reply is built on
 * the stack and written over the SYN, which is then cut to its length (the
 * SYN's options and any TFO data go). */
/* to: BPF_F_INGRESS for the host's own client (the answer comes in on the
 * uplink), 0 for a LAN client (it goes back out of the LAN interface). */
static __always_inline int skfp_reject(struct __sk_buff *skb, const struct skfp_pkt *p, __u64 to)
{
	struct tcphdr th = {};
	struct ethhdr eth;
	__u32 ip_len;
	__s64 csum;

	__u8 mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_SHOT;
	/* Our own MAC as destination: PACKET_HOST at the uplink's ingress. */
	__builtin_memcpy(mac, eth.h_dest, ETH_ALEN);
	__builtin_memcpy(eth.h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(eth.h_source, mac, ETH_ALEN);

	th.doff = 5;
	th.rst = 1;
	th.ack = 1;
	th.ack_seq = bpf_htonl(p->seq + 1);

	if (p->family == 4) {
		struct skfp_pseudo4 ph = {.proto = IPPROTO_TCP, .len = bpf_htons(sizeof(th))};
		struct iphdr ip = {.version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_TCP};

		th.source = p->tuple.ipv4.dport;
		th.dest = p->tuple.ipv4.sport;
		ip.saddr = ph.saddr = p->tuple.ipv4.daddr;
		ip.daddr = ph.daddr = p->tuple.ipv4.saddr;
		ip.tot_len = bpf_htons(sizeof(ip) + sizeof(th));
		ip.check = skfp_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));
		csum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		th.check = skfp_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&th, sizeof(th), csum));
		if (bpf_skb_store_bytes(skb, sizeof(eth), &ip, sizeof(ip), 0))
			return TC_ACT_SHOT;
		ip_len = sizeof(ip);
	} else {
		struct skfp_pseudo6 ph = {.proto = IPPROTO_TCP, .len = bpf_htonl(sizeof(th))};
		struct ipv6hdr ip6 = {.version = 6, .nexthdr = IPPROTO_TCP, .hop_limit = 64};

		th.source = p->tuple.ipv6.dport;
		th.dest = p->tuple.ipv6.sport;
		__builtin_memcpy(ph.saddr, p->tuple.ipv6.daddr, 16);
		__builtin_memcpy(ph.daddr, p->tuple.ipv6.saddr, 16);
		__builtin_memcpy(&ip6.saddr, ph.saddr, 16);
		__builtin_memcpy(&ip6.daddr, ph.daddr, 16);
		ip6.payload_len = bpf_htons(sizeof(th));
		csum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		th.check = skfp_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&th, sizeof(th), csum));
		if (bpf_skb_store_bytes(skb, sizeof(eth), &ip6, sizeof(ip6), 0))
			return TC_ACT_SHOT;
		ip_len = sizeof(ip6);
	}
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) ||
	    bpf_skb_store_bytes(skb, sizeof(eth) + ip_len, &th, sizeof(th), 0) ||
	    bpf_skb_change_tail(skb, sizeof(eth) + ip_len + sizeof(th), 0))
		return TC_ACT_SHOT;
	skb->mark = 0;
	return bpf_redirect(skb->ifindex, to);
}

/* UDP. A datagram has no SYN to decide by: each one to an intercepted
 * destination goes to the proxy's UDP socket, with two exceptions. A
 * datagram that answers one which came in to a local socket (the host's own
 * DNS, WireGuard or game server replying) goes direct: skfp_tc_uplink_ingress
 * notes such flows, as conntrack would, for SKFP_UDP_ANSWER_NS after the
 * last datagram in. And a fragment cannot be handed over (tc sees the
 * pieces the IP layer cut, the proxy needs whole datagrams): fragments to
 * destinations that are not bypassed by address are dropped and counted,
 * never let out, in every --proxy-down mode. --bypass-port cannot apply to
 * them (later fragments carry no ports). */
#define SKFP_UDP_ANSWER_NS (120ull * 1000000000ull)
#define SKFP_UDP_NOTE_NS (1000000000ull) /* a flow's note is refreshed at most once a second */

/* A UDP flow seen from the local socket. 40 bytes. */
struct skfp_udp_flow {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u16 local_port;
	__u16 remote_port;
	__u32 family;
};

/* UDP flows that came in to a local socket: when the last datagram did. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct skfp_udp_flow);
	__type(value, __u64);
} skfp_udp_inbound SEC(".maps");

/* local/remote: the packet's source/destination (egress) or the reverse (ingress). */
static __always_inline void skfp_udp_flow_of(struct skfp_udp_flow *f, const struct skfp_pkt *p, int ingress)
{
	if (p->family == 4) {
		f->local_ip[0] = ingress ? p->tuple.ipv4.daddr : p->tuple.ipv4.saddr;
		f->remote_ip[0] = ingress ? p->tuple.ipv4.saddr : p->tuple.ipv4.daddr;
		f->local_port = ingress ? p->tuple.ipv4.dport : p->tuple.ipv4.sport;
		f->remote_port = ingress ? p->tuple.ipv4.sport : p->tuple.ipv4.dport;
	} else {
		__builtin_memcpy(f->local_ip, ingress ? p->tuple.ipv6.daddr : p->tuple.ipv6.saddr, 16);
		__builtin_memcpy(f->remote_ip, ingress ? p->tuple.ipv6.saddr : p->tuple.ipv6.daddr, 16);
		f->local_port = ingress ? p->tuple.ipv6.dport : p->tuple.ipv6.sport;
		f->remote_port = ingress ? p->tuple.ipv6.sport : p->tuple.ipv6.dport;
	}
	f->family = p->family;
}

static __always_inline int skfp_udp_answers(const struct skfp_pkt *p)
{
	struct skfp_udp_flow f = {};
	__u64 *seen;

	skfp_udp_flow_of(&f, p, 0);
	seen = bpf_map_lookup_elem(&skfp_udp_inbound, &f);
	return seen && bpf_ktime_get_ns() - *seen < SKFP_UDP_ANSWER_NS;
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

/* Fail-fast for UDP: the ICMP port unreachable a closed port would send,
 * delivered to the uplink's ingress: a connected socket's next receive fails
 * with ECONNREFUSED at once. The error quotes the datagram's IP header and
 * 8 bytes of it (the UDP header); a datagram with IPv4 options or IPv6
 * extension headers is dropped instead. */
/* The ICMP/ICMPv6 error header (linux/icmp.h pulls in libc headers). */
struct skfp_icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__u32 unused;
};
#define SKFP_ICMP_DEST_UNREACH 3
#define SKFP_ICMP_PORT_UNREACH 3
#define SKFP_ICMPV6_DEST_UNREACH 1
#define SKFP_ICMPV6_PORT_UNREACH 4

struct skfp_icmp4_reply {
	struct iphdr ip;
	struct skfp_icmp_hdr icmp;
	__u8 quoted[sizeof(struct iphdr) + 8];
};

struct skfp_icmp6_reply {
	struct ipv6hdr ip6;
	struct skfp_icmp_hdr icmp;
	__u8 quoted[sizeof(struct ipv6hdr) + 8];
};

static __always_inline int skfp_udp_reject(struct __sk_buff *skb, const struct skfp_pkt *p, __u64 to, int at_lo)
{
	struct ethhdr eth;
	__u8 mac[ETH_ALEN];
	__s64 csum;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_SHOT;
	__builtin_memcpy(mac, eth.h_dest, ETH_ALEN);
	__builtin_memcpy(eth.h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(eth.h_source, mac, ETH_ALEN);
	/* Back into lo: its address (all zeros) makes it PACKET_HOST there. */
	if (at_lo)
		__builtin_memset(eth.h_dest, 0, ETH_ALEN);

	if (p->family == 4) {
		struct skfp_icmp4_reply r = {};

		if (p->l4_off != sizeof(eth) + sizeof(struct iphdr) ||
		    bpf_skb_load_bytes(skb, sizeof(eth), r.quoted, sizeof(r.quoted)))
			return TC_ACT_SHOT;
		r.ip.version = 4;
		r.ip.ihl = 5;
		r.ip.ttl = 64;
		r.ip.protocol = IPPROTO_ICMP;
		r.ip.saddr = p->tuple.ipv4.daddr;
		r.ip.daddr = p->tuple.ipv4.saddr;
		r.ip.tot_len = bpf_htons(sizeof(r));
		r.ip.check = skfp_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&r.ip, sizeof(r.ip), 0));
		r.icmp.type = SKFP_ICMP_DEST_UNREACH;
		r.icmp.code = SKFP_ICMP_PORT_UNREACH;
		r.icmp.checksum = skfp_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&r.icmp, sizeof(r) - sizeof(r.ip), 0));
		if (bpf_skb_change_tail(skb, sizeof(eth) + sizeof(r), 0) ||
		    bpf_skb_store_bytes(skb, sizeof(eth), &r, sizeof(r), 0))
			return TC_ACT_SHOT;
	} else {
		struct skfp_pseudo6 ph = {.proto = IPPROTO_ICMPV6};
		struct skfp_icmp6_reply r = {};

		if (p->l4_off != sizeof(eth) + sizeof(struct ipv6hdr) ||
		    bpf_skb_load_bytes(skb, sizeof(eth), r.quoted, sizeof(r.quoted)))
			return TC_ACT_SHOT;
		r.ip6.version = 6;
		r.ip6.nexthdr = IPPROTO_ICMPV6;
		r.ip6.hop_limit = 64;
		r.ip6.payload_len = bpf_htons(sizeof(r) - sizeof(r.ip6));
		__builtin_memcpy(&r.ip6.saddr, p->tuple.ipv6.daddr, 16);
		__builtin_memcpy(&r.ip6.daddr, p->tuple.ipv6.saddr, 16);
		__builtin_memcpy(ph.saddr, p->tuple.ipv6.daddr, 16);
		__builtin_memcpy(ph.daddr, p->tuple.ipv6.saddr, 16);
		ph.len = bpf_htonl(sizeof(r) - sizeof(r.ip6));
		r.icmp.type = SKFP_ICMPV6_DEST_UNREACH;
		r.icmp.code = SKFP_ICMPV6_PORT_UNREACH;
		csum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		r.icmp.checksum = skfp_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&r.icmp, sizeof(r) - sizeof(r.ip6), csum));
		if (bpf_skb_change_tail(skb, sizeof(eth) + sizeof(r), 0) ||
		    bpf_skb_store_bytes(skb, sizeof(eth), &r, sizeof(r), 0))
			return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
		return TC_ACT_SHOT;
	skb->mark = 0;
	return bpf_redirect(skb->ifindex, to);
}

/* No proxy for this packet: what --proxy-down says (to: see skfp_reject). */
static __always_inline int skfp_proxy_down(struct __sk_buff *skb, const struct skfp_config *cfg,
					   const struct skfp_pkt *p, __u64 to)
{
	switch (cfg->proxy_down) {
	case SKFP_PROXY_DOWN_PASS:
		return TC_ACT_OK;
	case SKFP_PROXY_DOWN_FAIL_FAST:
		return p->proto == IPPROTO_UDP ? skfp_udp_reject(skb, p, to, 0) : skfp_reject(skb, p, to);
	default:
		return TC_ACT_SHOT;
	}
}

/* Uplink egress, a UDP datagram of a local socket. */
static __always_inline int skfp_udp_egress(struct __sk_buff *skb, const struct skfp_config *cfg, struct skfp_pkt *p)
{
	struct bpf_sock *sk;

	if (!(cfg->flags & SKFP_CFG_UDP))
		return TC_ACT_OK;
	skfp_count(SKFP_CNT_UDP_SEEN, 1);
	if ((cfg->proxy_mark && skb->mark == cfg->proxy_mark) || skfp_bypass(cfg, p)) {
		skfp_count(SKFP_CNT_UDP_BYPASSED, 1);
		return TC_ACT_OK;
	}
	if (!skfp_cgroup_in_scope(skb, cfg)) {
		skfp_count(SKFP_CNT_OUT_OF_SCOPE, 1);
		return TC_ACT_OK;
	}
	if (p->frag) {
		skfp_count(SKFP_CNT_UDP_FRAGMENTS, 1);
		return TC_ACT_SHOT;
	}
	if (skfp_udp_answers(p)) {
		skfp_count(SKFP_CNT_UDP_ANSWERS, 1);
		return TC_ACT_OK;
	}
	sk = skfp_lookup_proxy(skb, cfg, p);
	if (sk && skfp_proxy_refused(p, sk)) {
		bpf_sk_release(sk);
		sk = NULL;
	}
	if (sk)
		bpf_sk_release(sk);
	if (!sk) {
		skfp_count(SKFP_CNT_UDP_NO_PROXY, 1);
		return skfp_proxy_down(skb, cfg, p, BPF_F_INGRESS);
	}
	skb->mark = cfg->fwmark;
	skfp_count(SKFP_CNT_UDP_REDIRECTED, 1);
	return bpf_redirect(cfg->lo_ifindex, BPF_F_INGRESS);
}

/* A packet for the proxy, at an ingress hook: to its connection's socket (a
 * TCP connection the proxy accepted, or a connected UDP socket it answers
 * from), or to the proxy's listener or UDP socket. A refused assign to the
 * connection's socket is no loss (routing finds that socket too: its tuple is
 * the packet's); one to the proxy's socket is noted (skfp_note_refused). */
static __always_inline int skfp_assign(struct __sk_buff *skb, const struct skfp_config *cfg, struct skfp_pkt *p)
{
	int udp = p->proto == IPPROTO_UDP;
	struct bpf_sock *sk;
	__u64 addr;
	long err;

	sk = udp ? skfp_udp_lookup_conn(skb, p) : skfp_lookup_conn(skb, p);
	if (sk) {
		bpf_sk_assign(skb, sk, 0);
		bpf_sk_release(sk);
		skfp_count(udp ? SKFP_CNT_UDP_ASSIGNED : SKFP_CNT_TC_ASSIGNED_EST, 1);
		return TC_ACT_OK;
	}
	sk = skfp_lookup_proxy(skb, cfg, p);
	if (!sk) {
		/* The proxy went away since egress looked. */
		skfp_count(udp ? SKFP_CNT_UDP_NO_PROXY : SKFP_CNT_TC_NO_LISTENER, 1);
		return TC_ACT_SHOT;
	}
	err = bpf_sk_assign(skb, sk, 0);
	addr = (__u64)sk;
	bpf_sk_release(sk);
	if (err) {
		skfp_note_refused(p, addr);
		return SKFP_REFUSED;
	}
	skfp_count(udp ? SKFP_CNT_UDP_ASSIGNED : SKFP_CNT_TC_ASSIGNED_LISTEN, 1);
	return TC_ACT_OK;
}

/* A refused packet at an ingress hook. Fail-fast answers at once: a TCP SYN
 * goes on to the stack, which finds no socket and resets it (from the
 * original destination: a reset may come from any address); a datagram gets
 * skfp's ICMP port unreachable (the stack's own cannot leave from the
 * original destination, not an address of the host). The other modes drop
 * it: the client's retry meets the uplink's verdict. */
static __always_inline int skfp_refused_verdict(struct __sk_buff *skb, const struct skfp_config *cfg,
						const struct skfp_pkt *p, __u64 to, int at_lo)
{
	if (cfg->proxy_down != SKFP_PROXY_DOWN_FAIL_FAST)
		return TC_ACT_SHOT;
	return p->proto == IPPROTO_UDP ? skfp_udp_reject(skb, p, to, at_lo) : TC_ACT_OK;
}

SEC("tc")
int skfp_tc_egress(struct __sk_buff *skb)
{
	struct skfp_config *cfg;
	struct skfp_pkt p = {};

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_INTERCEPT) || !cfg->fwmark)
		return TC_ACT_OK;
	if (skfp_parse(skb, &p))
		return TC_ACT_OK;
	/* Only the host's own traffic. A packet the host forwards (a container
	 * behind a bridge, with or without NAT; a LAN client; a VM) has no
	 * socket here: ip_rcv orphans every packet it receives. Handed to the
	 * proxy, its replies would go to the host (after NAT, its own address)
	 * and the connection would be cut off. */
	if (!skb->sk) {
		skfp_count(SKFP_CNT_TC_FORWARDED, 1);
		return TC_ACT_OK;
	}
	if (p.proto == IPPROTO_UDP)
		return skfp_udp_egress(skb, cfg, &p);
	skfp_count(SKFP_CNT_TC_SEEN, 1);
	/* The proxy's own upstream: intercepting it would loop. */
	if ((cfg->proxy_mark && skb->mark == cfg->proxy_mark) || skfp_bypass(cfg, &p)) {
		skfp_count(SKFP_CNT_TC_BYPASSED, 1);
		return TC_ACT_OK;
	}
	/* A new connection of a socket outside the cgroups asked for. */
	if (skfp_pkt_is_syn(&p) && !skfp_cgroup_in_scope(skb, cfg)) {
		skfp_count(SKFP_CNT_OUT_OF_SCOPE, 1);
		return TC_ACT_OK;
	}
	/* Checked here, not at lo: here "pass" can still let the packet out. */
	switch (skfp_route(skb, cfg, &p)) {
	case SKFP_DIRECT:
		skfp_count(SKFP_CNT_TC_BYPASSED, 1);
		return TC_ACT_OK;
	case SKFP_NO_PROXY:
		skfp_count(SKFP_CNT_TC_NO_LISTENER, 1);
		return skfp_proxy_down(skb, cfg, &p, BPF_F_INGRESS);
	default:
		break;
	}
	skb->mark = cfg->fwmark;
	skfp_count(SKFP_CNT_TC_REDIRECTED, 1);
	return bpf_redirect(cfg->lo_ifindex, BPF_F_INGRESS);
}

/* Runs for every packet entering lo: anything without our fwmark is
 * loopback traffic and passes at once. Does not look at SKFP_CFG_INTERCEPT:
 * packets already redirected must still reach their socket. */
SEC("tc")
int skfp_tc_lo_ingress(struct __sk_buff *skb)
{
	struct skfp_config *cfg;
	struct skfp_pkt p = {};
	int ret;

	cfg = skfp_get_config();
	if (!cfg || !cfg->fwmark || skb->mark != cfg->fwmark)
		return TC_ACT_OK;
	if (skfp_parse(skb, &p))
		return TC_ACT_OK;
	/* The redirect left the uplink's Ethernet addresses: PACKET_OTHERHOST,
	 * which ip_rcv drops. */
	bpf_skb_change_type(skb, PACKET_HOST);
	ret = skfp_assign(skb, cfg, &p);
	return ret == SKFP_REFUSED ? skfp_refused_verdict(skb, cfg, &p, BPF_F_INGRESS, 1) : ret;
}

/* Uplink ingress, with UDP on: notes each UDP flow that comes in to a local
 * socket (skfp_udp_answers). Everything passes. */
SEC("tc")
int skfp_tc_uplink_ingress(struct __sk_buff *skb)
{
	struct skfp_udp_flow f = {};
	struct skfp_config *cfg;
	struct skfp_pkt p = {};
	struct bpf_sock *sk;
	__u64 now, *seen;

	cfg = skfp_get_config();
	if (!cfg || (cfg->flags & (SKFP_CFG_INTERCEPT | SKFP_CFG_UDP)) != (SKFP_CFG_INTERCEPT | SKFP_CFG_UDP))
		return TC_ACT_OK;
	if (skfp_parse(skb, &p) || p.proto != IPPROTO_UDP || p.frag)
		return TC_ACT_OK;
	skfp_udp_flow_of(&f, &p, 1);
	now = bpf_ktime_get_ns();
	seen = bpf_map_lookup_elem(&skfp_udp_inbound, &f);
	if (seen && now - *seen < SKFP_UDP_NOTE_NS)
		return TC_ACT_OK;
	/* Only flows to a local socket: a forwarded one (a router's LAN
	 * client) never has its answer looked up, and would evict. */
	sk = skfp_udp_lookup(skb, &p.tuple, p.family);
	if (!sk)
		return TC_ACT_OK;
	bpf_sk_release(sk);
	bpf_map_update_elem(&skfp_udp_inbound, &f, &now, BPF_ANY);
	return TC_ACT_OK;
}

/* --lan: what LAN clients (a router's, containers on a bridge) send through
 * the host. Taken at the LAN interface's ingress, before routing and before
 * any NAT, so the proxy sees the client's own address; the fwmark makes
 * routing deliver it locally, where the socket it was assigned takes it. What
 * is for the host itself (its own addresses, broadcast) and what goes back
 * out of the LAN interface it came from (the LAN's own subnet) stays as it is:
 * the kernel's route lookup (bpf_fib_lookup) decides. With forwarding off on
 * the interface the host routes nothing for its LAN clients, and skfp takes
 * nothing either. Proxy down: as on the uplink, answers go back out of the
 * LAN interface. Not covered: a UDP answer from a LAN host to a datagram the
 * host port-forwarded to it (DNAT) is intercepted; --bypass-port its port. */
static __always_inline int skfp_lan_stays(struct __sk_buff *skb, const struct skfp_pkt *p)
{
	struct bpf_fib_lookup f = {};
	long rc;

	f.ifindex = skb->ifindex;
	f.l4_protocol = p->proto;
	if (p->family == 4) {
		f.family = AF_INET;
		f.ipv4_src = p->tuple.ipv4.saddr;
		f.ipv4_dst = p->tuple.ipv4.daddr;
	} else {
		f.family = AF_INET6;
		__builtin_memcpy(f.ipv6_src, p->tuple.ipv6.saddr, 16);
		__builtin_memcpy(f.ipv6_dst, p->tuple.ipv6.daddr, 16);
	}
	rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED || rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return 1;
	return (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) && f.ifindex == skb->ifindex;
}

SEC("tc")
int skfp_tc_lan_ingress(struct __sk_buff *skb)
{
	struct skfp_config *cfg;
	struct skfp_pkt p = {};
	struct bpf_sock *sk;
	int ret;

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_INTERCEPT) || !cfg->fwmark)
		return TC_ACT_OK;
	if (skfp_parse(skb, &p) || (p.proto == IPPROTO_UDP && !(cfg->flags & SKFP_CFG_UDP)))
		return TC_ACT_OK;
	skfp_count(SKFP_CNT_LAN_SEEN, 1);
	if (skfp_bypass(cfg, &p) || skfp_lan_stays(skb, &p)) {
		skfp_count(SKFP_CNT_LAN_DIRECT, 1);
		return TC_ACT_OK;
	}
	if (p.frag) {
		skfp_count(SKFP_CNT_UDP_FRAGMENTS, 1);
		return TC_ACT_SHOT;
	}
	if (p.proto == IPPROTO_TCP) {
		switch (skfp_route(skb, cfg, &p)) {
		case SKFP_DIRECT:
			skfp_count(SKFP_CNT_LAN_DIRECT, 1);
			return TC_ACT_OK;
		case SKFP_NO_PROXY:
			skfp_count(SKFP_CNT_LAN_NO_PROXY, 1);
			return skfp_proxy_down(skb, cfg, &p, 0);
		default:
			break;
		}
		ret = skfp_assign(skb, cfg, &p);
	} else {
		sk = skfp_udp_lookup_conn(skb, &p);
		if (!sk) {
			sk = skfp_lookup_proxy(skb, cfg, &p);
			if (sk && skfp_proxy_refused(&p, sk)) {
				bpf_sk_release(sk);
				sk = NULL;
			}
		}
		if (!sk) {
			skfp_count(SKFP_CNT_LAN_NO_PROXY, 1);
			return skfp_proxy_down(skb, cfg, &p, 0);
		}
		bpf_sk_release(sk);
		ret = skfp_assign(skb, cfg, &p);
	}
	if (ret == SKFP_REFUSED) {
		skfp_count(SKFP_CNT_LAN_NO_PROXY, 1);
		ret = skfp_refused_verdict(skb, cfg, &p, 0, 0);
		if (ret == TC_ACT_OK)
			skb->mark = cfg->fwmark; /* a SYN delivered locally: the stack resets it */
		return ret;
	}
	if (ret != TC_ACT_OK)
		return ret;
	skb->mark = cfg->fwmark;
	skfp_count(SKFP_CNT_LAN_ASSIGNED, 1);
	return TC_ACT_OK;
}

#endif /* SKFP_LIB_INTERCEPT_H */
