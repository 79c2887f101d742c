/* SPDX-License-Identifier: MIT */
/* skfp-udp: the UDP figures of `skfp bench` (through a transparent proxy,
 * skfp's interception against iptables TPROXY).
 *
 *   skfp-udp echo   --listen ADDR:PORT
 *       answers every datagram with itself; prints {"listening":"ADDR:PORT"}
 *       and runs until killed.
 *   skfp-udp stream --connect ADDR:PORT [--duration-ms D (1000)] [--size B (1200)]
 *                   [--window W (64)]
 *       sends B-byte datagrams (an 8-byte sequence number, then bytes of the
 *       pattern stream of that number) over a connected socket for D ms,
 *       never more than W unanswered; a window that stays unanswered for
 *       200 ms is given up (those datagrams count as lost). Every echo is
 *       checked byte for byte:
 *       {"sent":..,"received":..,"corrupt":..,"lost":..,"lossPct":..,
 *        "datagramsPerSec":..,"mbps":..,"durationMs":..,"errors":0}
 *       received counts distinct datagrams answered intact; mbps is their
 *       payload, one way.
 *   skfp-udp rtt    --connect ADDR:PORT [--count N (2000)] [--size B (64)]
 *                   [--loss-ms L (200)]
 *       one datagram at a time; one unanswered for L ms is lost (and sent
 *       anew under the next number):
 *       {"count":..,"lost":..,"p50Us":..,"p99Us":..,"p999Us":..,"errors":0}
 *
 * Set-up failures print {"error":"..."} on stdout and exit 2; a socket error
 * in the middle of a run ends it, counted in "errors", exit 1. */
#include "common.h"
#include "latency.h"

#define LOSS_MS 200
#define MAX_DATAGRAMS (1L << 26)

struct opts {
	struct addr addr;
	int have_addr;
	long duration_ms, count, window, loss_ms;
	size_t size;
};

static struct opts O = { .duration_ms = 1000, .count = 2000, .window = 64, .loss_ms = LOSS_MS, .size = 0 };

static void make_datagram(unsigned char *buf, size_t size, uint64_t seq)
{
	memcpy(buf, &seq, 8);
	pattern_fill(seq, 0, buf + 8, size - 8);
}

/* The datagram's sequence number, or -1 when it is not one of ours intact. */
static long long check_datagram(const unsigned char *buf, ssize_t n, size_t size)
{
	uint64_t seq;

	if (n != (ssize_t)size)
		return -1;
	memcpy(&seq, buf, 8);
	if (seq >= (uint64_t)MAX_DATAGRAMS || pattern_check(seq, 0, buf + 8, size - 8) >= 0)
		return -1;
	return (long long)seq;
}

static int connected_socket(void)
{
	int fd = socket(addr_family(&O.addr), SOCK_DGRAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&O.addr.ss, O.addr.len) < 0)
		die("connect: %s", strerror(errno));
	return fd;
}

static int run_echo(void)
{
	unsigned char buf[65536];
	struct sockaddr_storage peer;
	socklen_t len;
	char name[INET6_ADDRSTRLEN + 8];
	struct json j;
	int fd = socket(addr_family(&O.addr), SOCK_DGRAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&O.addr.ss, O.addr.len) < 0)
		die("bind: %s", strerror(errno));
	json_begin(&j);
	json_str(&j, "listening", addr_str(&O.addr, name, sizeof(name)));
	json_end_print(&j);
	for (;;) {
		len = sizeof(peer);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recvfrom: %s", strerror(errno));
		}
		sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
	}
}

