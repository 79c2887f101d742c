/* SPDX-License-Identifier: GPL-2.0 */
/* Includes, constants and small helpers every skfp program uses. */
#ifndef SKFP_LIB_COMMON_H
#define SKFP_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../skfp.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Tracing output only in `skfp build --debug` objects. */
#ifdef SKFP_DEBUG
#define skfp_dbg(fmt, ...) bpf_printk(fmt, ##__VA_ARGS__)
#else
#define skfp_dbg(fmt, ...) do { } while (0)
#endif

#endif /* SKFP_LIB_COMMON_H */
