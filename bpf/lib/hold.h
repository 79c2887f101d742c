/* SPDX-License-Identifier: GPL-2.0 */
/* The FIN hold: a FIN reaches a socket of the sockhash only when nothing
 * sent over TCP waits behind its redirected queue.
 *
 * A read of such a socket stops where its redirected queue (psock) ends,
 * even with TCP bytes behind it (tcp_bpf_recvmsg reads one queue per call).
 * Once the socket has its peer's FIN and has sent its own, poll() reports
 * EPOLLHUP, and an event loop that takes a short read with EPOLLHUP for the
 * end of the stream (libuv, so Node.js) stops there: the TCP bytes behind are
 * never read. That state comes whenever a sender moved from the fastpath to
 * TCP (the memory guard's bound, the brake, a sender leaving the sockhash)
 * while its reader's queue still held bytes, and then closed: a Node.js
 * client that half-closed only after its download began lost the tail in 15
 * of 60 transfers of 6 MiB (guard.h keeps a reader that half-closed before
 * on the fastpath, which covers only that order).
 *
 * So this program, on the cgroup's ingress (it sees each segment before TCP
 * does, the socket it is for in skb->sk), drops a FIN for a socket whose
 * redirected queue holds bytes while TCP bytes wait behind it: unread, in
 * the segment itself, or not arrived yet. TCP retransmits the FIN (after the
 * retransmission timeout, 200 ms at least), and it passes once the reader has
 * emptied its redirected queue. Nothing else is dropped, nothing is changed.
 * A reader that stops reading holds its peer's FIN as long: the peer gives up
 * after its retries (net.ipv4.tcp_orphan_retries, tcp_retries2), and the
 * reader then never sees the end of the stream (README, Fastpath safety). */
#ifndef SKFP_LIB_HOLD_H
#define SKFP_LIB_HOLD_H

#include "kernel.h"
#include "maps.h"
#include "packet.h"
#include "pairing.h"
#include "psock.h"

/* What the hold needs of a TCP segment (at cgroup ingress the data starts at
 * the IP header): its sequence number, payload length and flags byte, past
 * IPv6 extension headers (a sender's IPV6_DSTOPTS puts one on every segment;
 * a fragment is not TCP that TCP would see whole here). 0: parsed. */
static __always_inline int skfp_segment(struct __sk_buff *skb, __u32 *seq, __u32 *payload, __u8 *flags)
{
	struct tcphdr th;
	__u32 l3, total;
	__u8 frag = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return -1;
		l3 = ip.ihl * 4;
		total = bpf_ntohs(ip.tot_len);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return -1;
		l3 = sizeof(ip6);
		if (skfp_ipv6_walk(skb, ip6.nexthdr, &l3, &frag) != IPPROTO_TCP || frag)
			return -1;
		total = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	} else {
		return -1;
	}
	if (bpf_skb_load_bytes(skb, l3, &th, sizeof(th)) || total < l3 + th.doff * 4)
		return -1;
	*seq = bpf_ntohl(th.seq);
	*payload = total - l3 - th.doff * 4;
	*flags = ((__u8 *)&th)[13];
	return 0;
}

SEC("cgroup_skb/ingress")
int skfp_fin_hold(struct __sk_buff *skb)
{
	struct bpf_sock *bsk = skb->sk;
	__u32 seq, payload, rcv_nxt;
	struct tcp_sock *tp;
	__u8 flags;

	if (!bsk)
		return 1;
	bsk = bpf_sk_fullsock(bsk);
	if (!bsk || bsk->protocol != IPPROTO_TCP)
		return 1;
	/* only sockets that joined the sockhash have it */
	if (!bpf_sk_storage_get(&skfp_peers, bsk, 0, 0))
		return 1;
	if (skfp_segment(skb, &seq, &payload, &flags) || !(flags & SKFP_TCP_FIN))
		return 1;
	if (!skfp_sk_redirected_unread(skfp_kview_ptr(sock, bsk)))
		return 1;
	tp = skfp_kview_ptr(tcp_sock, bsk);
	rcv_nxt = skfp_kread(tp, rcv_nxt);
	if (!payload && seq == rcv_nxt && skfp_kread(tp, copied_seq) == rcv_nxt)
		return 1; /* every TCP byte read: the redirected queue is the rest */
	skfp_count(SKFP_CNT_FIN_HELD, 1);
	return 0;
}

#endif /* SKFP_LIB_HOLD_H */
