/* db/stats.c — the counts behind `db info` and `db stats` (see stats.h). */
#include "db/stats.h"

#include "db/sql.h"

static const char *text(sqlite3_stmt *st, int c)
{
    const char *t = (const char *)sqlite3_column_text(st, c);
    return t ? t : "";
}

static int done(mp_db *db, sqlite3_stmt *st, int rc, int stop)
{
    if (!stop && rc != SQLITE_DONE) stop = db_fail(db, "stats");
    sqlite3_finalize(st);
    return stop;
}

int db_other_splits(mp_db *db, int (*fn)(void *ctx, const char *split), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT DISTINCT split FROM splits WHERE split NOT IN ('train', 'val', 'test', "
                                      "'unlabeled') ORDER BY split");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) stop = fn(ctx, text(st, 0));
    return done(db, st, rc, stop);
}

int db_class_split_mags(mp_db *db, int (*fn)(void *ctx, const db_class_split_mag *r), void *ctx)
{
    /* label rule as everywhere: the patch's region label, else its slide's */
    sqlite3_stmt *st = db_prepare(
        db, "SELECT i.mag, coalesce(c.name, s.label, '(unlabelled)') AS cls, coalesce(sp.split, '(none)'), "
            "count(*) FROM images i JOIN patches p ON p.id = i.patch_id JOIN slides s ON s.id = p.slide_id "
            "LEFT JOIN splits sp ON sp.slide_id = p.slide_id LEFT JOIN patch_labels pl ON pl.patch_id = p.id "
            "LEFT JOIN classes c ON c.id = pl.class_id GROUP BY 1, 2, 3 ORDER BY 1 DESC, 2");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_class_split_mag r = {sqlite3_column_double(st, 0), text(st, 1), text(st, 2), sqlite3_column_int64(st, 3)};
        stop = fn(ctx, &r);
    }
    return done(db, st, rc, stop);
}

int db_tissue_histogram(mp_db *db, int64_t bins[10])
{
    for (int b = 0; b < 10; b++) bins[b] = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT min(CAST(tissue * 10 AS INTEGER), 9), count(*) FROM patches "
                                      "GROUP BY 1 ORDER BY 1");
    if (!st) return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int b = sqlite3_column_int(st, 0);
        if (b >= 0 && b < 10) bins[b] += sqlite3_column_int64(st, 1);
    }
    return done(db, st, rc, 0);
}

int db_mpp_sources(mp_db *db, int (*fn)(void *ctx, const db_mpp_source *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT coalesce(mpp_source, '(none)'), count(*), min(mpp_x), max(mpp_x) "
                                      "FROM slides GROUP BY 1 ORDER BY 2 DESC, 1");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_mpp_source r = {text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_type(st, 2) != SQLITE_NULL,
                           sqlite3_column_double(st, 2), sqlite3_column_double(st, 3)};
        stop = fn(ctx, &r);
    }
    return done(db, st, rc, stop);
}
