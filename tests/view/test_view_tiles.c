/* tests/view/test_view_tiles.c — magpie view's tiles against their sources, over HTTP:
 *   test_view_tiles PORT ID SLIDE [INFER_DIR | -]   (MAGPIE_VIEW_QUICK=1: fewer tiles, for big slides)
 * The Deep Zoom XML gives the slide's size; every tile of a spread of levels and positions
 * decodes (PNG) to exactly the pixels (real slides: see MAGPIE_VIEW_TOLERANT below) of the
 * tiler's patch read of the same region, computed here from the Deep Zoom rule on its own;
 * JPEG tiles are within JPEG's error of them; tiles outside the pyramid are 404. With
 * INFER_DIR (prediction.json + heatmap.tif of that slide), the heatmap tile pixel over each
 * cell's centre has heatmap.tif's colour for that cell, and is clear where heatmap.tif's
 * alpha is 0. */
#include <jansson.h>
#include <math.h>
#include <vips/vips.h>

#include "common/error.h"
#include "tests/test.h"
#include "tests/view/http_png.h"
#include "tiler/tiler.h"

/* the expected tile: the Deep Zoom rule, then the tiler's read of that square */
static uint8_t *expected(tiler_slide *s, tiler_reader *r, int max, int L, int64_t c, int64_t row, int *tw, int *th)
{
    int sh = max - L;
    int64_t lw = (s->width + (1LL << sh) - 1) >> sh, lh = (s->height + (1LL << sh) - 1) >> sh;
    int64_t x0 = c * 254 - (c > 0), y0 = row * 254 - (row > 0);
    int64_t x1 = (c + 1) * 254 + 1, y1 = (row + 1) * 254 + 1;
    if (x1 > lw) x1 = lw;
    if (y1 > lh) y1 = lh;
    *tw = (int)(x1 - x0);
    *th = (int)(y1 - y0);
    int n = *tw > *th ? *tw : *th;
    double scale = ldexp(1, sh);
    tiler_patch_geom g;
    tiler_patch_geom_make(s, scale, n * scale, n, &g);
    if (g.wl > 4096) return NULL; /* served from elsewhere (see view/tiles.c) */
    uint8_t *sq = malloc((size_t)n * n * 3), *out = malloc((size_t)*tw * *th * 3);
    char err[300];
    if (tiler_read_patch(r, &g, llround(x0 * scale), llround(y0 * scale), sq, err, sizeof err)) {
        fprintf(stderr, "read: %s\n", err);
        free(sq);
        free(out);
        return NULL;
    }
    for (int j = 0; j < *th; j++) memcpy(out + (size_t)j * *tw * 3, sq + (size_t)j * n * 3, (size_t)*tw * 3);
    free(sq);
    return out;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: test_view_tiles PORT ID SLIDE [INFER_DIR]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int id = atoi(argv[2]);
    if (tiler_global_init(argv[0])) return 2;
    tiler_slide s;
    if (tiler_slide_open(argv[3], &s)) {
        fprintf(stderr, "%s\n", mp_err());
        return 2;
    }
    tiler_reader *r = tiler_reader_open(&s);
    char path[512];
    unsigned char *body;
    size_t len;

    t_case = "dzi";
    snprintf(path, sizeof path, "/s/%d/slide.dzi", id);
    CHECK_INT(http_get(port, path, &body, &len, NULL), 200);
    long long W = -1, H = -1;
    const char *sz = strstr((char *)body, "<Size");
    if (sz) sscanf(sz, "<Size Width=\"%lld\" Height=\"%lld\"", &W, &H);
    CHECK_INT(W, s.width);
    CHECK_INT(H, s.height);
    CHECK(strstr((char *)body, "TileSize=\"254\"") && strstr((char *)body, "Overlap=\"1\"") &&
          strstr((char *)body, "Format=\"jpeg\"") && strstr((char *)body, "http://schemas.microsoft.com/deepzoom/2008"));
    free(body);

    int max = 0;
    while ((1LL << max) < (s.width > s.height ? s.width : s.height)) max++;
    int quick = getenv("MAGPIE_VIEW_QUICK") != NULL;
    int tolerant = getenv("MAGPIE_VIEW_TOLERANT") != NULL;
    int levels[] = {max, max - 1, max - 2, max - 4, max - 6, 8, 0};
    if (quick) { /* the finest, a middle and the coarsest levels only */
        levels[1] = levels[2] = levels[4] = -1;
        levels[3] = max / 2;
    }
    int tiles = 0;
    for (size_t li = 0; li < sizeof levels / sizeof *levels; li++) {
        int L = levels[li];
        if (L < 0 || L > max) continue;
        int sh = max - L;
        int64_t nc = (((s.width + (1LL << sh) - 1) >> sh) + 253) / 254, nr = (((s.height + (1LL << sh) - 1) >> sh) + 253) / 254;
        int64_t cols[] = {0, nc / 2, nc - 1}, rows[] = {0, nr / 3, nr - 1};
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                if (quick && a != b) continue;
                char cs[64];
                snprintf(cs, sizeof cs, "level %d tile %lld_%lld", L, (long long)cols[a], (long long)rows[b]);
                t_case = cs;
                int tw, th;
                uint8_t *want = expected(&s, r, max, L, cols[a], rows[b], &tw, &th);
                if (!want) continue;
                int w, h, bands;
                snprintf(path, sizeof path, "/s/%d/slide_files/%d/%lld_%lld.png", id, L, (long long)cols[a],
                         (long long)rows[b]);
                CHECK_INT(http_get(port, path, &body, &len, NULL), 200);
                uint8_t *png = image_decode(body, len, &w, &h, &bands);
                free(body);
                CHECK(png != NULL);
                if (png) {
                    CHECK_INT(w, tw);
                    CHECK_INT(h, th);
                    CHECK_INT(bands, 3);
                    if (w == tw && h == th && bands == 3) {
                        /* Equal bytes on every machine this was built on. A CI host (AVX2, ASan
                         * build) once saw values off by one on the real generic TIFF only (the
                         * 1x1 Deep Zoom tile, and about half the values of a 16x-reduced one), as
                         * if its JPEG tiles decoded differently in the two processes; not
                         * reproduced here. So the real slides (MAGPIE_VIEW_TOLERANT=1, set by
                         * view_http.sh) print any difference with its size and fail only past
                         * decoder rounding (max 4, mean 1: a wrong region or scale on tissue
                         * moves values by tens); synthetic slides must be equal bytes. */
                        size_t diff = 0;
                        int dmax = 0;
                        double dsum = 0;
                        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
                            int d = abs((int)png[i] - want[i]);
                            diff += d != 0;
                            dsum += d;
                            if (d > dmax) dmax = d;
                        }
                        if (diff)
                            fprintf(stderr, "NOTE %s: %zu of %d values differ, max %d, mean %.4f\n", t_case, diff,
                                    w * h * 3, dmax, dsum / ((double)w * h * 3));
                        if (tolerant) {
                            CHECK(dmax <= 4);
                            CHECK_NEAR(dsum / ((double)w * h * 3), 0, 1.0);
                        } else {
                            CHECK_INT(diff, 0);
                        }
                    }
                }
                snprintf(path, sizeof path, "/s/%d/slide_files/%d/%lld_%lld.jpeg", id, L, (long long)cols[a],
                         (long long)rows[b]);
                CHECK_INT(http_get(port, path, &body, &len, NULL), 200);
                uint8_t *jpg = image_decode(body, len, &w, &h, &bands);
                free(body);
                CHECK(jpg && w == tw && h == th && bands == 3);
                if (jpg && w == tw && h == th && bands == 3) {
                    double sum = 0;
                    for (size_t i = 0; i < (size_t)w * h * 3; i++) sum += abs((int)jpg[i] - want[i]);
                    /* JPEG quality 85 measures 3-7 mean error on textured tissue; a wrong region or
                     * scale gives tens */
                    CHECK_NEAR(sum / ((double)w * h * 3), 0, 8.0);
                }
                g_free(png);
                g_free(jpg);
                free(want);
                tiles++;
            }
    }
    t_case = "tiles checked";
    CHECK(tiles >= (quick ? 7 : 20));
    t_case = "outside the pyramid";
    snprintf(path, sizeof path, "/s/%d/slide_files/%d/0_0.png", id, max + 1);
    CHECK_INT(http_get(port, path, &body, &len, NULL), 404);
    free(body);
    snprintf(path, sizeof path, "/s/%d/slide_files/%d/%d_0.jpeg", id, max, (int)((s.width + 253) / 254));
    CHECK_INT(http_get(port, path, &body, &len, NULL), 404);
    free(body);

    if (argc > 4 && strcmp(argv[4], "-")) { /* the heatmap layer against infer's own heatmap.tif */
        t_case = "heatmap";
        char pj[600], ht[600];
        snprintf(pj, sizeof pj, "%s/prediction.json", argv[4]);
        snprintf(ht, sizeof ht, "%s/heatmap.tif", argv[4]);
        json_error_t je;
        json_t *j = json_load_file(pj, 0, &je), *g = json_object_get(j, "grid");
        int nx = json_integer_value(json_object_get(g, "width")), ny = json_integer_value(json_object_get(g, "height"));
        double cell0 = json_number_value(json_object_get(g, "cell_level0_px"));
        double ox = json_number_value(json_object_get(g, "origin_x")), oy = json_number_value(json_object_get(g, "origin_y"));
        int klass = json_integer_value(json_object_get(json_object_get(j, "params"), "class"));
        json_decref(j);
        VipsImage *hm = vips_image_new_from_file(ht, NULL);
        CHECK(hm != NULL && nx > 0 && ny > 0);
        size_t n;
        uint8_t *hp = hm ? vips_image_write_to_memory(hm, &n) : NULL;
        int hw = hm ? hm->Xsize : 0;
        int coloured = 0, clear = 0;
        for (int cj = 0; hp && cj < ny; cj++)
            for (int ci = 0; ci < nx; ci++) {
                double X = ox + (ci + 0.5) * cell0, Y = oy + (cj + 0.5) * cell0;
                if (X >= s.width || Y >= s.height) continue;
                int64_t col = (int64_t)X / 254, row = (int64_t)Y / 254;
                snprintf(path, sizeof path, "/s/%d/heat/%d_files/%d/%lld_%lld.png", id, klass, max, (long long)col,
                         (long long)row);
                int st = http_get(port, path, &body, &len, NULL);
                CHECK_INT(st, 200);
                int w, h, bands;
                uint8_t *px = st == 200 ? image_decode(body, len, &w, &h, &bands) : NULL;
                free(body);
                if (!px || bands != 4) {
                    CHECK(px && bands == 4);
                    g_free(px);
                    continue;
                }
                int x = (int)((int64_t)X - (col * 254 - (col > 0))), y = (int)((int64_t)Y - (row * 254 - (row > 0)));
                const uint8_t *got = px + ((size_t)y * w + x) * 4, *want = hp + ((size_t)cj * hw + ci) * 4;
                if (want[3] == 0) {
                    CHECK_INT(got[3], 0);
                    clear++;
                } else {
                    CHECK_INT(got[3], 255);
                    /* probability.tif stores round(255 p): within a step of the map's slope */
                    for (int k = 0; k < 3; k++) CHECK_NEAR(got[k], want[k], 3);
                    coloured++;
                }
                g_free(px);
            }
        fprintf(stderr, "heatmap: %d cells coloured, %d clear, checked against %s\n", coloured, clear, ht);
        CHECK(coloured > 0 && clear > 0);
        g_free(hp);
        if (hm) g_object_unref(hm);
    }
    tiler_reader_close(r);
    tiler_slide_close(&s);
    fprintf(stderr, "%d tiles checked, %d checks, %d failed\n", tiles, t_checks, t_fail);
    return t_fail ? 1 : 0;
}
