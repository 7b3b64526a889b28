/* tests/tiler/test_tiler_unit.c — the tiler's pure pieces: MPP from TIFF rationals and units,
 * plausibility, level choice with tolerance, Otsu, grid geometry, per-mag sizes, tissue mask
 * (brightfield, pen, holes, empty, fluorescence), QC scores, fingerprint, DICOM sniffing. */
#include "tests/test.h"

#include <stdint.h>
#include <unistd.h>

#include "common/error.h"
#include "tiler/tiler.h"

static char dir[64];

TEST(mpp_from_resolution)
{
    double m = 0;
    CHECK_INT(tiler_mpp_from_resolution(20040.08, 3, &m), 0); /* px/cm, the intended CMU-1 value */
    CHECK_NEAR(m, 0.499, 1e-6);
    CHECK_INT(tiler_mpp_from_resolution(2004008, 3, &m), 0); /* the real file's error: 100x off */
    CHECK_NEAR(m, 0.00499, 1e-8);
    CHECK(!tiler_mpp_plausible(m));
    CHECK_INT(tiler_mpp_from_resolution(50800, 2, &m), 0); /* px/inch */
    CHECK_NEAR(m, 0.5, 1e-12);
    CHECK_INT(tiler_mpp_from_resolution(4000, 1, &m), -1); /* RESUNIT_NONE: no physical size */
    CHECK_INT(tiler_mpp_from_resolution(0, 3, &m), -1);
    CHECK_INT(tiler_mpp_from_resolution(-5, 2, &m), -1);
    CHECK(tiler_mpp_plausible(0.05));
    CHECK(tiler_mpp_plausible(20));
    CHECK(!tiler_mpp_plausible(0.0499));
    CHECK(!tiler_mpp_plausible(25400));
}

TEST(level_choice)
{
    const double ds[] = {1, 2.0005, 4.0003, 8.0011, 16.004, 32.01};
    CHECK_INT(tiler_choose_level(ds, 6, 4, 0.01), 2);      /* 4.0003 counts as 4 */
    CHECK_INT(tiler_choose_level(ds, 6, 3.99, 0.01), 2);   /* within 1% */
    CHECK_INT(tiler_choose_level(ds, 6, 3.9, 0.01), 1);    /* 4.0003 would be too coarse */
    CHECK_INT(tiler_choose_level(ds, 6, 0.5, 0.01), 0);    /* finer than level 0: level 0 */
    CHECK_INT(tiler_choose_level(ds, 6, 1000, 0.01), 5);
    CHECK_INT(tiler_choose_level(ds, 6, 31.9, 0.01), 5);
    CHECK_INT(tiler_choose_level(ds, 6, 31.0, 0.01), 4);
    const double one[] = {1};
    CHECK_INT(tiler_choose_level(one, 1, 8, 0.01), 0);
}

TEST(otsu)
{
    uint64_t h[256] = {0};
    h[50] = 100;
    h[200] = 100;
    int t = tiler_otsu(h);
    CHECK(t >= 50 && t < 200);
    /* Two normal-ish modes at 30 and 170 with unequal weights: threshold lies between. */
    memset(h, 0, sizeof h);
    for (int i = -10; i <= 10; i++) {
        h[30 + i] = (uint64_t)(1000 * exp(-i * i / 20.0));
        h[170 + i] = (uint64_t)(300 * exp(-i * i / 20.0));
    }
    t = tiler_otsu(h);
    CHECK_INT(t, 40); /* first of the tied empty bins after the low mode */
    /* Hand-computed: bins 0 (x2) and 10 (x2) and 11 (x1): best split is t = 0..9 -> 0 first. */
    memset(h, 0, sizeof h);
    h[0] = 2;
    h[10] = 2;
    h[11] = 1;
    CHECK_INT(tiler_otsu(h), 0);
    memset(h, 0, sizeof h);
    h[7] = 10;
    CHECK_INT(tiler_otsu(h), 0); /* one value: no split */
}

