/* view/tiles.c — what the viewer draws: Deep Zoom tiles of a slide (through the tiler's patch
 * reader), heatmap tiles in the slide's frame (infer's probability grid through the shared
 * colour map), the tissue mask, and the PNG/JPEG encoders. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <vips/vips.h>

#include "common/colormap.h"
#include "common/error.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/db.h"
#include "db/slides.h"
#include "view/internal.h"

int view_dz_max_level(int64_t w, int64_t h)
{
    int64_t m = w > h ? w : h;
    int L = 0;
    while (((int64_t)1 << L) < m) L++;
    return L;
}

int view_dz_tile_rect(int64_t w, int64_t h, int level, int64_t col, int64_t row, int64_t *x, int64_t *y, int *tw,
                      int *th)
{
    int max = view_dz_max_level(w, h);
    if (level < 0 || level > max || col < 0 || row < 0) return -1;
    int sh = max - level;
    int64_t lw = (w + ((int64_t)1 << sh) - 1) >> sh, lh = (h + ((int64_t)1 << sh) - 1) >> sh;
    if (col * VIEW_TILE >= lw || row * VIEW_TILE >= lh) return -1;
    int64_t x0 = col * VIEW_TILE - (col ? VIEW_OVERLAP : 0), y0 = row * VIEW_TILE - (row ? VIEW_OVERLAP : 0);
    int64_t x1 = (col + 1) * VIEW_TILE + VIEW_OVERLAP, y1 = (row + 1) * VIEW_TILE + VIEW_OVERLAP;
    if (x1 > lw) x1 = lw;
    if (y1 > lh) y1 = lh;
    *x = x0;
    *y = y0;
    *tw = (int)(x1 - x0);
    *th = (int)(y1 - y0);
    return 0;
}

/* ---- encoders ---- */

int view_encode_jpeg(const uint8_t *rgb, int w, int h, int quality, view_bytes *out, char *err, size_t en)
{
    tjhandle tj = tjInitCompress();
    if (!tj) {
        snprintf(err, en, "jpeg: %s", tjGetErrorStr());
        return -1;
    }
    unsigned char *buf = NULL;
    unsigned long len = 0;
    /* 4:4:4: stain colour at cell edges is what a pathologist reads; 4:2:0 smears it */
    int r = tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &buf, &len, TJSAMP_444, quality, TJFLAG_FASTDCT);
    if (r) {
        snprintf(err, en, "jpeg: %s", tjGetErrorStr2(tj));
        tjFree(buf);
        tjDestroy(tj);
        return -1;
    }
    out->data = mp_xmalloc(len);
    memcpy(out->data, buf, len);
    out->len = len;
    out->mime = "image/jpeg";
    tjFree(buf);
    tjDestroy(tj);
    return 0;
}

