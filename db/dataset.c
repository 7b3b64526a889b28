/* db/dataset.c — typed reads of a split's patches, labels and image blobs for the trainer's
 * loader. Label rule: a patch label (region annotation) wins over its slide's label. */
#include "db/dataset.h"
#include "db/sql.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"

int db_classes_load(mp_db *db, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    int64_t cnt = db_query_int(db, "SELECT count(*) FROM classes");
    if (cnt < 0) return -1;
    if (cnt > 0 && db_query_int(db, "SELECT max(id) FROM classes") != cnt - 1)
        return mp_err_set("%s: class ids are not 0..%d", db_path(db), (int)cnt - 1);
    sqlite3_stmt *st = db_prepare(db, "SELECT id, name FROM classes ORDER BY id");
    if (!st) return -1;
    char **v = mp_xcalloc(cnt + 1, sizeof(char *));
    while (sqlite3_step(st) == SQLITE_ROW) {
        int id = sqlite3_column_int(st, 0);
        if (id >= 0 && id < cnt) v[id] = mp_xstrdup((const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    *names = v;
    *n = (int)cnt;
    return 0;
}

void db_itemset_free(db_itemset *s)
{
    if (!s) return;
    for (int i = 0; i < s->nslides; i++) free(s->slide_names[i]);
    for (int i = 0; i < s->nclasses; i++) free(s->class_names[i]);
    free(s->slide_names);
    free(s->slide_label);
    free(s->class_names);
    free(s->items);
    memset(s, 0, sizeof *s);
}

int db_items_load(mp_db *db, const char *split, int labels_off, db_itemset *out)
{
    memset(out, 0, sizeof *out);
    if (db_classes_load(db, &out->class_names, &out->nclasses) < 0) return -1;
    sqlite3_stmt *st = db_prepare(db,
        "SELECT p.id, s.name, c.id, pl.class_id FROM patches p "
        "JOIN slides s ON s.id = p.slide_id JOIN splits sp ON sp.slide_id = s.id "
        "LEFT JOIN classes c ON c.name = s.label LEFT JOIN patch_labels pl ON pl.patch_id = p.id "
        "WHERE sp.split = ? ORDER BY s.name, p.id");
    if (!st) {
        db_itemset_free(out);
        return -1;
    }
    sqlite3_bind_text(st, 1, split, -1, SQLITE_STATIC);
    int cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *sname = (const char *)sqlite3_column_text(st, 1);
        if (!out->nslides || strcmp(out->slide_names[out->nslides - 1], sname)) {
            out->slide_names = mp_xrealloc(out->slide_names, sizeof(char *) * (out->nslides + 1));
            out->slide_label = mp_xrealloc(out->slide_label, sizeof(int) * (out->nslides + 1));
            out->slide_names[out->nslides] = mp_xstrdup(sname);
            out->slide_label[out->nslides] =
                labels_off || sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 2);
            out->nslides++;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 1024;
            out->items = mp_xrealloc(out->items, sizeof(db_item) * cap);
        }
        db_item *it = &out->items[out->n++];
        it->patch_id = sqlite3_column_int64(st, 0);
        it->slide = out->nslides - 1;
        it->label = labels_off ? -1
                  : sqlite3_column_type(st, 3) != SQLITE_NULL ? sqlite3_column_int(st, 3)
                                                              : out->slide_label[out->nslides - 1];
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        db_itemset_free(out);
        return db_fail(db, "reading patches");
    }
    return 0;
}

struct db_image_reader {
    mp_db *db;
    double mag;
    sqlite3_stmt *st;
};

db_image_reader *db_image_reader_new(mp_db *db, double mag)
{
    /* Magnifications are stored as REAL; match with a tolerance (1.25 vs 1.2500001). */
    sqlite3_stmt *st = db_prepare(db, "SELECT codec, data FROM images WHERE patch_id = ? AND abs(mag - ?) < 1e-3");
    if (!st) return NULL;
    db_image_reader *r = mp_xcalloc(1, sizeof *r);
    r->db = db;
    r->mag = mag;
    r->st = st;
    return r;
}

int db_image_read(db_image_reader *r, int64_t patch_id, const uint8_t **data, size_t *len, int *is_png)
{
    sqlite3_reset(r->st);
    sqlite3_bind_int64(r->st, 1, patch_id);
    sqlite3_bind_double(r->st, 2, r->mag);
    int rc = sqlite3_step(r->st);
    if (rc == SQLITE_DONE)
        return mp_err_set("%s: patch %lld has no image at %gx", db_path(r->db), (long long)patch_id, r->mag);
    if (rc != SQLITE_ROW) return db_fail(r->db, "reading an image");
    const char *codec = (const char *)sqlite3_column_text(r->st, 0);
    *is_png = codec && !strcmp(codec, "png");
    *data = sqlite3_column_blob(r->st, 1);
    *len = (size_t)sqlite3_column_bytes(r->st, 1);
    return 0;
}

void db_image_reader_free(db_image_reader *r)
{
    if (!r) return;
    sqlite3_finalize(r->st);
    free(r);
}

int db_items_image_side(mp_db *db, const db_item *items, int n, double mag, int *size)
{
    /* checked up front by the loader, not mid-epoch */
    sqlite3_stmt *st = db_prepare(db, "SELECT width, height FROM images WHERE patch_id = ? AND abs(mag - ?) < 1e-3");
    if (!st) return -1;
    *size = 0;
    for (int i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, items[i].patch_id);
        sqlite3_bind_double(st, 2, mag);
        if (sqlite3_step(st) != SQLITE_ROW) {
            sqlite3_finalize(st);
            /* name what there is, so the fix (tile again with these --mags, or train at one) is plain */
            char have[256] = "none";
            st = db_prepare(db, "SELECT group_concat(m, ', ') FROM (SELECT DISTINCT printf('%gx', mag) AS m FROM images "
                                "WHERE patch_id = ?1 ORDER BY mag DESC)");
            if (st) {
                sqlite3_bind_int64(st, 1, items[i].patch_id);
                if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
                    snprintf(have, sizeof have, "%s", (const char *)sqlite3_column_text(st, 0));
                sqlite3_finalize(st);
            }
            return mp_err_set("%s: patch %lld has no image at %gx (it has: %s; tile with --mags including %g, or "
                              "train at one of those)",
                              db_path(db), (long long)items[i].patch_id, mag, have, mag);
        }
        int w = sqlite3_column_int(st, 0), h = sqlite3_column_int(st, 1);
        if (w != h || (*size && w != *size)) {
            sqlite3_finalize(st);
            return mp_err_set("%s: patch %lld at %gx is %dx%d, other patches are %dx%d", db_path(db),
                              (long long)items[i].patch_id, mag, w, h, *size, *size);
        }
        *size = w;
    }
    sqlite3_finalize(st);
    return 0;
}

int64_t db_count_labels(mp_db *db)
{
    return db_query_int(db, "SELECT (SELECT count(*) FROM slides WHERE label IS NOT NULL) + "
                            "(SELECT count(*) FROM patch_labels)");
}

int64_t db_count_split_rows(mp_db *db) { return db_query_int(db, "SELECT count(*) FROM splits"); }

int64_t db_count_classes(mp_db *db) { return db_query_int(db, "SELECT count(*) FROM classes"); }

int db_slide_patient(mp_db *db, const char *slide_name, char *out, size_t cap)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT patient FROM slides WHERE name = ? AND patient IS NOT NULL AND "
                                      "patient <> '' LIMIT 1");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, slide_name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    if (found) snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (rc != SQLITE_DONE) found = db_fail(db, "reading a patient");
    sqlite3_finalize(st);
    return found;
}

int db_image_mags(mp_db *db, double *mags, int max)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT mag FROM images WHERE patch_id = (SELECT MIN(patch_id) FROM images) "
                                      "ORDER BY mag LIMIT ?");
    if (!st) return -1;
    sqlite3_bind_int(st, 1, max);
    int n = 0;
    while (n < max && sqlite3_step(st) == SQLITE_ROW) mags[n++] = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return n;
}
