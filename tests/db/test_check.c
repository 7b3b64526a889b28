/* tests/db/test_check.c — `db check` finds each kind of damage, and passes a clean dataset. */
#include "tests/test.h"

#include <unistd.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/vipserr.h"
#include "db/check.h"
#include "db/sql.h"

static int decode(const void *data, size_t len, const char *codec, int *w, int *h)
{
    VipsImage *im = vips_image_new_from_buffer(data, len, "", "fail_on", VIPS_FAIL_ON_TRUNCATED, NULL);
    double avg;
    if (!im || vips_avg(im, &avg, NULL)) {
        if (im) g_object_unref(im);
        free(mp_vips_err_take(NULL));
        return mp_err_set("%s decode failed", codec);
    }
    *w = vips_image_get_width(im);
    *h = vips_image_get_height(im);
    g_object_unref(im);
    return 0;
}

static char last[512];
static void report(void *ctx, const char *msg)
{
    (void)ctx;
    snprintf(last, sizeof last, "%s", msg);
}

static void *jpeg(int size, size_t *len)
{
    VipsImage *im;
    void *buf = NULL;
    vips_black(&im, size, size, "bands", 3, NULL);
    vips_jpegsave_buffer(im, &buf, len, "Q", 90, NULL);
    g_object_unref(im);
    return buf;
}

static void insert_image(mp_db *db, int pid, double mag, int w, const void *data, size_t len)
{
    sqlite3_stmt *st = db_prepare(db, "INSERT INTO images VALUES (?, ?, ?, ?, 0, 1.0, 'jpeg', ?)");
    sqlite3_bind_int(st, 1, pid);
    sqlite3_bind_double(st, 2, mag);
    sqlite3_bind_int(st, 3, w);
    sqlite3_bind_int(st, 4, w);
    sqlite3_bind_blob(st, 5, data, (int)len, SQLITE_TRANSIENT);
    CHECK_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

TEST(clean_then_damaged)
{
    char path[] = "/tmp/mp_checktest_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    CHECK(db != NULL);
    if (!db) return;
    size_t l16, l2;
    void *j16 = jpeg(16, &l16), *j2 = jpeg(2, &l2);
    CHECK_INT(db_exec(db, "INSERT INTO slides(id, path, name, fingerprint, status, n_patches) "
                          "VALUES (1, '/x/a.svs', 'a', 'f', 'done', 2);"
                          "INSERT INTO patches VALUES (1, 1, 0, 0, 0, 0, 64, 0.9, 1, 0, 200),"
                          "(2, 1, 1, 0, 64, 0, 64, 0.8, 1, 0, 200);"),
              0);
    for (int p = 1; p <= 2; p++) {
        insert_image(db, p, 10, 16, j16, l16);
        insert_image(db, p, 1.25, 2, j2, l2);
    }
    db_check_result r;
    CHECK_INT(db_check(db, decode, report, NULL, &r), 0);
    CHECK_INT(r.problems, 0);
    CHECK_INT(r.blobs_decoded, 4);

    /* each kind of damage, one at a time, with the message it must give */
    CHECK_INT(db_exec(db, "DELETE FROM images WHERE patch_id = 2 AND mag = 1.25"), 0);
    CHECK_INT(db_check(db, decode, report, NULL, &r), 0);
    CHECK_INT(r.problems, 1);
    CHECK_STR(last, "patch missing a magnification: patch 2 (slide 1) has no image at 1.25x");
    insert_image(db, 2, 1.25, 2, j2, l2);

    insert_image(db, 2, 5, 8, j16, l16 / 2); /* truncated blob and wrong size; also 5x missing on patch 1 */
    CHECK_INT(db_check(db, decode, report, NULL, &r), 0);
    CHECK_INT(r.problems, 2);
    CHECK_STR(last, "blob does not decode: patch 2 at 5x: jpeg decode failed");
    CHECK_INT(db_exec(db, "DELETE FROM images WHERE mag = 5"), 0);

    CHECK_INT(db_exec(db, "UPDATE slides SET n_patches = 3"), 0);
    CHECK_INT(db_check(db, NULL, report, NULL, &r), 0);
    CHECK_INT(r.problems, 1);
    CHECK_STR(last, "patch count: slide 1 (a) records 3 patches but has 2");
    CHECK_INT(db_exec(db, "UPDATE slides SET n_patches = 2, status = 'tiling'"), 0);
    CHECK_INT(db_check(db, NULL, report, NULL, &r), 0);
    CHECK_STR(last, "interrupted slide: slide 1 (a) was interrupted while tiling (run magpie tile again to resume)");
    CHECK_INT(db_exec(db, "UPDATE slides SET status = 'done'; PRAGMA foreign_keys = OFF; "
                          "INSERT INTO images VALUES (99, 10, 16, 16, 0, 1, 'jpeg', x'00')"),
              0);
    CHECK_INT(db_check(db, NULL, report, NULL, &r), 0);
    CHECK_INT(r.problems, 1);
    CHECK_STR(last, "orphan image: image of missing patch 99 at 10x");
    g_free(j16);
    g_free(j2);
    db_close(db);
    unlink(path);
}

/* A writer commits between two rules: the check must not see it (one read transaction). */
static sqlite3 *g_writer;
static int g_reports;
static void report_and_write(void *ctx, const char *msg)
{
    (void)ctx;
    snprintf(last, sizeof last, "%s", msg);
    if (g_reports++ == 0)
        sqlite3_exec(g_writer, "INSERT INTO patches VALUES (50, 999, 9, 9, 0, 0, 64, 0.9, 1, 0, 200)", NULL, NULL,
                     NULL);
}

TEST(one_snapshot)
{
    char path[] = "/tmp/mp_checksnap_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_exec(db, "PRAGMA foreign_keys = OFF; INSERT INTO images VALUES (99, 10, 16, 16, 0, 1, 'jpeg', x'00')"),
              0);
    CHECK_INT(sqlite3_open(path, &g_writer), SQLITE_OK);
    sqlite3_busy_timeout(g_writer, 5000);
    db_check_result r;
    g_reports = 0;
    CHECK_INT(db_check(db, NULL, report_and_write, NULL, &r), 0);
    /* the orphan image only: the orphan patch committed meanwhile is not in the snapshot */
    CHECK_INT(r.problems, 1);
    CHECK_INT(r.patches, 0);
    CHECK_STR(last, "orphan image: image of missing patch 99 at 10x");
    /* a new check sees it (an orphan patch without images) */
    CHECK_INT(db_check(db, NULL, report, NULL, &r), 0);
    CHECK_INT(r.problems, 3);
    CHECK_INT(r.patches, 1);
    sqlite3_close(g_writer);
    db_close(db);
    unlink(path);
    char side[64];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

int main(void)
{
    if (VIPS_INIT("test")) TEST_FATAL("libvips init failed");
    RUN(clean_then_damaged);
    RUN(one_snapshot);
    return test_done();
}