int view_encode_png(const uint8_t *px, int w, int h, int bands, view_bytes *out, char *err, size_t en)
{
    VipsImage *im = vips_image_new_from_memory(px, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
    void *buf = NULL;
    size_t len = 0;
    /* compression 1: tiles are made on demand, and deflate's higher levels cost more than they save */
    int r = !im || vips_pngsave_buffer(im, &buf, &len, "compression", 1, NULL);
    if (im) g_object_unref(im);
    if (r) {
        char m[400];
        snprintf(err, en, "png: %s", mp_vips_err_take_into(m, sizeof m, NULL));
        return -1;
    }
    out->data = mp_xmalloc(len);
    memcpy(out->data, buf, len);
    out->len = len;
    out->mime = "image/png";
    g_free(buf);
    return 0;
}

/* ---- slide tiles ---- */

static tiler_reader *reader_get(view_slide *s)
{
    pthread_mutex_lock(&s->mu);
    tiler_reader *r = s->nreaders ? s->readers[--s->nreaders] : NULL;
    pthread_mutex_unlock(&s->mu);
    return r ? r : tiler_reader_open(&s->ts);
}

static void reader_put(view_slide *s, tiler_reader *r)
{
    if (!r) return;
    pthread_mutex_lock(&s->mu);
    if (s->nreaders == s->cap_readers) {
        s->cap_readers = s->cap_readers ? 2 * s->cap_readers : 4;
        s->readers = mp_xrealloc(s->readers, s->cap_readers * sizeof *s->readers);
    }
    s->readers[s->nreaders++] = r;
    pthread_mutex_unlock(&s->mu);
}

/* ---- coarse levels: the thumbnail ----
 * A flat slide (one level, or a pyramid that stops early) would need a read of most of its
 * level 0 for each tile of its coarsest Deep Zoom levels. Those tiles are drawn instead from one
 * thumbnail, read once through the tiler (tiler_reader_thumbnail: bounded memory, read in bands)
 * and kept: its scale is that of the finest Deep Zoom level that needs it, so that level is not
 * enlarged, unless the thumbnail would pass VIEW_THUMB_SIDE. */

static int thumb_load(view_server *v, view_slide *s)
{
    int n = VIEW_TILE + 2 * VIEW_OVERLAP; /* the widest tile: the first level any tile needs it */
    double D = ldexp(1.0, s->max_level);
    for (int L = s->max_level; L >= 0; L--) {
        double scale = ldexp(1.0, s->max_level - L);
        tiler_patch_geom g;
        tiler_patch_geom_make(&s->ts, scale, n * scale, n, &g);
        if (g.wl > v->max_read) {
            D = scale;
            break;
        }
    }
    double side = (double)(s->ts.width > s->ts.height ? s->ts.width : s->ts.height);
    while (side / D > VIEW_THUMB_SIDE) D *= 2;
    tiler_reader *r = reader_get(s);
    uint8_t *rgba = NULL;
    int w, h;
    double ds;
    /* mpp 1: the thumbnail's "µm per pixel" is then level-0 px per thumbnail px */
    int rc = r ? tiler_reader_thumbnail(r, 1.0, D, &rgba, &w, &h, &ds) : -1;
    reader_put(s, r);
    if (rc) {
        snprintf(s->thumb_err, sizeof s->thumb_err, "%s", r ? mp_err() : "cannot open a reader");
        return -1;
    }
    /* straight alpha over white, as the reader composes transparent areas */
    s->thumb = mp_xmalloc((size_t)w * h * 3);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        unsigned a = rgba[4 * i + 3];
        for (int c = 0; c < 3; c++)
            s->thumb[3 * i + c] = (uint8_t)((rgba[4 * i + c] * a + 255 * (255 - a) + 127) / 255);
    }
    free(rgba);
    s->thumb_w = w;
    s->thumb_h = h;
    return 0;
}

/* Source pixels k0.. and their weights for output pixels 0..n-1 covering [o + i*step, o +
 * (i+1)*step) in source pixels: at most `span` each; k = -1 for outside the image (white). */
static void box_weights(double o, double step, int n, int src, int span, int *k, double *wt)
{
    for (int i = 0; i < n; i++) {
        double u0 = o + i * step, u1 = u0 + step;
        int a = (int)floor(u0);
        for (int m = 0; m < span; m++) {
            int kk = a + m;
            double lo = fmax(u0, kk), hi = fmin(u1, kk + 1.0);
            k[i * span + m] = kk < src ? kk : -1;
            wt[i * span + m] = hi > lo ? (hi - lo) / step : 0;
        }
    }
}

/* tw x th RGB of the level-0 region at (x0, y0), scale level-0 px per output px, as the area
 * average of the thumbnail over each output pixel's square (white outside the slide). */
