/* SPDX-License-Identifier: MIT */
/* skfp-probe: kernel self-tests of the socket fastpath. Each probe makes both
 * ends of a loopback TCP connection itself (threads of this process, so both
 * sockets live in the caller's cgroup and netns), moves data, checks it and
 * prints one JSON line:
 *   {"probe":NAME,"ok":true|false,"detail":"...", ...figures}
 * Exit 0 whenever the probe ran (ok true or false); exit 2 with
 * {"error":"..."} on bad usage or a set-up failure; exit 3 if the last-resort
 * alarm fired. Every wait is bounded: a watchdog shuts the sockets down at
 * the deadline (--timeout-ms), alarm() backs it up.
 * See docs/probes.md for usage and output. */
#include "common.h"
#include <sys/ioctl.h>
#include "probe/transfer.h"
#include "probe/watchdog.h"

#define PIPE_CHUNK 65536

static const char usage[] =
	"usage: skfp-probe PROBE [--bytes N] [--addr 127.0.0.1|::1] [--port P] [--timeout-ms MS]\n"
	"                        [--messages K] [--burst N] [--pause-ms MS]\n"
	"                        [--max-tcp-mem-mib M] [--brake-tcp-mem-mib M] [--nonblock]\n"
	"probes: splice late-splice late-blocking waitall blocking-recv slow-reader fionread halfclose port-reuse dualstack\n"
	"        integrity\n"
	"--nonblock: O_NONBLOCK sockets, polled (late-splice and late-blocking always)\n";

struct opts {
	const char *probe;
	uint64_t bytes;
	struct addr addr;
	int timeout_ms;
	int messages;
	uint64_t burst;     /* slow readers: bytes per burst */
	int pause_ms;       /* slow readers: pause after each burst */
	uint64_t max_mem;   /* slow-reader: fail above this TCP memory growth (bytes) */
	uint64_t brake_mem; /* slow-reader: stop writing above this TCP memory growth */
};

static struct opts O;

/* ---- results ----------------------------------------------------------------- */

static void result_begin(struct json *j, int ok, const char *detail)
{
	json_begin(j);
	json_str(j, "probe", O.probe);
	json_bool(j, "ok", ok);
	json_str(j, "detail", detail);
}

static void result_end(struct json *j)
{
	if (g_expired)
		json_bool(j, "timedOut", 1);
	json_end_print(j);
}

/* ---- probes ------------------------------------------------------------------ */

