/* tests/tiler/test_tiler_run.c — tiling into a dataset: every bad input with its exact one-line
 * error, unreadable cells recorded and skipped, skip / redo on fingerprint and parameters,
 * multi-magnification geometry, pixel agreement with OpenSlide (PSNR >= 30 dB), and the
 * direct TIFF reader against OpenSlide. */
#include "tests/test.h"

#include <openslide.h>
#include <sqlite3.h>
#include <tiffio.h>
#include <stdlib.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "tests/tiler/mkslide.h"
#include "tiler/tiler.h"

static tiler_opts opts(void)
{
    tiler_opts o;
    tiler_opts_default(&o);
    o.progress = MP_PROGRESS_NONE;
    o.jobs = 2;
    return o;
}

/* Tile and expect failure with exactly this message. */
static void expect_fail(mp_db *db, const char *path, const tiler_opts *o, const char *msg)
{
    tiler_result r;
    int rc = tiler_tile_slide(db, path, o, &r);
    CHECK_INT(rc, -1);
    char want[600];
    snprintf(want, sizeof want, "%s: %s", path, msg);
    CHECK_STR(mp_err(), want);
    CHECK_INT(r.outcome, TILER_FAILED);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

TEST(bad_inputs)
{
    mp_db *db = db_open(tmp("bad.db"), DB_OPEN_CREATE);
    tiler_opts o = opts();
    expect_fail(db, tmp("missing.svs"), &o, "no such file");
    write_file(tmp("empty.svs"), "", 0);
    expect_fail(db, tmp("empty.svs"), &o, "empty file (0 bytes)");
    const char *txt = "This is a text file, not a slide.\nSecond line.\n";
    write_file(tmp("text.svs"), txt, strlen(txt));
    expect_fail(db, tmp("text.svs"), &o, "not a slide OpenSlide can read (unrecognised format)");
    char dcm[300] = {0};
    memcpy(dcm + 128, "DICM\x02\x00\x00\x00UL", 10);
    write_file(tmp("fake.dcm"), dcm, sizeof dcm);
    expect_fail(db, tmp("fake.dcm"), &o, "DICOM is not supported by OpenSlide 3.4");

    /* A real pyramid cut short: directories or tiles beyond the end. */
    CHECK_INT(mkslide(tmp("whole.tif"), 3000, 2000, 0.5, 1, 0), 0);
    FILE *f = fopen(tmp("whole.tif"), "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n);
    CHECK_INT(fread(buf, 1, n, f), n);
    fclose(f);
    write_file(tmp("cut.tif"), buf, n * 9 / 10);
    expect_fail(db, tmp("cut.tif"), &o, "truncated TIFF (image data or directories beyond the end of the file)");
    write_file(tmp("cut2.tif"), buf, 4096);
    expect_fail(db, tmp("cut2.tif"), &o, "truncated or corrupt TIFF (its directory cannot be read)");
    free(buf);

    /* MPP: 25.4 px/inch (libvips writes 1 px/mm in inches) = 1000 µm/px, implausible; --mpp rescues. */
    CHECK_INT(mkslide(tmp("nores.tif"), 2000, 1500, 0.5, 2, MK_NO_RES), 0);
    expect_fail(db, tmp("nores.tif"), &o,
                "no usable MPP (TIFF XResolution gives 1e+03 µm/px, outside 0.05–20); pass --mpp");
    tiler_opts o2 = o;
    o2.mpp = 0.5;
    tiler_result r;
    CHECK_INT(tiler_tile_slide(db, tmp("nores.tif"), &o2, &r), 0);
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK(r.n_patches > 0);

    /* Upsampling is refused unless asked for. */
    tiler_opts o3 = o;
    o3.mags[0] = 40;
    o3.mags[1] = 10;
    expect_fail(db, tmp("whole.tif"), &o3,
                "40x needs 0.25 µm/px but level 0 is 0.5 µm/px (20x); lower --mags or pass --allow-upsample");
    o3.allow_upsample = 1;
    CHECK_INT(tiler_tile_slide(db, tmp("whole.tif"), &o3, &r), 0);

    /* Failures are recorded per slide with the reason. */
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'failed' AND error LIKE '%DICOM is not%'"), 1);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'failed'"), 5); /* empty, text, DICOM, 2 truncated */
    db_close(db);
}

