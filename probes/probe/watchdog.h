/* SPDX-License-Identifier: MIT */
/* skfp-probe's bound on every wait: a watchdog thread shuts the watched
 * sockets down at the deadline, alarm() backs it up (exit 3). */
#ifndef SKFP_PROBE_WATCHDOG_H
#define SKFP_PROBE_WATCHDOG_H

#include "../common.h"

/* ---- watchdog ------------------------------------------------------------ */

#define WD_MAX 8
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static int wd_fds[WD_MAX];
static int wd_n;
static volatile int wd_stop;
static volatile int g_expired; /* the deadline passed: sockets were shut down */
static uint64_t g_deadline;
static pthread_t wd_thread;

/* Sockets the watchdog shuts down at the deadline (which wakes any blocked
 * call). They are closed only after watchdog_stop(), so no fd is reused. */
static void wd_add(int fd)
{
	pthread_mutex_lock(&wd_lock);
	if (wd_n < WD_MAX)
		wd_fds[wd_n++] = fd;
	pthread_mutex_unlock(&wd_lock);
}

/* The caller closes fd now: the watchdog must not touch it afterwards. */
static void wd_forget(int fd)
{
	pthread_mutex_lock(&wd_lock);
	for (int i = 0; i < wd_n; i++)
		if (wd_fds[i] == fd)
			wd_fds[i] = wd_fds[--wd_n];
	pthread_mutex_unlock(&wd_lock);
}

static void wd_close_all(void)
{
	pthread_mutex_lock(&wd_lock);
	for (int i = 0; i < wd_n; i++)
		close(wd_fds[i]);
	wd_n = 0;
	pthread_mutex_unlock(&wd_lock);
}

static void *wd_main(void *arg)
{
	(void)arg;
	while (!wd_stop) {
		if (!ms_left(g_deadline)) {
			g_expired = 1;
			pthread_mutex_lock(&wd_lock);
			for (int i = 0; i < wd_n; i++)
				shutdown(wd_fds[i], SHUT_RDWR);
			pthread_mutex_unlock(&wd_lock);
			return NULL;
		}
		sleep_ms(10);
	}
	return NULL;
}

static void alarm_handler(int sig)
{
	static const char msg[] = "{\"error\":\"hard timeout: the probe did not finish (alarm)\"}\n";
	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(4);
	_exit(3);
}

static void watchdog_start(int timeout_ms)
{
	g_deadline = now_ms() + (uint64_t)timeout_ms;
	signal(SIGALRM, alarm_handler);
	alarm((unsigned)(timeout_ms / 1000) + 10);
	if (pthread_create(&wd_thread, NULL, wd_main, NULL))
		die("pthread_create: %s", strerror(errno));
}

static void watchdog_stop(void)
{
	wd_stop = 1;
	pthread_join(wd_thread, NULL);
}

#endif /* SKFP_PROBE_WATCHDOG_H */
