// SPDX-License-Identifier: GPL-2.0
/* The interception object: transparent-proxy interception with tc, what
 * iptables TPROXY does without netfilter:
 *  - skfp_tc_egress (clsact egress of each uplink): TCP and UDP that should
 *    reach the proxy get skb->mark = fwmark and are turned around into lo's
 *    ingress;
 *  - skfp_tc_lo_ingress (clsact ingress of lo): hands those packets to the
 *    proxy's socket with bpf_sk_assign;
 *  - skfp_tc_lan_ingress (clsact ingress of each --lan interface): hands what
 *    LAN clients send through the host to the proxy's sockets directly;
 *  - skfp_tc_uplink_ingress (clsact ingress of each uplink, with UDP): notes
 *    the UDP flows that came in to a local socket, so that the host's own UDP
 *    servers answer their clients directly.
 * Policy routing delivers the marked packets locally although their
 * destination is remote: `ip rule add fwmark FWMARK lookup T` +
 * `ip route add local default dev lo table T` (and -6), lo accept_local=1.
 * The proxy's listener must be IP_TRANSPARENT, or its SYN-ACK, sent from the
 * original destination, has no route.
 * Each program that sits on an uplink or a --lan interface comes twice: for an
 * Ethernet device (`ip -j link`: link_type "ether") and, named *_l3, for an
 * L3 device (link_type "none": tun, WireGuard), whose packets start at the IP
 * header. What the L3 egress turns into lo first gets an Ethernet header.
 * It needs only what Linux 5.10 with BTF offers, so every instance loads it,
 * whatever the fastpath object needs; it also holds the instance's
 * configuration, counters and undo record. */
#include <linux/if_packet.h>
#include "lib/lookup.h"
#include "lib/reject.h"
#include "lib/scope.h"
#include "lib/udp.h"

/* What `skfp down` must undo (struct skfp_record), one entry. It lives in
 * this object because every kernel skfp supports loads it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct skfp_record);
} skfp_record SEC(".maps");

/* Both variants of a program for an uplink or a --lan interface: NAME for an
 * Ethernet device, NAME_l3 for an L3 one (skfp_tc_egress_l3,
 * skfp_tc_uplink_ingress_l3, skfp_tc_lan_ingress_l3). */
#define SKFP_TC_VARIANTS(name, fn)                                   \
	SEC("tc") int name(struct __sk_buff *skb)                    \
	{                                                            \
		return fn(skb, SKFP_L2);                             \
	}                                                            \
	SEC("tc") int name##_l3(struct __sk_buff *skb)               \
	{                                                            \
		return fn(skb, SKFP_L3);                             \
	}

/* Into lo's ingress, marked for the policy route. A packet of an L3 device
 * first gets an Ethernet header: a redirect to a device that takes one
 * (lo does) drops a packet without it. All zeros but the protocol: lo's own
 * address is all zeros, so the packet is PACKET_HOST there. Failing that,
 * the packet goes nowhere rather than out unproxied. */
static __always_inline int skfp_to_lo(struct __sk_buff *skb, const struct skfp_config *cfg, const struct skfp_pkt *p)
{
	if (!p->l2) {
		struct ethhdr eth = {.h_proto = p->family == 4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6)};

		if (bpf_skb_change_head(skb, sizeof(eth), 0) || bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0))
			return TC_ACT_SHOT;
	}
	skb->mark = cfg->fwmark;
	return bpf_redirect(cfg->lo_ifindex, BPF_F_INGRESS);
}

/* Packets that go direct by their mark: the proxy's own upstream
 * (intercepting it would loop) and a VPN's own packets to its server, marked
 * by the VPN for its `not fwmark` policy rule (handed to the proxy, the
 * tunnel would run through it, or be refused with it). */
static __always_inline int skfp_marked_direct(const struct __sk_buff *skb, const struct skfp_config *cfg)
{
	__u32 mark = skb->mark;
	int i;

	if (cfg->proxy_mark && mark == cfg->proxy_mark)
		return 1;
#pragma unroll
	for (i = 0; i < SKFP_VPN_MARKS; i++)
		if (cfg->vpn_mask[i] && (mark & cfg->vpn_mask[i]) == cfg->vpn_mark[i])
			return 1;
	return 0;
}

