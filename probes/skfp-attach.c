/* SPDX-License-Identifier: MIT */
/* skfp-attach: loads a BPF object whose programs bpftool 7.1 cannot attach
 * (fentry/fexit: the adaptive fastpath's readers.bpf.o), attaches each
 * program and pins its link, so the programs stay attached after this
 * process exits and an unlink detaches them.
 *
 *   skfp-attach OBJ LINKDIR MAPDIR...   every map of OBJ must be pinned under
 *                                       one of the MAPDIRs (by its name): the
 *                                       object shares the instance's maps and
 *                                       creates none; links go to
 *                                       LINKDIR/<program name>
 *   skfp-attach --check OBJ MAPDIR...   load and attach, then detach: whether
 *                                       this kernel takes them
 *
 * Exit 0, or 1 with libbpf's and the verifier's output on stderr and no link
 * left pinned. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define MAX_LINKS 16

static int print_all(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static int usage(void)
{
	fprintf(stderr, "usage: skfp-attach OBJ LINKDIR MAPDIR... | skfp-attach --check OBJ MAPDIR...\n");
	return 2;
}

/* The pinned map of that name under one of the dirs, as an fd; -1 if none. */
static int pinned_map(const char *name, char **dirs, int ndirs)
{
	char path[PATH_MAX];

	for (int i = 0; i < ndirs; i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
		if (access(path, F_OK) == 0)
			return bpf_obj_get(path);
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct bpf_link *links[MAX_LINKS];
	char pins[MAX_LINKS][PATH_MAX];
	const char *obj_path, *link_dir = NULL;
	int check = argc > 1 && strcmp(argv[1], "--check") == 0;
	int first_dir = 3, nlinks = 0, rc = 1;
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct bpf_map *map;

	if (argc < 4)
		return usage();
	obj_path = argv[check ? 2 : 1];
	if (!check)
		link_dir = argv[2];
	libbpf_set_print(print_all);
	obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) {
		fprintf(stderr, "skfp-attach: cannot open %s: %s\n", obj_path, strerror(errno));
		return 1;
	}
	bpf_object__for_each_map(map, obj) {
		int fd = pinned_map(bpf_map__name(map), argv + first_dir, argc - first_dir);
		if (fd < 0 || bpf_map__reuse_fd(map, fd)) {
			fprintf(stderr, "skfp-attach: map %s is not pinned under the given directories\n", bpf_map__name(map));
			goto out;
		}
		close(fd);
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "skfp-attach: the kernel refused %s\n", obj_path);
		goto out;
	}
	bpf_object__for_each_program(prog, obj) {
		if (nlinks == MAX_LINKS) {
			fprintf(stderr, "skfp-attach: more than %d programs\n", MAX_LINKS);
			goto out;
		}
		links[nlinks] = bpf_program__attach(prog);
		if (!links[nlinks]) {
			fprintf(stderr, "skfp-attach: cannot attach %s: %s\n", bpf_program__name(prog), strerror(errno));
			goto out;
		}
		nlinks++;
		if (check)
			continue;
		snprintf(pins[nlinks - 1], PATH_MAX, "%s/%s", link_dir, bpf_program__name(prog));
		if (bpf_link__pin(links[nlinks - 1], pins[nlinks - 1])) {
			fprintf(stderr, "skfp-attach: cannot pin %s: %s\n", pins[nlinks - 1], strerror(errno));
			pins[nlinks - 1][0] = 0;
			goto out;
		}
	}
	rc = 0;
out:
	for (int i = 0; i < nlinks; i++) {
		if (rc && !check && pins[i][0])
			bpf_link__unpin(links[i]);
		bpf_link__destroy(links[i]); /* a pinned link stays attached */
	}
	bpf_object__close(obj);
	return rc;
}
