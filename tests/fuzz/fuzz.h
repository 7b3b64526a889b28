/* tests/fuzz/fuzz.h — shared by the libFuzzer targets: the input as a named file (for the
 * importers that take a path) and the check every parser must pass on failure. */
#ifndef MP_FUZZ_H
#define MP_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/error.h"

/* A failing parser must leave a message: an empty one means an error path forgot to set it. */
static inline void fuzz_check_err(int rc)
{
    if (rc != 0 && !*mp_err()) {
        fprintf(stderr, "parser failed without an error message\n");
        abort();
    }
}

/* The input in an anonymous in-memory file, reachable by path through /proc (no disk I/O,
 * nothing left behind). The path is written to path[64]; returns the fd to close. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path)
{
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    size_t at = 0;
    while (at < size) {
        ssize_t w = write(fd, data + at, size - at);
        if (w <= 0) {
            perror("write");
            abort();
        }
        at += (size_t)w;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

#endif