TEST(tile_errors_are_recorded)
{
    CHECK_INT(mkslide(tmp("te.tif"), 3000, 2000, 0.5, 3, 0), 0);
    mp_db *db = db_open(tmp("te.db"), DB_OPEN_CREATE);
    tiler_opts o = opts();
    o.size = 64;
    o.min_tissue = 0; /* every cell, so the failing ones are certainly in the grid */
    tiler_result r0, r;
    CHECK_INT(tiler_tile_slide(db, tmp("te.tif"), &o, &r0), 0);
    setenv("MAGPIE_TILER_FAIL", "1,1;3,2", 1);
    o.quality = 89; /* new parameters: redone from scratch */
    CHECK_INT(tiler_tile_slide(db, tmp("te.tif"), &o, &r), 0);
    unsetenv("MAGPIE_TILER_FAIL");
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK_INT(r.n_errors, 2);
    CHECK_INT(r.n_patches, r0.n_patches - 2);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM tile_errors WHERE gx = 3 AND gy = 2"), 1);
    CHECK_INT(db_query_int(db, "SELECT n_bad_tiles FROM slides"), 2);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM patches WHERE gx = 1 AND gy = 1"), 0);
    /* Every cell failing fails the slide, with the first reason. */
    setenv("MAGPIE_TILER_FAIL", "0,0", 1);
    tiler_opts o2 = o;
    o2.size = 2000; /* 2000 px at 10x = 4000 level-0 px: no cell fits... */
    o2.mags[0] = 1.25;
    o2.mags[1] = 0.625;
    o2.size = 100; /* 100 px at 1.25x = 1600 level-0 px: 1 x 1 grid */
    CHECK_INT(tiler_tile_slide(db, tmp("te.tif"), &o2, &r), -1);
    CHECK_CONTAINS(mp_err(), "te.tif: no tile could be read (1 unreadable cells; first: (0,0) injected read failure");
    unsetenv("MAGPIE_TILER_FAIL");
    db_close(db);
}

/* A real bad tile: one JPEG tile of level 0 overwritten with zeros. Its cells go to tile_errors,
 * the rest of the slide is tiled, with and without the direct TIFF reader. */
TEST(corrupt_tile_in_file)
{
    CHECK_INT(mkslide(tmp("ct.tif"), 2048, 2048, 0.5, 9, 0), 0);
    TIFF *t = TIFFOpen(tmp("ct.tif"), "r");
    uint64_t *off = NULL;
    CHECK(t && TIFFGetField(t, TIFFTAG_TILEOFFSETS, &off));
    uint32_t idx = TIFFComputeTile(t, 1100, 1100, 0, 0); /* a tile inside the middle blob */
    uint64_t pos = off[idx];
    TIFFClose(t);
    FILE *f = fopen(tmp("ct.tif"), "r+b");
    fseek(f, (long)pos, SEEK_SET);
    char zeros[64] = {0};
    fwrite(zeros, 1, sizeof zeros, f);
    fclose(f);
    for (int pass = 0; pass < 2; pass++) {
        if (pass) setenv("MAGPIE_TILER_NO_FAST", "1", 1);
        mp_db *db = db_open(tmp(pass ? "ct2.db" : "ct1.db"), DB_OPEN_CREATE);
        tiler_opts o = opts();
        o.mags[0] = 20; /* 0.5 µm/px: level 0, where the bad tile is */
        o.mags[1] = 5;
        o.size = 128;
        o.min_tissue = 0;
        tiler_result r;
        CHECK_INT(tiler_tile_slide(db, tmp("ct.tif"), &o, &r), 0);
        CHECK_INT(r.outcome, TILER_DONE);
        CHECK(r.n_errors >= 1 && r.n_errors <= 4); /* the cells overlapping one 256 px tile */
        CHECK_INT(r.n_patches + r.n_errors, 16 * 16);
        CHECK_INT(db_query_int(db, "SELECT count(*) FROM tile_errors WHERE gx BETWEEN 7 AND 9 AND gy BETWEEN 7 AND 9"),
                  r.n_errors);
        CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'done'"), 1);
        db_close(db);
        unsetenv("MAGPIE_TILER_NO_FAST");
    }
}