/* integrity, dualstack, blocking-recv, slow-reader: bulk both ways. */
static void probe_bulk(int dual, int slow, int sample_brake)
{
	struct pair p;
	struct dir c2s = { 0 }, s2c = { 0 };
	struct sampler smp = { 0 };
	struct addr listen_at = O.addr, connect_to = O.addr;
	char detail[1024] = "";
	int ok, mapped = 0;
	uint64_t t0, t1;

	if (dual) {
		if (addr_family(&O.addr) != AF_INET)
			die("dualstack: --addr must be an IPv4 address (the client side)");
		addr_from_ip(&listen_at, "::", addr_port(&O.addr));
	}
	make_pair(&p, &listen_at, &connect_to);
	if (dual) {
		struct addr la = { .len = sizeof(la.ss) };
		getsockname(p.srv, (struct sockaddr *)&la.ss, &la.len);
		mapped = addr_family(&la) == AF_INET6 &&
			 IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&la.ss)->sin6_addr);
	}
	c2s.bytes = s2c.bytes = O.bytes;
	c2s.chunk = s2c.chunk = slow ? 256 * 1024 : 128 * 1024;
	if (slow) {
		c2s.burst = s2c.burst = O.burst;
		c2s.pause_ms = s2c.pause_ms = O.pause_ms;
	}
	g_page = sysconf(_SC_PAGESIZE);
	smp.base = smp.peak = tcp_mem_pages();
	if (sample_brake) {
		smp.brake_bytes = O.brake_mem;
		c2s.smp = s2c.smp = &smp;
	}
	pthread_create(&smp.th, NULL, sampler_main, &smp);

	t0 = now_ns();
	run_bidir(&p, &c2s, &s2c);
	t1 = now_ns();
	smp.stop = 1;
	pthread_join(smp.th, NULL);
	watchdog_stop();

	uint64_t grown = smp.peak > smp.base ? (uint64_t)(smp.peak - smp.base) * (uint64_t)g_page : 0;
	int write_err = c2s.write_errno || s2c.write_errno;
	uint64_t eagain = c2s.eagain + s2c.eagain;
	ok = dir_intact(&c2s) && dir_intact(&s2c) && !write_err && !g_expired;
	dir_describe(detail, sizeof(detail), "client->server", &c2s);
	dir_describe(detail, sizeof(detail), "server->client", &s2c);
	if (!strcmp(O.probe, "blocking-recv")) {
		if (eagain) {
			size_t n = strlen(detail);
			snprintf(detail + n, sizeof(detail) - n,
				 "blocking recv() returned -1/EAGAIN %" PRIu64 " times; ", eagain);
			ok = 0;
		}
	}
	if (!strcmp(O.probe, "slow-reader")) {
		size_t n = strlen(detail);
		if (smp.braked) {
			snprintf(detail + n, sizeof(detail) - n,
				 "TCP memory grew past the brake (%" PRIu64 " MiB): writers were paused, no backpressure; ",
				 O.brake_mem >> 20);
			ok = 0;
		} else if (grown > O.max_mem) {
			snprintf(detail + n, sizeof(detail) - n,
				 "TCP memory grew by %" PRIu64 " MiB (limit %" PRIu64 " MiB); ",
				 grown >> 20, O.max_mem >> 20);
			ok = 0;
		}
	}
	if (dual && !mapped) {
		size_t n = strlen(detail);
		snprintf(detail + n, sizeof(detail) - n, "the server end is not v4-mapped; ");
	}
	if (g_expired) {
		size_t n = strlen(detail);
		snprintf(detail + n, sizeof(detail) - n, "timed out after %d ms; ", O.timeout_ms);
	}
	if (ok)
		snprintf(detail, sizeof(detail), "%" PRIu64 " bytes each way intact", O.bytes);
	else if (strlen(detail) >= 2)
		detail[strlen(detail) - 2] = 0;

	double secs = (double)(t1 - t0) / 1e9;
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "bytes", (long long)O.bytes);
	dir_json(&j, "c2s", &c2s);
	dir_json(&j, "s2c", &s2c);
	json_int(&j, "elapsedMs", (long long)((t1 - t0) / 1000000));
	json_dbl(&j, "MBps", secs > 0 ? (double)(c2s.received + s2c.received) / secs / 1e6 : 0);
	if (!strcmp(O.probe, "blocking-recv"))
		json_int(&j, "eagain", (long long)eagain);
	if (dual)
		json_bool(&j, "serverV4Mapped", mapped);
	if (slow) {
		json_int(&j, "burst", (long long)O.burst);
		json_int(&j, "pauseMs", O.pause_ms);
	}
	json_int(&j, "tcpMemBasePages", smp.base);
	json_int(&j, "tcpMemPeakPages", smp.peak);
	json_int(&j, "tcpMemPeakGrowthBytes", (long long)grown);
	json_int(&j, "pageSize", g_page);
	if (sample_brake) {
		json_bool(&j, "writeErrored", write_err);
		json_bool(&j, "braked", smp.braked);
		json_int(&j, "brakeBytes", (long long)O.brake_mem);
		json_int(&j, "maxGrowthBytes", (long long)O.max_mem);
	}
	result_end(&j);
	wd_close_all();
}

/* The late-* probes: both ends read greetings with recv(), one at a time, so
 * the adaptive fastpath promotes both (the reader is what a redirect needs;
 * until 1c1362f the writer too) before the writer starts: else the writer may
 * fill the buffers over TCP before the reader is promoted, and nothing is
 * left to redirect. */
static void greet_both(struct pair *p)
{
	char hello[8];

	for (int i = 0; i < 2 * 2; i++) {
		int to = i % 2 ? p->srv : p->cli, from = i % 2 ? p->cli : p->srv;
		struct pollfd pl = { .fd = to, .events = POLLIN };
		if (send(from, "hello", 5, MSG_NOSIGNAL) != 5 || poll(&pl, 1, ms_left(g_deadline)) != 1 ||
		    recv(to, hello, sizeof(hello), MSG_DONTWAIT) != 5)
			die("%s: the greeting did not arrive", O.probe);
	}
}

/* splice: the receiver reads with splice() into a pipe (non-blocking, polled).
 * late-splice: it first reads recv_first bytes with recv() (a reader the
 * adaptive fastpath promotes), then splices the rest. */
