/* infer/grid.c — the cell grid of a heatmap: which level-0 square each cell owns and where its
 * patch is read. One definition used by the reader, every writer and the tests, so the
 * raster, the GeoJSON and the patches cannot drift apart. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "infer/infer.h"

int infer_grid_make(int64_t bx, int64_t by, int64_t bw, int64_t bh, double mpp, double mag, int size, int stride,
                    infer_grid *g)
{
    if (!(mpp > 0) || !isfinite(mpp)) return mp_err_set("grid: MPP must be positive (got %g)", mpp);
    if (!(mag > 0) || !isfinite(mag)) return mp_err_set("grid: magnification must be positive (got %g)", mag);
    if (size < 1) return mp_err_set("grid: patch size must be positive (got %d)", size);
    if (stride < 0) return mp_err_set("grid: stride must be positive (got %d)", stride);
    if (bw < 1 || bh < 1) return mp_err_set("grid: empty slide (%lldx%lld)", (long long)bw, (long long)bh);
    if (stride == 0) stride = size;
    double scale = (10.0 / mag) / mpp; /* level-0 px per model px */
    g->ox = (double)bx;
    g->oy = (double)by;
    g->bw = bw;
    g->bh = bh;
    g->cell0 = stride * scale;
    g->patch0 = size * scale;
    double nx = ceil(bw / g->cell0), ny = ceil(bh / g->cell0);
    /* the raster stays small by construction; refuse strides that would make it a second slide */
    if (nx * ny > 64e6)
        return mp_err_set("grid: %.0fx%.0f cells is too many; use a larger --stride", nx, ny);
    g->nx = (int)nx;
    g->ny = (int)ny;
    return 0;
}

void infer_grid_cell_origin(const infer_grid *g, int i, int j, double *x0, double *y0)
{
    *x0 = g->ox + i * g->cell0;
    *y0 = g->oy + j * g->cell0;
}

void infer_grid_patch_origin(const infer_grid *g, int i, int j, int64_t *x0, int64_t *y0)
{
    double h = (g->patch0 - g->cell0) / 2; /* the patch is centred on its cell */
    *x0 = (int64_t)llround(g->ox + i * g->cell0 - h);
    *y0 = (int64_t)llround(g->oy + j * g->cell0 - h);
}

int infer_grid_cell_at(const infer_grid *g, double x, double y, int *i, int *j)
{
    double fx = floor((x - g->ox) / g->cell0), fy = floor((y - g->oy) / g->cell0);
    if (fx < 0 || fy < 0 || fx >= g->nx || fy >= g->ny) return -1;
    *i = (int)fx;
    *j = (int)fy;
    return 0;
}

int infer_grid_kernel(const infer_grid *g, double *w, int cap)
{
    double r = g->patch0 / g->cell0, h = (r - 1) / 2; /* window a spans cells [a - h, a - h + r) */
    int R = (int)ceil(h - 1e-9);
    if (R < 0) R = 0;
    if (2 * R + 1 > cap) return -1;
    for (int d = -R; d <= R; d++) {
        /* share of cell 0 covered by the window of cell d (window units are cells) */
        double lo = fmax(0.0, d - h), hi = fmin(1.0, d - h + r);
        w[d + R] = hi > lo ? hi - lo : 0.0;
    }
    return R;
}

int infer_grid_average(const infer_grid *g, const float *prob, const uint8_t *valid, int K, float *out)
{
    double w[2 * INFER_MAX_REACH + 1];
    int R = infer_grid_kernel(g, w, 2 * INFER_MAX_REACH + 1);
    if (R < 0) return mp_err_set("grid: a patch covers more than %d cells a side; use a larger --stride", 2 * INFER_MAX_REACH + 1);
    int nx = g->nx, ny = g->ny, C = K + 1; /* K weighted sums and the weight */
    /* separable: the weight of window (a, b) on cell (i, j) is w[a - i] w[b - j], so sum along
     * rows first (kept for the 2R + 1 rows a cell needs, in a ring), then down the columns */
    int rows = 2 * R + 1;
    /* sized by the slide's grid: a failure fails this slide (the caller names it) */
    double *ring = mp_try_calloc((size_t)rows * nx * C, sizeof(double), "the heatmap's rows");
    double *acc = ring ? mp_try_malloc(sizeof(double) * C, "the heatmap's rows") : NULL;
    if (!acc) {
        free(ring);
        return -1;
    }
    for (int j = -R; j < ny; j++) {
        int src = j + R; /* row entering the ring */
        if (src < ny) {
            double *h = ring + (size_t)(src % rows) * nx * C;
            for (int i = 0; i < nx; i++) {
                double *o = h + (size_t)i * C;
                memset(o, 0, sizeof(double) * C);
                for (int d = -R; d <= R; d++) {
                    int a = i + d;
                    if (a < 0 || a >= nx || w[d + R] == 0 || !valid[(size_t)src * nx + a]) continue;
                    const float *p = prob + ((size_t)src * nx + a) * K;
                    for (int k = 0; k < K; k++) o[k] += w[d + R] * p[k];
                    o[K] += w[d + R];
                }
            }
        }
        if (j < 0) continue;
        for (int i = 0; i < nx; i++) {
            float *dst = out + ((size_t)j * nx + i) * K;
            if (!valid[(size_t)j * nx + i]) {
                memset(dst, 0, sizeof(float) * K);
                continue;
            }
            memset(acc, 0, sizeof(double) * C);
            for (int d = -R; d <= R; d++) {
                int b = j + d;
                if (b < 0 || b >= ny || w[d + R] == 0) continue;
                const double *h = ring + ((size_t)(b % rows) * nx + i) * C;
                for (int c = 0; c < C; c++) acc[c] += w[d + R] * h[c];
            }
            /* the cell's own window is evaluated, so the weight is > 0 */
            for (int k = 0; k < K; k++) dst[k] = (float)(acc[k] / acc[K]);
        }
    }
    free(ring);
    free(acc);
    return 0;
}
