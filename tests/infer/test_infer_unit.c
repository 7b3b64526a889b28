/* tests/infer/test_infer_unit.c — the pieces of infer/ with exact answers: cell <-> level-0
 * geometry (stride, bounds offset), heatmap.tif read back with libtiff (tiles, halving levels,
 * resolution and position tags, values), GeoJSON parsed with jansson against the raster. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <vips/vips.h>
#include <unistd.h>

#include "common/error.h"
#include "infer/infer.h"
#include "tests/test.h"

static char tmpdir[256];

TEST(grid_geometry)
{
    infer_grid g;
    /* 10x model on a 40x slide: 224 model px = 896 level-0 px; stride 112 -> 448 */
    CHECK_INT(infer_grid_make(0, 0, 10000, 5000, 0.25, 10, 224, 112, &g), 0);
    CHECK_NEAR(g.cell0, 448, 1e-9);
    CHECK_NEAR(g.patch0, 896, 1e-9);
    CHECK_INT(g.nx, 23); /* ceil(10000/448) */
    CHECK_INT(g.ny, 12); /* ceil(5000/448) */
    double x, y;
    infer_grid_cell_origin(&g, 3, 2, &x, &y);
    CHECK_NEAR(x, 3 * 448, 1e-9);
    CHECK_NEAR(y, 2 * 448, 1e-9);
    int64_t px, py;
    infer_grid_patch_origin(&g, 3, 2, &px, &py);
    /* the patch is centred on the cell: centre = (3.5*448, 2.5*448) */
    CHECK_INT(px, 3 * 448 + 224 - 448);
    CHECK_INT(py, 2 * 448 + 224 - 448);
    CHECK_NEAR(px + g.patch0 / 2, (3 + 0.5) * g.cell0, 1e-9);
    int i, j;
    CHECK_INT(infer_grid_cell_at(&g, 3 * 448 + 0.5, 2 * 448 + 447.9, &i, &j), 0);
    CHECK_INT(i, 3);
    CHECK_INT(j, 2);
    CHECK_INT(infer_grid_cell_at(&g, -0.1, 10, &i, &j), -1);
    CHECK_INT(infer_grid_cell_at(&g, 23 * 448 + 1, 10, &i, &j), -1);
    /* every cell round-trips through its centre */
    int bad = 0;
    for (int jj = 0; jj < g.ny; jj++)
        for (int ii = 0; ii < g.nx; ii++) {
            infer_grid_cell_origin(&g, ii, jj, &x, &y);
            if (infer_grid_cell_at(&g, x + g.cell0 / 2, y + g.cell0 / 2, &i, &j) || i != ii || j != jj) bad++;
        }
    CHECK_INT(bad, 0);

    /* stride 0 = input size; 1.25x at 0.5 µm/px: 28 px * 16 = 448 level-0 px */
    CHECK_INT(infer_grid_make(0, 0, 4480, 4481, 0.5, 1.25, 28, 0, &g), 0);
    CHECK_NEAR(g.cell0, 448, 1e-9);
    CHECK_INT(g.nx, 10);
    CHECK_INT(g.ny, 11);
}

TEST(grid_bounds_offset)
{
    infer_grid g;
    /* MRXS-like: the scanned area starts at (1234, 5678) in OpenSlide's frame */
    CHECK_INT(infer_grid_make(1234, 5678, 3000, 2000, 0.25, 10, 224, 0, &g), 0);
    CHECK_NEAR(g.ox, 1234, 0);
    CHECK_NEAR(g.oy, 5678, 0);
    double x, y;
    infer_grid_cell_origin(&g, 0, 0, &x, &y);
    CHECK_NEAR(x, 1234, 0);
    CHECK_NEAR(y, 5678, 0);
    int64_t px, py;
    infer_grid_patch_origin(&g, 1, 1, &px, &py);
    CHECK_INT(px, 1234 + 896);
    CHECK_INT(py, 5678 + 896);
    int i, j;
    CHECK_INT(infer_grid_cell_at(&g, 1233.9, 6000, &i, &j), -1); /* left of the bounds */
    CHECK_INT(infer_grid_cell_at(&g, 1234 + 896 * 2 + 1, 5678 + 1, &i, &j), 0);
    CHECK_INT(i, 2);
    CHECK_INT(j, 0);
}

TEST(grid_errors)
{
    infer_grid g;
    CHECK_INT(infer_grid_make(0, 0, 100, 100, 0, 10, 224, 0, &g), -1);
    CHECK_STR(mp_err(), "grid: MPP must be positive (got 0)");
    CHECK_INT(infer_grid_make(0, 0, 0, 100, 0.25, 10, 224, 0, &g), -1);
    CHECK_STR(mp_err(), "grid: empty slide (0x100)");
    CHECK_INT(infer_grid_make(0, 0, 1000000, 1000000, 0.25, 10, 224, 1, &g), -1);
    CHECK_CONTAINS(mp_err(), "too many; use a larger --stride");
}

