/*
 * fuzz_common.h: what the harnesses share. conf_load and rules_load read
 * a path; the input goes to an anonymous memory file (memfd) named by its
 * /proc/self/fd path, so nothing touches the disk and the loaders run
 * unchanged.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

/* The input as a file: the same memfd every run, rewritten. */
static inline const char *
fuzz_file(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	size_t off = 0;

	if (fd < 0) {
		if ((fd = memfd_create("edm-fuzz", 0)) < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0)
		abort();
	while (off < size) {
		ssize_t n = pwrite(fd, data + off, size - off, (off_t)off);

		if (n <= 0)
			abort();
		off += (size_t)n;
	}
	return path;
}

/* Log lines to stderr, warnings and worse only: the fuzzer's own output
 * stays readable. FUZZ_LOG=debug shows everything. */
static inline void
fuzz_quiet_log(void)
{
	const char *l = getenv("FUZZ_LOG");

	log_init("edm-fuzz", LOG_MAIL, 1);
	log_set_level(l && *l ? LOG_DEBUG : LOG_ERR);
}

/* A trap the fuzzer reports as a crash, with what was wrong. */
#define FUZZ_CHECK(cond)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n",         \
				__FILE__, __LINE__, #cond);                  \
			abort();                                             \
		}                                                            \
	} while (0)

#endif
