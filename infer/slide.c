/* infer/slide.c — the slide side of inference, on top of the tiler's slide opening, MPP
 * resolution, thumbnail and tissue mask: bounds. Patches come from the tiler's patch reader
 * (tiler_read_patch), the one that made the training images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "infer/internal.h"

int infer_src_open(const char *path, double mpp_override, infer_src *src)
{
    memset(src, 0, sizeof *src);
    if (tiler_slide_open(path, &src->s)) return -1;
    if (tiler_resolve_mpp(path, &src->s, mpp_override, &src->mpp)) {
        tiler_slide_close(&src->s);
        return -1;
    }
    src->bx = src->by = 0;
    src->bw = src->s.width;
    src->bh = src->s.height;
    int64_t b[4];
    if (tiler_slide_bounds(&src->s, b)) {
        src->bx = b[0], src->by = b[1], src->bw = b[2], src->bh = b[3];
        src->has_bounds = 1;
    }
    src->rd = tiler_reader_open(&src->s);
    return 0;
}

int infer_src_mask(infer_src *src, double patch_um)
{
    /* the tiler's rule: ~8 µm/px, >= 8 mask pixels across a patch, <= 4096 px a side */
    double mpp = src->mpp.mpp_x;
    double mm = fmin(8.0, patch_um / 8.0);
    mm = fmax(mm, mpp);
    mm = fmax(mm, mpp * fmax(src->s.width, src->s.height) / 4096.0);
    double tds;
    if (tiler_reader_thumbnail(src->rd, mpp, mm, &src->thumb, &src->tw, &src->th, &tds)) return -1;
    src->mask_mpp = tds * mpp;
    if (tiler_mask_compute(src->thumb, src->tw, src->th, src->mask_mpp, &src->mask))
        return mp_err_prefix("%s", src->s.path);
    src->mask.ds = tds;
    return 0;
}

void infer_src_close(infer_src *src)
{
    tiler_reader_close(src->rd);
    src->rd = NULL;
    tiler_mask_free(&src->mask);
    free(src->thumb);
    src->thumb = NULL;
    tiler_slide_close(&src->s);
}

void infer_src_geom(const infer_src *src, double mag, double patch0, int S, tiler_patch_geom *g)
{
    tiler_patch_geom_make(&src->s, (10.0 / mag) / src->mpp.mpp_x, patch0, S, g);
}
