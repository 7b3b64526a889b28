/* tests/synth/test_synth.c — the generator's contract: pixels are a pure function of the seed
 * and position, the TIFF carries the MPP and a pyramid, classes match in mean colour at 1.25x
 * but differ in nuclear detail at 10x, and mask, GeoJSON and pixels tell the same story. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <unistd.h>

#include "common/error.h"
#include "common/rng.h"
#include "synth/synth.h"
#include "tests/test.h"

static char tmpdir[256];

static synth_params small_params(void)
{
    synth_params p;
    synth_params_default(&p);
    p.width = 1500;
    p.height = 1200;
    p.mpp = 2.0;
    p.seed = 11;
    p.region_um = 200;
    p.pen_prob = 1.0;
    p.dust_per_mm2 = 5;
    return p;
}

static uint8_t *render(const synth_slide *s, int x, int y, int w, int h)
{
    uint8_t *buf = malloc((size_t)w * h * 3);
    synth_scratch *sc = synth_scratch_new();
    synth_render(s, sc, x, y, w, h, buf, (size_t)w * 3);
    synth_scratch_free(sc);
    return buf;
}

TEST(test_params)
{
    synth_params p;
    synth_params_default(&p);
    CHECK_INT(p.nclasses, 3);
    CHECK_STR(p.names[1], "Tumor");
    CHECK_INT(synth_params_check(&p), 0);
    CHECK_INT(synth_parse_classes(&p, "tumour:Carcinoma,stroma"), 0);
    CHECK_INT(p.nclasses, 2);
    CHECK_INT(p.types[0], SYNTH_TUMOR);
    CHECK_STR(p.names[0], "Carcinoma");
    CHECK_STR(p.names[1], "Stroma");
    CHECK_INT(synth_parse_classes(&p, "tumor"), -1);
    CHECK_CONTAINS(mp_err(), "at least 2");
    CHECK_INT(synth_parse_classes(&p, "tumor,bone"), -1);
    CHECK_CONTAINS(mp_err(), "unknown type 'bone'");
    CHECK_INT(synth_parse_classes(&p, "tumor,tumour"), -1);
    CHECK_CONTAINS(mp_err(), "given twice");
    CHECK_INT(synth_nuisance_preset(&p, "strong"), 0);
    CHECK_NEAR(p.mix, 0.15, 1e-12);
    CHECK_NEAR(p.density_jitter, 0.3, 1e-12);
    CHECK_NEAR(p.stain_jitter, 1.0, 1e-12);
    CHECK_INT(synth_nuisance_preset(&p, "wild"), -1);
    synth_params_default(&p);
    p.mpp = 0;
    CHECK_INT(synth_params_check(&p), -1);
    CHECK_CONTAINS(mp_err(), "--mpp 0");
    CHECK_INT(synth_mask_default_downsample(100000, 80000, 0.25), 32);
    CHECK_INT(synth_mask_default_downsample(5000, 5000, 1.0), 8);
    CHECK_INT(synth_mask_default_downsample(5000, 5000, 0.5), 16);
}

/* A rectangle's bytes do not depend on how it is cut up: what streaming relies on. */
static void check_pure(double mpp)
{
    synth_params p = small_params();
    p.mpp = mpp;
    p.width = (int)(3000 / mpp), p.height = (int)(2400 / mpp);
    p.full_tissue = mpp < 1; /* at 40x the rectangle must hold nuclei */
    synth_slide *s = synth_slide_new(&p, 0, -1);
    int x = (int)(600 / mpp), y = (int)(500 / mpp), w = 333, h = 301;
    uint8_t *whole = render(s, x, y, w, h);
    uint8_t *parts = malloc((size_t)w * h * 3);
    synth_scratch *sc = synth_scratch_new();
    /* odd pieces, rendered bottom-right first */
    int cut_x = 117, cut_y = 59;
    synth_render(s, sc, x + cut_x, y + cut_y, w - cut_x, h - cut_y, parts + ((size_t)cut_y * w + cut_x) * 3, (size_t)w * 3);
    synth_render(s, sc, x, y + cut_y, cut_x, h - cut_y, parts + (size_t)cut_y * w * 3, (size_t)w * 3);
    synth_render(s, sc, x, y, w, cut_y, parts, (size_t)w * 3);
    CHECK(memcmp(whole, parts, (size_t)w * h * 3) == 0);
    /* same seed, new slide object: same bytes; another seed: different */
    synth_slide *s2 = synth_slide_new(&p, 0, -1);
    uint8_t *again = render(s2, x, y, w, h);
    CHECK(memcmp(whole, again, (size_t)w * h * 3) == 0);
    p.seed = 12;
    synth_slide *s3 = synth_slide_new(&p, 0, -1);
    uint8_t *other = render(s3, x, y, w, h);
    CHECK(memcmp(whole, other, (size_t)w * h * 3) != 0);
    synth_scratch_free(sc);
    free(whole), free(parts), free(again), free(other);
    synth_slide_free(s), synth_slide_free(s2), synth_slide_free(s3);
}

