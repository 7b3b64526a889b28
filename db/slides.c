/* db/slides.c — slide naming and removal for curation commands (see slides.h). */
#include "db/slides.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "db/sql.h"

int db_slide_match(mp_db *db, const char *arg, int allow_id, int64_t *id)
{
    int digits = allow_id && arg[0] != 0;
    for (const char *c = arg; digits && *c; c++) digits = *c >= '0' && *c <= '9';
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM slides WHERE path = ?1 OR name = ?1 OR "
                                      "(?2 AND CAST(id AS TEXT) = ?1)");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, digits);
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (n < 0) return db_fail(db, "finding a slide");
    if (n == 0) return 0;
    if (!digits) {
        /* db_find_slide would also take an all-digit name as an id: look the name up here */
        st = db_prepare(db, "SELECT id FROM slides WHERE path = ?1");
        if (!st) return -1;
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *id = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            return 1;
        }
        sqlite3_finalize(st);
        st = db_prepare(db, "SELECT id, path FROM slides WHERE name = ?1 ORDER BY id");
        if (!st) return -1;
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        char list[768] = "";
        size_t used = 0;
        int k = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (k++ == 0) *id = sqlite3_column_int64(st, 0);
            if (used < sizeof list)
                used += (size_t)snprintf(list + used, sizeof list - used, "%sslide %lld (%s)", k > 1 ? ", " : "",
                                         (long long)sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1));
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return db_fail(db, "finding a slide");
        if (k > 1)
            return mp_err_set("%s: '%s' names %d slides: %s; name one by its path", db_path(db), arg, k, list);
        return k == 1;
    }
    return db_find_slide(db, arg, id) == 0 ? 1 : -1;
}

static int exec_ids(mp_db *db, const char *sql, const int64_t *ids, int n)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    for (int i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_finalize(st);
            return db_fail(db, "removing slides");
        }
    }
    sqlite3_finalize(st);
    return 0;
}

int db_slides_remove(mp_db *db, const int64_t *ids, int n, int64_t *patches_out)
{
    if (db_begin(db)) return -1;
    int64_t patches = 0;
    sqlite3_stmt *cnt = db_prepare(db, "SELECT count(*) FROM patches WHERE slide_id = ?");
    for (int i = 0; cnt && i < n; i++) {
        sqlite3_reset(cnt);
        sqlite3_bind_int64(cnt, 1, ids[i]);
        if (sqlite3_step(cnt) == SQLITE_ROW) patches += sqlite3_column_int64(cnt, 0);
    }
    sqlite3_finalize(cnt);
    /* Children first, explicitly: foreign keys cascade only on connections with
     * foreign_keys = ON, and the dataset may have been written by other tools. */
    int rc = !cnt ? -1
           : exec_ids(db, "DELETE FROM images WHERE patch_id IN (SELECT id FROM patches WHERE slide_id = ?1)", ids, n) ||
             exec_ids(db, "DELETE FROM patch_labels WHERE patch_id IN (SELECT id FROM patches WHERE slide_id = ?1)", ids, n) ||
             exec_ids(db, "DELETE FROM patches WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM tile_errors WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM region_annotations WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM label_imports WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM slide_labels WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM splits WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM folds WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM predictions WHERE slide_id = ?1", ids, n) ||
             exec_ids(db, "DELETE FROM slides WHERE id = ?1", ids, n)
               ? -1 : 0;
    /* a CSV import none of whose rows is left names nothing any more */
    if (rc == 0)
        rc = db_exec(db, "DELETE FROM label_imports WHERE kind = 'csv' AND id NOT IN (SELECT import_id FROM slide_labels)");
    if (rc == 0) rc = db_commit(db);
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_exec(db, "ROLLBACK");
        return mp_err_set("%s", keep);
    }
    if (patches_out) *patches_out = patches;
    return 0;
}

static const char *text_or_null(sqlite3_stmt *st, int c) { return (const char *)sqlite3_column_text(st, c); }

