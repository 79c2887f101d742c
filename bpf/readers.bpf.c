// SPDX-License-Identifier: GPL-2.0
/* The readers object of the adaptive fastpath (lib/readers.h): a program on
 * the tracepoint sock_recv_length (after every recvmsg()/read() of a
 * socket) that learns how each reader of the sockhash reads. Loaded after
 * the fastpath object, with its maps reused, by probes/skfp-attach.c
 * (bpftool 7.1 cannot attach tracing programs); the link is pinned in the
 * instance directory. Built twice: on the tracepoint (tp_btf) sock_recv_length
 * (Linux 6.4+; kernels locked down for integrity refuse fentry/fexit programs
 * and take it), and with -DSKFP_READERS_FEXIT on the exit of the sockmap's
 * tcp_bpf_recvmsg (Linux 6.1, whose sockmap is the only recvmsg of a joined
 * socket). skfp attaches the first the kernel takes; a kernel that takes
 * neither keeps --fastpath auto off.
 *
 * Before promotion, at each recv():
 *   non-blocking, no MSG_WAITALL, data read    counts toward promotion
 *   MSG_WAITALL, or blocking                   never promoted (barred)
 *   the socket's copied_seq moved by more than this recv() read (nothing was
 *   redirected to it yet, so every byte it read came over TCP), the FIN's
 *   one aside: bytes were consumed another way, splice() -- never promoted
 * After promotion, MSG_WAITALL or (adaptive) a blocking recv() demotes it:
 * its senders go back to TCP, and the redirected bytes still queued
 * ("stranded") are read by this very recv() (short, with MSG_WAITALL) and the
 * next ones. Each recv() of a promoted or demoted reader counts the redirected
 * bytes it read (drained), so sock_ops can take a demoted socket out of the
 * sockhash once nothing redirected to it is left (fastpath.h). A promoted
 * reader that moves to splice() is not seen: splice() reads only the TCP
 * queue, no kernel path moves redirected bytes there, and no tracepoint tells
 * it apart from TCP's own receive work (measured on 6.18:
 * tcp_rcv_space_adjust fires outside recvmsg too). A tracing program
 * may not remove a socket from the sockhash: that is why sock_ops lets only
 * sockets whose owner asked for non-blocking I/O join it (pairing.h). */
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

/* The reader entry of a socket of this instance's sockhash, or NULL. */
static __always_inline struct skfp_reader *skfp_reader_of(struct sock *sk, struct skfp_peer **stored)
{
	*stored = bpf_sk_storage_get(&skfp_peers, sk, 0, 0);
	if (!*stored)
		return NULL;
	return bpf_map_lookup_elem(&skfp_readers, &(*stored)->own);
}

/* A promoted reader reads in a way the fastpath breaks: no more redirects to
 * it. sock_ops releases it once it has read every byte redirected to it
 * (fastpath.h). */
static __always_inline void skfp_reader_demote(struct sock *sk, struct skfp_reader *r)
{
	if (!skfp_reader_move(r, SKFP_READER_PROMOTED, SKFP_READER_DEMOTED))
		return;
	skfp_count(SKFP_CNT_READER_BARRED, 1);
	if (skfp_sk_redirected_unread(sk))
		skfp_count(SKFP_CNT_READER_STRANDED, 1);
}

/* How far the socket's copied_seq moved since the reader's last recv() (or its
 * join): the bytes this recv() took from the TCP queue, plus any consumed
 * another way (splice) in between. */
static __always_inline __u32 skfp_reader_moved(struct sock *sk, struct skfp_reader *r)
{
	__u32 seq = BPF_CORE_READ((struct tcp_sock *)sk, copied_seq);
	__u32 moved = seq - r->seq;

	r->seq = seq;
	return moved;
}

/* A promoted (or demoted) reader's recv(): the redirected bytes it read are
 * what it returned beyond what moved its copied_seq (the TCP queue's). */
