/* SPDX-License-Identifier: MIT */
/* What every part of the probes' shared helpers needs: the system headers.
 * libc only (pthreads are part of glibc >= 2.34). Everything is static:
 * each program is one translation unit. */
#ifndef SKFP_PROBES_BASE_H
#define SKFP_PROBES_BASE_H

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

#endif /* SKFP_PROBES_BASE_H */
