/* tests/tiler/test_tiler_hard.c — hostile inputs for the tiler: what is not a regular file (a
 * FIFO, a directory, a symlink loop) is refused at once; TIFF headers declaring huge tiles or
 * levels are refused before either reader allocates from them (the fast reader and OpenSlide's
 * own path, MAGPIE_TILER_NO_FAST=1); worker threads that cannot start fail the slide instead of
 * hanging it; and through the binary, a good slide beside all of these is tiled (exit 3).
 * pthread_create is wrapped at link time (-Wl,--wrap) so the thread failure can be injected. */
#include "tests/test.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "tests/tiler/mkslide.h"
#include "tiler/tiler.h"

/* ---- pthread_create fault injection ---- */

int __real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static int g_threads_allowed = -1; /* -1: no limit; else how many more creates succeed */

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    if (g_threads_allowed == 0) return EAGAIN;
    if (g_threads_allowed > 0) g_threads_allowed--;
    return __real_pthread_create(t, a, fn, arg);
}

/* ---- allocation failure injection: realloc of at least g_realloc_fail_over bytes fails ---- */

void *__real_realloc(void *, size_t);
static size_t g_realloc_fail_over = SIZE_MAX;

void *__wrap_realloc(void *p, size_t n)
{
    if (n >= g_realloc_fail_over) return NULL;
    return __real_realloc(p, n);
}

static tiler_opts opts(void)
{
    tiler_opts o;
    tiler_opts_default(&o);
    o.progress = MP_PROGRESS_NONE;
    o.jobs = 2;
    o.min_tissue = 0;
    return o;
}

static void expect_fail(mp_db *db, const char *path, const char *msg)
{
    tiler_opts o = opts();
    tiler_result r;
    CHECK_INT(tiler_tile_slide(db, path, &o, &r), -1);
    char want[700];
    snprintf(want, sizeof want, "%s: %s", path, msg);
    CHECK_STR(mp_err(), want);
    CHECK_INT(r.outcome, TILER_FAILED);
}

static void expect_done(mp_db *db, const char *path)
{
    tiler_opts o = opts();
    tiler_result r;
    int rc = tiler_tile_slide(db, path, &o, &r);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", mp_err());
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK(r.n_patches > 0);
}

/* ---- crafted TIFFs: one IFD entry of a little-endian classic TIFF rewritten as a LONG ---- */

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Copy src to dst with tag `tag` of directory `ifd` set to `value` (nset pairs). 0 = done. */
static int craft(const char *src, const char *dst, int ifd, int nset, const uint16_t *tags, const uint32_t *values)
{
    size_t n;
    uint8_t *b = slurp(src, &n);
    if (!b || n < 8 || memcmp(b, "II*\0", 4)) {
        free(b);
        return -1;
    }
    uint32_t off = rd32(b + 4);
    for (int i = 0; i < ifd && off; i++) off = rd32(b + off + 2 + 12 * rd16(b + off));
    int found = 0;
    for (int k = 0; k < nset && off; k++)
        for (uint16_t e = 0, ne = rd16(b + off); e < ne; e++) {
            uint8_t *ent = b + off + 2 + 12 * e;
            if (rd16(ent) != tags[k]) continue;
            ent[2] = 4, ent[3] = 0; /* type LONG, count 1, value inline */
            wr32(ent + 4, 1);
            wr32(ent + 8, values[k]);
            found++;
        }
    FILE *f = fopen(dst, "wb");
    size_t w = f ? fwrite(b, 1, n, f) : 0;
    if (f) fclose(f);
    free(b);
    return found == nset && w == n ? 0 : -1;
}

enum { TAG_WIDTH = 256, TAG_LENGTH = 257, TAG_TILE_W = 322, TAG_TILE_L = 323 };

