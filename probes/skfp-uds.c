/* SPDX-License-Identifier: MIT */
/* skfp-uds: the Unix-domain stream socket figures of `skfp bench` (the
 * ceiling for local IPC), measured the way iperf3 and skfp-pingpong measure
 * TCP, so the numbers sit side by side.
 *
 *   skfp-uds stream   [--duration-ms D (1000)] [--size B (128K)] [--cpu C]
 *       a socketpair; one thread write()s B-byte buffers for D ms (iperf3's
 *       default TCP length is 128 KiB), the other read()s them (both pinned
 *       to C with --cpu):
 *       {"bytes":..,"durationMs":..,"gbps":..,"senderCpuPct":..,
 *        "receiverCpuPct":..,"errors":0}
 *       CPU is each thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) over the
 *       wall time, in percent of one CPU.
 *   skfp-uds rtt      [--count N (10000)] [--size B (1)] [--cpu C]
 *                     [--warmup W (min(N/10,1000))]
 *       ping-pong over a socketpair between two threads (both pinned to C
 *       with --cpu): the same JSON as `skfp-pingpong rtt`.
 *   skfp-uds connrate [--duration-ms D (1000)] [--parallel K (1)]
 *       K threads connect to an abstract-namespace listener, send 1 byte, read
 *       the echo and close, until D ms have passed; an acceptor thread echoes:
 *       {"connections":N,"perSec":..,"errors":E,"durationMs":..,"parallel":K}
 *
 * Set-up failures print {"error":"..."} on stdout and exit 2; a failure in the
 * middle of a run is counted in "errors" (the run stops), exit 1. */
#include "common.h"
#include "latency.h"
#include <stddef.h>
#include <sys/un.h>

struct opts {
	long duration_ms, count, warmup;
	size_t size;
	int cpu, parallel;
};

static struct opts O = { .duration_ms = 1000, .count = 10000, .warmup = -1, .size = 0, .cpu = -1, .parallel = 1 };

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- stream ----------------------------------------------------------- */

struct side {
	pthread_t th;
	int fd;
	uint64_t deadline_ns, bytes, cpu_ns;
	int error;
};

static void *stream_send(void *arg)
{
	struct side *s = arg;
	char *buf = malloc(O.size);
	uint64_t c0 = thread_cpu_ns();

	if (!buf)
		die("out of memory");
	memset(buf, 's', O.size);
	while (now_ns() < s->deadline_ns) {
		if (send_all(s->fd, buf, O.size) < 0) {
			s->error = errno;
			break;
		}
		s->bytes += O.size;
	}
	shutdown(s->fd, SHUT_WR);
	s->cpu_ns = thread_cpu_ns() - c0;
	free(buf);
	return NULL;
}

static void *stream_recv(void *arg)
{
	struct side *s = arg;
	char *buf = malloc(O.size);
	uint64_t c0 = thread_cpu_ns();
	ssize_t r;

	if (!buf)
		die("out of memory");
	while ((r = read(s->fd, buf, O.size)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			s->error = errno;
			break;
		}
		s->bytes += (uint64_t)r;
	}
	s->cpu_ns = thread_cpu_ns() - c0;
	free(buf);
	return NULL;
}

static int run_stream(void)
{
	struct side snd = { 0 }, rcv = { 0 };
	int sv[2];
	struct json j;
	uint64_t t0, wall;

	if (!O.size)
		O.size = 128 * 1024;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	snd.fd = sv[0];
	rcv.fd = sv[1];
	if (O.cpu >= 0 && pin_cpu(O.cpu) < 0) /* the threads inherit it */
		die("sched_setaffinity(cpu %d): %s", O.cpu, strerror(errno));
	t0 = now_ns();
	snd.deadline_ns = t0 + (uint64_t)O.duration_ms * 1000000ull;
	if (pthread_create(&rcv.th, NULL, stream_recv, &rcv) || pthread_create(&snd.th, NULL, stream_send, &snd))
		die("pthread_create: %s", strerror(errno));
	pthread_join(snd.th, NULL);
	pthread_join(rcv.th, NULL);
	wall = now_ns() - t0;
	json_begin(&j);
	json_int(&j, "bytes", (long long)rcv.bytes);
	json_int(&j, "durationMs", (long long)(wall / 1000000));
	json_dbl(&j, "gbps", (double)rcv.bytes * 8.0 / (double)wall);
	json_dbl(&j, "senderCpuPct", 100.0 * (double)snd.cpu_ns / (double)wall);
	json_dbl(&j, "receiverCpuPct", 100.0 * (double)rcv.cpu_ns / (double)wall);
	json_int(&j, "errors", (snd.error || rcv.error || snd.bytes != rcv.bytes) ? 1 : 0);
	if (snd.error || rcv.error)
		json_str(&j, "error", strerror(snd.error ? snd.error : rcv.error));
	json_end_print(&j);
	return snd.error || rcv.error ? 1 : 0;
}

/* ---- rtt -------------------------------------------------------------- */