TEST(tiff_levels)
{
    CHECK_INT(infer_tiff_levels(100, 50, 128), 1);
    CHECK_INT(infer_tiff_levels(129, 50, 128), 2);
    CHECK_INT(infer_tiff_levels(300, 200, 64), 4); /* 300 150 75 38 */
    CHECK_INT(infer_tiff_levels(300, 200, 16), 6); /* ... 19 10 */
}

static void quiet_tiff(const char *m, const char *f, va_list ap) { (void)m, (void)f, (void)ap; }

TEST(tiff_readback)
{
    const int W = 150, H = 70, K = 3, T = 32;
    float *p = malloc(sizeof(float) * W * H * K);
    uint8_t *v = malloc(W * H);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float a = (float)x / (W - 1), b = (float)y / (H - 1) * (1 - a);
            float *q = p + ((size_t)y * W + x) * K;
            q[0] = a, q[1] = b, q[2] = 1 - a - b;
            v[y * W + x] = !(x < 5 && y < 5); /* a corner never evaluated */
        }
    char path[512];
    snprintf(path, sizeof path, "%s/h.tif", tmpdir);
    double mpp = 0.25, cell0 = 448;
    infer_tiff_spec s = {.nx = W, .ny = H, .nclasses = K, .prob = p, .valid = v, .mpp_x = mpp, .mpp_y = mpp,
                         .cell0 = cell0, .ox = 1234, .oy = 5678, .tile = T, .desc = "{\"x\":1}"};
    CHECK_INT(infer_tiff_write(path, &s), 0);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    CHECK(access(tmp, F_OK) != 0); /* no temporary left behind */

    TIFF *t = TIFFOpen(path, "r");
    CHECK(t != NULL);
    if (!t) return;
    int level = 0;
    uint32_t pw = 0, ph = 0;
    do {
        uint32_t w, h, tw, th, sub = 0;
        uint16_t spp, bps, fmt, unit;
        float xr, yr, xp = -1, yp = -1;
        TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
        CHECK(TIFFIsTiled(t));
        TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
        CHECK_INT(tw, T);
        CHECK_INT(th, T);
        TIFFGetFieldDefaulted(t, TIFFTAG_SUBFILETYPE, &sub);
        CHECK_INT(sub, level ? FILETYPE_REDUCEDIMAGE : 0);
        TIFFGetField(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
        TIFFGetField(t, TIFFTAG_BITSPERSAMPLE, &bps);
        TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
        CHECK_INT(spp, K);
        CHECK_INT(bps, 8);
        CHECK_INT(fmt, SAMPLEFORMAT_UINT);
        if (level == 0) {
            CHECK_INT(w, W);
            CHECK_INT(h, H);
        } else {
            CHECK_INT(w, (pw + 1) / 2); /* each level halves */
            CHECK_INT(h, (ph + 1) / 2);
        }
        TIFFGetField(t, TIFFTAG_RESOLUTIONUNIT, &unit);
        TIFFGetField(t, TIFFTAG_XRESOLUTION, &xr);
        TIFFGetField(t, TIFFTAG_YRESOLUTION, &yr);
        CHECK_INT(unit, RESUNIT_CENTIMETER);
        /* µm per heatmap pixel = mpp * cell0 * 2^level */
        CHECK_NEAR(1e4 / xr, mpp * cell0 * (1 << level), 1e-3);
        CHECK_NEAR(1e4 / yr, mpp * cell0 * (1 << level), 1e-3);
        TIFFGetField(t, TIFFTAG_XPOSITION, &xp);
        TIFFGetField(t, TIFFTAG_YPOSITION, &yp);
        CHECK_NEAR(xp * 1e4 / mpp, 1234, 0.05); /* bounds offset in level-0 px */
        CHECK_NEAR(yp * 1e4 / mpp, 5678, 0.05);
        if (level == 0) {
            char *d = NULL;
            CHECK(TIFFGetField(t, TIFFTAG_IMAGEDESCRIPTION, &d) && d && !strcmp(d, "{\"x\":1}"));
            /* every value back (one tile read per pixel: slow but small) */
            uint8_t *tile = malloc(TIFFTileSize(t));
            int bad = 0;
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++) {
                    TIFFReadTile(t, tile, x, y, 0, 0);
                    const uint8_t *px = tile + (((y % T) * T) + (x % T)) * K;
                    for (int k = 0; k < K; k++) {
                        int want = v[y * W + x] ? (int)lrintf(p[((size_t)y * W + x) * K + k] * 255) : 0;
                        if (px[k] != want) bad++;
                    }
                }
            CHECK_INT(bad, 0);
            free(tile);
        }
        if (level == 1) {
            /* reduced level: mean of the valid cells of each 2x2 block */
            uint8_t *tile = malloc(TIFFTileSize(t));
            TIFFReadTile(t, tile, 10, 10, 0, 0);
            int x = 10, y = 10;
            for (int k = 0; k < K; k++) {
                float m = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) m += p[((size_t)(2 * y + dy) * W + 2 * x + dx) * K + k] / 4;
                CHECK_NEAR(tile[((y % T) * T + x % T) * K + k], lrintf(m * 255), 1);
            }
            TIFFReadTile(t, tile, 0, 0, 0, 0);
            for (int k = 0; k < K; k++) CHECK_INT(tile[k], 0); /* the never-evaluated corner stays 0 */
            free(tile);
        }
        pw = w, ph = h;
        level++;
    } while (TIFFReadDirectory(t));
    CHECK_INT(level, infer_tiff_levels(W, H, T));
    CHECK_INT(level, 4); /* 150 75 38 19 */
    TIFFClose(t);

    /* float32: raw values */
    s.float32 = 1;
    CHECK_INT(infer_tiff_write(path, &s), 0);
    t = TIFFOpen(path, "r");
    CHECK(t != NULL);
    if (t) {
        uint16_t bps, fmt;
        TIFFGetField(t, TIFFTAG_BITSPERSAMPLE, &bps);
        TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
        CHECK_INT(bps, 32);
        CHECK_INT(fmt, SAMPLEFORMAT_IEEEFP);
        float *tile = malloc(TIFFTileSize(t));
        TIFFReadTile(t, tile, 40, 40, 0, 0);
        int x = 40, y = 40;
        for (int k = 0; k < K; k++) CHECK(tile[((y % T) * T + x % T) * K + k] == p[((size_t)y * W + x) * K + k]);
        free(tile);
        TIFFClose(t);
    }
    free(p);
    free(v);
}