TEST(not_regular_files)
{
    mp_db *db = db_open(tmp("nr.db"), DB_OPEN_CREATE);
    CHECK_INT(mkfifo(tmp("pipe.svs"), 0644), 0);
    expect_fail(db, tmp("pipe.svs"), "is a FIFO (named pipe), not a file"); /* used to block in open() */
    CHECK_INT(mkdir(tmp("dir.svs"), 0755), 0);
    expect_fail(db, tmp("dir.svs"), "is a directory, not a file");
    CHECK_INT(symlink("loop.svs", tmp("loop.svs")), 0);
    expect_fail(db, tmp("loop.svs"), strerror(ELOOP));
    CHECK_INT(symlink("gone.svs", tmp("dangling.svs")), 0);
    expect_fail(db, tmp("dangling.svs"), "no such file");
    /* the slide opener used by infer and view says the same */
    tiler_slide s;
    CHECK_INT(tiler_slide_open(tmp("pipe.svs"), &s), -1);
    CHECK_CONTAINS(mp_err(), "is a FIFO (named pipe), not a file");
    CHECK_INT(mkslide(tmp("good.tif"), 3000, 2000, 0.5, 1, 0), 0);
    expect_done(db, tmp("good.tif"));
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides"), 1); /* the refused files left no rows */
    db_close(db);
}

TEST(huge_declared_sizes)
{
    CHECK_INT(mkslide(tmp("base.tif"), 3000, 2000, 0.5, 2, 0), 0);
    struct {
        const char *name;
        int ifd, n;
        uint16_t tags[2];
        uint32_t values[2];
        const char *msg;
    } cases[] = {
        {"tile_w.tif", 0, 1, {TAG_TILE_W}, {0x40000000u},
         "TIFF directory 0 declares 1073741824x256 px tiles (at most 65536 px a side and 16777216 px in all)"},
        {"tile_l.tif", 1, 1, {TAG_TILE_L}, {0x100000u},
         "TIFF directory 1 declares 256x1048576 px tiles (at most 65536 px a side and 16777216 px in all)"},
        {"tile_area.tif", 0, 2, {TAG_TILE_W, TAG_TILE_L}, {8192, 8192},
         "TIFF directory 0 declares 8192x8192 px tiles (at most 65536 px a side and 16777216 px in all)"},
        /* Level sizes that disagree with the tile tables: libtiff itself refuses these (too few
         * tile offsets) and OpenSlide says so; what matters is one line and no abort. */
        {"width.tif", 0, 1, {TAG_WIDTH}, {0x7fffffffu}, NULL},
        {"zero.tif", 0, 1, {TAG_LENGTH}, {0}, NULL},
        {"many_tiles.tif", 0, 2, {TAG_WIDTH, TAG_LENGTH}, {4000000, 4000000}, NULL},
    };
    mp_db *db = db_open(tmp("huge.db"), DB_OPEN_CREATE);
    for (int pass = 0; pass < 2; pass++) { /* the fast reader, then OpenSlide's own path */
        if (pass) setenv("MAGPIE_TILER_NO_FAST", "1", 1);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const char *p = tmp(cases[i].name);
            CHECK_INT(craft(tmp("base.tif"), p, cases[i].ifd, cases[i].n, cases[i].tags, cases[i].values), 0);
            if (cases[i].msg) expect_fail(db, p, cases[i].msg);
            else {
                tiler_opts o = opts();
                tiler_result r;
                CHECK_INT(tiler_tile_slide(db, p, &o, &r), -1);
                CHECK(!strncmp(mp_err(), p, strlen(p)) && !strchr(mp_err(), '\n'));
            }
        }
    }
    unsetenv("MAGPIE_TILER_NO_FAST");
    expect_done(db, tmp("base.tif")); /* the same process goes on */
    db_close(db);
}

TEST(worker_threads_cannot_start)
{
    CHECK_INT(mkslide(tmp("thr.tif"), 3000, 2000, 0.5, 3, 0), 0);
    mp_db *db = db_open(tmp("thr.db"), DB_OPEN_CREATE);
    tiler_opts o = opts();
    tiler_result r;
    g_threads_allowed = 0; /* none: the slide fails (it used to wait for ever on a worker never started) */
    CHECK_INT(tiler_tile_slide(db, tmp("thr.tif"), &o, &r), -1);
    char want[600];
    snprintf(want, sizeof want, "%s: cannot start a worker thread: %s", tmp("thr.tif"), strerror(EAGAIN));
    CHECK_STR(mp_err(), want);
    g_threads_allowed = 1; /* one of two: the slide is done by that one */
    CHECK_INT(tiler_tile_slide(db, tmp("thr.tif"), &o, &r), 0);
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK(r.n_patches > 0);
    g_threads_allowed = -1;
    db_close(db);
}

