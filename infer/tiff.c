/* infer/tiff.c — heatmap.tif and probability.tif: the cell raster as tiled pyramidal TIFFs with
 * libtiff, colour-mapped RGBA for viewers or one sample per class for analysis, both registered
 * to the slide by the same resolution and position tags. Written to a temporary name and
 * renamed, so a killed run never leaves a half file. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "infer/infer.h"
#include "infer/internal.h"

int infer_tiff_levels(int w, int h, int tile)
{
    if (tile <= 0) tile = 128;
    int n = 1;
    while (w > tile || h > tile) {
        w = (w + 1) / 2;
        h = (h + 1) / 2;
        n++;
    }
    return n;
}

int64_t infer_tiff_padded(int n, int levels, int tile)
{
    if (tile <= 0) tile = 128;
    int64_t unit = (int64_t)tile << (levels - 1);
    return (n + unit - 1) / unit * unit;
}

/* 2x2 mean over valid cells only, so glass never dilutes tissue at coarse levels. */
static void reduce(const float *p, const uint8_t *v, int w, int h, int K, float *q, uint8_t *qv, int *ow, int *oh)
{
    int W = (w + 1) / 2, H = (h + 1) / 2;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float acc[INFER_MAX_CLASSES] = {0};
            int n = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    int sx = 2 * x + dx, sy = 2 * y + dy;
                    if (sx >= w || sy >= h || !v[(size_t)sy * w + sx]) continue;
                    const float *s = p + ((size_t)sy * w + sx) * K;
                    for (int k = 0; k < K; k++) acc[k] += s[k];
                    n++;
                }
            float *d = q + ((size_t)y * W + x) * K;
            for (int k = 0; k < K; k++) d[k] = n ? acc[k] / n : 0;
            qv[(size_t)y * W + x] = n > 0;
        }
    *ow = W;
    *oh = H;
}

/* Writes the w x h raster p/v as an iw x ih image (iw >= w, ih >= h; the margin is empty). */
static int write_level(TIFF *t, const infer_tiff_spec *s, int level, const float *p, const uint8_t *v, int w, int h,
                       int iw, int ih)
{
    int K = s->nclasses, T = s->tile > 0 ? s->tile : 128;
    int rgba = s->rgba, bps = !rgba && s->float32 ? 4 : 1, spp = rgba ? 4 : K;
    TIFFSetField(t, TIFFTAG_SUBFILETYPE, level ? FILETYPE_REDUCEDIMAGE : 0);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)iw);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)ih);
    TIFFSetField(t, TIFFTAG_TILEWIDTH, (uint32_t)T);
    TIFFSetField(t, TIFFTAG_TILELENGTH, (uint32_t)T);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)(8 * bps));
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, bps == 4 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    if (rgba) {
        /* straight (unassociated) alpha: PIL opens it as RGBA, libtiff's RGBA reader (OpenSlide,
         * tiff2rgba) premultiplies it, which with alpha 0 or 255 changes no pixel */
        uint16_t extra[1] = {EXTRASAMPLE_UNASSALPHA};
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
        TIFFSetField(t, TIFFTAG_EXTRASAMPLES, (uint16_t)1, extra);
    } else {
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
        if (K > 1) {
            /* bands after the first are plain data, not alpha */
            uint16_t extra[INFER_MAX_CLASSES] = {0};
            TIFFSetField(t, TIFFTAG_EXTRASAMPLES, (uint16_t)(K - 1), extra);
        }
    }
    TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    /* no floating-point predictor: tifffile cannot undo it without imagecodecs (not in Debian 12) */
    TIFFSetField(t, TIFFTAG_PREDICTOR, bps == 4 ? PREDICTOR_NONE : PREDICTOR_HORIZONTAL);
    double f = ldexp(1.0, level); /* level-0 cells per pixel of this level */
    TIFFSetField(t, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
    TIFFSetField(t, TIFFTAG_XRESOLUTION, (float)(1e4 / (s->mpp_x * s->cell0 * f)));
    TIFFSetField(t, TIFFTAG_YRESOLUTION, (float)(1e4 / (s->mpp_y * s->cell0 * f)));
    TIFFSetField(t, TIFFTAG_XPOSITION, (float)(s->ox * s->mpp_x * 1e-4));
    TIFFSetField(t, TIFFTAG_YPOSITION, (float)(s->oy * s->mpp_y * 1e-4));
    TIFFSetField(t, TIFFTAG_SOFTWARE, "magpie infer");
    if (level == 0 && s->desc) TIFFSetField(t, TIFFTAG_IMAGEDESCRIPTION, s->desc);

    size_t tb = (size_t)T * T * spp * bps;
    uint8_t *buf = mp_xmalloc(tb);
    int rc = 0;
    for (int ty = 0; ty < ih && !rc; ty += T)
        for (int tx = 0; tx < iw && !rc; tx += T) {
            memset(buf, 0, tb);
            for (int y = ty; y < ty + T && y < h; y++)
                for (int x = tx; x < tx + T && x < w; x++) {
                    const float *src = p + ((size_t)y * w + x) * K;
                    int ok = v[(size_t)y * w + x];
                    size_t o = ((size_t)(y - ty) * T + (x - tx)) * spp;
                    if (rgba) {
                        if (!ok) continue; /* transparent black */
                        infer_colormap(s->cmap, src[s->klass], buf + o);
                        buf[o + 3] = 255;
                        continue;
                    }
                    for (int k = 0; k < K; k++) {
                        float val = ok ? src[k] : 0.0f;
                        if (bps == 4) memcpy(buf + (o + k) * 4, &val, 4);
                        else buf[o + k] = (uint8_t)lrintf(fminf(fmaxf(val, 0.0f), 1.0f) * 255.0f);
                    }
                }
            if (TIFFWriteTile(t, buf, (uint32_t)tx, (uint32_t)ty, 0, 0) < 0) rc = -1;
        }
    free(buf);
    if (rc || !TIFFWriteDirectory(t)) return -1;
    return 0;
}