TEST(tiff_unwritable)
{
    float p[4] = {0};
    uint8_t v[4] = {1, 1, 1, 1};
    infer_tiff_spec s = {.nx = 2, .ny = 2, .nclasses = 1, .prob = p, .valid = v, .mpp_x = 0.25, .mpp_y = 0.25,
                         .cell0 = 100};
    CHECK_INT(infer_tiff_write("/nonexistent-dir/h.tif", &s), -1);
    CHECK_STR(mp_err(), "/nonexistent-dir/h.tif: cannot create (No such file or directory)");
}

TEST(geojson_matches_raster)
{
    infer_grid g;
    CHECK_INT(infer_grid_make(500, 700, 4000, 3000, 0.5, 5, 32, 0, &g), 0); /* cell0 = 128 */
    CHECK_NEAR(g.cell0, 128, 1e-9);
    int n = g.nx * g.ny, K = 2;
    float *p = calloc((size_t)n * K, sizeof(float));
    uint8_t *v = calloc(n, 1);
    int above = 0;
    double sum = 0;
    for (int c = 0; c < n; c++) {
        int i = c % g.nx, j = c / g.nx;
        v[c] = (i + j) % 7 != 0;
        float a = (float)((i * 37 + j * 11) % 100) / 100.0f;
        p[c * K + 1] = a, p[c * K] = 1 - a;
        if (v[c] && a >= 0.5f) above++, sum += a;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/h.geojson", tmpdir);
    char *names[2] = {"Stroma", "Tumor"};
    CHECK_INT(infer_geojson_write(path, &g, p, v, K, names, 0.5), 0);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK(j != NULL);
    if (!j) return;
    CHECK_STR(json_string_value(json_object_get(j, "type")), "FeatureCollection");
    json_t *fs = json_object_get(j, "features");
    CHECK_INT(json_array_size(fs), 2);
    json_t *tum = NULL;
    size_t idx;
    json_t *f;
    json_array_foreach(fs, idx, f)
    {
        json_t *props = json_object_get(f, "properties");
        CHECK_STR(json_string_value(json_object_get(props, "objectType")), "annotation");
        const char *nm = json_string_value(json_object_get(json_object_get(props, "classification"), "name"));
        if (nm && !strcmp(nm, "Tumor")) tum = f;
    }
    CHECK(tum != NULL);
    if (tum) {
        json_t *props = json_object_get(tum, "properties");
        CHECK_INT(json_integer_value(json_object_get(json_object_get(props, "measurements"), "cells")), above);
        CHECK_NEAR(json_real_value(json_object_get(json_object_get(props, "measurements"), "mean_probability")),
                   sum / above, 1e-6);
        json_t *geom = json_object_get(tum, "geometry");
        CHECK_STR(json_string_value(json_object_get(geom, "type")), "MultiPolygon");
        /* rasterise the polygons back into cells: exactly the cells above threshold */
        uint8_t *hit = calloc(n, 1);
        json_t *poly;
        int badshape = 0;
        json_array_foreach(json_object_get(geom, "coordinates"), idx, poly)
        {
            json_t *ring = json_array_get(poly, 0);
            if (json_array_size(ring) != 5) badshape++;
            double x0 = json_number_value(json_array_get(json_array_get(ring, 0), 0));
            double y0 = json_number_value(json_array_get(json_array_get(ring, 0), 1));
            double x1 = json_number_value(json_array_get(json_array_get(ring, 2), 0));
            double y1 = json_number_value(json_array_get(json_array_get(ring, 2), 1));
            /* QuPath frame: relative to the bounds origin, on cell edges */
            if (fmod(x0, 128) || fmod(x1, 128) || y1 - y0 != 128) badshape++;
            for (double x = x0 + 64; x < x1; x += 128) {
                int c = (int)(y0 / 128) * g.nx + (int)(x / 128);
                if (c < 0 || c >= n) badshape++;
                else hit[c]++;
            }
        }
        CHECK_INT(badshape, 0);
        int diff = 0;
        for (int c = 0; c < n; c++) diff += hit[c] != (v[c] && p[c * K + 1] >= 0.5f);
        CHECK_INT(diff, 0);
        free(hit);
    }
    json_decref(j);
    free(p);
    free(v);
}

static double luma(const uint8_t c[3]) { return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]; }

