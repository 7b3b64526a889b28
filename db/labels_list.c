/* db/labels_list.c — reading label imports, slide labels and region annotations back for
 * `db labels list` (see labels.h). */
#include "db/labels.h"
#include "db/sql.h"

int db_labels_have_imports(mp_db *db)
{
    int64_t n = db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'label_imports'");
    return n < 0 ? -1 : n == 1;
}

/* Prepare sql with ?1 = slide_id; NULL + mp_err. */
static sqlite3_stmt *prepare(mp_db *db, const char *sql, int64_t slide_id)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (st) sqlite3_bind_int64(st, 1, slide_id);
    return st;
}

static const char *text_or_null(sqlite3_stmt *st, int c) { return (const char *)sqlite3_column_text(st, c); }

int db_label_imports(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_label_import *r), void *ctx)
{
    sqlite3_stmt *st = prepare(db,
                               "SELECT i.id, i.kind, coalesce(s.id, 0), s.name, i.rows, i.imported_at, i.source "
                               "FROM label_imports i LEFT JOIN slides s ON s.id = i.slide_id "
                               "WHERE ?1 = 0 OR i.slide_id = ?1 OR i.id IN (SELECT import_id FROM slide_labels "
                               "WHERE slide_id = ?1) ORDER BY i.id",
                               slide_id);
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_label_import r = {sqlite3_column_int64(st, 0), db_text(st, 1), sqlite3_column_int64(st, 2), db_text(st, 3),
                             sqlite3_column_int64(st, 4), db_text(st, 5), db_text(st, 6)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "listing labels");
}

int db_slide_labels(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_slide_label *r), void *ctx)
{
    sqlite3_stmt *st = prepare(db,
                               "SELECT s.id, s.name, s.label, s.patient, coalesce(l.import_id, 0) "
                               "FROM slides s LEFT JOIN slide_labels l ON l.slide_id = s.id "
                               "WHERE s.label IS NOT NULL AND (?1 = 0 OR s.id = ?1) ORDER BY s.id",
                               slide_id);
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_slide_label r = {sqlite3_column_int64(st, 0), db_text(st, 1), db_text(st, 2), text_or_null(st, 3),
                            sqlite3_column_int64(st, 4)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "listing labels");
}

int db_slides_regions(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_slide_regions *r), void *ctx)
{
    sqlite3_stmt *st = prepare(db,
                               "SELECT s.id, s.name, count(DISTINCT r.id), (SELECT group_concat(c, ', ') FROM (SELECT "
                               "DISTINCT c.name AS c FROM region_annotations r2 JOIN classes c ON c.id = r2.class_id "
                               "WHERE r2.slide_id = s.id ORDER BY c.name)), (SELECT count(*) FROM patch_labels pl "
                               "JOIN patches p ON p.id = pl.patch_id WHERE p.slide_id = s.id) "
                               "FROM region_annotations r JOIN slides s ON s.id = r.slide_id WHERE ?1 = 0 OR s.id = ?1 "
                               "GROUP BY s.id ORDER BY s.id",
                               slide_id);
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_slide_regions r = {sqlite3_column_int64(st, 0), db_text(st, 1), sqlite3_column_int64(st, 2), db_text(st, 3),
                              sqlite3_column_int64(st, 4)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "listing labels");
}

int db_regions(mp_db *db, int64_t slide_id, int (*fn)(void *ctx, const db_region *r), void *ctx)
{
    sqlite3_stmt *st = prepare(db,
                               "SELECT r.id, r.import_id, s.name, c.name, r.name, json_extract(r.geometry, '$.type'), "
                               "(SELECT count(*) FROM json_tree(r.geometry, '$.coordinates') t WHERE t.type = 'array' "
                               "AND json_array_length(t.value) >= 2 AND json_type(t.value, '$[0]') IN ('integer', "
                               "'real')) FROM region_annotations r JOIN slides s ON s.id = r.slide_id "
                               "JOIN classes c ON c.id = r.class_id WHERE ?1 = 0 OR r.slide_id = ?1 ORDER BY r.id",
                               slide_id);
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_region r = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), db_text(st, 2), db_text(st, 3),
                       text_or_null(st, 4), db_text(st, 5), sqlite3_column_int64(st, 6)};
        stop = fn(ctx, &r);
    }
    return db_walk_end(db, st, rc, stop, "listing labels");
}
