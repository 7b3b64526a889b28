/* infer/slide.c — the slide side of inference, on top of the tiler's slide opening, MPP
 * resolution, level choice, thumbnail and tissue mask: bounds, and patch reads resampled to the
 * model's input with libvips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "infer/internal.h"

static int prop_i64(openslide_t *osr, const char *key, int64_t *v)
{
    const char *s = openslide_get_property_value(osr, key);
    long d;
    if (!s || mp_parse_long(s, &d)) return -1;
    *v = d;
    return 0;
}

int infer_src_open(const char *path, double mpp_override, infer_src *src)
{
    memset(src, 0, sizeof *src);
    if (tiler_slide_open(path, &src->s)) return -1;
    if (tiler_resolve_mpp(path, src->s.osr, mpp_override, &src->mpp)) {
        tiler_slide_close(&src->s);
        return -1;
    }
    src->bx = src->by = 0;
    src->bw = src->s.width;
    src->bh = src->s.height;
    int64_t x, y, w, h;
    openslide_t *o = src->s.osr;
    if (!prop_i64(o, OPENSLIDE_PROPERTY_NAME_BOUNDS_X, &x) && !prop_i64(o, OPENSLIDE_PROPERTY_NAME_BOUNDS_Y, &y) &&
        !prop_i64(o, OPENSLIDE_PROPERTY_NAME_BOUNDS_WIDTH, &w) && !prop_i64(o, OPENSLIDE_PROPERTY_NAME_BOUNDS_HEIGHT, &h) &&
        x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= src->s.width && y + h <= src->s.height) {
        src->bx = x, src->by = y, src->bw = w, src->bh = h;
        src->has_bounds = 1;
    }
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
    if (tiler_thumbnail(&src->s, mpp, mm, &src->thumb, &src->tw, &src->th, &tds)) return -1;
    src->mask_mpp = tds * mpp;
    if (tiler_mask_compute(src->thumb, src->tw, src->th, src->mask_mpp, &src->mask))
        return mp_err_prefix("%s", src->s.path);
    src->mask.ds = tds;
    return 0;
}

void infer_src_close(infer_src *src)
{
    tiler_mask_free(&src->mask);
    free(src->thumb);
    src->thumb = NULL;
    tiler_slide_close(&src->s);
}

int infer_reader_open(infer_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->osr = openslide_open(path);
    if (!r->osr || openslide_get_error(r->osr)) {
        mp_err_set("%s: OpenSlide cannot reopen it: %s", path, r->osr ? openslide_get_error(r->osr) : "open failed");
        if (r->osr) openslide_close(r->osr);
        r->osr = NULL;
        return -1;
    }
    return 0;
}

void infer_reader_close(infer_reader *r)
{
    if (r->osr) openslide_close(r->osr);
    free(r->argb);
    free(r->rgb);
    memset(r, 0, sizeof *r);
}

static int resample(const uint8_t *src, int wl, int t, uint8_t *out, char *err, size_t en)
{
    VipsImage *in = vips_image_new_from_memory(src, (size_t)wl * wl * 3, wl, wl, 3, VIPS_FORMAT_UCHAR), *o = NULL;
    double s = (double)t / wl;
    if (!in || vips_resize(in, &o, s, "vscale", s, NULL)) goto fail;
    if (o->Xsize != t || o->Ysize != t) {
        VipsImage *fixed; /* vips rounds the output size itself; pin it */
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
    snprintf(err, en, "resample %d->%d px: %s", wl, t, vips_error_buffer());
    vips_error_clear();
    if (in) g_object_unref(in);
    if (o) g_object_unref(o);
    return -1;
}

int infer_reader_read(infer_reader *r, int level, int64_t x0, int64_t y0, int rs, int S, uint8_t *out)
{
    if (!r->osr && infer_reader_open(r, r->path)) {
        snprintf(r->err, sizeof r->err, "%s", mp_err());
        return -1;
    }
    size_t n = (size_t)rs * rs;
    if (r->cap < n) {
        r->argb = mp_xrealloc(r->argb, n * 4);
        r->rgb = mp_xrealloc(r->rgb, n * 3);
        r->cap = n;
    }
    openslide_read_region(r->osr, r->argb, x0, y0, level, rs, rs);
    const char *e = openslide_get_error(r->osr);
    if (e) {
        snprintf(r->err, sizeof r->err, "level %d region (%lld,%lld) %dx%d: %s", level, (long long)x0, (long long)y0,
                 rs, rs, e);
        openslide_close(r->osr); /* OpenSlide errors are sticky: the handle is dead */
        r->osr = NULL;
        return -1;
    }
    uint8_t *dst = rs == S ? out : r->rgb;
    /* premultiplied ARGB over white: pixels outside the slide read as glass */
    for (size_t i = 0; i < n; i++) {
        uint32_t p = r->argb[i], k = 255 - (p >> 24);
        dst[3 * i] = (uint8_t)(((p >> 16) & 255) + k);
        dst[3 * i + 1] = (uint8_t)(((p >> 8) & 255) + k);
        dst[3 * i + 2] = (uint8_t)((p & 255) + k);
    }
    if (rs == S) return 0;
    return resample(r->rgb, rs, S, out, r->err, sizeof r->err);
}
