/* pipelines/run.c — the engine of `magpie run`: worker threads take slides in manifest order and
 * run the steps through the tiler's and infer's library entry points (no subprocesses, so no
 * fork after OpenBLAS has started threads). Every worker has its own dataset connection and its
 * own model; SQLite's busy wait serialises their writes. The steps are resumable on their own
 * (the tiler skips done slides and resumes partial ones, infer skips current outputs), so a
 * rerun after a crash only redoes what is missing. */
#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/cpu.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/db.h"
#include "db/labels.h"
#include "db/slides.h"
#include "db/split.h"
#include "db/tiling.h"
#include "nn/ckpt.h"
#include "nn/gemm.h"
#include "pipelines/run.h"
#include "trainer/trainer.h"

void run_opts_default(run_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = RUN_STEP_TILE;
    o->threads = mp_cpu_count();
    o->jobs = o->threads;
    tiler_opts_default(&o->tile);
    infer_opts_default(&o->infer);
    o->progress = MP_PROGRESS_AUTO;
}

typedef struct {
    const mf_list *m;
    const run_opts *o;
    char db_path[4096], heat_dir[4096], thumb_dir[4096];
    int tile_jobs;
    run_result *res;
    atomic_int next;
    int klass;           /* --class resolved, -1 = infer's default */
    int64_t label_import; /* the manifest's label import (labels or patients given), else 0 */
    char ckpt_fp[64];     /* the checkpoint's fingerprint (infer step) */
    infer_model *model0; /* loaded by the caller to validate the checkpoint; worker 0's */
    /* progress */
    pthread_mutex_t mu;
    int n_done, n_failed;
    int64_t patches;       /* in the dataset for the finished slides */
    int64_t live_tiled;    /* patches written by this run so far (tiler batches) */
    int64_t live_cells;    /* cells evaluated by this run so far (infer batches) */
    double t0;
    mp_progress *prog;
    mp_progress_mode mode;
    int kill_after; /* test hook: SIGKILL once this many slides finished (0 = never) */
} run_ctx;

typedef struct {
    run_ctx *c;
    int index;
    mp_db *db;
    infer_model *model;
    pthread_t th;
} worker;

/* ---- per-slide pieces ---- */

/* The manifest's patient, label and split for a slide the tiler has recorded; label and patient
 * also as the manifest's label import (db labels list shows them, db labels remove takes them). */
static int apply_meta(mp_db *db, const mf_list *m, const mf_item *it, int64_t import_id)
{
    if (!m->has_patient && !m->has_label && !m->has_split) return 0;
    if (db_begin(db)) return -1;
    int rc = 0;
    if (m->has_patient || m->has_label)
        rc = db_labels_manifest_slide(db, import_id, it->path, m->has_label ? (it->label ? it->label : "") : NULL,
                                      m->has_patient ? (it->patient ? it->patient : "") : NULL);
    if (!rc && m->has_split) rc = db_split_set(db, it->path, it->split);
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_rollback(db);
        return mp_err_set("%s", keep);
    }
    return db_commit(db);
}

/* MPP and its source as the dataset recorded them, and the patch counts when the tile step
 * was not part of this run. */
typedef struct {
    int counts;
    run_result *r;
} mpp_read;

static int take_mpp(void *ctx, const db_slide_row *row)
{
    mpp_read *m = ctx;
    m->r->mpp = row->mpp;
    snprintf(m->r->mpp_source, sizeof m->r->mpp_source, "%s", row->mpp_source ? row->mpp_source : "");
    if (m->counts) {
        m->r->patches = row->patches;
        m->r->bad_tiles = row->bad_tiles;
    }
    return 0;
}

static void read_mpp(mp_db *db, const char *path, int counts, run_result *r)
{
    mpp_read m = {counts, r};
    db_slides_each(db, 0, path, take_mpp, &m);
}