static void probe_splice(uint64_t recv_first)
{
	struct pair p;
	struct dir c2s = { 0 };
	pthread_t wt;
	int pfd[2];
	unsigned char *buf = malloc(PIPE_CHUNK);
	uint64_t got = 0, recv_after = 0, t0;
	long long bad = -1;
	unsigned spins = 0;
	int splice_err = 0, eof = 0;
	char detail[512];

	if (!buf || pipe2(pfd, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	make_pair(&p, &O.addr, &O.addr);
	if (recv_first)
		greet_both(&p);
	c2s.wfd = p.cli; c2s.seed = 0x3333; c2s.bytes = O.bytes; c2s.chunk = 64 * 1024;
	pthread_create(&wt, NULL, dir_writer, &c2s);
	/* tcp_splice_read() blocks unless the socket itself is O_NONBLOCK
	 * (SPLICE_F_NONBLOCK only concerns the pipe) */
	set_nonblock(p.srv, 1);

	while (got < recv_first && ms_left(g_deadline)) {
		ssize_t n = recv(p.srv, buf, PIPE_CHUNK, MSG_DONTWAIT);
		if (n > 0) {
			pattern_note_bad(&bad, c2s.seed, got, buf, (size_t)n);
			got += (uint64_t)n;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			break;
		} else {
			struct pollfd pl = { .fd = p.srv, .events = POLLIN };
			poll(&pl, 1, 100);
		}
	}
	t0 = now_ms();
	/* Stop splicing a little before the deadline: the rest is for the check below. */
	uint64_t stop_at = g_deadline - (uint64_t)(O.timeout_ms / 5);
	while (got < O.bytes && ms_left(stop_at)) {
		struct pollfd pl = { .fd = p.srv, .events = POLLIN };
		int left = ms_left(stop_at);
		if (poll(&pl, 1, left < 100 ? left : 100) <= 0)
			continue;
		ssize_t n = splice(p.srv, NULL, pfd[1], NULL, PIPE_CHUNK, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n == 0) {
			eof = 1;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				spins++; /* poll said readable, splice found nothing */
				sleep_ms(1);
				continue;
			}
			splice_err = errno;
			break;
		}
		for (ssize_t r = 0; r < n;) {
			ssize_t m = read(pfd[0], buf, (size_t)(n - r));
			if (m <= 0)
				die("read from pipe: %s", m < 0 ? strerror(errno) : "EOF");
			pattern_note_bad(&bad, c2s.seed, got, buf, (size_t)m);
			got += (uint64_t)m;
			r += m;
		}
	}
	uint64_t splice_ms = now_ms() - t0;
	/* Where did the rest go? A plain recv() finds it when it sits in the
	 * socket's BPF (psock) queue. */
	if (got < O.bytes && !splice_err && !eof) {
		while (got + recv_after < O.bytes && ms_left(g_deadline)) {
			ssize_t n = recv(p.srv, buf, PIPE_CHUNK, MSG_DONTWAIT);
			if (n > 0) {
				pattern_note_bad(&bad, c2s.seed, got + recv_after, buf, (size_t)n);
				recv_after += (uint64_t)n;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				break;
			} else {
				sleep_ms(2);
			}
		}
	}
	shutdown(p.cli, SHUT_RDWR);
	shutdown(p.srv, SHUT_RDWR);
	pthread_join(wt, NULL);
	watchdog_stop();

	int ok = got == O.bytes && bad < 0;
	if (ok)
		snprintf(detail, sizeof(detail), "%s read all %" PRIu64 " bytes intact", recv_first ? "recv() then splice()" : "splice()", got);
	else if (splice_err)
		snprintf(detail, sizeof(detail), "splice() failed: %s after %" PRIu64 " bytes", strerror(splice_err), got);
	else if (eof && g_expired)
		snprintf(detail, sizeof(detail), "splice() blocked, the watchdog shut the socket down at %d ms after %" PRIu64 " of %" PRIu64 " bytes",
			 O.timeout_ms, got, O.bytes);
	else if (eof)
		snprintf(detail, sizeof(detail), "splice() saw EOF after %" PRIu64 " of %" PRIu64 " bytes", got, O.bytes);
	else if (got < O.bytes)
		snprintf(detail, sizeof(detail),
			 "splice() got %" PRIu64 " of %" PRIu64 " bytes in %" PRIu64 " ms, then nothing although poll() said readable %u times; "
			 "recv() then got %" PRIu64 " bytes: data stuck where splice() does not look",
			 got, O.bytes, splice_ms, spins, recv_after);
	else
		snprintf(detail, sizeof(detail), "data corrupt at offset %lld", bad);
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "bytes", (long long)O.bytes);
	json_int(&j, "recvFirstBytes", (long long)recv_first);
	json_int(&j, "splicedBytes", (long long)(got - (got < recv_first ? got : recv_first)));
	json_int(&j, "recvAfterBytes", (long long)recv_after);
	json_int(&j, "emptySplices", spins);
	json_int(&j, "elapsedMs", (long long)splice_ms);
	json_bool(&j, "intact", bad < 0);
	result_end(&j);
	close(pfd[0]);
	close(pfd[1]);
	free(buf);
	wd_close_all();
}

