/* tiler/mask.c — tissue mask on a low-resolution thumbnail: Otsu on saturation for brightfield
 * (intensity for dark-background fluorescence), 3x3 median, pen-ink rejection, morphological
 * close, small-object removal and hole filling. Also per-patch QC (blur, brightness). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/util.h"
#include "tiler/internal.h"
#include "tiler/tiler.h"

int tiler_otsu(const uint64_t hist[256])
{
    double total = 0, sum = 0;
    for (int i = 0; i < 256; i++) {
        total += hist[i];
        sum += (double)i * hist[i];
    }
    if (total <= 0) return 0;
    double wb = 0, sb = 0, best = -1;
    int t = 0;
    for (int i = 0; i < 255; i++) {
        wb += hist[i];
        sb += (double)i * hist[i];
        double wf = total - wb;
        if (wb <= 0 || wf <= 0) continue;
        double mb = sb / wb, mf = (sum - sb) / wf;
        double between = wb * wf * (mb - mf) * (mb - mf);
        if (between > best) {
            best = between;
            t = i;
        }
    }
    return t;
}

static inline uint8_t min8(uint8_t a, uint8_t b) { return a < b ? a : b; }
static inline uint8_t max8(uint8_t a, uint8_t b) { return a > b ? a : b; }
static inline uint8_t med3(uint8_t a, uint8_t b, uint8_t c) { return max8(min8(a, b), min8(max8(a, b), c)); }

/* 3x3 median (edge pixels replicate). Each column's vertical triple is sorted once per row
 * (lo <= mid <= hi); the median of the 9 values is then
 * med3(max of the three lo, med3 of the three mid, min of the three hi) — exact, branch-free. */
static int median3(const uint8_t *in, uint8_t *out, int w, int h)
{
    uint8_t *lo = mp_try_malloc((size_t)w * 3, "the tissue mask");
    if (!lo) return -1;
    uint8_t *mid = lo + w, *hi = mid + w;
    for (int y = 0; y < h; y++) {
        const uint8_t *a = in + (size_t)(y > 0 ? y - 1 : 0) * w, *b = in + (size_t)y * w,
                      *c = in + (size_t)(y + 1 < h ? y + 1 : h - 1) * w;
        for (int x = 0; x < w; x++) {
            uint8_t p = a[x], q = b[x], r = c[x];
            lo[x] = min8(min8(p, q), r);
            hi[x] = max8(max8(p, q), r);
            mid[x] = med3(p, q, r);
        }
        uint8_t *o = out + (size_t)y * w;
        for (int e = 0; e < (w > 1 ? 2 : 1); e++) { /* the two edge columns, clamped */
            int x = e ? w - 1 : 0, l = x > 0 ? x - 1 : 0, rr = x + 1 < w ? x + 1 : w - 1;
            o[x] = med3(max8(max8(lo[l], lo[x]), lo[rr]), med3(mid[l], mid[x], mid[rr]), min8(min8(hi[l], hi[x]), hi[rr]));
        }
        for (int x = 1; x < w - 1; x++) /* interior, no clamping: vectorises */
            o[x] = med3(max8(max8(lo[x - 1], lo[x]), lo[x + 1]), med3(mid[x - 1], mid[x], mid[x + 1]),
                        min8(min8(hi[x - 1], hi[x]), hi[x + 1]));
    }
    free(lo);
    return 0;
}

/* Mean over a (2r+1)^2 window (clipped at the edges), through an integral image. */
static int box_mean(const uint8_t *in, uint8_t *out, int w, int h, int r)
{
    uint64_t *ii = mp_try_calloc((size_t)(w + 1) * (h + 1), sizeof *ii, "the tissue mask");
    if (!ii) return -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            ii[(size_t)(y + 1) * (w + 1) + x + 1] = in[(size_t)y * w + x] + ii[(size_t)y * (w + 1) + x + 1] +
                                                     ii[(size_t)(y + 1) * (w + 1) + x] - ii[(size_t)y * (w + 1) + x];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int x0 = x - r < 0 ? 0 : x - r, x1 = x + r + 1 > w ? w : x + r + 1;
            int y0 = y - r < 0 ? 0 : y - r, y1 = y + r + 1 > h ? h : y + r + 1;
            uint64_t s = ii[(size_t)y1 * (w + 1) + x1] - ii[(size_t)y0 * (w + 1) + x1] - ii[(size_t)y1 * (w + 1) + x0] +
                         ii[(size_t)y0 * (w + 1) + x0];
            out[(size_t)y * w + x] = (uint8_t)(s / (uint64_t)((x1 - x0) * (y1 - y0)));
        }
    free(ii);
    return 0;
}

