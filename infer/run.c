/* infer/run.c — one slide end to end: open, mask, select cells, a reader thread that fills
 * patch batches while the model runs on the previous one, then the outputs (heatmap.tif,
 * overlay.png, heatmap.geojson, prediction.json last, so its presence with a matching key
 * means the set is complete). Memory is the cell raster plus two batches, whatever the slide. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "db/predictions.h"
#include "infer/infer.h"
#include "infer/internal.h"
#include "nn/gemm.h"

#define INFER_KEY_VERSION 3 /* 2: heatmap.tif RGBA + probability.tif; 3: overlap averaging */

void infer_opts_default(infer_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stride = 0;
    o->klass = -1;
    o->overlay_size = 1600;
    o->batch = 0; /* auto: see infer_auto_batch */
    o->threads = 2;
    o->mpp = 0;
    o->min_tissue = 0.25;
    o->threshold = 0.5;
    o->progress = MP_PROGRESS_AUTO;
}

int infer_global_init(const char *argv0) { return tiler_global_init_lean(argv0); }

int infer_auto_batch(int size)
{
    /* measured: at 224 px a batch of 8 runs as fast as 32 with a third of the activation arena
     * (135 vs 350 MiB peak); small patches gain from bigger GEMMs and cost little memory */
    return size >= 112 ? 8 : 64;
}

void infer_slide_name(const char *path, char *out, size_t cap)
{
    char stem[1024];
    mp_path_stem(path, stem, sizeof stem);
    if (!stem[0]) snprintf(stem, sizeof stem, "slide");
    mp_safe_name(stem, out, cap); /* "...svs" has the stem "..": never a way out of --out */
}

/* ---- the reader thread and its two batch slots ---- */

typedef struct {
    int n;          /* patches in the slot */
    int *cell;      /* cell index per patch */
    uint8_t *ok;    /* 1 read fine */
    uint8_t *rgb;   /* n x S x S x 3 */
    int full;
} slot;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot sl[2];
    int abort, finished;
    /* what to read */
    const int *cells;
    int64_t ncells;
    const infer_grid *g;
    int S, batch;
    tiler_patch_geom geom; /* level, read size and output size: the tiler's rule */
    tiler_reader *rd;
    char err[512];
    int64_t read_errors;
    char first_error[600];
    double busy;    /* seconds spent reading */
} pipeline;

static void *reader_main(void *arg)
{
    pipeline *P = arg;
    size_t psz = (size_t)P->S * P->S * 3;
    int which = 0;
    for (int64_t c0 = 0; c0 < P->ncells; c0 += P->batch) {
        slot *s = &P->sl[which];
        pthread_mutex_lock(&P->mu);
        while (s->full && !P->abort) pthread_cond_wait(&P->cv, &P->mu);
        int stop = P->abort;
        pthread_mutex_unlock(&P->mu);
        if (stop) break;
        double t0 = mp_now();
        int n = (int)(P->ncells - c0 < P->batch ? P->ncells - c0 : P->batch);
        for (int b = 0; b < n; b++) {
            int cell = P->cells[c0 + b];
            int64_t x0, y0;
            infer_grid_patch_origin(P->g, cell % P->g->nx, cell / P->g->nx, &x0, &y0);
            s->cell[b] = cell;
            s->ok[b] = tiler_read_patch(P->rd, &P->geom, x0, y0, s->rgb + b * psz, P->err, sizeof P->err) == 0;
            if (!s->ok[b]) {
                /* an unreadable tile costs its cell, not the slide */
                if (P->read_errors++ == 0) snprintf(P->first_error, sizeof P->first_error, "%s", P->err);
                memset(s->rgb + b * psz, 255, psz);
            }
        }
        s->n = n;
        P->busy += mp_now() - t0;
        pthread_mutex_lock(&P->mu);
        s->full = 1;
        pthread_cond_broadcast(&P->cv);
        pthread_mutex_unlock(&P->mu);
        which ^= 1;
    }
    pthread_mutex_lock(&P->mu);
    P->finished = 1;
    pthread_cond_broadcast(&P->cv);
    pthread_mutex_unlock(&P->mu);
    return NULL;
}

/* ---- one model over a list of cells ---- */

typedef struct {
    double seconds, busy, model; /* the loop, reading (reader thread), the network */
    int64_t read_errors;
    char first_error[600];
} run_stats;

/* Run m over cells[0..n) of grid g, reading each cell's patch of geometry geom through rd (the
 * slide's reader, used by a thread of its own one batch ahead of the network; nothing else may
 * use rd meanwhile). The probabilities of every patch read go to prob (K per cell, by cell
 * index) and set valid; a patch that cannot be read leaves both as they were. 0, or -1 with err set ("PATH: reason"). */