/* late-blocking: a reader promoted after its non-blocking recv()s turns its
 * socket blocking after 1 MiB (a server that hands a connection to a thread
 * once it has read the request head) and reads the rest with blocking
 * recv(): every byte intact, and never EAGAIN (a blocking recv() inside the
 * sockhash can fail so; the adaptive fastpath demotes the reader, lets it
 * read what was redirected to it, then takes it out of the sockhash). */
static void probe_late_blocking(void)
{
	const uint64_t recv_first = 1 << 20;
	struct pair p;
	struct dir c2s = { 0 };
	pthread_t wt;
	unsigned char *buf = malloc(PIPE_CHUNK);
	uint64_t got = 0, eagain = 0;
	long long bad = -1;
	int read_err = 0, eof = 0;
	char detail[512];

	if (!buf)
		die("malloc");
	g_nonblock = 1;
	make_pair(&p, &O.addr, &O.addr);
	greet_both(&p);
	c2s.wfd = p.cli; c2s.seed = 0x5555; c2s.bytes = O.bytes; c2s.chunk = 64 * 1024;
	pthread_create(&wt, NULL, dir_writer, &c2s);
	while (got < O.bytes && !g_expired) {
		int blocking = got >= recv_first;
		ssize_t n;

		if (blocking && fcntl(p.srv, F_GETFL) & O_NONBLOCK)
			set_nonblock(p.srv, 0);
		n = recv(p.srv, buf, PIPE_CHUNK, 0);
		if (n > 0) {
			pattern_note_bad(&bad, c2s.seed, got, buf, (size_t)n);
			got += (uint64_t)n;
		} else if (n == 0) {
			eof = 1;
			break;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN && !blocking) {
			struct pollfd pl = { .fd = p.srv, .events = POLLIN };
			poll(&pl, 1, 100);
		} else if (errno == EAGAIN) {
			eagain++; /* the hazard: a blocking socket must not say this */
		} else {
			read_err = errno;
			break;
		}
	}
	shutdown(p.cli, SHUT_RDWR);
	shutdown(p.srv, SHUT_RDWR);
	pthread_join(wt, NULL);
	watchdog_stop();

	int ok = got == O.bytes && bad < 0 && !eagain;
	if (ok)
		snprintf(detail, sizeof(detail), "recv() then blocking recv() read all %" PRIu64 " bytes intact", got);
	else if (eagain)
		snprintf(detail, sizeof(detail), "a blocking recv() failed with EAGAIN %" PRIu64 " times", eagain);
	else if (read_err)
		snprintf(detail, sizeof(detail), "recv() failed: %s after %" PRIu64 " bytes", strerror(read_err), got);
	else if (eof && g_expired)
		snprintf(detail, sizeof(detail), "recv() blocked, the watchdog shut the socket down at %d ms after %" PRIu64 " of %" PRIu64 " bytes",
			 O.timeout_ms, got, O.bytes);
	else if (got < O.bytes)
		snprintf(detail, sizeof(detail), "recv() got %" PRIu64 " of %" PRIu64 " bytes", got, O.bytes);
	else
		snprintf(detail, sizeof(detail), "data corrupt at offset %lld", bad);
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "bytes", (long long)O.bytes);
	json_int(&j, "recvFirstBytes", (long long)recv_first);
	json_int(&j, "eagain", (long long)eagain);
	json_bool(&j, "intact", bad < 0);
	result_end(&j);
	free(buf);
	wd_close_all();
}

/* waitall: recv(MSG_WAITALL) of N bytes sent as --messages sends; once with the
 * reader already waiting, once with all messages queued before the call. */
struct waitall_rx {
	int fd;
	uint64_t seed, off, want;
	unsigned char *buf;
	volatile int entered;
	ssize_t got;
	int err;
};

static void *waitall_reader(void *arg)
{
	struct waitall_rx *r = arg;
	r->entered = 1;
	r->got = recv(r->fd, r->buf, r->want, MSG_WAITALL);
	r->err = r->got < 0 ? errno : 0;
	return NULL;
}

static void waitall_send(int fd, uint64_t seed, uint64_t off, uint64_t total, int messages, int gap_ms)
{
	unsigned char *buf = malloc(total);
	uint64_t per = total / (uint64_t)messages, done = 0;

	if (!buf)
		die("out of memory");
	pattern_fill(seed, off, buf, total);
	for (int i = 0; i < messages; i++) {
		uint64_t n = i == messages - 1 ? total - done : per;
		if (send_all(fd, buf + done, n) < 0)
			break;
		done += n;
		if (gap_ms)
			sleep_ms((unsigned)gap_ms);
	}
	free(buf);
}

