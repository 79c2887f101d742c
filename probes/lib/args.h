/* SPDX-License-Identifier: MIT */
/* Command-line values: sizes (with K/M/G), bounded integers.
 * Part of the probes' shared helpers (probes/common.h). */
#ifndef SKFP_PROBES_ARGS_H
#define SKFP_PROBES_ARGS_H

#include "base.h"
#include "json.h"

/* ---- arguments --------------------------------------------------------- */

/* "123", "64K", "256M", "1G" (binary multiples). Dies on garbage. */
static UNUSED uint64_t parse_size(const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		die("%s: not a number: %s", opt, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	if (*end)
		die("%s: not a number: %s", opt, s);
	return v;
}

static UNUSED long parse_long(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("%s: expected an integer in [%ld, %ld]: %s", opt, min, max, s);
	return v;
}

/* The value of option argv[*i] (advances *i). */
static UNUSED const char *opt_value(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		die("%s needs a value", argv[*i]);
	return argv[++*i];
}

#endif /* SKFP_PROBES_ARGS_H */