TEST(colormap_ends)
{
    uint8_t a[3], b[3], c[3], m[3];
    /* viridis: dark purple to yellow, lightness rising all the way (readable in grey) */
    infer_colormap(INFER_CMAP_VIRIDIS, 0, a);
    infer_colormap(INFER_CMAP_VIRIDIS, 1, b);
    infer_colormap(INFER_CMAP_VIRIDIS, NAN, c);
    CHECK_INT(a[0], 68);
    CHECK_INT(a[1], 1);
    CHECK_INT(a[2], 84);
    CHECK_INT(b[0], 253);
    CHECK_INT(b[1], 231);
    CHECK_INT(b[2], 37);
    CHECK(memcmp(a, c, 3) == 0);
    int mono = 1;
    uint8_t prev[3];
    infer_colormap(INFER_CMAP_VIRIDIS, 0, prev);
    for (int i = 1; i <= 100; i++) {
        uint8_t q[3];
        infer_colormap(INFER_CMAP_VIRIDIS, i / 100.0f, q);
        mono &= luma(q) > luma(prev);
        memcpy(prev, q, 3);
    }
    CHECK(mono);
    /* diverging: blue below 0.5, grey at the decision, red above */
    infer_colormap(INFER_CMAP_DIVERGING, 0, a);
    infer_colormap(INFER_CMAP_DIVERGING, 0.5f, m);
    infer_colormap(INFER_CMAP_DIVERGING, 1, b);
    CHECK(a[2] > a[0] + 100);
    CHECK(b[0] > b[2] + 100);
    CHECK(m[0] == m[1] && m[1] == m[2]);
    CHECK_INT(infer_cmap_for(2), INFER_CMAP_DIVERGING);
    CHECK_INT(infer_cmap_for(3), INFER_CMAP_VIRIDIS);
    CHECK_INT(infer_cmap_for(1), INFER_CMAP_VIRIDIS);
}

/* heatmap.tif for viewers: RGB + unassociated alpha, the colour map of one class where
 * evaluated and transparent black elsewhere, at every level; libtiff's RGBA reader (what
 * OpenSlide and tiff2rgba use) returns the same pixels. */
