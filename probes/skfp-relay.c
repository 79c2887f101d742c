/* SPDX-License-Identifier: MIT */
/* skfp-relay: a minimal transparent-proxy relay for tests and benchmarks.
 * Listens with IP_TRANSPARENT / IPV6_TRANSPARENT, takes each accepted
 * connection's original destination from getsockname() (what tc + sk_assign
 * or TPROXY delivered), connects upstream to it with SO_MARK (so the
 * interception lets that connection pass) and copies both ways with
 * read()/send() — never splice() — in one poll loop per connection (one
 * thread each). Half-close is forwarded as shutdown(SHUT_WR), a reset as a
 * reset (SO_LINGER 0 close).
 *
 * usage: skfp-relay --listen ADDR:PORT [--listen ADDR:PORT ...] [--mark N]
 *                   [--connect-timeout-ms MS] [--buffer BYTES]
 * stdout: one line {"listening":["127.0.0.1:7070","[::1]:7070"]} once every
 * listener is up. Runs until SIGTERM/SIGINT, then prints a summary line on
 * stderr and exits 0. Set-up failures: {"error":"..."} on stdout, exit 2. */
#include "common.h"
#include <sys/signalfd.h>

#define MAX_LISTEN 16

static struct addr listen_addrs[MAX_LISTEN];
static int n_listen;
static int g_mark;
static int g_connect_timeout_ms = 5000;
static size_t g_bufsize = 65536;

static volatile long st_accepted, st_active, st_upstream_failed, st_loops_refused, st_resets;
static volatile unsigned long long st_bytes_up, st_bytes_down;

static void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_err(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "skfp-relay: %s\n", msg);
}

/* Whether dst is one of our own listening addresses: a connection made
 * straight to the relay (not intercepted) would otherwise loop into itself. */
static int is_own_listener(const struct addr *dst)
{
	for (int i = 0; i < n_listen; i++) {
		struct addr l = listen_addrs[i];
		if (addr_port(&l) != addr_port(dst))
			continue;
		addr_unmap_v4(&l);
		if (addr_family(&l) != addr_family(dst)) {
			if (addr_is_v6_any(&listen_addrs[i]))
				return 1; /* [::] dual stack owns v4 too */
			continue;
		}
		if (addr_family(&l) == AF_INET) {
			struct in_addr a = ((struct sockaddr_in *)&l.ss)->sin_addr;
			if (a.s_addr == INADDR_ANY ||
			    a.s_addr == ((const struct sockaddr_in *)&dst->ss)->sin_addr.s_addr)
				return 1;
		} else {
			const struct in6_addr *a = &((struct sockaddr_in6 *)&l.ss)->sin6_addr;
			if (IN6_IS_ADDR_UNSPECIFIED(a) ||
			    !memcmp(a, &((const struct sockaddr_in6 *)&dst->ss)->sin6_addr, sizeof(*a)))
				return 1;
		}
	}
	return 0;
}

/* One direction of a connection. */
struct half {
	int from, to;
	char *buf;
	size_t len, off;
	int rd_eof, wr_shut;
	volatile unsigned long long *bytes;
};

struct conn {
	int cfd;
	struct addr dst;
};

/* Closes both ends; with a reset, the other end gets one too. */
static void conn_abort(int a, int b)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	__sync_fetch_and_add(&st_resets, 1);
}

