/* tiler/run.c — tiling one slide: worker threads read a row chunk per pyramid level, cut,
 * resample (libvips), score and encode each patch; the calling thread is the single writer and
 * commits patches with their images in batched transactions. Also --dry-run and the skip /
 * redo / resume decisions. */
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/labels.h"
#include "db/tiling.h"
#include "tiler/plan.h"
#include "tiler/tiffread.h"

static struct {
    int started, waited, rc;
    const char *argv0;
    pthread_t th;
    char err[300];
} g_vips;

static void *vips_init_main(void *arg)
{
    (void)arg;
    if (VIPS_INIT(g_vips.argv0)) {
        char why[280];
        snprintf(g_vips.err, sizeof g_vips.err, "libvips: %s", mp_vips_err_take_into(why, sizeof why, NULL));
        g_vips.rc = -1;
        return NULL;
    }
    vips_concurrency_set(1); /* our workers are the parallelism */
    vips_cache_set_max(0);   /* per-patch pipelines are never reused */
    return NULL;
}

int tiler_global_init_async(const char *argv0)
{
    if (g_vips.started) return 0;
    g_vips.started = 1;
    g_vips.argv0 = argv0 ? argv0 : "magpie";
    tiler_tiff_quiet(); /* libvips' init leaves libtiff's handlers alone; only its loader sets them */
    if (pthread_create(&g_vips.th, NULL, vips_init_main, NULL)) {
        vips_init_main(NULL);
        g_vips.waited = 1;
    }
    return 0;
}

int tiler_global_wait(void)
{
    if (g_vips.started && !g_vips.waited) {
        pthread_join(g_vips.th, NULL);
        g_vips.waited = 1;
    }
    return g_vips.rc ? mp_err_set("%s", g_vips.err) : 0;
}

int tiler_global_init(const char *argv0)
{
    tiler_global_init_async(argv0);
    return tiler_global_wait();
}

int tiler_global_init_lean(const char *argv0)
{
    if (g_vips.started) return tiler_global_wait();
    /* libvips 8.14 loads every module in $libdir/vips-modules-8.14 at init, and takes libdir
     * from $VIPSHOME when set: a prefix without that folder leaves them unloaded (libvips goes
     * on silently; its message catalogue is the only other thing it looks up there). The
     * variable is set only around the synchronous init, on this thread, and put back. */
    const char *old = getenv("VIPSHOME");
    char *keep = old ? mp_xstrdup(old) : NULL;
    setenv("VIPSHOME", "/nonexistent/magpie-no-vips-modules", 1);
    tiler_global_init_async(argv0);
    int rc = tiler_global_wait();
    if (keep) setenv("VIPSHOME", keep, 1);
    else unsetenv("VIPSHOME");
    free(keep);
    return rc;
}

/* ---- results and the queue between workers and the writer ---- */

typedef struct result {
    db_patch_rec rec;
    db_image_rec img[TILER_MAX_MAGS];
    void *buf[TILER_MAX_MAGS];
    int png;
    char err[300];
    struct result *next;
} result;

static void result_free(result *r)
{
    if (!r) return;
    for (int i = 0; i < TILER_MAX_MAGS; i++)
        if (r->buf[i]) {
            if (r->png) g_free(r->buf[i]);
            else tjFree(r->buf[i]);
        }
    free(r);
}

typedef struct {
    plan *p;
    const tiler_opts *o;
    const char *path;
    atomic_int next_chunk; /* next unit to start */
    atomic_int stop;
    /* Chunks of each unit not yet taken: [lo, hi) relative to the unit's first chunk. The
     * owner takes from the top; a worker with no unit left takes from the bottom of the unit
     * with most left, so the last units do not leave a core idle (units are ~100 patches). */
    pthread_mutex_t take_mu;
    int *lo, *hi;
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    result *head, *tail;
    int count, cap, active;
    /* fault injection */
    int *fail_cells, n_fail;
} run_ctx;

static void push(run_ctx *c, result *r)
{
    pthread_mutex_lock(&c->mu);
    while (c->count >= c->cap && !c->stop) pthread_cond_wait(&c->nonfull, &c->mu);
    r->next = NULL;
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    c->count++;
    pthread_cond_signal(&c->nonempty);
    pthread_mutex_unlock(&c->mu);
}