TEST(tiff_rgba)
{
    const int W = 150, H = 70, K = 2, T = 32;
    float *p = malloc(sizeof(float) * W * H * K);
    uint8_t *v = malloc(W * H);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float a = (float)((x * 7 + y * 13) % 101) / 100.0f;
            p[((size_t)y * W + x) * K] = 1 - a, p[((size_t)y * W + x) * K + 1] = a;
            v[y * W + x] = (x / 9 + y / 5) % 4 != 0;
        }
    char path[512];
    snprintf(path, sizeof path, "%s/rgba.tif", tmpdir);
    infer_tiff_spec s = {.nx = W, .ny = H, .nclasses = K, .prob = p, .valid = v, .mpp_x = 0.5, .mpp_y = 0.5,
                         .cell0 = 64, .ox = 10, .oy = 20, .tile = T, .rgba = 1, .klass = 1,
                         .cmap = INFER_CMAP_DIVERGING};
    CHECK_INT(infer_tiff_write(path, &s), 0);
    TIFF *t = TIFFOpen(path, "r");
    CHECK(t != NULL);
    if (!t) return;
    uint16_t spp, bps, photo, nextra = 0, *extra = NULL, comp;
    TIFFGetField(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetField(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &photo);
    TIFFGetField(t, TIFFTAG_COMPRESSION, &comp);
    CHECK(TIFFGetField(t, TIFFTAG_EXTRASAMPLES, &nextra, &extra));
    CHECK_INT(spp, 4);
    CHECK_INT(bps, 8);
    CHECK_INT(photo, PHOTOMETRIC_RGB);
    CHECK_INT(comp, COMPRESSION_ADOBE_DEFLATE);
    CHECK_INT(nextra, 1);
    if (nextra == 1) CHECK_INT(extra[0], EXTRASAMPLE_UNASSALPHA);
    /* whole tiles, exact halvings: 150x70 in 32 px tiles, 4 levels -> 256x256, ..., 32x32 */
    uint32_t w0 = 0, h0 = 0;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w0);
    TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h0);
    CHECK_INT(infer_tiff_padded(W, 4, T), 256);
    CHECK_INT(w0, 256);
    CHECK_INT(h0, 256);
    uint8_t *tile = malloc(TIFFTileSize(t));
    uint32_t *argb = malloc(sizeof(uint32_t) * T * T);
    int bad = 0, bad_rgba = 0, n_clear = 0;
    int margin = 0;
    for (int ty = 0; ty < (int)h0; ty += T)
        for (int tx = 0; tx < (int)w0; tx += T) {
            CHECK(TIFFReadTile(t, tile, tx, ty, 0, 0) > 0);
            if (tx >= W || ty >= H) {
                for (int i = 0; i < T * T * 4; i++) margin += tile[i] != 0;
                continue;
            }
            /* TIFFReadRGBATile's raster is bottom-up within the tile */
            CHECK(TIFFReadRGBATile(t, tx, ty, argb));
            for (int y = ty; y < ty + T; y++)
                for (int x = tx; x < tx + T; x++) {
                    const uint8_t *px = tile + ((size_t)(y - ty) * T + (x - tx)) * 4;
                    uint8_t want[4] = {0, 0, 0, 0};
                    if (x >= W || y >= H) {
                        margin += memcmp(px, want, 4) != 0;
                    } else if (v[y * W + x]) {
                        infer_colormap(INFER_CMAP_DIVERGING, p[((size_t)y * W + x) * K + 1], want);
                        want[3] = 255;
                    } else {
                        n_clear++;
                    }
                    bad += memcmp(px, want, 4) != 0;
                    uint32_t q = argb[(size_t)(T - 1 - (y - ty)) * T + (x - tx)];
                    bad_rgba += TIFFGetR(q) != want[0] || TIFFGetG(q) != want[1] || TIFFGetB(q) != want[2] ||
                                TIFFGetA(q) != want[3];
                }
        }
    CHECK_INT(bad, 0);
    CHECK_INT(bad_rgba, 0);
    CHECK_INT(margin, 0); /* the padding is transparent black */
    CHECK(n_clear > 100);
    /* level 1: the colour of the mean probability of the valid cells of each 2x2 block */
    CHECK(TIFFReadDirectory(t));
    uint32_t w1 = 0;
    TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w1);
    CHECK_INT(w1, 128);
    CHECK(TIFFReadTile(t, tile, 0, 0, 0, 0) > 0);
    int lbad = 0;
    for (int y = 0; y < T; y++)
        for (int x = 0; x < T; x++) {
            float m = 0;
            int n = 0;
            for (int d = 0; d < 4; d++) {
                int sx = 2 * x + d % 2, sy = 2 * y + d / 2;
                if (v[sy * W + sx]) m += p[((size_t)sy * W + sx) * K + 1], n++;
            }
            uint8_t want[4] = {0, 0, 0, 0};
            if (n) infer_colormap(INFER_CMAP_DIVERGING, m / n, want), want[3] = 255;
            const uint8_t *px = tile + ((size_t)y * T + x) * 4;
            for (int c = 0; c < 4; c++) lbad += abs(px[c] - want[c]) > 1;
        }
    CHECK_INT(lbad, 0);
    free(tile);
    free(argb);
    TIFFClose(t);
    /* a class the raster does not have is refused */
    s.klass = 2;
    CHECK_INT(infer_tiff_write(path, &s), -1);
    CHECK_CONTAINS(mp_err(), "class 2 out of range");
    free(p);
    free(v);
}

/* overlay.png: the canvas the layout promises, the cells blended over the slide picture, the
 * colour bar in the map's exact colours, text set in the title and the panel, a scale bar. */