/* Binary dilation (grow=1) or erosion (grow=0) by a (2r+1)^2 square, separably. Outside the
 * image counts as background for dilation and as foreground for erosion (no edge erosion):
 * the OR (AND) of the in-image window. Output 0/1. */
static int morph(uint8_t *m, int w, int h, int r, int grow)
{
    size_t n = (size_t)w * h;
    uint8_t *t = mp_try_malloc(n + (size_t)w, "the tissue mask"); /* the pass between, and a row */
    if (!t) return -1;
    uint8_t *b = t + n;
    /* horizontal: window offsets outer, pixels inner (vectorises); off-image is neutral */
    for (int y = 0; y < h; y++) {
        const uint8_t *in = m + (size_t)y * w;
        uint8_t *o = t + (size_t)y * w;
        for (int x = 0; x < w; x++) b[x] = in[x] != 0;
        memcpy(o, b, (size_t)w);
        for (int d = 1; d <= r && d < w; d++) {
            if (grow) {
                for (int x = d; x < w; x++) o[x] |= b[x - d];
                for (int x = 0; x + d < w; x++) o[x] |= b[x + d];
            } else {
                for (int x = d; x < w; x++) o[x] &= b[x - d];
                for (int x = 0; x + d < w; x++) o[x] &= b[x + d];
            }
        }
    }
    /* vertical, row by row */
    for (int y = 0; y < h; y++) {
        int a = y - r < 0 ? 0 : y - r, e = y + r >= h ? h - 1 : y + r;
        uint8_t *o = m + (size_t)y * w;
        memcpy(o, t + (size_t)a * w, (size_t)w);
        for (int yy = a + 1; yy <= e; yy++) {
            const uint8_t *s = t + (size_t)yy * w;
            if (grow)
                for (int x = 0; x < w; x++) o[x] |= s[x];
            else
                for (int x = 0; x < w; x++) o[x] &= s[x];
        }
    }
    free(t);
    return 0;
}

/* Connected components of pixels equal to `val` (8-connected for objects, 4 for holes).
 * Components smaller than min_area — and, when border_keeps, not touching the border —
 * are flipped to !val. Works on a copy padded by one pixel, so neighbours need no bounds
 * checks: `open` marks pixels equal to val not yet reached (padding never is). */
static int filter_components(uint8_t *m, int w, int h, uint8_t val, int64_t min_area, int conn8, int border_keeps)
{
    size_t W = (size_t)w + 2, N = W * (h + 2);
    uint8_t *open = mp_try_calloc(N, 1, "the tissue mask");
    int32_t *q = open ? mp_try_malloc((size_t)w * h * sizeof *q, "the tissue mask") : NULL;
    if (!q) {
        free(open);
        return -1;
    }
    for (int y = 0; y < h; y++) {
        const uint8_t *row = m + (size_t)y * w;
        uint8_t *o = open + (size_t)(y + 1) * W + 1;
        for (int x = 0; x < w; x++) o[x] = row[x] == val;
    }
    ptrdiff_t nb[8] = {-1, 1, -(ptrdiff_t)W, (ptrdiff_t)W, -(ptrdiff_t)W - 1, -(ptrdiff_t)W + 1, (ptrdiff_t)W - 1,
                       (ptrdiff_t)W + 1};
    int nn = conn8 ? 8 : 4;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t s = (size_t)(y + 1) * W + x + 1;
            if (!open[s]) continue;
            /* breadth-first: q[0..tail) is the component when the queue drains */
            size_t head = 0, tail = 0;
            q[tail++] = (int32_t)s;
            open[s] = 0;
            while (head < tail) {
                size_t p = (size_t)q[head++];
                for (int k = 0; k < nn; k++) {
                    size_t t = p + nb[k];
                    if (open[t]) {
                        open[t] = 0;
                        q[tail++] = (int32_t)t;
                    }
                }
            }
            if ((int64_t)tail >= min_area) continue;
            int border = 0;
            if (border_keeps)
                for (size_t i = 0; i < tail && !border; i++) {
                    size_t py = (size_t)q[i] / W, px = (size_t)q[i] % W;
                    border = px == 1 || py == 1 || px == (size_t)w || py == (size_t)h;
                }
            if (border) continue;
            for (size_t i = 0; i < tail; i++) m[((size_t)q[i] / W - 1) * w + (size_t)q[i] % W - 1] = !val;
        }
    free(open);
    free(q);
    return 0;
}

