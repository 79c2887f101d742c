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
#include "readers.h"
#include "hold.h"

/* An end of a paired connection joins the sockhash, with what it knows of
 * its peer in its socket storage and its reader entry in skfp_readers:
 * promoted at once without SKFP_CFG_ADAPTIVE, else watched until it has shown
 * how it reads. Its close (BPF_SOCK_OPS_STATE_CB) removes the entry. */
static __always_inline void skfp_join(struct bpf_sock_ops *skops, struct skfp_sock_key *own,
				      const struct skfp_sock_key *peer, const struct skfp_config *cfg, int client)
{
	struct bpf_sock_ops_kern *kctx;
	struct skfp_reader reader = {};
	struct bpf_sock *sk = skops->sk;
	struct skfp_peer *stored;

	if (!sk)
		return;
	/* gives the socket its cookie, by which its senders' guard knows it */
	reader.cookie = bpf_get_socket_cookie(skops);
	kctx = skfp_kctx(bpf_sock_ops_kern, skops);
	reader.sk = (__u64)skfp_kread(kctx, sk);
	reader.state = cfg->flags & SKFP_CFG_ADAPTIVE ? SKFP_READER_WATCHED : SKFP_READER_PROMOTED;
	reader.seq = skfp_kread(skfp_kview_ptr(tcp_sock, sk), copied_seq);
	own->netns_cookie = bpf_get_netns_cookie(skops);
	stored = bpf_sk_storage_get(&skfp_peers, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!stored) {
		skfp_count(SKFP_CNT_SOCK_INSERT_FAILED, 1);
		return;
	}
	stored->key = *peer;
	stored->own = *own;
	stored->client = client;
	stored->forgotten = 0;
	if (bpf_sock_hash_update(skops, &skfp_socks, own, BPF_NOEXIST)) {
		skfp_count(SKFP_CNT_SOCK_INSERT_FAILED, 1);
		return;
	}
	/* Only a socket in the sockhash gets an entry, so the LRU map (as large
	 * as the sockhash) never evicts a live one for a socket that could not
	 * join. Without an entry its senders use TCP: safe. */
	bpf_map_update_elem(&skfp_readers, own, &reader, BPF_ANY);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG |
					     (reader.state == SKFP_READER_WATCHED ? BPF_SOCK_OPS_RTT_CB_FLAG : 0));
	skfp_count(SKFP_CNT_SOCK_ADDED, 1);
	skfp_dbg("skfp: added %d -> %d", own->local_port, own->remote_port);
}

/* Adaptive: a socket that joined but will never be promoted leaves the
 * sockhash, and with it the sockmap's send and receive path (a splice
 * relay's sockets paid it for nothing; a blocking reader is unsafe in it):
 * one barred (MSG_WAITALL, blocking, splice seen at a recv()) or whose
 * copied_seq moved without a recv() (it splices): if it never read with
 * recv(), bytes consumed at an ACK and still no recv() seen
 * SKFP_RELEASE_UNSEEN_NS later (a relay that splices small requests would
 * otherwise pay the sockmap's send path for hundreds of them: a Go relay's
 * 4 MiB responses 1.20x -> 1.49x of plain; an ACK handled while a reader's
 * first recv() returns sees bytes consumed before the readers' program has
 * seen that recv(), hence the wait); if it did, SKFP_RELEASE_UNREAD bytes
 * consumed beyond its last recv() (for the same reason: more than one
 * recv() takes).
 * Nothing was ever redirected to a socket never promoted, so nothing is
 * lost. The state goes to RELEASED by compare-and-swap from the state seen,
 * so the readers' program cannot promote it meanwhile. A socket whose own
 * sends have been redirected (its peer reads with recv()) stays
 * (skfp_release).
 * Its promoted peer leaves too once it has read what was redirected to it
 * (skfp_release_alone). (When a Go relay's sockets all left as splice
 * readers, releasing their peers too made small responses faster, 0.89x ->
 * 0.99x of plain, but 4 MiB ones slower, 1.20x -> 0.83x; bench, 5 rounds
 * each, 2026-12-06. A relay's socket that redirects now stays, and so do its
 * peers.) */
#ifndef SKFP_RELEASE_UNREAD
#define SKFP_RELEASE_UNREAD (64u << 10) /* bytes consumed without a recv(): a splice reader */
#endif
#ifndef SKFP_RELEASE_UNSEEN_NS
#define SKFP_RELEASE_UNSEEN_NS (50ull * 1000 * 1000) /* consumed, and no recv() ever: a splice reader */
#endif