static int thumb_tile(view_server *v, view_slide *s, double x0, double y0, double scale, int tw, int th, uint8_t *rgb,
                      char *err, size_t en)
{
    pthread_mutex_lock(&s->thumb_mu);
    if (!s->thumb_state) s->thumb_state = thumb_load(v, s) ? -1 : 1;
    int st = s->thumb_state;
    pthread_mutex_unlock(&s->thumb_mu);
    if (st != 1) {
        snprintf(err, en, "%s", s->thumb_err);
        return -1;
    }
    const int W = s->thumb_w, H = s->thumb_h;
    const double dsx = (double)s->ts.width / W, dsy = (double)s->ts.height / H; /* level-0 px per thumb px */
    const double sx = scale / dsx, sy = scale / dsy; /* thumb px per output px */
    const int spx = (int)ceil(sx) + 1, spy = (int)ceil(sy) + 1;
    int *kx = mp_xmalloc(sizeof *kx * tw * spx), *ky = mp_xmalloc(sizeof *ky * th * spy);
    double *wx = mp_xmalloc(sizeof *wx * tw * spx), *wy = mp_xmalloc(sizeof *wy * th * spy);
    box_weights(x0 / dsx, sx, tw, W, spx, kx, wx);
    box_weights(y0 / dsy, sy, th, H, spy, ky, wy);
    double *acc = mp_xcalloc((size_t)tw * th * 3, sizeof *acc);
    for (int j = 0; j < th; j++)
        for (int m = 0; m < spy; m++) {
            double b = wy[j * spy + m];
            if (b == 0) continue;
            int l = ky[j * spy + m];
            for (int i = 0; i < tw; i++) {
                double c[3] = {0, 0, 0};
                for (int q = 0; q < spx; q++) {
                    double a = wx[i * spx + q];
                    int k = kx[i * spx + q];
                    if (a == 0) continue;
                    const uint8_t *p = l >= 0 && k >= 0 ? s->thumb + ((size_t)l * W + k) * 3 : NULL;
                    for (int ch = 0; ch < 3; ch++) c[ch] += a * (p ? p[ch] : 255);
                }
                for (int ch = 0; ch < 3; ch++) acc[((size_t)j * tw + i) * 3 + ch] += b * c[ch];
            }
        }
    for (size_t i = 0; i < (size_t)tw * th * 3; i++) rgb[i] = (uint8_t)fmin(255, floor(acc[i] + 0.5));
    free(kx);
    free(ky);
    free(wx);
    free(wy);
    free(acc);
    return 0;
}

int view_slide_tile(view_server *v, view_slide *s, int level, int64_t col, int64_t row, int png, view_bytes *out,
                    int *status, char *err, size_t en)
{
    int64_t x, y;
    int tw, th;
    if (view_dz_tile_rect(s->ts.width, s->ts.height, level, col, row, &x, &y, &tw, &th)) {
        *status = 404;
        snprintf(err, en, "no such tile");
        return -1;
    }
    /* The tile is the top-left tw x th of the n x n square read at the level's scale: the
     * tiler's patch read of that square (level choice, white for transparent, area average) */
    double scale = ldexp(1.0, s->max_level - level); /* level-0 px per tile px */
    int n = tw > th ? tw : th;
    tiler_patch_geom g;
    tiler_patch_geom_make(&s->ts, scale, n * scale, n, &g);
    if (g.wl > v->max_read) { /* no pyramid level coarse enough: the thumbnail */
        uint8_t *rgb = malloc((size_t)tw * th * 3);
        if (!rgb) {
            *status = 503;
            snprintf(err, en, "out of memory");
            return -1;
        }
        int rc = thumb_tile(v, s, x * scale, y * scale, scale, tw, th, rgb, err, en);
        if (!rc)
            rc = png ? view_encode_png(rgb, tw, th, 3, out, err, en)
                     : view_encode_jpeg(rgb, tw, th, v->o.quality, out, err, en);
        free(rgb);
        if (rc) *status = 500;
        else out->from_thumb = 1;
        return rc;
    }
    uint8_t *sq = mp_try_malloc((size_t)n * n * 3, "a tile");
    if (!sq) {
        *status = 503;
        snprintf(err, en, "%s", mp_err());
        return -1;
    }
    tiler_reader *r = reader_get(s);
    int rc = r ? tiler_read_patch(r, &g, (int64_t)llround(x * scale), (int64_t)llround(y * scale), sq, err, en) : -1;
    if (!r) snprintf(err, en, "%s: cannot open a reader", s->path);
    reader_put(s, r);
    if (rc) {
        free(sq);
        *status = 500;
        return -1;
    }
    if (tw != n || th != n) /* crop in place: rows move up, never over unread bytes */
        for (int j = 0; j < th; j++) memmove(sq + (size_t)j * tw * 3, sq + (size_t)j * n * 3, (size_t)tw * 3);
    rc = png ? view_encode_png(sq, tw, th, 3, out, err, en) : view_encode_jpeg(sq, tw, th, v->o.quality, out, err, en);
    free(sq);
    if (rc) *status = 500;
    return rc;
}

