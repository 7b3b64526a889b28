/* db/splits.h — what the split tables hold, read back for `db splits`: slides, patients and
 * patches per split, patients per split and class, and the folds of `db split --folds`.
 * (Making splits is db/split.h.) Patients are s.patient, else the slide's name. Splits come in
 * the order train, val, test, then any other. Errors: -1 + mp_err ("DB: ..."). */
#ifndef DB_SPLITS_H
#define DB_SPLITS_H

#include <stdint.h>

#include "db/db.h"

/* Slides with a split (0 = no split yet); -1 on error. */
int64_t db_splits_slides(mp_db *db);
/* Slides with a fold (0 when the dataset has no folds table); -1 on error. */
int64_t db_splits_folds(mp_db *db);

typedef struct {
    const char *split;
    int64_t slides, patients, patches;
    int64_t labelled; /* patches with a slide label or a region label */
} db_split_size;

/* One row per split in the splits table, in split order. 0, or -1 + mp_err (fn's non-zero return
 * stops the walk and is returned). Borrowed strings live until fn returns. */
int db_split_sizes(mp_db *db, int (*fn)(void *ctx, const db_split_size *r), void *ctx);

typedef struct {
    const char *split;
    const char *label; /* the slide label, "(none)" when the slide has none */
    int64_t patients;
} db_split_class;

/* Patients per split and slide label: rows in split order, then label order. */
int db_split_classes(mp_db *db, int (*fn)(void *ctx, const db_split_class *r), void *ctx);

typedef struct {
    int fold;
    int64_t patients, slides;
    int is_val;           /* one of its slides is in val now */
    const char *classes;  /* patients per slide label: "LABEL N, LABEL N" in label order */
} db_fold_size;

/* One row per fold in fold order. */
int db_fold_sizes(mp_db *db, int (*fn)(void *ctx, const db_fold_size *r), void *ctx);

typedef struct {
    const char *class_name;
    int64_t train, val, test, unlabeled; /* patches of slides with this label, per split */
} db_class_patches;

/* Patches per slide label and split, one row per class with patches in a split, in class id
 * order. */
int db_class_split_patches(mp_db *db, int (*fn)(void *ctx, const db_class_patches *r), void *ctx);

#endif