TEST(overlay_picture)
{
    infer_grid g;
    CHECK_INT(infer_grid_make(0, 0, 8000, 4000, 0.5, 5, 32, 0, &g), 0); /* cell0 128 -> 63 x 32 cells */
    const int K = 2, n = g.nx * g.ny;
    float *p = calloc((size_t)n * K, sizeof(float));
    uint8_t *v = calloc(n, 1);
    for (int c = 0; c < n; c++) {
        int i = c % g.nx, j = c / g.nx;
        p[c * K + 1] = (float)i / (g.nx - 1), p[c * K] = 1 - p[c * K + 1];
        v[c] = j % 5 != 0;
    }
    const int bw = 400, bh = 200;
    uint8_t *bg = malloc((size_t)bw * bh * 4);
    for (int i = 0; i < bw * bh; i++) bg[4 * i] = bg[4 * i + 1] = bg[4 * i + 2] = 200, bg[4 * i + 3] = 255;
    char path[512];
    snprintf(path, sizeof path, "%s/overlay.png", tmpdir);
    infer_overlay_spec os = {.bg = bg, .bgw = bw, .bgh = bh, .g = &g, .prob = p, .valid = v, .nclasses = K,
                             .klass = 1, .cmap = INFER_CMAP_DIVERGING, .mpp = 0.5, .size = 800, .opacity = 0.6,
                             .slide_name = "a&b <c>", .class_name = "Tumor", .call = "Tumor: mean 0.5 (p >= 0.5)",
                             .note = "note"};
    CHECK_INT(infer_overlay_write(path, &os), 0);
    infer_overlay_geom L;
    infer_overlay_layout(&os, &L);
    CHECK_INT(L.pic_w, 800);
    CHECK_INT(L.pic_h, 400);
    double um;
    int sbpx;
    CHECK_INT(infer_overlay_scalebar(5.0, 800, &um, &sbpx), 0); /* 4 mm wide: a fifth is 800 µm -> 500 */
    CHECK_NEAR(um, 500, 1e-9);
    CHECK_INT(sbpx, 100);
    VipsImage *im = vips_image_new_from_file(path, NULL);
    CHECK(im != NULL);
    if (!im) {
        fprintf(stderr, "%s\n", vips_error_buffer());
        return;
    }
    CHECK_INT(im->Xsize, L.canvas_w);
    CHECK_INT(im->Ysize, L.canvas_h);
    CHECK_INT(im->Bands, 3);
    size_t len = 0;
    uint8_t *px = vips_image_write_to_memory(im, &len);
    int CW = im->Xsize, CH = im->Ysize;
    g_object_unref(im);
    CHECK(px && len == (size_t)CW * CH * 3);
    if (!px || len != (size_t)CW * CH * 3) return;
#define AT(x, y) (px + ((size_t)(y) * CW + (x)) * 3)
    /* cells: 60 % of the map colour over the grey slide; rows of unevaluated cells stay grey */
    int bad = 0, checked = 0;
    for (int j = 0; j < g.ny; j++)
        for (int i = 0; i < g.nx; i++) {
            int x = (int)floor(12.8 * (i + 0.5)), y = (int)floor(12.8 * (j + 0.5));
            if (x >= L.pic_w || y >= L.pic_h - 60 || y < 8) continue; /* scale bar corner */
            if (x < 150 && y > L.pic_h - 60) continue;
            const uint8_t *q = AT(L.pic_x + x, L.pic_y + y);
            uint8_t cm[3] = {200, 200, 200};
            if (v[j * g.nx + i]) {
                infer_colormap(INFER_CMAP_DIVERGING, p[(j * g.nx + i) * K + 1], cm);
                for (int c = 0; c < 3; c++) cm[c] = (uint8_t)lrint(200 * 0.4 + cm[c] * 0.6);
            }
            for (int c = 0; c < 3; c++) bad += abs(q[c] - cm[c]) > 2;
            checked++;
        }
    CHECK(checked > 1000);
    CHECK_INT(bad, 0);
    /* colour bar: 1 at the top */
    int barbad = 0;
    for (int y = 2; y < L.bar_h - 2; y++) {
        uint8_t cm[3];
        infer_colormap(INFER_CMAP_DIVERGING, 1.0f - (y + 0.5f) / L.bar_h, cm);
        const uint8_t *q = AT(L.bar_x + L.bar_w / 2, L.bar_y + y);
        for (int c = 0; c < 3; c++) barbad += abs(q[c] - cm[c]) > 1;
    }
    CHECK_INT(barbad, 0);
    /* ink: the title row, the panel under the bar (labels, call), the scale bar's black bar */
    int title = 0, panel = 0, scale = 0;
    for (int y = 0; y < L.pic_y; y++)
        for (int x = 0; x < CW; x++) title += AT(x, y)[0] < 100;
    for (int y = L.bar_y + L.bar_h; y < CH; y++)
        for (int x = L.bar_x; x < CW; x++) panel += AT(x, y)[0] < 100;
    for (int y = L.pic_y + L.pic_h - 3 * L.margin; y < L.pic_y + L.pic_h; y++)
        for (int x = L.pic_x; x < L.pic_x + 3 * L.margin + sbpx; x++) {
            const uint8_t *q = AT(x, y);
            scale += q[0] < 30 && q[1] < 30 && q[2] < 30;
        }
    CHECK(title > 50);
    CHECK(panel > 200);
    CHECK(scale >= 100 * 4);
    g_free(px);
#undef AT
    /* an unwritable place: one line naming it */
    CHECK_INT(infer_overlay_write("/nonexistent-dir/o.png", &os), -1);
    CHECK_CONTAINS(mp_err(), "/nonexistent-dir/o.png");
    free(bg);
    free(p);
    free(v);
}

