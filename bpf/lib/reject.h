/* SPDX-License-Identifier: GPL-2.0 */
/* --proxy-down fail-fast: the answer a closed port would give, built in tc
 * (a TCP RST|ACK, an ICMP or ICMPv6 port unreachable); and what each
 * --proxy-down mode does with a packet that has no proxy. */
#ifndef SKFP_LIB_REJECT_H
#define SKFP_LIB_REJECT_H

#include "packet.h"

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

/* The packet's Ethernet header with its addresses swapped, for an answer:
 * -1 when it cannot be read. */
static __always_inline int skfp_eth_reversed(struct __sk_buff *skb, struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(*eth)))
		return -1;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return 0;
}

/* Fail-fast: turns the client's SYN into the RST|ACK a closed port would
 * send (RFC 793) and delivers it to the uplink's ingress, so connect() fails
 * at once with ECONNREFUSED. Nothing leaves the host. The reply is built on
 * the stack and written over the SYN, which is then cut to its length (the
 * SYN's options and any TFO data go). */
/* to: BPF_F_INGRESS for the host's own client (the answer comes in on the
 * uplink), 0 for a LAN client (it goes back out of the LAN interface). On an
 * L3 device (p->l2 == 0) the answer has no link-layer header either: the
 * kernel's redirect to such a device takes the packet as it is. */
static __always_inline int skfp_reject(struct __sk_buff *skb, const struct skfp_pkt *p, __u64 to)
{
	struct tcphdr th = {};
	struct ethhdr eth;
	__u32 ip_len;
	__s64 csum;
	__u32 l2 = p->l2;

	/* Our own MAC as destination: PACKET_HOST at the uplink's ingress. */
	if (l2 && skfp_eth_reversed(skb, &eth))
		return TC_ACT_SHOT;

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
		if (bpf_skb_store_bytes(skb, l2, &ip, sizeof(ip), 0))
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
		if (bpf_skb_store_bytes(skb, l2, &ip6, sizeof(ip6), 0))
			return TC_ACT_SHOT;
		ip_len = sizeof(ip6);
	}
	if ((l2 && bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0)) ||
	    bpf_skb_store_bytes(skb, l2 + ip_len, &th, sizeof(th), 0) ||
	    bpf_skb_change_tail(skb, l2 + ip_len + sizeof(th), 0))
		return TC_ACT_SHOT;
	skb->mark = 0;
	return bpf_redirect(skb->ifindex, to);
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
	__u32 l2 = p->l2;
	__s64 csum;

	if (l2) {
		if (skfp_eth_reversed(skb, &eth))
			return TC_ACT_SHOT;
		/* Back into lo: its address (all zeros) makes it PACKET_HOST there. */
		if (at_lo)
			__builtin_memset(eth.h_dest, 0, ETH_ALEN);
	}

	if (p->family == 4) {
		struct skfp_icmp4_reply r = {};

		if (p->l4_off != l2 + sizeof(struct iphdr) ||
		    bpf_skb_load_bytes(skb, l2, r.quoted, sizeof(r.quoted)))
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
		if (bpf_skb_change_tail(skb, l2 + sizeof(r), 0) ||
		    bpf_skb_store_bytes(skb, l2, &r, sizeof(r), 0))
			return TC_ACT_SHOT;
	} else {
		struct skfp_pseudo6 ph = {.proto = IPPROTO_ICMPV6};
		struct skfp_icmp6_reply r = {};

		if (p->l4_off != l2 + sizeof(struct ipv6hdr) ||
		    bpf_skb_load_bytes(skb, l2, r.quoted, sizeof(r.quoted)))
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
		if (bpf_skb_change_tail(skb, l2 + sizeof(r), 0) ||
		    bpf_skb_store_bytes(skb, l2, &r, sizeof(r), 0))
			return TC_ACT_SHOT;
	}
	if (l2 && bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
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

#endif /* SKFP_LIB_REJECT_H */
