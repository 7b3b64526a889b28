/* common/error.c — thread-local last-error message. */
#include "common/error.h"

#include <stdio.h>
#include <string.h>

#define MP_ERR_MAX 1024
static _Thread_local char err_buf[MP_ERR_MAX];

int mp_err_setv(const char *fmt, va_list ap)
{
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    /* One line: a multi-line message from a library is folded. */
    for (char *p = err_buf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    size_t n = strlen(err_buf);
    while (n && err_buf[n - 1] == ' ') err_buf[--n] = 0;
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
