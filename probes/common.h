/* SPDX-License-Identifier: MIT */
/* Shared helpers of skfp's probe programs (skfp-probe, skfp-relay,
 * skfp-pingpong, ...): the system headers and, in probes/lib/, one-line JSON
 * output (json.h), clocks (clock.h), argument parsing (args.h), addresses
 * (addr.h), deadline-bounded socket I/O (sock.h) and a verifiable data
 * pattern (pattern.h).
 * the system headers (lib/base.h). */
#ifndef SKFP_PROBES_COMMON_H
#define SKFP_PROBES_COMMON_H

#include "lib/json.h"
#include "lib/clock.h"
#include "lib/args.h"
#include "lib/addr.h"
#include "lib/sock.h"
#include "lib/pattern.h"

#endif /* SKFP_PROBES_COMMON_H */
