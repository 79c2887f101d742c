// SPDX-License-Identifier: MIT
/* skfp-hold: opens many loopback TCP connections to its own listener, holds
 * them all open at once, moves a small verifiable payload on each, and closes
 * them. Both ends of a connection live in one process of this program, so both
 * are in the caller's cgroup and netns: N connections put 2N sockets into the
 * fastpath's sockhash.
 *
 *   skfp-hold --addr IP [--port P (0)] --count N [--size B (64)]
 *             [--hold-ms M (0)] [--timeout-ms MS (10000)] [--procs K]
 *
 * Round 1 runs right after every connection is open: every client sends B
 * bytes, then every server end reads and checks them and answers with B bytes
 * of its own, then every client reads and checks the answer. Then it prints
 * {"open":N,...} and holds everything open for M ms (SIGUSR1, SIGTERM or
 * SIGINT end the hold early), runs round 2 the same way, closes every socket
 * and prints {"connections":N,"errors":E,...}. Exit 0 when it ran (errors are
 * in the JSON), 2 on a set-up failure.
 *
 * 2N file descriptors may be more than RLIMIT_NOFILE allows, and without
 * CAP_SYS_RESOURCE (containers) the hard limit cannot be raised: the
 * connections are then split over K worker processes (default: as few as the
 * hard limit allows), each with its own listener; the figures are summed. */
#include "common.h"

#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

static struct {
	struct addr addr;
	int have_addr;
	long count;
	size_t size;
	long hold_ms;
	int timeout_ms;
	long procs;
} O = { .size = 64, .timeout_ms = 10000 };

/* What a worker reports to the parent after each phase (through a pipe). */
struct report {
	long open, sockets, errors, open_ms, exchange_ms;
	char first_err[256];
};

static long errors;
static char first_err[256];

static void fail(long conn, const char *what, int err)
{
	if (!errors++)
		snprintf(first_err, sizeof(first_err), "connection %ld: %s: %s", conn, what, err ? strerror(err) : "bad data");
}

static int local_port(int fd)
{
	struct addr a = { .len = sizeof(a.ss) };
	if (getsockname(fd, (struct sockaddr *)&a.ss, &a.len) < 0)
		return -1;
	return (int)addr_port(&a);
}

static int peer_port(int fd)
{
	struct addr a = { .len = sizeof(a.ss) };
	if (getpeername(fd, (struct sockaddr *)&a.ss, &a.len) < 0)
		return -1;
	return (int)addr_port(&a);
}

/* Accepts what is queued (wait_ms 0: only what is there now) and pairs each
 * accepted socket with its client through the client's port. */
static long accept_pending(int lfd, const int *port_to_conn, int *server, int wait_ms)
{
	long n = 0;
	for (;;) {
		int fd = wait_ms ? tcp_accept(lfd, wait_ms) : accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			return n;
		int p = peer_port(fd);
		int i = p >= 0 ? port_to_conn[p] : -1;
		if (i < 0 || server[i] >= 0) {
			close(fd);
			fail(i, "accepted a connection of no known client", 0);
			continue;
		}
		server[i] = fd;
		n++;
		if (wait_ms)
			return n;
	}
}

/* Every writer sends B bytes of its stream, then every reader reads and checks them. */
static void one_way(const int *from, const int *to, long n, long base, uint64_t seed0, long round, const char *dir)
{
	unsigned char *buf = malloc(O.size);
	char what[64];

	if (!buf) {
		fail(base, "malloc", ENOMEM);
		return;
	}
	for (long i = 0; i < n; i++) {
		if (from[i] < 0 || to[i] < 0)
			continue;
		pattern_fill(seed0 + (uint64_t)(base + i) * 4 + (uint64_t)round, 0, buf, O.size);
		if (send_all(from[i], buf, O.size) < 0) {
			snprintf(what, sizeof(what), "round %ld %s send", round, dir);
			fail(base + i, what, errno);
		}
	}
	for (long i = 0; i < n; i++) {
		if (from[i] < 0 || to[i] < 0)
			continue;
		ssize_t r = recv_all(to[i], buf, O.size);
		snprintf(what, sizeof(what), "round %ld %s recv", round, dir);
		if (r != (ssize_t)O.size)
			fail(base + i, what, r < 0 ? errno : ECONNRESET);
		else if (pattern_check(seed0 + (uint64_t)(base + i) * 4 + (uint64_t)round, 0, buf, O.size) >= 0)
			fail(base + i, what, 0);
	}
	free(buf);
}

static void exchange(const int *client, const int *server, long n, long base, long round)
{
	one_way(client, server, n, base, 0x5eed0000, round, "client->server");
	one_way(server, client, n, base, 0x5eed8000, round, "server->client");
}

