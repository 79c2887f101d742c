/* SPDX-License-Identifier: GPL-2.0 */
/* Adaptive fastpath: what each reader has shown of how it reads
 * (struct skfp_reader in skfp.h), shared by the fastpath object (sock_ops
 * creates the entry at join and removes it at close, sk_msg reads it before
 * each redirect) and the readers object (readers.bpf.c: a tracing program
 * after each recvmsg() that promotes or bars the reader).
 *
 * Redirected bytes reach only readers that use recv()/read(): splice() reads
 * the TCP queue only, MSG_WAITALL returns short, and a blocking recv() on a
 * socket in the sockhash can fail with EAGAIN (README, Fastpath safety).
 * With SKFP_CFG_ADAPTIVE a connection therefore starts on TCP, and a send
 * is redirected only once its reader has read data with a non-blocking
 * recv() SKFP_PROMOTE_READS times (the sender must only be watched or
 * promoted: fastpath.h); the memory guard then waits until the reader has
 * read every byte sent over TCP, so the order holds.
 * Without the flag (--fastpath on where no tracing program attaches) every
 * reader starts promoted. */
#ifndef SKFP_LIB_READERS_H
#define SKFP_LIB_READERS_H

#include "maps.h"
#include "sock_key.h"

#ifndef SKFP_PROMOTE_READS
#define SKFP_PROMOTE_READS 2
#endif

/* Established local TCP sockets, keyed by their own view of the tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SKFP_SOCKS_MAX);
	__type(key, struct skfp_sock_key);
	__type(value, __u64);
} skfp_socks SEC(".maps");

/* Readers of the sockhash's sockets, keyed by their own sockhash key; an LRU
 * map, so an entry whose close was missed never fills it for good. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SKFP_SOCKS_MAX);
	__type(key, struct skfp_sock_key);
	__type(value, struct skfp_reader);
} skfp_readers SEC(".maps");

/* Moves r from state from to state to by compare-and-swap: sock_ops and the
 * readers' program race (a socket on its way out of the sockhash must never be
 * promoted: its peer would redirect to it, and the kernel drops what reaches
 * or waits in the queue of a socket that leaves). 1: this call moved it. */
static __always_inline int skfp_reader_move(struct skfp_reader *r, __u64 from, __u64 to)
{
	return __sync_val_compare_and_swap(&r->state, from, to) == from;
}

/* A fully ordered add, and what the counter holds after it: the fetching
 * form (its result used), which every JIT orders fully; the plain atomic add
 * is relaxed on arm64. The sum of a reader's redirected bytes needs it
 * (fastpath.h, skfp_release_read). */
static __always_inline __u64 skfp_add_ordered(__u64 *at, __u64 n)
{
	return __sync_fetch_and_add(at, n) + n;
}

static __always_inline __u64 skfp_read_ordered(__u64 *at)
{
	return __sync_fetch_and_add(at, 0);
}

#endif /* SKFP_LIB_READERS_H */
