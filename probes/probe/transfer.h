/* SPDX-License-Identifier: MIT */
/* skfp-probe's transfers: a connected pair, the host's TCP memory sampled
 * (with a brake), and one direction of a checked byte stream, both at once. */
#ifndef SKFP_PROBE_TRANSFER_H
#define SKFP_PROBE_TRANSFER_H

#include "../common.h"
#include "watchdog.h"

/* ---- connection set-up --------------------------------------------------- */

struct pair {
	int lfd, cli, srv;
	struct addr laddr;
};

/* --nonblock: the listener (before the client connects), the client and the
 * accepted socket are O_NONBLOCK, and the transfers poll: the way servers
 * built on an event loop read, which the adaptive fastpath promotes. */
static int g_nonblock;

/* Listener on listen_at, client connecting to connect_to (port taken from the
 * listener), the accepted server end. All three are watched. Dies on failure. */
static void make_pair(struct pair *p, const struct addr *listen_at, const struct addr *connect_to)
{
	struct addr c = *connect_to;

	p->laddr = *listen_at;
	p->lfd = tcp_listen(&p->laddr, 16);
	if (p->lfd < 0)
		die("listen: %s", strerror(errno));
	if (g_nonblock)
		set_nonblock(p->lfd, 1);
	addr_set_port(&c, addr_port(&p->laddr));
	p->cli = tcp_connect(&c, ms_left(g_deadline), 0);
	if (p->cli < 0)
		die("connect: %s", strerror(errno));
	p->srv = tcp_accept(p->lfd, ms_left(g_deadline));
	if (p->srv < 0)
		die("accept: %s", strerror(errno));
	if (g_nonblock) {
		set_nonblock(p->cli, 1);
		set_nonblock(p->srv, 1);
	}
	set_int_opt(p->cli, IPPROTO_TCP, TCP_NODELAY, 1);
	set_int_opt(p->srv, IPPROTO_TCP, TCP_NODELAY, 1);
	wd_add(p->lfd);
	wd_add(p->cli);
	wd_add(p->srv);
}

/* ---- host TCP memory (/proc/net/sockstat "TCP: ... mem N", pages) ---------- */

static long tcp_mem_pages(void)
{
	char buf[1024];
	long mem = -1;
	FILE *f = fopen("/proc/net/sockstat", "r");

	if (!f)
		return -1;
	while (fgets(buf, sizeof(buf), f)) {
		char *m;
		if (strncmp(buf, "TCP:", 4) == 0 && (m = strstr(buf, " mem ")))
			mem = strtol(m + 5, NULL, 10);
	}
	fclose(f);
	return mem;
}

/* tcp_mem[0] (pages): below it the kernel sees no memory pressure. */
static long tcp_mem_low_pages(void)
{
	long lo = -1;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_mem", "r");
	if (f) {
		if (fscanf(f, "%ld", &lo) != 1)
			lo = -1;
		fclose(f);
	}
	return lo;
}

struct sampler {
	pthread_t th;
	volatile int stop;
	long base, peak;          /* pages */
	uint64_t brake_bytes;     /* growth that engages the brake, 0 = never */
	volatile int brake;       /* writers pause, readers stop pausing */
	int braked;               /* the brake engaged at least once */
};

static long g_page;

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;
	while (!s->stop) {
		long m = tcp_mem_pages();
		if (m > s->peak)
			s->peak = m;
		if (s->brake_bytes && m >= 0) {
			uint64_t grown = m > s->base ? (uint64_t)(m - s->base) * (uint64_t)g_page : 0;
			if (grown > s->brake_bytes) {
				s->brake = 1;
				s->braked = 1;
			} else if (grown < s->brake_bytes / 2) {
				s->brake = 0;
			}
		}
		sleep_ms(5);
	}
	return NULL;
}

/* ---- one direction of a transfer ----------------------------------------- */

struct dir {
	/* in */
	int wfd, rfd;
	uint64_t seed, bytes;
	size_t chunk;
	uint64_t burst;     /* reader: pause after this many bytes (0 = never) */
	int pause_ms;
	int shut_wr;        /* writer: shutdown(SHUT_WR) when done */
	struct sampler *smp;
	/* out */
	uint64_t sent, received;
	int write_errno, read_errno;
	long long bad_off;  /* first corrupt stream offset, -1 = none */
	uint64_t eagain;    /* recv() == -1/EAGAIN on a blocking socket */
	int eof_early;
};