/* Reads the rest of a short round so the next round starts aligned. */
static uint64_t drain_exact(int fd, uint64_t n, int timeout_ms)
{
	unsigned char buf[65536];
	uint64_t got = 0, dl = now_ms() + (uint64_t)timeout_ms;
	while (got < n && ms_left(dl)) {
		struct pollfd pl = { .fd = fd, .events = POLLIN };
		if (poll(&pl, 1, ms_left(dl)) <= 0)
			break;
		ssize_t m = recv(fd, buf, n - got < sizeof(buf) ? n - got : sizeof(buf), MSG_DONTWAIT);
		if (m <= 0 && !(m < 0 && errno == EAGAIN))
			break;
		if (m > 0)
			got += (uint64_t)m;
	}
	return got;
}

static void probe_waitall(void)
{
	struct pair p;
	struct waitall_rx r[2];
	long long bad[2] = { -1, -1 };
	uint64_t seed = 0x4444, off = 0;
	char detail[512];

	make_pair(&p, &O.addr, &O.addr);
	for (int round = 0; round < 2; round++) {
		pthread_t t;
		memset(&r[round], 0, sizeof(r[round]));
		r[round].fd = p.srv;
		r[round].want = O.bytes;
		r[round].buf = malloc(O.bytes);
		if (!r[round].buf)
			die("out of memory");
		if (round == 0) {
			/* the reader waits first, the messages trickle in */
			pthread_create(&t, NULL, waitall_reader, &r[round]);
			while (!r[round].entered)
				sleep_ms(1);
			sleep_ms(50);
			waitall_send(p.cli, seed, off, O.bytes, O.messages, 2);
		} else {
			/* every message is queued before the call */
			waitall_send(p.cli, seed, off, O.bytes, O.messages, 0);
			sleep_ms(100);
			pthread_create(&t, NULL, waitall_reader, &r[round]);
		}
		pthread_join(t, NULL);
		if (r[round].got > 0)
			pattern_note_bad(&bad[round], seed, off, r[round].buf, (size_t)r[round].got);
		if (g_expired)
			break;
		uint64_t got = r[round].got > 0 ? (uint64_t)r[round].got : 0;
		if (got < O.bytes)
			drain_exact(p.srv, O.bytes - got, 1000);
		off += O.bytes;
	}
	watchdog_stop();

	int ok = !g_expired && r[0].got == (ssize_t)O.bytes && r[1].got == (ssize_t)O.bytes &&
		 bad[0] < 0 && bad[1] < 0;
	if (ok)
		snprintf(detail, sizeof(detail), "recv(MSG_WAITALL) returned all %" PRIu64 " bytes of %d messages, both rounds",
			 O.bytes, O.messages);
	else
		snprintf(detail, sizeof(detail),
			 "recv(MSG_WAITALL, %" PRIu64 ") of %d messages returned %zd (reader waiting first) and %zd (all queued first)%s%s",
			 O.bytes, O.messages, r[0].got, r[1].got,
			 (bad[0] >= 0 || bad[1] >= 0) ? "; data corrupt" : "",
			 g_expired ? "; timed out" : "");
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "bytes", (long long)O.bytes);
	json_int(&j, "messages", O.messages);
	json_int(&j, "gotWaitingFirst", r[0].got);
	json_int(&j, "gotQueuedFirst", g_expired && !r[1].buf ? -1 : r[1].got);
	json_bool(&j, "intact", bad[0] < 0 && bad[1] < 0);
	result_end(&j);
	free(r[0].buf);
	free(r[1].buf);
	wd_close_all();
}

