/* SPDX-License-Identifier: MIT */
/* A verifiable byte stream: bytes derived from (seed, offset), checked on arrival.
 * Part of the probes' shared helpers (probes/common.h). */
#ifndef SKFP_PROBES_PATTERN_H
#define SKFP_PROBES_PATTERN_H

#include "base.h"

/* ---- a verifiable byte stream -------------------------------------------
 * Byte i of stream `seed` is byte (i % 8) of splitmix64(seed + i / 8):
 * a receiver can check any range without keeping state, and a hole, a
 * duplicate, a reordering or a corrupted byte shows at its exact offset. */

static inline UNUSED uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static UNUSED void pattern_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && ((off + i) & 7)) {
		uint64_t w = splitmix64(seed + ((off + i) >> 3));
		buf[i] = (unsigned char)(w >> (((off + i) & 7) * 8));
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		uint64_t w = splitmix64(seed + ((off + i) >> 3));
		memcpy(buf + i, &w, 8); /* little-endian hosts: byte k = bits 8k.. */
	}
	for (; i < len; i++) {
		uint64_t w = splitmix64(seed + ((off + i) >> 3));
		buf[i] = (unsigned char)(w >> (((off + i) & 7) * 8));
	}
}

/* Offset (relative to buf) of the first byte that differs from the stream, or -1. */
static UNUSED long long pattern_check(uint64_t seed, uint64_t off, const unsigned char *buf, size_t len)
{
	unsigned char tmp[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(tmp) ? len - done : sizeof(tmp);
		pattern_fill(seed, off + done, tmp, n);
		if (memcmp(tmp, buf + done, n)) {
			for (size_t k = 0; k < n; k++)
				if (tmp[k] != buf[done + k])
					return (long long)(done + k);
		}
		done += n;
	}
	return -1;
}

/* Checks len bytes read at stream offset off unless a corruption was found
 * already: *bad (-1 = none yet) becomes the stream offset of the first bad byte. */
static UNUSED void pattern_note_bad(long long *bad, uint64_t seed, uint64_t off, const unsigned char *buf, size_t len)
{
	long long b;

	if (*bad >= 0)
		return;
	b = pattern_check(seed, off, buf, len);
	if (b >= 0)
		*bad = (long long)off + b;
}

#endif /* SKFP_PROBES_PATTERN_H */