/* Whether bytes redirected to the (live) socket of reader entry r may still
 * be unread or on their way: its sums differ (fully ordered reads) or its
 * queue holds bytes. */
static __always_inline int skfp_reader_unread(struct skfp_reader *r)
{
	__u64 redirected = skfp_read_ordered(&r->redirected);

	return skfp_read_ordered(&r->drained) != redirected || skfp_sk_redirected_unread(skfp_kview(sock, r->sk));
}

/* The socket of key, whose reader entry r the caller has just moved from
 * `from` to RELEASED, leaves the sockhash, unless what it sent to its peer
 * (entry to, NULL if gone) forbids it: then r goes back to `from` and 0 is
 * returned. Out of the sockhash its sends go over plain TCP, and TCP bytes
 * behind a non-empty redirected queue can be taken for the end of the stream
 * (guard.h, skfp_sk_sent_fin): so a socket leaves only if every byte it
 * redirected has been read (sent_all: a barred or demoted one, which sends
 * over TCP by now) or if it never redirected (!sent_all: a watched one that
 * redirects stays, and keeps the fastpath for its sends). Its
 * sk_msg adds each message to to->redirected before it reads its own state,
 * both fully ordered, and this reads the sums after the state moved: a
 * message is either counted here or sees RELEASED and goes over TCP. */
static __always_inline int skfp_release(struct skfp_reader *r, __u64 from, const struct skfp_sock_key *key,
					struct skfp_reader *to, int sent_all)
{
	/* a peer gone (entry or socket) reads nothing more: no matter */
	if (to && skfp_sk_cookie(to->sk) == to->cookie) {
		if (sent_all ? skfp_reader_unread(to) : skfp_read_ordered(&to->redirected) != 0) {
			skfp_reader_move(r, SKFP_READER_RELEASED, from);
			return 0;
		}
	}
	if (!bpf_map_delete_elem(&skfp_socks, (void *)key))
		skfp_count(SKFP_CNT_SOCK_RELEASED, 1);
	return 1;
}

/* The socket of reader entry r, in state `from`, leaves the sockhash once it
 * has read every byte redirected to it (and its peer, entry to, every byte it
 * redirected: skfp_release). 1: it left. For:
 *  - a demoted reader (promoted, then MSG_WAITALL or a blocking recv()): the
 *    kernel drops what waits in, or is on its way to, the queue of a socket
 *    that leaves (a sender between its verdict and the queue holds the socket;
 *    what it queues then is freed). Its senders add each message to
 *    redirected before they look at its state again (fully ordered), so a
 *    sender that found it promoted before the demotion has added by now;
 *    drained == redirected and an empty queue then mean every such byte was
 *    queued and read. A message the kernel failed to queue is never drained:
 *    such a reader stays, as it did before;
 *  - a barred peer (a blocking or MSG_WAITALL reader never promoted: nothing
 *    was redirected to it), at an ACK of this side too, not only at one of
 *    its own: a reader that sends nothing gets none, and its blocking reads in
 *    the sockhash can meet the rare EAGAIN;
 *  - a promoted reader whose peer has left the sockhash (or closed): it gets
 *    nothing redirected any more and can redirect nothing, so its reads and
 *    sends go back to plain TCP (no rare EAGAIN if it turns blocking later, no
 *    sockmap send path for nothing: a client of a server that reads with
 *    splice()). Senders may still find it promoted, so its sums are read
 *    again after its state moved (skfp_release's protocol: a sender that saw
 *    it promoted has added by then), and it goes back to `from` if bytes may
 *    be unread. The sums are read before the move too: a recv() while it is
 *    released for a moment counts nothing as drained (readers.bpf.c). */
static __always_inline int skfp_release_read(struct skfp_reader *r, __u64 from, const struct skfp_sock_key *key,
					     struct skfp_reader *to)
{
	/* the state first, then the sums */
	if (r->state != from || skfp_sk_cookie(r->sk) != r->cookie || skfp_reader_unread(r))
		return 0;
	if (!skfp_reader_move(r, from, SKFP_READER_RELEASED))
		return 0;
	if (skfp_reader_unread(r)) {
		skfp_reader_move(r, SKFP_READER_RELEASED, from);
		return 0;
	}
	return skfp_release(r, from, key, to, 1);
}

/* A promoted reader whose peer (entry peer, NULL if gone) has left the
 * sockhash leaves too (skfp_release_read). 1: it left. */
