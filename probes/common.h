/* SPDX-License-Identifier: MIT */
/* Shared helpers of skfp's probe programs (skfp-probe, skfp-relay,
 * skfp-pingpong): one-line JSON output, argument and address parsing, clocks,
 * deadline-bounded socket I/O and a verifiable data pattern.
 * libc only (pthreads are part of glibc >= 2.34). Everything is static:
 * each program is one translation unit. */
#ifndef SKFP_PROBES_COMMON_H
#define SKFP_PROBES_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define UNUSED __attribute__((unused))

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

/* ---- addresses --------------------------------------------------------- */

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* An IP address literal (v4 or v6, brackets allowed) and a port. */
static UNUSED int addr_from_ip(struct addr *a, const char *ip, unsigned port)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(ip);

	memset(a, 0, sizeof(*a));
	if (n >= sizeof(buf))
		return -1;
	if (ip[0] == '[' && n >= 2 && ip[n - 1] == ']') {
		memcpy(buf, ip + 1, n - 2);
		buf[n - 2] = 0;
	} else {
		memcpy(buf, ip, n + 1);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
	if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		a->len = sizeof(*s4);
		return 0;
	}
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		a->len = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* "1.2.3.4:80", "[::1]:80". Dies on garbage. */
static UNUSED void parse_addrport(const char *opt, const char *s, struct addr *a)
{
	char ip[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	long port;

	if (!colon || (size_t)(colon - s) >= sizeof(ip))
		die("%s: expected ADDR:PORT or [ADDR6]:PORT: %s", opt, s);
	if (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)))
		die("%s: IPv6 addresses need brackets: [%.*s]:PORT", opt, (int)(colon - s), s);
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = 0;
	port = parse_long(opt, colon + 1, 0, 65535);
	if (addr_from_ip(a, ip, (unsigned)port))
		die("%s: not an IP address: %s", opt, ip);
}

static UNUSED int addr_family(const struct addr *a)
{
	return a->ss.ss_family;
}

static UNUSED unsigned addr_port(const struct addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static UNUSED void addr_set_port(struct addr *a, unsigned port)
{
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

/* "1.2.3.4:80" / "[::1]:80" into buf. */
static UNUSED const char *addr_str(const struct addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, addr_port(a));
	} else {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, addr_port(a));
	}
	return buf;
}

/* ::ffff:a.b.c.d -> a.b.c.d (AF_INET); anything else unchanged. */
static UNUSED void addr_unmap_v4(struct addr *a)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
	struct sockaddr_in s4;

	if (a->ss.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		return;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = s6->sin6_port;
	memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
	memset(&a->ss, 0, sizeof(a->ss));
	memcpy(&a->ss, &s4, sizeof(s4));
	a->len = sizeof(s4);
}

static UNUSED int addr_is_v6_any(const struct addr *a)
{
	return a->ss.ss_family == AF_INET6 &&
	       IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

/* ---- sockets ----------------------------------------------------------- */

static UNUSED int set_int_opt(int fd, int level, int name, int val)
{
	return setsockopt(fd, level, name, &val, sizeof(val));
}

static UNUSED int set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* A listening TCP socket on a (port 0 = ephemeral; a->port is updated).
 * A wildcard "::" listener is dual stack. -1 with errno on failure. */
static UNUSED int tcp_listen(struct addr *a, int backlog)
{
	int fd = socket(addr_family(a), SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (addr_family(a) == AF_INET6)
		set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, addr_is_v6_any(a) ? 0 : 1);
	if (bind(fd, (struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	a->len = sizeof(a->ss);
	getsockname(fd, (struct sockaddr *)&a->ss, &a->len);
	return fd;
}

/* connect() bounded by timeout_ms; returns a blocking socket or -1 (errno). */
static UNUSED int tcp_connect(const struct addr *a, int timeout_ms, int mark)
{
	int fd = socket(addr_family(a), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int err = 0;
	socklen_t elen = sizeof(err);

	if (fd < 0)
		return -1;
	if (mark && set_int_opt(fd, SOL_SOCKET, SO_MARK, mark) < 0)
		goto fail;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		if (errno != EINPROGRESS)
			goto fail;
		int r;
		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			goto fail;
		if (err) {
			errno = err;
			goto fail;
		}
	}
	set_nonblock(fd, 0);
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* accept() bounded by timeout_ms; returns a blocking socket or -1 (errno). */
static UNUSED int tcp_accept(int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		errno = ETIMEDOUT;
	if (r <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

/* Sends all len bytes (blocking socket). len on success, -1 (errno). */
static UNUSED ssize_t send_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Receives exactly len bytes (blocking socket) unless EOF/error comes first.
 * Returns bytes received (short on EOF), -1 on error before any byte. */
static UNUSED ssize_t recv_all(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = recv(fd, (char *)buf + done, len - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return done ? (ssize_t)done : -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static UNUSED int pin_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

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

#endif /* SKFP_PROBES_COMMON_H */