TEST(test_render_pure)
{
    check_pure(2.0);
    check_pure(0.25);
    check_pure(7.0); /* coarse pixels: the widest blur reach */
}

static void check_tiff(double mpp)
{
    synth_params p = small_params();
    p.mpp = mpp;
    p.width = 1100;
    p.height = 700;
    synth_slide *s = synth_slide_new(&p, 0, -1);
    char path[512];
    snprintf(path, sizeof path, "%s/res_%g.tiff", tmpdir, mpp);
    CHECK_INT(synth_tiff_write(s, path, 256, 85, NULL), 0);
    synth_slide_free(s);
    TIFF *t = TIFFOpen(path, "r");
    CHECK(t != NULL);
    if (!t) return;
    float xr = 0, yr = 0;
    uint16_t unit = 0, comp = 0;
    uint32_t w = 0, h = 0, tw = 0;
    CHECK(TIFFGetField(t, TIFFTAG_XRESOLUTION, &xr));
    CHECK(TIFFGetField(t, TIFFTAG_YRESOLUTION, &yr));
    CHECK(TIFFGetField(t, TIFFTAG_RESOLUTIONUNIT, &unit));
    CHECK_INT(unit, RESUNIT_CENTIMETER);
    /* µm per pixel = 10^4 / (pixels per cm) */
    CHECK_NEAR(1e4 / xr, mpp, 1e-6 * mpp);
    CHECK_NEAR(1e4 / yr, mpp, 1e-6 * mpp);
    TIFFGetField(t, TIFFTAG_COMPRESSION, &comp);
    CHECK_INT(comp, COMPRESSION_JPEG);
    CHECK(TIFFIsTiled(t));
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
    CHECK_INT(tw, 256);
    int levels = 0;
    uint32_t prev_w = 0;
    do {
        TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
        if (levels == 0) {
            CHECK_INT(w, 1100);
            CHECK_INT(h, 700);
        } else {
            CHECK(w == prev_w / 2 || w == (prev_w + 1) / 2); /* each level halves */
        }
        prev_w = w;
        levels++;
    } while (TIFFReadDirectory(t));
    CHECK(levels >= 3);
    TIFFClose(t);
}

TEST(test_tiff_tags)
{
    check_tiff(0.25);
    check_tiff(0.5);
    check_tiff(1.0);
}

/* mean RGB over full-tissue, single-class areas after an 8x8 box average (10x → 1.25x) */
static void class_means(int k, const char *nuisance, double mean[3])
{
    synth_params p;
    synth_params_default(&p);
    synth_nuisance_preset(&p, nuisance);
    p.mpp = 1.0;
    p.width = p.height = 100000;
    p.full_tissue = 1;
    p.uniform_class = k;
    p.seed = 5;
    synth_slide *s = synth_slide_new(&p, 0, -1);
    int n = 1792; /* 1.8 mm square: ~64 patches of 224 µm */
    uint8_t *img = render(s, 20000, 30000, n, n);
    double acc[3] = {0};
    int cells = 0;
    for (int by = 0; by < n; by += 8)
        for (int bx = 0; bx < n; bx += 8, cells++)
            for (int c = 0; c < 3; c++) {
                double b = 0;
                for (int y = 0; y < 8; y++)
                    for (int x = 0; x < 8; x++) b += img[((size_t)(by + y) * n + bx + x) * 3 + c];
                acc[c] += b / 64;
            }
    for (int c = 0; c < 3; c++) mean[c] = acc[c] / cells;
    free(img);
    synth_slide_free(s);
}