/* Patches, images per mag and their geometry for the synthetic slide. */
TEST(multi_mag_geometry_skip_redo)
{
    CHECK_INT(mkslide(tmp("g.tif"), 4096, 3072, 0.25, 4, MK_PEN), 0);
    mp_db *db = db_open(tmp("g.db"), DB_OPEN_CREATE);
    tiler_opts o = opts();
    o.mags[0] = 20;
    o.mags[1] = 10;
    o.mags[2] = 5;
    o.mags[3] = 1.25;
    o.n_mags = 4;
    o.size = 128;
    tiler_result r;
    CHECK_INT(tiler_tile_slide(db, tmp("g.tif"), &o, &r), 0);
    CHECK(r.n_patches > 20);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images"), r.n_patches * 4);
    /* 20x = 0.5 µm/px: level 1 (downsample 2) exactly, no resampling; 1.25x = 8 µm/px wants
     * downsample 32 but this pyramid stops at 16 (level 4), resampled by 1/2. */
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images WHERE mag = 20 AND width = 128 AND level = 1 AND scale = 1"), r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images WHERE mag = 10 AND width = 64 AND level = 2"), r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images WHERE mag = 5 AND width = 32 AND level = 3"), r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images WHERE mag = 1.25 AND width = 8 AND level = 4 AND scale = 0.5"), r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM patches WHERE size0 != 256 OR x0 % 256 != 0 OR y0 % 256 != 0"), 0);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM patches WHERE tissue < 0.5 OR tissue > 1"), 0);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM patches WHERE blur IS NULL OR brightness <= 0"), 0);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'done' AND mpp_source = 'tiff.XResolution' "
                               "AND abs(mpp_x - 0.25) < 1e-6 AND mask IS NOT NULL AND n_patches = "
                               "(SELECT count(*) FROM patches)"), 1);
    /* the pen stroke (rows 80-85% of the height) yields no patch */
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM patches WHERE y0 >= 0.81 * 3072 AND y0 + size0 <= 0.85 * 3072"), 0);
    int64_t max_id = db_query_int(db, "SELECT max(id) FROM patches");
    /* unchanged: skipped; nothing rewritten */
    CHECK_INT(tiler_tile_slide(db, tmp("g.tif"), &o, &r), 0);
    CHECK_INT(r.outcome, TILER_SKIPPED);
    CHECK_INT(db_query_int(db, "SELECT max(id) FROM patches"), max_id);
    /* parameters changed: redone, old patches gone */
    o.n_mags = 2;
    CHECK_INT(tiler_tile_slide(db, tmp("g.tif"), &o, &r), 0);
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images"), r.n_patches * 2);
    CHECK_INT(r.n_new, r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images WHERE mag NOT IN (20, 10)"), 0);
    /* file changed (re-saved with another seed): redone */
    CHECK_INT(mkslide(tmp("g.tif"), 4096, 3072, 0.25, 5, MK_PEN), 0);
    CHECK_INT(tiler_tile_slide(db, tmp("g.tif"), &o, &r), 0);
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK_INT(r.n_new, r.n_patches);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides"), 1);
    db_close(db);
}

static double psnr(const uint8_t *a, const uint8_t *b, size_t n)
{
    double se = 0;
    for (size_t i = 0; i < n; i++) se += (double)(a[i] - b[i]) * (a[i] - b[i]);
    if (se == 0) return 99;
    return 10 * log10(255.0 * 255.0 / (se / n));
}

/* Decode a stored patch and compare with OpenSlide's level-0 read of the same square, resized
 * independently (libvips from level 0, not from the level the tiler chose). */
static void pixel_check(const char *slide, const char *dbp, double mag, int tiled_level_expected)
{
    mp_db *db = db_open(dbp, DB_OPEN_READONLY);
    sqlite3_stmt *st = db_prepare(db, "SELECT x0, y0, size0, width, level, data FROM images JOIN patches ON id = patch_id "
                                      "WHERE mag = ? ORDER BY tissue DESC, gy, gx LIMIT 3");
    sqlite3_bind_double(st, 1, mag);
    openslide_t *osr = openslide_open(slide);
    tjhandle tj = tjInitDecompress();
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t x0 = sqlite3_column_int64(st, 0), y0 = sqlite3_column_int64(st, 1);
        double size0 = sqlite3_column_double(st, 2);
        int w = sqlite3_column_int(st, 3);
        if (tiled_level_expected >= 0) CHECK_INT(sqlite3_column_int(st, 4), tiled_level_expected);
        uint8_t *dec = malloc((size_t)w * w * 3);
        CHECK_INT(tjDecompress2(tj, sqlite3_column_blob(st, 5), (unsigned long)sqlite3_column_bytes(st, 5), dec, w, 0, w,
                                TJPF_RGB, TJFLAG_ACCURATEDCT), 0);
        int s0 = (int)llround(size0);
        uint32_t *argb = malloc((size_t)s0 * s0 * 4);
        openslide_read_region(osr, argb, x0, y0, 0, s0, s0);
        uint8_t *rgb = malloc((size_t)s0 * s0 * 3);
        for (int i = 0; i < s0 * s0; i++) {
            rgb[3 * i] = (argb[i] >> 16) & 255;
            rgb[3 * i + 1] = (argb[i] >> 8) & 255;
            rgb[3 * i + 2] = argb[i] & 255;
        }
        /* Reference: the same square read from level 0 (not the level the tiler chose, nor its
         * TIFF fast path), area-averaged to the stored size (the resampler itself has its own
         * unit test). */
        uint8_t *ref = tiler_area_resample(rgb, s0, w);
        double p = psnr(dec, ref, (size_t)w * w * 3);
        if (getenv("PSNR_VERBOSE") || p < 30) fprintf(stderr, "PSNR %.2f dB at mag %g (%lld,%lld)\n", p, mag, (long long)x0, (long long)y0);
        CHECK(p >= 30);
        tiler_free(ref);
        free(rgb);
        free(argb);
        free(dec);
        n++;
    }
    CHECK(n > 0);
    tjDestroy(tj);
    openslide_close(osr);
    sqlite3_finalize(st);
    db_close(db);
}

