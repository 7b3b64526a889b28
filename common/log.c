/* common/log.c — stderr messages and the progress reporter. */
#include "common/log.h"
#include "common/error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_quiet;

void mp_log_set_quiet(int q) { g_quiet = q; }
int mp_log_quiet(void) { return g_quiet; }

static void vlog(const char *tag, const char *fmt, va_list ap)
{
    char buf[2048], esc[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* one message, one line, whatever the file names in it hold */
    fprintf(stderr, "%s%s\n", tag, mp_escape_ctrl(buf, esc, sizeof esc));
}

void mp_info(const char *fmt, ...)
{
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void mp_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("magpie: warning: ", fmt, ap);
    va_end(ap);
}

void mp_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("magpie: error: ", fmt, ap);
    va_end(ap);
}

double mp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int mp_progress_parse(const char *s, mp_progress_mode *out)
{
    if (!strcmp(s, "auto")) *out = MP_PROGRESS_AUTO;
    else if (!strcmp(s, "tty") || !strcmp(s, "bar")) *out = MP_PROGRESS_TTY;
    else if (!strcmp(s, "json")) *out = MP_PROGRESS_JSON;
    else if (!strcmp(s, "none")) *out = MP_PROGRESS_NONE;
    else return -1;
    return 0;
}

struct mp_progress {
    mp_progress_mode mode;
    char task[64], unit[32];
    uint64_t total, done;
    double t0, last;
    pthread_mutex_t mu;
};

mp_progress *mp_progress_new(mp_progress_mode mode, const char *task, uint64_t total, const char *unit)
{
    mp_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (mode == MP_PROGRESS_AUTO) mode = isatty(2) ? MP_PROGRESS_TTY : MP_PROGRESS_NONE;
    if (g_quiet && mode == MP_PROGRESS_TTY) mode = MP_PROGRESS_NONE;
    p->mode = mode;
    mp_escape_ctrl(task ? task : "", p->task, sizeof p->task); /* a slide's name, often */
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "items");
    p->total = total;
    p->t0 = p->last = mp_now();
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h) snprintf(buf, n, "%d:%02d:%02d", h, m, sec);
    else snprintf(buf, n, "%02d:%02d", m, sec);
}

static void draw(mp_progress *p, const char *extra, int final)
{
    double now = mp_now(), el = now - p->t0;
    double rate = el > 0 ? p->done / el : 0;
    double eta = (p->total && rate > 0) ? (p->total - (p->done < p->total ? p->done : p->total)) / rate : -1;
    if (p->mode == MP_PROGRESS_JSON) {
        char task[2 * sizeof p->task]; /* a JSON string: quotes and backslashes escaped */
        size_t o = 0;
        for (const char *c = p->task; *c; c++) {
            if (*c == '"' || *c == '\\') task[o++] = '\\';
            task[o++] = *c;
        }
        task[o] = 0;
        fprintf(stderr, "{\"task\":\"%s\",\"done\":%llu,\"total\":%llu,\"rate\":%.2f,\"elapsed\":%.2f,\"eta\":%.1f,\"final\":%s%s%s}\n",
                task, (unsigned long long)p->done, (unsigned long long)p->total, rate, el,
                eta, final ? "true" : "false", extra && *extra ? "," : "", extra && *extra ? extra : "");
        fflush(stderr);
    } else if (p->mode == MP_PROGRESS_TTY) {
        char e[32];
        fmt_eta(e, sizeof e, eta);
        int width = 30, fill = p->total ? (int)(width * (double)p->done / p->total) : 0;
        if (fill > width) fill = width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s [%s] %llu/%llu %s  %.1f %s/s  ETA %s %s\033[K%s", p->task, bar,
                (unsigned long long)p->done, (unsigned long long)p->total, p->unit, rate, p->unit, e,
                extra ? extra : "", final ? "\n" : "");
        fflush(stderr);
    }
}

void mp_progress_update(mp_progress *p, uint64_t done, const char *extra)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->done = done;
    double now = mp_now();
    double gap = p->mode == MP_PROGRESS_JSON ? 1.0 : 0.2;
    if (now - p->last >= gap) {
        p->last = now;
        draw(p, extra, 0);
    }
    pthread_mutex_unlock(&p->mu);
}

void mp_progress_set_total(mp_progress *p, uint64_t total)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->total = total;
    pthread_mutex_unlock(&p->mu);
}

void mp_progress_finish(mp_progress *p, const char *extra)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    draw(p, extra, 1);
    pthread_mutex_unlock(&p->mu);
}

void mp_progress_free(mp_progress *p)
{
    if (!p) return;
    pthread_mutex_destroy(&p->mu);
    free(p);
}
