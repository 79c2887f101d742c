/* SPDX-License-Identifier: GPL-2.0 */
/* The socket fastpath: sock_ops puts established local TCP sockets into the
 * sockhash, sk_msg moves each send straight into the peer's receive queue. */
#ifndef SKFP_LIB_FASTPATH_H
#define SKFP_LIB_FASTPATH_H

#include "maps.h"
#include "sock_key.h"
#include "guard.h"

/* Only pairs whose both ends are sockets of this host are worth a sockhash
 * entry: loopback peers, peers on our own address, and connections the
 * interception handed to the local proxy (both ends). Anything else stays
 * plain TCP and never pays for the sockmap proto. */
static __always_inline int skfp_peer_is_local(struct skfp_sock_key *k, int passive)
{
	struct skfp_sock_key hint;

	if (skfp_key_is_loopback(k) || skfp_key_remote_is_local_addr(k))
		return 1;
	hint = *k;
	hint.netns_cookie = 0;
	if (passive) /* the proxy's accepted socket: the hint is the client's view */
		skfp_key_swap(&hint);
	if (!bpf_map_lookup_elem(&skfp_intercepted, &hint))
		return 0;
	if (passive)
		bpf_map_delete_elem(&skfp_intercepted, &hint);
	return 1;
}

SEC("sockops")
int skfp_sockops(struct bpf_sock_ops *skops)
{
	struct skfp_sock_key key;
	struct skfp_config *cfg;
	struct bpf_sock *sk;
	int passive;

	if (skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		passive = 1;
	else if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		passive = 0;
	else
		return 1;

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_FASTPATH)) /* off: no new sockets get the sockmap proto */
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	if (cfg->proxy_mark && sk->mark == cfg->proxy_mark) {
		skfp_count(SKFP_CNT_SOCK_SKIPPED_MARK, 1);
		return 1;
	}
	if (SKFP_KEY_FROM_CTX(&key, skops))
		return 1;
	if (!skfp_peer_is_local(&key, passive))
		return 1;
	key.netns_cookie = bpf_get_netns_cookie(skops);
	if (bpf_sock_hash_update(skops, &skfp_socks, &key, BPF_NOEXIST)) {
		skfp_count(SKFP_CNT_SOCK_INSERT_FAILED, 1);
		return 1;
	}
	skfp_count(SKFP_CNT_SOCK_ADDED, 1);
	skfp_dbg("skfp: added %d -> %d", key.local_port, key.remote_port);
	return 1;
}

/* Always SK_PASS: a redirect that found no peer falls back to plain TCP
 * (returning the helper's SK_DROP would make send() fail with EACCES). */
SEC("sk_msg")
int skfp_sk_msg(struct sk_msg_md *msg)
{
	struct skfp_sock_key peer;
	struct skfp_config *cfg;
	__u32 size = msg->size;

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_FASTPATH))
		goto fallback;
	if (SKFP_KEY_FROM_CTX(&peer, msg))
		goto fallback;
	skfp_key_swap(&peer);
	peer.netns_cookie = bpf_get_netns_cookie(msg);
	if (!skfp_guard_allow(msg, cfg))
		goto fallback;
	if (bpf_msg_redirect_hash(msg, &skfp_socks, &peer, BPF_F_INGRESS) != SK_PASS)
		goto fallback;
	skfp_guard_redirected(msg);
	skfp_count(SKFP_CNT_MSG_REDIRECTED, 1);
	skfp_count(SKFP_CNT_BYTES_REDIRECTED, size);
	return SK_PASS;
fallback:
	skfp_count(SKFP_CNT_MSG_FALLBACK, 1);
	skfp_count(SKFP_CNT_BYTES_FALLBACK, size);
	return SK_PASS;
}

#endif /* SKFP_LIB_FASTPATH_H */
