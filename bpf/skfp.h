/* SPDX-License-Identifier: GPL-2.0 */
/* Structures shared between the BPF programs and skfp's TypeScript side
 * (src/lib/config.ts encodes them byte for byte; test/unit/config.test.ts
 * checks the layout, an integration test checks it against bpftool's BTF dump).
 * Every field states its byte order. Keep explicit padding: no implicit holes. */
#ifndef SKFP_H
#define SKFP_H

#include <linux/types.h>

/* skfp_config.flags */
#define SKFP_CFG_FASTPATH        (1u << 0) /* sk_msg redirects (clear = kill switch) */
#define SKFP_CFG_INTERCEPT       (1u << 1) /* tc programs intercept */
#define SKFP_CFG_BYPASS_PRIVATE  (1u << 2) /* RFC1918/ULA destinations go direct */
#define SKFP_CFG_HAS_PROXY_V4    (1u << 3) /* proxy_addr4 is set */
#define SKFP_CFG_HAS_PROXY_V6    (1u << 4) /* proxy_addr6 is set */
#define SKFP_CFG_UDP             (1u << 5) /* UDP is intercepted too */
#define SKFP_CFG_CGROUP_SCOPE    (1u << 6) /* skfp_cgroups lists cgroups: look the socket's up */
#define SKFP_CFG_CGROUP_ONLY     (1u << 7) /* only sockets of SKFP_CGROUP_INTERCEPT cgroups are intercepted */
#define SKFP_CFG_ADAPTIVE        (1u << 8) /* a reader gets redirected bytes only once it has shown how it reads (readers.h) */

/* skfp_cgroups values */
#define SKFP_CGROUP_INTERCEPT 1 /* --intercept-cgroup */
#define SKFP_CGROUP_BYPASS    2 /* --bypass-cgroup */

/* skfp_config.proxy_down: what intercepted traffic gets with no proxy listener */
#define SKFP_PROXY_DOWN_FAIL_FAST   0 /* reset / ICMP error at once */
#define SKFP_PROXY_DOWN_FAIL_CLOSED 1 /* dropped */
#define SKFP_PROXY_DOWN_PASS        2 /* goes out directly */

/* Slots for the marks of VPNs' own packets (struct skfp_config). */
#define SKFP_VPN_MARKS 4

/* The datapath configuration: one entry in the ARRAY map skfp_config.
 * Written by `skfp up` with `bpftool map update ... value hex ...`. 88 bytes
 * (56 before vpn_mark: an instance loaded then keeps the shorter value). */
struct skfp_config {
	__u32 flags;          /* host order: SKFP_CFG_* */
	__u32 proxy_mark;     /* host order: SO_MARK of the proxy's own sockets; 0 = none */
	__u32 fwmark;         /* host order: mark put on intercepted packets */
	__u32 lo_ifindex;     /* host order: ifindex of lo in the target netns */
	__u32 proxy_addr4;    /* network order */
	__u32 proxy_addr6[4]; /* network order */
	__u16 proxy_port;     /* host order */
	__u8 proxy_down;      /* SKFP_PROXY_DOWN_* */
	__u8 _pad0;
	__u64 fastpath_queue; /* host order: bytes a peer may have queued before the guard demotes */
	__u32 _unused0;       /* was the hand-off wait's spin time: older records still write it */
	__u32 _pad1;
	/* host order: the marks of a VPN's own packets (a `not fwmark` policy rule's mark and mask:
	 * wg-quick's, Tailscale's), never intercepted; mask 0 = unused slot */
	__u32 vpn_mark[SKFP_VPN_MARKS];
	__u32 vpn_mask[SKFP_VPN_MARKS];
};