TEST(test_class_mean_colour)
{
    /* "strong": the nuisance (mix, density and stain jitter) is drawn independently of the
     * class, so the same slide seed gives the same stain field whatever the class */
    const char *presets[2] = {"none", "strong"};
    for (int q = 0; q < 2; q++) {
        double m[3][3];
        for (int k = 0; k < 3; k++) class_means(k, presets[q], m[k]);
        double worst = 0;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < a; b++)
                for (int c = 0; c < 3; c++) worst = fmax(worst, fabs(m[a][c] - m[b][c]));
        fprintf(stderr, "  class means at 1.25x (%s): L %.2f %.2f %.2f  T %.2f %.2f %.2f  S %.2f %.2f %.2f  worst %.2f\n",
                presets[q], m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2], m[2][0], m[2][1], m[2][2], worst);
        CHECK(worst < 1.5);
        /* and it is tissue colour, not glass */
        CHECK(m[0][1] < 200 && m[0][0] > 120);
    }
}

/* 10x detail: dark (nuclear) pixels grouped in 4-connected blobs. Lymphocytes give many small
 * round blobs, tumour nuclei few large ones (dark rims), stroma elongated ones. */
typedef struct {
    double blob_area, elong, dark_frac;
} texture;

static texture patch_texture(const uint8_t *img, int n)
{
    int N = n * n;
    uint8_t *dark = calloc((size_t)N, 1);
    int32_t *stack = malloc(sizeof(int32_t) * N);
    int ndark = 0;
    /* colour deconvolution with the generator's reference stain vectors (no stain jitter
     * here): hematoxylin amount per pixel by least squares on OD = h·H + e·E */
    static const double H[3] = {0.5626, 0.7201, 0.4062}, E[3] = {0.2159, 0.8012, 0.5581};
    double hh = 0, ee = 0, he = 0;
    for (int c = 0; c < 3; c++) hh += H[c] * H[c], ee += E[c] * E[c], he += H[c] * E[c];
    double det = hh * ee - he * he;
    for (int i = 0; i < N; i++) {
        double hod = 0, eod = 0;
        for (int c = 0; c < 3; c++) {
            double od = -log(fmax(img[3 * i + c], 1) / 246.0);
            hod += od * H[c], eod += od * E[c];
        }
        double h = (ee * hod - he * eod) / det;
        if (h > 0.2) dark[i] = 1, ndark++;
    }
    double area = 0, elong = 0;
    int blobs = 0;
    for (int i = 0; i < N; i++) {
        if (dark[i] != 1) continue;
        int sp = 0, cnt = 0;
        double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
        stack[sp++] = i;
        dark[i] = 2;
        while (sp) {
            int k = stack[--sp], x = k % n, y = k / n;
            cnt++, sx += x, sy += y, sxx += (double)x * x, syy += (double)y * y, sxy += (double)x * y;
            static const int dx[4] = {1, -1, 0, 0}, dy[4] = {0, 0, 1, -1};
            for (int d = 0; d < 4; d++) {
                int nx = x + dx[d], ny = y + dy[d];
                if (nx < 0 || ny < 0 || nx >= n || ny >= n) continue;
                int q = ny * n + nx;
                if (dark[q] == 1) dark[q] = 2, stack[sp++] = q;
            }
        }
        if (cnt < 4) continue;
        double mx = sx / cnt, my = sy / cnt;
        double cxx = sxx / cnt - mx * mx, cyy = syy / cnt - my * my, cxy = sxy / cnt - mx * my;
        double tr = cxx + cyy, det = cxx * cyy - cxy * cxy, disc = sqrt(fmax(tr * tr / 4 - det, 0));
        double l1 = tr / 2 + disc, l2 = fmax(tr / 2 - disc, 0.05);
        area += cnt, elong += sqrt(l1 / l2), blobs++;
    }
    free(dark);
    free(stack);
    texture t = {blobs ? area / blobs : 0, blobs ? elong / blobs : 0, (double)ndark / N};
    return t;
}