/* fionread: FIONREAD counts queued bytes, before and after a partial read. */
static void probe_fionread(void)
{
	struct pair p;
	int q = 0, max_q = 0, after = -1;
	uint64_t half = O.bytes / 2, rest;
	unsigned char *buf = malloc(O.bytes);
	long long bad = -1;
	char detail[512];

	if (!buf)
		die("out of memory");
	make_pair(&p, &O.addr, &O.addr);
	waitall_send(p.cli, 0x5555, 0, O.bytes, O.messages, 0);
	uint64_t dl = now_ms() + (uint64_t)(O.timeout_ms / 2);
	while (ms_left(dl)) {
		if (ioctl(p.srv, FIONREAD, &q) < 0)
			die("ioctl(FIONREAD): %s", strerror(errno));
		if (q > max_q)
			max_q = q;
		if ((uint64_t)q >= O.bytes)
			break;
		sleep_ms(1);
	}
	ssize_t n = recv_all(p.srv, buf, half);
	if (n == (ssize_t)half) {
		/* the peer's FIONREAD must count what is left; give it a moment */
		for (int i = 0; i < 100; i++) {
			ioctl(p.srv, FIONREAD, &after);
			if ((uint64_t)after == O.bytes - half)
				break;
			sleep_ms(1);
		}
		rest = (uint64_t)recv_all(p.srv, buf + half, O.bytes - half);
		bad = pattern_check(0x5555, 0, buf, (size_t)(half + rest));
	}
	watchdog_stop();

	int ok = !g_expired && (uint64_t)max_q == O.bytes && (uint64_t)after == O.bytes - half && bad < 0;
	if (ok)
		snprintf(detail, sizeof(detail), "FIONREAD said %d, then %d after reading %" PRIu64, max_q, after, half);
	else
		snprintf(detail, sizeof(detail), "FIONREAD said %d of %" PRIu64 " queued, then %d after reading %" PRIu64 " (expected %" PRIu64 ")%s",
			 max_q, O.bytes, after, half, O.bytes - half, bad >= 0 ? "; data corrupt" : "");
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "bytes", (long long)O.bytes);
	json_int(&j, "fionread", max_q);
	json_int(&j, "fionreadAfterPartial", after);
	json_bool(&j, "intact", bad < 0);
	result_end(&j);
	free(buf);
	wd_close_all();
}

/* halfclose: SHUT_WR reaches the peer as EOF after the data, the peer still
 * sends back; then an RST (SO_LINGER 0 close) reaches the peer as ECONNRESET. */
static void probe_halfclose(void)
{
	struct pair p, p2;
	struct dir c2s = { 0 }, s2c = { 0 };
	pthread_t t[2];
	int rst_errno = 0, eof_c2s, eof_s2c;
	ssize_t rst_ret = 0;
	char detail[512] = "";
	char buf[16];

	make_pair(&p, &O.addr, &O.addr);
	/* client sends N then SHUT_WR; the server reads to EOF */
	c2s.wfd = p.cli; c2s.rfd = p.srv; c2s.seed = 0x6666; c2s.bytes = O.bytes; c2s.chunk = 65536; c2s.shut_wr = 1;
	pthread_create(&t[0], NULL, dir_writer, &c2s);
	dir_reader(&c2s);
	pthread_join(t[0], NULL);
	eof_c2s = !g_expired && dir_intact(&c2s) && recv(p.srv, buf, sizeof(buf), 0) == 0;
	/* the server answers on its still open direction, then SHUT_WR too */
	s2c.wfd = p.srv; s2c.rfd = p.cli; s2c.seed = 0x7777; s2c.bytes = O.bytes; s2c.chunk = 65536; s2c.shut_wr = 1;
	pthread_create(&t[1], NULL, dir_writer, &s2c);
	dir_reader(&s2c);
	pthread_join(t[1], NULL);
	eof_s2c = !g_expired && dir_intact(&s2c) && recv(p.cli, buf, sizeof(buf), 0) == 0;

	/* RST: a second connection; the server closes with SO_LINGER {1, 0} */
	make_pair(&p2, &O.addr, &O.addr);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(p2.srv, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	/* one byte each way first, so both ends are fully set up */
	if (send_all(p2.srv, "x", 1) != 1 || recv_all(p2.cli, buf, 1) != 1)
		die("halfclose: the RST connection did not carry data");
	/* close() sends the RST */
	wd_forget(p2.srv);
	close(p2.srv);
	struct pollfd pl = { .fd = p2.cli, .events = POLLIN };
	poll(&pl, 1, ms_left(g_deadline) < 2000 ? ms_left(g_deadline) : 2000);
	rst_ret = recv(p2.cli, buf, sizeof(buf), MSG_DONTWAIT);
	rst_errno = rst_ret < 0 ? errno : 0;
	watchdog_stop();

	int rst_ok = rst_ret < 0 && rst_errno == ECONNRESET;
	int ok = eof_c2s && eof_s2c && rst_ok;
	if (ok)
		snprintf(detail, sizeof(detail), "EOF after %" PRIu64 " bytes each way, the half-closed side still received; RST seen as ECONNRESET", O.bytes);
	else
		snprintf(detail, sizeof(detail), "client->server then EOF: %s; server->client after the half-close then EOF: %s; RST: recv() = %zd (%s)",
			 eof_c2s ? "ok" : "FAILED", eof_s2c ? "ok" : "FAILED", rst_ret,
			 rst_ret < 0 ? strerror(rst_errno) : "no error");
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "bytes", (long long)O.bytes);
	json_bool(&j, "eofAfterData", eof_c2s);
	json_bool(&j, "sendAfterHalfClose", eof_s2c);
	json_int(&j, "c2sReceived", (long long)c2s.received);
	json_int(&j, "s2cReceived", (long long)s2c.received);
	json_str(&j, "rstErrno", rst_ret < 0 ? (rst_errno == ECONNRESET ? "ECONNRESET" : strerror(rst_errno)) : "");
	json_bool(&j, "rstSeen", rst_ok);
	result_end(&j);
	wd_close_all();
}