TEST(pixel_agreement)
{
    CHECK_INT(mkslide(tmp("px.tif"), 4096, 3072, 0.25, 6, 0), 0);
    mp_db *db = db_open(tmp("px.db"), DB_OPEN_CREATE);
    tiler_opts o = opts();
    tiler_result r;
    CHECK_INT(tiler_tile_slide(db, tmp("px.tif"), &o, &r), 0);
    db_close(db);
    pixel_check(tmp("px.tif"), tmp("px.db"), 10, 2);
    pixel_check(tmp("px.tif"), tmp("px.db"), 1.25, 4);
    /* The real Aperio slide: one level at 0.499 µm/px, so both mags are resampled by the tiler. */
    char real[512];
    snprintf(real, sizeof real, "%s/slides/aperio-jpeg-cmu1-small-region/CMU-1-Small-Region.svs",
             getenv("MAGPIE_SHARED_DATA") ? getenv("MAGPIE_SHARED_DATA") : "../shared/data");
    if (access(real, R_OK) == 0) {
        db = db_open(tmp("px2.db"), DB_OPEN_CREATE);
        CHECK_INT(tiler_tile_slide(db, real, &o, &r), 0);
        db_close(db);
        pixel_check(real, tmp("px2.db"), 10, 0);
        pixel_check(real, tmp("px2.db"), 1.25, 0);
    } else {
        fprintf(stderr, "note: %s absent, real-slide pixel check skipped\n", real);
    }
}

/* The direct TIFF tile reader must give exactly OpenSlide's pixels (same JPEG decoder). */
TEST(fast_tiff_path_equals_openslide)
{
    CHECK_INT(mkslide(tmp("fp.tif"), 3000, 2200, 0.25, 8, 0), 0);
    tiler_opts o = opts();
    o.mags[0] = 20;
    o.mags[1] = 10;
    o.mags[2] = 2.5;
    o.n_mags = 3;
    o.size = 96;
    o.min_tissue = 0;
    tiler_result r;
    mp_db *db = db_open(tmp("fp_fast.db"), DB_OPEN_CREATE);
    CHECK_INT(tiler_tile_slide(db, tmp("fp.tif"), &o, &r), 0);
    db_close(db);
    setenv("MAGPIE_TILER_NO_FAST", "1", 1);
    db = db_open(tmp("fp_os.db"), DB_OPEN_CREATE);
    CHECK_INT(tiler_tile_slide(db, tmp("fp.tif"), &o, &r), 0);
    unsetenv("MAGPIE_TILER_NO_FAST");
    char sql[600];
    snprintf(sql, sizeof sql, "ATTACH '%s' AS f", tmp("fp_fast.db"));
    CHECK_INT(db_exec(db, sql), 0);
    int64_t n = db_query_int(db, "SELECT count(*) FROM images");
    CHECK(n > 100);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM images i JOIN patches p ON p.id = i.patch_id "
                               "JOIN f.patches q ON q.gx = p.gx AND q.gy = p.gy "
                               "JOIN f.images j ON j.patch_id = q.id AND j.mag = i.mag WHERE j.data = i.data"), n);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides s, f.slides t WHERE s.mask = t.mask AND length(s.mask) > 0"), 1);
    db_close(db);
}

int main(void)
{
    if (t_tmpdir("tiler_run")) return 1;
    if (tiler_global_init("test")) return 1;
    RUN(bad_inputs);
    RUN(tile_errors_are_recorded);
    RUN(corrupt_tile_in_file);
    RUN(multi_mag_geometry_skip_redo);
    RUN(pixel_agreement);
    RUN(fast_tiff_path_equals_openslide);
    t_rmdir();
    return test_done();
}
