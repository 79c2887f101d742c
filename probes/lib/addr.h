/* SPDX-License-Identifier: MIT */
/* IPv4/IPv6 addresses with ports: parsing, printing, v4-mapped forms.
 * Part of the probes' shared helpers (probes/common.h). */
#ifndef SKFP_PROBES_ADDR_H
#define SKFP_PROBES_ADDR_H

#include "base.h"
#include "json.h"

/* ---- addresses --------------------------------------------------------- */

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* An IP address literal (v4 or v6, brackets allowed) and a port. */
static UNUSED int addr_from_ip(struct addr *a, const char *ip, unsigned port)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(ip);

	memset(a, 0, sizeof(*a));
	if (n >= sizeof(buf))
		return -1;
	if (ip[0] == '[' && n >= 2 && ip[n - 1] == ']') {
		memcpy(buf, ip + 1, n - 2);
		buf[n - 2] = 0;
	} else {
		memcpy(buf, ip, n + 1);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
	if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		a->len = sizeof(*s4);
		return 0;
	}
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		a->len = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* "1.2.3.4:80", "[::1]:80". Dies on garbage. */
static UNUSED void parse_addrport(const char *opt, const char *s, struct addr *a)
{
	char ip[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	long port;

	if (!colon || (size_t)(colon - s) >= sizeof(ip))
		die("%s: expected ADDR:PORT or [ADDR6]:PORT: %s", opt, s);
	if (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)))
		die("%s: IPv6 addresses need brackets: [%.*s]:PORT", opt, (int)(colon - s), s);
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = 0;
	port = parse_long(opt, colon + 1, 0, 65535);
	if (addr_from_ip(a, ip, (unsigned)port))
		die("%s: not an IP address: %s", opt, ip);
}

static UNUSED int addr_family(const struct addr *a)
{
	return a->ss.ss_family;
}

static UNUSED unsigned addr_port(const struct addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static UNUSED void addr_set_port(struct addr *a, unsigned port)
{
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
}

/* "1.2.3.4:80" / "[::1]:80" into buf. */
static UNUSED const char *addr_str(const struct addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (a->ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, addr_port(a));
	} else {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, addr_port(a));
	}
	return buf;
}

/* ::ffff:a.b.c.d -> a.b.c.d (AF_INET); anything else unchanged. */
static UNUSED void addr_unmap_v4(struct addr *a)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
	struct sockaddr_in s4;

	if (a->ss.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		return;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = s6->sin6_port;
	memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
	memset(&a->ss, 0, sizeof(a->ss));
	memcpy(&a->ss, &s4, sizeof(s4));
	a->len = sizeof(s4);
}

static UNUSED int addr_is_v6_any(const struct addr *a)
{
	return a->ss.ss_family == AF_INET6 &&
	       IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

#endif /* SKFP_PROBES_ADDR_H */
