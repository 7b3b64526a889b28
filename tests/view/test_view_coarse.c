/* tests/view/test_view_coarse.c — Deep Zoom levels coarser than any read the server makes:
 *   test_view_coarse PORT ID SLIDE MAX_READ   (the server runs with MAGPIE_VIEW_MAX_READ=MAX_READ)
 * Every level of the slide, at its corners and middle: a tile whose read square would be wider
 * than MAX_READ comes from the thumbnail (X-Magpie-Tile: thumbnail), has the tile's exact size,
 * and is close to the tiler's read of the same region done here without the limit; any other
 * tile has no such header and is exactly that read. */
#include <math.h>
#include <vips/vips.h>

#include "common/error.h"
#include "tests/test.h"
#include "tests/view/http_png.h"
#include "tiler/tiler.h"
#include "view/view.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: test_view_coarse PORT ID SLIDE MAX_READ\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int id = atoi(argv[2]), max_read = atoi(argv[4]);
    if (tiler_global_init(argv[0])) return 2;
    tiler_slide s;
    if (tiler_slide_open(argv[3], &s)) {
        fprintf(stderr, "%s\n", mp_err());
        return 2;
    }
    tiler_reader *r = tiler_reader_open(&s);
    int max = view_dz_max_level(s.width, s.height);
    int coarse = 0, fine = 0;
    double worst = 0;
    for (int L = max; L >= 0; L--) {
        int sh = max - L;
        double scale = ldexp(1, sh);
        int64_t lw = (s.width + (1LL << sh) - 1) >> sh, lh = (s.height + (1LL << sh) - 1) >> sh;
        int64_t nc = (lw + VIEW_TILE - 1) / VIEW_TILE, nr = (lh + VIEW_TILE - 1) / VIEW_TILE;
        int64_t cols[] = {0, nc / 2, nc - 1}, rows[] = {0, nr / 2, nr - 1};
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                if ((a && cols[a] == cols[a - 1]) || (b && rows[b] == rows[b - 1])) continue;
                char cs[80];
                snprintf(cs, sizeof cs, "level %d tile %lld_%lld", L, (long long)cols[a], (long long)rows[b]);
                t_case = cs;
                int64_t x, y;
                int tw, th;
                CHECK_INT(view_dz_tile_rect(s.width, s.height, L, cols[a], rows[b], &x, &y, &tw, &th), 0);
                int n = tw > th ? tw : th;
                tiler_patch_geom g;
                tiler_patch_geom_make(&s, scale, n * scale, n, &g);
                int want_thumb = g.wl > max_read;
                /* the reference: the tiler's read of the tile's square, whatever its size */
                uint8_t *sq = malloc((size_t)n * n * 3);
                char err[300];
                if (tiler_read_patch(r, &g, llround(x * scale), llround(y * scale), sq, err, sizeof err)) {
                    fprintf(stderr, "read: %s\n", err);
                    CHECK(0);
                    free(sq);
                    continue;
                }
                char path[256];
                unsigned char *body;
                size_t len;
                int thumb;
                snprintf(path, sizeof path, "/s/%d/slide_files/%d/%lld_%lld.png", id, L, (long long)cols[a],
                         (long long)rows[b]);
                CHECK_INT(http_get(port, path, &body, &len, &thumb), 200);
                CHECK_INT(thumb, want_thumb);
                int w, h, bands;
                uint8_t *px = image_decode(body, len, &w, &h, &bands);
                CHECK(px && w == tw && h == th && bands == 3);
                if (px && w == tw && h == th && bands == 3) {
                    double sum = 0;
                    size_t diff = 0;
                    for (int j = 0; j < th; j++)
                        for (int i = 0; i < tw * 3; i++) {
                            int d = abs((int)px[(size_t)j * tw * 3 + i] - sq[(size_t)j * n * 3 + i]);
                            sum += d;
                            diff += d != 0;
                        }
                    double mad = sum / ((double)tw * th * 3);
                    if (want_thumb) {
                        /* Two area averages (the thumbnail's boxes, then the tile's) against one:
                         * what differs is a second rounding (under 0.5 a value, unbiased) and, as
                         * 3001 px do not split into 750 equal boxes, box edges up to a level-0 px
                         * off. Measured: at most 0.46 (the finest such level), under 0.1 from level
                         * 7 down. The same tiles drawn one tile pixel off measure 0.9 to 8.5. */
                        CHECK_NEAR(mad, 0, 0.75);
                        if (mad > worst) worst = mad;
                        coarse++;
                    } else {
                        CHECK_INT(diff, 0);
                        fine++;
                    }
                }
                g_free(px);
                free(body);
                free(sq);
                snprintf(path, sizeof path, "/s/%d/slide_files/%d/%lld_%lld.jpeg", id, L, (long long)cols[a],
                         (long long)rows[b]);
                CHECK_INT(http_get(port, path, &body, &len, &thumb), 200);
                CHECK_INT(thumb, want_thumb);
                free(body);
            }
    }
    t_case = "levels";
    /* the limit leaves fine levels read exactly and coarse ones from the thumbnail */
    CHECK(coarse >= 5 && fine >= 5);
    tiler_reader_close(r);
    tiler_slide_close(&s);
    fprintf(stderr, "%d coarse tiles (worst mean abs diff %.2f), %d exact tiles, %d checks, %d failed\n", coarse, worst,
            fine, t_checks, t_fail);
    return t_fail ? 1 : 0;
}