/* Moves what can be moved now. 0 = fine, -1 = error (reset both). */
static int half_step(struct half *h, short from_rev)
{
	if (h->len == 0 && !h->rd_eof && (from_rev & (POLLIN | POLLHUP | POLLERR))) {
		ssize_t n = read(h->from, h->buf, g_bufsize);
		if (n > 0) {
			h->len = (size_t)n;
			h->off = 0;
		} else if (n == 0) {
			h->rd_eof = 1;
		} else if (errno != EAGAIN && errno != EINTR) {
			return -1;
		}
	}
	while (h->len) {
		ssize_t n = send(h->to, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		__sync_fetch_and_add(h->bytes, (unsigned long long)n);
		h->off += (size_t)n;
		if (h->off == h->len)
			h->len = 0;
	}
	if (h->rd_eof && !h->len && !h->wr_shut) {
		shutdown(h->to, SHUT_WR); /* forward the half-close */
		h->wr_shut = 1;
	}
	return 0;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	char dbuf[INET6_ADDRSTRLEN + 16];
	struct half h[2];
	int ufd;

	ufd = tcp_connect(&c->dst, g_connect_timeout_ms, g_mark);
	if (ufd < 0) {
		log_err("upstream %s: %s", addr_str(&c->dst, dbuf, sizeof(dbuf)), strerror(errno));
		__sync_fetch_and_add(&st_upstream_failed, 1);
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->cfd);
		goto out;
	}
	set_int_opt(c->cfd, IPPROTO_TCP, TCP_NODELAY, 1);
	set_int_opt(ufd, IPPROTO_TCP, TCP_NODELAY, 1);
	set_nonblock(c->cfd, 1);
	set_nonblock(ufd, 1);
	memset(h, 0, sizeof(h));
	h[0].from = c->cfd; h[0].to = ufd; h[0].bytes = &st_bytes_up;
	h[1].from = ufd; h[1].to = c->cfd; h[1].bytes = &st_bytes_down;
	h[0].buf = malloc(g_bufsize);
	h[1].buf = malloc(g_bufsize);
	if (!h[0].buf || !h[1].buf) {
		conn_abort(c->cfd, ufd);
		goto done;
	}
	while (!(h[0].wr_shut && h[1].wr_shut)) {
		struct pollfd p[2];
		/* p[0] = client, p[1] = upstream; half i reads p[i], writes p[1-i] */
		for (int i = 0; i < 2; i++) {
			short ev = 0;
			if (!h[i].rd_eof && h[i].len == 0)
				ev |= POLLIN;
			if (h[1 - i].len)
				ev |= POLLOUT;
			p[i].fd = ev ? h[i].from : -1;
			p[i].events = ev;
			p[i].revents = 0;
		}
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			conn_abort(c->cfd, ufd);
			break;
		}
		if ((p[0].revents & POLLERR) || (p[1].revents & POLLERR)) {
			/* a reset or an error on one side: drain what we can, then reset */
			half_step(&h[0], p[0].revents);
			half_step(&h[1], p[1].revents);
			conn_abort(c->cfd, ufd);
			break;
		}
		if (half_step(&h[0], p[0].revents) < 0 || half_step(&h[1], p[1].revents) < 0) {
			conn_abort(c->cfd, ufd);
			break;
		}
	}
done:
	free(h[0].buf);
	free(h[1].buf);
	close(ufd);
	close(c->cfd);
out:
	__sync_fetch_and_sub(&st_active, 1);
	free(c);
	return NULL;
}

static int open_listener(struct addr *a)
{
	int fd = socket(addr_family(a), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int v6only = 1;

	if (fd < 0)
		return -1;
	set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (addr_family(a) == AF_INET) {
		if (set_int_opt(fd, SOL_IP, IP_TRANSPARENT, 1) < 0)
			goto fail;
	} else {
		if (set_int_opt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1) < 0)
			goto fail;
		if (addr_is_v6_any(a)) {
			/* [::] is dual stack unless a v4 listener takes the port */
			v6only = 0;
			for (int i = 0; i < n_listen; i++)
				if (addr_family(&listen_addrs[i]) == AF_INET &&
				    addr_port(&listen_addrs[i]) == addr_port(a))
					v6only = 1;
		}
		if (set_int_opt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only) < 0)
			goto fail;
	}
	if (bind(fd, (struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 1024) < 0)
		goto fail;
	a->len = sizeof(a->ss);
	getsockname(fd, (struct sockaddr *)&a->ss, &a->len);
	return fd;
fail:
	{
		int e = errno;
		close(fd);
		errno = e;
	}
	return -1;
}