TEST(grid_geometry)
{
    tiler_grid g;
    CHECK_INT(tiler_grid_make(10000, 8000, 0.25, 10, 224, 0, &g), 0);
    CHECK_NEAR(g.size0, 896, 1e-9);
    CHECK_NEAR(g.stride0, 896, 1e-9);
    CHECK_INT(g.nx, 11); /* floor((10000-896)/896)+1 */
    CHECK_INT(g.ny, 8);
    CHECK_INT(tiler_grid_make(10000, 8000, 0.25, 10, 224, 112, &g), 0);
    CHECK_NEAR(g.stride0, 448, 1e-9);
    CHECK_INT(g.nx, 21);
    CHECK_INT(tiler_grid_pos(&g, 3), 1344);
    /* 20x top on a 0.499 µm/px slide: non-integer steps, positions rounded */
    CHECK_INT(tiler_grid_make(2220, 2967, 0.499, 20, 224, 0, &g), 0);
    CHECK_NEAR(g.size0, 224 * 0.5 / 0.499, 1e-9);
    CHECK_INT(g.nx, 9);
    CHECK_INT(tiler_grid_pos(&g, 5), 1122); /* 5 * 224.4489 = 1122.24 */
    /* exact fit counts, a slide smaller than a patch has none */
    CHECK_INT(tiler_grid_make(896 * 3, 896, 0.25, 10, 224, 0, &g), 0);
    CHECK_INT(g.nx, 3);
    CHECK_INT(g.ny, 1);
    CHECK_INT(tiler_grid_make(500, 500, 0.25, 10, 224, 0, &g), 0);
    CHECK_INT(g.nx, 0);
    CHECK_INT(tiler_mag_size(224, 1.25, 10), 28);
    CHECK_INT(tiler_mag_size(224, 10, 10), 224);
    CHECK_INT(tiler_mag_size(224, 5, 20), 56);
    CHECK_INT(tiler_mag_size(256, 2.5, 10), 64);
    CHECK_INT(tiler_mag_size(224, 0.1, 40), 1);
}

/* RGBA canvas helpers */
static uint8_t *canvas(int w, int h, int r, int g, int b)
{
    uint8_t *p = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        p[4 * i] = (uint8_t)r;
        p[4 * i + 1] = (uint8_t)g;
        p[4 * i + 2] = (uint8_t)b;
        p[4 * i + 3] = 255;
    }
    return p;
}

static void rect(uint8_t *p, int w, int x0, int y0, int x1, int y1, int r, int g, int b)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 4;
            q[0] = (uint8_t)r;
            q[1] = (uint8_t)g;
            q[2] = (uint8_t)b;
        }
}

TEST(mask_brightfield_pen_holes)
{
    int w = 200, h = 100;
    uint8_t *p = canvas(w, h, 238, 236, 240);
    rect(p, w, 20, 20, 100, 80, 220, 140, 185);   /* tissue, 80x60 */
    rect(p, w, 55, 45, 60, 50, 238, 236, 240);    /* a 5x5 hole (25 px = 0.0016 mm² at 8 µm) */
    rect(p, w, 120, 30, 180, 40, 40, 150, 70);    /* green pen stroke on glass */
    rect(p, w, 150, 60, 152, 62, 220, 140, 185);  /* a 2x2 speck: smaller than 0.01 mm² */
    tiler_mask m;
    CHECK_INT(tiler_mask_compute(p, w, h, 8.0, &m), 0);
    m.ds = 16; /* pretend level-0 is 0.5 µm/px */
    CHECK_INT(m.dark, 0);
    CHECK_INT(m.tissue[50 * w + 57], 255);  /* hole filled */
    CHECK_INT(m.tissue[61 * w + 151], 0);   /* speck removed */
    CHECK_INT(m.tissue[35 * w + 150], 0);   /* pen is not tissue */
    CHECK_INT(m.pen[35 * w + 150], 1);
    CHECK_INT(m.tissue[5 * w + 5], 0);      /* glass */
    CHECK_NEAR(m.fraction, 80.0 * 60 / (w * h), 0.01);
    /* coverage of level-0 squares: fully inside tissue, half, none */
    CHECK_NEAR(tiler_mask_cover(&m, m.tissue, 255, 30 * 16, 30 * 16, 20 * 16), 1.0, 1e-9);
    CHECK_NEAR(tiler_mask_cover(&m, m.tissue, 255, 90 * 16, 30 * 16, 20 * 16), 0.5, 1e-9);
    CHECK_NEAR(tiler_mask_cover(&m, m.tissue, 255, 150 * 16, 70 * 16, 10 * 16), 0.0, 1e-9);
    CHECK(tiler_mask_cover(&m, m.pen, 1, 130 * 16, 30 * 16, 10 * 16) > 0.9);
    void *png = NULL;
    size_t len = 0;
    CHECK_INT(tiler_mask_png(&m, &png, &len), 0);
    CHECK(len > 8 && !memcmp(png, "\x89PNG", 4));
    tiler_free(png);
    tiler_mask_free(&m);
    free(p);
}

