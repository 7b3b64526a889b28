/* synth/truth.c — ground truth of a slide: the label mask (PNG with its downsample and class
 * names in text chunks) and QuPath-style GeoJSON polygons traced exactly along the mask's
 * pixel edges, so polygons and mask agree at every mask pixel centre. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "synth/internal.h"

int synth_mask_default_downsample(int width, int height, double mpp)
{
    int d = 1;
    while (d * mpp < 8.0 * 0.75) d *= 2; /* closest power of two to 8 µm per mask pixel */
    while ((double)((width + d - 1) / d) * ((height + d - 1) / d) > 16e6) d *= 2;
    return d;
}

int synth_mask_make(const synth_slide *s, int downsample, synth_mask *m)
{
    const synth_params *p = &s->p;
    if (downsample < 1) return mp_err_set("mask downsample %d: must be >= 1", downsample);
    m->downsample = downsample;
    m->width = (p->width + downsample - 1) / downsample;
    m->height = (p->height + downsample - 1) / downsample;
    if ((double)m->width * m->height > 64e6)
        return mp_err_set("mask downsample %d: mask of %dx%d is too large", downsample, m->width, m->height);
    m->data = mp_xcalloc((size_t)m->width * m->height, 1);
    /* two cached lattice rows of the tissue field; same arithmetic as syn_tissue_at */
    int32_t nli = (int32_t)floorf((float)(p->width * p->mpp) / SYN_LATTICE_UM) + 3;
    float *ra = mp_xmalloc(sizeof(float) * nli), *rb = mp_xmalloc(sizeof(float) * nli);
    int32_t cached = INT32_MIN;
    for (int my = 0; my < m->height; my++) {
        double y = (my + 0.5) * downsample;
        if (y >= p->height) continue;
        float v = (float)(y * p->mpp);
        float gy = v / SYN_LATTICE_UM, fy0 = floorf(gy), fy = gy - fy0;
        int32_t j = (int32_t)fy0;
        if (j != cached) {
            for (int32_t i = 0; i < nli; i++) {
                ra[i] = syn_field_f(s, i, j);
                rb[i] = syn_field_f(s, i, j + 1);
            }
            cached = j;
        }
        for (int mx = 0; mx < m->width; mx++) {
            double x = (mx + 0.5) * downsample;
            if (x >= p->width) continue;
            float u = (float)(x * p->mpp);
            float gx = u / SYN_LATTICE_UM, fx0 = floorf(gx), fx = gx - fx0;
            int32_t i = (int32_t)fx0;
            if (i < 0 || i + 1 >= nli) continue; /* cannot happen: x < width */
            float top = ra[i] + (ra[i + 1] - ra[i]) * fx, bot = rb[i] + (rb[i + 1] - rb[i]) * fx;
            if (top + (bot - top) * fy <= 0) continue;
            m->data[(size_t)my * m->width + mx] = (uint8_t)(syn_region_at(s, u, v, NULL) + 1);
        }
    }
    free(ra);
    free(rb);
    return 0;
}

void synth_mask_free(synth_mask *m)
{
    if (!m) return;
    free(m->data);
    m->data = NULL;
}

