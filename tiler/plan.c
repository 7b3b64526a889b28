/* tiler/plan.c — everything decided before pixels move: grid geometry, level choice per
 * magnification, the tissue mask, the list of selected cells grouped into row chunks, and the
 * tiling parameters whose hash decides whether a slide must be redone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/error.h"
#include "common/util.h"
#include "tiler/plan.h"
#include "tiler/tiffread.h"

int tiler_choose_level(const double *ds, int n, double want, double tol)
{
    int best = 0;
    for (int i = 0; i < n; i++)
        if (ds[i] <= want * (1 + tol) && ds[i] >= ds[best]) best = i;
    return best;
}

int tiler_mag_size(int size, double mag, double mag_top)
{
    int s = (int)lround(size * mag / mag_top);
    return s < 1 ? 1 : s;
}

int tiler_grid_make(int64_t width, int64_t height, double mpp, double mag_top, int size, int stride, tiler_grid *g)
{
    memset(g, 0, sizeof *g);
    if (!(mpp > 0) || !(mag_top > 0) || size < 1) return mp_err_set("grid: bad geometry");
    double mpp_top = 10.0 / mag_top;
    g->size0 = size * mpp_top / mpp;
    g->stride0 = (stride > 0 ? stride : size) * mpp_top / mpp;
    /* Only cells entirely inside the slide; 1e-9 absorbs rounding of exact fits. */
    g->nx = width >= g->size0 - 1e-9 ? (int)floor((width - g->size0) / g->stride0 + 1e-9) + 1 : 0;
    g->ny = height >= g->size0 - 1e-9 ? (int)floor((height - g->size0) / g->stride0 + 1e-9) + 1 : 0;
    return 0;
}

int64_t tiler_grid_pos(const tiler_grid *g, int i) { return llround(i * g->stride0); }

void tiler_opts_default(tiler_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mags[0] = 10;
    o->mags[1] = 1.25;
    o->n_mags = 2;
    o->size = 224;
    o->min_tissue = 0.5;
    o->jobs = 2;
    o->quality = 90;
    o->progress = MP_PROGRESS_AUTO;
}

void plan_params(const tiler_opts *o, char *json, size_t n, char hash[64])
{
    /* Only what changes the output: --jobs and progress do not. "mask" versions the algorithm. */
    size_t k = (size_t)snprintf(json, n, "{\"mags\":[");
    for (int i = 0; i < o->n_mags && k < n; i++) k += (size_t)snprintf(json + k, n - k, "%s%g", i ? "," : "", o->mags[i]);
    if (k < n)
        k += (size_t)snprintf(json + k, n - k,
                              "],\"size\":%d,\"stride\":%d,\"min_tissue\":%g,\"mpp\":%.9g,\"format\":\"%s\","
                              "\"quality\":%d,\"upsample\":%s,\"mask\":\"v2\",\"resample\":\"area-down,vips-lanczos3-up\",\"read\":\"level-grid\"}",
                              o->size, o->stride > 0 ? o->stride : o->size, o->min_tissue, o->mpp,
                              o->png ? "png" : "jpeg", o->quality, o->allow_upsample ? "true" : "false");
    snprintf(hash, 64, "xxh3:%016llx", (unsigned long long)XXH3_64bits(json, strlen(json)));
}

static int cmp_cell(const void *a, const void *b)
{
    const plan_cell *x = a, *y = b;
    if (x->gy != y->gy) return x->gy < y->gy ? -1 : 1;
    return x->gx < y->gx ? -1 : x->gx > y->gx;
}

static int cmp_chunk(const void *a, const void *b)
{
    const plan_chunk *x = a, *y = b;
    int bx = x->gy / 8, by = y->gy / 8; /* UNIT_ROWS */
    if (bx != by) return bx < by ? -1 : 1;
    if (x->col != y->col) return x->col < y->col ? -1 : 1;
    return x->gy < y->gy ? -1 : x->gy > y->gy;
}

static int plan_oom(const char *path, int64_t cells)
{
    return mp_err_set("%s: out of memory for the plan of %lld patches (the slide is too large for this machine)", path,
                      (long long)cells);
}