/* The slide-level call of infer's prediction.json (mean probability). */
static void read_prediction(const char *dir, run_result *r)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/prediction.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return;
    json_t *pm = json_object_get(j, "prediction_mean");
    const char *cls = json_string_value(json_object_get(pm, "class"));
    json_int_t k = json_integer_value(json_object_get(pm, "class_index"));
    json_t *probs = json_object_get(pm, "probabilities");
    snprintf(r->call, sizeof r->call, "%s", cls ? cls : "");
    r->confidence = cls && k >= 0 ? json_real_value(json_array_get(probs, (size_t)k)) : 0;
    r->cells_evaluated = json_integer_value(json_object_get(json_object_get(j, "patches"), "evaluated"));
    json_t *mpp = json_object_get(j, "mpp");
    if (!r->mpp_source[0] && mpp) {
        r->mpp = json_real_value(json_object_get(mpp, "x"));
        const char *s = json_string_value(json_object_get(mpp, "source"));
        snprintf(r->mpp_source, sizeof r->mpp_source, "%s", s ? s : "");
    }
    json_decref(j);
}

/* DIR/thumbs/<name>.jpg: the slide at about RUN_THUMB_PX on its longest side, over white. */
static int write_thumb(const char *slide, double mpp_override, const char *out)
{
    tiler_slide s;
    if (tiler_slide_open(slide, &s)) return -1;
    tiler_mpp mpp;
    if (tiler_resolve_mpp(slide, &s, mpp_override, &mpp)) {
        tiler_slide_close(&s);
        return -1;
    }
    double target = mpp.mpp_x * (double)(s.width > s.height ? s.width : s.height) / RUN_THUMB_PX;
    uint8_t *rgba = NULL;
    int w, h;
    double ds;
    int rc = tiler_thumbnail(&s, mpp.mpp_x, target, &rgba, &w, &h, &ds);
    tiler_slide_close(&s);
    if (rc) return -1;
    VipsImage *im = vips_image_new_from_memory(rgba, (size_t)w * h * 4, w, h, 4, VIPS_FORMAT_UCHAR), *flat = NULL;
    void *buf = NULL;
    size_t len = 0;
    double white[3] = {255, 255, 255};
    VipsArrayDouble *bg = vips_array_double_new(white, 3);
    if (!im || vips_flatten(im, &flat, "background", bg, NULL) ||
        vips_jpegsave_buffer(flat, &buf, &len, "Q", 85, "strip", TRUE, NULL)) {
        /* taken, not read then cleared: the buffer is the process's and workers share it */
        char why[400];
        rc = mp_err_set("%s: thumbnail: %s", slide, mp_vips_err_take_into(why, sizeof why, NULL));
    }
    vips_area_unref(VIPS_AREA(bg));
    if (!rc) rc = mp_write_file_atomic(out, buf, len);
    g_free(buf);
    if (flat) g_object_unref(flat);
    if (im) g_object_unref(im);
    free(rgba);
    return rc;
}

/* The report's heatmap picture: infer's overlay.png without its title and colour-bar panel (at
 * 200 px their text cannot be read; the report gives the legend once), cut where
 * infer_overlay_layout put the picture for this slide's bounds and overlay size. */
static int heat_thumb(const char *outdir, const char *out)
{
    char pj[4400], ov[4400];
    snprintf(pj, sizeof pj, "%s/prediction.json", outdir);
    snprintf(ov, sizeof ov, "%s/overlay.png", outdir);
    json_t *j = json_load_file(pj, 0, NULL);
    json_t *b = json_object_get(json_object_get(j, "grid"), "bounds");
    json_int_t size = json_integer_value(json_object_get(json_object_get(j, "params"), "overlay_size"));
    infer_grid g;
    memset(&g, 0, sizeof g);
    g.bw = json_integer_value(json_array_get(b, 2));
    g.bh = json_integer_value(json_array_get(b, 3));
    json_decref(j);
    if (g.bw <= 0 || g.bh <= 0 || size <= 0) return run_small_image(ov, RUN_THUMB_PX, out); /* an older infer's */
    infer_overlay_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.g = &g;
    sp.size = (int)size;
    infer_overlay_geom L;
    infer_overlay_layout(&sp, &L);
    return run_small_image_region(ov, L.pic_x, L.pic_y, L.pic_w, L.pic_h, RUN_THUMB_PX, out);
}