/* 8-bit grey PNG with "magpie:*" text chunks, written atomically. */
static int write_gray_png(const char *path, const synth_mask *m, png_text *txt, int ntxt)
{
    char tmp[4200];
    mp_atomic_tmp_name(tmp, sizeof tmp, path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return mp_err_set("%s: %s", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        unlink(tmp);
        return mp_err_set("%s: PNG encoding failed", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)m->width, (png_uint_32)m->height, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_text(png, info, txt, ntxt);
    png_write_info(png, info);
    for (int y = 0; y < m->height; y++) png_write_row(png, m->data + (size_t)y * m->width);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    if (fclose(f)) {
        unlink(tmp);
        return mp_err_set("%s: %s", path, strerror(errno));
    }
    return mp_atomic_commit_tmp(tmp, path);
}

int synth_mask_write_png(const synth_slide *s, const synth_mask *m, const char *path)
{
    /* text chunks make the mask self-describing without its JSON sidecar */
    char ds[32], mpp[32], classes[512];
    snprintf(ds, sizeof ds, "%d", m->downsample);
    snprintf(mpp, sizeof mpp, "%.10g", s->p.mpp * m->downsample);
    int n = snprintf(classes, sizeof classes, "0=background");
    for (int k = 0; k < s->p.nclasses && n < (int)sizeof classes; k++)
        n += snprintf(classes + n, sizeof classes - n, ";%d=%s", k + 1, s->p.names[k]);
    png_text txt[3] = {{.compression = PNG_TEXT_COMPRESSION_NONE, .key = "magpie:downsample", .text = ds},
                       {.compression = PNG_TEXT_COMPRESSION_NONE, .key = "magpie:mpp", .text = mpp},
                       {.compression = PNG_TEXT_COMPRESSION_NONE, .key = "magpie:classes", .text = classes}};
    return write_gray_png(path, m, txt, 3);
}

int synth_artifact_mask_make(const synth_slide *s, int downsample, synth_mask *m)
{
    const synth_params *p = &s->p;
    if (downsample < 1) return mp_err_set("mask downsample %d: must be >= 1", downsample);
    m->downsample = downsample;
    m->width = (p->width + downsample - 1) / downsample;
    m->height = (p->height + downsample - 1) / downsample;
    if ((double)m->width * m->height > 64e6)
        return mp_err_set("mask downsample %d: mask of %dx%d is too large", downsample, m->width, m->height);
    m->data = mp_xcalloc((size_t)m->width * m->height, 1);
    if (p->full_tissue || (s->npen == 0 && p->dust_per_mm2 <= 0)) return 0;
    for (int my = 0; my < m->height; my++)
        for (int mx = 0; mx < m->width; mx++) {
            double x = (mx + 0.5) * downsample, y = (my + 0.5) * downsample;
            if (x < p->width && y < p->height) m->data[(size_t)my * m->width + mx] = (uint8_t)synth_artifact_at(s, x, y);
        }
    return 0;
}

int synth_artifact_mask_write_png(const synth_slide *s, const synth_mask *m, const char *path)
{
    char ds[32], mpp[32];
    snprintf(ds, sizeof ds, "%d", m->downsample);
    snprintf(mpp, sizeof mpp, "%.10g", s->p.mpp * m->downsample);
    png_text txt[3] = {{.compression = PNG_TEXT_COMPRESSION_NONE, .key = "magpie:downsample", .text = ds},
                       {.compression = PNG_TEXT_COMPRESSION_NONE, .key = "magpie:mpp", .text = mpp},
                       {.compression = PNG_TEXT_COMPRESSION_NONE, .key = "magpie:values", .text = "0=none;1=pen;2=dust"}};
    return write_gray_png(path, m, txt, 3);
}

/* ---- polygon tracing ----
 * Edges are pixel sides between class c and not-c, walked clockwise on screen (class on the
 * right). At a saddle vertex the walk turns right, which keeps diagonal pixels apart:
 * 4-connected regions, each ring bordering exactly one region. */

static const int dir_x[4] = {1, 0, -1, 0}, dir_y[4] = {0, 1, 0, -1};  /* travel along side s */
static const int nrm_x[4] = {0, 1, 0, -1}, nrm_y[4] = {-1, 0, 1, 0}; /* outward normal of side s */
static const int start_x[4] = {0, 1, 1, 0}, start_y[4] = {0, 0, 1, 1}; /* side's start corner */

typedef struct {
    const synth_mask *m;
    int c;
} tracer;

static inline int is_c(const tracer *t, int x, int y)
{
    return x >= 0 && y >= 0 && x < t->m->width && y < t->m->height && t->m->data[(size_t)y * t->m->width + x] == t->c;
}

static inline int has_edge(const tracer *t, int x, int y, int s)
{
    return is_c(t, x, y) && !is_c(t, x + nrm_x[s], y + nrm_y[s]);
}

typedef struct {
    int *x, *y;
    int n, cap;
} ring;

static void ring_push(ring *r, int x, int y)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->x = mp_xrealloc(r->x, sizeof(int) * r->cap);
        r->y = mp_xrealloc(r->y, sizeof(int) * r->cap);
    }
    r->x[r->n] = x, r->y[r->n] = y, r->n++;
}

/* Walk one ring from edge (x, y, s); keeps only corners. Returns twice the signed area. */
static long long trace_ring(const tracer *t, uint8_t *seen, int x, int y, int s, ring *out)
{
    int W = t->m->width;
    int x0 = x, y0 = y, s0 = s, prev = -1;
    out->n = 0;
    do {
        seen[(size_t)y * W + x] |= (uint8_t)(1 << s);
        if (s != prev) ring_push(out, x + start_x[s], y + start_y[s]);
        prev = s;
        int s1 = (s + 1) & 3;
        if (has_edge(t, x, y, s1)) {
            s = s1; /* right turn on the same pixel */
        } else {
            int qx = x + dir_x[s], qy = y + dir_y[s];
            if (has_edge(t, qx, qy, s)) {
                x = qx, y = qy; /* straight on */
            } else {
                x = qx + nrm_x[s], y = qy + nrm_y[s], s = (s + 3) & 3; /* left turn */
            }
        }
    } while (!(x == x0 && y == y0 && s == s0));
    /* the first corner is a straight continuation when the ring ends in the same direction */
    if (prev == s0 && out->n > 1) {
        memmove(out->x, out->x + 1, sizeof(int) * (out->n - 1));
        memmove(out->y, out->y + 1, sizeof(int) * (out->n - 1));
        out->n--;
    }
    long long a = 0;
    for (int i = 0; i < out->n; i++) {
        int j = (i + 1) % out->n;
        a += (long long)out->x[i] * out->y[j] - (long long)out->x[j] * out->y[i];
    }
    return a;
}

