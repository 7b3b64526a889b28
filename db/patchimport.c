/* db/patchimport.c — the rows of an imported patch set (see db/patchimport.h), written with
 * statements prepared once per import. */
#include "db/patchimport.h"
#include "db/sql.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

struct db_importer {
    mp_db *db;
    sqlite3_stmt *find, *del, *slide, *patch, *image, *cls_get, *cls_add;
};

void db_importer_free(db_importer *im)
{
    if (!im) return;
    sqlite3_finalize(im->find);
    sqlite3_finalize(im->del);
    sqlite3_finalize(im->slide);
    sqlite3_finalize(im->patch);
    sqlite3_finalize(im->image);
    sqlite3_finalize(im->cls_get);
    sqlite3_finalize(im->cls_add);
    free(im);
}

db_importer *db_importer_new(mp_db *db)
{
    db_importer *im = mp_xcalloc(1, sizeof *im);
    im->db = db;
    im->find = db_prepare(db, "SELECT id, fingerprint = ?2 AND params_hash IS ?3 AND status = 'done' AND label IS ?4 AND patient IS ?5 "
                              "FROM slides WHERE path = ?1");
    im->del = db_prepare(db, "DELETE FROM slides WHERE id = ?1"); /* patches, images, labels, splits cascade */
    im->slide = db_prepare(db, "INSERT INTO slides(path, name, patient, fingerprint, vendor, width, height, level_count, "
                               "mpp_x, mpp_y, mpp_source, params, params_hash, status, n_patches, label, started_at, finished_at) "
                               "VALUES (?1, ?2, ?3, ?4, 'patch-import', ?5, ?6, 1, ?7, ?7, '--mpp', ?8, ?8, 'done', 1, ?9, "
                               "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))");
    im->patch = db_prepare(db, "INSERT INTO patches(slide_id, gx, gy, x0, y0, size0, tissue, blur, pen, brightness) "
                               "VALUES (?1, 0, 0, 0, 0, ?2, 1.0, ?3, NULL, ?4)");
    im->image = db_prepare(db, "INSERT INTO images(patch_id, mag, width, height, level, scale, codec, data) "
                               "VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)");
    im->cls_get = db_prepare(db, "SELECT id FROM classes WHERE name = ?1");
    im->cls_add = db_prepare(db, "INSERT INTO classes(id, name) VALUES ((SELECT coalesce(max(id) + 1, 0) FROM classes), ?1)");
    if (!im->find || !im->del || !im->slide || !im->patch || !im->image || !im->cls_get || !im->cls_add) {
        db_importer_free(im);
        return NULL;
    }
    return im;
}

static int step_done(db_importer *im, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(im->db, what);
}

int db_importer_add(db_importer *im, const db_import_rec *r, int *kept)
{
    *kept = 0;
    sqlite3_stmt *st = im->find;
    sqlite3_bind_text(st, 1, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->params, -1, SQLITE_STATIC);
    if (r->label) sqlite3_bind_text(st, 4, r->label, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 4);
    if (r->patient) sqlite3_bind_text(st, 5, r->patient, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 5);
    int rc = sqlite3_step(st);
    int64_t old = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    int same = rc == SQLITE_ROW && sqlite3_column_int(st, 1);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(im->db, "finding a slide");
    if (same) {
        *kept = 1;
        return 0;
    }
    if (old >= 0) {
        sqlite3_bind_int64(im->del, 1, old);
        if (step_done(im, im->del, "replacing a slide")) return -1;
    }
    if (r->label) {
        sqlite3_bind_text(im->cls_get, 1, r->label, -1, SQLITE_STATIC);
        rc = sqlite3_step(im->cls_get);
        sqlite3_reset(im->cls_get);
        if (rc == SQLITE_DONE) {
            sqlite3_bind_text(im->cls_add, 1, r->label, -1, SQLITE_STATIC);
            if (step_done(im, im->cls_add, "adding a class")) return -1;
        } else if (rc != SQLITE_ROW) return db_fail(im->db, "reading classes");
    }
    st = im->slide;
    sqlite3_bind_text(st, 1, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
    if (r->patient) sqlite3_bind_text(st, 3, r->patient, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_text(st, 4, r->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, r->width);
    sqlite3_bind_int(st, 6, r->height);
    sqlite3_bind_double(st, 7, r->mpp);
    sqlite3_bind_text(st, 8, r->params, -1, SQLITE_STATIC);
    if (r->label) sqlite3_bind_text(st, 9, r->label, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, 9);
    if (step_done(im, st, "adding a slide")) return -1;
    int64_t sid = sqlite3_last_insert_rowid(db_sqlite(im->db));
    st = im->patch;
    sqlite3_bind_int64(st, 1, sid);
    sqlite3_bind_double(st, 2, r->width);
    sqlite3_bind_double(st, 3, r->blur);
    sqlite3_bind_double(st, 4, r->brightness);
    if (step_done(im, st, "adding a patch")) return -1;
    int64_t pid = sqlite3_last_insert_rowid(db_sqlite(im->db));
    for (int k = 0; k < r->n_images; k++) {
        const db_image_rec *g = &r->images[k];
        st = im->image;
        sqlite3_bind_int64(st, 1, pid);
        sqlite3_bind_double(st, 2, g->mag);
        sqlite3_bind_int(st, 3, g->width);
        sqlite3_bind_int(st, 4, g->height);
        sqlite3_bind_double(st, 5, g->scale);
        sqlite3_bind_text(st, 6, g->codec, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 7, g->data, (int)g->len, SQLITE_STATIC);
        if (step_done(im, st, "adding an image")) return -1;
    }
    return 0;
}