/* Uplink egress, a UDP datagram of a local socket. */
static __always_inline int skfp_udp_egress(struct __sk_buff *skb, const struct skfp_config *cfg, struct skfp_pkt *p)
{
	struct bpf_sock *sk;

	if (!(cfg->flags & SKFP_CFG_UDP))
		return TC_ACT_OK;
	skfp_count(SKFP_CNT_UDP_SEEN, 1);
	if (skfp_marked_direct(skb, cfg) || skfp_bypass(cfg, p)) {
		skfp_count(SKFP_CNT_UDP_BYPASSED, 1);
		return TC_ACT_OK;
	}
	if (!skfp_cgroup_in_scope(skb, cfg)) {
		skfp_count(SKFP_CNT_OUT_OF_SCOPE, 1);
		return TC_ACT_OK;
	}
	if (p->frag) {
		skfp_count(SKFP_CNT_UDP_FRAGMENTS, 1);
		return TC_ACT_SHOT;
	}
	if (skfp_udp_answers(p)) {
		skfp_count(SKFP_CNT_UDP_ANSWERS, 1);
		return TC_ACT_OK;
	}
	sk = skfp_lookup_proxy(skb, cfg, p);
	if (sk && skfp_proxy_refused(p, sk)) {
		bpf_sk_release(sk);
		sk = NULL;
	}
	if (sk)
		bpf_sk_release(sk);
	if (!sk) {
		skfp_count(SKFP_CNT_UDP_NO_PROXY, 1);
		return skfp_proxy_down(skb, cfg, p, BPF_F_INGRESS);
	}
	skfp_count(SKFP_CNT_UDP_REDIRECTED, 1);
	return skfp_to_lo(skb, cfg, p);
}

/* A packet for the proxy, at an ingress hook: to its connection's socket (a
 * TCP connection the proxy accepted, or a connected UDP socket it answers
 * from), or to the proxy's listener or UDP socket. A refused assign to the
 * connection's socket is no loss (routing finds that socket too: its tuple is
 * the packet's); one to the proxy's socket is noted (skfp_note_refused). */
static __always_inline int skfp_assign(struct __sk_buff *skb, const struct skfp_config *cfg, struct skfp_pkt *p)
{
	int udp = p->proto == IPPROTO_UDP;
	struct bpf_sock *sk;
	__u64 addr;
	long err;

	sk = udp ? skfp_udp_lookup_conn(skb, p) : skfp_lookup_conn(skb, p);
	if (sk) {
		bpf_sk_assign(skb, sk, 0);
		bpf_sk_release(sk);
		skfp_count(udp ? SKFP_CNT_UDP_ASSIGNED : SKFP_CNT_TC_ASSIGNED_EST, 1);
		return TC_ACT_OK;
	}
	sk = skfp_lookup_proxy(skb, cfg, p);
	if (!sk) {
		/* The proxy went away since egress looked. */
		skfp_count(udp ? SKFP_CNT_UDP_NO_PROXY : SKFP_CNT_TC_NO_LISTENER, 1);
		return TC_ACT_SHOT;
	}
	err = bpf_sk_assign(skb, sk, 0);
	addr = (__u64)sk;
	bpf_sk_release(sk);
	if (err) {
		skfp_note_refused(p, addr);
		return SKFP_REFUSED;
	}
	skfp_count(udp ? SKFP_CNT_UDP_ASSIGNED : SKFP_CNT_TC_ASSIGNED_LISTEN, 1);
	return TC_ACT_OK;
}

/* A refused packet at an ingress hook. Fail-fast answers at once: a TCP SYN
 * goes on to the stack, which finds no socket and resets it (from the
 * original destination: a reset may come from any address); a datagram gets
 * skfp's ICMP port unreachable (the stack's own cannot leave from the
 * original destination, not an address of the host). The other modes drop
 * it: the client's retry meets the uplink's verdict. */
static __always_inline int skfp_refused_verdict(struct __sk_buff *skb, const struct skfp_config *cfg,
						const struct skfp_pkt *p, __u64 to, int at_lo)
{
	if (cfg->proxy_down != SKFP_PROXY_DOWN_FAIL_FAST)
		return TC_ACT_SHOT;
	return p->proto == IPPROTO_UDP ? skfp_udp_reject(skb, p, to, at_lo) : TC_ACT_OK;
}

