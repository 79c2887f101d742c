/* SPDX-License-Identifier: GPL-2.0 */
/* Memory guard of the fastpath: keeps a slow reader's redirected queue bounded
 * by sending over plain TCP above the bound, and keeps the byte order
 * whenever a connection moves between TCP and the fastpath.
 *
 * Redirected bytes bypass the peer's rcvbuf: without this guard a slow reader
 * lets them pile up without limit. The sender knows its peer's socket by the
 * address and socket cookie its reader entry holds (readers.h); before each
 * message it reads, through that address (read-only, no reference taken),
 * whether the socket there still has that cookie (the slab reuses a freed
 * socket's address, never a cookie) and how many redirected bytes it has not
 * read yet (psock.h). Above the bound the message goes over plain TCP, and so
 * does everything after it, so TCP's window holds the writer back. A sender
 * redirects, for the first time or again, only once the peer has read every
 * byte sent over TCP (own write_seq == peer copied_seq) and its redirected
 * queue is empty: the peer reads its redirected queue before its TCP queue,
 * so the byte order holds. docs/memory-guard.md has the details.
 *
 * Needs kernel BTF (CO-RE on the kernel structs of kernel.h) and
 * bpf_probe_read_kernel in sk_msg (Linux 6.1); kernel.h says how each build
 * reads kernel memory, psock.h how the queue is measured on each kernel. */
#ifndef SKFP_LIB_GUARD_H
#define SKFP_LIB_GUARD_H

#include "kernel.h"
#include "maps.h"
#include "psock.h"

/* Used when skfp_config.fastpath_queue is 0. */
#define SKFP_GUARD_DEFAULT_QUEUE (4ull << 20)

/* A reader that sent its FIN keeps the fastpath up to this many times the
 * bound (skfp_sk_sent_fin). */
#define SKFP_GUARD_FIN_FACTOR 4

/* skfp_guard_state.demoted */
#define SKFP_GUARD_REDIRECTING 0
#define SKFP_GUARD_DEMOTED     1 /* the guard keeps this socket on TCP */
#define SKFP_GUARD_STARTING    2 /* not redirected to this peer yet */

/* What the guard remembers about one sending socket. */
struct skfp_guard_state {
	__u64 peer_sk;     /* kernel address of the peer socket */
	__u64 peer_cookie; /* its socket cookie (0: no peer yet) */
	__u32 sent_seq;    /* own write_seq after the last redirect */
	__u8 demoted;      /* SKFP_GUARD_* */
	__u8 _pad[3];
};

/* The cookie of the socket at a kernel address (both ends of a paired
 * connection have one: skfp_join asks for it). */
static __always_inline __u64 skfp_sk_cookie(__u64 sk_addr)
{
	return skfp_kread(skfp_kview(sock, sk_addr), __sk_common.skc_cookie.counter);
}

/* Per sending socket guard state; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct skfp_guard_state);
} skfp_guard SEC(".maps");

/* Global brake: TCP's memory_allocated at or above tcp_mem[0] (the point up
 * to which the kernel does not regulate TCP memory) keeps sockets on TCP.
 * Two reads through the protocol's pointers; a failed read means no brake. */
static __always_inline int skfp_guard_braking(const struct sock *own)
{
	struct proto *prot = skfp_kread(own, __sk_common.skc_prot);
	skfp_atomic_long_t *allocated;
	long *limits;
	long used = 0, low = 0;

	if (!prot)
		return 0;
	allocated = skfp_kread(prot, memory_allocated);
	limits = skfp_kread(prot, sysctl_mem);
	if (!allocated || !limits)
		return 0;
	if (bpf_probe_read_kernel(&used, sizeof(used), &allocated->counter) ||
	    bpf_probe_read_kernel(&low, sizeof(low), limits))
		return 0;
#ifdef SKFP_GUARD_BRAKE_PAGES /* build-time override of the threshold (tests) */
	low = SKFP_GUARD_BRAKE_PAGES;
#endif
	return low > 0 && used >= low;
}

/* Whether the socket has sent its FIN (shutdown(SHUT_WR) or close()). Once
 * the peer's FIN arrives too, poll() reports EPOLLHUP on it, and an event loop
 * that takes a short read with EPOLLHUP for the end of the stream (libuv, so
 * Node.js) stops at a read that ends where its redirected queue ends: bytes
 * sent over TCP behind that queue are never read (a Node.js download of 6 MiB
 * from a sender outrunning it lost its tail 6 times in 100). The FIN hold
 * (hold.h) makes that safe: the peer's FIN waits until the queue is read. But
 * it waits a retransmission timeout (200 ms at least), so above the bound the
 * guard keeps redirecting to such a reader up to SKFP_GUARD_FIN_FACTOR times
 * the bound (the common order: request, half-close, a download larger than
 * the bound). Above that, and under the global brake, TCP as for any reader. */
