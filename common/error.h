/* common/error.h — the error convention every magpie library follows.
 * A failing function returns -1 (or NULL) and leaves a one-line message, readable with
 * mp_err(), in a thread-local buffer. Messages name the file and the reason:
 * "slide.svs: not a slide OpenSlide can read". Only main() prints and exits.
 * common/ as a whole: small libc-level helpers every folder uses, one header per job (error.h,
 * log.h, opt.h, util.h, rng.h, cpu.h, colormap.h, plot.h, strindex.h), no vendor header in any
 * of them; each states who frees what it returns and what may be called from several threads. */
#ifndef MP_ERROR_H
#define MP_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* Exit codes of the magpie command (DESIGN.md). */
enum { MP_EXIT_OK = 0, MP_EXIT_USAGE = 1, MP_EXIT_FAIL = 2, MP_EXIT_PARTIAL = 3 };

/* Set the thread's last error (printf format). Always returns -1 so callers can
 * `return mp_err_set(...)`. */
int mp_err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int mp_err_setv(const char *fmt, va_list ap);
/* Prefix the current message: "ctx: <old message>". Returns -1. */
int mp_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The thread's last error ("" if none). Valid until the next mp_err_set on this thread. */
const char *mp_err(void);
void mp_err_clear(void);

/* Copy s into out (cap bytes, always NUL-terminated) with every control character (bytes below
 * 0x20, and 0x7f) written as a visible escape: \n, \r, \t, else \xHH. A file name holding a
 * newline or a terminal escape then cannot break or recolour a one-line message. Backslashes
 * are left alone, so escaping twice changes nothing. Every error (mp_err_set) and every log
 * line (mp_info, mp_warn, mp_error) goes through it. Returns out. */
char *mp_escape_ctrl(const char *s, char *out, size_t cap);

#endif
