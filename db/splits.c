/* db/splits.c — reading the split tables back (see splits.h). */
#include "db/splits.h"

#include "db/sql.h"

#define SPLIT_ORDER(col) "CASE " col " WHEN 'train' THEN 0 WHEN 'val' THEN 1 WHEN 'test' THEN 2 ELSE 3 END"

int64_t db_splits_slides(mp_db *db) { return db_query_int(db, "SELECT count(*) FROM splits"); }

int64_t db_splits_folds(mp_db *db)
{
    int64_t has = db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'folds'");
    if (has != 1) return has < 0 ? -1 : 0;
    return db_query_int(db, "SELECT count(*) FROM folds");
}

int db_split_sizes(mp_db *db, int (*fn)(void *ctx, const db_split_size *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(
        db, "SELECT t.split, count(DISTINCT s.id), count(DISTINCT coalesce(s.patient, s.name)), "
            "(SELECT count(*) FROM patches p JOIN splits u ON u.slide_id = p.slide_id WHERE u.split = t.split), "
            "(SELECT count(*) FROM patches p JOIN splits u ON u.slide_id = p.slide_id JOIN slides v ON v.id = "
            "p.slide_id WHERE u.split = t.split AND (v.label IS NOT NULL OR p.id IN (SELECT patch_id FROM "
            "patch_labels))) FROM splits t JOIN slides s ON s.id = t.slide_id GROUP BY t.split "
            "ORDER BY " SPLIT_ORDER("t.split") ", t.split");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_split_size r = {db_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                           sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "splits");
}

int db_split_classes(mp_db *db, int (*fn)(void *ctx, const db_split_class *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(
        db, "SELECT t.split, coalesce(s.label, '(none)') AS label, count(DISTINCT coalesce(s.patient, s.name)) "
            "FROM splits t JOIN slides s ON s.id = t.slide_id GROUP BY t.split, label "
            "ORDER BY " SPLIT_ORDER("t.split") ", t.split, label");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_split_class r = {db_text(st, 0), db_text(st, 1), sqlite3_column_int64(st, 2)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "splits");
}

int db_fold_sizes(mp_db *db, int (*fn)(void *ctx, const db_fold_size *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(
        db, "SELECT f.fold, count(DISTINCT coalesce(s.patient, s.name)), count(*), max(t.split = 'val'), "
            "(SELECT group_concat(l || ' ' || c, ', ') FROM (SELECT coalesce(s2.label, '(none)') AS l, "
            "count(DISTINCT coalesce(s2.patient, s2.name)) AS c FROM folds f2 JOIN slides s2 ON s2.id = f2.slide_id "
            "WHERE f2.fold = f.fold GROUP BY l ORDER BY l)) "
            "FROM folds f JOIN slides s ON s.id = f.slide_id LEFT JOIN splits t ON t.slide_id = f.slide_id "
            "GROUP BY f.fold ORDER BY f.fold");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_fold_size r = {sqlite3_column_int(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                          sqlite3_column_int(st, 3), db_text(st, 4)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "splits");
}

int db_class_split_patches(mp_db *db, int (*fn)(void *ctx, const db_class_patches *r), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT c.name, sum(sp.split = 'train'), sum(sp.split = 'val'), "
                                      "sum(sp.split = 'test'), sum(sp.split = 'unlabeled') "
                                      "FROM patches p JOIN slides s ON s.id = p.slide_id JOIN splits sp ON sp.slide_id = "
                                      "s.id JOIN classes c ON c.name = s.label GROUP BY c.id ORDER BY c.id");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_class_patches r = {db_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                              sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "splits");
}
