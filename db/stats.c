/* db/stats.c — the counts behind `db info` and `db stats` (see stats.h). */
#include "db/stats.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "db/sql.h"

int db_other_splits(mp_db *db, int (*fn)(void *ctx, const char *split), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT DISTINCT split FROM splits WHERE split NOT IN ('train', 'val', 'test', "
                                      "'unlabeled') ORDER BY split");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) stop = fn(ctx, db_text(st, 0));
    return db_walk_end(db, st, rc, stop, "stats");
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
        db_class_split_mag r = {sqlite3_column_double(st, 0), db_text(st, 1), db_text(st, 2),
                                sqlite3_column_int64(st, 3)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "stats");
}

static int bin_row(void *bins, sqlite3_stmt *st)
{
    int b = sqlite3_column_int(st, 0);
    if (b >= 0 && b < 10) ((int64_t *)bins)[b] += sqlite3_column_int64(st, 1);
    return 0;
}

int db_tissue_histogram(mp_db *db, int64_t bins[10])
{
    for (int b = 0; b < 10; b++) bins[b] = 0;
    return db_each_row(db, db_prepare(db, "SELECT min(CAST(tissue * 10 AS INTEGER), 9), count(*) FROM patches "
                                          "GROUP BY 1 ORDER BY 1"),
                       "stats", bin_row, bins);
}

int db_mpp_sources(mp_db *db, int (*fn)(void *ctx, const db_mpp_source *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT coalesce(mpp_source, '(none)'), count(*), min(mpp_x), max(mpp_x) "
                                      "FROM slides GROUP BY 1 ORDER BY 2 DESC, 1");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_mpp_source r = {db_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_type(st, 2) != SQLITE_NULL,
                           sqlite3_column_double(st, 2), sqlite3_column_double(st, 3)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "stats");
}

int64_t db_slides_count(mp_db *db) { return db_query_int(db, "SELECT count(*) FROM slides"); }
int64_t db_patches_count(mp_db *db) { return db_query_int(db, "SELECT count(*) FROM patches"); }

int db_summary_get(mp_db *db, db_summary *o)
{
    static const char *const q[] = {
        "PRAGMA user_version", "SELECT count(*) FROM slides", "SELECT count(*) FROM slides WHERE status='done'",
        "SELECT count(*) FROM slides WHERE status='failed'", "SELECT count(*) FROM slides WHERE status='tiling'",
        "SELECT count(*) FROM slides WHERE status='pending'", "SELECT count(*) FROM patches",
        "SELECT count(*) FROM tile_errors", "SELECT count(*) FROM classes",
        "SELECT count(*) FROM slides WHERE label IS NOT NULL", "SELECT count(*) FROM patch_labels",
        "SELECT count(*) FROM splits"};
    int64_t *v[] = {&o->schema, &o->slides, &o->done, &o->failed, &o->tiling, &o->pending, &o->patches,
                    &o->tile_errors, &o->classes, &o->labelled_slides, &o->patch_labels, &o->split_rows};
    int rc = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        if ((*v[i] = db_query_int(db, q[i])) < 0) rc = -1;
    return rc;
}

int db_mag_storage_each(mp_db *db, int (*fn)(void *ctx, const db_mag_storage *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT mag, count(*), max(width), max(height), group_concat(DISTINCT codec), "
                                      "sum(length(data)) / 1024.0, avg(length(data)) / 1024.0, "
                                      "group_concat(DISTINCT level), min(scale), max(scale) "
                                      "FROM images GROUP BY mag ORDER BY mag DESC");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_mag_storage r = {sqlite3_column_double(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int(st, 2),
                            sqlite3_column_int(st, 3),    db_text(st, 4),                 sqlite3_column_double(st, 5),
                            sqlite3_column_double(st, 6), db_text(st, 7),                 sqlite3_column_double(st, 8),
                            sqlite3_column_double(st, 9)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "stats");
}

int db_classes_each(mp_db *db, int (*fn)(void *ctx, int64_t id, const char *name), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT id, name FROM classes ORDER BY id");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) stop = fn(ctx, sqlite3_column_int64(st, 0), db_text(st, 1));
    return db_walk_end(db, st, rc, stop, "stats");
}

int64_t db_mags_count(mp_db *db) { return db_query_int(db, "SELECT count(DISTINCT mag) FROM images"); }

int db_mag_any(mp_db *db, double *mag)
{
    return db_each_row(db, db_prepare(db, "SELECT mag FROM images LIMIT 1"), "stats", db_row_double, mag);
}

int64_t db_mag_images(mp_db *db, double mag)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM images WHERE abs(mag - ?1) < 1e-3");
    if (st) sqlite3_bind_double(st, 1, mag);
    int64_t n = 0;
    return db_each_row(db, st, "stats", db_row_int64, &n) < 0 ? -1 : n;
}

int db_split_patches_each(mp_db *db, int (*fn)(void *ctx, const db_split_patches *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT t.split, count(DISTINCT t.slide_id), count(p.id) FROM splits t "
                                      "LEFT JOIN patches p ON p.slide_id = t.slide_id GROUP BY t.split ORDER BY t.split");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_split_patches r = {db_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "stats");
}

/* A score name is spliced into SQL: only these. */
static int score_ok(mp_db *db, const char *score)
{
    static const char *const known[] = {"tissue", "blur", "pen", "brightness"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(score, known[i])) return 0;
    return mp_err_set("%s: no QC score '%s' (tissue, blur, pen, brightness)", db_path(db), score);
}

int64_t db_qc_scored(mp_db *db, const char *score)
{
    if (score_ok(db, score)) return -1;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM patches WHERE %s IS NOT NULL", score);
    return db_query_int(db, sql);
}

int db_qc_at(mp_db *db, const char *score, int64_t offset, double *v)
{
    if (score_ok(db, score)) return -1;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM patches WHERE %s IS NOT NULL ORDER BY %s LIMIT 1 OFFSET %lld", score,
             score, score, (long long)offset);
    return db_each_row(db, db_prepare(db, sql), "stats", db_row_double, v);
}

int db_class_patches_each(mp_db *db, int (*fn)(void *ctx, const char *class_name, int64_t patches), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT cls, n FROM (SELECT coalesce(c.name, s.label, '(unlabelled)') AS cls, "
                                      "count(*) AS n FROM patches p JOIN slides s ON s.id = p.slide_id "
                                      "LEFT JOIN patch_labels l ON l.patch_id = p.id LEFT JOIN classes c ON c.id = "
                                      "l.class_id GROUP BY cls) ORDER BY cls");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) stop = fn(ctx, db_text(st, 0), sqlite3_column_int64(st, 1));
    return db_walk_end(db, st, rc, stop, "stats");
}
