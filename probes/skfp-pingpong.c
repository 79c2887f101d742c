/* SPDX-License-Identifier: MIT */
/* skfp-pingpong: latency and connection-rate measurements.
 *
 *   skfp-pingpong server   --listen ADDR:PORT [--cpu C]
 *       echo server (one epoll thread, any number of connections). Prints
 *       {"listening":"ADDR:PORT"} when ready; runs until SIGTERM/SIGINT, exit 0.
 *   skfp-pingpong rtt      --connect ADDR:PORT [--count N] [--size B] [--cpu C]
 *                          [--warmup W] [--timeout-ms MS]
 *       ping-pong of B-byte messages over one connection:
 *       {"count":N,"size":B,"p50Us":..,"p99Us":..,"p999Us":..,"minUs":..,
 *        "maxUs":..,"meanUs":..,"errors":0}
 *   skfp-pingpong connrate --connect ADDR:PORT [--duration-ms D] [--parallel K]
 *                          [--cpu C] [--rst] [--timeout-ms MS]
 *       connect, send 1 byte, read the echo, close, repeat (K threads):
 *       {"connections":N,"perSec":..,"errors":E,"durationMs":..,"parallel":K}
 *
 * Set-up failures (bad usage, listen/connect impossible): {"error":"..."} on
 * stdout, exit 2. A failure in the middle of an rtt run ends the run:
 * the figures so far are printed with "errors":1 and "error":"...", exit 1. */
#include "common.h"
#include "latency.h"
#include <sys/epoll.h>
#include <sys/signalfd.h>

struct opts {
	struct addr addr;
	int have_addr;
	int cpu;
	long count, warmup;
	size_t size;
	long duration_ms;
	int parallel;
	int rst;
	int timeout_ms;
};

static struct opts O = { .cpu = -1, .count = 10000, .warmup = -1, .size = 1,
			 .duration_ms = 1000, .parallel = 1, .timeout_ms = 5000 };

/* ---- server ----------------------------------------------------------- */

#define ECHO_BUF 65536

struct econn {
	int fd;
	size_t len, off;
	int eof;
	char buf[ECHO_BUF];
};

static void econn_close(int ep, struct econn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Echoes what it can; returns -1 when the connection is finished. */
static int econn_step(int ep, struct econn *c)
{
	for (;;) {
		while (c->len) {
			ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN) {
					struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
					return 0;
				}
				if (errno == EINTR)
					continue;
				return -1;
			}
			c->off += (size_t)n;
			if (c->off == c->len)
				c->len = c->off = 0;
		}
		if (c->eof)
			return -1;
		ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n > 0) {
			c->len = (size_t)n;
			continue;
		}
		if (n == 0) {
			c->eof = 1;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -1;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		return 0;
	}
}

static int run_server(void)
{
	char abuf[INET6_ADDRSTRLEN + 16];
	struct epoll_event ev, evs[64];
	sigset_t mask;
	struct json j;
	int lfd, sfd, ep;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	lfd = tcp_listen(&O.addr, 4096);
	if (sfd < 0 || lfd < 0)
		die("listen %s: %s", addr_str(&O.addr, abuf, sizeof(abuf)), strerror(errno));
	set_nonblock(lfd, 1);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL; /* NULL = listener, &sfd = signals */
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	ev.data.ptr = &sfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

	json_begin(&j);
	json_str(&j, "listening", addr_str(&O.addr, abuf, sizeof(abuf)));
	json_end_print(&j);

	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &sfd)
				return 0;
			if (!p) {
				for (;;) {
					int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
					if (fd < 0)
						break;
					struct econn *c = malloc(sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					c->fd = fd;
					c->len = c->off = 0;
					c->eof = 0;
					set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
						close(fd);
						free(c);
					}
				}
				continue;
			}
			if (econn_step(ep, p) < 0)
				econn_close(ep, p);
		}
	}
}

/* ---- rtt -------------------------------------------------------------- */

