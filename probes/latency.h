/* SPDX-License-Identifier: MIT */
/* Round-trip and connection-rate reports shared by skfp-pingpong and skfp-uds: one format for both. */
#ifndef SKFP_PROBES_LATENCY_H
#define SKFP_PROBES_LATENCY_H

#include <stdint.h>
#include <stdlib.h>
#include "common.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (per mille) of sorted v[n], in µs. */
static double pct_us(const uint64_t *v, long n, long permille)
{
	long k = (n * permille + 999) / 1000;
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1000.0;
}

/* Sorts the latencies (ns) and prints the rtt JSON line; returns the exit code (1 on error). */
static int rtt_report(uint64_t *lat, long done, uint64_t sum, long long size, long warmup, int cpu, const char *err)
{
	struct json j;

	qsort(lat, (size_t)done, sizeof(*lat), cmp_u64);
	json_begin(&j);
	json_int(&j, "count", done);
	json_int(&j, "size", size);
	if (done) {
		json_dbl(&j, "p50Us", pct_us(lat, done, 500));
		json_dbl(&j, "p99Us", pct_us(lat, done, 990));
		json_dbl(&j, "p999Us", pct_us(lat, done, 999));
		json_dbl(&j, "minUs", (double)lat[0] / 1000.0);
		json_dbl(&j, "maxUs", (double)lat[done - 1] / 1000.0);
		json_dbl(&j, "meanUs", (double)sum / (double)done / 1000.0);
	}
	json_int(&j, "warmup", warmup);
	json_int(&j, "cpu", cpu);
	json_int(&j, "errors", err[0] ? 1 : 0);
	if (err[0])
		json_str(&j, "error", err);
	json_end_print(&j);
	return err[0] ? 1 : 0;
}

/* Prints the connrate JSON line for ok connections and errors made in t1 - t0 ns. */
static int connrate_report(long long ok, long long errors, uint64_t t0, uint64_t t1, int parallel, const char *first)
{
	struct json j;

	json_begin(&j);
	json_int(&j, "connections", ok);
	json_dbl(&j, "perSec", (double)ok / ((double)(t1 - t0) / 1e9));
	json_int(&j, "errors", errors);
	json_int(&j, "durationMs", (long long)((t1 - t0) / 1000000));
	json_int(&j, "parallel", parallel);
	if (*first)
		json_str(&j, "firstError", first);
	json_end_print(&j);
	return 0;
}

#endif /* SKFP_PROBES_LATENCY_H */
