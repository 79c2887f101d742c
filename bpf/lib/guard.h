/* SPDX-License-Identifier: GPL-2.0 */
/* Memory guard of the fastpath: keeps a slow reader's redirected queue bounded
 * by sending over plain TCP above the bound (see the fastpath-safety issue).
 *
 * Redirected bytes bypass the peer's rcvbuf: without this guard a slow reader
 * lets them pile up without limit. Per sending socket we remember the peer
 * socket the last redirect went to, by its address and its socket cookie;
 * before each message we read, through that address (read-only, no reference
 * taken), whether the socket there still has that cookie (the slab reuses a
 * freed socket's address, never a cookie) and how many redirected bytes it
 * has not read yet (sk_psock.msg_tot_len). Above the bound the message goes
 * over plain TCP, and so does everything after it, so TCP's window holds the
 * writer back. We go back to redirecting only once the peer has read every
 * byte sent over TCP (own write_seq == peer copied_seq) and its redirected
 * queue is empty: the peer reads its redirected queue before its TCP queue,
 * so the byte order holds. docs/memory-guard.md has the details.
 *
 * Needs kernel BTF (CO-RE on the kernel structs of kernel.h), bpf_loop and
 * bpf_probe_read_kernel in sk_msg (Linux 6.1); kernel.h says how each build
 * reads kernel memory, psock.h how the queue is measured on each kernel. */
#ifndef SKFP_LIB_GUARD_H
#define SKFP_LIB_GUARD_H

#include "kernel.h"
#include "maps.h"
#include "pairing.h"
#include "handoff.h"

/* Used when skfp_config.fastpath_queue is 0. */
#define SKFP_GUARD_DEFAULT_QUEUE (4ull << 20)

/* sock->sk_user_data carries flag bits below the psock pointer. */
#define SKFP_SK_USER_DATA_PTRMASK (~7ull)