static int run_cells(infer_model *m, tiler_reader *rd, const char *path, const infer_grid *g,
                     const tiler_patch_geom *geom, const int *cells, int64_t n, int batch, const infer_opts *o,
                     const char *task, float *prob, uint8_t *valid, run_stats *st, char *err, size_t en)
{
    mp_progress_mode pm = o->progress;
    memset(st, 0, sizeof *st);
    int S = infer_model_size(m), K = infer_model_classes(m), rc = 0;
    if (n <= 0) return 0;
    double t_loop = mp_now();
    pipeline P;
    memset(&P, 0, sizeof P);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.cv, NULL);
    size_t psz = (size_t)S * S * 3;
    for (int s = 0; s < 2; s++) {
        P.sl[s].cell = mp_xmalloc(sizeof(int) * batch);
        P.sl[s].ok = mp_xmalloc(batch);
        P.sl[s].rgb = mp_xmalloc(psz * batch);
    }
    P.cells = cells;
    P.ncells = n;
    P.g = g;
    P.geom = *geom;
    P.S = S;
    P.batch = batch;
    int64_t done = 0;
    float *bp = mp_xmalloc(sizeof(float) * (size_t)batch * K);
    P.rd = rd; /* the slide's own reader: its tile cache already holds what the mask read */
    mp_progress *prog = mp_progress_new(pm, task, (uint64_t)n, "patches");
    pthread_t th;
    int started = 0;
    if (pthread_create(&th, NULL, reader_main, &P)) {
        snprintf(err, en, "%s: cannot start the reader thread", path);
        rc = -1;
    } else {
        started = 1;
    }
    int which = 0;
    while (started && !rc && done < n) {
        slot *s = &P.sl[which];
        pthread_mutex_lock(&P.mu);
        while (!s->full && !P.finished) pthread_cond_wait(&P.cv, &P.mu);
        int have = s->full;
        pthread_mutex_unlock(&P.mu);
        if (!have) break;
        double t0 = mp_now();
        if (infer_model_predict(m, s->rgb, s->n, bp)) {
            snprintf(err, en, "%s: model: %s", path, mp_err());
            rc = -1;
        } else {
            for (int b = 0; b < s->n; b++) {
                if (!s->ok[b]) continue;
                memcpy(prob + (size_t)s->cell[b] * K, bp + (size_t)b * K, sizeof(float) * K);
                valid[s->cell[b]] = 1;
            }
        }
        st->model += mp_now() - t0;
        done += s->n;
        mp_progress_update(prog, (uint64_t)done, NULL);
        if (!rc && o->on_batch) o->on_batch(o->on_batch_arg, s->n);
        pthread_mutex_lock(&P.mu);
        s->full = 0;
        pthread_cond_broadcast(&P.cv);
        pthread_mutex_unlock(&P.mu);
        which ^= 1;
    }
    if (started) {
        pthread_mutex_lock(&P.mu);
        P.abort = 1;
        pthread_cond_broadcast(&P.cv);
        pthread_mutex_unlock(&P.mu);
        pthread_join(th, NULL);
    }
    mp_progress_finish(prog, NULL);
    mp_progress_free(prog);
    for (int s = 0; s < 2; s++) {
        free(P.sl[s].cell);
        free(P.sl[s].ok);
        free(P.sl[s].rgb);
    }
    free(bp);
    pthread_mutex_destroy(&P.mu);
    pthread_cond_destroy(&P.cv);
    st->busy = P.busy;
    st->read_errors = P.read_errors;
    snprintf(st->first_error, sizeof st->first_error, "%s", P.first_error);
    st->seconds = mp_now() - t_loop;
    return rc;
}

/* ---- the cascade's teacher pass ---- */

typedef struct {
    int64_t sent;      /* cells whose student max-probability was below the threshold */
    int64_t answered;  /* of those, the teacher's patch read and scored */
    int level;         /* the level the teacher's patches were read from */
    run_stats run;
} cascade_stats;

/* The teacher on the cells where the student is unsure: the same cells' squares, read at the
 * teacher's magnification; its probabilities replace the student's (a cell whose teacher patch
 * cannot be read keeps the student's). */
