/* tiler/plan.h — the per-slide plan (geometry, levels, mask, selected cells, chunks) shared by
 * the tiling run and --dry-run. Internal to tiler/. */
#ifndef MP_TILER_PLAN_H
#define MP_TILER_PLAN_H

#include <stddef.h>

#include "tiler/internal.h"

typedef struct {
    int gx, gy;
    int64_t x0, y0;
    float tissue, pen;
    int done; /* already in the dataset (patch or tile error) */
} plan_cell;

typedef struct {
    double mag;
    int level;    /* pyramid level read */
    int wl;       /* patch side in that level's pixels */
    int target;   /* output side */
    double scale; /* target / wl */
    int read;     /* index into plan.reads */
} plan_mag;

typedef struct {
    int level, wl;
} plan_read;

typedef struct { int first, count, gy, col; } plan_chunk;

/* A unit of work for one worker: consecutive entries of plan.chunks. */
typedef struct { int first, count; } plan_unit;

typedef struct {
    tiler_slide slide;
    tiler_mpp mpp;
    tiler_grid grid;
    tiler_mask mask;
    double mask_mpp, mag_top;
    plan_mag mags[TILER_MAX_MAGS];
    int n_mags, top;
    plan_read reads[TILER_MAX_MAGS];
    int n_reads;
    plan_cell *cells;
    int n_cells;
    int64_t n_grid;
    plan_chunk *chunks;
    int n_chunks, chunk_cols;
    plan_unit *units;
    int n_units;
} plan;

/* Patch positions a plan may hold (n_cells is an int): 16384 x 16384, 3.7 Mpx a side at 224 px. */
#define PLAN_MAX_CELLS (1 << 28)
int plan_build(plan *p, const char *path, const tiler_opts *o);
void plan_free(plan *p);
plan_cell *plan_find_cell(plan *p, int gx, int gy);
void plan_params(const tiler_opts *o, char *json, size_t n, char hash[64]);

#endif
