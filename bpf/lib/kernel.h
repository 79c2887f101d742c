/* SPDX-License-Identifier: GPL-2.0 */
/* The few kernel structures skfp reads (the memory guard, the handshake
 * pairing, the hand-off), and how it reads them. Only the fields named here
 * are used; preserve_access_index makes libbpf relocate each access against
 * the running kernel's BTF at load time (no vmlinux.h needed), and
 * bpf_core_field_exists() tells at load time whether a field is there.
 *
 * Two builds of the fastpath object read kernel memory two ways (skfp picks
 * the first one the running kernel loads):
 *  - SKFP_KFUNCS (Linux 6.2+): typed read-only views (bpf_rdonly_cast,
 *    bpf_cast_to_kern_ctx), read with plain loads;
 *  - otherwise (Linux 6.1): bpf_probe_read_kernel through CO-RE offsets,
 *    from addresses laundered into plain numbers. Same reads, one helper
 *    call each. */
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

struct sock_common {
	struct {
		__s64 counter;
	} skc_cookie; /* atomic64_t: the socket cookie, 0 until first asked for; never reused */
	struct proto *skc_prot;
	struct sock *skc_listener; /* of a request socket: its listener */
	volatile unsigned char skc_state; /* TCP_* */
} __attribute__((preserve_access_index));

struct file {
	unsigned int f_flags; /* O_NONBLOCK, ... */
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
	struct file *file; /* NULL until accept() gives the socket one */
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
	struct {
		int owned; /* a task holds the socket (lock_sock) */
	} sk_lock;         /* socket_lock_t */
	void *sk_user_data; /* the psock, with flag bits */
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 copied_seq; /* head of yet unread data (plain TCP only) */
	__u32 rcv_nxt;    /* what we want to receive next */
	__u32 write_seq;  /* tail+1 of data in the send buffer; the ISN at connect() */
	__u32 snd_nxt;    /* next sequence to transmit */
	__u64 bytes_sent; /* payload bytes transmitted so far */
} __attribute__((preserve_access_index));

struct tcp_request_sock {
	__u32 rcv_isn; /* the client's initial sequence number */
} __attribute__((preserve_access_index));

struct request_sock { /* at offset 0 of struct tcp_request_sock */
	struct sock_common __req_common;
} __attribute__((preserve_access_index));

struct list_head {
	struct list_head *next;
} __attribute__((preserve_access_index));

struct sk_psock {
	struct sock *sk;
	struct list_head ingress_msg; /* redirected messages not read yet (struct sk_msg.list) */
	__u32 msg_tot_len; /* their bytes; a 2026 backport: missing on 6.1 and early 6.12 */
} __attribute__((preserve_access_index));

struct sk_msg_sg {
	__u32 size; /* bytes left in the message */
} __attribute__((preserve_access_index));

struct sk_msg {
	struct sk_msg_sg sg;
	struct sock *sk_redir;  /* set by bpf_msg_redirect_hash() */
	struct list_head list;  /* on the receiver's sk_psock.ingress_msg */
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

#ifdef SKFP_KFUNCS
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* A read-only view of the kernel object of that type at addr (a number). */
#define skfp_kview(type, addr) \
	((struct type *)bpf_rdonly_cast((void *)(unsigned long)(addr), bpf_core_type_id_kernel(struct type)))
/* The same for a pointer the verifier types (a bpf_sock, a context). */
#define skfp_kview_ptr(type, ptr) ((struct type *)bpf_rdonly_cast((void *)(ptr), bpf_core_type_id_kernel(struct type)))
#define skfp_kctx(type, ctx) ((struct type *)bpf_cast_to_kern_ctx(ctx))
/* One field (a path of members, no pointer in between) of a view. */
#define skfp_kread(obj, path) ((obj)->path)
#else
/* A pointer the verifier types (a socket, a context) may not be offset, so
 * its value goes through the stack as a plain number. */
static __always_inline unsigned long skfp_launder(const void *ptr)
{
	unsigned long addr = 0;

	bpf_probe_read_kernel(&addr, sizeof(addr), &ptr);
	return addr;
}
#define skfp_kview(type, addr) ((struct type *)(unsigned long)(addr))
#define skfp_kview_ptr(type, ptr) ((struct type *)skfp_launder(ptr))
#define skfp_kctx(type, ctx) ((struct type *)skfp_launder(ctx))
#define skfp_kread(obj, path) BPF_CORE_READ(obj, path)
#endif

#endif /* SKFP_LIB_KERNEL_H */