static __always_inline int skfp_release_alone(struct skfp_reader *r, const struct skfp_sock_key *key, struct skfp_reader *peer)
{
	if (peer && peer->state != SKFP_READER_RELEASED)
		return 0;
	return skfp_release_read(r, SKFP_READER_PROMOTED, key, peer);
}

/* Checked on its ACKs (BPF_SOCK_OPS_RTT_CB) until it is released or gone (a
 * tracing program may not delete from a sockhash; sock_ops may): a watched or
 * barred socket as above; a promoted one keeps the check, for a demotion of
 * its own or of its peer (a demoted reader that sends nothing gets no ACKs;
 * its sender, back on TCP, does) and for its peer leaving the sockhash
 * (skfp_release_alone). */
static __always_inline void skfp_release_check(struct bpf_sock_ops *skops)
{
	struct skfp_reader *r, *peer;
	struct skfp_peer *stored;
	struct tcp_sock *tp;
	__u64 seen, now;
	__u32 moved;

	if (!skops->sk)
		return;
	stored = bpf_sk_storage_get(&skfp_peers, skops->sk, 0, 0);
	if (!stored)
		return;
	r = bpf_map_lookup_elem(&skfp_readers, &stored->own);
	if (!r)
		goto done;
	seen = r->state;
	if (seen == SKFP_READER_PROMOTED || seen == SKFP_READER_DEMOTED) {
		peer = bpf_map_lookup_elem(&skfp_readers, &stored->key);
		if (peer && !skfp_release_read(peer, SKFP_READER_DEMOTED, &stored->key, r))
			skfp_release_read(peer, SKFP_READER_BARRED, &stored->key, r);
		if (seen == SKFP_READER_DEMOTED) {
			skfp_release_read(r, SKFP_READER_DEMOTED, &stored->own, peer);
			return;
		}
		if (skfp_release_alone(r, &stored->own, peer))
			goto done;
		return;
	}
	if (seen == SKFP_READER_WATCHED) {
		tp = skfp_kview_ptr(tcp_sock, skops->sk);
		moved = skfp_kread(tp, copied_seq) - r->seq;
		if (r->reads) {
			if (moved <= SKFP_RELEASE_UNREAD)
				return;
		} else {
			if (!moved)
				return;
			now = bpf_ktime_get_ns();
			if (!r->unseen_since) {
				r->unseen_since = now;
				return;
			}
			if (now - r->unseen_since < SKFP_RELEASE_UNSEEN_NS)
				return;
		}
	} else if (seen != SKFP_READER_BARRED) {
		goto done; /* released already */
	}
	if (skfp_sk_redirected_unread(skfp_kview_ptr(sock, skops->sk)))
		return;
	if (!skfp_reader_move(r, seen, SKFP_READER_RELEASED))
		return; /* promoted or barred meanwhile: seen again at the next ACK */
	if (seen == SKFP_READER_WATCHED)
		skfp_count(SKFP_CNT_READER_SPLICE, 1);
	/* A watched socket whose sends are redirected (a Go relay's, to a
	 * client that reads with recv()) stays for them, its reads on TCP: no
	 * more checks. A barred one sends over TCP (sk_msg) and leaves once its
	 * peer has read what it redirected before: checked again at its ACKs. */
	peer = bpf_map_lookup_elem(&skfp_readers, &stored->key);
	if (!skfp_release(r, seen, &stored->own, peer, seen == SKFP_READER_BARRED)) {
		if (seen == SKFP_READER_BARRED)
			return;
	} else {
		/* its promoted peer need not wait for an ACK of its own */
		if (peer)
			skfp_release_alone(peer, &stored->key, r);
	}
done:
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTT_CB_FLAG);
}

/* A socket of the sockhash closes: its reader entry goes with it. */
static __always_inline void skfp_leave(struct bpf_sock_ops *skops)
{
	struct skfp_peer *stored;

	if (skops->args[1] != BPF_TCP_CLOSE || !skops->sk)
		return;
	stored = bpf_sk_storage_get(&skfp_peers, skops->sk, 0, 0);
	if (stored)
		bpf_map_delete_elem(&skfp_readers, &stored->own);
}

/* The FIN hold (hold.h) drops a FIN while its reader's redirected queue holds
 * bytes with TCP bytes behind them, and TCP sends it again. A sender that has
 * closed gives up after net.ipv4.tcp_orphan_retries retransmissions (8 by
 * default: about 100 s; with 1, about 0.6 s), and its reader then never sees
 * the end of its stream. So a socket that joined the sockhash gets, when it
 * sends its FIN, a user timeout (TCP_USER_TIMEOUT decides instead of the
 * retries, for a closed socket too) of about tcp_retries2's default time,
 * unless it has one of its own. Between local sockets nothing else is
 * retransmitted in practice. */