static __always_inline void skfp_reader_drain(struct sock *sk, struct skfp_reader *r, int ret, int flags)
{
	__u32 moved = skfp_reader_moved(sk, r);

	if (ret > 0 && !(flags & SKFP_MSG_PEEK) && (__u32)ret > moved)
		__sync_fetch_and_add(&r->drained, (__u64)((__u32)ret - moved));
}

/* Why a watched reader is never promoted, after this recv(); 0: it may be. */
static __always_inline __u32 skfp_reader_refusal(struct sock *sk, struct skfp_reader *r, int ret, int flags)
{
	__u32 read = ret > 0 && !(flags & SKFP_MSG_PEEK) ? ret : 0;
	__u32 moved = skfp_reader_moved(sk, r);

	/* the FIN takes a sequence number when read: alone (EOF), or with the
	 * last data when it came in their segment (a peer that half-closes right
	 * after its write); that recv() returns the data and moves it one more
	 * (tcp_recvmsg, found_fin_ok): 1 to 8 of the 40 servers of the
	 * "outruns it" test were barred as splice readers for it */
	if (moved != read && moved != read + 1)
		return SKFP_CNT_READER_SPLICE;
	if (flags & SKFP_MSG_WAITALL)
		return SKFP_CNT_READER_WAITALL;
	if (!(flags & SKFP_MSG_DONTWAIT))
		return SKFP_CNT_READER_BLOCKING;
	return 0;
}

/* What one recvmsg() of sk, with these flags and this result, shows. Each
 * change of state is a compare-and-swap from the state it was seen in
 * (skfp_reader_move). */
static __always_inline void skfp_reader_seen(struct sock *sk, int ret, int flags)
{
	struct skfp_peer *stored;
	struct skfp_reader *r = skfp_reader_of(sk, &stored);
	struct skfp_config *cfg;
	__u32 refusal;

	if (!r || flags & SKFP_MSG_ERRQUEUE)
		return;
	if (r->state == SKFP_READER_PROMOTED || r->state == SKFP_READER_DEMOTED) {
		skfp_reader_drain(sk, r, ret, flags);
		if (r->state != SKFP_READER_PROMOTED)
			return;
		/* a blocking recv() inside the sockhash can fail with EAGAIN:
		 * adaptive only (--fastpath all redirects to blocking readers
		 * too, iperf3's) */
		cfg = skfp_get_config();
		if (flags & SKFP_MSG_WAITALL || (!(flags & SKFP_MSG_DONTWAIT) && cfg && cfg->flags & SKFP_CFG_ADAPTIVE))
			skfp_reader_demote(sk, r);
		return;
	}
	if (r->state != SKFP_READER_WATCHED)
		return;
	refusal = skfp_reader_refusal(sk, r, ret, flags);
	if (refusal) {
		if (skfp_reader_move(r, SKFP_READER_WATCHED, SKFP_READER_BARRED))
			skfp_count(refusal, 1);
		return;
	}
	if (ret <= 0 || flags & SKFP_MSG_PEEK)
		return;
	/* not atomic: two threads reading one socket at once at worst delay it */
	if (++r->reads >= SKFP_PROMOTE_READS && skfp_reader_move(r, SKFP_READER_WATCHED, SKFP_READER_PROMOTED))
		skfp_count(SKFP_CNT_READER_PROMOTED, 1);
}

#ifndef SKFP_READERS_FEXIT
SEC("tp_btf/sock_recv_length")
int BPF_PROG(skfp_reader_recv, struct sock *sk, int ret, int flags)
{
	skfp_reader_seen(sk, ret, flags);
	return 0;
}
#else
/* Linux 6.1 has no sock_recv_length: the sockmap's own recvmsg, on its way
 * out. flags is its fourth argument from 5.19 on (MSG_DONTWAIT included);
 * the return value comes last, after a fifth argument on 6.1 and not on
 * 7.x, so it is read with bpf_get_func_ret. */
SEC("fexit/tcp_bpf_recvmsg")
int BPF_PROG(skfp_reader_recv, struct sock *sk, void *msg, __u64 len, int flags)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	skfp_reader_seen(sk, (int)ret, flags);
	return 0;
}
#endif