int plan_build(plan *p, const char *path, const tiler_opts *o)
{
    memset(p, 0, sizeof *p);
    if (tiler_slide_open(path, &p->slide)) return -1;
    tiler_slide *s = &p->slide;
    if (tiler_resolve_mpp(path, s, o->mpp, &p->mpp)) return -1;
    if (p->mpp.rejected[0]) mp_warn("%s: ignored %s; using %s", path, p->mpp.rejected, p->mpp.source);
    double mpp = p->mpp.mpp_x;
    if (fabs(p->mpp.mpp_y - mpp) > 0.02 * mpp)
        mp_warn("%s: non-square pixels (%.4g x %.4g µm); using the x pixel size", path, mpp, p->mpp.mpp_y);

    /* Magnifications: top first; each reads the coarsest level still fine enough. */
    double top = 0;
    for (int i = 0; i < o->n_mags; i++) top = fmax(top, o->mags[i]);
    p->mag_top = top;
    if (tiler_grid_make(s->width, s->height, mpp, top, o->size, o->stride, &p->grid)) return -1;
    p->n_mags = o->n_mags;
    for (int i = 0; i < o->n_mags; i++) {
        plan_mag *m = &p->mags[i];
        m->mag = o->mags[i];
        double want = (10.0 / m->mag) / mpp; /* level-0 px per output px */
        if (want < 1 / (1 + TILER_LEVEL_TOL) && !o->allow_upsample)
            return mp_err_set("%s: %gx needs %.4g µm/px but level 0 is %.4g µm/px (%.3gx); lower --mags or pass "
                              "--allow-upsample", path, m->mag, 10.0 / m->mag, mpp, 10.0 / mpp);
        tiler_patch_geom g; /* the patch reader's rule, the one infer applies to the same square */
        tiler_patch_geom_make(s, want, p->grid.size0, tiler_mag_size(o->size, m->mag, top), &g);
        m->level = g.level;
        m->target = g.target;
        m->wl = g.wl;
        m->scale = g.scale;
        m->read = -1;
        for (int r = 0; r < p->n_reads; r++)
            if (p->reads[r].level == m->level) m->read = r;
        if (m->read < 0) {
            m->read = p->n_reads++;
            p->reads[m->read].level = m->level;
            p->reads[m->read].wl = m->wl;
        }
        if (m->mag == top) p->top = i;
    }

    /* Tissue mask: ~8 µm/px, at least 8 mask pixels across a patch, at most 4096 px a side. */
    double patch_um = o->size * 10.0 / top;
    double mm = fmin(8.0, patch_um / 8.0);
    mm = fmax(mm, mpp);
    mm = fmax(mm, mpp * fmax(s->width, s->height) / 4096.0);
    uint8_t *rgba;
    int tw, th;
    double tds;
    tiff_fast *fast = tiff_fast_open(path, s);
    int trc = tiler_thumbnail_fast(s, fast, mpp, mm, &rgba, &tw, &th, &tds);
    tiff_fast_close(fast);
    if (trc) return -1;
    p->mask_mpp = tds * mpp;
    int mrc = tiler_mask_compute(rgba, tw, th, p->mask_mpp, &p->mask);
    free(rgba);
    if (mrc) return mp_err_prefix("%s", path);
    p->mask.ds = tds;

    /* Selected cells, sorted by row then column; chunks are runs of at most K columns of one
     * row, with K fixed by geometry only, so reads (and pixels) never depend on what a previous
     * run already wrote. */
    p->n_grid = (int64_t)p->grid.nx * p->grid.ny;
    /* The grid comes from the file's declared size: bounded (cell counts are ints), and every
     * array sized by it is allocated without aborting, so a slide too big for this machine's
     * memory fails alone (plan_free frees what was taken). */
    if (p->n_grid > PLAN_MAX_CELLS)
        return mp_err_set("%s: %lld patch positions (%d x %d) at this patch size; at most %d", path,
                          (long long)p->n_grid, p->grid.nx, p->grid.ny, PLAN_MAX_CELLS);
    size_t cap = 1024;
    if (!(p->cells = mp_try_malloc(cap * sizeof *p->cells, "the plan"))) return plan_oom(path, (int64_t)cap);
    for (int gy = 0; gy < p->grid.ny; gy++)
        for (int gx = 0; gx < p->grid.nx; gx++) {
            double x0 = (double)tiler_grid_pos(&p->grid, gx), y0 = (double)tiler_grid_pos(&p->grid, gy);
            double t = tiler_mask_cover(&p->mask, p->mask.tissue, 255, x0, y0, p->grid.size0);
            if (t < o->min_tissue || (o->min_tissue > 0 && t <= 0)) continue;
            if ((size_t)p->n_cells == cap) {
                plan_cell *more = mp_try_realloc(p->cells, 2 * cap * sizeof *p->cells, "the plan");
                if (!more) return plan_oom(path, (int64_t)(2 * cap));
                p->cells = more;
                cap *= 2;
            }
            plan_cell *c = &p->cells[p->n_cells++];
            c->gx = gx;
            c->gy = gy;
            c->x0 = (int64_t)x0;
            c->y0 = (int64_t)y0;
            c->tissue = (float)t;
            c->pen = (float)tiler_mask_cover(&p->mask, p->mask.pen, 1, x0, y0, p->grid.size0);
            c->done = 0;
        }
    qsort(p->cells, p->n_cells, sizeof *p->cells, cmp_cell);
    int finest = 0;
    for (int r = 0; r < p->n_reads; r++) finest = p->reads[r].wl > finest ? p->reads[r].wl : finest;
    int k = (int)((4 << 20) / ((double)finest * finest));
    k = k < 1 ? 1 : k > 16 ? 16 : k;
    /* Benchmark hook: MAGPIE_TILER_CHUNK_COLS=1 reads patch by patch (bench/tiler). */
    const char *env = getenv("MAGPIE_TILER_CHUNK_COLS");
    if (env && atoi(env) > 0) k = atoi(env);
    p->chunk_cols = k;
    if (!(p->chunks = mp_try_malloc(((size_t)p->n_cells + 1) * sizeof *p->chunks, "the plan")))
        return plan_oom(path, p->n_cells);
    for (int i = 0; i < p->n_cells;) {
        int j = i + 1;
        while (j < p->n_cells && p->cells[j].gy == p->cells[i].gy && p->cells[j].gx / k == p->cells[i].gx / k) j++;
        p->chunks[p->n_chunks].first = i;
        p->chunks[p->n_chunks].count = j - i;
        p->chunks[p->n_chunks].gy = p->cells[i].gy;
        p->chunks[p->n_chunks].col = p->cells[i].gx / k;
        p->n_chunks++;
        i = j;
    }
    /* Work order: bands of UNIT_ROWS grid rows; inside a band, column chunk by column chunk,
     * top to bottom. A worker then reads the tile row shared by two grid rows twice in a row,
     * while it is still in its tile cache (tiles and patches rarely align). */
    enum { UNIT_ROWS = 8 };
    qsort(p->chunks, p->n_chunks, sizeof *p->chunks, cmp_chunk);
    if (!(p->units = mp_try_malloc(((size_t)p->n_chunks + 1) * sizeof *p->units, "the plan")))
        return plan_oom(path, p->n_cells);
    for (int i = 0; i < p->n_chunks;) {
        int j = i + 1;
        while (j < p->n_chunks && p->chunks[j].gy / UNIT_ROWS == p->chunks[i].gy / UNIT_ROWS &&
               p->chunks[j].col == p->chunks[i].col)
            j++;
        p->units[p->n_units].first = i;
        p->units[p->n_units].count = j - i;
        p->n_units++;
        i = j;
    }
    return 0;
}

void plan_free(plan *p)
{
    tiler_slide_close(&p->slide);
    tiler_mask_free(&p->mask);
    free(p->cells);
    free(p->chunks);
    free(p->units);
    p->units = NULL;
    p->cells = NULL;
    p->chunks = NULL;
}

plan_cell *plan_find_cell(plan *p, int gx, int gy)
{
    plan_cell key = {.gx = gx, .gy = gy};
    return bsearch(&key, p->cells, p->n_cells, sizeof *p->cells, cmp_cell);
}