int db_slides_each(mp_db *db, int64_t id, const char *path, int (*fn)(void *ctx, const db_slide_row *r), void *ctx)
{
    /* the JSON object is SQLite's (json_quote for names and errors that hold quotes) */
    sqlite3_stmt *st = db_prepare(
        db, "SELECT id, name, status, vendor, width, height, mpp_x, mpp_source, n_patches, error, label, patient, "
            "images, path, kind, n_bad_tiles, json_object('id', id, 'name', name, 'status', status, 'vendor', vendor, "
            "'width', width, 'height', height, 'mpp', mpp_x, 'mpp_source', mpp_source, 'patches', n_patches, "
            "'error', nullif(error, ''), 'label', nullif(label, ''), 'patient', nullif(patient, ''), "
            "'images', images, 'path', path, 'kind', kind), source "
            "FROM (SELECT s.id, s.name, s.status, coalesce(s.vendor,'-') AS vendor, coalesce(s.width,0) AS width, "
            "coalesce(s.height,0) AS height, s.mpp_x, coalesce(s.mpp_source,'-') AS mpp_source, s.n_patches, "
            "coalesce(s.error,'') AS error, coalesce(s.label,'') AS label, coalesce(s.patient,'') AS patient, "
            "coalesce((SELECT group_concat(printf('%gx:%d', mag, n), ' ') FROM (SELECT i.mag, count(*) n FROM images i "
            "JOIN patches p ON p.id = i.patch_id WHERE p.slide_id = s.id GROUP BY i.mag ORDER BY i.mag DESC)), '') "
            "AS images, s.path, s.kind, s.n_bad_tiles, s.mpp_source AS source FROM slides s "
            "WHERE (?1 = 0 AND ?2 IS NULL) OR s.id = ?1 OR s.path = ?2) ORDER BY id");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    if (path) sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_slide_row r = {.id = sqlite3_column_int64(st, 0),
                          .name = text_or_null(st, 1),
                          .status = text_or_null(st, 2),
                          .vendor = text_or_null(st, 3),
                          .width = sqlite3_column_int(st, 4),
                          .height = sqlite3_column_int(st, 5),
                          .has_mpp = sqlite3_column_type(st, 6) != SQLITE_NULL,
                          .mpp = sqlite3_column_double(st, 6),
                          .mpp_source = text_or_null(st, 17),
                          .patches = sqlite3_column_int64(st, 8),
                          .error = text_or_null(st, 9),
                          .label = text_or_null(st, 10),
                          .patient = text_or_null(st, 11),
                          .images = text_or_null(st, 12),
                          .path = text_or_null(st, 13),
                          .kind = text_or_null(st, 14),
                          .bad_tiles = sqlite3_column_int64(st, 15),
                          .json = text_or_null(st, 16)};
        stop = fn(ctx, &r);
    }
    if (!stop && rc != SQLITE_DONE) stop = db_fail(db, "slides");
    sqlite3_finalize(st);
    return stop;
}

int db_slide_mask(mp_db *db, int64_t id, const char *path, void **png, size_t *len)
{
    *png = NULL;
    *len = 0;
    sqlite3_stmt *st = db_prepare(db, path ? "SELECT mask FROM slides WHERE path = ?2" : "SELECT mask FROM slides WHERE id = ?1");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    if (path) sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    if (found && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *png = mp_xmalloc(*len ? *len : 1);
        if (*len) memcpy(*png, sqlite3_column_blob(st, 0), *len);
    }
    if (!found && rc != SQLITE_DONE) found = db_fail(db, "reading a tissue mask");
    sqlite3_finalize(st);
    return found;
}

int db_slide_mpp_path(mp_db *db, int64_t id, int *has_mpp, double *mpp, char *path, size_t cap)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT mpp_x, path FROM slides WHERE id = ?1");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    if (found) {
        *has_mpp = sqlite3_column_type(st, 0) != SQLITE_NULL;
        *mpp = sqlite3_column_double(st, 0);
        snprintf(path, cap, "%s", (const char *)sqlite3_column_text(st, 1));
    } else if (rc != SQLITE_DONE) found = db_fail(db, "reading a slide");
    sqlite3_finalize(st);
    return found;
}

int db_tiled_slides(mp_db *db, int (*fn)(void *ctx, int64_t id, const char *path), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT id, path FROM slides WHERE status = 'done' AND "
                                      "coalesce(vendor, '') != 'patch-import' ORDER BY id");
    if (!st) return -1;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *path = (const char *)sqlite3_column_text(st, 1);
        if (path) stop = fn(ctx, sqlite3_column_int64(st, 0), path);
    }
    if (!stop && rc != SQLITE_DONE) stop = db_fail(db, "slides");
    sqlite3_finalize(st);
    return stop;
}

double db_slide_mask_downsample(mp_db *db, int64_t id)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT mask_downsample FROM slides WHERE id = ?1");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    double ds = rc == SQLITE_ROW ? sqlite3_column_double(st, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) ds = db_fail(db, "reading a tissue mask");
    sqlite3_finalize(st);
    return ds;
}

int db_slide_patches(mp_db *db, int64_t slide_id, int limit, int (*fn)(void *ctx, const db_patch_place *p), void *ctx)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT id, x0, y0, size0, tissue FROM patches WHERE slide_id = ? ORDER BY id "
                                      "LIMIT ?");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, slide_id);
    sqlite3_bind_int(st, 2, limit);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        db_patch_place p = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                            sqlite3_column_double(st, 3), sqlite3_column_double(st, 4)};
        stop = fn(ctx, &p);
    }
    if (!stop && rc != SQLITE_DONE) stop = db_fail(db, "patches");
    sqlite3_finalize(st);
    return stop;
}

int db_patch_image(mp_db *db, int64_t patch_id, double mag, char *codec, size_t cap, void **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT codec, data FROM images WHERE patch_id = ?1 AND (?2 = 0 OR "
                                      "abs(mag - ?2) < 1e-6) ORDER BY mag DESC LIMIT 1");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, patch_id);
    sqlite3_bind_double(st, 2, mag);
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    if (found) {
        const char *c = (const char *)sqlite3_column_text(st, 0);
        snprintf(codec, cap, "%s", c ? c : "");
        *len = (size_t)sqlite3_column_bytes(st, 1);
        *data = mp_xmalloc(*len ? *len : 1);
        if (*len) memcpy(*data, sqlite3_column_blob(st, 1), *len);
    } else if (rc != SQLITE_DONE) found = db_fail(db, "reading a patch image");
    sqlite3_finalize(st);
    return found;
}