/* the definition, directly: every window against every cell, overlap areas in level-0 px */
static void average_brute(const infer_grid *g, const float *p, const uint8_t *v, int K, double *out)
{
    double hh = (g->patch0 - g->cell0) / 2;
    for (int j = 0; j < g->ny; j++)
        for (int i = 0; i < g->nx; i++) {
            double num[4] = {0}, den = 0;
            for (int b = 0; b < g->ny; b++)
                for (int a = 0; a < g->nx; a++) {
                    if (!v[b * g->nx + a]) continue;
                    double wx = fmin((i + 1) * g->cell0, a * g->cell0 - hh + g->patch0) - fmax(i * g->cell0, a * g->cell0 - hh);
                    double wy = fmin((j + 1) * g->cell0, b * g->cell0 - hh + g->patch0) - fmax(j * g->cell0, b * g->cell0 - hh);
                    if (wx <= 0 || wy <= 0) continue;
                    for (int k = 0; k < K; k++) num[k] += wx * wy * p[(b * g->nx + a) * K + k];
                    den += wx * wy;
                }
            for (int k = 0; k < K; k++) out[(j * g->nx + i) * K + k] = v[j * g->nx + i] ? num[k] / den : 0;
        }
}

TEST(overlap_average)
{
    /* mpp 1 at 10x: model px = level-0 px, so cell0 = stride and patch0 = size */
    const int K = 2;
    static const int cases[][2] = {{3, 1}, {2, 1}, {5, 2}, {4, 4}, {12, 5}}; /* size, stride */
    for (int t = 0; t < 5; t++) {
        infer_grid g;
        int size = cases[t][0], stride = cases[t][1];
        CHECK_INT(infer_grid_make(0, 0, 7 * stride, 5 * stride, 1.0, 10, size, stride, &g), 0);
        CHECK_INT(g.nx, 7);
        CHECK_INT(g.ny, 5);
        int n = g.nx * g.ny;
        float p[70], out[70];
        uint8_t v[35];
        double want[70];
        for (int c = 0; c < n; c++) {
            p[c * K] = (float)((c * 37) % 11) / 10.0f, p[c * K + 1] = 1 - p[c * K];
            v[c] = c != 9 && c != 10 && c != 30;
        }
        CHECK_INT(infer_grid_average(&g, p, v, K, out), 0);
        average_brute(&g, p, v, K, want);
        int bad = 0;
        for (int c = 0; c < n * K; c++) bad += fabs(out[c] - want[c]) > 1e-6;
        CHECK_INT(bad, 0);
    }
    /* by hand, patch 3 cells a side: cell (3, 2) is covered by the 3x3 windows around it, all
     * evaluated, so it is their plain mean; (2, 1) was not evaluated and stays empty */
    infer_grid g;
    CHECK_INT(infer_grid_make(0, 0, 7, 5, 1.0, 10, 3, 1, &g), 0);
    double w[8];
    CHECK_INT(infer_grid_kernel(&g, w, 8), 1);
    for (int d = 0; d < 3; d++) CHECK_NEAR(w[d], 1, 1e-12);
    float p[35], out[35];
    uint8_t v[35];
    for (int c = 0; c < 35; c++) p[c] = (float)c, v[c] = c != 9;
    CHECK_INT(infer_grid_average(&g, p, v, 1, out), 0);
    CHECK_NEAR(out[2 * 7 + 3], (10 + 11 + 16 + 17 + 18 + 23 + 24 + 25) / 8.0, 1e-5); /* 18 */
    CHECK_NEAR(out[9], 0, 0);
    /* patch 2 cells: half a cell of each neighbour's window, the own window whole */
    CHECK_INT(infer_grid_make(0, 0, 7, 5, 1.0, 10, 2, 1, &g), 0);
    CHECK_INT(infer_grid_kernel(&g, w, 8), 1);
    CHECK_NEAR(w[0], 0.5, 1e-12);
    CHECK_NEAR(w[1], 1, 1e-12);
    CHECK_NEAR(w[2], 0.5, 1e-12);
    /* stride = patch: every value kept bit for bit */
    CHECK_INT(infer_grid_make(0, 0, 28, 20, 1.0, 10, 4, 4, &g), 0);
    CHECK_INT(infer_grid_kernel(&g, w, 8), 0);
    CHECK_INT(infer_grid_average(&g, p, v, 1, out), 0);
    int same = 1;
    for (int c = 0; c < 35; c++) same &= v[c] ? out[c] == p[c] : out[c] == 0;
    CHECK(same);
    /* a patch spanning more cells than the kernel allows is refused */
    CHECK_INT(infer_grid_make(0, 0, 4000, 4000, 1.0, 10, 1000, 1, &g), 0);
    CHECK_INT(infer_grid_average(&g, p, v, 1, out), -1);
    CHECK_CONTAINS(mp_err(), "use a larger --stride");
}

TEST(slide_name)
{
    char b[64];
    infer_slide_name("/x/y/CMU-1.svs", b, sizeof b);
    CHECK_STR(b, "CMU-1");
    infer_slide_name("a.b.tiff", b, sizeof b);
    CHECK_STR(b, "a.b");
    infer_slide_name(".hidden", b, sizeof b);
    CHECK_STR(b, ".hidden");
}