/* Indexes into the per-CPU ARRAY map skfp_counters (each a __u64). */
enum skfp_counter {
	SKFP_CNT_SOCK_ADDED = 0,     /* sockets inserted into the sockhash */
	SKFP_CNT_SOCK_INSERT_FAILED, /* insert failed (map full, ...): socket stays on TCP */
	SKFP_CNT_CONN_PAIRED,        /* connections with both ends seen at the handshake */
	SKFP_CNT_MSG_REDIRECTED,     /* sk_msg messages redirected to the peer */
	SKFP_CNT_BYTES_REDIRECTED,   /* their bytes */
	SKFP_CNT_MSG_FALLBACK,       /* messages sent over plain TCP (no peer / switched off) */
	SKFP_CNT_BYTES_FALLBACK,     /* their bytes */
	SKFP_CNT_GUARD_DEMOTED,      /* memory guard: peer queue over the bound, went to TCP */
	SKFP_CNT_GUARD_PROMOTED,     /* memory guard: back to redirecting */
	SKFP_CNT_TC_SEEN,            /* uplink egress: packets looked at */
	SKFP_CNT_TC_BYPASSED,        /* uplink egress: bypassed (mark, CIDR, port) */
	SKFP_CNT_TC_REDIRECTED,      /* uplink egress: redirected to lo */
	SKFP_CNT_TC_ASSIGNED_EST,    /* lo ingress: assigned to an established socket */
	SKFP_CNT_TC_ASSIGNED_LISTEN, /* lo ingress: assigned to the proxy's listener */
	SKFP_CNT_TC_NO_LISTENER,     /* lo ingress: no proxy listener */
	SKFP_CNT_UNUSED15,           /* was the hand-off wait's: the indexes after it stay put */
	SKFP_CNT_UNUSED16,
	SKFP_CNT_TC_FORWARDED,       /* uplink egress: forwarded by the host (no local socket), passed untouched */
	SKFP_CNT_UDP_SEEN,           /* uplink egress: UDP datagrams of local sockets looked at */
	SKFP_CNT_UDP_BYPASSED,       /* uplink egress: UDP bypassed (mark, CIDR, port) */
	SKFP_CNT_UDP_ANSWERS,        /* uplink egress: UDP answering a datagram that came in: direct */
	SKFP_CNT_UDP_REDIRECTED,     /* uplink egress: UDP redirected to lo */
	SKFP_CNT_UDP_ASSIGNED,       /* lo ingress: UDP assigned to the proxy's socket */
	SKFP_CNT_UDP_NO_PROXY,       /* UDP with no proxy socket: --proxy-down decided */
	SKFP_CNT_UDP_FRAGMENTS,      /* UDP fragments to intercepted destinations: dropped */
	SKFP_CNT_LAN_SEEN,           /* --lan ingress: TCP/UDP packets looked at */
	SKFP_CNT_LAN_DIRECT,         /* --lan ingress: for the host itself, its LAN, bypassed, or not the proxy's */
	SKFP_CNT_LAN_ASSIGNED,       /* --lan ingress: assigned to the proxy's socket */
	SKFP_CNT_LAN_NO_PROXY,       /* --lan ingress: no proxy socket: --proxy-down decided */
	SKFP_CNT_OUT_OF_SCOPE,       /* uplink egress: a new flow of a socket outside --intercept-cgroup / inside --bypass-cgroup */
	SKFP_CNT_ASSIGN_REFUSED,     /* ingress: bpf_sk_assign refused the proxy's socket (SO_REUSEPORT before Linux 6.5) */
	SKFP_CNT_READER_PROMOTED,    /* adaptive: a reader read with recv() often enough: it takes redirected bytes */
	SKFP_CNT_READER_SPLICE,      /* adaptive: a reader consumed bytes besides recv() (splice) before promotion: never promoted */
	SKFP_CNT_READER_WAITALL,     /* adaptive: a reader used MSG_WAITALL before promotion: never promoted */
	SKFP_CNT_READER_BLOCKING,    /* adaptive: a reader read with a blocking recv() before promotion: never promoted */
	SKFP_CNT_READER_BARRED,      /* adaptive: a promoted reader used MSG_WAITALL or a blocking recv(): no more redirects to it */
	SKFP_CNT_READER_STRANDED,    /* adaptive: ... while redirected bytes were queued: they wait for its next recv() */
	SKFP_CNT_MSG_UNPROMOTED,     /* sk_msg: sent over TCP because the reader is not promoted (yet) */
	SKFP_CNT_SOCK_BLOCKING,      /* adaptive: a paired socket not joined: its owner did not ask for non-blocking I/O */
	SKFP_CNT_SOCK_RELEASED,      /* adaptive: a socket left the sockhash: it or its peer will never be promoted */
	SKFP_CNT_CONN_AMBIGUOUS,     /* a handshake's id (tuple + client ISN) seen in two namespaces: neither connection paired */
	SKFP_CNT_FIN_HELD,           /* a FIN dropped for TCP to send again: TCP bytes wait behind its reader's redirected queue */
	SKFP_CNT_MAX = 48,           /* room to grow without changing the map */
};