TEST(mask_empty_and_dark)
{
    int w = 120, h = 90;
    uint8_t *p = canvas(w, h, 238, 236, 240);
    for (int i = 0; i < w * h; i++) p[4 * i] = (uint8_t)(236 + i % 5); /* noise only */
    tiler_mask m;
    tiler_mask_compute(p, w, h, 8.0, &m);
    CHECK_NEAR(m.fraction, 0, 0); /* blank glass: empty, never noise */
    tiler_mask_free(&m);
    free(p);
    /* Fluorescence: black background, a region of sparse bright dots (nuclei). */
    p = canvas(w, h, 2, 2, 4);
    for (int y = 20; y < 70; y++)
        for (int x = 20; x < 100; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 4;
            q[2] = (x * 7 + y * 13) % 5 == 0 ? 200 : 25;
        }
    tiler_mask_compute(p, w, h, 8.0, &m);
    CHECK_INT(m.dark, 1);
    CHECK_INT(m.tissue[45 * w + 60], 255);
    CHECK_INT(m.tissue[5 * w + 5], 0);
    CHECK_NEAR(m.fraction, 80.0 * 50 / (w * h), 0.05);
    tiler_mask_free(&m);
    /* Transparent pixels (outside the scanned area) are never tissue. */
    for (int i = 0; i < w * h; i++) p[4 * i + 3] = 0;
    tiler_mask_compute(p, w, h, 8.0, &m);
    CHECK_NEAR(m.fraction, 0, 0);
    tiler_mask_free(&m);
    free(p);
}

/* Bright-field or fluorescence (tiler.h's rule), on the cases that could fool a simpler one. */
TEST(slide_kind)
{
    int w = 100, h = 100;
    tiler_kind_info k;
    tiler_mask m;
    /* glass with pink tissue */
    uint8_t *p = canvas(w, h, 238, 236, 240);
    rect(p, w, 10, 10, 60, 90, 220, 140, 185);
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.kind, TILER_BRIGHTFIELD);
    CHECK_INT(k.background, 248); /* max(238, 236, 240) */
    CHECK_NEAR(k.dark, 0, 0);
    free(p);
    /* bright-field with no glass at all: dense dark-purple tissue everywhere, some ink */
    p = canvas(w, h, 110, 70, 150);
    rect(p, w, 0, 0, 100, 25, 20, 20, 30); /* 25% black ink */
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.kind, TILER_BRIGHTFIELD);
    CHECK_INT(k.background, 152);
    CHECK_NEAR(k.dark, 0.25, 1e-12);
    free(p);
    /* bright-field with a black border over 40% that still has more glass (45%) */
    p = canvas(w, h, 240, 240, 240);
    rect(p, w, 0, 0, 100, 40, 0, 0, 0);
    rect(p, w, 20, 60, 80, 85, 220, 140, 185);
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.kind, TILER_BRIGHTFIELD);
    CHECK_NEAR(k.dark, 0.40, 1e-12);
    free(p);
    /* fluorescence: black glass, a region of sparse bright nuclei */
    p = canvas(w, h, 3, 3, 6);
    for (int y = 30; y < 70; y++)
        for (int x = 20; x < 80; x++) p[((size_t)y * w + x) * 4 + 2] = (x * 7 + y * 13) % 5 == 0 ? 210 : 30;
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.kind, TILER_FLUORESCENCE);
    CHECK_INT(k.background, 8);
    CHECK(k.dark > 0.9);
    /* the mask decides its mode by the same rule */
    CHECK_INT(tiler_mask_compute(p, w, h, 8.0, &m), 0);
    CHECK_INT(m.dark, 1);
    CHECK_INT(m.kind.kind, TILER_FLUORESCENCE);
    tiler_mask_free(&m);
    free(p);
    /* fluorescence whose tissue fills the field: dim gaps (40) between nuclei (200), no glass */
    p = canvas(w, h, 5, 10, 40);
    for (int i = 0; i < w * h; i++)
        if (i % 3 == 0) p[4 * i + 2] = 200;
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.kind, TILER_FLUORESCENCE);
    CHECK_INT(k.background, 40);
    free(p);
    /* black is the commonest band (28%) but under the 30% share: the rest is spread over four
     * bright bands of 18% each */
    p = canvas(w, h, 0, 0, 0);
    for (int b = 0; b < 4; b++) rect(p, w, 0, 28 + 18 * b, 100, 46 + 18 * b, 100 + 40 * b, 90, 90);
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.background, 8);
    CHECK_NEAR(k.dark, 0.28, 1e-12);
    CHECK_INT(k.kind, TILER_BRIGHTFIELD);
    /* nothing scanned (alpha 0 everywhere): bright-field, nothing to refuse */
    for (int i = 0; i < w * h; i++) p[4 * i + 3] = 0;
    tiler_kind_classify(p, w, h, &k);
    CHECK_INT(k.kind, TILER_BRIGHTFIELD);
    CHECK_INT(k.background, 255);
    free(p);
    CHECK_STR(tiler_kind_name(TILER_BRIGHTFIELD), "brightfield");
    CHECK_STR(tiler_kind_name(TILER_FLUORESCENCE), "fluorescence");
    k.kind = TILER_FLUORESCENCE, k.background = 8, k.dark = 0.814;
    char d[160];
    tiler_kind_describe(&k, d, sizeof d);
    CHECK_STR(d, "dark background: commonest brightness 8/255, 81% of it below 64");
}

