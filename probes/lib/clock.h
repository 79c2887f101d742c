/* SPDX-License-Identifier: MIT */
/* Clocks and deadlines.
 * Part of the probes' shared helpers (probes/common.h). */
#ifndef SKFP_PROBES_CLOCK_H
#define SKFP_PROBES_CLOCK_H

#include "base.h"

/* ---- clocks ------------------------------------------------------------ */

static UNUSED uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static UNUSED uint64_t now_ms(void)
{
	return now_ns() / 1000000ull;
}

static UNUSED void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Milliseconds left until deadline (ms, CLOCK_MONOTONIC); 0 when past. */
static UNUSED int ms_left(uint64_t deadline)
{
	uint64_t now = now_ms();
	if (now >= deadline)
		return 0;
	return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

#endif /* SKFP_PROBES_CLOCK_H */