static __always_inline int skfp_sk_sent_fin(const struct sock *sk)
{
	unsigned char state = skfp_kread(sk, __sk_common.skc_state);

	return state != BPF_TCP_ESTABLISHED && state != BPF_TCP_CLOSE_WAIT;
}

/* Whether this message may be redirected now to the reader r. 0: send it
 * over plain TCP. */
static __always_inline int skfp_guard_allow(struct sk_msg_md *msg, const struct skfp_config *cfg, const struct skfp_reader *r)
{
	struct skfp_guard_state *st;
	struct bpf_sock *bsk = msg->sk;
	struct tcp_sock *own_tp, *peer_tp;
	struct sock *own, *peer;
	__u64 bound, queued, ud, psock_sk;
	__u32 write_seq;
	int braking;

	if (!bsk)
		return 0;
	/* No room for the state: TCP is always safe (order and memory). */
	st = bpf_sk_storage_get(&skfp_guard, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	/* A new peer: wait until it has read what this socket sent over TCP. */
	if (st->peer_cookie != r->cookie) {
		st->peer_sk = r->sk;
		st->peer_cookie = r->cookie;
		st->demoted = SKFP_GUARD_STARTING;
	}
	own = skfp_kview_ptr(sock, bsk);
	own_tp = skfp_kview_ptr(tcp_sock, bsk);
	peer = skfp_kview(sock, st->peer_sk);
	peer_tp = skfp_kview(tcp_sock, st->peer_sk);
	write_seq = skfp_kread(own_tp, write_seq);

	/* The address still holds the same socket (its cookie), and it has a
	 * psock of its own? If not, the peer is gone: TCP. */
	if (skfp_sk_cookie(st->peer_sk) != st->peer_cookie)
		return 0;
	ud = skfp_sk_psock(peer);
	psock_sk = ud ? (__u64)skfp_kread(skfp_kview(sk_psock, ud), sk) : 0;
	if (!ud || psock_sk != st->peer_sk)
		return 0;
	bound = cfg->fastpath_queue;
	if (!bound)
		bound = SKFP_GUARD_DEFAULT_QUEUE;
	queued = skfp_psock_queued(ud, bound);

	/* Bytes went over TCP since the last redirect (or there was none yet):
	 * redirect only once the peer has read them all and its redirected
	 * queue is empty, else the peer would read the newer redirected bytes
	 * first. */
	if (st->demoted != SKFP_GUARD_REDIRECTING || write_seq != st->sent_seq) {
		if (queued != 0 || skfp_kread(peer_tp, copied_seq) != write_seq || skfp_guard_braking(own))
			return 0;
		if (st->demoted == SKFP_GUARD_DEMOTED) {
			skfp_count(SKFP_CNT_GUARD_PROMOTED, 1);
			skfp_dbg("skfp: guard promoted %llu", st->peer_cookie);
		}
		st->demoted = SKFP_GUARD_REDIRECTING;
		return 1;
	}
	braking = skfp_guard_braking(own);
	if (queued + msg->size > bound || braking) {
		if (queued && !braking && skfp_sk_sent_fin(peer) &&
		    skfp_psock_queued(ud, bound * SKFP_GUARD_FIN_FACTOR) + msg->size <= bound * SKFP_GUARD_FIN_FACTOR)
			return 1;
		st->demoted = SKFP_GUARD_DEMOTED;
		skfp_count(SKFP_CNT_GUARD_DEMOTED, 1);
		skfp_dbg("skfp: guard demoted %llu queued %llu", st->peer_cookie, queued);
		return 0;
	}
	return 1;
}

/* Called right after a successful redirect of msg: the sequence number from
 * which on bytes over TCP would need the peer to catch up. */
static __always_inline void skfp_guard_redirected(struct sk_msg_md *msg)
{
	struct skfp_guard_state *st;
	struct bpf_sock *bsk = msg->sk;

	if (!bsk)
		return;
	st = bpf_sk_storage_get(&skfp_guard, bsk, 0, 0);
	if (st)
		st->sent_seq = skfp_kread(skfp_kview_ptr(tcp_sock, bsk), write_seq);
}

/* Benchmark baseline only (`skfp bench` loopback-fastpath-unguarded): no guard. */
#ifdef SKFP_NO_GUARD
#define skfp_guard_allow(msg, cfg, r) 1
#define skfp_guard_redirected(msg) ((void)(msg))
#endif

#endif /* SKFP_LIB_GUARD_H */
