/* tests/infer/test_same_pixels.c — train/serve skew: the pixels infer feeds a model for a square
 * of a slide equal, byte for byte, the dataset's image of the same square. Each slide is tiled
 * by `magpie tile --format png` (lossless, so the stored image is the tiler's exact pixels) at
 * magnifications with and without an exact pyramid level; for sampled patches the infer side
 * (infer_src_open + infer_src_geom + the patch reader, as infer/run.c) reads the patch's
 * level-0 square at each magnification. Infer anchors its own grid at the bounds origin, so the
 * test asks for the dataset patch's square rather than an infer cell. Real slides come from
 * ../shared/data (skipped with the reason when absent); a synthetic 40x slide always runs. */
#include "tests/test.h"

#include <png.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "infer/infer.h"
#include "infer/internal.h"

typedef struct {
    const char *name, *path;
    double mpp;       /* --mpp (0 = the file's) */
    const char *mags; /* --mags */
    int size;
    const char *why;  /* what the case covers */
} slide_case;

static int decode_png(const void *data, size_t len, int side, uint8_t *out)
{
    png_image im = {.version = PNG_IMAGE_VERSION};
    if (!png_image_begin_read_from_memory(&im, data, len)) return -1;
    im.format = PNG_FORMAT_RGB;
    if ((int)im.width != side || (int)im.height != side) {
        png_image_free(&im);
        return -1;
    }
    return png_image_finish_read(&im, NULL, out, 0, NULL) ? 0 : -1;
}

/* Tile the slide, then compare every 3rd patch at every magnification. */
static void compare(const slide_case *sc, int idx)
{
    char db[256], cmd[2048];
    snprintf(db, sizeof db, "%s", tmp(idx == 0 ? "a.db" : idx == 1 ? "b.db" : idx == 2 ? "c.db" : idx == 3 ? "d.db" : "e.db"));
    char mpp[64] = "";
    if (sc->mpp > 0) snprintf(mpp, sizeof mpp, "--mpp %g", sc->mpp);
    /* --allow-fluorescence: the DAPI NDPI is here for its format (the reader's pixels), not its stain */
    snprintf(cmd, sizeof cmd,
             "'%s' tile '%s' '%s' --mags %s --size %d --format png --min-tissue 0.05 %s -j 2 -q --allow-fluorescence",
             getenv("MAGPIE_BIN"), db, sc->path, sc->mags, sc->size, mpp);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "  %s: magpie tile failed\n", sc->name);
        return;
    }
    infer_src src;
    CHECK_INT(infer_src_open(sc->path, sc->mpp, &src), 0);
    if (src.s.osr == NULL) return;
    tiler_reader *rd = tiler_reader_open(&src.s);
    mp_db *d = db_open(db, DB_OPEN_READONLY);
    sqlite3_stmt *q = db_prepare(d, "SELECT p.x0, p.y0, p.size0, i.mag, i.width, i.level, i.scale, i.data "
                                    "FROM patches p JOIN images i ON i.patch_id = p.id WHERE p.id % 3 = 1 "
                                    "ORDER BY p.id, i.mag");
    int n = 0, same = 0, resampled = 0, levels = 0;
    uint8_t *want = NULL, *got = NULL;
    while (q && sqlite3_step(q) == SQLITE_ROW) {
        int64_t x0 = sqlite3_column_int64(q, 0), y0 = sqlite3_column_int64(q, 1);
        double size0 = sqlite3_column_double(q, 2), mag = sqlite3_column_double(q, 3);
        int side = sqlite3_column_int(q, 4), level = sqlite3_column_int(q, 5);
        double scale = sqlite3_column_double(q, 6);
        want = realloc(want, (size_t)side * side * 3);
        got = realloc(got, (size_t)side * side * 3);
        if (decode_png(sqlite3_column_blob(q, 7), (size_t)sqlite3_column_bytes(q, 7), side, want)) {
            CHECK(0);
            continue;
        }
        tiler_patch_geom g;
        infer_src_geom(&src, mag, size0, side, &g);
        char err[512];
        n++;
        if (g.level != level || g.scale != scale) {
            fprintf(stderr, "  %s %gx: infer reads level %d scale %g, the dataset level %d scale %g\n", sc->name, mag,
                    g.level, g.scale, level, scale);
            continue;
        }
        if (tiler_read_patch(rd, &g, x0, y0, got, err, sizeof err)) {
            fprintf(stderr, "  %s: %s\n", sc->name, err);
            continue;
        }
        int ok = !memcmp(got, want, (size_t)side * side * 3);
        same += ok;
        resampled += g.wl != g.target;
        levels |= 1 << g.level;
        if (!ok && n - same <= 3) {
            int worst = 0;
            for (size_t i = 0; i < (size_t)side * side * 3; i++) {
                int dlt = abs((int)got[i] - (int)want[i]);
                worst = dlt > worst ? dlt : worst;
            }
            fprintf(stderr, "  %s: patch at (%lld,%lld) %gx differs by up to %d\n", sc->name, (long long)x0,
                    (long long)y0, mag, worst);
        }
    }
    fprintf(stderr, "  %s (%s): %d images compared (%d resampled, level mask 0x%x), %d identical\n", sc->name, sc->why,
            n, resampled, levels, same);
    CHECK(n >= 4);
    CHECK_INT(same, n);
    sqlite3_finalize(q);
    db_close(d);
    free(want);
    free(got);
    tiler_reader_close(rd);
    infer_src_close(&src);
}

