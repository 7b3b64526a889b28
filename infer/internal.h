/* infer/internal.h — shared between infer/'s own files (not part of the door): the slide
 * reader wrapper over the tiler, atomic file commits and JSON helpers. */
#ifndef MP_INFER_INTERNAL_H
#define MP_INFER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* the slide handle and thumbnail come from the tiler's door */
#include "tiler/tiler.h"

/* fsync tmp, rename it to path, fsync the directory. -1 + mp_err naming path. */
int infer_commit(const char *tmp, const char *path);
/* Write a buffer atomically (tmp + rename). */
int infer_write_atomic(const char *path, const void *data, size_t len);

/* An opened slide with what infer needs from it. */
typedef struct {
    tiler_slide s;
    tiler_mpp mpp;
    int64_t bx, by, bw, bh; /* bounds rectangle in level-0 px (whole slide when absent) */
    int has_bounds;
    tiler_mask mask;        /* mask.ds = level-0 px per mask pixel */
    double mask_mpp;
    uint8_t *thumb;         /* RGBA thumbnail the mask was computed on (overlay background) */
    int tw, th;
} infer_src;

/* Open, resolve MPP, read bounds. -1 + mp_err "SLIDE: reason". */
int infer_src_open(const char *path, double mpp_override, infer_src *src);
/* Thumbnail + tissue mask with at least ~8 mask pixels across a patch of patch_um µm. */
int infer_src_mask(infer_src *src, double patch_um);
void infer_src_close(infer_src *src);

/* One reader: its own OpenSlide handle (errors are sticky per handle) and buffers. */
typedef struct {
    const char *path;
    openslide_t *osr;
    uint32_t *argb;
    uint8_t *rgb;
    size_t cap;
    char err[512];
} infer_reader;

int infer_reader_open(infer_reader *r, const char *path);
void infer_reader_close(infer_reader *r);
/* Read the level-0 square (x0, y0, rs level-L px a side) at level L, composite over white and
 * resample to S x S RGB into out. -1 with r->err set on failure (the handle is reopened). */
int infer_reader_read(infer_reader *r, int level, int64_t x0, int64_t y0, int rs, int S, uint8_t *out);

#endif