/* The rule of tiler.h on a histogram of max(R, G, B) over n scanned pixels. */
static void kind_from_hist(const uint64_t vh[256], size_t n, tiler_kind_info *k)
{
    memset(k, 0, sizeof *k);
    k->kind = TILER_BRIGHTFIELD;
    k->background = 255;
    if (!n) return;
    uint64_t band[16] = {0}, dark = 0;
    for (int i = 0; i < 256; i++) {
        band[i / 16] += vh[i];
        if (i < TILER_DARK_V) dark += vh[i];
    }
    int best = 15; /* ties go to the brighter band: bright-field unless the dark one wins outright */
    for (int b = 14; b >= 0; b--)
        if (band[b] > band[best]) best = b;
    k->background = best * 16 + 8;
    k->dark = (double)dark / (double)n;
    if (k->background < TILER_DARK_V && k->dark >= TILER_DARK_SHARE) k->kind = TILER_FLUORESCENCE;
}

void tiler_kind_classify(const uint8_t *rgba, int w, int h, tiler_kind_info *k)
{
    uint64_t vh[256] = {0};
    size_t n = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint8_t *p = rgba + i * 4;
        if (p[3] < 128) continue;
        int mx = p[0] > p[1] ? p[0] : p[1];
        vh[p[2] > mx ? p[2] : mx]++;
        n++;
    }
    kind_from_hist(vh, n, k);
}

const char *tiler_kind_name(tiler_kind k) { return k == TILER_FLUORESCENCE ? "fluorescence" : "brightfield"; }

void tiler_kind_describe(const tiler_kind_info *k, char *out, size_t cap)
{
    snprintf(out, cap, "%s background: commonest brightness %d/255, %.0f%% of it below %d",
             k->kind == TILER_FLUORESCENCE ? "dark" : "bright", k->background, 100 * k->dark, TILER_DARK_V);
}