/* ---- heatmap ---- */

static int heat_fail(view_slide *s, const char *fmt, const char *a, const char *b)
{
    snprintf(s->heat_err, sizeof s->heat_err, fmt, a, b);
    return -1;
}

static int heat_read(view_slide *s)
{
    view_heat *h = &s->heat;
    json_error_t je;
    json_t *j = json_load_file(s->pred_json, 0, &je);
    if (!j) return heat_fail(s, "%s: %s", s->pred_json, je.text);
    json_t *grid = json_object_get(j, "grid"), *cls = json_object_get(j, "classes");
    json_t *params = json_object_get(j, "params");
    if (!json_is_object(grid) || !json_is_array(cls) || json_array_size(cls) < 1 ||
        json_array_size(cls) > 256) {
        json_decref(j);
        return heat_fail(s, "%s: %s", s->pred_json, "no grid or classes");
    }
    h->nx = (int)json_integer_value(json_object_get(grid, "width"));
    h->ny = (int)json_integer_value(json_object_get(grid, "height"));
    h->cell0 = json_number_value(json_object_get(grid, "cell_level0_px"));
    h->patch0 = json_number_value(json_object_get(grid, "patch_level0_px"));
    h->ox = json_number_value(json_object_get(grid, "origin_x"));
    h->oy = json_number_value(json_object_get(grid, "origin_y"));
    h->K = (int)json_array_size(cls);
    json_t *kj = params ? json_object_get(params, "class") : NULL;
    h->klass = json_is_integer(kj) ? (int)json_integer_value(kj) : h->K - 1;
    if (h->klass < 0 || h->klass >= h->K) h->klass = h->K - 1;
    h->classes = mp_xcalloc(h->K, sizeof *h->classes);
    for (int k = 0; k < h->K; k++) {
        const char *c = json_string_value(json_array_get(cls, k));
        h->classes[k] = mp_xstrdup(c ? c : "?");
    }
    json_decref(j);
    if (h->nx < 1 || h->ny < 1 || (int64_t)h->nx * h->ny > (1 << 24) || !(h->cell0 > 0))
        return heat_fail(s, "%s: %s", s->pred_json, "bad grid geometry");
    /* probability.tif's level 0: one pixel per cell, one band per class (uint8 or float32) */
    VipsImage *im = vips_image_new_from_file(s->prob_tif, "access", VIPS_ACCESS_SEQUENTIAL, NULL), *f = NULL;
    if (!im) {
        char m[400];
        snprintf(s->heat_err, sizeof s->heat_err, "%s: %s", s->prob_tif, mp_vips_err_take_into(m, sizeof m, s->prob_tif));
        return -1;
    }
    if (im->Xsize != h->nx || im->Ysize != h->ny || im->Bands != h->K) {
        snprintf(s->heat_err, sizeof s->heat_err, "%s: %dx%d with %d bands, prediction.json says %dx%d with %d classes",
                 s->prob_tif, im->Xsize, im->Ysize, im->Bands, h->nx, h->ny, h->K);
        g_object_unref(im);
        return -1;
    }
    double div = im->BandFmt == VIPS_FORMAT_UCHAR ? 255.0 : 1.0;
    if (vips_cast(im, &f, VIPS_FORMAT_FLOAT, NULL)) {
        g_object_unref(im);
        return heat_fail(s, "%s: %s", s->prob_tif, "cannot read");
    }
    size_t len;
    float *px = vips_image_write_to_memory(f, &len);
    g_object_unref(f);
    g_object_unref(im);
    if (!px || len != (size_t)h->nx * h->ny * h->K * sizeof(float)) {
        g_free(px);
        return heat_fail(s, "%s: %s", s->prob_tif, "cannot read");
    }
    size_t ncell = (size_t)h->nx * h->ny;
    /* as large as probability.tif's pixels (at most 2^24 cells): a failure fails this heatmap */
    h->prob = mp_try_malloc(ncell * h->K * sizeof(float), "the heatmap");
    h->valid = h->prob ? mp_try_calloc(ncell, 1, "the heatmap") : NULL;
    if (!h->valid) {
        free(h->prob);
        h->prob = NULL;
        g_free(px);
        return heat_fail(s, "%s: %s", s->prob_tif, mp_err());
    }
    for (size_t c = 0; c < ncell; c++)
        for (int k = 0; k < h->K; k++) {
            float p = (float)(px[c * h->K + k] / div);
            h->prob[c * h->K + k] = p;
            if (p != 0) h->valid[c] = 1; /* 0 in every band = not evaluated (infer.h) */
        }
    g_free(px);
    return 0;
}