/* port-reuse: the client resets a connection whose server socket stays open
 * (its owner has not closed it yet), connects again from the same port and
 * sends. The new server socket must get the bytes, not the reset one: that
 * one keeps the same tuple and stays in a sockhash until it is closed. */
static void probe_port_reuse(void)
{
	struct pair p;
	struct addr local = { .len = sizeof(local.ss) };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct pollfd pl;
	char detail[512], buf[64];
	int cli2, srv2, old_q = -1;
	ssize_t got = -1;

	make_pair(&p, &O.addr, &O.addr);
	if (send_all(p.cli, "o", 1) != 1 || recv_all(p.srv, buf, 1) != 1)
		die("port-reuse: the first connection did not carry data");
	if (getsockname(p.cli, (struct sockaddr *)&local.ss, &local.len) < 0)
		die("getsockname: %s", strerror(errno));
	/* close() sends the RST */
	setsockopt(p.cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	wd_forget(p.cli);
	close(p.cli);
	pl = (struct pollfd){ .fd = p.srv, .events = POLLIN };
	poll(&pl, 1, 1000); /* the reset has arrived; p.srv stays open */

	cli2 = socket(addr_family(&O.addr), SOCK_STREAM, 0);
	if (cli2 < 0)
		die("socket: %s", strerror(errno));
	set_int_opt(cli2, SOL_SOCKET, SO_REUSEADDR, 1);
	if (bind(cli2, (struct sockaddr *)&local.ss, local.len) < 0)
		die("port-reuse: bind to the reset connection's port: %s", strerror(errno));
	wd_add(cli2);
	if (connect(cli2, (struct sockaddr *)&p.laddr.ss, p.laddr.len) < 0)
		die("port-reuse: connect again: %s", strerror(errno));
	srv2 = tcp_accept(p.lfd, ms_left(g_deadline));
	if (srv2 < 0)
		die("accept: %s", strerror(errno));
	wd_add(srv2);
	if (send_all(cli2, "new", 3) != 3)
		die("port-reuse: send: %s", strerror(errno));
	pl = (struct pollfd){ .fd = srv2, .events = POLLIN };
	if (poll(&pl, 1, 1000) > 0)
		got = recv(srv2, buf, sizeof(buf), MSG_DONTWAIT);
	ioctl(p.srv, FIONREAD, &old_q);
	watchdog_stop();

	int ok = got == 3 && !memcmp(buf, "new", 3) && old_q <= 0;
	if (ok)
		snprintf(detail, sizeof(detail), "the new connection from port %u got its bytes; the reset socket got none", addr_port(&local));
	else
		snprintf(detail, sizeof(detail), "the new connection from port %u got %zd of 3 bytes in 1 s; the reset socket, still open, has %d queued",
			 addr_port(&local), got, old_q);
	struct json j;
	result_begin(&j, ok, detail);
	json_int(&j, "newReceived", (long long)got);
	json_int(&j, "resetSocketQueued", old_q);
	result_end(&j);
	wd_close_all();
}

/* ---- main ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	long port = 0;
	const char *addr = "127.0.0.1";
	int have_bytes = 0, have_timeout = 0, have_burst = 0, have_pause = 0;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, stderr);
		die("usage: skfp-probe PROBE [options] (see --help)");
	}
	O.probe = argv[1];
	O.messages = 8;
	O.max_mem = 64ull << 20;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--bytes")) {
			O.bytes = parse_size(a, opt_value(argc, argv, &i));
			have_bytes = 1;
		} else if (!strcmp(a, "--addr")) {
			addr = opt_value(argc, argv, &i);
		} else if (!strcmp(a, "--port")) {
			port = parse_long(a, opt_value(argc, argv, &i), 0, 65535);
		} else if (!strcmp(a, "--timeout-ms")) {
			O.timeout_ms = (int)parse_long(a, opt_value(argc, argv, &i), 100, 3600000);
			have_timeout = 1;
		} else if (!strcmp(a, "--messages")) {
			O.messages = (int)parse_long(a, opt_value(argc, argv, &i), 1, 4096);
		} else if (!strcmp(a, "--burst")) {
			O.burst = parse_size(a, opt_value(argc, argv, &i));
			have_burst = 1;
		} else if (!strcmp(a, "--pause-ms")) {
			O.pause_ms = (int)parse_long(a, opt_value(argc, argv, &i), 0, 10000);
			have_pause = 1;
		} else if (!strcmp(a, "--max-tcp-mem-mib")) {
			O.max_mem = (uint64_t)parse_long(a, opt_value(argc, argv, &i), 1, 1 << 20) << 20;
		} else if (!strcmp(a, "--brake-tcp-mem-mib")) {
			O.brake_mem = (uint64_t)parse_long(a, opt_value(argc, argv, &i), 1, 1 << 20) << 20;
		} else if (!strcmp(a, "--nonblock")) {
			g_nonblock = 1;
		} else {
			die("unknown option: %s", a);
		}
	}
	if (addr_from_ip(&O.addr, addr, (unsigned)port))
		die("--addr: not an IP address: %s", addr);

	/* per-probe defaults */
	struct { const char *name; uint64_t bytes; int timeout_ms; } defs[] = {
		{ "splice", 1 << 20, 3000 },
		{ "late-splice", 8 << 20, 5000 },
		{ "late-blocking", 16 << 20, 10000 },
		{ "waitall", 64 << 10, 5000 },
		{ "blocking-recv", 256 << 20, 60000 },
		{ "slow-reader", 256 << 20, 60000 },
		{ "fionread", 64 << 10, 5000 },
		{ "halfclose", 64 << 10, 5000 },
		{ "port-reuse", 3, 5000 },
		{ "dualstack", 4 << 20, 10000 },
		{ "integrity", 64 << 20, 30000 },
	};
	size_t k;
	for (k = 0; k < sizeof(defs) / sizeof(defs[0]); k++)
		if (!strcmp(O.probe, defs[k].name))
			break;
	if (k == sizeof(defs) / sizeof(defs[0])) {
		char names[256] = "";
		for (k = 0; k < sizeof(defs) / sizeof(defs[0]); k++)
			snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", k ? " " : "", defs[k].name);
		die("unknown probe: %s (%s)", O.probe, names);
	}
	if (!have_bytes)
		O.bytes = defs[k].bytes;
	if (!have_timeout)
		O.timeout_ms = defs[k].timeout_ms;
	if (O.bytes == 0 || O.bytes > (4ull << 30))
		die("--bytes must be in [1, 4G]");
	if ((!strcmp(O.probe, "waitall") || !strcmp(O.probe, "fionread")) && O.bytes > (16u << 20))
		die("--bytes must be at most 16M for %s (one buffer, one call)", O.probe);
	if ((uint64_t)O.messages > O.bytes)
		O.messages = (int)O.bytes;
	if (!strcmp(O.probe, "slow-reader") || !strcmp(O.probe, "blocking-recv")) {
		if (!have_burst)
			O.burst = !strcmp(O.probe, "slow-reader") ? 4 << 20 : 512 << 10;
		if (!have_pause)
			O.pause_ms = !strcmp(O.probe, "slow-reader") ? 20 : 5;
		if (!O.brake_mem) {
			/* never push the host near TCP memory pressure: brake at
			 * min(256 MiB, tcp_mem[0] / 2) of growth */
			long lo = tcp_mem_low_pages();
			O.brake_mem = 256ull << 20;
			if (lo > 0 && (uint64_t)lo * (uint64_t)sysconf(_SC_PAGESIZE) / 2 < O.brake_mem)
				O.brake_mem = (uint64_t)lo * (uint64_t)sysconf(_SC_PAGESIZE) / 2;
		}
	}

	watchdog_start(O.timeout_ms);
	if (!strcmp(O.probe, "splice"))
		probe_splice(0);
	else if (!strcmp(O.probe, "late-splice")) {
		g_nonblock = 1;
		probe_splice(1 << 20);
	}
	else if (!strcmp(O.probe, "late-blocking"))
		probe_late_blocking();
	else if (!strcmp(O.probe, "waitall"))
		probe_waitall();
	else if (!strcmp(O.probe, "fionread"))
		probe_fionread();
	else if (!strcmp(O.probe, "halfclose"))
		probe_halfclose();
	else if (!strcmp(O.probe, "port-reuse"))
		probe_port_reuse();
	else if (!strcmp(O.probe, "dualstack"))
		probe_bulk(1, 0, 0);
	else if (!strcmp(O.probe, "integrity"))
		probe_bulk(0, 0, 0);
	else if (!strcmp(O.probe, "blocking-recv"))
		probe_bulk(0, 1, 1);
	else if (!strcmp(O.probe, "slow-reader"))
		probe_bulk(0, 1, 1);
	return 0;
}