static void accept_one(int lfd)
{
	pthread_attr_t attr;
	pthread_t th;
	struct conn *c;
	char dbuf[INET6_ADDRSTRLEN + 16];

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_err("accept: %s", strerror(errno));
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->cfd = fd;
		c->dst.len = sizeof(c->dst.ss);
		/* tproxy: the local address of the accepted socket is the client's
		 * original destination */
		getsockname(fd, (struct sockaddr *)&c->dst.ss, &c->dst.len);
		addr_unmap_v4(&c->dst);
		__sync_fetch_and_add(&st_accepted, 1);
		if (is_own_listener(&c->dst)) {
			log_err("refusing a connection addressed to the relay itself (%s): not intercepted",
				addr_str(&c->dst, dbuf, sizeof(dbuf)));
			__sync_fetch_and_add(&st_loops_refused, 1);
			close(fd);
			free(c);
			continue;
		}
		__sync_fetch_and_add(&st_active, 1);
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 256 * 1024);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, conn_main, c)) {
			log_err("pthread_create: %s", strerror(errno));
			__sync_fetch_and_sub(&st_active, 1);
			close(fd);
			free(c);
		}
		pthread_attr_destroy(&attr);
	}
}

int main(int argc, char **argv)
{
	struct pollfd pfd[MAX_LISTEN + 1];
	sigset_t mask;
	char abuf[INET6_ADDRSTRLEN + 16];
	struct json j;
	int sfd;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--listen")) {
			if (n_listen == MAX_LISTEN)
				die("at most %d --listen", MAX_LISTEN);
			parse_addrport(a, opt_value(argc, argv, &i), &listen_addrs[n_listen++]);
		} else if (!strcmp(a, "--mark")) {
			const char *v = opt_value(argc, argv, &i);
			char *end;
			errno = 0;
			unsigned long m = strtoul(v, &end, 0);
			if (errno || end == v || *end || m > 0xffffffffu)
				die("--mark: expected a 32-bit number: %s", v);
			g_mark = (int)(unsigned)m;
		} else if (!strcmp(a, "--connect-timeout-ms")) {
			g_connect_timeout_ms = (int)parse_long(a, opt_value(argc, argv, &i), 1, 600000);
		} else if (!strcmp(a, "--buffer")) {
			g_bufsize = (size_t)parse_size(a, opt_value(argc, argv, &i));
			if (g_bufsize < 1024 || g_bufsize > (16u << 20))
				die("--buffer must be in [1K, 16M]");
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs("usage: skfp-relay --listen ADDR:PORT [--listen ...] [--mark N] "
			      "[--connect-timeout-ms MS] [--buffer BYTES]\n", stderr);
			return 0;
		} else {
			die("unknown option: %s", a);
		}
	}
	if (!n_listen)
		die("usage: skfp-relay --listen ADDR:PORT [--listen ...] [--mark N]");

	/* SIGTERM/SIGINT arrive on a signalfd; every thread has them blocked */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));

	json_begin(&j);
	json_key(&j, "listening");
	json_raw(&j, "[");
	for (int i = 0; i < n_listen; i++) {
		int fd = open_listener(&listen_addrs[i]);
		if (fd < 0)
			die("listen %s: %s", addr_str(&listen_addrs[i], abuf, sizeof(abuf)), strerror(errno));
		pfd[i].fd = fd;
		pfd[i].events = POLLIN;
		if (i)
			json_raw(&j, ",");
		json_quote(&j, addr_str(&listen_addrs[i], abuf, sizeof(abuf)));
	}
	json_raw(&j, "]");
	json_end_print(&j);
	pfd[n_listen].fd = sfd;
	pfd[n_listen].events = POLLIN;

	for (;;) {
		if (poll(pfd, (nfds_t)n_listen + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pfd[n_listen].revents)
			break;
		for (int i = 0; i < n_listen; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(pfd[i].fd);
	}
	fprintf(stderr,
		"{\"stopped\":true,\"accepted\":%ld,\"active\":%ld,\"upstreamFailed\":%ld,\"refusedLoops\":%ld,"
		"\"resets\":%ld,\"bytesUp\":%llu,\"bytesDown\":%llu}\n",
		st_accepted, st_active, st_upstream_failed, st_loops_refused, st_resets,
		st_bytes_up, st_bytes_down);
	fflush(stderr);
	_exit(0); /* connection threads go with the process */
}
