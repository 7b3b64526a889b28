/* trainer/curves.c — the training curve: read back from a run's .log.jsonl (so a resumed run and
 * a batch report draw the same thing), drawn as SVG by common/plot, and rendered to PNG from that
 * SVG by libvips (svgload through librsvg), so both files always show the same chart. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/plot.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "trainer/trainer.h"

int tr_svg_to_png(const char *svg, const char *png_path)
{
    if (VIPS_INIT("magpie")) {
        char why[400];
        return mp_err_set("libvips: %s", mp_vips_err_take_into(why, sizeof why, NULL));
    }
    VipsImage *im = NULL, *flat = NULL;
    void *buf = NULL;
    size_t len = 0;
    int rc = -1;
    /* the SVG is ours, but the loader is marked untrusted: allow it for this call's buffer only */
    if (vips_svgload_buffer((void *)svg, strlen(svg), &im, NULL) ||
        vips_flatten(im, &flat, "background", vips_array_double_newv(3, 255.0, 255.0, 255.0), NULL) ||
        vips_pngsave_buffer(flat, &buf, &len, "compression", 6, NULL))
    {
        char why[400];
        mp_err_set("%s: rendering the SVG: %s", png_path, mp_vips_err_take_into(why, sizeof why, NULL));
    } else rc = mp_write_file_atomic(png_path, buf, len);
    g_free(buf);
    if (flat) g_object_unref(flat);
    if (im) g_object_unref(im);
    return rc;
}

/* the loss terms a log line may hold, with their legend names */
static const struct {
    const char *key, *name, *color;
} terms[] = {
    {"kd", "KD term (T²·KL)", "#ff7f0e"},    {"feat", "feature term (β·MSE)", "#2ca02c"},
    {"ce", "cross-entropy", "#9467bd"},       {"mt", "mean-teacher KL", "#8c564b"},
    {"ccd", "CCD (λ·contrastive)", "#e377c2"}, {"crp", "CRP (λ·relation KL)", "#7f7f7f"},
};
enum { NTERMS = sizeof terms / sizeof terms[0] };

int tr_curve_write(const char *log_path, const char *svg_path, const char *png_path, const char *title)
{
    size_t len;
    uint8_t *raw;
    if (mp_read_file(log_path, &raw, &len) < 0) return -1;
    char *txt = mp_xmalloc(len + 1); /* NUL-terminated copy to split into lines */
    memcpy(txt, raw, len);
    txt[len] = 0;
    free(raw);
    int cap = 64, n = 0;
    double *ep = mp_xmalloc(sizeof(double) * cap), *loss = mp_xmalloc(sizeof(double) * cap),
           *val = mp_xmalloc(sizeof(double) * cap), *part[NTERMS];
    for (int t = 0; t < NTERMS; t++) part[t] = mp_xmalloc(sizeof(double) * cap);
    int active[NTERMS] = {0};
    for (char *line = txt, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        json_t *o = json_loads(line, 0, NULL);
        if (!o) continue; /* a torn last line after a kill: the resume cuts it; skip it here */
        if (n == cap) {
            cap *= 2;
            ep = mp_xrealloc(ep, sizeof(double) * cap);
            loss = mp_xrealloc(loss, sizeof(double) * cap);
            val = mp_xrealloc(val, sizeof(double) * cap);
            for (int t = 0; t < NTERMS; t++) part[t] = mp_xrealloc(part[t], sizeof(double) * cap);
        }
        json_t *e = json_object_get(o, "epoch");
        ep[n] = json_is_integer(e) ? (double)json_integer_value(e) : n + 1;
        loss[n] = json_number_value(json_object_get(o, "loss"));
        json_t *v = json_object_get(o, "val_balanced_accuracy");
        val[n] = json_is_number(v) && json_number_value(v) >= 0 ? json_number_value(v) : NAN;
        for (int t = 0; t < NTERMS; t++) {
            part[t][n] = json_number_value(json_object_get(o, terms[t].key));
            if (part[t][n] != 0) active[t] = 1;
        }
        json_decref(o);
        n++;
    }
    free(txt);
    /* the terms only when there are several (one term is the total itself) */
    int nact = 0;
    for (int t = 0; t < NTERMS; t++) nact += active[t];
    mp_plot_series s[NTERMS + 2];
    int ns = 0;
    s[ns++] = (mp_plot_series){.name = "training loss (total, left)", .color = "#d62728", .x = ep, .y = loss, .n = n};
    for (int t = 0; t < NTERMS && nact > 1; t++)
        if (active[t])
            s[ns++] = (mp_plot_series){.name = terms[t].name, .color = terms[t].color, .x = ep, .y = part[t], .n = n, .dash = 1};
    int best = -1;
    for (int i = 0; i < n; i++)
        if (isfinite(val[i]) && (best < 0 || val[i] > val[best])) best = i;
    s[ns++] = (mp_plot_series){.name = "validation balanced accuracy (right)", .color = "#1f77b4", .x = ep, .y = val, .n = n,
                               .right = 1, .markers = n <= 60};
    char note[160];
    if (best >= 0) snprintf(note, sizeof note, "best validation balanced accuracy %.4f at epoch %.0f of %d", val[best], ep[best], n);
    else snprintf(note, sizeof note, "%d epochs; no labelled validation patches", n);
    mp_plot p = {.title = title, .xlabel = "epoch (1-based)", .ylabel = "loss (mean per step over the epoch)",
                 .y2label = "validation balanced accuracy (0-1)", .y2min = 0, .y2max = 1, .xint = 1, .note = note, .s = s,
                 .ns = ns};
    if (n == 1) p.xticks = ep, p.nxticks = 1; /* a lone epoch: one tick, not a 0..2 range */
    char *svg = mp_plot_svg(&p);
    int rc = mp_write_file_atomic(svg_path, svg, strlen(svg));
    if (!rc && png_path) rc = tr_svg_to_png(svg, png_path);
    free(svg);
    free(ep);
    free(loss);
    free(val);
    for (int t = 0; t < NTERMS; t++) free(part[t]);
    return rc;
}