static void *echo_main(void *arg)
{
	int fd = *(int *)arg;
	char *buf = malloc(O.size);
	ssize_t r;

	if (!buf)
		die("out of memory");
	if (O.cpu >= 0)
		pin_cpu(O.cpu);
	while ((r = recv_all(fd, buf, O.size)) == (ssize_t)O.size)
		if (send_all(fd, buf, O.size) < 0)
			break;
	free(buf);
	return NULL;
}

static int run_rtt(void)
{
	long warm, done = 0;
	uint64_t *lat, sum = 0;
	char *sbuf, *rbuf, err[256] = "";
	pthread_t echo;
	int sv[2];

	if (!O.size)
		O.size = 1;
	warm = O.warmup >= 0 ? O.warmup : (O.count / 10 < 1000 ? O.count / 10 : 1000);
	lat = calloc((size_t)O.count, sizeof(*lat));
	sbuf = malloc(O.size);
	rbuf = malloc(O.size);
	if (!lat || !sbuf || !rbuf)
		die("out of memory");
	memset(sbuf, 'p', O.size);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	if (O.cpu >= 0 && pin_cpu(O.cpu) < 0)
		die("sched_setaffinity(cpu %d): %s", O.cpu, strerror(errno));
	if (pthread_create(&echo, NULL, echo_main, &sv[1]))
		die("pthread_create: %s", strerror(errno));
	for (long i = -warm; i < O.count; i++) {
		uint64_t t0 = now_ns();
		if (send_all(sv[0], sbuf, O.size) < 0) {
			snprintf(err, sizeof(err), "send: %s", strerror(errno));
			break;
		}
		if (recv_all(sv[0], rbuf, O.size) != (ssize_t)O.size) {
			snprintf(err, sizeof(err), "recv: %s", strerror(errno));
			break;
		}
		uint64_t t1 = now_ns();
		if (i >= 0) {
			lat[done++] = t1 - t0;
			sum += t1 - t0;
		}
	}
	shutdown(sv[0], SHUT_RDWR);
	pthread_join(echo, NULL);
	return rtt_report(lat, done, sum, (long long)O.size, warm, O.cpu, err);
}

/* ---- connrate --------------------------------------------------------- */

static struct sockaddr_un g_un;
static socklen_t g_unlen;

/* Accepts and echoes one byte per connection until the listener is shut down. */
static void *acceptor_main(void *arg)
{
	int lfd = *(int *)arg;
	char b;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		if (recv(fd, &b, 1, 0) == 1)
			send(fd, &b, 1, MSG_NOSIGNAL);
		close(fd);
	}
}

static void *crate_main(void *arg)
{
	struct crate *c = arg;
	char b = 'c';

	while (now_ns() < c->deadline_ns) {
		const char *what = "socket";
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			what = "connect";
			if (connect(fd, (struct sockaddr *)&g_un, g_unlen) == 0) {
				what = "send";
				if (send(fd, &b, 1, MSG_NOSIGNAL) == 1) {
					what = "recv";
					if (recv(fd, &b, 1, 0) == 1)
						what = NULL;
				}
			}
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
			sleep_ms(1);
		}
	}
	return NULL;
}

static int run_connrate(void)
{
	pthread_t acc;
	int lfd, ret;

	/* abstract namespace: nothing on disk to clean up */
	memset(&g_un, 0, sizeof(g_un));
	g_un.sun_family = AF_UNIX;
	int n = snprintf(g_un.sun_path + 1, sizeof(g_un.sun_path) - 1, "skfp-uds-%d", (int)getpid());
	g_unlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&g_un, g_unlen) < 0 || listen(lfd, 1024) < 0)
		die("listen: %s", strerror(errno));
	if (pthread_create(&acc, NULL, acceptor_main, &lfd))
		die("pthread_create: %s", strerror(errno));
	ret = connrate_run(O.parallel, O.duration_ms, crate_main);
	shutdown(lfd, SHUT_RDWR); /* wakes the acceptor */
	pthread_join(acc, NULL);
	return ret;
}

int main(int argc, char **argv)
{
	const char *mode;

	if (argc < 2)
		die("usage: skfp-uds stream|rtt|connrate [options]");
	mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--duration-ms"))
			O.duration_ms = parse_long(a, opt_value(argc, argv, &i), 1, 3600000);
		else if (!strcmp(a, "--count"))
			O.count = parse_long(a, opt_value(argc, argv, &i), 1, 100000000);
		else if (!strcmp(a, "--warmup"))
			O.warmup = parse_long(a, opt_value(argc, argv, &i), 0, 100000000);
		else if (!strcmp(a, "--size"))
			O.size = (size_t)parse_size(a, opt_value(argc, argv, &i));
		else if (!strcmp(a, "--cpu"))
			O.cpu = (int)parse_long(a, opt_value(argc, argv, &i), 0, CPU_SETSIZE - 1);
		else if (!strcmp(a, "--parallel"))
			O.parallel = (int)parse_long(a, opt_value(argc, argv, &i), 1, 256);
		else
			die("unknown option %s", a);
	}
	if (!strcmp(mode, "stream"))
		return run_stream();
	if (!strcmp(mode, "rtt"))
		return run_rtt();
	if (!strcmp(mode, "connrate"))
		return run_connrate();
	die("unknown mode %s (stream, rtt or connrate)", mode);
}