static void send_report(int fd, long open, long sockets, uint64_t open_ms, uint64_t exchange_ms)
{
	struct report r = { .open = open, .sockets = sockets, .errors = errors, .open_ms = (long)open_ms, .exchange_ms = (long)exchange_ms };
	memcpy(r.first_err, first_err, sizeof(r.first_err));
	if (write(fd, &r, sizeof(r)) != sizeof(r))
		_exit(70);
}

/* A worker that could not set up still reports twice, so the parent never waits for it. */
static int worker_failed(long base, const char *what, int err, int report_fd, int go_fd)
{
	char c;
	fail(base, what, err);
	send_report(report_fd, 0, 0, 0, 0);
	while (read(go_fd, &c, 1) != 0 && errno == EINTR)
		;
	send_report(report_fd, 0, 0, 0, 0);
	return 1;
}

/* One worker: connections base .. base+n-1. Reports after round 1, waits for
 * EOF on go_fd (the end of the hold), runs round 2, closes, reports again. */
static int worker(long base, long n, int report_fd, int go_fd)
{
	char abuf[INET6_ADDRSTRLEN + 16], c;
	struct addr addr = O.addr;
	struct timeval tv = { .tv_sec = O.timeout_ms / 1000, .tv_usec = (O.timeout_ms % 1000) * 1000 };
	struct rlimit rl;
	int lfd;

	/* 2n sockets, the listener and a few more */
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)(2 * n + 32)) {
		rl.rlim_cur = (rlim_t)(2 * n + 32);
		if (rl.rlim_max < rl.rlim_cur)
			rl.rlim_max = rl.rlim_cur;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return worker_failed(base, "setrlimit(RLIMIT_NOFILE)", errno, report_fd, go_fd);
	}
	lfd = tcp_listen(&addr, 4096);
	if (lfd < 0)
		return worker_failed(base, addr_str(&addr, abuf, sizeof(abuf)), errno, report_fd, go_fd);
	set_nonblock(lfd, 1);

	int *client = malloc((size_t)n * sizeof(int)), *server = malloc((size_t)n * sizeof(int));
	int *port_to_conn = malloc(65536 * sizeof(int));
	if (!client || !server || !port_to_conn)
		return worker_failed(base, "malloc", ENOMEM, report_fd, go_fd);
	for (int p = 0; p < 65536; p++)
		port_to_conn[p] = -1;

	uint64_t t0 = now_ms();
	long accepted = 0, connected = 0;
	for (long i = 0; i < n; i++) {
		server[i] = -1;
		client[i] = tcp_connect(&addr, O.timeout_ms, 0);
		if (client[i] < 0) {
			fail(base + i, "connect", errno);
			continue;
		}
		connected++;
		setsockopt(client[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		int p = local_port(client[i]);
		if (p >= 0)
			port_to_conn[p] = (int)i;
		accepted += accept_pending(lfd, port_to_conn, server, 0);
	}
	while (accepted < connected) {
		long got = accept_pending(lfd, port_to_conn, server, O.timeout_ms);
		if (!got)
			break;
		accepted += got;
	}
	for (long i = 0; i < n; i++) {
		if (client[i] >= 0 && server[i] < 0)
			fail(base + i, "accept", ETIMEDOUT);
		if (server[i] >= 0)
			setsockopt(server[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	uint64_t t1 = now_ms();
	exchange(client, server, n, base, 1);
	send_report(report_fd, accepted, connected + accepted, t1 - t0, now_ms() - t1);

	while (read(go_fd, &c, 1) != 0 && errno == EINTR)
		;
	exchange(client, server, n, base, 2);
	for (long i = 0; i < n; i++) {
		if (client[i] >= 0)
			close(client[i]);
		if (server[i] >= 0)
			close(server[i]);
	}
	close(lfd);
	send_report(report_fd, accepted, 0, 0, 0);
	return 0;
}

/* Reads one report from every worker and sums them; 0 when a worker died. */
static int collect(int fd, long procs, struct report *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (long k = 0; k < procs; k++) {
		struct report r;
		ssize_t got = 0;
		while (got < (ssize_t)sizeof(r)) {
			ssize_t n = read(fd, (char *)&r + got, sizeof(r) - (size_t)got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 0;
			got += n;
		}
		sum->open += r.open;
		sum->sockets += r.sockets;
		sum->errors += r.errors;
		if (r.open_ms > sum->open_ms)
			sum->open_ms = r.open_ms;
		if (r.exchange_ms > sum->exchange_ms)
			sum->exchange_ms = r.exchange_ms;
		if (!sum->first_err[0])
			memcpy(sum->first_err, r.first_err, sizeof(r.first_err));
	}
	return 1;
}

/* Waits hold_ms, or less when SIGUSR1/SIGTERM/SIGINT comes. */
static void hold(int sfd)
{
	struct pollfd p = { .fd = sfd, .events = POLLIN };
	uint64_t deadline = now_ms() + (uint64_t)O.hold_ms;
	while (now_ms() < deadline) {
		int r = poll(&p, 1, (int)(deadline - now_ms()));
		if (r > 0 || (r < 0 && errno != EINTR))
			return;
	}
}

int main(int argc, char **argv)
{
	char abuf[INET6_ADDRSTRLEN + 16];
	int report[2], go[2], sfd;
	struct report sum;
	struct rlimit rl;
	sigset_t mask;
	struct json j;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--addr")) {
			const char *ip = opt_value(argc, argv, &i);
			if (addr_from_ip(&O.addr, ip, addr_port(&O.addr)))
				die("--addr: not an IP address: %s", ip);
			O.have_addr = 1;
		} else if (!strcmp(a, "--port")) {
			long port = parse_long(a, opt_value(argc, argv, &i), 0, 65535);
			if (!O.have_addr)
				die("--port comes after --addr");
			addr_set_port(&O.addr, (unsigned)port);
		} else if (!strcmp(a, "--count")) {
			O.count = parse_long(a, opt_value(argc, argv, &i), 1, 30000);
		} else if (!strcmp(a, "--size")) {
			O.size = (size_t)parse_long(a, opt_value(argc, argv, &i), 1, 65536);
		} else if (!strcmp(a, "--hold-ms")) {
			O.hold_ms = parse_long(a, opt_value(argc, argv, &i), 0, 3600000);
		} else if (!strcmp(a, "--timeout-ms")) {
			O.timeout_ms = (int)parse_long(a, opt_value(argc, argv, &i), 1, 3600000);
		} else if (!strcmp(a, "--procs")) {
			O.procs = parse_long(a, opt_value(argc, argv, &i), 1, 64);
		} else {
			die("unknown option: %s", a);
		}
	}
	if (!O.have_addr || !O.count)
		die("usage: skfp-hold --addr IP [--port P] --count N [--size B] [--hold-ms M] [--timeout-ms MS] [--procs K]");
	if (O.procs > O.count)
		O.procs = O.count;
	if (!O.procs) {
		long per_proc;
		getrlimit(RLIMIT_NOFILE, &rl);
		per_proc = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 1000000 ? O.count : ((long)rl.rlim_max - 32) / 2;
		if (per_proc < 1)
			die("RLIMIT_NOFILE hard limit %lu is too low", (unsigned long)rl.rlim_max);
		O.procs = (O.count + per_proc - 1) / per_proc;
	}
	/* a last resort if something blocks where no timeout reaches */
	alarm((unsigned)((O.hold_ms + 4L * O.timeout_ms) / 1000 + 60));

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0 || pipe(report) < 0 || pipe(go) < 0)
		die("signalfd/pipe: %s", strerror(errno));

	uint64_t t0 = now_ms();
	for (long k = 0, base = 0; k < O.procs; k++) {
		long n = O.count / O.procs + (k < O.count % O.procs);
		pid_t pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (!pid) {
			close(report[0]);
			close(go[1]);
			close(sfd);
			_exit(worker(base, n, report[1], go[0]));
		}
		base += n;
	}
	close(report[1]);
	close(go[0]);

	int alive = collect(report[0], O.procs, &sum);
	json_begin(&j);
	json_int(&j, "open", sum.open);
	json_int(&j, "sockets", sum.sockets);
	json_str(&j, "addr", addr_str(&O.addr, abuf, sizeof(abuf)));
	json_int(&j, "procs", O.procs);
	json_int(&j, "openMs", sum.open_ms);
	json_int(&j, "exchangeMs", sum.exchange_ms);
	json_int(&j, "errors", sum.errors + !alive);
	json_end_print(&j);

	if (alive)
		hold(sfd);
	close(go[1]); /* the end of the hold: every worker runs round 2 and closes */
	if (alive)
		alive = collect(report[0], O.procs, &sum);
	long failed_workers = 0;
	for (long k = 0; k < O.procs; k++) {
		int st;
		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			failed_workers++;
	}
	json_begin(&j);
	json_int(&j, "connections", alive ? sum.open : 0);
	json_int(&j, "errors", sum.errors + failed_workers + !alive);
	json_int(&j, "bytes", alive ? sum.open * 4 * (long long)O.size : 0);
	json_int(&j, "procs", O.procs);
	json_int(&j, "elapsedMs", (long long)(now_ms() - t0));
	if (sum.first_err[0])
		json_str(&j, "firstError", sum.first_err);
	else if (failed_workers || !alive)
		json_str(&j, "firstError", "a worker process failed");
	json_end_print(&j);
	return 0;
}
