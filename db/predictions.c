/* db/predictions.c — writes and counts of the predictions table. */
#include "db/predictions.h"
#include "db/sql.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int64_t db_predictions_count(mp_db *db, const char *slide_fp, const char *model_fp)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*) FROM predictions WHERE slide_fingerprint = ? AND model_fingerprint = ?");
    if (!st) return -1;
    sqlite3_bind_text(st, 1, slide_fp, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, model_fp, -1, SQLITE_TRANSIENT);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    else db_fail(db, "predictions");
    sqlite3_finalize(st);
    return n;
}

int db_predictions_put(mp_db *db, const db_pred_run *run, const db_pred_cell *cells, int64_t n)
{
    if (run->nclasses < 1) return mp_err_set("%s: predictions without classes", db_path(db));
    sqlite3_stmt *del = NULL, *ins = NULL, *sid = NULL;
    if (db_begin(db)) return -1;
    int64_t slide_id = 0;
    sid = db_prepare(db, "SELECT id FROM slides WHERE fingerprint = ? ORDER BY id LIMIT 1");
    del = db_prepare(db, "DELETE FROM predictions WHERE slide_fingerprint = ? AND model_fingerprint = ?");
    ins = db_prepare(db, "INSERT INTO predictions(slide_id, slide_path, slide_fingerprint, model_fingerprint, model_path, "
                         "mag, gx, gy, x0, y0, size0, class_id, class_name, confidence, probs) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    int rc = (sid && del && ins) ? 0 : -1;
    if (!rc) {
        sqlite3_bind_text(sid, 1, run->slide_fingerprint, -1, SQLITE_TRANSIENT);
        int s = sqlite3_step(sid);
        if (s == SQLITE_ROW) slide_id = sqlite3_column_int64(sid, 0);
        else if (s != SQLITE_DONE) rc = db_fail(db, "predictions: slide lookup");
    }
    if (!rc) {
        sqlite3_bind_text(del, 1, run->slide_fingerprint, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(del, 2, run->model_fingerprint, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(del) != SQLITE_DONE) rc = db_fail(db, "predictions: replace");
    }
    for (int64_t i = 0; i < n && !rc; i++) {
        const db_pred_cell *c = &cells[i];
        int best = 0;
        json_t *arr = json_array();
        for (int k = 0; k < run->nclasses; k++) {
            if (c->prob[k] > c->prob[best]) best = k;
            json_array_append_new(arr, json_real(c->prob[k]));
        }
        char *probs = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(9));
        json_decref(arr);
        if (!probs) {
            rc = mp_err_set("%s: predictions: cannot encode probabilities", db_path(db));
            break;
        }
        sqlite3_reset(ins);
        if (slide_id > 0) sqlite3_bind_int64(ins, 1, slide_id);
        else sqlite3_bind_null(ins, 1);
        sqlite3_bind_text(ins, 2, run->slide_path, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, run->slide_fingerprint, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, run->model_fingerprint, -1, SQLITE_STATIC);
        if (run->model_path) sqlite3_bind_text(ins, 5, run->model_path, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ins, 5);
        sqlite3_bind_double(ins, 6, run->mag);
        sqlite3_bind_int(ins, 7, c->gx);
        sqlite3_bind_int(ins, 8, c->gy);
        sqlite3_bind_int64(ins, 9, c->x0);
        sqlite3_bind_int64(ins, 10, c->y0);
        sqlite3_bind_double(ins, 11, run->size0);
        sqlite3_bind_int(ins, 12, best);
        sqlite3_bind_text(ins, 13, run->class_names[best] ? run->class_names[best] : "", -1, SQLITE_STATIC);
        sqlite3_bind_double(ins, 14, c->prob[best]);
        sqlite3_bind_text(ins, 15, probs, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(ins) != SQLITE_DONE) rc = db_fail(db, "predictions: insert");
        free(probs);
    }
    sqlite3_finalize(sid);
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (rc) {
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", mp_err());
        db_rollback(db);
        return mp_err_set("%s", keep);
    }
    return db_commit(db);
}