static void slide_failed(run_result *r, const char *msg)
{
    r->done = 0;
    mp_escape_ctrl(msg, r->error, sizeof r->error);
}

static void on_tiled(void *arg, int64_t n);
static void on_inferred(void *arg, int64_t n);

static void do_slide(worker *w, const mf_item *it, run_result *r)
{
    run_ctx *c = w->c;
    const run_opts *o = c->o;
    double t0 = mp_now();
    memset(r, 0, sizeof *r);
    if (it->problem) {
        slide_failed(r, it->problem);
        return;
    }
    if (!w->db && !(w->db = db_open(c->db_path, 0))) {
        slide_failed(r, mp_err());
        return;
    }
    if (o->steps & RUN_STEP_TILE) {
        tiler_opts to = o->tile;
        to.jobs = c->tile_jobs;
        to.progress = MP_PROGRESS_NONE;
        to.on_batch = on_tiled;
        to.on_batch_arg = c;
        if (it->mpp > 0) to.mpp = it->mpp;
        if (it->min_tissue >= 0) to.min_tissue = it->min_tissue;
        tiler_result tr;
        double ts = mp_now();
        if (tiler_tile_slide(w->db, it->path, &to, &tr)) {
            slide_failed(r, mp_err());
            r->seconds = mp_now() - t0;
            return;
        }
        r->tile_s = mp_now() - ts;
        r->tile_ran = tr.outcome == TILER_DONE;
        r->tile_skipped = tr.outcome == TILER_SKIPPED;
        r->patches = tr.n_patches;
        r->bad_tiles = tr.n_errors;
        if (apply_meta(w->db, c->m, it, c->label_import)) {
            slide_failed(r, mp_err());
            r->seconds = mp_now() - t0;
            return;
        }
    }
    read_mpp(w->db, it->path, !(o->steps & RUN_STEP_TILE), r);
    char thumb[4400];
    snprintf(thumb, sizeof thumb, "%s/%s.jpg", c->thumb_dir, it->name);
    if ((r->tile_ran || !mp_file_exists(thumb)) && write_thumb(it->path, it->mpp, thumb))
        mp_warn("%s: no thumbnail for the report: %s", it->path, mp_err());
    snprintf(thumb, sizeof thumb, "%s/%s.mask.png", c->thumb_dir, it->name);
    if ((o->steps & RUN_STEP_TILE) && (r->tile_ran || !mp_file_exists(thumb)) &&
        run_small_mask(w->db, it->path, RUN_THUMB_PX, thumb))
        mp_warn("%s: no tissue mask picture for the report: %s", it->path, mp_err());
    if (o->steps & RUN_STEP_INFER) {
        infer_opts io = o->infer;
        io.name = it->name;
        if (c->klass >= 0) io.klass = c->klass;
        io.db = c->db_path;
        io.ckpt_fingerprint = c->ckpt_fp[0] ? c->ckpt_fp : NULL; /* hashed once per run, not per slide */
        io.progress = MP_PROGRESS_NONE;
        io.on_batch = on_inferred;
        io.on_batch_arg = c;
        if (it->mpp > 0) io.mpp = it->mpp;
        if (it->min_tissue >= 0) io.min_tissue = it->min_tissue;
        if (!w->model) {
            if (w->index == 0 && c->model0) {
                w->model = c->model0;
                c->model0 = NULL;
            } else if (!(w->model = infer_model_load(o->model, io.batch))) {
                slide_failed(r, mp_err());
                r->seconds = mp_now() - t0;
                return;
            }
        }
        infer_result ir;
        double ts = mp_now();
        if (infer_slide(w->model, o->model, it->path, c->heat_dir, &io, &ir)) {
            slide_failed(r, mp_err());
            r->seconds = mp_now() - t0;
            return;
        }
        r->infer_s = mp_now() - ts;
        r->infer_ran = ir.outcome == INFER_DONE;
        r->infer_skipped = ir.outcome == INFER_SKIPPED;
        read_prediction(ir.outdir, r);
        char ov[4500];
        snprintf(thumb, sizeof thumb, "%s/%s.heat.jpg", c->thumb_dir, it->name);
        snprintf(ov, sizeof ov, "%s/overlay.png", ir.outdir);
        if ((r->infer_ran || !mp_file_exists(thumb)) && heat_thumb(ir.outdir, thumb))
            mp_warn("%s: no heatmap picture for the report: %s", it->path, mp_err());
    }
    r->done = 1;
    r->seconds = mp_now() - t0;
}

