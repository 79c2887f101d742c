// SPDX-License-Identifier: MIT
/* skfp-run CGROUP_DIR NETNS_PATH PROG [ARGS...]
 * Joins a cgroup v2 directory and a network namespace, then execs PROG. Sockets inherit the
 * cgroup at creation, so the process must be inside before it opens any: this is why skfp
 * uses a launcher instead of moving a running process. "-" skips either part. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, const char *arg)
{
	fprintf(stderr, "skfp-run: %s %s: %s\n", what, arg, strerror(errno));
	return 127;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: skfp-run CGROUP_DIR|- NETNS_PATH|- PROG [ARGS...]\n");
		return 2;
	}
	if (strcmp(argv[1], "-") != 0) {
		char path[4096], pid[32];
		snprintf(path, sizeof(path), "%s/cgroup.procs", argv[1]);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return fail("open", path);
		int n = snprintf(pid, sizeof(pid), "%d\n", getpid());
		if (write(fd, pid, n) != n)
			return fail("join cgroup", argv[1]);
		close(fd);
	}
	if (strcmp(argv[2], "-") != 0) {
		int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail("open", argv[2]);
		if (setns(fd, CLONE_NEWNET) < 0)
			return fail("setns", argv[2]);
		close(fd);
	}
	execvp(argv[3], argv + 3);
	return fail("exec", argv[3]);
}