#define SKFP_SOL_TCP 6
#define SKFP_TCP_USER_TIMEOUT 18
#define SKFP_FIN_USER_TIMEOUT_MS (15 * 60 * 1000)

static __always_inline void skfp_fin_sent(struct bpf_sock_ops *skops)
{
	int timeout = 0;

	if (skops->args[1] != BPF_TCP_FIN_WAIT1 && skops->args[1] != BPF_TCP_LAST_ACK)
		return;
	if (!skops->sk || !bpf_sk_storage_get(&skfp_peers, skops->sk, 0, 0))
		return;
	if (bpf_getsockopt(skops, SKFP_SOL_TCP, SKFP_TCP_USER_TIMEOUT, &timeout, sizeof(timeout)) || timeout)
		return;
	timeout = SKFP_FIN_USER_TIMEOUT_MS;
	bpf_setsockopt(skops, SKFP_SOL_TCP, SKFP_TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
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
	case BPF_SOCK_OPS_STATE_CB: /* also after the kill switch */
		skfp_fin_sent(skops);
		skfp_leave(skops);
		return 1;
	case BPF_SOCK_OPS_RTT_CB:
		skfp_release_check(skops);
		return 1;
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
	/* both ends or neither: a redirect needs both in the sockhash */
	if (cfg->flags & SKFP_CFG_ADAPTIVE && !(ends->client_nonblock && ends->server_nonblock)) {
		skfp_count(SKFP_CNT_SOCK_BLOCKING, 1);
		return 1;
	}
	skfp_join(skops, &own, &peer, cfg, !server);
	return 1;
}

/* Whether a socket in this reader state may send by redirect: watched or
 * promoted, not one on its way out of the sockhash. */
static __always_inline int skfp_may_redirect_from(const struct skfp_reader *self)
{
	__u64 state = self->state;

	return state == SKFP_READER_WATCHED || state == SKFP_READER_PROMOTED;
}

/* Always SK_PASS: a redirect that found no peer falls back to plain TCP
 * (returning the helper's SK_DROP would make send() fail with EACCES). */
SEC("sk_msg")
int skfp_sk_msg(struct sk_msg_md *msg)
{
	struct skfp_reader *reader, *self;
	struct skfp_config *cfg;
	struct skfp_peer *peer;
	__u32 size = msg->size;

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_FASTPATH) || !msg->sk)
		goto fallback;
	peer = bpf_sk_storage_get(&skfp_peers, msg->sk, 0, 0);
	if (!peer)
		goto fallback;
	/* Only the reader must have shown it reads with recv(); how the sender
	 * reads does not matter (a Go relay's socket splices, and its writes
	 * are redirected to a client that reads with recv()), unless it was
	 * barred or demoted: it is to leave the sockhash (skfp_release). */
	reader = bpf_map_lookup_elem(&skfp_readers, &peer->key);
	self = bpf_map_lookup_elem(&skfp_readers, &peer->own);
	if (!reader || reader->state != SKFP_READER_PROMOTED || !self || !skfp_may_redirect_from(self)) {
		skfp_count(SKFP_CNT_MSG_UNPROMOTED, 1);
		goto fallback;
	}
	/* counted before the reader's state and our own are read again (a
	 * fully ordered add, whose result is therefore used): a release that
	 * finds the reader demoted, or that moves us out of the sockhash, sees
	 * these bytes (skfp_release_read, skfp_release); taken back if they
	 * go over TCP after all */
	if (!skfp_add_ordered(&reader->redirected, size) || reader->state != SKFP_READER_PROMOTED ||
	    !skfp_may_redirect_from(self) ||
	    !skfp_guard_allow(msg, cfg, reader) || bpf_msg_redirect_hash(msg, &skfp_socks, &peer->key, BPF_F_INGRESS) != SK_PASS) {
		skfp_add_ordered(&reader->redirected, -(__u64)size);
		goto fallback;
	}
	skfp_guard_redirected(msg);
	skfp_pair_forget(peer);
	skfp_count(SKFP_CNT_MSG_REDIRECTED, 1);
	skfp_count(SKFP_CNT_BYTES_REDIRECTED, size);
	return SK_PASS;
fallback:
	skfp_count(SKFP_CNT_MSG_FALLBACK, 1);
	skfp_count(SKFP_CNT_BYTES_FALLBACK, size);
	return SK_PASS;
}

#endif /* SKFP_LIB_FASTPATH_H */