int view_heat_load(view_slide *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->heat_state) {
        if (!s->pred_json) {
            snprintf(s->heat_err, sizeof s->heat_err, "%s: no heatmap", s->name);
            s->heat_state = -1;
        } else s->heat_state = heat_read(s) ? -1 : 1;
    }
    int st = s->heat_state;
    pthread_mutex_unlock(&s->mu);
    return st == 1 ? 0 : -1;
}

int view_heat_tile(view_server *v, view_slide *s, int klass, int level, int64_t col, int64_t row, view_bytes *out,
                   int *status, char *err, size_t en)
{
    if (view_heat_load(s)) {
        *status = 404;
        snprintf(err, en, "%s", s->heat_err);
        return -1;
    }
    const view_heat *h = &s->heat;
    int64_t x, y;
    int tw, th;
    if (klass < 0 || klass >= h->K || view_dz_tile_rect(s->ts.width, s->ts.height, level, col, row, &x, &y, &tw, &th)) {
        *status = 404;
        snprintf(err, en, "no such tile");
        return -1;
    }
    double scale = ldexp(1.0, s->max_level - level);
    mp_cmap cm = mp_cmap_for(h->K);
    uint8_t *px = mp_xcalloc((size_t)tw * th, 4);
    /* each pixel takes the cell under its centre: edges stay sharp at every zoom */
    int *ci = mp_xmalloc(tw * sizeof *ci);
    for (int i = 0; i < tw; i++) {
        double X = ((double)(x + i) + 0.5) * scale;
        double c = floor((X - h->ox) / h->cell0);
        ci[i] = c >= 0 && c < h->nx ? (int)c : -1;
    }
    for (int j = 0; j < th; j++) {
        double Y = ((double)(y + j) + 0.5) * scale;
        double r = floor((Y - h->oy) / h->cell0);
        if (!(r >= 0 && r < h->ny)) continue;
        size_t rowc = (size_t)r * h->nx;
        for (int i = 0; i < tw; i++) {
            if (ci[i] < 0 || !h->valid[rowc + ci[i]]) continue;
            uint8_t *p = px + ((size_t)j * tw + i) * 4;
            mp_colormap(cm, h->prob[(rowc + ci[i]) * h->K + klass], p);
            p[3] = 255;
        }
    }
    free(ci);
    int rc = view_encode_png(px, tw, th, 4, out, err, en);
    free(px);
    if (rc) *status = 500;
    return rc;
}

/* ---- tissue mask ---- */

