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

/* Upper bound of the wait loop's iterations; the deadline ends it first. */
#define SKFP_SPIN_MAX_ITERS (1u << 20)

struct skfp_spin {
	__u64 peer;     /* kernel address of the peer socket */
	__u64 deadline; /* bpf_ktime_get_ns() */
	__u8 released;
};

/* Another task is waiting for this CPU: the current task's run queue, which
 * is this CPU's, holds more than it. Without CONFIG_FAIR_GROUP_SCHED the
 * kernel has no path to it: never. */
static __always_inline int skfp_cpu_wanted(void)
{
	struct task_struct *task;
	struct cfs_rq *cfs;

	if (!bpf_core_field_exists(struct cfs_rq, rq))
		return 0;
	task = bpf_rdonly_cast((void *)bpf_get_current_task(), bpf_core_type_id_kernel(struct task_struct));
	cfs = task->se.cfs_rq;
	return cfs && cfs->rq && cfs->rq->nr_running > 1;
}

static long skfp_spin_step(__u64 i, void *ctx)
{
	struct skfp_spin *s = ctx;
	struct sock *peer = bpf_rdonly_cast((void *)s->peer, bpf_core_type_id_kernel(struct sock));

	if (!peer->sk_lock.owned) {
		s->released = 1;
		return 1;
	}
	if (skfp_cpu_wanted())
		return 1;
	/* the clock every 16 reads: a read costs a few ns, the clock more */
	if ((i & 15) == 15 && bpf_ktime_get_ns() > s->deadline)
		return 1;
	return 0;
}

struct skfp_drain {
	__u64 psock;    /* kernel address of the peer's psock */
	__u64 limit;    /* bytes it may hold */
	__u64 deadline; /* bpf_ktime_get_ns() */
	__u8 drained;
};

static long skfp_drain_step(__u64 i, void *ctx)
{
	struct skfp_drain *d = ctx;
	struct sk_psock *psock = bpf_rdonly_cast((void *)d->psock, bpf_core_type_id_kernel(struct sk_psock));

	if (psock->msg_tot_len <= d->limit) {
		d->drained = 1;
		return 1;
	}
	if (skfp_cpu_wanted())
		return 1;
	if ((i & 15) == 15 && bpf_ktime_get_ns() > d->deadline)
		return 1;
	return 0;
}

/* The memory guard's bound is reached: wait as above (bounded) for the
 * reader to bring its queue down to limit bytes. 1: it did. */
static __always_inline int skfp_handoff_drained(__u64 psock, __u64 limit, const struct skfp_config *cfg)
{
	struct skfp_drain d = {.psock = psock, .limit = limit};

	if (!cfg->fastpath_spin_ns || skfp_cpu_wanted())
		return 0;
	d.deadline = bpf_ktime_get_ns() + cfg->fastpath_spin_ns;
	bpf_loop(SKFP_SPIN_MAX_ITERS, skfp_drain_step, &d, 0);
	return d.drained;
}

/* After a successful redirect of msg: wait (bounded) until its target's
 * socket lock is free. */
static __always_inline void skfp_handoff_wait(struct sk_msg_md *msg, const struct skfp_config *cfg)
{
	struct skfp_spin s = {};
	struct sk_msg *kmsg;
	struct sock *peer;

	if (!cfg->fastpath_spin_ns)
		return;
	kmsg = bpf_cast_to_kern_ctx(msg);
	s.peer = (__u64)kmsg->sk_redir;
	if (!s.peer)
		return;
	peer = bpf_rdonly_cast((void *)s.peer, bpf_core_type_id_kernel(struct sock));
	if (!peer->sk_lock.owned || skfp_cpu_wanted())
		return;
	s.deadline = bpf_ktime_get_ns() + cfg->fastpath_spin_ns;
	bpf_loop(SKFP_SPIN_MAX_ITERS, skfp_spin_step, &s, 0);
	skfp_count(s.released ? SKFP_CNT_SPIN_RELEASED : SKFP_CNT_SPIN_EXPIRED, 1);
}

#endif /* SKFP_LIB_HANDOFF_H */