static int cascade_pass(const infer_cascade *c, infer_src *src, const infer_grid *g, float *prob,
                        const uint8_t *valid, int K, const infer_opts *o, const char *name, const char *path,
                        cascade_stats *cs, char *err, size_t en)
{
    memset(cs, 0, sizeof *cs);
    double tmag = infer_model_mag(c->teacher);
    int TS = infer_model_size(c->teacher);
    tiler_patch_geom tg;
    infer_src_geom(src, tmag, g->patch0, TS, &tg);
    cs->level = tg.level;
    int64_t ncell = (int64_t)g->nx * g->ny;
    int *sel = mp_try_malloc(sizeof(int) * (size_t)(ncell + 1), "the cascade's cells");
    uint8_t *answered = sel ? mp_try_calloc((size_t)ncell + 1, 1, "the cascade's cells") : NULL;
    if (!answered) {
        free(sel);
        snprintf(err, en, "%s: %s", path, mp_err());
        return -1;
    }
    cs->sent = infer_cascade_select(prob, valid, ncell, K, c->threshold, sel);
    char task[1100];
    snprintf(task, sizeof task, "infer %s (teacher)", name);
    int batch = o->batch > 0 ? o->batch : infer_auto_batch(TS); /* as the teacher alone would batch */
    int rc = run_cells(c->teacher, src->rd, path, g, &tg, sel, cs->sent, batch, o, task, prob, answered,
                       &cs->run, err, en);
    for (int64_t i = 0; i < ncell; i++) cs->answered += answered[i];
    free(sel);
    free(answered);
    return rc;
}

/* ---- outputs ---- */

/* overlay.png: a fresh thumbnail at the picture's scale, cropped to the bounds rectangle. */
static int write_overlay(const char *path, infer_src *src, const infer_grid *g, const float *prob,
                         const uint8_t *valid, int K, int k, int size, const char *name, const char *cname,
                         const char *call, const char *note)
{
    double mpp = src->mpp.mpp_x;
    double target = mpp * fmax((double)src->bw, (double)src->bh) / size;
    uint8_t *th = NULL;
    int tw, thh;
    double tds;
    if (tiler_reader_thumbnail(src->rd, mpp, target, &th, &tw, &thh, &tds)) return -1;
    int x0 = (int)floor(src->bx / tds), y0 = (int)floor(src->by / tds);
    int cw = (int)fmax(1, fmin(tw - x0, ceil(src->bw / tds))), ch = (int)fmax(1, fmin(thh - y0, ceil(src->bh / tds)));
    /* the bounds rectangle in place: rows of the thumbnail's stride */
    infer_overlay_spec os = {.bg = th + ((size_t)y0 * tw + x0) * 4, .bgw = cw, .bgh = ch, .bg_stride = tw, .g = g, .prob = prob, .valid = valid, .nclasses = K,
                             .klass = k, .cmap = infer_cmap_for(K), .mpp = mpp, .size = size, .opacity = 0.6,
                             .slide_name = name, .class_name = cname, .call = call, .note = note};
    int r = infer_overlay_write(path, &os);
    free(th);
    return r;
}

int infer_class_index(const infer_model *m, const char *ckpt_path, const char *arg)
{
    int K = infer_model_classes(m);
    char *const *names = infer_model_names(m);
    for (int k = 0; k < K; k++)
        if (names[k] && !strcasecmp(names[k], arg)) return k;
    long l;
    if (!mp_parse_long(arg, &l)) {
        if (l >= 0 && l < K) return (int)l;
        return mp_err_set("%s: --class %ld but the checkpoint has %d classes", ckpt_path, l, K);
    }
    char list[1024] = "";
    for (int k = 0; k < K; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", names[k] ? names[k] : "?");
    return mp_err_set("%s: no class '%s' (classes: %s)", ckpt_path, arg, list);
}

static const char *files[] = {"heatmap.tif", "probability.tif", "overlay.png", "heatmap.geojson", "prediction.json"};
#define NOUT 5

static int file_complete(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return mp_file_size(p) > 0;
}

/* 1 when dir holds a complete output set made with this key, and --db (if given) holds its
 * evaluated patches for this slide and checkpoint. A fluorescence slide's outputs (made with
 * --allow-fluorescence) are not current for a run without it: that run refuses the slide. */
static int outputs_current(const char *dir, const char *key, const char *dbpath, const char *fp, const char *ck,
                           int allow_fluorescence)
{
    for (int i = 0; i < NOUT; i++)
        if (!file_complete(dir, files[i])) return 0;
    char p[4200];
    snprintf(p, sizeof p, "%s/prediction.json", dir);
    json_t *j = json_load_file(p, 0, NULL);
    if (!j) return 0;
    const char *k = json_string_value(json_object_get(j, "key"));
    int same = k && !strcmp(k, key);
    const char *kind = json_string_value(json_object_get(json_object_get(j, "slide_kind"), "kind"));
    if (!allow_fluorescence && (!kind || strcmp(kind, tiler_kind_name(TILER_BRIGHTFIELD)))) same = 0;
    json_int_t nval = json_integer_value(json_object_get(json_object_get(j, "patches"), "evaluated"));
    json_decref(j);
    if (same && dbpath) {
        mp_db *db = mp_file_exists(dbpath) ? db_open(dbpath, 0) : NULL;
        same = db && db_predictions_count(db, fp, ck) == nval;
        db_close(db);
    }
    return same;
}

/* Temporaries of a killed run (NAME.tmp.PID for our four names) are garbage once we redo it. */
static void remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        for (int i = 0; i < NOUT; i++) {
            size_t n = strlen(files[i]);
            if (!strncmp(e->d_name, files[i], n) && !strncmp(e->d_name + n, ".tmp.", 5)) {
                char p[4400];
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        }
    }
    closedir(d);
}

