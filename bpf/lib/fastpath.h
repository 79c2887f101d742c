/* SPDX-License-Identifier: GPL-2.0 */
/* The socket fastpath: sock_ops puts both ends of a connection inside the
 * cgroup (pairing.h) into the sockhash, sk_msg moves each send straight into
 * the peer's receive queue. */
#ifndef SKFP_LIB_FASTPATH_H
#define SKFP_LIB_FASTPATH_H

#include "maps.h"
#include "sock_key.h"
#include "pairing.h"
#include "guard.h"
#include "handoff.h"

/* Established local TCP sockets, keyed by their own view of the tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SKFP_SOCKS_MAX);
	__type(key, struct skfp_sock_key);
	__type(value, __u64);
} skfp_socks SEC(".maps");

/* An end of a paired connection joins the sockhash, what it knows of its peer
 * in its socket storage; the server also leaves its address and cookie in the
 * record. */
static __always_inline void skfp_join(struct bpf_sock_ops *skops, struct skfp_sock_key *own,
				      const struct skfp_sock_key *peer, struct skfp_conn_ends *ends, int server)
{
	struct bpf_sock_ops_kern *kctx;
	struct bpf_sock *sk = skops->sk;
	struct skfp_peer *stored;
	__u64 cookie;

	if (!sk)
		return;
	/* gives the socket its cookie, by which the peer's guard knows it */
	cookie = bpf_get_socket_cookie(skops);
	stored = bpf_sk_storage_get(&skfp_peers, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!stored) {
		skfp_count(SKFP_CNT_SOCK_INSERT_FAILED, 1);
		return;
	}
	stored->key = *peer;
	stored->client = !server;
	stored->forgotten = 0;
	/* Before the insert: once the server is in the sockhash, the client's
	 * first redirect can drop the record (and the LRU map reuse it). The
	 * client's guard checks the socket's psock, which the insert creates. */
	if (server) {
		kctx = skfp_kctx(bpf_sock_ops_kern, skops);
		ends->server_cookie = cookie;
		ends->server_sk = (__u64)skfp_kread(kctx, sk);
	}
	own->netns_cookie = bpf_get_netns_cookie(skops);
	if (bpf_sock_hash_update(skops, &skfp_socks, own, BPF_NOEXIST)) {
		skfp_count(SKFP_CNT_SOCK_INSERT_FAILED, 1);
		return;
	}
	skfp_count(SKFP_CNT_SOCK_ADDED, 1);
	skfp_dbg("skfp: added %d -> %d", own->local_port, own->remote_port);
}

SEC("sockops")
int skfp_sockops(struct bpf_sock_ops *skops)
{
	struct skfp_sock_key own, peer;
	struct skfp_conn_ends *ends;
	struct skfp_config *cfg;
	int server;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_TIMEOUT_INIT:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		break;
	default:
		return 1;
	}
	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_FASTPATH)) /* off: no new sockets get the sockmap proto */
		return 1;
	if (SKFP_KEY_FROM_CTX(&own, skops))
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		skfp_pair_connect(skops, &own);
		return 1;
	case BPF_SOCK_OPS_TIMEOUT_INIT: /* also called for a client's own socket */
		if (!skops->is_fullsock)
			skfp_pair_syn(skops, &own);
		return 1;
	}
	server = skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB;
	ends = skfp_pair_established(skops, &own, server, &peer);
	if (!ends)
		return 1;
	if (server)
		skfp_count(SKFP_CNT_CONN_PAIRED, 1);
	skfp_join(skops, &own, &peer, ends, server);
	return 1;
}

/* Always SK_PASS: a redirect that found no peer falls back to plain TCP
 * (returning the helper's SK_DROP would make send() fail with EACCES). */
SEC("sk_msg")
int skfp_sk_msg(struct sk_msg_md *msg)
{
	struct skfp_config *cfg;
	struct skfp_peer *peer;
	__u32 size = msg->size;

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_FASTPATH) || !msg->sk)
		goto fallback;
	peer = bpf_sk_storage_get(&skfp_peers, msg->sk, 0, 0);
	if (!peer)
		goto fallback;
	if (!skfp_guard_allow(msg, cfg, peer))
		goto fallback;
	if (bpf_msg_redirect_hash(msg, &skfp_socks, &peer->key, BPF_F_INGRESS) != SK_PASS)
		goto fallback;
	skfp_guard_redirected(msg);
	skfp_pair_forget(peer);
	skfp_count(SKFP_CNT_MSG_REDIRECTED, 1);
	skfp_count(SKFP_CNT_BYTES_REDIRECTED, size);
	skfp_handoff_wait(msg, cfg);
	return SK_PASS;
fallback:
	skfp_count(SKFP_CNT_MSG_FALLBACK, 1);
	skfp_count(SKFP_CNT_BYTES_FALLBACK, size);
	return SK_PASS;
}

#endif /* SKFP_LIB_FASTPATH_H */
