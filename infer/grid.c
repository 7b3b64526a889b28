/* infer/grid.c — the cell grid of a heatmap: which level-0 square each cell owns and where its
 * patch is read. One definition used by the reader, every writer and the tests, so the
 * raster, the GeoJSON and the patches cannot drift apart. */
#include <math.h>

#include "common/error.h"
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