/* Pop with a timeout; NULL when nothing arrived (check c->active for the end). */
static result *pop(run_ctx *c, double wait_s)
{
    pthread_mutex_lock(&c->mu);
    if (!c->head && c->active > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(wait_s * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&c->nonempty, &c->mu, &ts);
    }
    result *r = c->head;
    if (r) {
        c->head = r->next;
        if (!c->head) c->tail = NULL;
        c->count--;
        pthread_cond_signal(&c->nonfull);
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* ---- one worker ---- */

typedef struct {
    run_ctx *c;
    tiler_reader *rd; /* the patch reader (tiler/read.c), one per worker */
    tjhandle tj;
    uint8_t *rgb[TILER_MAX_MAGS];
    size_t cap[TILER_MAX_MAGS];
    uint8_t *tmp, *out;
    size_t tmp_cap, out_cap;
} worker;

static int injected(run_ctx *c, int gx, int gy)
{
    for (int i = 0; i < c->n_fail; i++)
        if (c->fail_cells[2 * i] == gx && c->fail_cells[2 * i + 1] == gy) return 1;
    return 0;
}

static void *grow(void *p, size_t *cap, size_t need)
{
    if (*cap >= need) return p;
    free(p);
    *cap = need;
    return mp_xmalloc(need);
}

/* Read level-L region (x0,y0 in level 0) of wr x hr into the worker's buffer for read r. The size
 * follows the slide's levels (a chunk of cells): a failure fails this read, recorded as the cells'
 * error, not the process. */
static int read_region(worker *w, int r, int level, int64_t x0, int64_t y0, int wr, int hr, char *err, size_t en)
{
    size_t need = (size_t)wr * hr * 3;
    if (w->cap[r] < need) {
        free(w->rgb[r]);
        w->cap[r] = 0;
        if (!(w->rgb[r] = mp_try_malloc(need, "a region read"))) {
            snprintf(err, en, "%s", mp_err());
            return -1;
        }
        w->cap[r] = need;
    }
    return tiler_reader_region(w->rd, level, x0, y0, wr, hr, w->rgb[r], err, en);
}

/* Area-average downsampling of a wl x wl RGB square to t x t (t < wl): every output pixel is
 * the mean of the input area it covers, fractional edge pixels weighted by their overlap.
 * Separable. vips_resize did the same job at 10-40x the cost per patch, its per-call pipeline
 * setup dominating at patch sizes (bench/tiler/encode_bench.c, BENCHMARKS.md). */
uint8_t *tiler_area_resample(const uint8_t *src, int wl, int t)
{
    double step = (double)wl / t; /* input pixels per output pixel */
    int span = (int)ceil(step) + 1;
    int *first = mp_xmalloc(sizeof(int) * t);
    float *wts = mp_xcalloc((size_t)t * span, sizeof(float));
    for (int o = 0; o < t; o++) {
        double a = o * step, b = (o + 1) * step;
        int i0 = (int)floor(a);
        first[o] = i0;
        for (int k = 0; k < span; k++) {
            int i = i0 + k;
            if (i >= wl) break;
            double ov = fmin(b, i + 1) - fmax(a, i);
            if (ov > 0) wts[(size_t)o * span + k] = (float)(ov / step);
        }
    }
    float *tmp = mp_xmalloc(sizeof(float) * (size_t)wl * t * 3); /* rows of input, columns of output */
    for (int y = 0; y < wl; y++) {
        const uint8_t *row = src + (size_t)y * wl * 3;
        float *o = tmp + (size_t)y * t * 3;
        for (int x = 0; x < t; x++) {
            float r = 0, g = 0, b = 0;
            const float *wv = wts + (size_t)x * span;
            for (int k = 0; k < span; k++) {
                int i = first[x] + k;
                if (i >= wl || wv[k] == 0) continue;
                r += wv[k] * row[3 * i];
                g += wv[k] * row[3 * i + 1];
                b += wv[k] * row[3 * i + 2];
            }
            o[3 * x] = r;
            o[3 * x + 1] = g;
            o[3 * x + 2] = b;
        }
    }
    uint8_t *out = g_malloc((size_t)t * t * 3);
    for (int y = 0; y < t; y++) {
        const float *wv = wts + (size_t)y * span;
        for (int x = 0; x < t * 3; x++) {
            float v = 0;
            for (int k = 0; k < span; k++) {
                int i = first[y] + k;
                if (i >= wl || wv[k] == 0) continue;
                v += wv[k] * tmp[(size_t)i * t * 3 + x];
            }
            int q = (int)lrintf(v);
            out[(size_t)y * t * 3 + x] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
    }
    free(first);
    free(wts);
    free(tmp);
    return out;
}

/* Build the result for one cell from the per-read RGB buffers (row stride, x offset). */
static result *make_cell(worker *w, const plan_cell *cell, const int *stride, const int *off)
{
    run_ctx *c = w->c;
    plan *p = c->p;
    result *r = mp_xcalloc(1, sizeof *r);
    r->png = c->o->png;
    r->rec.gx = cell->gx;
    r->rec.gy = cell->gy;
    r->rec.x0 = cell->x0;
    r->rec.y0 = cell->y0;
    r->rec.size0 = p->grid.size0;
    r->rec.tissue = cell->tissue;
    r->rec.pen = cell->pen;
    r->rec.images = r->img;
    for (int k = 0; k < p->n_mags; k++) {
        const plan_mag *m = &p->mags[k];
        int wl = m->wl, t = m->target;
        const uint8_t *src = w->rgb[m->read] + (size_t)off[m->read] * 3, *px = src;
        int pitch = stride[m->read]; /* pixels between rows of px */
        if (t != wl) {
            /* the reader's resampling policy, the one infer uses on the same square */
            w->out = grow(w->out, &w->out_cap, (size_t)t * t * 3);
            if (tiler_resample(src, wl, pitch, t, w->out, r->err, sizeof r->err)) break;
            px = w->out;
            pitch = t;
        } else if (c->o->png) {
            /* libvips wants a contiguous image; the JPEG encoder and QC read the row buffer in place */
            w->tmp = grow(w->tmp, &w->tmp_cap, (size_t)wl * wl * 3);
            for (int y = 0; y < wl; y++) memcpy(w->tmp + (size_t)y * wl * 3, src + (size_t)y * pitch * 3, (size_t)wl * 3);
            px = w->tmp;
            pitch = wl;
        }
        if (k == p->top) tiler_qc_pitch(px, t, t, pitch, &r->rec.blur, &r->rec.brightness);
        db_image_rec *im = &r->img[k];
        im->mag = m->mag;
        im->width = im->height = t;
        im->level = m->level;
        im->scale = m->scale;
        if (c->o->png) {
            VipsImage *v = vips_image_new_from_memory(px, (size_t)t * t * 3, t, t, 3, VIPS_FORMAT_UCHAR);
            void *buf = NULL;
            size_t len = 0;
            if (!v || vips_pngsave_buffer(v, &buf, &len, "compression", 6, NULL))
                tiler_vips_error_take(r->err, sizeof r->err, "PNG encode");
            if (v) g_object_unref(v);
            r->buf[k] = buf;
            im->data = buf;
            im->len = len;
            im->codec = "png";
        } else {
            unsigned char *buf = NULL;
            unsigned long len = 0;
            /* Like libvips, no chroma subsampling at Q >= 90: 4:2:0 costs H&E's sharp colour
             * edges ~2 dB (measured against OpenSlide reads in tests/tiler). */
            if (tjCompress2(w->tj, px, t, pitch * 3, t, TJPF_RGB, &buf, &len,
                            c->o->quality >= 90 ? TJSAMP_444 : TJSAMP_420, c->o->quality, TJFLAG_ACCURATEDCT))
                snprintf(r->err, sizeof r->err, "JPEG encode: %s", tjGetErrorStr2(w->tj));
            r->buf[k] = buf;
            im->data = buf;
            im->len = len;
            im->codec = "jpeg";
        }
        if (r->err[0]) break;
    }
    r->rec.n_images = p->n_mags;
    if (r->err[0]) r->rec.error = r->err;
    return r;
}

static result *error_cell(const plan_cell *cell, const char *msg)
{
    result *r = mp_xcalloc(1, sizeof *r);
    r->rec.gx = cell->gx;
    r->rec.gy = cell->gy;
    snprintf(r->err, sizeof r->err, "%s", msg);
    r->rec.error = r->err;
    return r;
}

/* Produce results for the not-yet-done cells of one chunk; emit(r, arg) takes each. */
static void do_chunk(worker *w, const plan_chunk *ch, void (*emit)(result *, void *), void *arg)
{
    run_ctx *c = w->c;
    plan *p = c->p;
    plan_cell *cells = p->cells + ch->first;
    int todo = 0;
    for (int i = 0; i < ch->count; i++) todo += !cells[i].done;
    if (!todo) return;
    char err[300];
    int stride[TILER_MAX_MAGS], off[TILER_MAX_MAGS];
    /* Fast path: one read per level spanning every selected cell of the chunk (done or not, so
     * the pixels of a cell do not depend on what a previous run wrote). Not on a level whose
     * downsample is not a whole number (Aperio's 4.0002...): OpenSlide interpolates a region
     * that starts between level pixels, by a fraction that depends on where the read starts, so
     * a cell's pixels would depend on its chunk; there every cell is read on its own, exactly
     * as infer reads it. */
    int ok = 1;
    for (int r = 0; r < p->n_reads; r++) {
        double ds = p->slide.ds[p->reads[r].level];
        if (ds != floor(ds)) ok = 0;
    }
    for (int r = 0; r < p->n_reads && ok; r++) {
        double ds = p->slide.ds[p->reads[r].level];
        /* in the level's pixels, as the reader places regions (tiler_reader_region; whole ds here) */
        int span = (int)(llround(cells[ch->count - 1].x0 / ds) - llround(cells[0].x0 / ds)) + p->reads[r].wl;
        stride[r] = span;
        if (read_region(w, r, p->reads[r].level, cells[0].x0, cells[0].y0, span, p->reads[r].wl, err, sizeof err))
            ok = 0;
    }
    for (int i = 0; i < ch->count && !c->stop; i++) {
        plan_cell *cell = &cells[i];
        if (cell->done) continue;
        if (injected(c, cell->gx, cell->gy)) {
            emit(error_cell(cell, "injected read failure (MAGPIE_TILER_FAIL)"), arg);
            continue;
        }
        if (ok) {
            for (int r = 0; r < p->n_reads; r++) {
                double ds = p->slide.ds[p->reads[r].level];
                off[r] = (int)(llround(cell->x0 / ds) - llround(cells[0].x0 / ds));
            }
            emit(make_cell(w, cell, stride, off), arg);
            continue;
        }
        /* Cell by cell: after a failed read (one bad tile costs one cell), or on a fractional level. */
        int cell_ok = 1;
        for (int r = 0; r < p->n_reads && cell_ok; r++) {
            stride[r] = p->reads[r].wl;
            off[r] = 0;
            if (read_region(w, r, p->reads[r].level, cell->x0, cell->y0, p->reads[r].wl, p->reads[r].wl, err, sizeof err))
                cell_ok = 0;
        }
        emit(cell_ok ? make_cell(w, cell, stride, off) : error_cell(cell, err), arg);
    }
}

static void worker_init(worker *w, run_ctx *c)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->tj = tjInitCompress();
    w->rd = tiler_reader_open(&c->p->slide);
}

static void worker_free(worker *w)
{
    tiler_reader_close(w->rd);
    tjDestroy(w->tj);
    for (int i = 0; i < TILER_MAX_MAGS; i++) free(w->rgb[i]);
    free(w->tmp);
    free(w->out);
}

static void emit_queue(result *r, void *arg) { push((run_ctx *)arg, r); }

static void *worker_main(void *arg)
{
    run_ctx *c = arg;
    worker w;
    worker_init(&w, c);
    for (;;) {
        int u = atomic_fetch_add(&c->next_chunk, 1);
        if (u >= c->p->n_units || c->stop) break;
        for (;;) { /* own unit, top down */
            pthread_mutex_lock(&c->take_mu);
            int i = c->lo[u] < c->hi[u] ? c->lo[u]++ : -1;
            pthread_mutex_unlock(&c->take_mu);
            if (i < 0 || c->stop) break;
            do_chunk(&w, &c->p->chunks[c->p->units[u].first + i], emit_queue, c);
        }
    }
    while (!c->stop) { /* help: bottom up in the unit with the most chunks left */
        pthread_mutex_lock(&c->take_mu);
        int best = -1;
        for (int u = 0; u < c->p->n_units; u++)
            if (c->hi[u] > c->lo[u] && (best < 0 || c->hi[u] - c->lo[u] > c->hi[best] - c->lo[best])) best = u;
        int i = best >= 0 ? --c->hi[best] : -1;
        pthread_mutex_unlock(&c->take_mu);
        if (i < 0) break;
        do_chunk(&w, &c->p->chunks[c->p->units[best].first + i], emit_queue, c);
    }
    worker_free(&w);
    pthread_mutex_lock(&c->mu);
    c->active--;
    pthread_cond_broadcast(&c->nonempty);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- test hooks ---- */

static void parse_fail_env(run_ctx *c)
{
    const char *s = getenv("MAGPIE_TILER_FAIL");
    if (!s || !*s) return;
    int cap = 16;
    c->fail_cells = mp_xmalloc(sizeof(int) * 2 * cap);
    while (*s) {
        int gx, gy, n = 0;
        if (sscanf(s, "%d,%d%n", &gx, &gy, &n) != 2) break;
        if (c->n_fail == cap) c->fail_cells = mp_xrealloc(c->fail_cells, sizeof(int) * 2 * (cap *= 2));
        c->fail_cells[2 * c->n_fail] = gx;
        c->fail_cells[2 * c->n_fail + 1] = gy;
        c->n_fail++;
        s += n;
        while (*s == ';' || *s == ' ') s++;
    }
}

static int kill_point(const char *what, int n)
{
    const char *s = getenv("MAGPIE_TILER_KILL");
    if (!s) return 0;
    size_t l = strlen(what);
    if (strncmp(s, what, l)) return 0;
    if (s[l] == 0) return n < 0;
    return s[l] == ':' && atoi(s + l + 1) == n;
}

static void die_if(const char *what, int n)
{
    if (kill_point(what, n)) raise(SIGKILL);
}

static void in_batch_hook(void *arg)
{
    die_if("in-batch", *(int *)arg);
}

/* ---- the slide ---- */

static void mark_done(int gx, int gy, void *arg)
{
    plan_cell *c = plan_find_cell(arg, gx, gy);
    if (c) c->done = 1;
}

static void abs_path(const char *path, char *out, size_t n)
{
    char *r = realpath(path, NULL);
    if (r) {
        snprintf(out, n, "%s", r);
        free(r);
    } else {
        snprintf(out, n, "%s", path);
    }
}

static int write_batch(db_tile_writer *wr, result **batch, int n, int batch_no)
{
    db_patch_rec recs[128];
    for (int i = 0; i < n; i++) recs[i] = batch[i]->rec;
    int rc = db_tile_writer_batch(wr, recs, n);
    for (int i = 0; i < n; i++) result_free(batch[i]);
    if (rc == 0) die_if("batch", batch_no);
    return rc;
}

void tiler_params(const tiler_opts *o, char *json, size_t n, char hash[64]) { plan_params(o, json, n, hash); }

int tiler_tile_slide(mp_db *db, const char *path, const tiler_opts *o, tiler_result *res)
{
    memset(res, 0, sizeof *res);
    res->outcome = TILER_FAILED;
    double t0 = mp_now();
    char apath[PATH_MAX], name[256], fp[64], params[1024], ph[64];
    if (tiler_fingerprint(path, fp)) return -1; /* refuses what is not a regular file */
    abs_path(path, apath, sizeof apath);
    mp_path_stem(path, name, sizeof name);
    plan_params(o, params, sizeof params, ph);

    db_slide_state st;
    int found = db_tiling_find(db, apath, &st);
    if (found < 0) return -1;
    if (found && !strcmp(st.fingerprint, fp) && !strcmp(st.params_hash, ph) && !strcmp(st.status, "done")) {
        res->outcome = TILER_SKIPPED;
        db_tiling_counts(db, st.id, 1, &res->n_patches, &res->n_errors); /* for the report only */
        return 0;
    }
    int64_t id;
    if (db_tiling_prepare(db, apath, name, fp, params, ph, &id)) return -1;

    plan p;
    char keep[1024];
    if (plan_build(&p, path, o)) goto fail_plan;
    res->kind = p.mask.kind;
    res->kind_known = 1;
    if (p.mask.kind.kind == TILER_FLUORESCENCE && !o->allow_fluorescence) {
        /* an H&E model would score its black glass as tissue; the row still says what it is */
        char why[160];
        tiler_kind_describe(&p.mask.kind, why, sizeof why);
        if (db_tiling_set_kind(db, id, tiler_kind_name(p.mask.kind.kind))) goto fail_plan;
        mp_err_set("%s: a fluorescence slide (%s), not bright-field H&E; pass --allow-fluorescence to tile it anyway",
                   path, why);
        goto fail_plan;
    }
    if (db_tiling_done_cells(db, id, mark_done, &p)) goto fail_plan;
    int64_t prior = 0;
    for (int i = 0; i < p.n_cells; i++) prior += p.cells[i].done;
    if (tiler_global_wait()) goto fail_plan;

    /* Workers start as soon as the cells are known; the mask PNG and the slide row are written
     * meanwhile. Nothing reaches the dataset before db_tiling_start: only this thread writes. */
    run_ctx c;
    memset(&c, 0, sizeof c);
    /* one pair per work unit of the plan (bounded with it): a failure fails this slide */
    c.lo = mp_try_calloc((size_t)p.n_units + 1, sizeof *c.lo, "the work units");
    c.hi = c.lo ? mp_try_calloc((size_t)p.n_units + 1, sizeof *c.hi, "the work units") : NULL;
    if (!c.hi) {
        free(c.lo);
        mp_err_prefix("%s", path);
        goto fail_plan;
    }
    c.p = &p;
    c.o = o;
    c.path = path;
    /* Room for ~20 ms of the workers' output: the writer stalls for SQLite's WAL checkpoints
     * (fdatasync of the WAL and the database, 1-13 ms each, ~20 per 1.26 Gpx slide), and with
     * 8 patches per job the workers stalled with it. A patch is ~10-20 KB encoded. */
    c.cap = 64 * (o->jobs > 0 ? o->jobs : 1);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.nonempty, NULL);
    pthread_cond_init(&c.nonfull, NULL);
    pthread_mutex_init(&c.take_mu, NULL);
    for (int u = 0; u < p.n_units; u++) c.hi[u] = p.units[u].count;
    parse_fail_env(&c);
    int jobs = o->jobs > 0 ? o->jobs : 1;
    if (jobs > p.n_units) jobs = p.n_units > 0 ? p.n_units : 0;
    c.active = jobs;
    pthread_t *th = mp_xcalloc(jobs ? jobs : 1, sizeof *th);
    /* A worker that could not start is not counted: the writer waits for c.active to reach 0.
     * Any one worker runs every unit (the others only share the load). */
    int started = 0, th_err = 0;
    for (int i = 0; i < jobs; i++) {
        int e = pthread_create(&th[started], NULL, worker_main, &c);
        if (e == 0) started++;
        else th_err = e;
    }
    pthread_mutex_lock(&c.mu);
    c.active -= jobs - started;
    pthread_mutex_unlock(&c.mu);

    int failed = 0;
    keep[0] = 0;
    if (jobs > 0 && started == 0) {
        failed = 1;
        snprintf(keep, sizeof keep, "%s: cannot start a worker thread: %s", path, strerror(th_err));
    }
    void *png = NULL;
    size_t png_len = 0;
    if (!failed && tiler_mask_png(&p.mask, &png, &png_len)) failed = 1;
    else if (!failed) {
        db_slide_meta meta = {.vendor = p.slide.vendor, .width = p.slide.width, .height = p.slide.height,
                              .level_count = p.slide.levels, .mpp_x = p.mpp.mpp_x, .mpp_y = p.mpp.mpp_y,
                              .mpp_source = p.mpp.source, .mask_png = png, .mask_len = png_len,
                              .mask_width = p.mask.w, .mask_height = p.mask.h, .mask_downsample = p.mask.ds,
                              .kind = tiler_kind_name(p.mask.kind.kind)};
        failed = db_tiling_start(db, id, &meta) != 0;
        tiler_free(png);
    }
    if (failed) {
        if (!keep[0]) snprintf(keep, sizeof keep, "%s", mp_err());
        c.stop = 1;
        pthread_mutex_lock(&c.mu);
        pthread_cond_broadcast(&c.nonfull);
        pthread_mutex_unlock(&c.mu);
    } else {
        die_if("after-start", -1);
        if (p.mask.fraction == 0)
            mp_warn("%s: tissue mask is empty (no tissue found at threshold %d%s); no patches", path, p.mask.threshold,
                    p.mask.dark ? ", dark-background mode" : "");
        else if (p.n_cells == 0)
            mp_warn("%s: no grid cell reaches --min-tissue %g (mask covers %.1f%% of the slide); no patches", path,
                    o->min_tissue, 100 * p.mask.fraction);
    }

    db_tile_writer *wr = failed ? NULL : db_tile_writer_new(db, id);
    int batch_no = 0;
    if (!failed && !wr) {
        failed = 1;
        snprintf(keep, sizeof keep, "%s", mp_err());
        c.stop = 1;
    } else if (wr) db_tile_writer_set_hook(wr, in_batch_hook, &batch_no);
    enum { BATCH = 64 };
    result *batch[BATCH];
    int nb = 0;
    double tb = mp_now();
    int64_t todo = p.n_cells - prior, written = 0, nerr = 0;
    char first_err[320] = "";
    mp_progress *prog = mp_progress_new(o->progress, name, (uint64_t)todo, "patches");
    for (;;) {
        result *r = pop(&c, 0.2);
        if (r) {
            if (r->rec.error) {
                nerr++;
                if (!first_err[0]) snprintf(first_err, sizeof first_err, "(%d,%d) %s", r->rec.gx, r->rec.gy, r->err);
            }
            if (failed) result_free(r);
            else batch[nb++] = r;
        }
        int finished;
        pthread_mutex_lock(&c.mu);
        finished = c.active == 0 && !c.head;
        pthread_mutex_unlock(&c.mu);
        if (!failed && nb > 0 && (nb == BATCH || finished || mp_now() - tb > 1.0)) {
            batch_no++;
            written += nb;
            int64_t nb_written = nb;
            if (write_batch(wr, batch, nb, batch_no)) {
                failed = 1;
                snprintf(keep, sizeof keep, "%s", mp_err());
                c.stop = 1;
                pthread_cond_broadcast(&c.nonfull);
            }
            nb = 0;
            tb = mp_now();
            char extra[64];
            snprintf(extra, sizeof extra, "\"slide\":%lld", (long long)id);
            mp_progress_update(prog, (uint64_t)written, o->progress == MP_PROGRESS_JSON ? extra : NULL);
            if (!failed && o->on_batch) o->on_batch(o->on_batch_arg, nb_written);
        }
        if (finished && !r) break;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    db_tile_writer_free(wr);
    mp_progress_finish(prog, NULL);
    mp_progress_free(prog);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.nonempty);
    pthread_cond_destroy(&c.nonfull);
    pthread_mutex_destroy(&c.take_mu);
    free(c.lo);
    free(c.hi);
    free(c.fail_cells);
    if (failed) {
        /* mp_err_set("%s", mp_err()) would format the buffer into itself */
        if (keep[0]) mp_err_set("%s", keep);
        goto fail_plan;
    }
    res->n_new = written - nerr;
    if (db_tiling_counts(db, id, 0, &res->n_patches, &res->n_errors)) goto fail_plan;
    if (res->n_patches == 0 && res->n_errors > 0) {
        mp_err_set("%s: no tile could be read (%lld unreadable cells; first: %s)", path, (long long)res->n_errors,
                   first_err[0] ? first_err : "see tile_errors");
        goto fail_plan;
    }
    die_if("before-finish", -1);
    if (db_tiling_finish(db, id)) goto fail_plan;
    plan_free(&p);
    res->outcome = TILER_DONE;
    res->seconds = mp_now() - t0;
    return 0;

fail_plan:
    snprintf(keep, sizeof keep, "%s", mp_err());
    plan_free(&p);
    db_tiling_fail(db, id, keep);
    return mp_err_set("%s", keep);
}

/* ---- --dry-run ---- */

typedef struct {
    int64_t n, bytes, errors;
} sample_acc;

static void emit_sample(result *r, void *arg)
{
    sample_acc *a = arg;
    if (r->rec.error) a->errors++;
    else {
        a->n++;
        for (int k = 0; k < r->rec.n_images; k++) a->bytes += (int64_t)r->img[k].len;
    }
    result_free(r);
}

int tiler_dry_run(mp_db *db, const char *path, const tiler_opts *o, FILE *out)
{
    plan p;
    if (plan_build(&p, path, o)) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        plan_free(&p);
        return mp_err_set("%s", keep);
    }
    tiler_slide *s = &p.slide;
    fprintf(out, "%s: %s %lldx%lld, %d level%s; MPP %.4g x %.4g µm/px from %s\n", path, s->vendor,
            (long long)s->width, (long long)s->height, s->levels, s->levels == 1 ? "" : "s", p.mpp.mpp_x,
            p.mpp.mpp_y, p.mpp.source);
    char why[160];
    tiler_kind_describe(&p.mask.kind, why, sizeof why);
    fprintf(out, "  kind: %s (%s)\n", tiler_kind_name(p.mask.kind.kind), why);
    if (p.mask.kind.kind == TILER_FLUORESCENCE && !o->allow_fluorescence) {
        plan_free(&p);
        return mp_err_set("%s: a fluorescence slide (%s), not bright-field H&E; pass --allow-fluorescence to tile it "
                          "anyway", path, why);
    }
    fprintf(out, "  mask %dx%d (%.3g µm/px): tissue %.1f%% (Otsu on %s, threshold %d)\n", p.mask.w, p.mask.h,
            p.mask_mpp, 100 * p.mask.fraction, p.mask.dark ? "intensity, dark background" : "saturation",
            p.mask.threshold);
    fprintf(out, "  grid: %d px at %gx = %.1f level-0 px, stride %.1f: %dx%d = %lld cells, %d with tissue >= %g\n",
            o->size, p.mag_top, p.grid.size0, p.grid.stride0, p.grid.nx, p.grid.ny, (long long)p.n_grid, p.n_cells,
            o->min_tissue);
    for (int k = 0; k < p.n_mags; k++) {
        const plan_mag *m = &p.mags[k];
        fprintf(out, "  %gx: level %d (downsample %.4g, %.4g µm/px), read %d px -> %d px, scale %.4g%s\n", m->mag,
                m->level, s->ds[m->level], p.mpp.mpp_x * s->ds[m->level], m->wl, m->target, m->scale,
                m->wl == m->target ? " (no resampling)" : m->scale > 1 ? " (upsampled)" : "");
    }
    if (db) {
        char apath[PATH_MAX], fp[64], params[1024], ph[64];
        abs_path(path, apath, sizeof apath);
        plan_params(o, params, sizeof params, ph);
        db_slide_state st;
        int found = db_tiling_find(db, apath, &st);
        if (found == 1 && tiler_fingerprint(path, fp) == 0) {
            /* a redo deletes the patches; the labels stored apart are applied to the new ones */
            int64_t nreg = db_labels_regions(db, st.id);
            char keep[160] = "";
            if (nreg > 0)
                snprintf(keep, sizeof keep, "; its %lld region annotation%s will be re-applied to the new patches",
                         (long long)nreg, nreg == 1 ? "" : "s");
            if (strcmp(st.fingerprint, fp)) fprintf(out, "  dataset: slide file changed: would redo%s\n", keep);
            else if (strcmp(st.params_hash, ph)) fprintf(out, "  dataset: parameters changed: would redo%s\n", keep);
            else if (!strcmp(st.status, "done")) fprintf(out, "  dataset: done and unchanged: would skip\n");
            else {
                db_tiling_done_cells(db, st.id, mark_done, &p);
                int d = 0;
                for (int i = 0; i < p.n_cells; i++) d += p.cells[i].done;
                fprintf(out, "  dataset: %s, %d of %d cells present: would resume\n", st.status, d, p.n_cells);
            }
        } else if (found == 0) {
            fprintf(out, "  dataset: new slide\n");
        }
    }
    /* Estimate from a few chunks spread over the slide, encoded for real and timed. */
    if (tiler_global_wait()) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        plan_free(&p);
        return mp_err_set("%s", keep);
    }
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.p = &p;
    c.o = o;
    c.path = path;
    worker w;
    worker_init(&w, &c);
    sample_acc a = {0};
    double t = mp_now();
    int ns = p.n_chunks < 4 ? p.n_chunks : 4;
    for (int i = 0; i < ns; i++) {
        plan_chunk ch = p.chunks[(int64_t)i * p.n_chunks / ns];
        if (ch.count > 4) ch.count = 4;
        for (int k = 0; k < ch.count; k++) p.cells[ch.first + k].done = 0;
        do_chunk(&w, &ch, emit_sample, &a);
    }
    t = mp_now() - t;
    worker_free(&w);
    if (a.n > 0) {
        char b1[32], b2[32];
        double per = (double)a.bytes / a.n;
        int jobs = o->jobs > 0 ? o->jobs : 1;
        fprintf(out, "  estimate: %d patches, %s (%s/patch), about %.1f s with %d job%s (from %lld sampled)\n",
                p.n_cells, mp_fmt_bytes(b1, sizeof b1, per * p.n_cells), mp_fmt_bytes(b2, sizeof b2, per),
                t / a.n * p.n_cells / jobs, jobs, jobs == 1 ? "" : "s", (long long)a.n);
    } else {
        fprintf(out, "  estimate: %d patches%s\n", p.n_cells, a.errors ? " (sampled reads failed)" : "");
    }
    plan_free(&p);
    return 0;
}