TEST(qc_scores)
{
    int n = 32;
    uint8_t *rgb = malloc((size_t)n * n * 3);
    memset(rgb, 100, (size_t)n * n * 3);
    double blur, bright;
    tiler_qc(rgb, n, n, &blur, &bright);
    CHECK_NEAR(blur, 0, 1e-9);
    CHECK_NEAR(bright, 100, 1e-9);
    for (int i = 0; i < n * n; i++) memset(rgb + 3 * i, ((i % n) + (i / n)) % 2 ? 200 : 0, 3);
    tiler_qc(rgb, n, n, &blur, &bright);
    CHECK_NEAR(bright, 100, 1e-9);
    CHECK_NEAR(blur, 800.0 * 800.0, 1e-6); /* |laplacian| = 4*200 everywhere inside, mean 0 */
    free(rgb);
}

TEST(fingerprint_and_dicom)
{
    char a[128], fa[64], fb[64];
    snprintf(a, sizeof a, "%s/f.bin", dir);
    FILE *f = fopen(a, "wb");
    for (int i = 0; i < 300000; i++) fputc(i * 31 % 251, f);
    fclose(f);
    CHECK_INT(tiler_fingerprint(a, fa), 0);
    CHECK_INT(strncmp(fa, "xxh3:", 5), 0);
    CHECK_INT(tiler_fingerprint(a, fb), 0);
    CHECK_STR(fa, fb);
    f = fopen(a, "r+b");
    fseek(f, 150000, SEEK_SET);
    fputc(7, f);
    fclose(f);
    CHECK_INT(tiler_fingerprint(a, fb), 0);
    CHECK(strcmp(fa, fb) != 0);
    CHECK_INT(tiler_is_dicom(a), 0);
    f = fopen(a, "wb");
    for (int i = 0; i < 128; i++) fputc(0, f);
    fputs("DICM\x02\x00\x00\x00", f);
    fclose(f);
    CHECK_INT(tiler_is_dicom(a), 1);
    CHECK_INT(tiler_fingerprint("/nonexistent/x", fa), -1);
}

TEST(area_resample)
{
    /* 4x4 -> 2x2: plain 2x2 means */
    uint8_t in[4 * 4 * 3], *out;
    for (int i = 0; i < 16; i++) memset(in + 3 * i, i * 10, 3);
    out = tiler_area_resample(in, 4, 2);
    CHECK_INT(out[0], (0 + 10 + 40 + 50) / 4);
    CHECK_INT(out[3], (20 + 30 + 60 + 70) / 4);
    CHECK_INT(out[6], (80 + 90 + 120 + 130) / 4);
    tiler_free(out);
    /* 3 -> 2 along a ramp: each output covers 1.5 inputs, the middle one shared half and half */
    uint8_t r[3 * 3 * 3];
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) memset(r + (y * 3 + x) * 3, x * 90, 3);
    out = tiler_area_resample(r, 3, 2);
    CHECK_INT(out[0], 30);  /* (0 * 1 + 90 * 0.5) / 1.5 */
    CHECK_INT(out[3], 150); /* (90 * 0.5 + 180 * 1) / 1.5 */
    CHECK_INT(out[6 + 0], 30);
    tiler_free(out);
    /* a constant stays constant at any factor */
    uint8_t *c = malloc(449 * 449 * 3);
    memset(c, 77, 449 * 449 * 3);
    out = tiler_area_resample(c, 449, 28);
    int bad = 0;
    for (int i = 0; i < 28 * 28 * 3; i++) bad += out[i] != 77;
    CHECK_INT(bad, 0);
    tiler_free(out);
    free(c);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/mp_tiler_unit.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    if (tiler_global_init("test")) return 1;
    RUN(mpp_from_resolution);
    RUN(level_choice);
    RUN(otsu);
    RUN(grid_geometry);
    RUN(mask_brightfield_pen_holes);
    RUN(mask_empty_and_dark);
    RUN(slide_kind);
    RUN(qc_scores);
    RUN(area_resample);
    RUN(fingerprint_and_dicom);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return test_done();
}
