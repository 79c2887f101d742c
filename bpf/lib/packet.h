/* SPDX-License-Identifier: GPL-2.0 */
/* One TCP or UDP packet at a tc hook, as the interception programs see it:
 * Ethernet (or no link-layer header: an L3 device), IPv4 or IPv6 (extension
 * headers walked), the ports. */
#ifndef SKFP_LIB_PACKET_H
#define SKFP_LIB_PACKET_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "maps.h"

#define SKFP_TCP_FIN 0x01
#define SKFP_TCP_SYN 0x02
#define SKFP_TCP_RST 0x04
#define SKFP_TCP_ACK 0x10

/* What the programs need of one TCP or UDP packet. */
struct skfp_pkt {
	struct bpf_sock_tuple tuple; /* network order, as the lookup helpers take it */
	__u32 family;                /* 4 or 6 */
	__u32 seq;                   /* TCP: host order */
	__u32 l4_off;                /* offset of the TCP/UDP header (0 in a fragment) */
	__u8 proto;                  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 flags;                  /* TCP flags byte (SKFP_TCP_*) */
	__u8 frag;                   /* UDP: a fragment (first or later): ports left 0 */
	__u8 l2;                     /* link-layer header length: ETH_HLEN, or 0 on an L3 device */
};

/* The link-layer header the programs of an L3 device (tun, WireGuard) lack:
 * skfp's tc programs come in two variants, built from one source with this
 * length as a constant. */
#define SKFP_L2 ETH_HLEN
#define SKFP_L3 0

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

/* Parses the link-layer header (l2: SKFP_L2, or SKFP_L3 where there is none
 * and skb->protocol says the family) + IPv4/IPv6 (extension headers walked)
 * + TCP or UDP. Returns 0, or -1 for anything else, which the callers let
 * through untouched. A TCP fragment is "anything else" (TCP segments to fit
 * the path); a UDP fragment parses with frag set and no ports. */
static __always_inline int skfp_parse_at(struct __sk_buff *skb, struct skfp_pkt *p, const __u32 l2)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct tcphdr th = {};
	__be16 l3proto;
	__u32 off;
	int proto;

	if (l2) {
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > end)
			return -1;
		l3proto = eth->h_proto;
	} else {
		l3proto = skb->protocol;
	}
	p->l2 = l2;
	if (l3proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l2;

		if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->version != 4)
			return -1;
		proto = ip->protocol;
		if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
			return -1;
		p->family = 4;
		p->tuple.ipv4.saddr = ip->saddr;
		p->tuple.ipv4.daddr = ip->daddr;
		off = l2 + ip->ihl * 4;
		if (ip->frag_off & bpf_htons(0x3fff))
			p->frag = 1;
	} else if (l3proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l2;

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
		off = l2 + sizeof(*ip6);
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
	/* TCP and UDP headers both start with the ports: a UDP header is read
	 * into the first 8 bytes of th. */
	if (proto == IPPROTO_TCP ? bpf_skb_load_bytes(skb, off, &th, sizeof(th))
				 : bpf_skb_load_bytes(skb, off, &th, sizeof(struct udphdr)))
		return -1;
	if (proto == IPPROTO_TCP) {
		p->flags = ((__u8 *)&th)[13];
		p->seq = bpf_ntohl(th.seq);
	}
	if (p->family == 4) {
		p->tuple.ipv4.sport = th.source;
		p->tuple.ipv4.dport = th.dest;
	} else {
		p->tuple.ipv6.sport = th.source;
		p->tuple.ipv6.dport = th.dest;
	}
	return 0;
}

/* An Ethernet device's packet (lo's too). */
static __always_inline int skfp_parse(struct __sk_buff *skb, struct skfp_pkt *p)
{
	return skfp_parse_at(skb, p, SKFP_L2);
}

static __always_inline __u16 skfp_dport(const struct skfp_pkt *p)
{
	return bpf_ntohs(p->family == 4 ? p->tuple.ipv4.dport : p->tuple.ipv6.dport);
}

#endif /* SKFP_LIB_PACKET_H */
