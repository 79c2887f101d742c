/* SPDX-License-Identifier: GPL-2.0 */
/* What interception leaves alone by destination (--bypass, --bypass-port,
 * --bypass-private and the addresses that are never proxied) and by the
 * sending socket's cgroup (--intercept-cgroup, --bypass-cgroup). */
#ifndef SKFP_LIB_SCOPE_H
#define SKFP_LIB_SCOPE_H

#include "packet.h"

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

#endif /* SKFP_LIB_SCOPE_H */
