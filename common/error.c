/* common/error.c — thread-local last-error message. */
#include "common/error.h"

#include <stdio.h>
#include <string.h>

#define MP_ERR_MAX 1024
static _Thread_local char err_buf[MP_ERR_MAX];

char *mp_escape_ctrl(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (!cap) return out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[5];
        size_t n = 0;
        if (*p >= 0x20 && *p != 0x7f) e[n++] = (char)*p;
        else {
            e[n++] = '\\';
            if (*p == '\n') e[n++] = 'n';
            else if (*p == '\r') e[n++] = 'r';
            else if (*p == '\t') e[n++] = 't';
            else {
                e[n++] = 'x';
                e[n++] = hex[*p >> 4];
                e[n++] = hex[*p & 15];
            }
        }
        if (o + n >= cap) break; /* an escape is never cut in half */
        memcpy(out + o, e, n);
        o += n;
    }
    out[o] = 0;
    return out;
}

int mp_err_setv(const char *fmt, va_list ap)
{
    char raw[MP_ERR_MAX];
    vsnprintf(raw, sizeof raw, fmt, ap);
    /* Libraries end their messages with a newline: drop trailing ones; any other control
     * character (a newline inside a file name, an escape) is shown escaped, on one line. */
    size_t n = strlen(raw);
    while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r' || raw[n - 1] == ' ')) raw[--n] = 0;
    mp_escape_ctrl(raw, err_buf, sizeof err_buf);
    return -1;
}

int mp_err_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_err_setv(fmt, ap);
    va_end(ap);
    return -1;
}

int mp_err_prefix(const char *fmt, ...)
{
    char old[MP_ERR_MAX], pre[MP_ERR_MAX];
    memcpy(old, err_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(err_buf, sizeof err_buf, "%.300s: %.700s", pre, old);
    return -1;
}

const char *mp_err(void) { return err_buf; }
void mp_err_clear(void) { err_buf[0] = 0; }