static void *dir_writer(void *arg)
{
	struct dir *d = arg;
	unsigned char *buf = malloc(d->chunk);

	if (!buf) {
		d->write_errno = ENOMEM;
		return NULL;
	}
	while (d->sent < d->bytes && !g_expired) {
		size_t n = d->bytes - d->sent < d->chunk ? (size_t)(d->bytes - d->sent) : d->chunk;
		while (d->smp && d->smp->brake && !g_expired)
			sleep_ms(1);
		pattern_fill(d->seed, d->sent, buf, n);
		if (send_all(d->wfd, buf, n) < 0) {
			d->write_errno = errno;
			break;
		}
		d->sent += n;
	}
	if (d->shut_wr)
		shutdown(d->wfd, SHUT_WR);
	free(buf);
	return NULL;
}

static void *dir_reader(void *arg)
{
	struct dir *d = arg;
	unsigned char *buf = malloc(d->chunk);
	uint64_t since_pause = 0;

	d->bad_off = -1;
	if (!buf) {
		d->read_errno = ENOMEM;
		return NULL;
	}
	while (d->received < d->bytes && !g_expired) {
		size_t want = d->bytes - d->received < d->chunk ? (size_t)(d->bytes - d->received) : d->chunk;
		ssize_t n = recv(d->rfd, buf, want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (g_nonblock) {
					struct pollfd pl = { .fd = d->rfd, .events = POLLIN };
					poll(&pl, 1, 100);
					continue;
				}
				d->eagain++; /* the hazard: a blocking socket must not say this */
				continue;
			}
			d->read_errno = errno;
			break;
		}
		if (n == 0) {
			d->eof_early = 1;
			break;
		}
		pattern_note_bad(&d->bad_off, d->seed, d->received, buf, (size_t)n);
		d->received += (uint64_t)n;
		since_pause += (uint64_t)n;
		if (d->burst && since_pause >= d->burst) {
			since_pause = 0;
			if (!(d->smp && d->smp->brake))
				sleep_ms((unsigned)d->pause_ms);
		}
	}
	free(buf);
	return NULL;
}

static int dir_intact(const struct dir *d)
{
	return d->received == d->bytes && d->bad_off < 0 && !d->read_errno && !d->eof_early;
}

static void dir_json(struct json *j, const char *pfx, const struct dir *d)
{
	char k[64];
	snprintf(k, sizeof(k), "%sReceived", pfx);
	json_int(j, k, (long long)d->received);
	snprintf(k, sizeof(k), "%sIntact", pfx);
	json_bool(j, k, dir_intact(d));
	if (d->bad_off >= 0) {
		snprintf(k, sizeof(k), "%sFirstBadOffset", pfx);
		json_int(j, k, d->bad_off);
	}
	if (d->read_errno) {
		snprintf(k, sizeof(k), "%sReadError", pfx);
		json_str(j, k, strerror(d->read_errno));
	}
	if (d->write_errno) {
		snprintf(k, sizeof(k), "%sWriteError", pfx);
		json_str(j, k, strerror(d->write_errno));
	}
}

static void dir_describe(char *buf, size_t len, const char *name, const struct dir *d)
{
	size_t n = strlen(buf);
	if (dir_intact(d))
		return;
	snprintf(buf + n, len - n, "%s%s: %" PRIu64 " of %" PRIu64 " bytes%s%s%s%s%s; ",
		 n ? "" : "", name, d->received, d->bytes,
		 d->bad_off >= 0 ? ", corrupt" : "",
		 d->eof_early ? ", early EOF" : "",
		 d->read_errno ? ", recv: " : "", d->read_errno ? strerror(d->read_errno) : "",
		 d->write_errno ? ", send failed" : "");
}

/* Both directions at once over p: c2s (client -> server) and s2c. */
static void run_bidir(struct pair *p, struct dir *c2s, struct dir *s2c)
{
	pthread_t t[4];

	c2s->wfd = p->cli; c2s->rfd = p->srv; c2s->seed = 0x1111;
	s2c->wfd = p->srv; s2c->rfd = p->cli; s2c->seed = 0x2222;
	pthread_create(&t[0], NULL, dir_reader, c2s);
	pthread_create(&t[1], NULL, dir_reader, s2c);
	pthread_create(&t[2], NULL, dir_writer, c2s);
	pthread_create(&t[3], NULL, dir_writer, s2c);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
}

#endif /* SKFP_PROBE_TRANSFER_H */