/* ---- progress ---- */

/* The bar's text after the counts (the caller holds c->mu). */
static void progress_extra(run_ctx *c, char *extra, size_t n)
{
    double el = mp_now() - c->t0;
    double rate = el > 0 ? (double)c->live_tiled / el : 0, crate = el > 0 ? (double)c->live_cells / el : 0;
    if (c->mode == MP_PROGRESS_JSON)
        snprintf(extra, n, "\"failed\":%d,\"patches\":%lld,\"tiled\":%lld,\"tiled_per_s\":%.1f,\"inferred\":%lld,"
                 "\"inferred_per_s\":%.1f",
                 c->n_failed, (long long)c->patches, (long long)c->live_tiled, rate, (long long)c->live_cells, crate);
    else if (c->o->steps & RUN_STEP_INFER)
        snprintf(extra, n, " %d failed | %lld patches tiled %.0f/s, %lld inferred %.0f/s", c->n_failed,
                 (long long)c->live_tiled, rate, (long long)c->live_cells, crate);
    else
        snprintf(extra, n, " %d failed | %lld patches tiled %.0f/s", c->n_failed, (long long)c->live_tiled, rate);
}

static void on_tiled(void *arg, int64_t n)
{
    run_ctx *c = arg;
    char extra[256];
    pthread_mutex_lock(&c->mu);
    c->live_tiled += n;
    progress_extra(c, extra, sizeof extra);
    mp_progress_update(c->prog, (uint64_t)(c->n_done + c->n_failed), extra);
    pthread_mutex_unlock(&c->mu);
}

static void on_inferred(void *arg, int64_t n)
{
    run_ctx *c = arg;
    char extra[256];
    pthread_mutex_lock(&c->mu);
    c->live_cells += n;
    progress_extra(c, extra, sizeof extra);
    mp_progress_update(c->prog, (uint64_t)(c->n_done + c->n_failed), extra);
    pthread_mutex_unlock(&c->mu);
}

