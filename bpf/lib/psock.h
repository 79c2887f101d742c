/* SPDX-License-Identifier: GPL-2.0 */
/* How many redirected bytes a receiver has not read yet: what the memory
 * guard bounds and the hand-off waits on.
 *
 * bpf_tcp_ingress() charges redirected bytes to the receiver's forward
 * allocation (sk_mem_charge), not to sk_rmem_alloc, and queues the message on
 * its psock's ingress_msg list; the reader's sk_msg_recvmsg() uncharges them
 * and unlinks the message once it is read. Kernels with the 2026 stable
 * backport keep the sum in sk_psock.msg_tot_len. Older ones (6.1, early
 * 6.12) keep no sum: there the list itself is walked, reading each
 * message's sg.size, at most SKFP_QUEUE_WALK_MAX messages; a longer list
 * counts as over any bound, so the bound holds either way (a queue of many
 * small messages leaves the fastpath sooner). The walk reads without the
 * receiver's lock: a message the reader frees meanwhile reads as garbage or
 * fails, which at worst sends one message over plain TCP early or late, never
 * out of order (the guard's promotion checks sequence numbers too). */
#ifndef SKFP_LIB_PSOCK_H
#define SKFP_LIB_PSOCK_H

#include "kernel.h"

#ifndef SKFP_QUEUE_WALK_MAX
#define SKFP_QUEUE_WALK_MAX 64
#endif

/* Too many messages to count: more than any bound. */
#define SKFP_QUEUE_UNCOUNTED (~0ull >> 1)

/* Queued bytes of the psock at psock_addr; the walk stops once past cap. */
static __always_inline __u64 skfp_psock_queued(__u64 psock_addr, __u64 cap)
{
	__u64 head, pos = 0, total = 0;
	__u32 size = 0;

	if (bpf_core_field_exists(struct sk_psock, msg_tot_len))
		return skfp_kread(skfp_kview(sk_psock, psock_addr), msg_tot_len);

	head = psock_addr + bpf_core_field_offset(struct sk_psock, ingress_msg);
	if (bpf_probe_read_kernel(&pos, sizeof(pos), (void *)(head + bpf_core_field_offset(struct list_head, next))))
		return SKFP_QUEUE_UNCOUNTED;
	for (int i = 0; i < SKFP_QUEUE_WALK_MAX; i++) {
		if (pos == head)
			return total;
		/* pos is the message's list member */
		if (!pos ||
		    bpf_probe_read_kernel(&size, sizeof(size),
					  (void *)(pos - bpf_core_field_offset(struct sk_msg, list) +
						   bpf_core_field_offset(struct sk_msg, sg.size))) ||
		    bpf_probe_read_kernel(&pos, sizeof(pos), (void *)(pos + bpf_core_field_offset(struct list_head, next))))
			return SKFP_QUEUE_UNCOUNTED;
		total += size;
		if (total > cap)
			return total;
	}
	return pos == head ? total : SKFP_QUEUE_UNCOUNTED;
}

/* sock->sk_user_data carries flag bits below the psock pointer. */
#define SKFP_SK_USER_DATA_PTRMASK (~7ull)

/* The psock address of a socket (a kernel view of it), 0 if it has none. */
static __always_inline __u64 skfp_sk_psock(struct sock *sk)
{
	return (__u64)skfp_kread(sk, sk_user_data) & SKFP_SK_USER_DATA_PTRMASK;
}

/* Redirected bytes wait in the socket's psock, unread. */
static __always_inline int skfp_sk_redirected_unread(struct sock *sk)
{
	__u64 psock = skfp_sk_psock(sk);

	return psock && skfp_psock_queued(psock, 0);
}

#endif /* SKFP_LIB_PSOCK_H */
