/* common/util.h — checked I/O and small helpers shared by every library.
 * Errors as common/error.h (-1 + mp_err "PATH: reason"); the mp_x* allocators abort instead, for
 * small bounded sizes only. What a function allocates (mp_read_file's buffer, mp_xstrdup) is the
 * caller's to free. No hidden state: every function may be called from any thread (an
 * mp_atomic_file belongs to one). */
#ifndef MP_UTIL_H
#define MP_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Allocation that aborts on out-of-memory (used for small, bounded allocations). */
void *mp_xmalloc(size_t n);
void *mp_xcalloc(size_t n, size_t sz);
void *mp_xrealloc(void *p, size_t n);
char *mp_xstrdup(const char *s);
/* Allocation that fails softly, for sizes that come from an input file (a slide's dimensions, a
 * tile's size, a grid): NULL + mp_err "out of memory (N bytes for WHAT)" so that the caller fails
 * that one input (prefixing its name) and the process goes on with the others. n*sz overflowing
 * fails the same way. mp_try_realloc leaves p untouched on failure.
 * Fault injection for tests: MAGPIE_ALLOC_FAIL=N makes the Nth mp_try_* call of the process fail
 * (counted from 1, every thread together); unset, the check is one relaxed load. Above 4 MiB the
 * memory comes from mp_alloc_big (below); all of it is released with free(). */
void *mp_try_malloc(size_t n, const char *what);
void *mp_try_calloc(size_t n, size_t sz, const char *what);
void *mp_try_realloc(void *p, size_t n, const char *what);
/* A large working buffer (an activation arena, parameters), freed with free(); NULL on failure,
 * no mp_err (the caller says what it was for). Up to 4 MiB it is aligned_alloc(64, n); above, it
 * is aligned to 2 MiB, rounded up to 2 MiB and offered to transparent huge pages (madvise), so
 * that its first touch costs one page fault per 2 MiB instead of one per 4 KiB where the kernel
 * allows it (THP "madvise" or "always"); elsewhere the hint is ignored. */
void *mp_alloc_big(size_t n);

/* Open PATH read-only if it is a regular file (symlinks followed). A FIFO, device, socket or
 * directory is refused without blocking: the open is O_NONBLOCK (a FIFO with no writer would
 * otherwise wait forever) and the kind is checked with fstat on what was opened. Returns the
 * fd, back in blocking mode, or -1 + mp_err "PATH: reason" (e.g. "is a FIFO, not a file"). */
int mp_open_regular(const char *path);
/* mp_open_regular as a stdio stream ("rb"); NULL + mp_err on failure. */
FILE *mp_fopen_regular(const char *path);

/* A file or directory name made from untrusted text (a slide's file name), safe to put under a
 * directory the user gave. The rule: every '/', '\\' and control character becomes '_'; a name
 * that is "." or ".." has its dots replaced by '_' ("_" and "__"); an empty name becomes "_";
 * at most MP_SAFE_NAME_MAX bytes are kept (cut on a UTF-8 character boundary), which leaves
 * room under NAME_MAX (255) for suffixes such as ".tmp.PID". Returns out. */
#define MP_SAFE_NAME_MAX 200
char *mp_safe_name(const char *in, char *out, size_t cap);
/* A slide's (or patch's) name from its path: the file name without its last extension
 * ("a/b/TCGA-1.svs" → "TCGA-1"; a name that is all extension, ".svs", is kept whole). Not made
 * safe: use mp_safe_name before putting it in a path. Returns out. */
char *mp_path_stem(const char *path, char *out, size_t cap);

/* Read a whole file (a regular file: see mp_open_regular); *out is malloc'd (NUL-terminated, not counted in *len). -1 + mp_err on failure. */
int mp_read_file(const char *path, uint8_t **out, size_t *len);
/* Atomic files (common/atomic.c), the one writer for every file magpie writes whole: the data
 * goes to PATH.tmp.<pid>, is fsynced and renamed over PATH, and the directory is fsynced, so PATH
 * is the old file or the whole new one. Every failure removes the temporary and leaves one line
 * "PATH: reason" (the system's reason). */
int mp_write_file_atomic(const char *path, const void *data, size_t len);
/* The same streamed: open, write as often as needed, then commit (or abort). A failed write or
 * commit has already removed the temporary. */
typedef struct {
    int fd;
    char path[4096], tmp[4200];
} mp_atomic_file;
int mp_atomic_open(mp_atomic_file *f, const char *path);
int mp_atomic_write(mp_atomic_file *f, const void *data, size_t len);
int mp_atomic_commit(mp_atomic_file *f);
void mp_atomic_abort(mp_atomic_file *f);
/* For files a library writes by name (libtiff, libvips, libpng through stdio): the temporary's
 * name for PATH, and the commit of that temporary once the library has closed it. */
void mp_atomic_tmp_name(char *tmp, size_t cap, const char *path);
int mp_atomic_commit_tmp(const char *tmp, const char *path);
/* Create a directory and its parents (mode 0755); existing is fine. */
int mp_mkdir_p(const char *path);
int mp_file_exists(const char *path);
int64_t mp_file_size(const char *path); /* -1 if missing */

/* Strict number parsing: the whole string must be consumed. Return -1 on failure. */
int mp_parse_double(const char *s, double *out);
int mp_parse_long(const char *s, long *out);
/* Parse a comma list of doubles ("10,1.25"); returns count or -1. */
int mp_parse_double_list(const char *s, double *out, int max);

/* For hand-written option loops, so that "--name VALUE" and "--name=VALUE" mean the same (as with
 * getopt_long): for "--name=VALUE" copies "--name" into name (cap bytes) and returns VALUE; for any
 * other argument returns NULL and leaves name empty. */
const char *mp_opt_split(const char *arg, char *name, size_t cap);

uint32_t mp_crc32(uint32_t crc, const void *data, size_t len); /* zlib's CRC-32 */

/* Format a byte count as "1.2 MiB". Returns buf. */
char *mp_fmt_bytes(char *buf, size_t n, double bytes);

/* Peak resident set size of this process in bytes (from getrusage). */
int64_t mp_peak_rss(void);

/* Flush denormal floats to zero (x86 MXCSR FTZ+DAZ) in the calling thread; threads it creates
 * afterwards inherit the setting. Tiny Adam moments and colour-jitter intermediates otherwise
 * fall into the denormal range, where each operation costs ~100x (a training epoch went from
 * 6.5 s to 20 s). No-op on other architectures. */
void mp_fp_flush_denormals(void);

#endif
