/* tests/faults/faultshim.c — an LD_PRELOAD shim that injects write faults into files whose path
 * contains $MP_FAULT_PATH (default: every file opened for writing):
 *   MP_FAULT=enospc  after $MP_FAULT_BYTES bytes have gone to such files, every further write
 *                    fails with ENOSPC (a disk that fills up; the write that crosses the limit
 *                    is short, as on a real disk)
 *   MP_FAULT=kill    the write that crosses $MP_FAULT_BYTES writes its first part, then the
 *                    process is SIGKILLed (a crash in the middle of writing a file)
 * write, pwrite, pwrite64 and writev are covered (SQLite uses pwrite64, magpie's files write). */
/* Both the plain and the 64-bit names are defined here, so no header may alias one to the other. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { MAXFD = 65536 };
static unsigned char watched[MAXFD];
static long long budget = -1; /* bytes left before the fault; -1: not configured */
static int mode;               /* 1 enospc, 2 kill */
static const char *pattern;

static void setup(void)
{
    static int done;
    if (done) return;
    done = 1;
    const char *m = getenv("MP_FAULT"), *b = getenv("MP_FAULT_BYTES");
    if (!m || !b) return;
    mode = !strcmp(m, "enospc") ? 1 : !strcmp(m, "kill") ? 2 : 0;
    budget = mode ? atoll(b) : -1;
    pattern = getenv("MP_FAULT_PATH");
}

static void track(int fd, const char *path, int flags)
{
    setup();
    if (fd >= 0 && fd < MAXFD)
        watched[fd] = budget >= 0 && (flags & (O_WRONLY | O_RDWR)) && (!pattern || strstr(path, pattern));
}

#define OPEN_WRAPPER(name, ...)                                                        \
    int name(__VA_ARGS__, int flags, ...)                                              \
    {                                                                                  \
        static int (*real)();                                                          \
        if (!real) real = (int (*)())dlsym(RTLD_NEXT, #name);                          \
        mode_t md = 0;                                                                 \
        if (flags & (O_CREAT | O_TMPFILE)) {                                           \
            va_list ap;                                                                \
            va_start(ap, flags);                                                       \
            md = va_arg(ap, mode_t);                                                   \
            va_end(ap);                                                                \
        }                                                                              \
        int fd = OPEN_CALL;                                                            \
        track(fd, path, flags);                                                        \
        return fd;                                                                     \
    }
#define OPEN_CALL real(path, flags, md)
OPEN_WRAPPER(open, const char *path)
OPEN_WRAPPER(open64, const char *path)
#undef OPEN_CALL
#define OPEN_CALL real(dirfd, path, flags, md)
OPEN_WRAPPER(openat, int dirfd, const char *path)
OPEN_WRAPPER(openat64, int dirfd, const char *path)

/* How much of an n-byte write to let through (-1: fail it now). */
static ssize_t allow(int fd, size_t n)
{
    if (fd < 0 || fd >= MAXFD || !watched[fd] || budget < 0) return (ssize_t)n;
    if ((long long)n <= budget) {
        budget -= (long long)n;
        return (ssize_t)n;
    }
    ssize_t part = (ssize_t)budget;
    budget = 0;
    if (part == 0) {
        if (mode == 2) raise(SIGKILL);
        errno = ENOSPC;
        return -1;
    }
    return part;
}

static void after(int fd, ssize_t part, size_t n)
{
    if (mode == 2 && fd >= 0 && fd < MAXFD && watched[fd] && (size_t)part < n) raise(SIGKILL);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    ssize_t k = allow(fd, n);
    if (k < 0) return -1;
    ssize_t w = real(fd, buf, (size_t)k);
    after(fd, k, n);
    return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    ssize_t k = allow(fd, n);
    if (k < 0) return -1;
    ssize_t w = real(fd, buf, (size_t)k, off);
    after(fd, k, n);
    return w;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
    ssize_t k = allow(fd, n);
    if (k < 0) return -1;
    ssize_t w = real(fd, buf, (size_t)k, off);
    after(fd, k, n);
    return w;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real) real = (ssize_t (*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    size_t n = 0;
    for (int i = 0; i < cnt; i++) n += iov[i].iov_len;
    if (fd >= 0 && fd < MAXFD && watched[fd] && budget >= 0 && (long long)n > budget) {
        /* rare (stdio on watched files): fail whole rather than split the vector */
        budget = 0;
        if (mode == 2) raise(SIGKILL);
        errno = ENOSPC;
        return -1;
    }
    if (fd >= 0 && fd < MAXFD && watched[fd] && budget >= 0) budget -= (long long)n;
    return real(fd, iov, cnt);
}
