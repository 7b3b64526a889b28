/* common/vipserr.h — taking libvips' error message, safely from any thread.
 * libvips keeps one error buffer for the whole process. Reading it (vips_error_buffer) and then
 * clearing it (vips_error_clear) in two steps loses or mixes the messages of threads that fail
 * at the same time, and the pointer read may be rewritten while it is formatted. These take the
 * buffer in one step; they are the only place in magpie that empties it. */
#ifndef MP_VIPSERR_H
#define MP_VIPSERR_H

#include <stddef.h>

/* Text for a libvips call that failed without leaving a message. */
#define MP_VIPS_NO_MESSAGE "libvips failed without a message"

/* Take libvips' error buffer: the buffer is emptied and its lines are returned, trimmed of the
 * trailing newline and spaces, joined by "; " so the message stays on one line. MINE (may be
 * NULL) is text the caller's own failure names, usually a file path: when given and some line
 * holds it, only those lines are taken and the others are left in the buffer for the thread
 * they belong to. An empty buffer gives MP_VIPS_NO_MESSAGE. The result is malloc'd (the caller
 * frees it with free) and never NULL. */
char *mp_vips_err_take(const char *mine);
/* The same copied into buf (cap bytes, always NUL-terminated, cut if longer). Returns buf. */
char *mp_vips_err_take_into(char *buf, size_t cap, const char *mine);

#endif