int main(void)
{
    if (!getenv("MAGPIE_BIN")) TEST_SKIP("MAGPIE_BIN is not set");
    if (t_tmpdir("samepx")) TEST_SKIP("cannot create a temp dir");
    if (infer_global_init("test")) TEST_SKIP("libvips: %s", mp_err());
    char cmd[1024], synth[256];
    snprintf(synth, sizeof synth, "%s", tmp("synth/synth_000.tiff"));
    snprintf(cmd, sizeof cmd, "'%s' synth '%s' --slides 1 --width 4096 --height 3072 --mpp 0.25 -q", getenv("MAGPIE_BIN"),
             tmp("synth"));
    t_case = "synthetic 40x";
    CHECK_INT(system(cmd), 0);
    /* 10x reads level 2 as it is; 6x and 3x have no level of their own (area average of levels 2, 3) */
    slide_case s = {"synthetic 40x", synth, 0, "10,6,3", 224, "exact level and two in between"};
    compare(&s, 0);
    fprintf(stderr, "ok   synthetic 40x\n");

    const char *data = getenv("MAGPIE_SHARED_DATA");
    char svs[512], gtif[512], ndpi[512], tcga[512];
    snprintf(svs, sizeof svs, "%s/slides/aperio-jpeg-cmu1-small-region/CMU-1-Small-Region.svs", data ? data : ".");
    snprintf(gtif, sizeof gtif, "%s/slides/generic-tiff-jpeg-cmu1/CMU-1-Small-Region.jpeg.tiff", data ? data : ".");
    snprintf(ndpi, sizeof ndpi, "%s/slides/hamamatsu-ndpi-dapi/test3-DAPI-2-387.ndpi", data ? data : ".");
    snprintf(tcga, sizeof tcga, "%s/slides/aperio-j2k-tcga-cr-7395/tcga-cr-7395-01a-01-ts1.svs", data ? data : ".");
    slide_case real[] = {
        {"CMU-1-Small-Region.svs", svs, 0, "10,2.5", 112, "0.499 µm/px: every magnification resampled"},
        {"CMU-1-Small-Region.jpeg.tiff", gtif, 0.499, "10,2.5", 112, "direct TIFF path"},
        {"test3-DAPI-2-387.ndpi", ndpi, 0, "10,3", 112, "NDPI, 0.228 µm/px, 7 levels"},
        {"tcga-cr-7395-01a-01-ts1.svs", tcga, 0.25, "10,5", 112, "J2K, level downsample 2.0005"},
    };
    for (int i = 0; i < 4; i++) {
        t_case = real[i].name;
        if (access(real[i].path, R_OK)) {
            fprintf(stderr, "SKIP %s: %s is absent (../shared/data)\n", real[i].name, real[i].path);
            continue;
        }
        int before = t_fail;
        compare(&real[i], i + 1);
        fprintf(stderr, "%s %s\n", t_fail == before ? "ok  " : "FAIL", real[i].name);
    }
    t_rmdir();
    return test_done();
}
