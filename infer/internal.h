/* infer/internal.h — shared between infer/'s own files (not part of the door): the slide
 * slide wrapper over the tiler (patches are read with the tiler's patch reader), atomic file
 * commits and JSON helpers. */
#ifndef MP_INFER_INTERNAL_H
#define MP_INFER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* the slide handle and thumbnail come from the tiler's door */
#include "tiler/tiler.h"


/* An opened slide with what infer needs from it. */
typedef struct {
    tiler_slide s;
    tiler_mpp mpp;
    int64_t bx, by, bw, bh; /* bounds rectangle in level-0 px (whole slide when absent) */
    int has_bounds;
    tiler_mask mask;        /* mask.ds = level-0 px per mask pixel */
    double mask_mpp;
    uint8_t *thumb;         /* RGBA thumbnail the mask was computed on (freed once cells are chosen) */
    tiler_reader *rd;       /* the main thread's reader (thumbnails); patch threads open their own */
    int tw, th;
} infer_src;

/* Open, resolve MPP, read bounds. -1 + mp_err "SLIDE: reason". */
int infer_src_open(const char *path, double mpp_override, infer_src *src);
/* Thumbnail + tissue mask with at least ~8 mask pixels across a patch of patch_um µm. */
int infer_src_mask(infer_src *src, double patch_um);
void infer_src_close(infer_src *src);
/* How infer reads a patch of patch0 level-0 px for a model at mag taking S px: the tiler's patch
 * reader geometry (level, read size), the rule that made the model's training images. */
void infer_src_geom(const infer_src *src, double mag, double patch0, int S, tiler_patch_geom *g);

#endif
