/* SPDX-License-Identifier: MIT */
/* One-line JSON output, and die(): a usage or set-up failure as {"error":...}, exit 2.
 * Part of the probes' shared helpers (probes/common.h). */
#ifndef SKFP_PROBES_JSON_H
#define SKFP_PROBES_JSON_H

#include "base.h"

/* ---- JSON: one object, built in a buffer, printed as one line ---------- */

struct json {
	char s[16384];
	size_t n;
	int first;
};

static UNUSED void json_raw(struct json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static UNUSED void json_raw(struct json *j, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (j->n >= sizeof(j->s) - 1)
		return;
	va_start(ap, fmt);
	r = vsnprintf(j->s + j->n, sizeof(j->s) - j->n, fmt, ap);
	va_end(ap);
	if (r > 0)
		j->n += (size_t)r < sizeof(j->s) - j->n ? (size_t)r : sizeof(j->s) - j->n - 1;
}

static UNUSED void json_begin(struct json *j)
{
	j->n = 0;
	j->s[0] = 0;
	j->first = 1;
	json_raw(j, "{");
}

static UNUSED void json_key(struct json *j, const char *key)
{
	json_raw(j, "%s\"%s\":", j->first ? "" : ",", key);
	j->first = 0;
}

/* A JSON string literal (quotes included) of s, escaped. */
static UNUSED void json_quote(struct json *j, const char *s)
{
	json_raw(j, "\"");
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			json_raw(j, "\\%c", c);
		else if (c < 0x20)
			json_raw(j, "\\u%04x", c);
		else
			json_raw(j, "%c", c);
	}
	json_raw(j, "\"");
}

static UNUSED void json_str(struct json *j, const char *key, const char *val)
{
	json_key(j, key);
	json_quote(j, val);
}

static UNUSED void json_int(struct json *j, const char *key, long long val)
{
	json_key(j, key);
	json_raw(j, "%lld", val);
}

static UNUSED void json_dbl(struct json *j, const char *key, double val)
{
	json_key(j, key);
	json_raw(j, "%.3f", val);
}

static UNUSED void json_bool(struct json *j, const char *key, int val)
{
	json_key(j, key);
	json_raw(j, "%s", val ? "true" : "false");
}

/* Prints the object as one line on stdout (flushed), with one write(). */
static UNUSED void json_end_print(struct json *j)
{
	json_raw(j, "}\n");
	fflush(stdout);
	if (write(STDOUT_FILENO, j->s, j->n) < 0)
		_exit(70);
}

/* Usage and set-up failures: {"error":"..."} on stdout, exit 2. */
static UNUSED void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static UNUSED void die(const char *fmt, ...)
{
	char msg[1024];
	struct json j;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_begin(&j);
	json_str(&j, "error", msg);
	json_end_print(&j);
	_exit(2);
}

#endif /* SKFP_PROBES_JSON_H */
