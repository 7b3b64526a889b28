/* common/plot.c — line and bar charts written as SVG text (see plot.h). Layout is fixed and
 * simple: title on top, y axes left (and right), x axis with its label, legend rows under it. */
#include "common/plot.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    if (!b->s) { /* never format into a NULL buffer */
        b->cap = 4096;
        b->s = mp_xmalloc(b->cap);
        b->n = 0;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w >= 0 && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        b->cap = b->cap * 2 + (w > 0 ? (size_t)w : 0) + 256;
        b->s = mp_xrealloc(b->s, b->cap);
    }
}

/* text with XML's special characters escaped */
static void put_text(sbuf *b, const char *t)
{
    for (; t && *t; t++) {
        if (*t == '&') put(b, "&amp;");
        else if (*t == '<') put(b, "&lt;");
        else if (*t == '>') put(b, "&gt;");
        else if (*t == '"') put(b, "&quot;");
        else put(b, "%c", *t);
    }
}

static void label(sbuf *b, double x, double y, const char *anchor, int size, const char *extra, const char *t)
{
    put(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\"%s%s>", x, y, anchor, size, extra ? " " : "",
        extra ? extra : "");
    put_text(b, t);
    put(b, "</text>\n");
}

int mp_plot_ticks(double *lo, double *hi, int want, double *t, int cap)
{
    if (!(*hi > *lo)) {
        double c = *lo, d = fabs(c) > 0 ? fabs(c) * 0.1 : 1;
        *lo = c - d;
        *hi = c + d;
    }
    double raw = (*hi - *lo) / (want > 1 ? want : 1), p = pow(10, floor(log10(raw))), step = p;
    static const double mult[] = {1, 2, 2.5, 5, 10};
    for (int i = 0; i < 5; i++)
        if (mult[i] * p >= raw) {
            step = mult[i] * p;
            break;
        }
    double a = floor(*lo / step + 1e-9) * step, z = ceil(*hi / step - 1e-9) * step;
    *lo = a;
    *hi = z;
    int n = 0;
    for (double v = a; v <= z + step * 1e-6 && n < cap; v += step) t[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    return n;
}

static void fmt_num(char *buf, size_t cap, double v)
{
    if (v != 0 && (fabs(v) >= 1e5 || fabs(v) < 1e-3)) snprintf(buf, cap, "%.3g", v);
    else snprintf(buf, cap, "%g", v);
}

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};

typedef struct {
    double L, R, T, B; /* plot area */
} frame;

/* document head, title, and the legend rows under the plot; returns the plot area */
static frame open_doc(sbuf *b, int W, int H, const char *title, int has_right, int nleg, const char *const *names,
                      const char *const *colors, const int *dash, const char *note)
{
    put(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
           "font-family=\"DejaVu Sans, Arial, sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
           W, H, W, H);
    label(b, W / 2.0, 24, "middle", 15, "font-weight=\"bold\"", title ? title : "");
    /* legend: entries of ~ (28 px swatch + 7 px per character), wrapped */
    double x = 70, y = 0;
    int rows = 1;
    for (int i = 0; i < nleg; i++) {
        double w = 40 + 7.0 * (double)strlen(names[i] ? names[i] : "");
        if (x + w > W - 20 && x > 70) x = 70, rows++;
        x += w;
    }
    double legend_top = H - 8 - 18.0 * rows - (note ? 16 : 0);
    x = 70;
    y = legend_top + 12;
    for (int i = 0; i < nleg; i++) {
        double w = 40 + 7.0 * (double)strlen(names[i] ? names[i] : "");
        if (x + w > W - 20 && x > 70) x = 70, y += 18;
        put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%s\"%s/>\n", x, y - 4,
            x + 24, y - 4, colors[i], dash ? "2.5" : "8", dash && dash[i] ? " stroke-dasharray=\"6 4\"" : "");
        label(b, x + 30, y, "start", 12, NULL, names[i] ? names[i] : "");
        x += w;
    }
    if (note) label(b, 70, H - 10, "start", 11, "fill=\"#555\"", note);
    frame f = {70, W - (has_right ? 75.0 : 25.0), 40, legend_top - 42};
    return f;
}

static double lin(double v, double lo, double hi, double a, double z)
{
    return a + (v - lo) / (hi - lo) * (z - a);
}

