// SPDX-License-Identifier: GPL-2.0
/* The fastpath object: sock_ops, sk_msg, the sockhash and the socket storage
 * of the pairing and the memory guard. Loaded after the intercept object,
 * with its skfp_config and skfp_counters maps reused. Built twice
 * (lib/kernel.h): with -DSKFP_KFUNCS for 6.2+, without for 6.1; a kernel
 * that refuses both still gets interception. */
#include "lib/fastpath.h"

char LICENSE[] SEC("license") = "GPL";
