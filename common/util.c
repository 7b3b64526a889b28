/* common/util.c — checked I/O and small helpers. */
#include "common/util.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

void *mp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "magpie: out of memory (%zu bytes)\n", n); abort(); }
    return p;
}

void *mp_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) { fprintf(stderr, "magpie: out of memory (%zu x %zu bytes)\n", n, sz); abort(); }
    return p;
}

void *mp_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "magpie: out of memory (%zu bytes)\n", n); abort(); }
    return q;
}

/* MAGPIE_ALLOC_FAIL: 0 = not read yet, -1 = unset, N > 0 = fail the Nth call. */
static _Atomic long g_alloc_fail_at;
static _Atomic long g_alloc_calls;

static int alloc_injected(void)
{
    long at = atomic_load_explicit(&g_alloc_fail_at, memory_order_relaxed);
    if (at == 0) {
        const char *e = getenv("MAGPIE_ALLOC_FAIL");
        long v = -1;
        if (e && *e && (mp_parse_long(e, &v) || v < 1)) v = -1;
        long zero = 0;
        atomic_compare_exchange_strong(&g_alloc_fail_at, &zero, v);
        at = atomic_load(&g_alloc_fail_at);
    }
    if (at < 0) return 0;
    return atomic_fetch_add(&g_alloc_calls, 1) + 1 == at;
}

static void *oom(size_t n, size_t sz, const char *what, int injected)
{
    const char *w = what ? what : "a buffer";
    if (sz == 1) mp_err_set("out of memory (%zu bytes for %s)%s", n, w, injected ? " [MAGPIE_ALLOC_FAIL]" : "");
    else mp_err_set("out of memory (%zu x %zu bytes for %s)%s", n, sz, w, injected ? " [MAGPIE_ALLOC_FAIL]" : "");
    return NULL;
}

/* Slide-sized buffers (thumbnails, masks, rasters) take mp_alloc_big's huge pages too. */
#define BIG_FROM ((size_t)4 << 20)

void *mp_try_malloc(size_t n, const char *what)
{
    if (alloc_injected()) return oom(n, 1, what, 1);
    void *p = n > BIG_FROM ? mp_alloc_big(n) : malloc(n ? n : 1);
    return p ? p : oom(n, 1, what, 0);
}

void *mp_try_calloc(size_t n, size_t sz, const char *what)
{
    if (alloc_injected()) return oom(n, sz, what, 1);
    if (sz && n > SIZE_MAX / sz) return oom(n, sz, what, 0);
    void *p;
    if (n * sz > BIG_FROM) {
        if ((p = mp_alloc_big(n * sz))) memset(p, 0, n * sz);
    } else {
        p = calloc(n ? n : 1, sz ? sz : 1);
    }
    return p ? p : oom(n, sz, what, 0);
}

void *mp_try_realloc(void *p, size_t n, const char *what)
{
    if (alloc_injected()) return oom(n, 1, what, 1);
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n, 1, what, 0);
}

void *mp_alloc_big(size_t n)
{
    const size_t huge = (size_t)2 << 20;
    if (n <= BIG_FROM) return aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (n > SIZE_MAX - huge) return NULL;
    n = (n + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

char *mp_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mp_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int mp_open_regular(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return mp_err_set("%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return mp_err_set("%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        const char *kind = S_ISDIR(sb.st_mode)                            ? "a directory"
                           : S_ISFIFO(sb.st_mode)                         ? "a FIFO (named pipe)"
                           : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode)   ? "a device"
                           : S_ISSOCK(sb.st_mode)                         ? "a socket"
                                                                          : "not a regular file";
        return mp_err_set("%s: is %s, not a file", path, kind);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

char *mp_path_stem(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    snprintf(out, cap, "%s", b ? b + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
    return out;
}

char *mp_safe_name(const char *in, char *out, size_t cap)
{
    if (!cap) return out;
    size_t lim = cap - 1 < MP_SAFE_NAME_MAX ? cap - 1 : MP_SAFE_NAME_MAX, n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && n < lim; p++)
        out[n++] = (*p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f) ? '_' : (char)*p;
    /* cut short inside a multi-byte character: drop its leading bytes */
    if (in[n] && n > 0 && ((unsigned char)in[n] & 0xC0) == 0x80) {
        while (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0x80) n--;
        if (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0xC0) n--;
    }
    out[n] = 0;
    /* "." and ".." name the directory itself and its parent */
    if (n == 0 || !strcmp(out, ".") || !strcmp(out, "..")) snprintf(out, cap, "%s", n == 2 ? "__" : "_");
    return out;
}

FILE *mp_fopen_regular(const char *path)
{
    int fd = mp_open_regular(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        mp_err_set("%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int mp_read_file(const char *path, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = mp_fopen_regular(path);
    if (!f) return -1;
    if (fseeko(f, 0, SEEK_END) != 0) { fclose(f); return mp_err_set("%s: cannot seek", path); }
    off_t n = ftello(f);
    if (n < 0) { fclose(f); return mp_err_set("%s: cannot tell size", path); }
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf) { fclose(f); return mp_err_set("%s: out of memory reading %lld bytes", path, (long long)n); }
    if (n && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return mp_err_set("%s: read error", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    return 0;
}

int mp_mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return mp_err_set("%s: bad directory path", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return mp_err_set("%s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return mp_err_set("%s: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return mp_err_set("%s: not a directory", buf);
    return 0;
}

int mp_file_exists(const char *path) { return access(path, F_OK) == 0; }

int64_t mp_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    return (int64_t)st.st_size;
}

int mp_parse_double(const char *s, double *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int mp_parse_long(const char *s, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

const char *mp_opt_split(const char *arg, char *name, size_t cap)
{
    const char *eq = arg[0] == '-' && arg[1] == '-' ? strchr(arg, '=') : NULL;
    if (cap) name[0] = 0;
    if (!eq || (size_t)(eq - arg) >= cap) return NULL;
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = 0;
    return eq + 1;
}

int mp_parse_double_list(const char *s, double *out, int max)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        char tok[64];
        if (len == 0 || len >= sizeof tok || n >= max) return -1;
        memcpy(tok, p, len);
        tok[len] = 0;
        if (mp_parse_double(tok, &out[n++]) != 0) return -1;
        if (!q) break;
        p = q + 1;
        if (!*p) return -1;
    }
    return n ? n : -1;
}

uint32_t mp_crc32(uint32_t crc, const void *data, size_t len)
{
    /* zlib takes uInt lengths; feed large buffers in chunks. */
    const uint8_t *p = data;
    while (len) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return crc;
}

char *mp_fmt_bytes(char *buf, size_t n, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) { b /= 1024; i++; }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return buf;
}

int64_t mp_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return (int64_t)ru.ru_maxrss * 1024;
}

void mp_fp_flush_denormals(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ (bit 15) | DAZ (bit 6) */
#endif
}