int tiler_mask_compute(const uint8_t *rgba, int w, int h, double mask_mpp, tiler_mask *m)
{
    memset(m, 0, sizeof *m);
    size_t n = (size_t)w * h;
    /* sized by the thumbnail (at most 4096 px a side): a failure fails this slide */
    uint8_t *sat = mp_try_malloc(n, "the tissue mask"), *val = sat ? mp_try_malloc(n, "the tissue mask") : NULL;
    uint8_t *feat = val ? mp_try_malloc(n, "the tissue mask") : NULL;
    uint8_t *pen = feat ? mp_try_calloc(n, 1, "the tissue mask") : NULL;
    uint8_t *valid = pen ? mp_try_malloc(n, "the tissue mask") : NULL, *tis = NULL;
    if (!valid) goto oom;
    uint64_t vh[256] = {0};
    size_t nvalid = 0;
    /* (mx - mn) * 255 / mx by a multiply: with inv = ceil(2^32 / mx) the error stays below
     * 2^16 / 2^32 < 1 / mx, so the floor is exact for every numerator <= 255 * 255. */
    uint64_t inv[256];
    inv[0] = 0;
    for (int k = 1; k < 256; k++) inv[k] = ((1ull << 32) + (uint64_t)k - 1) / (uint64_t)k;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgba + i * 4;
        int mx = p[0] > p[1] ? p[0] : p[1], mn = p[0] < p[1] ? p[0] : p[1];
        if (p[2] > mx) mx = p[2];
        if (p[2] < mn) mn = p[2];
        sat[i] = (uint8_t)(((uint64_t)(mx - mn) * 255 * inv[mx]) >> 32); /* 0 when mx == 0 */
        val[i] = (uint8_t)mx;
        valid[i] = p[3] >= 128; /* outside the scanned area (alpha 0) is never tissue */
        if (valid[i]) {
            vh[mx]++;
            nvalid++;
        }
    }
    /* Bright-field glass is bright; fluorescence background is dark: one rule for the mask and
     * for the refusal of fluorescence slides (tiler_kind_classify). */
    kind_from_hist(vh, nvalid, &m->kind);
    m->dark = m->kind.kind == TILER_FLUORESCENCE;
    if (!m->dark) {
        /* Pen ink: green, blue, black. H&E hues are pink to purple (about 270-360 and 0-20 deg). */
        for (size_t i = 0; i < n; i++) {
            if (!valid[i]) continue;
            int mx = val[i], s = sat[i];
            if (mx >= 50 && s < 50) continue; /* neither black nor saturated enough for ink */
            const uint8_t *p = rgba + i * 4;
            int r = p[0], g = p[1], b = p[2];
            int mn = mx - (s * mx) / 255;
            double hue = 0;
            if (mx > mn) {
                double d = mx - mn;
                if (mx == r) {
                    /* fmod(q, 6) without the libm call where it is a plain subtraction: q - 6
                     * is exact for q in [6, 12] (Sterbenz), and fmod(q, 6) == q on [0, 6) */
                    double q = (g - b) / d + 6;
                    hue = 60 * (q >= 0 && q < 6 ? q : q >= 6 && q < 12 ? q - 6 : fmod(q, 6));
                } else if (mx == g) hue = 60 * ((b - r) / d + 2);
                else hue = 60 * ((r - g) / d + 4);
            }
            if (mx < 50) pen[i] = 1;                                          /* black */
            else if (hue >= 70 && hue <= 170 && s >= 50) pen[i] = 1;            /* green */
            else if (hue >= 185 && hue <= 250 && s >= 80 && mx < 235) pen[i] = 1; /* blue */
        }
    }
    if (m->dark) {
        /* Fluorescence: nuclei are sparse bright dots on black; tissue is where they are dense,
         * so threshold the local mean intensity (~50 µm window), not single pixels. */
        if (box_mean(val, feat, w, h, (int)fmax(1, round(24.0 / mask_mpp)))) goto oom;
        /* Log scale: dim tissue (10-30) separates from black glass (0-5) instead of the
         * brightest nuclei bands from everything else. */
        for (size_t i = 0; i < n; i++) sat[i] = (uint8_t)lround(255.0 * log1p(feat[i]) / log(256.0));
    } else {
        memcpy(feat, sat, n);
        if (median3(feat, sat, w, h)) goto oom; /* sat now holds the filtered feature */
    }
    uint64_t hist[256] = {0};
    for (size_t i = 0; i < n; i++)
        if (valid[i] && !pen[i]) hist[sat[i]]++;
    int t = tiler_otsu(hist);
    /* Floor so an empty slide's noise never becomes tissue. */
    int floor_t = m->dark ? 80 : 15; /* dark: log scale, 80 ~ intensity 7.8 */
    if (t < floor_t) t = floor_t;
    m->threshold = t;
    if (!(tis = mp_try_malloc(n, "the tissue mask"))) goto oom;
    for (size_t i = 0; i < n; i++) tis[i] = valid[i] && !pen[i] && sat[i] > t;
    int r = (int)fmax(1, round(16.0 / mask_mpp)); /* close gaps of ~30 µm */
    if (r > 3) r = 3;
    double px_um2 = mask_mpp * mask_mpp;
    if (morph(pen, w, h, 1, 1) || /* ink edges blend into tissue colours */
        morph(tis, w, h, r, 1) || morph(tis, w, h, r, 0) ||
        filter_components(tis, w, h, 1, (int64_t)ceil(10000.0 / px_um2), 1, 0) || /* objects < 0.01 mm² */
        filter_components(tis, w, h, 0, (int64_t)ceil(50000.0 / px_um2), 0, 1))   /* holes < 0.05 mm² */
        goto oom;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        tis[i] = (tis[i] && !pen[i] && valid[i]) ? 255 : 0;
        cnt += tis[i] != 0;
    }
    m->w = w;
    m->h = h;
    m->tissue = tis;
    m->pen = pen;
    m->fraction = n ? (double)cnt / n : 0;
    free(sat);
    free(val);
    free(feat);
    free(valid);
    return 0;

oom: /* mp_err says what was short */
    free(sat);
    free(val);
    free(feat);
    free(valid);
    free(pen);
    free(tis);
    memset(m, 0, sizeof *m);
    return -1;
}

void tiler_mask_free(tiler_mask *m)
{
    if (!m) return;
    free(m->tissue);
    free(m->pen);
    m->tissue = m->pen = NULL;
}

double tiler_mask_cover(const tiler_mask *m, const uint8_t *map, int one, double x0, double y0, double size0)
{
    double ax = x0 / m->ds, ay = y0 / m->ds, bx = (x0 + size0) / m->ds, by = (y0 + size0) / m->ds;
    int ix0 = (int)floor(ax), iy0 = (int)floor(ay), ix1 = (int)ceil(bx), iy1 = (int)ceil(by);
    double acc = 0, area = (bx - ax) * (by - ay);
    if (area <= 0) return 0;
    for (int y = iy0; y < iy1; y++) {
        if (y < 0 || y >= m->h) continue;
        double wy = fmin(by, y + 1) - fmax(ay, y);
        for (int x = ix0; x < ix1; x++) {
            if (x < 0 || x >= m->w) continue;
            if (map[(size_t)y * m->w + x] != one) continue;
            acc += wy * (fmin(bx, x + 1) - fmax(ax, x));
        }
    }
    double f = acc / area;
    return f > 1 ? 1 : f;
}

