/* pipelines/run.h — `magpie run`: a slide list through tile and infer into one output folder,
 * slides in parallel on threads, each slide's failure kept to itself, resumable (the steps skip
 * what is done and unchanged), with DIR/status.csv, DIR/summary.json and DIR/report.html.
 *
 * Output folder layout:
 *   DIR/dataset.db               patches (tile), labels/patients/splits from the manifest,
 *                                per-patch predictions (infer)
 *   DIR/heatmaps/<name>/         infer's heatmap.tif, probability.tif, overlay.png,
 *                                heatmap.geojson, prediction.json
 *   DIR/thumbs/<name>.jpg        the slide's thumbnail for the report
 *   DIR/status.csv, summary.json, report.html */
#ifndef MP_RUN_H
#define MP_RUN_H

#include <stdint.h>

#include "common/log.h"
#include "infer/infer.h"
#include "pipelines/manifest.h"
#include "tiler/tiler.h"

typedef struct mp_db mp_db; /* db/db.h: a door names the handle, it need not include db/ */

enum { RUN_STEP_TILE = 1, RUN_STEP_INFER = 2 };

typedef struct {
    const char *out;       /* DIR */
    int steps;             /* RUN_STEP_* bits */
    const char *model;     /* checkpoint for infer */
    int jobs;              /* slides at once */
    int threads;           /* CPUs shared out among the slides */
    tiler_opts tile;       /* tile step options (jobs set per slide from threads / jobs) */
    infer_opts infer;      /* infer step options (db and name set per slide) */
    const char *class_arg; /* --class: a class name or index of the checkpoint, or NULL */
    const mf_list *class_list; /* the whole manifest when running a shard of it (class ids in its
                                * order, the same in every shard); NULL: the list run */
    mp_progress_mode progress;
    int quiet;
} run_opts;

void run_opts_default(run_opts *o);

/* One slide's outcome, as status.csv has it. */
typedef struct {
    int done;              /* 1 done, 0 failed */
    char error[1024];      /* one line, when failed */
    int tile_ran, tile_skipped, infer_ran, infer_skipped;
    int64_t patches, bad_tiles, cells_evaluated;
    double mpp;
    char mpp_source[32];
    char call[256];        /* slide-level class (mean probability), "" without infer */
    double confidence;     /* its mean probability */
    double tile_s, infer_s, seconds;
} run_result;

/* Run every slide of m. Returns the exit code: 0 all done, 3 some failed, 2 nothing done (or the
 * run could not start: bad output folder, checkpoint, dataset), 1 usage. Writes status.csv,
 * summary.json and report.html even when slides failed. */
int run_slides(const mf_list *m, const run_opts *o, const char *argv0);

/* The report's pictures, cached per slide under DIR/thumbs/ by the run (NAME.jpg the slide,
 * NAME.mask.png its tissue mask, NAME.heat.jpg infer's overlay.png), at most RUN_THUMB_PX a
 * side, so a report embeds them as they are (milliseconds a slide). 0, or -1 + mp_err. */
#define RUN_THUMB_PX 200
int run_small_image(const char *src, int box, const char *out);
/* The same of the w x h region at (x, y) of src (w or h <= 0: all of it). */
int run_small_image_region(const char *src, int x, int y, int w, int h, int box, const char *out);
int run_small_mask(mp_db *db, const char *slide, int box, const char *out);

/* The report over one or more run folders (their status.csv, summary.json, dataset.db,
 * heatmaps and thumbs) into out_html: one self-contained page. 0, or -1 + mp_err. */
int run_report_write(const char *out_html, char *const *dirs, int n);

#endif
