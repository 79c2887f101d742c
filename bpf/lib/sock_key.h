/* SPDX-License-Identifier: GPL-2.0 */
/* Building struct skfp_sock_key from a sock_ops or sk_msg context. Both
 * context types name their address fields alike: local_port is host order,
 * remote_port is the network-order port shifted into the upper half. */
#ifndef SKFP_LIB_SOCK_KEY_H
#define SKFP_LIB_SOCK_KEY_H

#include "common.h"

static __always_inline int skfp_is_v4_mapped(const __u32 ip6[4])
{
	return ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void skfp_key_swap(struct skfp_sock_key *k)
{
	__u32 t;
	__u16 p;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		t = k->local_ip[i];
		k->local_ip[i] = k->remote_ip[i];
		k->remote_ip[i] = t;
	}
	p = k->local_port;
	k->local_port = k->remote_port;
	k->remote_port = p;
}

/* Fills *k from ctx (struct bpf_sock_ops * or struct sk_msg_md *), the socket's
 * own view. Returns 0, or -1 for a family that is neither IPv4 nor IPv6. */
#define SKFP_KEY_FROM_CTX(k, ctx)                                                   \
	({                                                                          \
		int __ret = 0;                                                      \
		__builtin_memset((k), 0, sizeof(*(k)));                             \
		(k)->local_port = (__u16)(ctx)->local_port;                         \
		(k)->remote_port = (__u16)(bpf_ntohl((ctx)->remote_port) & 0xffff); \
		if ((ctx)->family == AF_INET) {                                     \
			(k)->family = 4;                                            \
			(k)->local_ip[0] = (ctx)->local_ip4;                        \
			(k)->remote_ip[0] = (ctx)->remote_ip4;                      \
		} else if ((ctx)->family == AF_INET6) {                             \
			__u32 __l[4], __r[4];                                       \
			__l[0] = (ctx)->local_ip6[0];                               \
			__l[1] = (ctx)->local_ip6[1];                               \
			__l[2] = (ctx)->local_ip6[2];                               \
			__l[3] = (ctx)->local_ip6[3];                               \
			__r[0] = (ctx)->remote_ip6[0];                              \
			__r[1] = (ctx)->remote_ip6[1];                              \
			__r[2] = (ctx)->remote_ip6[2];                              \
			__r[3] = (ctx)->remote_ip6[3];                              \
			if (skfp_is_v4_mapped(__l) && skfp_is_v4_mapped(__r)) {     \
				(k)->family = 4;                                    \
				(k)->local_ip[0] = __l[3];                          \
				(k)->remote_ip[0] = __r[3];                         \
			} else {                                                    \
				(k)->family = 6;                                    \
				__builtin_memcpy((k)->local_ip, __l, 16);           \
				__builtin_memcpy((k)->remote_ip, __r, 16);          \
			}                                                           \
		} else {                                                            \
			__ret = -1;                                                 \
		}                                                                   \
		__ret;                                                              \
	})

#endif /* SKFP_LIB_SOCK_KEY_H */
