/* SPDX-License-Identifier: GPL-2.0 */
/* Which connections the fastpath takes: those whose two ends are both sockets
 * of the cgroup, on this host, in any network namespace. sock_ops sees both
 * ends of such a connection during the handshake, before either sends data:
 *
 *   client connect()        TCP_CONNECT_CB   records the connection under its id
 *   server gets the SYN     TIMEOUT_INIT     (request socket, before the SYN-ACK)
 *                                            adds the server's namespace
 *   client gets the SYN-ACK ACTIVE_ESTABLISHED  finds both ends: joins the sockhash
 *   server gets the ACK     PASSIVE_ESTABLISHED finds both ends: joins
 *   client's first redirect (sk_msg)            drops the record
 *
 * The id is the client's view of the tuple plus the client's initial sequence
 * number: the server's request socket holds it (rcv_isn), the client's socket
 * does too (write_seq at connect, snd_una - 1 once established). Identical
 * tuples in two namespaces (two containers each talking to their own
 * 127.0.0.1:80) therefore never pair across (should two connections ever
 * share an id, two clients or SYNs in two namespaces, it pairs neither and
 * counts handshakesAmbiguous; the ISN clock ticks every 64 ns, and two test
 * clients started together shared one in about 1 run of 15 here), and
 * the packet's path (loopback, a veth between namespaces, a SYN the
 * interception handed to the proxy) does not matter. Each socket keeps its peer's sockhash key in socket storage,
 * where sk_msg finds it.
 *
 * A client can send before the server's end has joined (the server joins
 * when the client's ACK arrives, often but not always before the client's
 * first send): that message goes over TCP, and the memory guard (guard.h)
 * switches the client to the fastpath once the server has read it. */
#ifndef SKFP_LIB_PAIRING_H
#define SKFP_LIB_PAIRING_H

#include "kernel.h"
#include "maps.h"
#include "sock_key.h"

/* A connection being set up, seen from its client. 44 bytes. */
struct skfp_conn_id {
	__u32 client_ip[4];
	__u32 server_ip[4];
	__u16 client_port;
	__u16 server_port;
	__u32 family;
	__u32 client_isn;
};

/* Where its two ends live. Netns cookies are never 0: client_netns 0 marks
 * an id seen twice (two clients, or SYNs in two namespaces), which pairs
 * nothing. */
struct skfp_conn_ends {
	__u64 client_netns;
	__u64 server_netns; /* 0 until the server's SYN was seen */
	__u8 client_nonblock; /* the client's socket is O_NONBLOCK at connect() */
	__u8 server_nonblock; /* the listener is O_NONBLOCK when the SYN arrives */
	__u8 _pad[6];
};

#define SKFP_O_NONBLOCK 04000

/* Whether the socket at that kernel address is a file opened O_NONBLOCK (a
 * socket with no file yet: no). The adaptive fastpath lets a connection join
 * the sockhash only when both its client socket (at connect()) and the
 * server's listener (at the SYN) are: the sockhash's receive path can fail a
 * blocking recv() with EAGAIN when woken without data (a FIN, a write-space
 * wake-up), and a tracing program, which sees how a socket reads, may not
 * take it out again. An accepted socket has no file when it joins, so a
 * server is judged by its listener: servers that poll their listener poll
 * what they accept. */
static __always_inline int skfp_sk_nonblocking(__u64 sk_addr)
{
	struct socket *so = skfp_kread(skfp_kview(sock, sk_addr), sk_socket);
	struct file *f;

	if (!so)
		return 0;
	f = skfp_kread(skfp_kview(socket, (__u64)so), file);
	if (!f)
		return 0;
	return !!(skfp_kread(skfp_kview(file, (__u64)f), f_flags) & SKFP_O_NONBLOCK);
}

/* Connections from connect() until the client's first redirect; an LRU map,
 * since a connection to a peer outside the cgroup never completes its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SKFP_SOCKS_MAX);
	__type(key, struct skfp_conn_id);
	__type(value, struct skfp_conn_ends);
} skfp_handshakes SEC(".maps");

/* What a socket in the sockhash knows of its peer. */
struct skfp_peer {
	struct skfp_sock_key key; /* the peer's key in the sockhash */
	struct skfp_sock_key own; /* this socket's key in the sockhash (and skfp_readers) */
	__u8 client;              /* this socket is the connection's client */
	__u8 forgotten;           /* the client dropped the connection's record */
	__u8 _pad[6];
};

