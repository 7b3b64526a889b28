/* tiler/read.c — the patch reader: the one path from a slide to the pixels a model sees, used
 * by the tiler (dataset images), infer (heatmaps) and the viewer. Level choice, the direct TIFF
 * path, OpenSlide's premultiplied ARGB to RGB over white, and one resampling policy (area
 * average down, libvips lanczos3 up). Anything reading patches elsewhere would let a model see
 * at inference other pixels than it was trained on. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "tiler/tiffread.h"

struct tiler_reader {
    const tiler_slide *s;
    char *path;
    openslide_t *osr;  /* own handle: OpenSlide errors are sticky per handle */
    tiff_fast *fast;   /* direct TIFF tiles when possible, else NULL */
    uint32_t *argb;
    size_t argb_cap;
    uint8_t *tmp;      /* a contiguous copy for resampling */
    size_t tmp_cap;
    char open_err[300];
};

void tiler_patch_geom_make(const tiler_slide *s, double want, double size0, int target, tiler_patch_geom *g)
{
    g->level = tiler_choose_level(s->ds, s->levels, want, TILER_LEVEL_TOL);
    g->wl = (int)fmax(1, llround(size0 / s->ds[g->level]));
    g->target = target;
    g->scale = (double)target / g->wl;
}

static int reopen(tiler_reader *r)
{
    if (r->osr) openslide_close(r->osr);
    r->osr = openslide_open(r->path);
    if (!r->osr || openslide_get_error(r->osr)) {
        snprintf(r->open_err, sizeof r->open_err, "cannot reopen the slide: %s",
                 r->osr ? openslide_get_error(r->osr) : "openslide_open failed");
        if (r->osr) openslide_close(r->osr);
        r->osr = NULL;
        return -1;
    }
    return 0;
}

tiler_reader *tiler_reader_open(const tiler_slide *s)
{
    tiler_reader *r = mp_xcalloc(1, sizeof *r);
    r->s = s;
    r->path = mp_xstrdup(s->path);
    reopen(r); /* a failure is reported by the first read (the tiler records it per cell) */
    r->fast = tiff_fast_open(s->path, s);
    return r;
}

void tiler_reader_close(tiler_reader *r)
{
    if (!r) return;
    if (r->osr) openslide_close(r->osr);
    tiff_fast_close(r->fast);
    free(r->argb);
    free(r->tmp);
    free(r->path);
    free(r);
}

int tiler_reader_region(tiler_reader *r, int level, int64_t x0, int64_t y0, int w, int h, uint8_t *rgb, char *err,
                        size_t en)
{
    size_t n = (size_t)w * h;
    /* On a level with a whole-number downsample a region starts on the level's own pixel grid
     * (the level pixel nearest the level-0 corner), so a square's pixels do not depend on the
     * read it is part of (the tiler reads a row of cells at once, infer one cell). On another
     * level (Aperio's 4.0002...) OpenSlide interpolates between level pixels by the corner's
     * fraction; the direct path takes only corners it can match exactly, and the tiler reads
     * such levels cell by cell. */
    double ds = r->s->ds[level];
    if (ds == floor(ds)) {
        x0 = llround(x0 / ds) * (int64_t)ds;
        y0 = llround(y0 / ds) * (int64_t)ds;
    }
    double lx = x0 / ds, ly = y0 / ds;
    if (r->fast && lx == floor(lx) && ly == floor(ly) &&
        tiff_fast_read(r->fast, level, (int64_t)lx, (int64_t)ly, w, h, rgb, err, en) == 0)
        return 0;
    /* a bad tile on the direct path: OpenSlide gets the final word (and the same error if it agrees) */
    if (!r->osr && reopen(r)) {
        snprintf(err, en, "%s", r->open_err);
        return -1;
    }
    if (r->argb_cap < n) {
        free(r->argb);
        r->argb_cap = 0;
        if (!(r->argb = mp_try_malloc(n * 4, "a region read"))) {
            snprintf(err, en, "level %d region %dx%d: %s", level, w, h, mp_err());
            return -1;
        }
        r->argb_cap = n;
    }
    openslide_read_region(r->osr, r->argb, x0, y0, level, w, h);
    const char *e = openslide_get_error(r->osr);
    if (e) {
        snprintf(err, en, "level %d region (%lld,%lld) %dx%d: %s", level, (long long)x0, (long long)y0, w, h, e);
        reopen(r); /* the handle is dead */
        return -1;
    }
    /* premultiplied ARGB over white: transparent areas (outside the slide) read as glass */
    for (size_t i = 0; i < n; i++) {
        uint32_t p = r->argb[i], k = 255 - (p >> 24);
        rgb[3 * i] = (uint8_t)(((p >> 16) & 255) + k);
        rgb[3 * i + 1] = (uint8_t)(((p >> 8) & 255) + k);
        rgb[3 * i + 2] = (uint8_t)((p & 255) + k);
    }
    return 0;
}