/* Test hook (crash tests): MAGPIE_INFER_KILL=before-json kills the process after heatmap.tif,
 * overlay.png and heatmap.geojson are written and before prediction.json. */
static void maybe_kill(const char *where)
{
    const char *k = getenv("MAGPIE_INFER_KILL");
    if (k && !strcmp(k, where)) raise(SIGKILL);
}

static int argmax(const double *v, int K)
{
    int b = 0;
    for (int k = 1; k < K; k++)
        if (v[k] > v[b]) b = k;
    return b;
}

/* CPU seconds of the whole process (every thread), for timings on a shared machine */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int infer_slide(infer_model *m, const char *ckpt_path, const char *path, const char *outdir, const infer_opts *o,
                infer_result *res)
{
    double t_start = mp_now(), c_start = cpu_now();
    memset(res, 0, sizeof *res);
    res->outcome = INFER_FAILED;
    res->level = -1;
    char name[1024];
    infer_slide_name(path, name, sizeof name);
    if (o->name) {
        char safe[1024];
        mp_safe_name(o->name, safe, sizeof safe); /* a caller's name is never a way out of outdir */
        snprintf(res->outdir, sizeof res->outdir, "%s/%s", outdir, safe);
    } else {
        snprintf(res->outdir, sizeof res->outdir, "%s/%s", outdir, name);
    }
    const char *dir = res->outdir;
    int K = infer_model_classes(m), S = infer_model_size(m);
    double mag = infer_model_mag(m);
    int klass = o->klass < 0 ? K - 1 : o->klass;
    if (klass >= K) return mp_err_set("%s: --class %d but the checkpoint has %d classes", path, klass, K);

    infer_src src;
    if (infer_src_open(path, o->mpp, &src)) return -1;
    double mpp = src.mpp.mpp_x;
    double want = (10.0 / mag) / mpp; /* level-0 px per model px */
    if (want < 1.0 / (1 + TILER_LEVEL_TOL)) {
        infer_src_close(&src);
        return mp_err_set("%s: the slide's %.4g µm/px is coarser than the model's %.4g µm/px (%gx); upsampling "
                          "would invent detail",
                          path, mpp, 10.0 / mag, mag);
    }

    const infer_cascade *cas = o->cascade;
    double tmag = cas ? infer_model_mag(cas->teacher) : 0;
    if (cas && (10.0 / tmag) / mpp < 1.0 / (1 + TILER_LEVEL_TOL)) {
        infer_src_close(&src);
        return mp_err_set("%s: the slide's %.4g µm/px is coarser than the teacher's %.4g µm/px (%gx); upsampling "
                          "would invent detail",
                          path, mpp, 10.0 / tmag, tmag);
    }

    /* the key: what the outputs depend on. With a cascade the model is the pair and its
     * threshold (also the fingerprint of --db's rows). */
    char fp[64], ck[64], tck[64] = "", key[700], model_fp[200];
    if (o->ckpt_fingerprint) snprintf(ck, sizeof ck, "%s", o->ckpt_fingerprint);
    if (tiler_fingerprint(path, fp) || (!o->ckpt_fingerprint && tiler_fingerprint(ckpt_path, ck)) ||
        (cas && tiler_fingerprint(cas->path, tck))) {
        infer_src_close(&src);
        return -1;
    }
    if (cas) snprintf(model_fp, sizeof model_fp, "cascade:%s+%s@%.9g", ck, tck, cas->threshold);
    else snprintf(model_fp, sizeof model_fp, "%s", ck);
    snprintf(key, sizeof key, "v%d %s %s stride=%d mpp=%.9g min_tissue=%.6g threshold=%.6g float32=%d class=%d overlay=%d",
             INFER_KEY_VERSION, fp, model_fp, o->stride, mpp, o->min_tissue, o->threshold, o->float32, klass,
             o->overlay_size);
    if (!o->force && !o->capture && outputs_current(dir, key, o->db, fp, model_fp, o->allow_fluorescence)) {
        infer_src_close(&src);
        res->outcome = INFER_SKIPPED;
        res->seconds = mp_now() - t_start;
        return 0;
    }

    double t_opened = mp_now();
    infer_grid g;
    if (infer_grid_make(src.bx, src.by, src.bw, src.bh, mpp, mag, S, o->stride, &g)) {
        infer_src_close(&src);
        return mp_err_prefix("%s", path);
    }
    tiler_patch_geom geom;
    infer_src_geom(&src, mag, g.patch0, S, &geom);
    int level = geom.level, rs = geom.wl;
    res->level = level;
    if (infer_src_mask(&src, S * 10.0 / mag)) {
        infer_src_close(&src);
        return -1;
    }
    char kind_why[160];
    tiler_kind_describe(&src.mask.kind, kind_why, sizeof kind_why);
    res->kind = tiler_kind_name(src.mask.kind.kind);
    if (src.mask.kind.kind == TILER_FLUORESCENCE && !o->allow_fluorescence) {
        /* an H&E model scores black glass as confidently as tissue: refuse before any output */
        infer_src_close(&src);
        return mp_err_set("%s: a fluorescence slide (%s), not bright-field H&E as the model expects; pass "
                          "--allow-fluorescence to infer it anyway",
                          path, kind_why);
    }

    /* cells to evaluate: patch at least min_tissue tissue */
    int64_t ncell = (int64_t)g.nx * g.ny;
    /* sized by the slide (and --stride): a failure fails this slide, not the process */
    float *prob = mp_try_calloc((size_t)ncell * K, sizeof(float), "the grid");
    uint8_t *valid = prob ? mp_try_calloc((size_t)ncell, 1, "the grid") : NULL;
    int *cells = valid ? mp_try_malloc(sizeof(int) * (size_t)ncell, "the grid") : NULL;
    if (!prob || !valid || !cells) {
        free(prob), free(valid), free(cells);
        infer_src_close(&src);
        return mp_err_set("%s: out of memory for a grid of %d x %d cells (use a larger --stride)", path, g.nx, g.ny);
    }
    int64_t nsel = 0;
    for (int j = 0; j < g.ny; j++)
        for (int i = 0; i < g.nx; i++) {
            int64_t x0, y0;
            infer_grid_patch_origin(&g, i, j, &x0, &y0);
            double t = tiler_mask_cover(&src.mask, src.mask.tissue, 255, (double)x0, (double)y0, g.patch0);
            if (t >= o->min_tissue && t > 0) cells[nsel++] = j * g.nx + i;
        }
    res->n_cells = ncell;
    res->n_tissue = nsel;
    double t_mask = mp_now() - t_opened;
    /* the mask's thumbnail is done with (the overlay reads its own): on a 100000 px slide it is
     * 3125 px a side, 39 MB that would otherwise sit beside the network's arena */
    free(src.thumb);
    src.thumb = NULL;

    int rc = 0;
    char err[4400] = "";
    if (!o->capture && mp_mkdir_p(dir)) {
        snprintf(err, sizeof err, "%s", mp_err());
        rc = -1;
    }
    char pj[4200];
    snprintf(pj, sizeof pj, "%s/prediction.json", dir);
    if (!rc && !o->capture) remove_stale_tmp(dir);
    /* an old prediction.json must not vouch for outputs this run is about to replace */
    if (!rc && !o->capture && unlink(pj) && errno != ENOENT) {
        snprintf(err, sizeof err, "%s: %s", pj, strerror(errno));
        rc = -1;
    }

    int batch = o->batch > 0 ? o->batch : infer_auto_batch(S);
    run_stats P; /* the student's (or the only model's) pass over every selected cell */
    memset(&P, 0, sizeof P);
    char task[1100];
    snprintf(task, sizeof task, "infer %s", name);
    if (!rc && run_cells(m, src.rd, path, &g, &geom, cells, nsel, batch, o, task, prob, valid, &P, err,
                         sizeof err))
        rc = -1;
    double t_model = P.model, t_infer = P.seconds;
    /* the cascade: the teacher on the cells where the student is unsure, the same squares */
    cascade_stats cs;
    memset(&cs, 0, sizeof cs);
    float *first = NULL; /* calibration: the student's answers, before the teacher replaces some */
    if (!rc && o->capture && o->cascade) {
        if (!(first = mp_try_malloc(sizeof(float) * (size_t)ncell * K + 1, "the grid"))) {
            snprintf(err, sizeof err, "%s: %s", path, mp_err());
            rc = -1;
        } else {
            memcpy(first, prob, sizeof(float) * (size_t)ncell * K);
        }
    }
    if (!rc && o->cascade && cascade_pass(o->cascade, &src, &g, prob, valid, K, o, name, path, &cs, err, sizeof err))
        rc = -1;
    if (o->capture) {
        if (!rc && o->capture(o->capture_arg, first ? first : prob, prob, valid, ncell, K)) {
            snprintf(err, sizeof err, "%s: %s", path, mp_err());
            rc = -1;
        }
        free(first);
        free(prob);
        free(valid);
        free(cells);
        infer_src_close(&src);
        res->seconds = mp_now() - t_start;
        if (rc) return mp_err_set("%s", err);
        res->outcome = INFER_DONE;
        return 0;
    }
    res->n_read_errors = P.read_errors;
    int64_t nval = 0;
    for (int64_t c = 0; c < ncell; c++) nval += valid[c];
    res->n_evaluated = nval;
    if (!rc && nsel > 0 && nval == 0) {
        snprintf(err, sizeof err, "%s: every patch read failed (first: %s)", path, P.first_error);
        rc = -1;
    }

    /* slide-level predictions (METHODS.md): mean probability, and the majority of confident patches */
    double mean[INFER_MAX_CLASSES] = {0}, votes[INFER_MAX_CLASSES] = {0};
    int64_t nvotes = 0;
    for (int64_t c = 0; c < ncell; c++) {
        if (!valid[c]) continue;
        const float *p = prob + (size_t)c * K;
        int b = 0;
        for (int k = 0; k < K; k++) {
            mean[k] += p[k];
            if (p[k] > p[b]) b = k;
        }
        if (p[b] >= o->threshold) votes[b] += 1, nvotes++;
    }
    for (int k = 0; k < K; k++) mean[k] = nval ? mean[k] / nval : 0;

    char *const *names = infer_model_names(m);
    char fpath[4200];
    double t_write0 = mp_now();
    json_t *desc = NULL;
    /* the heatmap: each cell the mean of the windows covering it (the window values themselves
     * when stride = patch); slide-level figures above stay per patch */
    float *heat = rc ? NULL : mp_try_malloc(sizeof(float) * (size_t)ncell * K, "the heatmap");
    if (!rc && !heat) {
        snprintf(err, sizeof err, "%s: out of memory for a heatmap of %d x %d cells (use a larger --stride)", path, g.nx,
                 g.ny);
        rc = -1;
    }
    if (!rc && infer_grid_average(&g, prob, valid, K, heat)) {
        snprintf(err, sizeof err, "%s: %s", path, mp_err());
        rc = -1;
    }
    if (!rc) {
        desc = json_pack("{s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:[I,I,I,I], s:s}", "software", "magpie infer",
                         "slide", path, "grid_width", g.nx, "grid_height", g.ny, "cell_level0_px", g.cell0,
                         "patch_level0_px", g.patch0, "mpp_x", src.mpp.mpp_x, "mpp_y", src.mpp.mpp_y, "bounds",
                         (json_int_t)src.bx, (json_int_t)src.by, (json_int_t)src.bw, (json_int_t)src.bh, "samples",
                         o->float32 ? "float32 probability" : "uint8 round(255*probability)");
        json_t *cls = json_array();
        for (int k = 0; k < K; k++) json_array_append_new(cls, json_string(names[k]));
        json_object_set_new(desc, "classes", cls);
        char *d = json_dumps(desc, JSON_COMPACT | JSON_REAL_PRECISION(12));
        infer_tiff_spec ts = {.nx = g.nx, .ny = g.ny, .nclasses = K, .prob = heat, .valid = valid,
                              .mpp_x = src.mpp.mpp_x, .mpp_y = src.mpp.mpp_y, .cell0 = g.cell0, .ox = g.ox,
                              .oy = g.oy, .float32 = o->float32, .tile = 128, .desc = d};
        snprintf(fpath, sizeof fpath, "%s/probability.tif", dir);
        if (infer_tiff_write(fpath, &ts)) rc = -1;
        free(d);
        /* the viewer pyramid says which class and map its colours are */
        char what[1200];
        snprintf(what, sizeof what, "RGBA: %s colour map of p(%s), alpha 0 = not evaluated",
                 infer_cmap_name(infer_cmap_for(K)), names[klass]);
        json_object_set_new(desc, "samples", json_string(what));
        json_object_set_new(desc, "class", json_string(names[klass]));
        d = json_dumps(desc, JSON_COMPACT | JSON_REAL_PRECISION(12));
        ts.desc = d;
        ts.rgba = 1;
        ts.klass = klass;
        ts.cmap = infer_cmap_for(K);
        snprintf(fpath, sizeof fpath, "%s/heatmap.tif", dir);
        if (!rc && infer_tiff_write(fpath, &ts)) rc = -1;
        free(d);
        snprintf(fpath, sizeof fpath, "%s/overlay.png", dir);
        char call[1024], note[1024];
        int bm = argmax(mean, K), bv = argmax(votes, K);
        if (!nval)
            snprintf(call, sizeof call, "none: no tissue was evaluated");
        else
            snprintf(call, sizeof call, "%s: mean probability %.2f over %lld patches", names[bm], mean[bm],
                     (long long)nval);
        if (nval && nvotes)
            snprintf(call + strlen(call), sizeof call - strlen(call), "; vote %s, %lld of %lld confident patches (p >= %.2g)",
                     names[bv], (long long)votes[bv], (long long)nvotes, o->threshold);
        else if (nval)
            snprintf(call + strlen(call), sizeof call - strlen(call), "; no patch confident enough to vote (p >= %.2g)",
                     o->threshold);
        snprintf(note, sizeof note, "model at %gx: %.0f µm patches every %.0f µm; mean p(%s) %.2f", mag,
                 g.patch0 * mpp, g.cell0 * mpp, names[klass], mean[klass]);
        if (!rc && write_overlay(fpath, &src, &g, heat, valid, K, klass, o->overlay_size, name, names[klass], call,
                                 note))
            rc = -1;
        snprintf(fpath, sizeof fpath, "%s/heatmap.geojson", dir);
        if (!rc && infer_geojson_write(fpath, &g, heat, valid, K, names, o->threshold)) rc = -1;
        if (rc) snprintf(err, sizeof err, "%s", mp_err());
    }
    if (!rc && o->db) {
        /* the patches themselves (not the overlap-averaged cells), before prediction.json so a
         * failed write leaves the slide to be redone */
        db_pred_cell *pc = mp_try_malloc(sizeof(db_pred_cell) * (size_t)(nval ? nval : 1), "the predictions");
        int64_t n = 0;
        if (!pc) {
            snprintf(err, sizeof err, "%s: %s", path, mp_err());
            rc = -1;
        }
        for (int64_t c = 0; pc && c < ncell; c++) {
            if (!valid[c]) continue;
            pc[n].gx = (int)(c % g.nx), pc[n].gy = (int)(c / g.nx);
            infer_grid_patch_origin(&g, pc[n].gx, pc[n].gy, &pc[n].x0, &pc[n].y0);
            pc[n].prob = prob + (size_t)c * K;
            n++;
        }
        char mpath[8400];
        if (cas) snprintf(mpath, sizeof mpath, "%s --cascade %s", ckpt_path, cas->path);
        else snprintf(mpath, sizeof mpath, "%s", ckpt_path);
        db_pred_run pr = {.slide_path = path, .slide_fingerprint = fp, .model_path = mpath,
                          .model_fingerprint = model_fp, .mag = mag, .size0 = g.patch0, .nclasses = K,
                          .class_names = names};
        mp_db *db = pc ? db_open(o->db, DB_OPEN_CREATE) : NULL;
        if (pc && (!db || db_predictions_put(db, &pr, pc, n))) {
            snprintf(err, sizeof err, "%s", mp_err());
            rc = -1;
        }
        db_close(db);
        free(pc);
    }
    double t_write = mp_now() - t_write0;
    if (!rc) maybe_kill("before-json");
    if (!rc) {
        json_t *pm = json_array(), *pv = json_array(), *cls = json_array();
        for (int k = 0; k < K; k++) {
            json_array_append_new(cls, json_string(names[k]));
            json_array_append_new(pm, json_real(mean[k]));
            json_array_append_new(pv, json_integer((json_int_t)votes[k]));
        }
        double total = mp_now() - t_start;
        json_t *j = json_object();
        json_object_set_new(j, "key", json_string(key));
        json_object_set_new(j, "slide", json_string(path));
        json_object_set_new(j, "slide_fingerprint", json_string(fp));
        json_object_set_new(j, "checkpoint", json_string(ckpt_path));
        json_object_set_new(j, "checkpoint_hash", json_string(ck));
        json_object_set_new(j, "classes", cls);
        json_object_set_new(j, "prediction_mean",
                            json_pack("{s:o, s:s, s:i}", "probabilities", pm, "class",
                                      nval ? names[argmax(mean, K)] : "", "class_index", nval ? argmax(mean, K) : -1));
        json_object_set_new(j, "prediction_vote",
                            json_pack("{s:o, s:f, s:I, s:s, s:i}", "votes", pv, "threshold", o->threshold,
                                      "confident_patches", (json_int_t)nvotes, "class",
                                      nvotes ? names[argmax(votes, K)] : "", "class_index",
                                      nvotes ? argmax(votes, K) : -1));
        if (!nval) json_object_set_new(json_object_get(j, "prediction_mean"), "class", json_null());
        if (!nvotes) json_object_set_new(json_object_get(j, "prediction_vote"), "class", json_null());
        json_object_set_new(j, "patches",
                            json_pack("{s:I, s:I, s:I, s:I}", "cells", (json_int_t)ncell, "tissue", (json_int_t)nsel,
                                      "evaluated", (json_int_t)nval, "read_errors", (json_int_t)P.read_errors));
        if (cas) {
            /* the threshold, where it came from, and how much of the slide the teacher saw */
            json_t *cj = json_pack("{s:s, s:s, s:f, s:i, s:f, s:s, s:I, s:I, s:f, s:i, s:f, s:f, s:f, s:I}", "teacher",
                                   cas->path, "teacher_hash", tck, "teacher_mag", tmag, "teacher_input_px",
                                   infer_model_size(cas->teacher), "threshold", cas->threshold, "threshold_source",
                                   cas->source, "cells_to_teacher", (json_int_t)cs.sent, "cells_answered_by_teacher",
                                   (json_int_t)cs.answered, "fraction_to_teacher",
                                   nval ? (double)cs.sent / nval : 0.0, "teacher_level", cs.level,
                                   "teacher_seconds", cs.run.seconds, "teacher_read_seconds", cs.run.busy,
                                   "teacher_model_seconds", cs.run.model, "teacher_read_errors",
                                   (json_int_t)cs.run.read_errors);
            json_object_set_new(cj, "rule", json_string("a cell goes to the teacher when the student's highest class "
                                                         "probability is below the threshold; the teacher's "
                                                         "probabilities replace the student's there"));
            json_object_set_new(j, "cascade", cj);
        }
        json_object_set_new(j, "slide_kind",
                            json_pack("{s:s, s:i, s:f, s:s}", "kind", tiler_kind_name(src.mask.kind.kind),
                                      "background", src.mask.kind.background, "dark_share", src.mask.kind.dark,
                                      "evidence", kind_why));
        json_object_set_new(j, "mpp",
                            json_pack("{s:f, s:f, s:s, s:s}", "x", src.mpp.mpp_x, "y", src.mpp.mpp_y, "source",
                                      src.mpp.source, "rejected", src.mpp.rejected));
        json_object_set_new(j, "read",
                            json_pack("{s:i, s:f, s:i, s:i, s:f, s:f}", "level", level, "level_downsample",
                                      src.s.ds[level], "read_px", rs, "input_px", S, "scale", (double)S / rs, "mag", mag));
        json_object_set_new(j, "grid",
                            json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:[I,I,I,I], s:b, s:s}", "width", g.nx,
                                      "height", g.ny, "cell_level0_px", g.cell0, "patch_level0_px", g.patch0,
                                      "origin_x", g.ox, "origin_y", g.oy, "bounds", (json_int_t)src.bx,
                                      (json_int_t)src.by, (json_int_t)src.bw, (json_int_t)src.bh, "has_bounds",
                                      src.has_bounds, "geojson_frame",
                                      "level-0 px from the bounds origin (QuPath); add origin_x/y for OpenSlide"));
        char htxt[1200];
        snprintf(htxt, sizeof htxt, "8-bit RGBA, %s colour map of p(%s); alpha 0 = not evaluated",
                 infer_cmap_name(infer_cmap_for(K)), names[klass]);
        json_object_set_new(j, "heatmap_tif", json_string(htxt));
        json_object_set_new(j, "probability_tif",
                            json_string(o->float32 ? "float32 probability per class (bands in class order)"
                                                   : "uint8 round(255*probability) per class (bands in class order); "
                                                     "0 in every band = not evaluated"));
        json_object_set_new(j, "params",
                            json_pack("{s:f, s:i, s:i, s:f, s:i, s:f}", "min_tissue", o->min_tissue, "stride",
                                      o->stride ? o->stride : S, "batch", batch, "threshold", o->threshold, "class",
                                      klass, "mask_mpp", src.mask_mpp));
        json_object_set_new(json_object_get(j, "params"), "overlay_size", json_integer(o->overlay_size));
        json_object_set_new(j, "heatmap_cells",
                            json_string(g.patch0 > g.cell0 * 1.000001
                                            ? "mean of the evaluated windows covering the cell, weighted by the share "
                                              "of the cell each covers (stride < patch)"
                                            : "the cell's own window (stride = patch)"));
        /* where the time went: opening (slide, MPP, fingerprints), the tissue mask and cell
         * selection, the patch loop (reading on one thread while the network runs on the
         * others: read + model can exceed it), the output files; cpu_seconds counts every thread
         * (on a shared machine the comparable figure) */
        json_object_set_new(j, "timing",
                            json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "seconds", total,
                                      "cpu_seconds", cpu_now() - c_start, "open_seconds",
                                      t_opened - t_start, "mask_seconds", t_mask, "inference_seconds", t_infer,
                                      "read_seconds", P.busy, "model_seconds", t_model, "write_seconds", t_write,
                                      "patches_per_s", t_infer > 0 ? nsel / t_infer : 0.0));
        char *txt = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(j);
        if (!txt) {
            snprintf(err, sizeof err, "%s: cannot build prediction.json", path);
            rc = -1;
        } else {
            if (mp_write_file_atomic(pj, txt, strlen(txt))) {
                snprintf(err, sizeof err, "%s", mp_err());
                rc = -1;
            }
            free(txt);
        }
    }
    json_decref(desc);
    free(heat);
    free(prob);
    free(valid);
    free(cells);
    infer_src_close(&src);
    res->seconds = mp_now() - t_start;
    if (rc) return mp_err_set("%s", err);
    res->outcome = INFER_DONE;
    return 0;
}
