/* SPDX-License-Identifier: GPL-2.0 */
/* The hand-off of a redirected message to a busy reader.
 *
 * Once this program returns, the kernel queues the message on the peer
 * (bpf_tcp_ingress), and to do so takes the peer's socket lock. A reader
 * holds that lock for as long as it copies out of its queue, so with writer
 * and reader on two CPUs the writer nearly always finds it taken: it sleeps,
 * the reader's release_sock() wakes it, and each message pays two cross-CPU
 * wake-ups (one for each side). Measured on a 2-vCPU VM: 30% of the time
 * idle, 25% in those wake-ups, and 31-36 Gbit/s unpinned against 55 with both
 * ends on one CPU.
 *
 * So, like a mutex's optimistic spinning, the sender first waits a little
 * (skfp_config.fastpath_spin_ns) for the lock to be released, reading the
 * peer's lock word through a read-only pointer, and only then lets the
 * kernel take the lock (which sleeps if it is still held). Like the mutex, it
 * stops as soon as another task waits for this CPU: that task may be the very
 * reader it waits for, and when CPUs are short, spinning only takes time from
 * others. Nothing else changes: the message, its order and the locking are
 * the kernel's. The cost is CPU: at most fastpath_spin_ns per message whose
 * reader is busy, and only while this CPU has nothing else to run. */
#ifndef SKFP_LIB_HANDOFF_H
#define SKFP_LIB_HANDOFF_H

#include "kernel.h"
#include "maps.h"
#include "psock.h"

/* Upper bound of the wait loop's iterations; the deadline ends it first. */
#define SKFP_SPIN_MAX_ITERS (1u << 20)

/* Another task is waiting for this CPU: the current task's run queue, which
 * is this CPU's, holds more than it. Without CONFIG_FAIR_GROUP_SCHED the
 * kernel has no path to it: never. */
static __always_inline int skfp_cpu_wanted(void)
{
	struct task_struct *task;
	struct cfs_rq *cfs;
	struct rq *rq;

	if (!bpf_core_field_exists(struct cfs_rq, rq))
		return 0;
	task = skfp_kview(task_struct, bpf_get_current_task());
	cfs = skfp_kread(task, se.cfs_rq);
	if (!cfs)
		return 0;
	rq = skfp_kread(cfs, rq);
	return rq && skfp_kread(rq, nr_running) > 1;
}

/* A bounded wait: until a word of a kernel object is at most limit. */
struct skfp_wait {
	__u64 obj;      /* kernel address: a socket (its lock word) or a psock (its queue) */
	__u64 limit;
	__u64 deadline; /* bpf_ktime_get_ns() */
	__u8 psock;     /* obj is a struct sk_psock: watch msg_tot_len, else sk_lock.owned */
	__u8 done;
};

static __always_inline __u64 skfp_wait_value(const struct skfp_wait *w)
{
	struct sock *sk;

	if (w->psock)
		return skfp_psock_queued(w->obj, w->limit);
	sk = skfp_kview(sock, w->obj);
	return skfp_kread(sk, sk_lock.owned);
}

static long skfp_wait_step(__u64 i, void *ctx)
{
	struct skfp_wait *w = ctx;

	if (skfp_wait_value(w) <= w->limit) {
		w->done = 1;
		return 1;
	}
	if (skfp_cpu_wanted())
		return 1;
	/* the clock every 16 reads: a read costs a few ns, the clock more */
	if ((i & 15) == 15 && bpf_ktime_get_ns() > w->deadline)
		return 1;
	return 0;
}

/* Waits at most fastpath_spin_ns, and only while nobody else wants this CPU.
 * 1: the word got there. */
static __always_inline int skfp_wait_until(struct skfp_wait *w, const struct skfp_config *cfg)
{
	w->deadline = bpf_ktime_get_ns() + cfg->fastpath_spin_ns;
	bpf_loop(SKFP_SPIN_MAX_ITERS, skfp_wait_step, w, 0);
	return w->done;
}

/* The memory guard's bound is reached: wait for the reader to bring its
 * queue down to limit bytes. 1: it did. */
static __always_inline int skfp_handoff_drained(__u64 psock, __u64 limit, const struct skfp_config *cfg)
{
	struct skfp_wait w = {.obj = psock, .limit = limit, .psock = 1};

	if (!cfg->fastpath_spin_ns || skfp_cpu_wanted())
		return 0;
	return skfp_wait_until(&w, cfg);
}

/* After a successful redirect of msg: wait until its target's socket lock is
 * free (counted only when it was taken). */
static __always_inline void skfp_handoff_wait(struct sk_msg_md *msg, const struct skfp_config *cfg)
{
	struct skfp_wait w = {};
	struct sk_msg *kmsg;

	if (!cfg->fastpath_spin_ns)
		return;
	kmsg = skfp_kctx(sk_msg, msg);
	w.obj = (__u64)skfp_kread(kmsg, sk_redir);
	if (!w.obj || !skfp_wait_value(&w) || skfp_cpu_wanted())
		return;
	skfp_count(skfp_wait_until(&w, cfg) ? SKFP_CNT_SPIN_RELEASED : SKFP_CNT_SPIN_EXPIRED, 1);
}

#endif /* SKFP_LIB_HANDOFF_H */
