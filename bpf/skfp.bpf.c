// SPDX-License-Identifier: GPL-2.0
/* The skfp datapath object: every program and map, loaded by
 * `bpftool prog loadall skfp.bpf.o ... pinmaps ...` (types from SEC names). */
#include "lib/fastpath.h"
#include "lib/intercept.h"

char LICENSE[] SEC("license") = "GPL";
