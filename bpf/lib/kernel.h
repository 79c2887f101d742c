/* SPDX-License-Identifier: GPL-2.0 */
/* The few kernel structures skfp reads (the memory guard, the handshake
 * pairing), and the kfuncs it reads them with. Only the fields named here are
 * used; preserve_access_index makes libbpf relocate each access against the
 * running kernel's BTF at load time (no vmlinux.h needed). */
#ifndef SKFP_LIB_KERNEL_H
#define SKFP_LIB_KERNEL_H

#include <bpf/bpf_core_read.h>
#include "common.h"

typedef struct {
	long counter;
} skfp_atomic_long_t;

struct proto {
	skfp_atomic_long_t *memory_allocated; /* pages, whole protocol */
	long *sysctl_mem;                     /* net.ipv4.tcp_mem[3], pages */
} __attribute__((preserve_access_index));

struct net {
	__u64 net_cookie; /* what bpf_get_netns_cookie() returns */
} __attribute__((preserve_access_index));

struct sock_common {
	__be16 skc_dport;
	__u16 skc_num;
	struct proto *skc_prot;
	struct {
		struct net *net;
	} skc_net; /* possible_net_t */
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct {
		int owned; /* a task holds the socket (lock_sock) */
	} sk_lock;         /* socket_lock_t */
	void *sk_user_data; /* the psock, with flag bits */
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 copied_seq; /* head of yet unread data (plain TCP only) */
	__u32 write_seq;  /* tail+1 of data in the send buffer; the ISN at connect() */
	__u32 snd_nxt;    /* next sequence to transmit */
	__u64 bytes_sent; /* payload bytes transmitted so far */
} __attribute__((preserve_access_index));

struct tcp_request_sock {
	__u32 rcv_isn; /* the client's initial sequence number */
} __attribute__((preserve_access_index));

struct sk_psock {
	struct sock *sk;
	__u32 msg_tot_len; /* bytes queued on ingress_msg (redirected, unread) */
} __attribute__((preserve_access_index));

struct sk_msg {
	struct sock *sk_redir; /* set by bpf_msg_redirect_hash() */
} __attribute__((preserve_access_index));

struct bpf_sock_ops_kern {
	struct sock *sk; /* at TIMEOUT_INIT of a SYN: the request socket */
} __attribute__((preserve_access_index));

struct rq {
	unsigned int nr_running; /* tasks on this CPU's run queue, the running one included */
} __attribute__((preserve_access_index));

struct cfs_rq {
	struct rq *rq; /* the CPU's run queue (CONFIG_FAIR_GROUP_SCHED) */
} __attribute__((preserve_access_index));

struct task_struct {
	struct {
		struct cfs_rq *cfs_rq; /* where the task is queued */
	} se; /* struct sched_entity */
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#endif /* SKFP_LIB_KERNEL_H */
