/* SPDX-License-Identifier: MIT */
/* TCP sockets with deadlines: listen, connect (with a mark), accept, whole sends and receives.
 * Part of the probes' shared helpers (probes/common.h). */
#ifndef SKFP_PROBES_SOCK_H
#define SKFP_PROBES_SOCK_H

#include "base.h"
#include "addr.h"
#include "clock.h"

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

/* Sends all len bytes (a non-blocking socket is polled). len on success, -1 (errno). */
static UNUSED ssize_t send_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pl = { .fd = fd, .events = POLLOUT };
			poll(&pl, 1, 100);
			continue;
		}
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

#endif /* SKFP_PROBES_SOCK_H */