static void report_slide(run_ctx *c, int i)
{
    const mf_item *it = &c->m->items[i];
    const run_result *r = &c->res[i];
    pthread_mutex_lock(&c->mu);
    if (r->done) c->n_done++;
    else c->n_failed++;
    c->patches += r->patches;
    int finished = c->n_done + c->n_failed;
    double el = mp_now() - c->t0;
    char esc[4200];
    mp_escape_ctrl(it->path, esc, sizeof esc);
    if (c->mode == MP_PROGRESS_JSON) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f}", "event", "slide", "slide", it->path, "name",
                              it->name, "status", r->done ? "done" : "failed", "patches", (json_int_t)r->patches,
                              "evaluated", (json_int_t)r->cells_evaluated, "seconds", r->seconds);
        if (j && !r->done) json_object_set_new(j, "error", json_string(r->error));
        if (j && r->call[0]) json_object_set_new(j, "call", json_string(r->call));
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s) fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(j);
    } else if (c->mode == MP_PROGRESS_TTY) {
        if (!r->done) {
            fprintf(stderr, "\r\033[K");
            mp_error("%s", r->error);
        }
    } else if (!r->done) {
        mp_error("[%d/%d] %s", finished, c->m->n, r->error);
    } else {
        char what[512];
        snprintf(what, sizeof what, "%lld patches%s", (long long)r->patches,
                 r->tile_skipped && !r->infer_ran ? " (already done)" : "");
        if (r->call[0])
            snprintf(what + strlen(what), sizeof what - strlen(what), ", %s %.2f", r->call, r->confidence);
        mp_info("[%d/%d] %s: %s in %.1f s", finished, c->m->n, esc, what, r->seconds);
    }
    char extra[256];
    (void)el;
    progress_extra(c, extra, sizeof extra);
    mp_progress_update(c->prog, (uint64_t)finished, extra);
    int kill = c->kill_after > 0 && finished >= c->kill_after;
    pthread_mutex_unlock(&c->mu);
    if (kill) raise(SIGKILL);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run_ctx *c = w->c;
    for (;;) {
        int i = atomic_fetch_add(&c->next, 1);
        if (i >= c->m->n) break;
        do_slide(w, &c->m->items[i], &c->res[i]);
        report_slide(c, i);
    }
    return NULL;
}

/* ---- status.csv and summary.json ---- */

static void csv_str(FILE *f, const char *s, int last)
{
    csv_fwrite(f, s ? s : "", s ? strlen(s) : 0);
    fputc(last ? '\n' : ',', f);
}

static int write_status(run_ctx *c, const char *dir)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return mp_err_set("status.csv: out of memory");
    fprintf(f, "slide,name,line,status,error,patient,label,split,patches,bad_tiles,evaluated,mpp,mpp_source,call,"
               "confidence,tile_seconds,infer_seconds,seconds\n");
    for (int i = 0; i < c->m->n; i++) {
        const mf_item *it = &c->m->items[i];
        const run_result *r = &c->res[i];
        csv_str(f, it->path, 0);
        csv_str(f, it->name, 0);
        fprintf(f, "%d,", it->line);
        csv_str(f, r->done ? "done" : "failed", 0);
        csv_str(f, r->error, 0);
        csv_str(f, it->patient, 0);
        csv_str(f, it->label, 0);
        csv_str(f, it->split, 0);
        fprintf(f, "%lld,%lld,%lld,", (long long)r->patches, (long long)r->bad_tiles, (long long)r->cells_evaluated);
        if (r->mpp > 0) fprintf(f, "%.6g,", r->mpp);
        else fputc(',', f);
        csv_str(f, r->mpp_source, 0);
        csv_str(f, r->call, 0);
        if (r->call[0]) fprintf(f, "%.4f,", r->confidence);
        else fputc(',', f);
        fprintf(f, "%.3f,%.3f,%.3f\n", r->tile_s, r->infer_s, r->seconds);
    }
    fclose(f);
    char p[4200];
    snprintf(p, sizeof p, "%s/status.csv", dir);
    int rc = mp_write_file_atomic(p, buf, len);
    free(buf);
    return rc;
}

