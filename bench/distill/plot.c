/* bench/distill/plot.c — the distillation table as a chart: report.py writes plot.json (rows ×
 * regimes, mean and sd of test balanced accuracy; optionally the magnification sweep), this draws
 * it with common/plot (SVG) and renders the PNG from that SVG through libvips, as training does.
 * Usage: distill_plot PLOT.json OUTSTEM   → OUTSTEM.svg/.png (+ OUTSTEM-sweep.svg/.png) */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/plot.h"
#include "common/util.h"
#include "trainer/trainer.h"

static double num(json_t *a, size_t i)
{
    json_t *v = json_array_get(a, i);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int emit(const char *svg, const char *stem, const char *suffix)
{
    char p[1024];
    snprintf(p, sizeof p, "%s%s.svg", stem, suffix);
    if (mp_write_file_atomic(p, svg, strlen(svg)) < 0) return -1;
    snprintf(p, sizeof p, "%s%s.png", stem, suffix);
    return tr_svg_to_png(svg, p);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: distill_plot PLOT.json OUTSTEM\n");
        return 1;
    }
    json_error_t je;
    json_t *j = json_load_file(argv[1], 0, &je);
    if (!j) {
        fprintf(stderr, "distill_plot: %s: %s (line %d)\n", argv[1], je.text, je.line);
        return 2;
    }
    json_t *groups = json_object_get(j, "groups"), *rows = json_object_get(j, "rows"), *mean = json_object_get(j, "mean"),
           *sd = json_object_get(j, "sd");
    int ng = (int)json_array_size(groups), nr = (int)json_array_size(rows), rc = 0;
    if (!ng || !nr || (int)json_array_size(mean) != ng || (int)json_array_size(sd) != ng) {
        fprintf(stderr, "distill_plot: %s: needs groups, rows and ng × nr mean and sd\n", argv[1]);
        json_decref(j);
        return 2;
    }
    const char **gn = calloc(ng, sizeof *gn), **rn = calloc(nr, sizeof *rn);
    double *v = calloc((size_t)ng * nr, sizeof *v), *e = calloc((size_t)ng * nr, sizeof *e);
    for (int g = 0; g < ng; g++) gn[g] = json_string_value(json_array_get(groups, g));
    for (int r = 0; r < nr; r++) rn[r] = json_string_value(json_array_get(rows, r));
    for (int g = 0; g < ng; g++)
        for (int r = 0; r < nr; r++) {
            v[g * nr + r] = num(json_array_get(mean, g), r);
            e[g * nr + r] = num(json_array_get(sd, g), r);
        }
    mp_bars b = {.title = json_string_value(json_object_get(j, "title")),
                 .ylabel = "test balanced accuracy (%), mean ± sd over seeds",
                 .ymin = 0, .ymax = 100, .ngroups = ng, .nbars = nr, .groups = gn, .bars = rn, .val = v, .err = e,
                 .note = json_string_value(json_object_get(j, "note"))};
    char *svg = mp_bars_svg(&b);
    if (emit(svg, argv[2], "") < 0) rc = 2;
    free(svg);

    /* the sweep: accuracy against the student's magnification, FLOPs on a log right axis */
    json_t *sw = json_object_get(j, "sweep");
    if (sw && rc == 0) {
        json_t *mags = json_object_get(sw, "mags"), *series = json_object_get(sw, "series");
        int nm = (int)json_array_size(mags), ns = (int)json_array_size(series);
        double *x = calloc(nm + 1, sizeof *x), *fl = calloc(nm + 1, sizeof *fl);
        mp_plot_series *s = calloc(ns + 1, sizeof *s);
        double *ys = calloc((size_t)(ns + 1) * (nm + 1), sizeof *ys), *es = calloc((size_t)(ns + 1) * (nm + 1), sizeof *es);
        for (int i = 0; i < nm; i++) {
            x[i] = num(mags, i);
            fl[i] = num(json_object_get(sw, "gflops"), i);
        }
        for (int k = 0; k < ns; k++) {
            json_t *o = json_array_get(series, k);
            for (int i = 0; i < nm; i++) {
                ys[k * (nm + 1) + i] = num(json_object_get(o, "mean"), i);
                es[k * (nm + 1) + i] = num(json_object_get(o, "sd"), i);
            }
            s[k] = (mp_plot_series){.name = json_string_value(json_object_get(o, "name")), .x = x, .y = ys + k * (nm + 1),
                                    .err = es + k * (nm + 1), .n = nm, .markers = 1};
        }
        s[ns] = (mp_plot_series){.name = "GFLOPs per patch (right, log)", .color = "#555", .x = x, .y = fl, .n = nm, .right = 1,
                                 .dash = 1, .markers = 1};
        mp_plot p = {.title = json_string_value(json_object_get(sw, "title")),
                     .xlabel = "student magnification (x, log2 scale; patch px in the note)",
                     .ylabel = "test balanced accuracy (%)", .y2label = "GFLOPs per patch", .y2log = 1, .xlog2 = 1,
                     .xticks = x, .nxticks = nm, .note = json_string_value(json_object_get(sw, "note")), .s = s, .ns = ns + 1};
        svg = mp_plot_svg(&p);
        if (emit(svg, argv[2], "-sweep") < 0) rc = 2;
        free(svg);
        free(x);
        free(fl);
        free(s);
        free(ys);
        free(es);
    }
    if (rc) fprintf(stderr, "distill_plot: %s\n", mp_err());
    free(gn);
    free(rn);
    free(v);
    free(e);
    json_decref(j);
    return rc;
}