static __always_inline int skfp_egress(struct __sk_buff *skb, const __u32 l2)
{
	struct skfp_config *cfg;
	struct skfp_pkt p = {};

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_INTERCEPT) || !cfg->fwmark)
		return TC_ACT_OK;
	if (skfp_parse_at(skb, &p, l2))
		return TC_ACT_OK;
	/* Only the host's own traffic. A packet the host forwards (a container
	 * behind a bridge, with or without NAT; a LAN client; a VM) has no
	 * socket here: ip_rcv orphans every packet it receives. Handed to the
	 * proxy, its replies would go to the host (after NAT, its own address)
	 * and the connection would be cut off. */
	if (!skb->sk) {
		skfp_count(SKFP_CNT_TC_FORWARDED, 1);
		return TC_ACT_OK;
	}
	if (p.proto == IPPROTO_UDP)
		return skfp_udp_egress(skb, cfg, &p);
	skfp_count(SKFP_CNT_TC_SEEN, 1);
	if (skfp_marked_direct(skb, cfg) || skfp_bypass(cfg, &p)) {
		skfp_count(SKFP_CNT_TC_BYPASSED, 1);
		return TC_ACT_OK;
	}
	/* A new connection of a socket outside the cgroups asked for. */
	if (skfp_pkt_is_syn(&p) && !skfp_cgroup_in_scope(skb, cfg)) {
		skfp_count(SKFP_CNT_OUT_OF_SCOPE, 1);
		return TC_ACT_OK;
	}
	/* Checked here, not at lo: here "pass" can still let the packet out. */
	switch (skfp_route(skb, cfg, &p)) {
	case SKFP_DIRECT:
		skfp_count(SKFP_CNT_TC_BYPASSED, 1);
		return TC_ACT_OK;
	case SKFP_NO_PROXY:
		skfp_count(SKFP_CNT_TC_NO_LISTENER, 1);
		return skfp_proxy_down(skb, cfg, &p, BPF_F_INGRESS);
	default:
		break;
	}
	skfp_count(SKFP_CNT_TC_REDIRECTED, 1);
	return skfp_to_lo(skb, cfg, &p);
}

SKFP_TC_VARIANTS(skfp_tc_egress, skfp_egress)

/* Runs for every packet entering lo: anything without our fwmark is
 * loopback traffic and passes at once. Does not look at SKFP_CFG_INTERCEPT:
 * packets already redirected must still reach their socket. */
SEC("tc")
int skfp_tc_lo_ingress(struct __sk_buff *skb)
{
	struct skfp_config *cfg;
	struct skfp_pkt p = {};
	int ret;

	cfg = skfp_get_config();
	if (!cfg || !cfg->fwmark || skb->mark != cfg->fwmark)
		return TC_ACT_OK;
	if (skfp_parse(skb, &p))
		return TC_ACT_OK;
	/* The redirect left the uplink's Ethernet addresses: PACKET_OTHERHOST,
	 * which ip_rcv drops. */
	bpf_skb_change_type(skb, PACKET_HOST);
	ret = skfp_assign(skb, cfg, &p);
	return ret == SKFP_REFUSED ? skfp_refused_verdict(skb, cfg, &p, BPF_F_INGRESS, 1) : ret;
}

/* Uplink ingress, with UDP on: notes each UDP flow that comes in to a local
 * socket (skfp_udp_answers). Everything passes. */
static __always_inline int skfp_uplink_ingress(struct __sk_buff *skb, const __u32 l2)
{
	struct skfp_udp_flow f = {};
	struct skfp_config *cfg;
	struct skfp_pkt p = {};
	struct bpf_sock *sk;
	__u64 now, *seen;

	cfg = skfp_get_config();
	if (!cfg || (cfg->flags & (SKFP_CFG_INTERCEPT | SKFP_CFG_UDP)) != (SKFP_CFG_INTERCEPT | SKFP_CFG_UDP))
		return TC_ACT_OK;
	if (skfp_parse_at(skb, &p, l2) || p.proto != IPPROTO_UDP || p.frag)
		return TC_ACT_OK;
	skfp_udp_flow_of(&f, &p, 1);
	now = bpf_ktime_get_ns();
	seen = bpf_map_lookup_elem(&skfp_udp_inbound, &f);
	if (seen && now - *seen < SKFP_UDP_NOTE_NS)
		return TC_ACT_OK;
	/* Only flows to a local socket: a forwarded one (a router's LAN
	 * client) never has its answer looked up, and would evict. */
	sk = skfp_udp_lookup(skb, &p.tuple, p.family);
	if (!sk)
		return TC_ACT_OK;
	bpf_sk_release(sk);
	bpf_map_update_elem(&skfp_udp_inbound, &f, &now, BPF_ANY);
	return TC_ACT_OK;
}

SKFP_TC_VARIANTS(skfp_tc_uplink_ingress, skfp_uplink_ingress)