/* The cascade's threshold rule on hand-made validation patches (2 classes). Student
 * confidences (max probability) and correctness, teacher always right:
 *   patch  label  student p(1)  conf  student right
 *     0      0       0.10       0.90      yes
 *     1      1       0.80       0.80      yes
 *     2      0       0.30       0.70      yes
 *     3      1       0.40       0.60      no
 *     4      0       0.55       0.55      no
 *     5      1       0.55       0.55      yes   (tied with 4: they go together)
 * Student: class 0 recall 2/3, class 1 2/3 -> 0.6667; teacher 1.0. Sending the 0.55 pair
 * fixes patch 4 (0.8333), then 0.60 fixes 3 (1.0 = the teacher's). */
TEST(cascade_choose)
{
    float ps[12] = {0.90f, 0.10f, 0.20f, 0.80f, 0.70f, 0.30f, 0.60f, 0.40f, 0.45f, 0.55f, 0.45f, 0.55f};
    float pt[12] = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1};
    int y[6] = {0, 1, 0, 1, 0, 1};
    infer_calibration c;
    CHECK_INT(infer_cascade_choose(ps, pt, y, 6, 2, 0.01, &c), 0);
    CHECK_INT(c.n, 6);
    CHECK_NEAR(c.bacc_student, 2.0 / 3, 1e-12);
    CHECK_NEAR(c.bacc_teacher, 1.0, 1e-12);
    CHECK_NEAR(c.bacc_cascade, 1.0, 1e-12);
    CHECK_NEAR(c.fraction, 3.0 / 6, 1e-12);
    CHECK_NEAR(c.threshold, 0.5 * (0.60 + 0.70), 1e-6); /* between the last sent and the next kept */
    /* a looser tolerance stops one step earlier: within 20 points of the teacher */
    CHECK_INT(infer_cascade_choose(ps, pt, y, 6, 2, 0.20, &c), 0);
    CHECK_NEAR(c.bacc_cascade, 5.0 / 6, 1e-12);
    CHECK_NEAR(c.fraction, 2.0 / 6, 1e-12);
    CHECK_NEAR(c.threshold, 0.5 * (0.55 + 0.60), 1e-6);
    /* the student already good enough: threshold 0, nothing sent */
    CHECK_INT(infer_cascade_choose(ps, pt, y, 6, 2, 0.50, &c), 0);
    CHECK_NEAR(c.threshold, 0, 0);
    CHECK_NEAR(c.fraction, 0, 0);
    /* a teacher that is only right where the student is most confident: everything is sent */
    float pw[12] = {1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0};
    CHECK_INT(infer_cascade_choose(ps, pw, y, 6, 2, 0.0, &c), 0);
    CHECK_NEAR(c.bacc_teacher, 2.0 / 6, 1e-12);
    CHECK(c.threshold == 0); /* the student (0.667) beats a 0.333 teacher already */
    /* the selection the run uses: valid cells under the threshold, in cell order */
    uint8_t valid[6] = {1, 1, 1, 0, 1, 1};
    int sel[6];
    CHECK_INT(infer_cascade_select(ps, valid, 6, 2, 0.75, sel), 3); /* 0.70, (0.60 not valid), 0.55, 0.55 */
    CHECK_INT(sel[0], 2);
    CHECK_INT(sel[1], 4);
    CHECK_INT(sel[2], 5);
    CHECK_INT(infer_cascade_select(ps, valid, 6, 2, 0, sel), 0);
    CHECK_INT(infer_cascade_select(ps, valid, 6, 2, INFER_CASCADE_ALL, sel), 5);
    /* bad input */
    int bad[6] = {0, 1, 2, 1, 0, 1};
    CHECK(infer_cascade_choose(ps, pt, bad, 6, 2, 0.01, &c) != 0);
    CHECK_STR(mp_err(), "calibration: label 2 outside 0..1");
    CHECK(infer_cascade_choose(ps, pt, y, 0, 2, 0.01, &c) != 0);
    CHECK_STR(mp_err(), "calibration: no labelled patches");
    /* calibration never looks at the test split, nor at train */
    CHECK(infer_cascade_calibrate(NULL, NULL, "data.db", "test", 0.01, &c) != 0);
    CHECK_STR(mp_err(), "data.db: the cascade threshold is chosen on the val split, never on test (the test figures "
                        "would no longer be held out)");
    CHECK(infer_cascade_calibrate(NULL, NULL, "data.db", "train", 0.01, &c) != 0);
    CHECK_STR(mp_err(), "data.db: the cascade threshold is chosen on the val split, not 'train' (the models were fit "
                        "on it: their confidence there is optimistic)");
}

int main(void)
{
    TIFFSetWarningHandler(quiet_tiff);
    TIFFSetErrorHandler(quiet_tiff);
    if (infer_global_init("test_infer_unit")) return 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mp_infer_unit_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(grid_geometry);
    RUN(grid_bounds_offset);
    RUN(grid_errors);
    RUN(tiff_levels);
    RUN(tiff_readback);
    RUN(tiff_unwritable);
    RUN(geojson_matches_raster);
    RUN(colormap_ends);
    RUN(tiff_rgba);
    RUN(overlay_picture);
    RUN(overlap_average);
    RUN(slide_name);
    RUN(cascade_choose);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 1;
    return test_done();
}