char *mp_plot_svg(const mp_plot *p)
{
    int W = p->width > 0 ? p->width : 760, H = p->height > 0 ? p->height : 440, right = p->y2label != NULL;
    sbuf b = {0};
    const char **names = mp_xcalloc((size_t)p->ns + 1, sizeof(char *)), **cols = mp_xcalloc((size_t)p->ns + 1, sizeof(char *));
    int *dash = mp_xcalloc((size_t)p->ns + 1, sizeof(int));
    for (int i = 0; i < p->ns; i++) {
        names[i] = p->s[i].name;
        cols[i] = p->s[i].color ? p->s[i].color : palette[i % 8];
        dash[i] = p->s[i].dash;
    }
    frame f = open_doc(&b, W, H, p->title, right, p->ns, names, cols, dash, p->note);
    /* data ranges */
    double xlo = INFINITY, xhi = -INFINITY, ylo[2] = {INFINITY, INFINITY}, yhi[2] = {-INFINITY, -INFINITY};
    for (int i = 0; i < p->ns; i++)
        for (int j = 0; j < p->s[i].n; j++) {
            double x = p->s[i].x[j], y = p->s[i].y[j], e = p->s[i].err ? fabs(p->s[i].err[j]) : 0;
            if (p->xlog2) x = x > 0 ? log2(x) : NAN;
            if (!isfinite(x)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x);
            if (!isfinite(y)) continue;
            int a = p->s[i].right;
            double y0 = y - (isfinite(e) ? e : 0), y1 = y + (isfinite(e) ? e : 0);
            if (a && p->y2log) y0 = y0 > 0 ? log10(y0) : log10(y), y1 = log10(y1);
            ylo[a] = fmin(ylo[a], y0), yhi[a] = fmax(yhi[a], y1);
        }
    if (!isfinite(xlo)) xlo = 0, xhi = 1;
    double fixed[2][2] = {{p->ymin, p->ymax}, {p->y2min, p->y2max}};
    for (int a = 0; a < 2; a++) {
        if (fixed[a][1] > fixed[a][0]) {
            ylo[a] = fixed[a][0], yhi[a] = fixed[a][1];
            if (a && p->y2log) ylo[a] = log10(ylo[a]), yhi[a] = log10(yhi[a]);
        } else if (!isfinite(ylo[a])) ylo[a] = 0, yhi[a] = 1;
    }
    /* x ticks */
    double xt[64];
    char xlabels[64][32];
    int nxt;
    if (p->xticks) {
        nxt = p->nxticks < 64 ? p->nxticks : 64;
        for (int i = 0; i < nxt; i++) {
            xt[i] = p->xlog2 ? log2(p->xticks[i]) : p->xticks[i];
            if (p->xticklabels) snprintf(xlabels[i], sizeof xlabels[i], "%s", p->xticklabels[i]);
            else fmt_num(xlabels[i], sizeof xlabels[i], p->xticks[i]);
            xlo = fmin(xlo, xt[i]), xhi = fmax(xhi, xt[i]);
        }
        double pad = (xhi - xlo) * 0.04 + (xhi == xlo ? 0.5 : 0);
        xlo -= pad, xhi += pad;
    } else if (p->xlog2) {
        double a = floor(xlo), z = ceil(xhi);
        if (z == a) z = a + 1;
        nxt = 0;
        for (double v = a; v <= z && nxt < 64; v += 1, nxt++) {
            xt[nxt] = v;
            fmt_num(xlabels[nxt], sizeof xlabels[nxt], exp2(v));
        }
        xlo = a, xhi = z;
    } else {
        nxt = mp_plot_ticks(&xlo, &xhi, 8, xt, 64);
        if (p->xint && nxt > 1 && xt[1] - xt[0] < 1) { /* a count: no tick between two whole numbers */
            xlo = floor(xlo), xhi = ceil(xhi);
            nxt = 0;
            for (double v = xlo; v <= xhi && nxt < 64; v += 1) xt[nxt++] = v;
        }
        for (int i = 0; i < nxt; i++) fmt_num(xlabels[i], sizeof xlabels[i], xt[i]);
    }
    double yt[2][64];
    int nyt[2] = {0, 0};
    for (int a = 0; a < 1 + right; a++) {
        if (a && p->y2log) {
            double lo = floor(ylo[a]), hi = ceil(yhi[a]);
            if (hi == lo) hi = lo + 1;
            ylo[a] = lo, yhi[a] = hi;
            for (double v = lo; v <= hi && nyt[a] < 64; v += 1) yt[a][nyt[a]++] = v;
        } else if (fixed[a][1] > fixed[a][0]) {
            double lo = ylo[a], hi = yhi[a];
            nyt[a] = mp_plot_ticks(&lo, &hi, 5, yt[a], 64);
            int m = 0; /* keep the fixed range; drop ticks outside it */
            for (int i = 0; i < nyt[a]; i++)
                if (yt[a][i] >= ylo[a] - 1e-12 && yt[a][i] <= yhi[a] + 1e-12) yt[a][m++] = yt[a][i];
            nyt[a] = m;
        } else nyt[a] = mp_plot_ticks(&ylo[a], &yhi[a], 5, yt[a], 64);
    }
    /* grid and axes */
    put(&b, "<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n");
    for (int i = 0; i < nyt[0]; i++) {
        double y = lin(yt[0][i], ylo[0], yhi[0], f.B, f.T);
        put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f.L, y, f.R, y);
    }
    for (int i = 0; i < nxt; i++) {
        double x = lin(xt[i], xlo, xhi, f.L, f.R);
        put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, f.T, x, f.B);
    }
    put(&b, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", f.L, f.T,
        f.R - f.L, f.B - f.T);
    char nb[32];
    for (int i = 0; i < nxt; i++) {
        double x = lin(xt[i], xlo, xhi, f.L, f.R);
        put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x, f.B, x, f.B + 5);
        label(&b, x, f.B + 18, "middle", 11, NULL, xlabels[i]);
    }
    for (int a = 0; a < 1 + right; a++)
        for (int i = 0; i < nyt[a]; i++) {
            double y = lin(yt[a][i], ylo[a], yhi[a], f.B, f.T), x = a ? f.R : f.L;
            put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x, y, a ? x + 5 : x - 5, y);
            fmt_num(nb, sizeof nb, a && p->y2log ? pow(10, yt[a][i]) : yt[a][i]);
            label(&b, a ? x + 8 : x - 8, y + 4, a ? "start" : "end", 11, NULL, nb);
        }
    label(&b, (f.L + f.R) / 2, f.B + 36, "middle", 12, NULL, p->xlabel ? p->xlabel : "");
    put(&b, "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">", (f.T + f.B) / 2);
    put_text(&b, p->ylabel ? p->ylabel : "");
    put(&b, "</text>\n");
    if (right) {
        put(&b, "<text transform=\"translate(%d,%.1f) rotate(90)\" text-anchor=\"middle\" font-size=\"12\">", W - 12,
            (f.T + f.B) / 2);
        put_text(&b, p->y2label);
        put(&b, "</text>\n");
    }
    /* series */
    for (int i = 0; i < p->ns; i++) {
        const mp_plot_series *s = &p->s[i];
        int a = s->right && right;
        double lo = ylo[a], hi = yhi[a];
        int lg = a && p->y2log;
        put(&b, "<g stroke=\"%s\" fill=\"%s\">\n", cols[i], cols[i]);
        int open = 0;
        for (int j = 0; j < s->n; j++) {
            double x = p->xlog2 ? (s->x[j] > 0 ? log2(s->x[j]) : NAN) : s->x[j], y = s->y[j];
            if (lg) y = y > 0 ? log10(y) : NAN;
            if (!isfinite(x) || !isfinite(y)) {
                if (open) put(&b, "\"/>\n");
                open = 0;
                continue;
            }
            double px = lin(x, xlo, xhi, f.L, f.R), py = lin(y, lo, hi, f.B, f.T);
            if (!open)
                put(&b, "<polyline fill=\"none\" stroke-width=\"2\"%s points=\"", s->dash ? " stroke-dasharray=\"6 4\"" : "");
            put(&b, "%.1f,%.1f ", px, py);
            open = 1;
        }
        if (open) put(&b, "\"/>\n");
        for (int j = 0; j < s->n; j++) {
            double x = p->xlog2 ? (s->x[j] > 0 ? log2(s->x[j]) : NAN) : s->x[j], y = s->y[j];
            if (lg) y = y > 0 ? log10(y) : NAN;
            if (!isfinite(x) || !isfinite(y)) continue;
            double px = lin(x, xlo, xhi, f.L, f.R), py = lin(y, lo, hi, f.B, f.T);
            if (s->markers) put(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>\n", px, py);
            if (s->err && isfinite(s->err[j]) && s->err[j] > 0 && !lg) {
                double y0 = lin(s->y[j] - s->err[j], lo, hi, f.B, f.T), y1 = lin(s->y[j] + s->err[j], lo, hi, f.B, f.T);
                put(&b, "<path fill=\"none\" stroke-width=\"1.5\" d=\"M%.1f %.1fV%.1fM%.1f %.1fh10M%.1f %.1fh10\"/>\n", px, y0, y1,
                    px - 5, y0, px - 5, y1);
            }
        }
        put(&b, "</g>\n");
    }
    put(&b, "</svg>\n");
    free(names);
    free(cols);
    free(dash);
    return b.s;
}

char *mp_bars_svg(const mp_bars *p)
{
    int W = p->width > 0 ? p->width : 760, H = p->height > 0 ? p->height : 440;
    sbuf b = {0};
    const char **cols = mp_xcalloc((size_t)p->nbars + 1, sizeof(char *));
    for (int i = 0; i < p->nbars; i++) cols[i] = p->colors && p->colors[i] ? p->colors[i] : palette[i % 8];
    frame f = open_doc(&b, W, H, p->title, 0, p->nbars, p->bars, cols, NULL, p->note);
    double lo = p->ymin, hi = p->ymax;
    if (!(hi > lo)) {
        lo = 0, hi = -INFINITY;
        for (int i = 0; i < p->ngroups * p->nbars; i++)
            if (isfinite(p->val[i])) hi = fmax(hi, p->val[i] + (p->err && isfinite(p->err[i]) ? p->err[i] : 0));
        if (!isfinite(hi)) hi = 1;
    }
    double yt[64];
    double tlo = lo, thi = hi;
    int nyt = mp_plot_ticks(&tlo, &thi, 5, yt, 64);
    if (!(p->ymax > p->ymin)) lo = tlo, hi = thi;
    put(&b, "<g stroke=\"#e3e3e3\">\n");
    for (int i = 0; i < nyt; i++)
        if (yt[i] >= lo - 1e-12 && yt[i] <= hi + 1e-12) {
            double y = lin(yt[i], lo, hi, f.B, f.T);
            put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f.L, y, f.R, y);
        }
    put(&b, "</g>\n");
    char nb[32];
    for (int i = 0; i < nyt; i++)
        if (yt[i] >= lo - 1e-12 && yt[i] <= hi + 1e-12) {
            double y = lin(yt[i], lo, hi, f.B, f.T);
            put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", f.L - 5, y, f.L, y);
            fmt_num(nb, sizeof nb, yt[i]);
            label(&b, f.L - 8, y + 4, "end", 11, NULL, nb);
        }
    double gw = (f.R - f.L) / (p->ngroups > 0 ? p->ngroups : 1), bw = gw * 0.8 / (p->nbars > 0 ? p->nbars : 1);
    for (int g = 0; g < p->ngroups; g++) {
        double gx = f.L + g * gw + gw * 0.1;
        for (int k = 0; k < p->nbars; k++) {
            double v = p->val[g * p->nbars + k];
            if (!isfinite(v)) continue;
            double vc = fmin(fmax(v, lo), hi), x = gx + k * bw, y = lin(vc, lo, hi, f.B, f.T);
            put(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n", x + 1, y, bw - 2, f.B - y,
                cols[k]);
            double e = p->err ? p->err[g * p->nbars + k] : NAN;
            if (isfinite(e) && e > 0) {
                double y0 = lin(fmax(v - e, lo), lo, hi, f.B, f.T), y1 = lin(fmin(v + e, hi), lo, hi, f.B, f.T), cx = x + bw / 2;
                put(&b, "<path stroke=\"#222\" stroke-width=\"1.5\" fill=\"none\" d=\"M%.1f %.1fV%.1fM%.1f %.1fh8M%.1f %.1fh8\"/>\n",
                    cx, y0, y1, cx - 4, y0, cx - 4, y1);
            }
            snprintf(nb, sizeof nb, "%.1f", v);
            label(&b, x + bw / 2, y - 4 - (isfinite(e) && e > 0 ? lin(lo, lo, hi, f.B, f.T) - lin(lo + e, lo, hi, f.B, f.T) : 0),
                  "middle", 10, NULL, nb);
        }
        label(&b, gx + gw * 0.4, f.B + 18, "middle", 12, NULL, p->groups[g]);
    }
    put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", f.L, f.T, f.L, f.B);
    put(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", f.L, f.B, f.R, f.B);
    put(&b, "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">", (f.T + f.B) / 2);
    put_text(&b, p->ylabel ? p->ylabel : "");
    put(&b, "</text>\n</svg>\n");
    free(cols);
    return b.s;
}
