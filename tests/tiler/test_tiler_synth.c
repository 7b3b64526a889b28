/* tests/tiler/test_tiler_synth.c — end to end on a `magpie synth` slide, against its ground
 * truth: the stored tissue mask overlaps the true tissue (IoU), pen ink and dust are rejected,
 * every patch lies on true tissue, and both magnifications are present at their sizes. */
#include "tests/test.h"

#include <sqlite3.h>
#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "tiler/tiler.h"

static char dir[64];

static VipsImage *load_png(const char *path)
{
    VipsImage *im = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    return im;
}

static uint8_t *pixels(VipsImage *im, int *w, int *h)
{
    size_t len;
    *w = im->Xsize;
    *h = im->Ysize;
    return vips_image_write_to_memory(im, &len);
}

TEST(synthetic_slide_against_ground_truth)
{
    const char *bin = getenv("MAGPIE_BIN");
    char cmd[512], slide[256], gt[256], art[256], dbp[256];
    snprintf(cmd, sizeof cmd, "%s synth %s/s --slides 1 --width 6144 --height 4096 --seed 3 --pen 1 --dust 4 >/dev/null 2>&1",
             bin, dir);
    int rc = system(cmd);
    if (rc != 0) FAIL_CASE("magpie synth failed (status %d): %s", rc, cmd);
    snprintf(slide, sizeof slide, "%s/s/synth_000.tiff", dir);
    snprintf(gt, sizeof gt, "%s/s/synth_000_mask.png", dir);
    snprintf(art, sizeof art, "%s/s/synth_000_artifacts.png", dir);
    snprintf(dbp, sizeof dbp, "%s/d.db", dir);
    mp_db *db = db_open(dbp, DB_OPEN_CREATE);
    tiler_opts o;
    tiler_opts_default(&o);
    o.progress = MP_PROGRESS_NONE;
    o.size = 112; /* smaller patches: more of them on a small slide */
    tiler_result r;
    CHECK_INT(tiler_tile_slide(db, slide, &o, &r), 0);
    CHECK(r.n_patches > 30);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images WHERE (mag = 10 AND width = 112) OR (mag = 1.25 AND width = 14)"),
              2 * r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE mpp_source = 'tiff.XResolution' AND abs(mpp_x - 0.25) < 1e-6"), 1);

    /* our mask, from the dataset */
    sqlite3_stmt *st = db_prepare(db, "SELECT mask, mask_downsample FROM slides");
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    VipsImage *mine = vips_image_new_from_buffer(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), "", NULL);
    double mds = sqlite3_column_double(st, 1);
    CHECK(mine != NULL);
    VipsImage *truth = load_png(gt), *arts = load_png(art);
    CHECK(truth && arts);
    if (!mine || !truth || !arts) return;
    /* bring ours onto the ground-truth grid when they differ (nearest neighbour) */
    if (mine->Xsize != truth->Xsize || mine->Ysize != truth->Ysize) {
        VipsImage *t;
        vips_resize(mine, &t, (double)truth->Xsize / mine->Xsize, "vscale", (double)truth->Ysize / mine->Ysize,
                    "kernel", VIPS_KERNEL_NEAREST, NULL);
        g_object_unref(mine);
        mine = t;
    }
    int w, h, w2, h2, w3, h3;
    uint8_t *m = pixels(mine, &w, &h), *g = pixels(truth, &w2, &h2), *a = pixels(arts, &w3, &h3);
    CHECK(w == w2 && h == h2 && w == w3 && h == h3);
    int64_t inter = 0, uni = 0, art_px = 0, art_hit = 0;
    for (int i = 0; i < w * h; i++) {
        int mt = m[i] > 127, gtt = g[i] > 0;
        inter += mt && gtt;
        uni += mt || gtt;
        if (a[i]) {
            art_px++;
            art_hit += mt && !gtt; /* ink or dust on glass counted as tissue */
        }
    }
    double iou = uni ? (double)inter / uni : 0;
    fprintf(stderr, "mask IoU vs ground truth %.3f; artifact pixels taken as tissue %lld of %lld\n", iou,
            (long long)art_hit, (long long)art_px);
    CHECK(iou >= 0.85);
    CHECK(art_px > 0);
    CHECK(art_hit <= art_px / 5); /* edge pixels of specks next to tissue may be closed in */

    /* every patch centre lies on true tissue */
    sqlite3_finalize(st);
    st = db_prepare(db, "SELECT x0 + size0 / 2, y0 + size0 / 2 FROM patches");
    int off = 0, n = 0;
    double gds = 6144.0 / w2; /* level-0 pixels per ground-truth pixel */
    while (sqlite3_step(st) == SQLITE_ROW) {
        int gx = (int)(sqlite3_column_double(st, 0) / gds), gy = (int)(sqlite3_column_double(st, 1) / gds);
        n++;
        if (gx < 0 || gy < 0 || gx >= w2 || gy >= h2 || !g[gy * w2 + gx]) off++;
    }
    CHECK(n == r.n_patches);
    CHECK(off <= n / 50);
    (void)mds;
    sqlite3_finalize(st);
    g_free(m);
    g_free(g);
    g_free(a);
    g_object_unref(mine);
    g_object_unref(truth);
    g_object_unref(arts);
    db_close(db);
}

int main(void)
{
    if (!getenv("MAGPIE_BIN")) TEST_FATAL("MAGPIE_BIN not set (run through meson test)");
    snprintf(dir, sizeof dir, "/tmp/mp_tiler_synth.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    if (tiler_global_init("test")) return 1;
    RUN(synthetic_slide_against_ground_truth);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return test_done();
}