int tiler_mask_png(const tiler_mask *m, void **png, size_t *len)
{
    VipsImage *im = vips_image_new_from_memory(m->tissue, (size_t)m->w * m->h, m->w, m->h, 1, VIPS_FORMAT_UCHAR);
    char e[512];
    /* libvips' error buffer is the process's: taken (copied and cleared at once), as magpie run
     * tiles slides on several threads */
    if (!im) {
        tiler_vips_error_take(e, sizeof e, "mask");
        return mp_err_set("%s", e);
    }
    int r = vips_pngsave_buffer(im, png, len, "compression", 6, NULL);
    g_object_unref(im);
    if (r) {
        tiler_vips_error_take(e, sizeof e, "mask: PNG encode failed");
        return mp_err_set("%s", e);
    }
    return 0;
}

void tiler_free(void *p) { g_free(p); }

void tiler_qc(const uint8_t *rgb, int w, int h, double *blur, double *brightness)
{
    tiler_qc_pitch(rgb, w, h, w, blur, brightness);
}

/* Luminance of one row in 1/1000 steps (BT.601 integer weights); returns the row's sum. */
static int64_t luma_row(const uint8_t *p, int w, int32_t *o)
{
    int64_t sum = 0;
    for (int x0 = 0; x0 < w; x0 += 2048) { /* 2048 * 255000 < 2^31: 32-bit partial sums */
        int x1 = x0 + 2048 < w ? x0 + 2048 : w;
        int32_t rs = 0;
        for (int x = x0; x < x1; x++) {
            int32_t v = 299 * p[3 * x] + 587 * p[3 * x + 1] + 114 * p[3 * x + 2];
            o[x] = v;
            rs += v;
        }
        sum += rs;
    }
    return sum;
}

/* QC runs once per patch and was ~14% of a tiling run's CPU: an AVX2 clone (picked at load
 * time, integer maths, so the same values) halves it where the CPU has AVX2. Not under the
 * sanitizers, whose runtime starts after ifunc resolvers, nor with clang (the fuzz build), which
 * refuses to clone a function declared in a header before. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_UNDEFINED__)
#define QC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QC_CLONES
#endif

QC_CLONES void tiler_qc_pitch(const uint8_t *rgb, int w, int h, int pitch, double *blur, double *brightness)
{
    /* Luminance, then the 4-neighbour Laplacian over the interior, all in integers: exact and
     * ~4x cheaper than floats per patch. Three rows of luminance in a ring, so the image is
     * read once and nothing patch-sized is allocated. |v| <= 4 * 255000: 32-bit partial sums
     * of 2048 values, a row's squares in 64 bits (up to 8.8M px). */
    if (w <= 0 || h <= 0) {
        *brightness = *blur = 0;
        return;
    }
    int32_t *ring = mp_xmalloc(sizeof(int32_t) * 3 * (size_t)w);
    int64_t sum = 0, s = 0, k = 0;
    double s2 = 0;
    for (int y = 0; y < h; y++) {
        sum += luma_row(rgb + (size_t)y * pitch * 3, w, ring + (size_t)(y % 3) * w);
        if (y < 2) continue;
        /* Laplacian of row y - 1 */
        const int32_t *u = ring + (size_t)((y - 2) % 3) * w, *r = ring + (size_t)((y - 1) % 3) * w,
                      *d = ring + (size_t)(y % 3) * w;
        uint64_t rs2 = 0;
        for (int x0 = 1; x0 < w - 1; x0 += 2048) {
            int x1 = x0 + 2048 < w - 1 ? x0 + 2048 : w - 1;
            int32_t rs = 0;
            for (int x = x0; x < x1; x++) {
                int32_t v = r[x - 1] + r[x + 1] + u[x] + d[x] - 4 * r[x];
                uint32_t a = (uint32_t)(v < 0 ? -v : v);
                rs += v;
                rs2 += (uint64_t)a * a;
            }
            s += rs;
        }
        s2 += (double)rs2;
        k += w - 2;
    }
    *brightness = sum / 1000.0 / ((double)w * h);
    double m = k ? (double)s / k : 0;
    *blur = k ? (s2 / k - m * m) / 1e6 : 0;
    free(ring);
}
