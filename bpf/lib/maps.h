/* SPDX-License-Identifier: GPL-2.0 */
/* The maps both objects use: the configuration and the counters. The
 * intercept object creates them and `bpftool prog loadall ... pinmaps DIR`
 * pins them; the fastpath object is loaded with `map name ... pinned ...`,
 * so it uses the very same maps. */
#ifndef SKFP_LIB_MAPS_H
#define SKFP_LIB_MAPS_H

#include "common.h"

/* Sized for 10 000 concurrent local connections (two sockets each) and more. */
#ifndef SKFP_SOCKS_MAX
#define SKFP_SOCKS_MAX 65536
#endif
#ifndef SKFP_BYPASS_MAX
#define SKFP_BYPASS_MAX 256
#endif
#ifndef SKFP_CGROUPS_MAX
#define SKFP_CGROUPS_MAX 64
#endif

/* The datapath configuration (struct skfp_config), one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct skfp_config);
} skfp_config SEC(".maps");

/* Counters, indexed by enum skfp_counter, one slot per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SKFP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} skfp_counters SEC(".maps");

static __always_inline struct skfp_config *skfp_get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&skfp_config, &zero);
}

static __always_inline void skfp_count(__u32 counter, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&skfp_counters, &counter);
	if (slot)
		*slot += n; /* per-CPU slot: no atomics needed */
}

#endif /* SKFP_LIB_MAPS_H */