int tiler_reader_thumbnail(tiler_reader *r, double mpp, double target_mpp, uint8_t **rgba, int *w, int *h,
                           double *ds)
{
    if (!r->osr && reopen(r)) return mp_err_set("%s: %s", r->path, r->open_err);
    tiler_slide s = *r->s; /* the slide's geometry with this reader's handle */
    s.osr = r->osr;
    return tiler_thumbnail_fast(&s, r->fast, mpp, target_mpp, rgba, w, h, ds);
}

void tiler_vips_error_take(char *err, size_t en, const char *what)
{
    char *m = mp_vips_err_take(NULL);
    snprintf(err, en, "%s: %s", what, m);
    free(m);
}

static int lanczos_up(const uint8_t *src, int wl, int t, uint8_t *out, char *err, size_t en)
{
    VipsImage *in = vips_image_new_from_memory(src, (size_t)wl * wl * 3, wl, wl, 3, VIPS_FORMAT_UCHAR), *o = NULL;
    if (!in) goto fail;
    double s = (double)t / wl;
    if (vips_resize(in, &o, s, "vscale", s, NULL)) goto fail;
    if (o->Xsize != t || o->Ysize != t) {
        VipsImage *fixed; /* vips rounds the output size itself; pin it to the planned size */
        if (vips_embed(o, &fixed, 0, 0, t, t, "extend", VIPS_EXTEND_COPY, NULL)) goto fail;
        g_object_unref(o);
        o = fixed;
    }
    size_t len;
    uint8_t *px = vips_image_write_to_memory(o, &len);
    if (!px || len != (size_t)t * t * 3) {
        g_free(px);
        goto fail;
    }
    memcpy(out, px, len);
    g_free(px);
    g_object_unref(in);
    g_object_unref(o);
    return 0;
fail:
    tiler_vips_error_take(err, en, "resample");
    if (in) g_object_unref(in);
    if (o) g_object_unref(o);
    return -1;
}

int tiler_resample(const uint8_t *src, int wl, int pitch, int t, uint8_t *out, char *err, size_t en)
{
    if (t == wl) {
        for (int y = 0; y < wl; y++) memcpy(out + (size_t)y * t * 3, src + (size_t)y * pitch * 3, (size_t)wl * 3);
        return 0;
    }
    const uint8_t *c = src;
    uint8_t *copy = NULL;
    if (pitch != wl) { /* both resamplers want a contiguous square */
        copy = mp_xmalloc((size_t)wl * wl * 3);
        for (int y = 0; y < wl; y++) memcpy(copy + (size_t)y * wl * 3, src + (size_t)y * pitch * 3, (size_t)wl * 3);
        c = copy;
    }
    int rc = 0;
    if (t < wl) {
        uint8_t *px = tiler_area_resample(c, wl, t);
        memcpy(out, px, (size_t)t * t * 3);
        g_free(px);
    } else {
        rc = lanczos_up(c, wl, t, out, err, en);
    }
    free(copy);
    return rc;
}

int tiler_read_patch(tiler_reader *r, const tiler_patch_geom *g, int64_t x0, int64_t y0, uint8_t *out, char *err,
                     size_t en)
{
    size_t n = (size_t)g->wl * g->wl * 3;
    uint8_t *dst = out;
    if (g->wl != g->target) {
        if (r->tmp_cap < n) {
            free(r->tmp);
            r->tmp_cap = 0;
            if (!(r->tmp = mp_try_malloc(n, "a patch read"))) {
                snprintf(err, en, "%s", mp_err());
                return -1;
            }
            r->tmp_cap = n;
        }
        dst = r->tmp;
    }
    if (tiler_reader_region(r, g->level, x0, y0, g->wl, g->wl, dst, err, en)) return -1;
    if (dst == out) return 0;
    return tiler_resample(dst, g->wl, g->wl, g->target, out, err, en);
}