/* An allocation sized by the slide that fails fails that slide (recorded, with the reason), not
 * the process; the next slide is tiled. At 40x a 8000 px square slide has 1225 patch positions,
 * past the plan's first 1024 (its array then grows past 64 KB); the small one stays under. */
TEST(allocation_fails_for_one_slide)
{
    CHECK_INT(mkslide(tmp("oom-big.tif"), 8000, 8000, 0.25, 5, 0), 0);
    CHECK_INT(mkslide(tmp("oom-small.tif"), 3000, 2000, 0.25, 6, 0), 0);
    mp_db *db = db_open(tmp("oom.db"), DB_OPEN_CREATE);
    tiler_opts o = opts();
    o.n_mags = 1;
    o.mags[0] = 40;
    tiler_result r;
    g_realloc_fail_over = 64 << 10;
    CHECK_INT(tiler_tile_slide(db, tmp("oom-big.tif"), &o, &r), -1);
    char want[600];
    snprintf(want, sizeof want, "%s: out of memory for the plan of 2048 patches (the slide is too large for this "
             "machine)", tmp("oom-big.tif"));
    CHECK_STR(mp_err(), want);
    CHECK_INT(r.outcome, TILER_FAILED);
    CHECK_INT(tiler_tile_slide(db, tmp("oom-small.tif"), &o, &r), 0);
    g_realloc_fail_over = SIZE_MAX;
    CHECK_INT(r.outcome, TILER_DONE);
    CHECK(r.n_patches > 0);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'failed' AND error LIKE '%out of memory%'"), 1);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'done'"), 1);
    /* with memory, the failed slide is tiled on the next run */
    CHECK_INT(tiler_tile_slide(db, tmp("oom-big.tif"), &o, &r), 0);
    CHECK_INT(r.outcome, TILER_DONE);
    db_close(db);
}

/* Through the binary: every bad file gets one line, the good slide is tiled, exit 3. */
TEST(cli_good_slide_among_bad)
{
    const char *bin = getenv("MAGPIE_BIN");
    if (!bin) {
        fprintf(stderr, "  MAGPIE_BIN not set (run through meson test); cli case not run\n");
        CHECK(0);
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "%s timeout 120 '%s' tile '%s' '%s' '%s' '%s' '%s' '%s' --min-tissue 0 -j 2 -q 2>'%s'",
                 pass ? "MAGPIE_TILER_NO_FAST=1" : "", bin, tmp(pass ? "cli1.db" : "cli0.db"), tmp("pipe.svs"),
                 tmp("dir.svs"), tmp("loop.svs"), tmp("tile_w.tif"), tmp("good.tif"), tmp("cli.err"));
        int st = system(cmd);
        CHECK(WIFEXITED(st));
        CHECK_INT(WEXITSTATUS(st), 3);
        size_t n = 0;
        char *err = (char *)slurp(tmp("cli.err"), &n);
        int lines = 0;
        for (size_t i = 0; err && i < n; i++) lines += err[i] == '\n';
        CHECK_INT(lines, 4);
        free(err);
        mp_db *db = db_open(tmp(pass ? "cli1.db" : "cli0.db"), DB_OPEN_READONLY);
        CHECK(db != NULL);
        if (!db) continue;
        CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE status = 'done' AND n_patches > 0"), 1);
        db_close(db);
    }
}

int main(void)
{
    alarm(600); /* a hang is a failure, not a stuck test run */
    if (t_tmpdir("tiler_hard")) return 1;
    if (tiler_global_init("test")) return 1;
    RUN(not_regular_files);
    RUN(huge_declared_sizes);
    RUN(worker_threads_cannot_start);
    RUN(allocation_fails_for_one_slide);
    RUN(cli_good_slide_among_bad);
    t_rmdir();
    return test_done();
}
