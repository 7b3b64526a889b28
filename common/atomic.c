/* common/atomic.c — the one atomic file writer: everything magpie writes whole (checkpoints,
 * masks, PNGs, JSON, TIFFs) goes to PATH.tmp.<pid> first, is fsynced, renamed over PATH and the
 * directory fsynced, so a kill or a full disk leaves the old file or the new one, never half.
 * Writes are plain write(2)s, so a full disk fails with the system's reason. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"

void mp_atomic_tmp_name(char *tmp, size_t cap, const char *path)
{
    snprintf(tmp, cap, "%s.tmp.%d", path, (int)getpid());
}

int mp_atomic_open(mp_atomic_file *f, const char *path)
{
    snprintf(f->path, sizeof f->path, "%s", path);
    mp_atomic_tmp_name(f->tmp, sizeof f->tmp, path);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0) return mp_err_set("%s: %s", f->tmp, strerror(errno));
    return 0;
}

void mp_atomic_abort(mp_atomic_file *f)
{
    if (f->fd < 0) return;
    close(f->fd);
    unlink(f->tmp);
    f->fd = -1;
}

int mp_atomic_write(mp_atomic_file *f, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            mp_atomic_abort(f);
            return mp_err_set("%s: write failed: %s", f->path, strerror(e));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* rename tmp over path and make the rename itself durable (fsync of the directory) */
static int replace(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return mp_err_set("%s: rename failed: %s", path, strerror(e));
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int mp_atomic_commit(mp_atomic_file *f)
{
    int fd = f->fd;
    f->fd = -1;
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(f->tmp);
        return mp_err_set("%s: fsync failed: %s", f->path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(f->tmp);
        return mp_err_set("%s: write failed: %s", f->path, strerror(e));
    }
    return replace(f->tmp, f->path);
}

int mp_atomic_commit_tmp(const char *tmp, const char *path)
{
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return mp_err_set("%s: %s", tmp, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    if (r) {
        unlink(tmp);
        return mp_err_set("%s: fsync failed: %s", path, strerror(e));
    }
    return replace(tmp, path);
}

int mp_write_file_atomic(const char *path, const void *data, size_t len)
{
    mp_atomic_file f;
    if (mp_atomic_open(&f, path) < 0 || mp_atomic_write(&f, data, len) < 0) return -1;
    return mp_atomic_commit(&f);
}