/* --lan: what LAN clients (a router's, containers on a bridge) send through
 * the host. Taken at the LAN interface's ingress, before routing and before
 * any NAT, so the proxy sees the client's own address; the fwmark makes
 * routing deliver it locally, where the socket it was assigned takes it. What
 * is for the host itself (its own addresses, broadcast) and what goes back
 * out of the LAN interface it came from (the LAN's own subnet) stays as it is:
 * the kernel's route lookup (bpf_fib_lookup) decides. With forwarding off on
 * the interface the host routes nothing for its LAN clients, and skfp takes
 * nothing either. Proxy down: as on the uplink, answers go back out of the
 * LAN interface. Not covered: a UDP answer from a LAN host to a datagram the
 * host port-forwarded to it (DNAT) is intercepted; --bypass-port its port. */
static __always_inline int skfp_lan_stays(struct __sk_buff *skb, const struct skfp_pkt *p)
{
	struct bpf_fib_lookup f = {};
	long rc;

	f.ifindex = skb->ifindex;
	f.l4_protocol = p->proto;
	if (p->family == 4) {
		f.family = AF_INET;
		f.ipv4_src = p->tuple.ipv4.saddr;
		f.ipv4_dst = p->tuple.ipv4.daddr;
	} else {
		f.family = AF_INET6;
		__builtin_memcpy(f.ipv6_src, p->tuple.ipv6.saddr, 16);
		__builtin_memcpy(f.ipv6_dst, p->tuple.ipv6.daddr, 16);
	}
	rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED || rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return 1;
	return (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) && f.ifindex == skb->ifindex;
}

static __always_inline int skfp_lan_ingress(struct __sk_buff *skb, const __u32 l2)
{
	struct skfp_config *cfg;
	struct skfp_pkt p = {};
	struct bpf_sock *sk;
	int ret;

	cfg = skfp_get_config();
	if (!cfg || !(cfg->flags & SKFP_CFG_INTERCEPT) || !cfg->fwmark)
		return TC_ACT_OK;
	if (skfp_parse_at(skb, &p, l2) || (p.proto == IPPROTO_UDP && !(cfg->flags & SKFP_CFG_UDP)))
		return TC_ACT_OK;
	skfp_count(SKFP_CNT_LAN_SEEN, 1);
	if (skfp_bypass(cfg, &p) || skfp_lan_stays(skb, &p)) {
		skfp_count(SKFP_CNT_LAN_DIRECT, 1);
		return TC_ACT_OK;
	}
	if (p.frag) {
		skfp_count(SKFP_CNT_UDP_FRAGMENTS, 1);
		return TC_ACT_SHOT;
	}
	if (p.proto == IPPROTO_TCP) {
		switch (skfp_route(skb, cfg, &p)) {
		case SKFP_DIRECT:
			skfp_count(SKFP_CNT_LAN_DIRECT, 1);
			return TC_ACT_OK;
		case SKFP_NO_PROXY:
			skfp_count(SKFP_CNT_LAN_NO_PROXY, 1);
			return skfp_proxy_down(skb, cfg, &p, 0);
		default:
			break;
		}
		ret = skfp_assign(skb, cfg, &p);
	} else {
		sk = skfp_udp_lookup_conn(skb, &p);
		if (!sk) {
			sk = skfp_lookup_proxy(skb, cfg, &p);
			if (sk && skfp_proxy_refused(&p, sk)) {
				bpf_sk_release(sk);
				sk = NULL;
			}
		}
		if (!sk) {
			skfp_count(SKFP_CNT_LAN_NO_PROXY, 1);
			return skfp_proxy_down(skb, cfg, &p, 0);
		}
		bpf_sk_release(sk);
		ret = skfp_assign(skb, cfg, &p);
	}
	if (ret == SKFP_REFUSED) {
		skfp_count(SKFP_CNT_LAN_NO_PROXY, 1);
		ret = skfp_refused_verdict(skb, cfg, &p, 0, 0);
		if (ret == TC_ACT_OK)
			skb->mark = cfg->fwmark; /* a SYN delivered locally: the stack resets it */
		return ret;
	}
	if (ret != TC_ACT_OK)
		return ret;
	skb->mark = cfg->fwmark;
	skfp_count(SKFP_CNT_LAN_ASSIGNED, 1);
	return TC_ACT_OK;
}

SKFP_TC_VARIANTS(skfp_tc_lan_ingress, skfp_lan_ingress)

char LICENSE[] SEC("license") = "GPL";
