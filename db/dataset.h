/* db/dataset.h — typed reads for training and evaluation: the patches of a split with their
 * labels (patch label if present, else the slide's), the class table, and image blobs. */
#ifndef DB_DATASET_H
#define DB_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

typedef struct {
    int64_t patch_id;
    int slide;   /* index into db_itemset.slide_names */
    int label;   /* class id, -1 when unlabelled */
} db_item;

typedef struct {
    int n;
    db_item *items;          /* ordered by slide name, then patch id */
    int nslides;
    char **slide_names;
    int *slide_label;        /* class id or -1 */
    int nclasses;
    char **class_names;      /* by id 0..nclasses-1 */
} db_itemset;

/* Patches of the slides in `split` ("train", "val", "test", "unlabeled"). With labels_off the
 * labels are not read (every item is -1: e.g. the unlabeled pool). Class ids must be 0..n-1. */
int db_items_load(mp_db *db, const char *split, int labels_off, db_itemset *out);
void db_itemset_free(db_itemset *s);

/* The side of the items' square images at mag: every item must have one there, all of one size.
 * -1 + mp_err naming the first patch without one (and the magnifications it has) or of another
 * size, so the fix (tile with those --mags, or train at one) is plain. */
int db_items_image_side(mp_db *db, const db_item *items, int n, double mag, int *side);
/* For messages that say which step is missing: labels (slides with one + region labels) and the
 * rows of the split table. -1 on failure. */
int64_t db_count_labels(mp_db *db);
int64_t db_count_split_rows(mp_db *db);
int64_t db_count_classes(mp_db *db);

/* The patient recorded for a slide of this name (the first non-empty one), copied into out
 * (truncated to cap): 1, 0 when none is recorded, -1 + mp_err. */
int db_slide_patient(mp_db *db, const char *slide_name, char *out, size_t cap);
/* The magnifications the dataset's first patch has images at, ascending, at most max (the tiler
 * writes every magnification of a run for each patch). The count, or -1 + mp_err. */
int db_image_mags(mp_db *db, double *mags, int max);

/* Class names by id; *n receives the count. -1 + mp_err if ids are not 0..n-1. */
int db_classes_load(mp_db *db, char ***names, int *n);

/* Reader of image blobs at one magnification (a prepared statement; one per thread). */
typedef struct db_image_reader db_image_reader;
db_image_reader *db_image_reader_new(mp_db *db, double mag);
/* The blob of patch_id at the reader's magnification: *data is valid until the next call.
 * -1 + mp_err "DB: patch N has no image at 1.25x" when missing. */
int db_image_read(db_image_reader *r, int64_t patch_id, const uint8_t **data, size_t *len, int *is_png);
void db_image_reader_free(db_image_reader *r);

#endif