TEST(test_class_texture_10x)
{
    texture mean[3];
    double sd_area[3];
    for (int k = 0; k < 3; k++) {
        synth_params p;
        synth_params_default(&p);
        synth_nuisance_preset(&p, "none");
        p.mpp = 1.0;
        p.width = p.height = 100000;
        p.full_tissue = 1;
        p.uniform_class = k;
        p.seed = 9;
        synth_slide *s = synth_slide_new(&p, 0, -1);
        double a = 0, a2 = 0, e = 0, d = 0;
        int np = 8;
        for (int i = 0; i < np; i++) {
            uint8_t *img = render(s, 1000 + 300 * i, 4000, 224, 224); /* 10x patches, 224 µm */
            texture t = patch_texture(img, 224);
            a += t.blob_area, a2 += t.blob_area * t.blob_area, e += t.elong, d += t.dark_frac;
            free(img);
        }
        mean[k].blob_area = a / np, mean[k].elong = e / np, mean[k].dark_frac = d / np;
        sd_area[k] = sqrt(fmax(a2 / np - mean[k].blob_area * mean[k].blob_area, 0));
        fprintf(stderr, "  %-10s blob area %6.1f px (sd %.1f), elongation %.2f, dark %.3f\n", p.names[k], mean[k].blob_area,
                sd_area[k], mean[k].elong, mean[k].dark_frac);
        synth_slide_free(s);
    }
    /* lymphocyte (0) blobs are small, tumour (1) blobs large, stroma (2) blobs elongated */
    CHECK(mean[1].blob_area > 2.0 * mean[0].blob_area);
    CHECK(mean[1].blob_area - 3 * sd_area[1] > mean[0].blob_area + 3 * sd_area[0]);
    CHECK(mean[2].elong > 1.5 * mean[0].elong);
    CHECK(mean[2].elong > 1.3 * mean[1].elong);
}

/* point in polygon, even-odd over every ring of every feature of a class */
static int inside_class(json_t *features, const char *name, double px, double py)
{
    int in = 0;
    size_t i;
    json_t *f;
    json_array_foreach(features, i, f) {
        const char *nm = json_string_value(json_object_get(json_object_get(json_object_get(f, "properties"), "classification"), "name"));
        if (!nm || strcmp(nm, name)) continue;
        json_t *rings = json_object_get(json_object_get(f, "geometry"), "coordinates");
        size_t ri;
        json_t *ring;
        json_array_foreach(rings, ri, ring) {
            size_t n = json_array_size(ring);
            for (size_t a = 0, b = n - 1; a < n; b = a++) {
                json_t *pa = json_array_get(ring, a), *pb = json_array_get(ring, b);
                double ax = json_number_value(json_array_get(pa, 0)), ay = json_number_value(json_array_get(pa, 1));
                double bx = json_number_value(json_array_get(pb, 0)), by = json_number_value(json_array_get(pb, 1));
                if ((ay > py) != (by > py) && px < (bx - ax) * (py - ay) / (by - ay) + ax) in = !in;
            }
        }
    }
    return in;
}