/* 4-connected component labels of class c (others -1); returns the count. */
static int label_components(const tracer *t, int32_t *lab, int32_t *stack)
{
    int W = t->m->width, H = t->m->height, n = 0;
    size_t N = (size_t)W * H;
    for (size_t i = 0; i < N; i++) lab[i] = -1;
    for (size_t i = 0; i < N; i++) {
        if (lab[i] >= 0 || t->m->data[i] != t->c) continue;
        size_t sp = 0;
        stack[sp++] = (int32_t)i;
        lab[i] = n;
        while (sp) {
            int32_t k = stack[--sp];
            int x = k % W, y = k / W;
            for (int d = 0; d < 4; d++) {
                int nx = x + dir_x[d], ny = y + dir_y[d];
                if (!is_c(t, nx, ny)) continue;
                size_t q = (size_t)ny * W + nx;
                if (lab[q] >= 0) continue;
                lab[q] = n;
                stack[sp++] = (int32_t)q;
            }
        }
        n++;
    }
    return n;
}

static json_t *ring_json(const ring *r, int ds, int W, int H)
{
    json_t *a = json_array();
    for (int i = 0; i <= r->n; i++) {
        int k = i % r->n; /* closed: the first point again */
        long long X = (long long)r->x[k] * ds, Y = (long long)r->y[k] * ds;
        if (X > W) X = W;
        if (Y > H) Y = H;
        json_t *pt = json_array();
        json_array_append_new(pt, json_integer(X));
        json_array_append_new(pt, json_integer(Y));
        json_array_append_new(a, pt);
    }
    return a;
}

int synth_geojson_write(const synth_slide *s, const synth_mask *m, const char *path)
{
    size_t N = (size_t)m->width * m->height;
    int32_t *lab = mp_xmalloc(sizeof(int32_t) * N), *stack = mp_xmalloc(sizeof(int32_t) * N);
    uint8_t *seen = mp_xmalloc(N);
    json_t *features = json_array();
    ring r = {0};
    for (int c = 1; c <= s->p.nclasses; c++) {
        tracer t = {m, c};
        int ncomp = label_components(&t, lab, stack);
        if (!ncomp) continue;
        json_t **outer = mp_xcalloc((size_t)ncomp, sizeof(json_t *)), **holes = mp_xcalloc((size_t)ncomp, sizeof(json_t *));
        memset(seen, 0, N);
        for (int y = 0; y < m->height; y++)
            for (int x = 0; x < m->width; x++) {
                size_t i = (size_t)y * m->width + x;
                if (m->data[i] != c) continue;
                for (int sd = 0; sd < 4; sd++) {
                    if ((seen[i] >> sd) & 1 || !has_edge(&t, x, y, sd)) continue;
                    long long area = trace_ring(&t, seen, x, y, sd, &r);
                    int comp = lab[i];
                    json_t *rj = ring_json(&r, m->downsample, s->p.width, s->p.height);
                    if (area > 0) {
                        if (outer[comp]) json_decref(outer[comp]); /* cannot happen: one outer ring per region */
                        outer[comp] = rj;
                    } else {
                        if (!holes[comp]) holes[comp] = json_array();
                        json_array_append_new(holes[comp], rj);
                    }
                }
            }
        int rgb[3];
        synth_type_color(s->p.types[c - 1], rgb);
        for (int k = 0; k < ncomp; k++) {
            if (!outer[k]) { /* cannot happen */
                json_decref(holes[k]);
                continue;
            }
            json_t *coords = json_array();
            json_array_append_new(coords, outer[k]);
            if (holes[k]) json_array_extend(coords, holes[k]), json_decref(holes[k]);
            json_t *cls = json_pack("{s:s, s:[i,i,i]}", "name", s->p.names[c - 1], "color", rgb[0], rgb[1], rgb[2]);
            json_t *feat = json_pack("{s:s, s:{s:s, s:o}, s:{s:s, s:o}}", "type", "Feature", "geometry", "type", "Polygon",
                                     "coordinates", coords, "properties", "objectType", "annotation", "classification", cls);
            json_array_append_new(features, feat);
        }
        free(outer);
        free(holes);
    }
    free(r.x);
    free(r.y);
    free(lab);
    free(stack);
    free(seen);
    json_t *root = json_pack("{s:s, s:o}", "type", "FeatureCollection", "features", features);
    char *txt = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!txt) return mp_err_set("%s: JSON encoding failed", path);
    int rc = mp_write_file_atomic(path, txt, strlen(txt));
    free(txt);
    return rc;
}