/* Tissue tinted green, the rest clear: drawn over the slide it shows what the tiler kept. */
static int mask_rgba(view_slide *s, const uint8_t *tissue, int w, int h, double ds)
{
    uint8_t *px = mp_xcalloc((size_t)w * h, 4);
    for (size_t i = 0; i < (size_t)w * h; i++)
        if (tissue[i] >= 128) {
            px[4 * i] = 0;
            px[4 * i + 1] = 200;
            px[4 * i + 2] = 90;
            px[4 * i + 3] = 255;
        }
    int rc = view_encode_png(px, w, h, 4, &s->mask_png, s->mask_err, sizeof s->mask_err);
    free(px);
    s->mask_w = w;
    s->mask_h = h;
    s->mask_ds = ds;
    return rc;
}

static int mask_from_db(view_slide *s)
{
    mp_db *db = db_open(s->db_path, DB_OPEN_READONLY);
    if (!db) {
        snprintf(s->mask_err, sizeof s->mask_err, "%s", mp_err());
        return -1;
    }
    int rc = -1;
    void *png;
    size_t len;
    int found = db_slide_mask(db, s->db_slide_id, NULL, &png, &len);
    if (found < 0) {
        snprintf(s->mask_err, sizeof s->mask_err, "%s", mp_err());
        db_close(db);
        return -1;
    }
    if (found == 1 && png) {
        double ds = db_slide_mask_downsample(db, s->db_slide_id);
        VipsImage *im = vips_image_new_from_buffer(png, len, "", NULL), *g = NULL;
        if (im && !vips_extract_band(im, &g, 0, NULL)) {
            size_t n;
            uint8_t *t = vips_image_write_to_memory(g, &n);
            if (t && n == (size_t)g->Xsize * g->Ysize && ds > 0) rc = mask_rgba(s, t, g->Xsize, g->Ysize, ds);
            g_free(t);
        }
        if (g) g_object_unref(g);
        if (im) g_object_unref(im);
        if (rc) snprintf(s->mask_err, sizeof s->mask_err, "%s: slide %lld: unreadable mask", s->db_path,
                         (long long)s->db_slide_id);
    } else snprintf(s->mask_err, sizeof s->mask_err, "%s: slide %lld has no mask", s->db_path, (long long)s->db_slide_id);
    free(png);
    db_close(db);
    return rc;
}

/* A slide given alone: the tiler's own mask, on its usual 8 µm/px thumbnail. */
static int mask_compute(view_slide *s)
{
    if (!(s->mpp > 0)) {
        snprintf(s->mask_err, sizeof s->mask_err, "%s: no MPP, so no tissue mask", s->path);
        return -1;
    }
    tiler_reader *r = reader_get(s);
    uint8_t *rgba = NULL;
    int w, h;
    double ds;
    /* the tiler's choice: about 8 µm/px, at most 4096 px a side */
    double target = fmax(8.0, s->mpp * fmax((double)s->ts.width, (double)s->ts.height) / 4096.0);
    int rc = r ? tiler_reader_thumbnail(r, s->mpp, target, &rgba, &w, &h, &ds) : -1;
    reader_put(s, r);
    if (rc) {
        snprintf(s->mask_err, sizeof s->mask_err, "%s", mp_err());
        return -1;
    }
    tiler_mask m;
    rc = tiler_mask_compute(rgba, w, h, s->mpp * ds, &m);
    free(rgba);
    if (rc) {
        snprintf(s->mask_err, sizeof s->mask_err, "%s", mp_err());
        return -1;
    }
    m.ds = ds; /* the compute knows µm per pixel, not the level-0 scale */
    rc = mask_rgba(s, m.tissue, m.w, m.h, m.ds);
    tiler_mask_free(&m);
    return rc;
}

int view_mask_load(view_server *v, view_slide *s)
{
    (void)v;
    /* s->mu also guards the reader list that mask_compute uses: load under a second lock */
    static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&load_mu);
    if (!s->mask_state) s->mask_state = (s->db_path ? mask_from_db(s) : mask_compute(s)) ? -1 : 1;
    int st = s->mask_state;
    pthread_mutex_unlock(&load_mu);
    return st == 1 ? 0 : -1;
}
