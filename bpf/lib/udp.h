/* SPDX-License-Identifier: GPL-2.0 */
/* The UDP flows that came in to a local socket, so that its answers go
 * direct (the host's own UDP servers). */
#ifndef SKFP_LIB_UDP_H
#define SKFP_LIB_UDP_H

#include "packet.h"

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

#endif /* SKFP_LIB_UDP_H */
