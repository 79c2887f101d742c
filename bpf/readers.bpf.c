// SPDX-License-Identifier: GPL-2.0
/* The readers object of the adaptive fastpath (lib/readers.h): programs on
 * two tracepoints of the kernel's receive paths that learn how each reader
 * of the sockhash reads. Loaded after the fastpath object, with its maps
 * reused, by probes/skfp-attach.c (bpftool 7.1 cannot attach tracing
 * programs); the links are pinned in the instance directory. Tracepoints
 * (tp_btf), not fentry: kernels locked down for integrity refuse fentry
 * programs and take these. sock_recv_length came with Linux 6.4; a kernel
 * without it keeps --fastpath auto off.
 *
 *   sock_recv_length (after every recvmsg()/read() of a socket):
 *     non-blocking, no MSG_WAITALL, data read    counts toward promotion
 *     MSG_WAITALL, or blocking before promotion  never promoted (barred)
 *   tcp_rcv_space_adjust (once per recvmsg() that reads TCP data, before its
 *   sock_recv_length; once per TCP read of splice(), which has none):
 *     two without a recv in between              a splice reader: never
 *         promoted, or barred; what it sends (a relay splices into it) is
 *         still redirected
 *
 * Barred: its senders go back to TCP. Redirected bytes still queued then
 * ("stranded") wait for its next recv(): no kernel path moves them to the
 * TCP queue that splice() reads. A tracing program may not remove a socket
 * from the sockhash: that is why sock_ops lets only sockets whose owner
 * asked for non-blocking I/O join it (pairing.h). */
#include "lib/readers.h"
#include "lib/pairing.h"
#include "lib/kernel.h"
#include "lib/psock.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define SKFP_MSG_PEEK     0x2
#define SKFP_MSG_DONTWAIT 0x40
#define SKFP_MSG_WAITALL  0x100
#define SKFP_MSG_ERRQUEUE 0x2000

/* sock->sk_user_data carries flag bits below the psock pointer. */
#define SKFP_USER_DATA_PTRMASK (~7ull)

/* The reader entry of a socket of this instance's sockhash, or NULL. */
static __always_inline struct skfp_reader *skfp_reader_of(struct sock *sk, struct skfp_peer **stored)
{
	*stored = bpf_sk_storage_get(&skfp_peers, sk, 0, 0);
	if (!*stored)
		return NULL;
	return bpf_map_lookup_elem(&skfp_readers, &(*stored)->own);
}

/* A promoted reader reads in a way the fastpath breaks: no more redirects. */
static __always_inline void skfp_reader_bar(struct sock *sk, struct skfp_reader *r)
{
	__u64 ud = (__u64)BPF_CORE_READ(sk, sk_user_data) & SKFP_USER_DATA_PTRMASK;

	r->state = SKFP_READER_BARRED;
	skfp_count(SKFP_CNT_READER_BARRED, 1);
	if (ud && skfp_psock_queued(ud, 0))
		skfp_count(SKFP_CNT_READER_STRANDED, 1);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(skfp_reader_recv, struct sock *sk, int ret, int flags)
{
	struct skfp_peer *stored;
	struct skfp_reader *r = skfp_reader_of(sk, &stored);

	if (!r || flags & SKFP_MSG_ERRQUEUE)
		return 0;
	r->unread_adjusts = 0;
	if (r->state == SKFP_READER_PROMOTED) {
		if (flags & SKFP_MSG_WAITALL)
			skfp_reader_bar(sk, r);
		return 0;
	}
	if (r->state != SKFP_READER_WATCHED)
		return 0;
	if (flags & SKFP_MSG_WAITALL || !(flags & SKFP_MSG_DONTWAIT)) {
		r->state = SKFP_READER_BARRED;
		skfp_count(flags & SKFP_MSG_WAITALL ? SKFP_CNT_READER_WAITALL : SKFP_CNT_READER_BLOCKING, 1);
		return 0;
	}
	if (ret <= 0 || flags & SKFP_MSG_PEEK)
		return 0;
	/* not atomic: two threads reading one socket at once at worst delay it */
	if (++r->reads >= SKFP_PROMOTE_READS) {
		r->state = SKFP_READER_PROMOTED;
		skfp_count(SKFP_CNT_READER_PROMOTED, 1);
	}
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(skfp_reader_adjust, struct sock *sk)
{
	struct skfp_peer *stored;
	struct skfp_reader *r = skfp_reader_of(sk, &stored);

	if (!r || r->unread_adjusts++ == 0)
		return 0;
	if (r->state == SKFP_READER_WATCHED) {
		r->state = SKFP_READER_BARRED;
		skfp_count(SKFP_CNT_READER_SPLICE, 1);
	} else if (r->state == SKFP_READER_PROMOTED) {
		skfp_reader_bar(sk, r);
	}
	return 0;
}
