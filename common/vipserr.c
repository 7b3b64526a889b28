/* common/vipserr.c — one-step takes of libvips' process-wide error buffer (see vipserr.h). */
#include "common/vipserr.h"
#include "common/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

/* Held from the take to the putting back of other threads' lines, so that a thread whose line
 * was taken by another and is on its way back never finds the buffer without it. */
static pthread_mutex_t g_take_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t trimmed_len(const char *s, size_t n)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return n;
}

char *mp_vips_err_take(const char *mine)
{
    pthread_mutex_lock(&g_take_lock);
    char *all = vips_error_buffer_copy(); /* copies and empties under libvips' own lock */
    size_t n = all ? strlen(all) : 0;
    char *out = mp_xmalloc(2 * n + sizeof MP_VIPS_NO_MESSAGE); /* "; " for each newline */
    size_t o = 0;
    int have_mine = mine && *mine && all && strstr(all, mine);
    for (char *line = all; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char save = line[len];
        line[len] = 0;
        size_t t = trimmed_len(line, len);
        if (t) {
            if (!have_mine || strstr(line, mine)) {
                if (o) { memcpy(out + o, "; ", 2); o += 2; }
                memcpy(out + o, line, t);
                o += t;
            } else {
                line[t] = 0;
                vips_error(NULL, "%s", line); /* another thread's: back where it will look */
            }
        }
        line[len] = save;
        line = nl ? nl + 1 : NULL;
    }
    pthread_mutex_unlock(&g_take_lock);
    g_free(all);
    if (!o) { memcpy(out, MP_VIPS_NO_MESSAGE, sizeof MP_VIPS_NO_MESSAGE); return out; }
    out[o] = 0;
    return out;
}

char *mp_vips_err_take_into(char *buf, size_t cap, const char *mine)
{
    char *m = mp_vips_err_take(mine);
    if (cap) snprintf(buf, cap, "%s", m);
    free(m);
    return buf;
}