static void iso_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int write_summary(run_ctx *c, const char *dir, const char *started, double wall, const char *ckpt_fp,
                         const char *teacher)
{
    const run_opts *o = c->o;
    int n_tile_skip = 0, n_infer_skip = 0, n_tile_ran = 0, n_infer_ran = 0;
    int64_t patches = 0, evaluated = 0;
    double tile_s = 0, infer_s = 0;
    for (int i = 0; i < c->m->n; i++) {
        const run_result *r = &c->res[i];
        n_tile_skip += r->tile_skipped, n_infer_skip += r->infer_skipped;
        n_tile_ran += r->tile_ran, n_infer_ran += r->infer_ran;
        patches += r->patches, evaluated += r->cells_evaluated;
        tile_s += r->tile_s, infer_s += r->infer_s;
    }
    char finished[32], tp[1024], th[64];
    iso_now(finished, sizeof finished);
    tiler_params(&o->tile, tp, sizeof tp, th);
    json_t *steps = json_array();
    if (o->steps & RUN_STEP_TILE) json_array_append_new(steps, json_string("tile"));
    if (o->steps & RUN_STEP_INFER) json_array_append_new(steps, json_string("infer"));
    json_t *j = json_object();
    json_object_set_new(j, "manifest", json_string(c->m->source));
    json_object_set_new(j, "out", json_string(dir));
    json_object_set_new(j, "steps", steps);
    json_object_set_new(j, "started", json_string(started));
    json_object_set_new(j, "finished", json_string(finished));
    json_object_set_new(j, "jobs", json_integer(o->jobs));
    json_object_set_new(j, "threads", json_integer(o->threads));
    json_object_set_new(j, "slides", json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "total", c->m->n, "done",
                                               c->n_done, "failed", c->n_failed, "tiled", n_tile_ran,
                                               "tile_skipped", n_tile_skip, "inferred", n_infer_ran,
                                               "infer_skipped", n_infer_skip));
    json_object_set_new(j, "patches", json_integer(patches));
    json_object_set_new(j, "cells_evaluated", json_integer(evaluated));
    json_object_set_new(j, "timing", json_pack("{s:f, s:f, s:f}", "wall_seconds", wall, "tile_seconds", tile_s,
                                               "infer_seconds", infer_s));
    if (o->steps & RUN_STEP_TILE) {
        json_t *pj = json_loads(tp, 0, NULL);
        json_object_set_new(j, "tile_params", pj ? pj : json_string(tp));
        json_object_set_new(j, "tile_params_hash", json_string(th));
    }
    if (o->steps & RUN_STEP_INFER) {
        json_object_set_new(j, "model", json_string(o->model));
        if (teacher && teacher[0]) json_object_set_new(j, "teacher", json_string(teacher));
        json_object_set_new(j, "model_fingerprint", json_string(ckpt_fp));
        json_object_set_new(j, "infer_params",
                            json_pack("{s:i, s:f, s:f, s:i}", "stride", o->infer.stride, "min_tissue",
                                      o->infer.min_tissue, "threshold", o->infer.threshold, "class", o->infer.klass));
    }
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!txt) return mp_err_set("%s/summary.json: cannot build it", dir);
    char p[4200];
    snprintf(p, sizeof p, "%s/summary.json", dir);
    int rc = mp_write_file_atomic(p, txt, strlen(txt));
    free(txt);
    return rc;
}

/* ---- training curves for the report ---- */

/* DIR/thumbs/curve.<role>.svg: a copy of the training curve `magpie train` drew beside ckpt
 * (stem.svg), so the report (and a report rebuilt later, or over moved folders) shows how the
 * model was trained. A model without a curve leaves no stale copy of another's. */
static void copy_curve(const char *ckpt, const char *thumb_dir, const char *role)
{
    char svg[4400], out[4400];
    snprintf(out, sizeof out, "%s/curve.%s.svg", thumb_dir, role);
    uint8_t *data = NULL, *had = NULL;
    size_t len = 0, hl = 0;
    if (ckpt) tr_side_path(svg, sizeof svg, ckpt, ".svg");
    if (!ckpt || !mp_file_exists(svg) || mp_read_file(svg, &data, &len)) {
        unlink(out);
        mp_err_clear();
        return;
    }
    /* unchanged: not rewritten (a rerun writes nothing it does not have to) */
    if (mp_read_file(out, &had, &hl) || hl != len || memcmp(had, data, len))
        if (mp_write_file_atomic(out, data, len)) mp_warn("%s", mp_err());
    mp_err_clear();
    free(had);
    free(data);
}