static int run_rtt(void)
{
	char abuf[INET6_ADDRSTRLEN + 16], err[256] = "";
	struct timeval tv = { .tv_sec = O.timeout_ms / 1000, .tv_usec = (O.timeout_ms % 1000) * 1000 };
	uint64_t *lat = calloc((size_t)O.count, sizeof(*lat));
	char *sbuf = malloc(O.size), *rbuf = malloc(O.size);
	long done = 0, warm = O.warmup >= 0 ? O.warmup : (O.count / 10 < 1000 ? O.count / 10 : 1000);
	uint64_t sum = 0;
	int fd;

	if (!lat || !sbuf || !rbuf)
		die("out of memory");
	memset(sbuf, 'p', O.size);
	fd = tcp_connect(&O.addr, O.timeout_ms, 0);
	if (fd < 0)
		die("connect %s: %s", addr_str(&O.addr, abuf, sizeof(abuf)), strerror(errno));
	set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (long i = -warm; i < O.count; i++) {
		uint64_t t0 = now_ns();
		if (send_all(fd, sbuf, O.size) < 0) {
			snprintf(err, sizeof(err), "send: %s", strerror(errno));
			break;
		}
		ssize_t r = recv_all(fd, rbuf, O.size);
		if (r != (ssize_t)O.size) {
			snprintf(err, sizeof(err), "recv: %s", r < 0 ? strerror(errno) : "connection closed");
			break;
		}
		uint64_t t1 = now_ns();
		if (i >= 0) {
			lat[done++] = t1 - t0;
			sum += t1 - t0;
		}
	}
	close(fd);
	return rtt_report(lat, done, sum, (long long)O.size, warm, O.cpu, err);
}

/* ---- connrate --------------------------------------------------------- */

static void *crate_main(void *arg)
{
	struct crate *c = arg;
	struct timeval tv = { .tv_sec = O.timeout_ms / 1000, .tv_usec = (O.timeout_ms % 1000) * 1000 };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char b = 'c';

	if (O.cpu >= 0)
		pin_cpu(O.cpu);
	while (now_ns() < c->deadline_ns) {
		const char *what = "connect";
		int fd = tcp_connect(&O.addr, O.timeout_ms, 0);
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
			what = "send";
			if (send(fd, &b, 1, MSG_NOSIGNAL) == 1) {
				what = "recv";
				ssize_t r = recv(fd, &b, 1, 0);
				if (r == 1)
					what = NULL;
				else if (r == 0)
					errno = ECONNRESET;
			}
			if (O.rst)
				setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			int e = errno;
			close(fd);
			errno = e;
		}
		if (!what) {
			c->ok++;
		} else {
			if (!c->errors)
				snprintf(c->first_err, sizeof(c->first_err), "%s: %s", what, strerror(errno));
			c->errors++;
			sleep_ms(1); /* do not spin on a persistent failure */
		}
	}
	return NULL;
}

static int run_connrate(void)
{
	return connrate_run(O.parallel, O.duration_ms, crate_main);
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv)
{
	const char *mode;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		die("usage: skfp-pingpong server|rtt|connrate [options]");
	mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--listen") || !strcmp(a, "--connect")) {
			parse_addrport(a, opt_value(argc, argv, &i), &O.addr);
			O.have_addr = 1;
		} else if (!strcmp(a, "--cpu")) {
			O.cpu = (int)parse_long(a, opt_value(argc, argv, &i), 0, CPU_SETSIZE - 1);
		} else if (!strcmp(a, "--count")) {
			O.count = parse_long(a, opt_value(argc, argv, &i), 1, 100000000);
		} else if (!strcmp(a, "--warmup")) {
			O.warmup = parse_long(a, opt_value(argc, argv, &i), 0, 100000000);
		} else if (!strcmp(a, "--size")) {
			O.size = (size_t)parse_size(a, opt_value(argc, argv, &i));
			if (O.size < 1 || O.size > (64u << 20))
				die("--size must be in [1, 64M]");
		} else if (!strcmp(a, "--duration-ms")) {
			O.duration_ms = parse_long(a, opt_value(argc, argv, &i), 1, 3600000);
		} else if (!strcmp(a, "--parallel")) {
			O.parallel = (int)parse_long(a, opt_value(argc, argv, &i), 1, 1024);
		} else if (!strcmp(a, "--timeout-ms")) {
			O.timeout_ms = (int)parse_long(a, opt_value(argc, argv, &i), 1, 3600000);
		} else if (!strcmp(a, "--rst")) {
			O.rst = 1;
		} else {
			die("unknown option: %s", a);
		}
	}
	if (strcmp(mode, "server") && strcmp(mode, "rtt") && strcmp(mode, "connrate"))
		die("unknown mode: %s (server, rtt, connrate)", mode);
	if (!O.have_addr)
		die("%s needs %s ADDR:PORT", mode, !strcmp(mode, "server") ? "--listen" : "--connect");
	if (O.cpu >= 0 && pin_cpu(O.cpu) < 0)
		die("sched_setaffinity(cpu %d): %s", O.cpu, strerror(errno));
	if (!strcmp(mode, "server"))
		return run_server();
	if (!strcmp(mode, "rtt"))
		return run_rtt();
	return run_connrate();
}