/* Per socket in the sockhash; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct skfp_peer);
} skfp_peers SEC(".maps");

/* The id from one end's own key (netns cookie not yet set in it). */
static __always_inline void skfp_conn_id_of(struct skfp_conn_id *id, const struct skfp_sock_key *own, int server,
					   __u32 client_isn)
{
	struct skfp_sock_key c = *own;

	if (server)
		skfp_key_swap(&c);
	__builtin_memcpy(id->client_ip, c.local_ip, sizeof(id->client_ip));
	__builtin_memcpy(id->server_ip, c.remote_ip, sizeof(id->server_ip));
	id->client_port = c.local_port;
	id->server_port = c.remote_port;
	id->family = c.family;
	id->client_isn = client_isn;
}

/* Client, connect(): the SYN is about to leave; write_seq is its ISN. */
static __always_inline void skfp_pair_connect(struct bpf_sock_ops *skops, const struct skfp_sock_key *own)
{
	struct skfp_conn_ends ends = {};
	struct skfp_conn_id id;
	struct tcp_sock *tp;

	if (!skops->sk)
		return;
	tp = skfp_kview_ptr(tcp_sock, skops->sk);
	skfp_conn_id_of(&id, own, 0, skfp_kread(tp, write_seq));
	ends.client_netns = bpf_get_netns_cookie(skops);
	ends.client_nonblock = skfp_sk_nonblocking((__u64)skfp_kread(skfp_kctx(bpf_sock_ops_kern, skops), sk));
	if (bpf_map_update_elem(&skfp_handshakes, &id, &ends, BPF_NOEXIST)) {
		struct skfp_conn_ends *seen = bpf_map_lookup_elem(&skfp_handshakes, &id);
		if (seen && seen->client_netns) {
			seen->client_netns = 0;
			skfp_count(SKFP_CNT_CONN_AMBIGUOUS, 1);
		}
	}
}

/* Server, a SYN reached a listener of the cgroup: its request socket. */
static __always_inline void skfp_pair_syn(struct bpf_sock_ops *skops, const struct skfp_sock_key *own)
{
	struct bpf_sock_ops_kern *kctx = skfp_kctx(bpf_sock_ops_kern, skops);
	struct tcp_request_sock *req;
	struct skfp_conn_ends *ends;
	struct skfp_conn_id id;
	__u64 netns;

	__u64 req_addr = (__u64)skfp_kread(kctx, sk);

	req = skfp_kview(tcp_request_sock, req_addr);
	skfp_conn_id_of(&id, own, 1, skfp_kread(req, rcv_isn));
	ends = bpf_map_lookup_elem(&skfp_handshakes, &id);
	if (!ends)
		return;
	netns = bpf_get_netns_cookie(skops);
	ends->server_nonblock = skfp_sk_nonblocking((__u64)skfp_kread(skfp_kview(request_sock, req_addr), __req_common.skc_listener));
	if (!ends->server_netns)
		ends->server_netns = netns;
	else if (ends->server_netns != netns && ends->client_netns) { /* a retried SYN comes from the same one */
		ends->client_netns = 0;
		skfp_count(SKFP_CNT_CONN_AMBIGUOUS, 1);
	}
}

/* Either end, established: *own gets the connection's client ISN, *peer the
 * other end's sockhash key. Returns the connection's record when both ends
 * were seen, NULL otherwise. */
static __always_inline struct skfp_conn_ends *skfp_pair_established(struct bpf_sock_ops *skops, struct skfp_sock_key *own,
								    int server, struct skfp_sock_key *peer)
{
	struct skfp_conn_ends *ends;
	struct skfp_conn_id id;
	__u32 rcv_nxt, snd_una, client_isn;

	/* Both ISNs are acknowledged now: the client's is snd_una - 1 at the
	 * client and rcv_nxt - 1 at the server. Both fields are read: a
	 * context field picked by a condition is a modified ctx pointer, which
	 * the verifier refuses. */
	rcv_nxt = skops->rcv_nxt;
	snd_una = skops->snd_una;
	asm volatile("" : "+r"(rcv_nxt), "+r"(snd_una));
	client_isn = (server ? rcv_nxt : snd_una) - 1;
	skfp_conn_id_of(&id, own, server, client_isn);
	ends = bpf_map_lookup_elem(&skfp_handshakes, &id);
	if (!ends || !ends->server_netns || !ends->client_netns)
		return NULL;
	own->client_isn = client_isn;
	*peer = *own;
	skfp_key_swap(peer);
	peer->netns_cookie = server ? ends->client_netns : ends->server_netns;
	return ends;
}

/* The client redirected: the record has served its purpose. */
static __always_inline void skfp_pair_forget(struct skfp_peer *p)
{
	struct skfp_conn_id id;

	if (!p->client || p->forgotten)
		return;
	skfp_conn_id_of(&id, &p->key, 1, p->key.client_isn);
	bpf_map_delete_elem(&skfp_handshakes, &id);
	p->forgotten = 1;
}

#endif /* SKFP_LIB_PAIRING_H */