int infer_tiff_write(const char *path, const infer_tiff_spec *s)
{
    if (s->nclasses < 1 || s->nclasses > INFER_MAX_CLASSES || s->nx < 1 || s->ny < 1)
        return mp_err_set("%s: bad heatmap raster (%dx%d, %d classes)", path, s->nx, s->ny, s->nclasses);
    if (s->tile < 0 || s->tile % 16) return mp_err_set("%s: tile size must be a multiple of 16", path);
    if (s->rgba && (s->klass < 0 || s->klass >= s->nclasses))
        return mp_err_set("%s: class %d out of range (%d classes)", path, s->klass, s->nclasses);
    char tmp[4200];
    mp_atomic_tmp_name(tmp, sizeof tmp, path);
    /* classic TIFF: a raster of cells never nears 4 GiB, and every viewer reads it */
    TIFF *t = TIFFOpen(tmp, "w");
    if (!t) {
        /* TIFFOpen creates the file before its header write fails (a full disk): remove it */
        int e = errno;
        unlink(tmp);
        return mp_err_set("%s: cannot create (%s)", path, strerror(e));
    }
    int K = s->nclasses, w = s->nx, h = s->ny, T = s->tile > 0 ? s->tile : 128;
    int levels = infer_tiff_levels(w, h, T);
    /* OpenSlide 3.4.1 reads non-JPEG tiles through libtiff's RGBA reader and shifts a partial
     * bottom tile down by its missing rows; so the viewer pyramid has whole tiles only, every
     * level exactly half the one before (transparent margin right and bottom). The cells keep
     * their place: pixel (x, y) of level l is the same 2^l-cell block as in probability.tif. */
    int pw = (int)infer_tiff_padded(w, levels, T), ph = (int)infer_tiff_padded(h, levels, T);
    float *p = (float *)s->prob, *q = NULL;
    uint8_t *v = (uint8_t *)s->valid, *qv = NULL;
    int rc = 0, werr = 0;
    for (int l = 0; l < levels && !rc; l++) {
        if (l > 0) {
            int W = (w + 1) / 2, H = (h + 1) / 2;
            /* sized by the slide's grid: a failure fails this file, and with it this slide */
            float *nq = mp_try_malloc(sizeof(float) * (size_t)W * H * K, "a heatmap level");
            uint8_t *nv = nq ? mp_try_malloc((size_t)W * H, "a heatmap level") : NULL;
            if (!nv) {
                free(nq);
                free(q);
                free(qv);
                TIFFClose(t);
                unlink(tmp);
                return mp_err_prefix("%s", path);
            }
            reduce(p, v, w, h, K, nq, nv, &w, &h);
            free(q);
            free(qv);
            p = q = nq;
            v = qv = nv;
        }
        errno = 0;
        if (write_level(t, s, l, p, v, w, h, s->rgba ? pw >> l : w, s->rgba ? ph >> l : h)) rc = -1, werr = errno;
    }
    free(q);
    free(qv);
    TIFFClose(t);
    if (rc) {
        unlink(tmp);
        /* libtiff's write failed through write(2), whose errno says why (a full disk, say) */
        return mp_err_set("%s: cannot write (%s)", path, werr ? strerror(werr) : "libtiff refused the data");
    }
    return mp_atomic_commit_tmp(tmp, path);
}
