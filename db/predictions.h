/* db/predictions.h — the predictions table (schema version 2): per-patch class probabilities
 * written by `magpie infer --db`, for curation queries (hard negatives, disagreements with
 * labels). One slide x checkpoint pair is replaced as a whole in one transaction, so a rerun
 * never duplicates rows and a crash leaves the previous rows. Errors: -1 + mp_err ("DB: ..."). */
#ifndef MP_DB_PREDICTIONS_H
#define MP_DB_PREDICTIONS_H

#include <stdint.h>

#include "db/db.h"

typedef struct {
    const char *slide_path, *slide_fingerprint;
    const char *model_path, *model_fingerprint;
    double mag;                 /* the model's magnification */
    double size0;               /* level-0 extent of every patch */
    int nclasses;
    char *const *class_names;
} db_pred_run;

typedef struct {
    int gx, gy;                 /* grid cell */
    int64_t x0, y0;             /* level-0 top-left of its patch */
    const float *prob;          /* nclasses probabilities */
} db_pred_cell;

/* Replace the rows of (slide fingerprint, model fingerprint) with cells[0..n). slide_id is set
 * when the dataset has a slide with that fingerprint. */
int db_predictions_put(mp_db *db, const db_pred_run *run, const db_pred_cell *cells, int64_t n);
/* Rows stored for (slide fingerprint, model fingerprint); -1 on error. */
int64_t db_predictions_count(mp_db *db, const char *slide_fingerprint, const char *model_fingerprint);

#endif
