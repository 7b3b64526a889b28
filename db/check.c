/* db/check.c — the integrity check behind `magpie db DB check`. Each rule is one SQL query
 * that lists offending rows; blob decoding walks the images table once. */
#include "db/check.h"
#include "db/sql.h"
#include "db/split.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "db/tiling.h"

static void problem(db_problem_fn report, void *ctx, db_check_result *res, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(db_problem_fn report, void *ctx, db_check_result *res, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    res->problems++;
    if (report) report(ctx, buf);
}

/* A rule: SQL returning (text description) rows, one per problem. */
static const struct {
    const char *what;
    const char *sql;
} rules[] = {
    {"patch without images",
     "SELECT 'patch ' || p.id || ' (slide ' || p.slide_id || ', grid ' || p.gx || ',' || p.gy || ') has no images' "
     "FROM patches p WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id)"},
    {"patch missing a magnification",
     /* Every patch of a slide must have the images of every magnification used on that slide. */
     "WITH m AS (SELECT DISTINCT p.slide_id, i.mag FROM images i JOIN patches p ON p.id = i.patch_id) "
     "SELECT 'patch ' || p.id || ' (slide ' || p.slide_id || ') has no image at ' || m.mag || 'x' "
     "FROM patches p JOIN m ON m.slide_id = p.slide_id "
     "WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.patch_id = p.id AND i.mag = m.mag)"},
    {"orphan image",
     "SELECT 'image of missing patch ' || i.patch_id || ' at ' || printf('%g', i.mag) || 'x' FROM images i "
     "WHERE NOT EXISTS (SELECT 1 FROM patches p WHERE p.id = i.patch_id)"},
    {"orphan patch",
     "SELECT 'patch ' || p.id || ' belongs to missing slide ' || p.slide_id FROM patches p "
     "WHERE NOT EXISTS (SELECT 1 FROM slides s WHERE s.id = p.slide_id)"},
    {"orphan label",
     "SELECT 'label of missing patch ' || l.patch_id FROM patch_labels l "
     "WHERE NOT EXISTS (SELECT 1 FROM patches p WHERE p.id = l.patch_id)"},
    {"label of unknown class",
     "SELECT 'patch ' || l.patch_id || ' labelled with unknown class ' || l.class_id FROM patch_labels l "
     "WHERE NOT EXISTS (SELECT 1 FROM classes c WHERE c.id = l.class_id)"},
    {"orphan split",
     "SELECT 'split row of missing slide ' || t.slide_id FROM splits t "
     "WHERE NOT EXISTS (SELECT 1 FROM slides s WHERE s.id = t.slide_id)"},
    {"patch count",
     "SELECT 'slide ' || s.id || ' (' || s.name || ') records ' || s.n_patches || ' patches but has ' || "
     "(SELECT count(*) FROM patches p WHERE p.slide_id = s.id) FROM slides s WHERE s.status = 'done' AND "
     "s.n_patches != (SELECT count(*) FROM patches p WHERE p.slide_id = s.id)"},
    {"bad geometry",
     "SELECT 'patch ' || p.id || ' has an invalid square or tissue fraction' FROM patches p "
     "WHERE p.size0 <= 0 OR p.x0 < 0 OR p.y0 < 0 OR p.tissue < 0 OR p.tissue > 1"},
};

static int check_all(mp_db *db, db_decode_fn decode, db_problem_fn report, void *ctx, db_check_result *res,
                     int live_before);

typedef struct {
    db_problem_fn report;
    void *ctx;
    db_check_result *res;
} leak_ctx;

static void leak_problem(void *c, const char *msg)
{
    leak_ctx *l = c;
    problem(l->report, l->ctx, l->res, "split leak: %s", msg);
}

int db_check(mp_db *db, db_decode_fn decode, db_problem_fn report, void *ctx, db_check_result *res)
{
    memset(res, 0, sizeof *res);
    int before = db_tile_lock_held(db_path(db));
    if (before < 0) return -1;
    /* One snapshot (WAL): a tiler committing batches meanwhile changes nothing we read. */
    if (db_exec(db, "BEGIN DEFERRED")) return -1;
    int rc = check_all(db, decode, report, ctx, res, before);
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_exec(db, "ROLLBACK");
        return mp_err_set("%s", keep);
    }
    return db_exec(db, "COMMIT");
}

static int check_all(mp_db *db, db_decode_fn decode, db_problem_fn report, void *ctx, db_check_result *res,
                     int live_before)
{
    res->slides = db_query_int(db, "SELECT count(*) FROM slides");
    res->patches = db_query_int(db, "SELECT count(*) FROM patches");
    res->images = db_query_int(db, "SELECT count(*) FROM images");
    if (res->slides < 0 || res->patches < 0 || res->images < 0) return -1;

    sqlite3_stmt *st = db_prepare(db, "PRAGMA quick_check");
    if (!st) return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t && strcmp(t, "ok") != 0) problem(report, ctx, res, "sqlite: %s", t);
    }
    sqlite3_finalize(st);

    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        st = db_prepare(db, rules[r].sql);
        if (!st) return -1;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            problem(report, ctx, res, "%s: %s", rules[r].what, (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return db_fail(db, rules[r].what);
    }

    /* 'tiling' is a run in progress while a tiler holds the lock, else one that died. Asked
     * again now: a tiler that held it when the snapshot began may have finished since. */
    int now = db_tile_lock_held(db_path(db));
    if (now < 0) return -1;
    int live = live_before || now;
    st = db_prepare(db, "SELECT id, name FROM slides WHERE status = 'tiling' ORDER BY id");
    if (!st) return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (live) {
            res->in_progress++;
            if (report) {
                char buf[512];
                snprintf(buf, sizeof buf, "in progress: slide %lld (%s) is being tiled now (a magpie tile holds the lock)",
                         id, name ? name : "");
                report(ctx, buf);
            }
        } else {
            problem(report, ctx, res,
                    "interrupted slide: slide %lld (%s) was interrupted while tiling (run magpie tile again to resume)",
                    id, name ? name : "");
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "slides being tiled");

    /* patient leakage between splits and folds (db/split.c, also `db splits`) */
    leak_ctx lc = {report, ctx, res};
    if (db_split_leaks(db, leak_problem, &lc) < 0) return -1;

    if (!decode) return 0;
    st = db_prepare(db, "SELECT patch_id, mag, width, height, codec, data FROM images ORDER BY patch_id, mag");
    if (!st) return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t pid = sqlite3_column_int64(st, 0);
        double mag = sqlite3_column_double(st, 1);
        int w = sqlite3_column_int(st, 2), h = sqlite3_column_int(st, 3);
        const char *codec = (const char *)sqlite3_column_text(st, 4);
        const void *data = sqlite3_column_blob(st, 5);
        int n = sqlite3_column_bytes(st, 5);
        int dw = 0, dh = 0;
        if (!data || n <= 0) {
            problem(report, ctx, res, "empty blob: patch %lld at %gx", (long long)pid, mag);
        } else if (decode(data, (size_t)n, codec ? codec : "", &dw, &dh) != 0) {
            problem(report, ctx, res, "blob does not decode: patch %lld at %gx: %s", (long long)pid, mag, mp_err());
        } else if (dw != w || dh != h) {
            problem(report, ctx, res, "blob size mismatch: patch %lld at %gx is %dx%d, recorded %dx%d", (long long)pid, mag, dw,
                    dh, w, h);
        } else {
            res->blobs_decoded++;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "reading images");
    return 0;
}
