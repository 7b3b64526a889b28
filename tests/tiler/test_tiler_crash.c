/* tests/tiler/test_tiler_crash.c — crash safety of `magpie tile`: the binary is SIGKILLed at
 * chosen points (after the slide goes to 'tiling', between batches, inside a batch's open
 * transaction, before 'done') and at an arbitrary moment from outside; the same command run
 * again must leave a dataset identical to an uninterrupted run: same patches, same image bytes,
 * same tile errors, no duplicates, and never a half-written slide marked done. */
#include "tests/test.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "tests/tiler/mkslide.h"

static const char *bin;

/* Start `magpie tile DB SLIDE --size 64 -q` with MAGPIE_TILER_KILL=kill (NULL: none). */
static pid_t start(const char *db, const char *slide, const char *kill, const char *jobs)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (kill) setenv("MAGPIE_TILER_KILL", kill, 1);
        else unsetenv("MAGPIE_TILER_KILL");
        /* two unreadable cells: tile_errors must survive crashes without duplicates too */
        setenv("MAGPIE_TILER_FAIL", "10,8;11,8", 1);
        execl(bin, bin, "tile", db, slide, "--size", "64", "--min-tissue", "0.25", "--jobs", jobs, "-q", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Run to completion; returns the wait status. */
static int run(const char *db, const char *slide, const char *kill, const char *jobs)
{
    int st;
    waitpid(start(db, slide, kill, jobs), &st, 0);
    return st;
}

static int64_t q_int(const char *db, const char *sql)
{
    sqlite3 *h;
    int64_t v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(h);
    return v;
}

/* Hash of everything a run produces, in a canonical order (ids and timestamps excluded). */
static uint64_t digest(const char *db)
{
    static const char *qs[] = {
        "SELECT path, fingerprint, params_hash, status, n_patches, n_bad_tiles, mpp_x, mpp_source, mask, "
        "mask_width, mask_height, mask_downsample FROM slides ORDER BY path",
        "SELECT p.gx, p.gy, p.x0, p.y0, p.size0, p.tissue, p.blur, p.pen, p.brightness, i.mag, i.width, i.level, "
        "i.scale, i.codec, i.data FROM patches p JOIN images i ON i.patch_id = p.id ORDER BY p.gy, p.gx, i.mag",
        "SELECT gx, gy, message FROM tile_errors ORDER BY gy, gx",
    };
    XXH3_state_t *x = XXH3_createState();
    XXH3_64bits_reset(x);
    sqlite3 *h;
    sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL);
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(h, qs[k], -1, &st, NULL) != SQLITE_OK) {
            fprintf(stderr, "digest: %s\n", sqlite3_errmsg(h));
            continue;
        }
        while (sqlite3_step(st) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const void *b = sqlite3_column_blob(st, c);
                int n = sqlite3_column_bytes(st, c);
                XXH3_64bits_update(x, &n, sizeof n);
                if (b && n) XXH3_64bits_update(x, b, (size_t)n);
            }
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    uint64_t d = XXH3_64bits_digest(x);
    XXH3_freeState(x);
    return d;
}

static int killed(int st) { return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL; }

static uint64_t ref;
static int64_t ref_patches;

TEST(reference)
{
    CHECK_INT(mkslide(tmp("s.tif"), 4096, 3072, 0.5, 11, MK_PEN), 0);
    int st = run(tmp("ref.db"), tmp("s.tif"), NULL, "2");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ref = digest(tmp("ref.db"));
    ref_patches = q_int(tmp("ref.db"), "SELECT count(*) FROM patches");
    CHECK(ref_patches > 200); /* several batches of 64 */
    CHECK_INT(q_int(tmp("ref.db"), "SELECT count(*) FROM tile_errors"), 2);
    /* one worker gives the same bytes as two */
    st = run(tmp("ref1.db"), tmp("s.tif"), NULL, "1");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(digest(tmp("ref1.db")) == ref);
}

/* Kill at each point (possibly twice in a row), then resume without a kill. */
static void crash_then_resume(const char *name, const char *k1, const char *k2)
{
    char db[300];
    snprintf(db, sizeof db, "%s", tmp(name));
    int st = run(db, tmp("s.tif"), k1, "2");
    CHECK(killed(st));
    /* never a slide marked done after a crash */
    CHECK_INT(q_int(db, "SELECT count(*) FROM slides WHERE status = 'done'"), 0);
    if (k2) {
        st = run(db, tmp("s.tif"), k2, "2");
        CHECK(killed(st));
    }
    int64_t before = q_int(db, "SELECT count(*) FROM patches");
    CHECK(before <= ref_patches);
    st = run(db, tmp("s.tif"), NULL, "2");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_INT(q_int(db, "SELECT count(*) FROM patches"), ref_patches);
    CHECK_INT(q_int(db, "SELECT count(*) FROM (SELECT 1 FROM patches GROUP BY slide_id, gx, gy HAVING count(*) > 1)"), 0);
    CHECK_INT(q_int(db, "SELECT count(*) FROM (SELECT 1 FROM tile_errors GROUP BY slide_id, gx, gy HAVING count(*) > 1)"), 0);
    uint64_t d = digest(db);
    if (d != ref) fprintf(stderr, "%s: dataset differs from the uninterrupted run\n", name);
    CHECK(d == ref);
}

TEST(kill_after_start) { crash_then_resume("k1.db", "after-start", NULL); }
TEST(kill_between_batches) { crash_then_resume("k2.db", "batch:2", NULL); }
TEST(kill_inside_a_batch) { crash_then_resume("k3.db", "in-batch:3", NULL); }
TEST(kill_before_done) { crash_then_resume("k4.db", "before-finish", NULL); }
TEST(kill_twice) { crash_then_resume("k5.db", "in-batch:1", "in-batch:2"); }

/* From outside, at an arbitrary moment: once some patches are committed. */
TEST(kill_from_outside)
{
    const char *db = tmp("k6.db");
    for (int round = 0; round < 2; round++) {
        pid_t pid = start(db, tmp("s.tif"), NULL, "2");
        int64_t want = round == 0 ? 1 : ref_patches / 2, got = 0;
        int st = 0, exited = 0;
        for (int i = 0; i < 20000 && got < want; i++) {
            if (waitpid(pid, &st, WNOHANG) == pid) { exited = 1; break; }
            got = q_int(db, "SELECT count(*) FROM patches");
            usleep(500);
        }
        if (!exited) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
    }
    int st = run(db, tmp("s.tif"), NULL, "2");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(digest(db) == ref);
}

int main(void)
{
    bin = getenv("MAGPIE_BIN");
    if (!bin) TEST_FATAL("MAGPIE_BIN not set (run through meson test)");
    if (t_tmpdir("tiler_crash")) return 1;
    if (VIPS_INIT("test")) return 1;
    RUN(reference);
    RUN(kill_after_start);
    RUN(kill_between_batches);
    RUN(kill_inside_a_batch);
    RUN(kill_before_done);
    RUN(kill_twice);
    RUN(kill_from_outside);
    t_rmdir();
    return test_done();
}