/* What a reader (the receiving end of a connection in the sockhash) has
 * shown; the value of the LRU_HASH skfp_readers, keyed by the reader's own
 * struct skfp_sock_key. Written by sock_ops at join and by the tracing
 * program of readers.bpf.c; read by the sender's sk_msg. 56 bytes. */
#define SKFP_READER_WATCHED  0 /* not shown enough yet: its senders use TCP */
#define SKFP_READER_PROMOTED 1 /* reads with recv(): its senders redirect */
#define SKFP_READER_BARRED   2 /* never promoted, read in a way the fastpath breaks: its senders use TCP for good */
#define SKFP_READER_RELEASED 3 /* left the sockhash (sock_ops): plain TCP for good, no sockmap path */
#define SKFP_READER_DEMOTED  4 /* promoted, then barred: stays in the sockhash until it has read every redirected byte */
struct skfp_reader {
	__u64 sk;     /* host order: kernel address of the socket (checked against cookie before each read) */
	__u64 cookie; /* host order: its socket cookie */
	__u32 reads;  /* host order: non-blocking recv() calls that returned data (not MSG_PEEK) */
	__u32 seq;    /* host order: the socket's copied_seq after its last recv() (or at join) */
	__u64 state;  /* host order: SKFP_READER_*, changed by compare-and-swap (sock_ops and the readers' program
		       * race); 64 bits: clang's BPF target without alu32 has no 32-bit compare-and-swap */
	__u64 unseen_since; /* host order: bpf_ktime_get_ns() of the first ACK that found bytes consumed before any recv() */
	__u64 redirected; /* host order: bytes its senders redirected to it, added before they look at its state */
	__u64 drained;    /* host order: redirected bytes it has read (a recv() that returned more than copied_seq moved) */
};

/* Key of the SOCKHASH skfp_socks: one established TCP socket, seen from itself.
 * IPv4 (and v4-mapped IPv6) is stored as family 4 with the address in ip[0].
 * client_isn tells connections with the same tuple apart: a socket reset by
 * its peer stays in the sockhash until its owner closes it, and the next
 * connection from the same port must not find it. 56 bytes. */
struct skfp_sock_key {
	__u32 local_ip[4];   /* network order */
	__u32 remote_ip[4];  /* network order */
	__u16 local_port;    /* host order */
	__u16 remote_port;   /* host order */
	__u32 family;        /* 4 or 6 */
	__u64 netns_cookie;  /* bpf_get_netns_cookie() of the socket */
	__u32 client_isn;    /* host order: the connection's client initial sequence number */
	__u32 _pad;
};

/* The undo record: one entry in the ARRAY map skfp_record. It holds, as JSON
 * text, everything `skfp down` must undo (cgroup, netns, uplinks, rules,
 * routes, sysctls with their old values). Written before each change it
 * describes, so a crash never leaves a change that is not recorded. */
#define SKFP_RECORD_MAX 4088
struct skfp_record {
	__u32 version;              /* host order: SKFP_RECORD_VERSION */
	__u32 len;                  /* host order: bytes of json used */
	char json[SKFP_RECORD_MAX]; /* UTF-8, not NUL-terminated */
};
#define SKFP_RECORD_VERSION 1

#endif /* SKFP_H */