/* The teacher a checkpoint was distilled from, as `magpie train` recorded it (its path when
 * training, taken relative to the current folder, else beside the student). */
static int model_teacher(const char *ckpt, char *out, size_t cap)
{
    nn_ckpt ck;
    memset(&ck, 0, sizeof ck);
    int found = 0;
    if (!nn_ckpt_load(&ck, ckpt)) {
        const char *t = nn_ckpt_get(&ck, "teacher");
        if (t && t[0]) {
            snprintf(out, cap, "%s", t);
            found = 1;
            if (!mp_file_exists(out) && t[0] != '/') {
                const char *slash = strrchr(ckpt, '/'), *base = strrchr(t, '/');
                snprintf(out, cap, "%.*s%s", slash ? (int)(slash - ckpt + 1) : 0, ckpt, base ? base + 1 : t);
            }
        }
    }
    nn_ckpt_free(&ck);
    mp_err_clear();
    return found;
}

/* ---- the run ---- */

/* Temporaries (NAME.tmp.PID, from mp_write_file_atomic) a killed run left in dir; only called
 * with the folder's lock held, so no live run is writing them. */
static void remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t || t == e->d_name || strspn(t + 5, "0123456789") != strlen(t + 5) || !t[5]) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

static int run_locked(run_ctx *cp, const mf_list *m, const run_opts *o, const char *argv0, double t0,
                      const char *started);

int run_slides(const mf_list *m, const run_opts *o, const char *argv0)
{
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.o = o;
    c.klass = -1;
    const char *dir = o->out;
    snprintf(c.db_path, sizeof c.db_path, "%s/dataset.db", dir);
    snprintf(c.heat_dir, sizeof c.heat_dir, "%s/heatmaps", dir);
    snprintf(c.thumb_dir, sizeof c.thumb_dir, "%s/thumbs", dir);
    char started[32];
    iso_now(started, sizeof started);
    double t0 = mp_now();
    if (mp_mkdir_p(dir) || mp_mkdir_p(c.thumb_dir) || ((o->steps & RUN_STEP_INFER) && mp_mkdir_p(c.heat_dir))) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (access(dir, W_OK | X_OK)) {
        mp_error("%s: output folder is not writable (%s)", dir, strerror(errno));
        return MP_EXIT_FAIL;
    }
    /* one run per output folder at a time; released by the kernel however the process ends */
    int lock = db_tile_lock(c.db_path, 1.0);
    if (lock < 0) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    /* released on every return: a second run in the same process (magpie demo) takes it again */
    int code = run_locked(&c, m, o, argv0, t0, started);
    db_tile_unlock(lock);
    return code;
}