/* What the guard remembers about one sending socket. */
struct skfp_guard_state {
	__u64 peer_sk;     /* kernel address of the peer socket (0: not known yet) */
	__u64 peer_cookie; /* its socket cookie: what tells a reused address apart */
	__u32 sent_seq;    /* own write_seq after the last redirect */
	__u8 demoted;      /* 1: the guard keeps this socket on TCP */
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

/* A client whose first messages went over TCP because the server had not
 * joined yet: take the server's socket from the connection's record, as
 * demoted, so it is promoted once the server has read those bytes. */
static __always_inline int skfp_guard_learn_peer(struct skfp_guard_state *st, const struct skfp_peer *p)
{
	struct skfp_conn_ends *ends;
	struct skfp_conn_id id;
	__u64 cookie;

	if (!p->client || p->forgotten)
		return 0;
	ends = skfp_pair_record(p, &id);
	if (!ends || !ends->server_sk)
		return 0;
	/* still the server's socket at that address (the record outlives it) */
	cookie = ends->server_cookie;
	if (!cookie || skfp_sk_cookie(ends->server_sk) != cookie)
		return 0;
	st->peer_sk = ends->server_sk;
	st->peer_cookie = cookie;
	st->demoted = 1;
	skfp_dbg("skfp: guard learned the server %llu from the record", cookie);
	return 1;
}

/* Whether this message may be redirected now. 0: send it over plain TCP. */
static __always_inline int skfp_guard_allow(struct sk_msg_md *msg, const struct skfp_config *cfg, const struct skfp_peer *p)
{
	struct skfp_guard_state *st;
	struct bpf_sock *bsk = msg->sk;
	struct tcp_sock *own_tp, *peer_tp;
	struct sock *own, *peer;
	__u64 bound, queued, ud, psock_sk;
	__u32 write_seq;
	int caught_up, over, braking;

	if (!bsk)
		return 0;
	/* No room for the state: TCP is always safe (order and memory). */
	st = bpf_sk_storage_get(&skfp_guard, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	own = skfp_kview_ptr(sock, bsk);
	own_tp = skfp_kview_ptr(tcp_sock, bsk);

	/* The peer is not known until a redirect found it, so the first
	 * redirected message is unguarded. It must not overtake bytes this
	 * socket already sent over TCP (kill switch off, peer not yet in the
	 * sockhash, ...): such a socket waits on TCP until the peer has read
	 * them, which only a client can tell (from the connection's record);
	 * any other stays on TCP for good. */
	if (!st->peer_sk) {
		if (skfp_kread(own_tp, bytes_sent) == 0 && skfp_kread(own_tp, write_seq) == skfp_kread(own_tp, snd_nxt))
			return 1;
		if (!skfp_guard_learn_peer(st, p))
			return 0;
	}
	peer = skfp_kview(sock, st->peer_sk);
	peer_tp = skfp_kview(tcp_sock, st->peer_sk);
	write_seq = skfp_kread(own_tp, write_seq);

	/* The address still holds the same socket (its cookie), and it has a
	 * psock of its own? If not, the peer is gone (its key too: a redirect
	 * would fall back). Only a socket that sent nothing over TCP since its
	 * last redirect may try. */
	if (skfp_sk_cookie(st->peer_sk) != st->peer_cookie)
		return !st->demoted && write_seq == st->sent_seq;
	ud = (__u64)skfp_kread(peer, sk_user_data) & SKFP_SK_USER_DATA_PTRMASK;
	psock_sk = ud ? (__u64)skfp_kread(skfp_kview(sk_psock, ud), sk) : 0;
	if (!ud || psock_sk != st->peer_sk)
		return !st->demoted && write_seq == st->sent_seq;
	bound = cfg->fastpath_queue;
	if (!bound)
		bound = SKFP_GUARD_DEFAULT_QUEUE;
	queued = skfp_psock_queued(ud, bound);

	/* Bytes went over TCP since the last redirect (guard, kill switch or a
	 * failed redirect): redirect again only once the peer has read them
	 * all and its redirected queue is empty, else the peer would read the
	 * newer redirected bytes first. */
	if (st->demoted || write_seq != st->sent_seq) {
		caught_up = queued == 0 && skfp_kread(peer_tp, copied_seq) == write_seq;
		if (!caught_up || skfp_guard_braking(own))
			return 0;
		if (st->demoted) {
			st->demoted = 0;
			skfp_count(SKFP_CNT_GUARD_PROMOTED, 1);
			skfp_dbg("skfp: guard promoted %llu", st->peer_cookie);
		}
		return 1;
	}

	over = queued + msg->size > bound;
	braking = skfp_guard_braking(own);
	/* a reader that keeps up but is a little behind: wait for it (the
	 * hand-off's bounded wait) rather than leave the fastpath */
	if (over && !braking && msg->size <= bound && skfp_handoff_drained(ud, bound - msg->size, cfg))
		return 1;
	if (over || braking) {
		st->demoted = 1;
		skfp_count(SKFP_CNT_GUARD_DEMOTED, 1);
		skfp_dbg("skfp: guard demoted %llu queued %llu", st->peer_cookie, queued);
		return 0;
	}
	return 1;
}

/* Called right after a successful redirect of msg: remember where it went. */
static __always_inline void skfp_guard_redirected(struct sk_msg_md *msg)
{
	struct skfp_guard_state *st;
	struct bpf_sock *bsk = msg->sk;
	struct tcp_sock *own_tp;
	struct sk_msg *kmsg;
	__u64 peer_sk, cookie;

	if (!bsk)
		return;
	st = bpf_sk_storage_get(&skfp_guard, bsk, 0, 0);
	if (!st)
		return;
	kmsg = skfp_kctx(sk_msg, msg);
	peer_sk = (__u64)skfp_kread(kmsg, sk_redir);
	if (!peer_sk)
		return;
	own_tp = skfp_kview_ptr(tcp_sock, bsk);
	st->sent_seq = skfp_kread(own_tp, write_seq);
	/* the helper holds a reference to the target: its cookie is its own */
	cookie = skfp_sk_cookie(peer_sk);
	st->peer_sk = peer_sk;
	st->peer_cookie = cookie;
}

/* Benchmark baseline only (`skfp bench` loopback-fastpath-unguarded): no guard. */
#ifdef SKFP_NO_GUARD
#define skfp_guard_allow(msg, cfg, p) 1
#define skfp_guard_redirected(msg) ((void)(msg))
#endif

#endif /* SKFP_LIB_GUARD_H */
