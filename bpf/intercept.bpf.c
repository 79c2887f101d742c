// SPDX-License-Identifier: GPL-2.0
/* The interception object: the tc programs, the instance's configuration,
 * counters and undo record. Needs only what Linux 5.10 with BTF offers, so
 * every instance loads it, whatever the fastpath object needs. */
#include "lib/intercept.h"

char LICENSE[] SEC("license") = "GPL";