static int run_stream(void)
{
	unsigned char *out = malloc(O.size), *in = malloc(65536);
	unsigned char *seen = calloc(MAX_DATAGRAMS / 8, 1);
	long sent = 0, received = 0, corrupt = 0, inflight = 0, errors = 0;
	uint64_t start, deadline, last_answer;
	char err[160] = "";
	struct json j;
	int fd = connected_socket();

	if (!out || !in || !seen)
		die("out of memory");
	start = now_ms();
	deadline = start + (uint64_t)O.duration_ms;
	last_answer = start;
	while (now_ms() < deadline && sent < MAX_DATAGRAMS) {
		while (inflight < O.window && sent < MAX_DATAGRAMS) {
			make_datagram(out, O.size, (uint64_t)sent);
			if (send(fd, out, O.size, MSG_DONTWAIT) < 0) {
				if (errno == EAGAIN || errno == ENOBUFS)
					break;
				snprintf(err, sizeof(err), "send: %s", strerror(errno));
				goto done;
			}
			sent++;
			inflight++;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 10);
		if (r > 0) {
			for (;;) {
				ssize_t n = recv(fd, in, 65536, MSG_DONTWAIT);
				if (n < 0) {
					if (errno == EAGAIN)
						break;
					snprintf(err, sizeof(err), "recv: %s", strerror(errno));
					goto done;
				}
				long long seq = check_datagram(in, n, O.size);
				if (seq < 0) {
					corrupt++;
					continue;
				}
				if (seen[seq / 8] & (1u << (seq % 8)))
					continue;
				seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
				received++;
				if (inflight > 0)
					inflight--;
				last_answer = now_ms();
			}
		}
		if (now_ms() - last_answer > LOSS_MS) { /* the window is lost: start a new one */
			inflight = 0;
			last_answer = now_ms();
		}
	}
done:
	{
		/* late answers of the last window */
		uint64_t drain = now_ms() + LOSS_MS;
		while (!err[0] && received < sent && ms_left(drain) > 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			if (poll(&p, 1, ms_left(drain)) <= 0)
				break;
			ssize_t n = recv(fd, in, 65536, MSG_DONTWAIT);
			if (n < 0)
				break;
			long long seq = check_datagram(in, n, O.size);
			if (seq < 0) {
				corrupt++;
				continue;
			}
			if (!(seen[seq / 8] & (1u << (seq % 8)))) {
				seen[seq / 8] |= (unsigned char)(1u << (seq % 8));
				received++;
			}
		}
	}
	double secs = (double)(now_ms() - start) / 1000.0;
	if (err[0])
		errors++;
	json_begin(&j);
	json_int(&j, "sent", sent);
	json_int(&j, "received", received);
	json_int(&j, "corrupt", corrupt);
	json_int(&j, "lost", sent - received);
	json_dbl(&j, "lossPct", sent ? 100.0 * (double)(sent - received) / (double)sent : 0);
	json_dbl(&j, "datagramsPerSec", secs > 0 ? (double)received / secs : 0);
	json_dbl(&j, "mbps", secs > 0 ? (double)received * (double)O.size * 8 / secs / 1e6 : 0);
	json_int(&j, "durationMs", (long long)(secs * 1000));
	json_int(&j, "errors", errors);
	if (err[0])
		json_str(&j, "error", err);
	json_end_print(&j);
	return errors ? 1 : 0;
}

static int run_rtt(void)
{
	unsigned char *out = malloc(O.size), *in = malloc(65536);
	uint64_t *lat = calloc((size_t)O.count, sizeof(*lat));
	long done = 0, lost = 0;
	uint64_t seq = 0;
	char err[160] = "";
	struct json j;
	int fd = connected_socket();

	if (!out || !in || !lat)
		die("out of memory");
	while (done < O.count && !err[0]) {
		uint64_t t0 = now_ns();
		make_datagram(out, O.size, seq);
		if (send(fd, out, O.size, 0) < 0) {
			snprintf(err, sizeof(err), "send: %s", strerror(errno));
			break;
		}
		for (;;) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int left = (int)O.loss_ms - (int)((now_ns() - t0) / 1000000);
			if (left <= 0 || poll(&p, 1, left) <= 0) {
				lost++;
				break;
			}
			ssize_t n = recv(fd, in, 65536, 0);
			if (n < 0) {
				snprintf(err, sizeof(err), "recv: %s", strerror(errno));
				break;
			}
			if (check_datagram(in, n, O.size) == (long long)seq) {
				lat[done++] = now_ns() - t0;
				break;
			}
		}
		seq++;
	}
	qsort(lat, (size_t)done, sizeof(*lat), cmp_u64);
	json_begin(&j);
	json_int(&j, "count", done);
	json_int(&j, "lost", lost);
	if (done) {
		json_dbl(&j, "p50Us", pct_us(lat, done, 500));
		json_dbl(&j, "p99Us", pct_us(lat, done, 990));
		json_dbl(&j, "p999Us", pct_us(lat, done, 999));
	}
	json_int(&j, "errors", err[0] ? 1 : 0);
	if (err[0])
		json_str(&j, "error", err);
	json_end_print(&j);
	return err[0] ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") || !strcmp(argv[i], "--connect")) {
			parse_addrport(argv[i], opt_value(argc, argv, &i), &O.addr);
			O.have_addr = 1;
		} else if (!strcmp(argv[i], "--duration-ms")) {
			O.duration_ms = parse_long(argv[i], opt_value(argc, argv, &i), 1, 3600000);
		} else if (!strcmp(argv[i], "--count")) {
			O.count = parse_long(argv[i], opt_value(argc, argv, &i), 1, 10000000);
		} else if (!strcmp(argv[i], "--window")) {
			O.window = parse_long(argv[i], opt_value(argc, argv, &i), 1, 65536);
		} else if (!strcmp(argv[i], "--loss-ms")) {
			O.loss_ms = parse_long(argv[i], opt_value(argc, argv, &i), 1, 60000);
		} else if (!strcmp(argv[i], "--size")) {
			O.size = parse_size(argv[i], opt_value(argc, argv, &i));
		} else {
			die("unknown option %s", argv[i]);
		}
	}
	if (!O.have_addr)
		die("%s needs --listen/--connect ADDR:PORT", mode);
	if (!O.size)
		O.size = !strcmp(mode, "rtt") ? 64 : 1200;
	if (O.size < 16 || O.size > 65000)
		die("--size: from 16 to 65000 bytes");
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "echo"))
		return run_echo();
	if (!strcmp(mode, "stream"))
		return run_stream();
	if (!strcmp(mode, "rtt"))
		return run_rtt();
	die("usage: skfp-udp echo|stream|rtt (see the source's header)");
}
