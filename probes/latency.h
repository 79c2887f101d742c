/* SPDX-License-Identifier: MIT */
/* Round-trip and connection-rate reports shared by skfp-pingpong and skfp-uds: one format for both. */
#ifndef SKFP_PROBES_LATENCY_H
#define SKFP_PROBES_LATENCY_H

#include <stdint.h>
#include <stdlib.h>
#include "common.h"

static UNUSED int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (per mille) of sorted v[n], in µs. */
static UNUSED double pct_us(const uint64_t *v, long n, long permille)
{
	long k = (n * permille + 999) / 1000;
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)v[k - 1] / 1000.0;
}

/* Sorts the latencies (ns) and prints the rtt JSON line; returns the exit code (1 on error). */
static UNUSED int rtt_report(uint64_t *lat, long done, uint64_t sum, long long size, long warmup, int cpu, const char *err)
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

/* One connrate client thread: it connects until deadline_ns and counts. */
struct crate {
	pthread_t th;
	uint64_t deadline_ns;
	long ok, errors;
	char first_err[128];
};

/* Runs `parallel` threads of fn (each given its struct crate) for duration_ms,
 * then prints the connrate JSON line. */
static UNUSED int connrate_run(int parallel, long duration_ms, void *(*fn)(void *))
{
	struct crate *cr = calloc((size_t)parallel, sizeof(*cr));
	long long ok = 0, errors = 0;
	const char *first = "";
	uint64_t t0 = now_ns(), t1;
	struct json j;

	if (!cr)
		die("out of memory");
	for (int i = 0; i < parallel; i++) {
		cr[i].deadline_ns = t0 + (uint64_t)duration_ms * 1000000ull;
		if (pthread_create(&cr[i].th, NULL, fn, &cr[i]))
			die("pthread_create: %s", strerror(errno));
	}
	for (int i = 0; i < parallel; i++) {
		pthread_join(cr[i].th, NULL);
		ok += cr[i].ok;
		errors += cr[i].errors;
		if (!*first && cr[i].first_err[0])
			first = cr[i].first_err;
	}
	t1 = now_ns();
	json_begin(&j);
	json_int(&j, "connections", ok);
	json_dbl(&j, "perSec", (double)ok / ((double)(t1 - t0) / 1e9));
	json_int(&j, "errors", errors);
	json_int(&j, "durationMs", (long long)((t1 - t0) / 1000000));
	json_int(&j, "parallel", parallel);
	if (*first)
		json_str(&j, "firstError", first);
	json_end_print(&j);
	free(cr);
	return 0;
}

#endif /* SKFP_PROBES_LATENCY_H */