static int run_locked(run_ctx *cp, const mf_list *m, const run_opts *o, const char *argv0, double t0,
                      const char *started)
{
    run_ctx c = *cp;
    const char *dir = o->out;
    remove_stale_tmp(dir);
    remove_stale_tmp(c.thumb_dir);
    mp_db *db = db_open(c.db_path, DB_OPEN_CREATE);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    /* classes in manifest order, before the slides run in parallel, so their ids do not depend
     * on which slide finishes first */
    int rc = 0;
    const mf_list *cl = o->class_list ? o->class_list : m;
    if ((cl->has_label || cl->has_patient) && (o->steps & RUN_STEP_TILE)) {
        rc = db_begin(db);
        for (int i = 0; !rc && cl->has_label && i < cl->n; i++)
            if (cl->items[i].label && cl->items[i].label[0] && db_class_id(db, cl->items[i].label, 1) < 0) rc = -1;
        if (!rc && (c.label_import = db_labels_manifest_import(db, cl->source, cl->n)) < 0) rc = -1;
        if (!rc) rc = db_commit(db);
        else db_rollback(db);
    }
    db_close(db);
    if (rc) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    int jobs = o->jobs < 1 || m->n < 1 ? 1 : o->jobs > m->n ? m->n : o->jobs; /* a shard may be empty */
    int per = o->threads / jobs > 0 ? o->threads / jobs : 1;
    c.tile_jobs = per;
    if (tiler_global_init(argv0)) { /* synchronously: workers must not race to wait for it */
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    char ckpt_fp[64] = "";
    if (o->steps & RUN_STEP_INFER) {
        nn_set_threads(per); /* the models loaded from here on: one share of the CPUs each */
        if (!(c.model0 = infer_model_load(o->model, o->infer.batch)) || tiler_fingerprint(o->model, ckpt_fp)) {
            mp_error("%s", mp_err());
            infer_model_free(c.model0);
            return MP_EXIT_FAIL;
        }
        if (o->class_arg && (c.klass = infer_class_index(c.model0, o->model, o->class_arg)) < 0) {
            mp_error("%s", mp_err());
            infer_model_free(c.model0);
            return MP_EXIT_USAGE;
        }
        snprintf(c.ckpt_fp, sizeof c.ckpt_fp, "%s", ckpt_fp);
    }
    const char *k = getenv("MAGPIE_RUN_KILL"); /* crash tests: "after-slide:N" */
    if (k && !strncmp(k, "after-slide:", 12)) c.kill_after = atoi(k + 12);

    c.res = mp_xcalloc((size_t)m->n, sizeof *c.res);
    c.t0 = t0;
    c.mode = o->progress;
    if (c.mode == MP_PROGRESS_AUTO) c.mode = isatty(2) && !o->quiet ? MP_PROGRESS_TTY : MP_PROGRESS_NONE;
    pthread_mutex_init(&c.mu, NULL);
    c.prog = mp_progress_new(c.mode, "run", (uint64_t)m->n, "slides");
    worker *w = mp_xcalloc((size_t)jobs, sizeof *w);
    int started_n = 0;
    for (int i = 0; i < jobs; i++) {
        w[i].c = &c;
        w[i].index = i;
        if (i > 0 && pthread_create(&w[i].th, NULL, worker_main, &w[i])) break;
        started_n++;
    }
    worker_main(&w[0]); /* the calling thread is worker 0 */
    for (int i = 1; i < started_n; i++) pthread_join(w[i].th, NULL);
    for (int i = 0; i < jobs; i++) {
        db_close(w[i].db);
        infer_model_free(w[i].model);
    }
    free(w);
    infer_model_free(c.model0);
    char extra[256];
    progress_extra(&c, extra, sizeof extra);
    mp_progress_finish(c.prog, extra);
    mp_progress_free(c.prog);
    pthread_mutex_destroy(&c.mu);

    double wall = mp_now() - t0;
    int out_rc = 0;
    char html[4200];
    snprintf(html, sizeof html, "%s/report.html", dir);
    char *dirs[1] = {(char *)dir};
    char teacher[4096] = "";
    if (o->steps & RUN_STEP_INFER) {
        int has_teacher = model_teacher(o->model, teacher, sizeof teacher);
        copy_curve(o->model, c.thumb_dir, "model");
        copy_curve(has_teacher ? teacher : NULL, c.thumb_dir, "teacher");
    }
    if (write_status(&c, dir) || write_summary(&c, dir, started, wall, ckpt_fp, teacher) || run_report_write(html, dirs, 1)) {
        mp_error("%s", mp_err());
        out_rc = -1;
    }
    mp_info("%s: %d of %d slides done, %d failed, %lld patches in %.1f s; report %s", dir, c.n_done, m->n,
            c.n_failed, (long long)c.patches, wall, html);
    int code = c.n_failed == 0 ? MP_EXIT_OK : c.n_done == 0 ? MP_EXIT_FAIL : MP_EXIT_PARTIAL;
    if (out_rc) code = MP_EXIT_FAIL; /* the run's record is incomplete */
    free(c.res);
    return code;
}