TEST(test_truth_agrees)
{
    synth_params p = small_params();
    synth_slide *s = synth_slide_new(&p, 3, -1);
    synth_mask m;
    int ds = 4;
    CHECK_INT(synth_mask_make(s, ds, &m), 0);
    CHECK_INT(m.width, 375);
    CHECK_INT(m.height, 300);
    /* the mask is the label function at mask pixel centres */
    int bad = 0, counts[4] = {0};
    for (int y = 0; y < m.height; y++)
        for (int x = 0; x < m.width; x++) {
            int v = m.data[(size_t)y * m.width + x];
            counts[v]++;
            if (v != synth_label_at(s, (x + 0.5) * ds, (y + 0.5) * ds)) bad++;
        }
    CHECK_INT(bad, 0);
    CHECK(counts[0] > 0);
    for (int k = 1; k <= 3; k++) CHECK(counts[k] > 0); /* small regions: every class present */

    char path[512];
    snprintf(path, sizeof path, "%s/t.geojson", tmpdir);
    CHECK_INT(synth_geojson_write(s, &m, path), 0);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    CHECK(root != NULL);
    if (!root) return;
    CHECK_STR(json_string_value(json_object_get(root, "type")), "FeatureCollection");
    json_t *features = json_object_get(root, "features");
    CHECK(json_array_size(features) > 3);
    size_t i;
    json_t *f;
    int shape_ok = 1;
    json_array_foreach(features, i, f) {
        json_t *props = json_object_get(f, "properties"), *cls = json_object_get(props, "classification");
        const char *gt = json_string_value(json_object_get(json_object_get(f, "geometry"), "type"));
        shape_ok &= !strcmp(json_string_value(json_object_get(f, "type")), "Feature");
        shape_ok &= gt && !strcmp(gt, "Polygon");
        shape_ok &= !strcmp(json_string_value(json_object_get(props, "objectType")), "annotation");
        shape_ok &= json_array_size(json_object_get(cls, "color")) == 3;
        json_t *outer = json_array_get(json_object_get(json_object_get(f, "geometry"), "coordinates"), 0);
        json_t *first = json_array_get(outer, 0), *last = json_array_get(outer, json_array_size(outer) - 1);
        shape_ok &= json_equal(first, last); /* closed rings */
    }
    CHECK(shape_ok);
    /* polygons agree with the mask at every mask pixel centre (level-0 coordinates) */
    int disagree = 0;
    for (int y = 0; y < m.height; y += 1)
        for (int x = 0; x < m.width; x += 3) {
            double px = (x + 0.5) * ds, py = (y + 0.5) * ds;
            int v = m.data[(size_t)y * m.width + x];
            for (int k = 0; k < 3; k++)
                if (inside_class(features, p.names[k], px, py) != (v == k + 1)) disagree++;
        }
    CHECK_INT(disagree, 0);
    json_decref(root);

    /* pixels tell the same story: glass is bright unless pen or dust lies on it; tissue is not */
    synth_mask am;
    CHECK_INT(synth_artifact_mask_make(s, ds, &am), 0);
    int npen = 0, ndust = 0;
    for (size_t k = 0; k < (size_t)am.width * am.height; k++) npen += am.data[k] == 1, ndust += am.data[k] == 2;
    CHECK(npen > 100);
    CHECK(ndust > 0);
    uint8_t *img = render(s, 0, 0, p.width, p.height);
    int glass_n = 0, glass_bright = 0, tis_n = 0, tis_dark = 0, art_agree = 0;
    for (int y = 2; y < m.height - 2; y++)
        for (int x = 2; x < m.width - 2; x++) {
            int v = m.data[(size_t)y * m.width + x], same = 1;
            for (int dy = -2; dy <= 2; dy++) /* away from boundaries */
                for (int dx = -2; dx <= 2; dx++) same &= m.data[(size_t)(y + dy) * m.width + x + dx] == v;
            if (!same) continue;
            const uint8_t *px = img + ((size_t)(y * ds + ds / 2) * p.width + x * ds + ds / 2) * 3;
            int bright = px[0] > 225 && px[1] > 225 && px[2] > 225;
            if (v == 0) glass_n++, glass_bright += bright, art_agree += bright == (am.data[(size_t)y * am.width + x] == 0);
            else tis_n++, tis_dark += !bright;
        }
    fprintf(stderr, "  glass %d (%d bright, %d agree with the artifact mask), tissue %d (%d not bright)\n", glass_n,
            glass_bright, art_agree, tis_n, tis_dark);
    CHECK(glass_n > 1000 && tis_n > 1000);
    CHECK(glass_bright > 0.9 * glass_n); /* the rest: pen strokes and dust */
    CHECK(art_agree > 0.99 * glass_n);   /* ... where the artifact mask says so */
    synth_mask_free(&am);
    CHECK(tis_dark > 0.85 * tis_n);       /* the rest: pale gaps */
    free(img);
    synth_mask_free(&m);
    synth_slide_free(s);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/magpie_test_synth_%d", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd)) TEST_FATAL("cannot create %s", tmpdir);
    RUN(test_params);
    RUN(test_render_pure);
    RUN(test_tiff_tags);
    RUN(test_class_mean_colour);
    RUN(test_class_texture_10x);
    RUN(test_truth_agrees);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_done();
}
