/* db/stats.h — what `db info` and `db stats` count: slides by status, storage and QC score
 * distributions, patches per class, split and magnification, the tissue-fraction histogram, and
 * where the slides' MPP came from. Listings walk rows through a callback whose non-zero return
 * stops the walk and is returned; strings are borrowed until it returns. 0 (or the count asked
 * for), or -1 + mp_err ("DB: ..."). */
#ifndef DB_STATS_H
#define DB_STATS_H

#include <stdint.h>

#include "db/db.h"

/* Split names in the splits table other than train, val, test and unlabeled, in name order. */
int db_other_splits(mp_db *db, int (*fn)(void *ctx, const char *split), void *ctx);

typedef struct {
    double mag;
    const char *class_name; /* the patch's region label, else its slide's, else "(unlabelled)" */
    const char *split;      /* "(none)" for slides without a split */
    int64_t patches;
} db_class_split_mag;

/* Patches (images) per magnification, class and split: magnification high to low, then class. */
int db_class_split_mags(mp_db *db, int (*fn)(void *ctx, const db_class_split_mag *r), void *ctx);

/* Patches per tissue-fraction bin of 0.1 (bin 9 holds 0.9..1.0 inclusive). */
int db_tissue_histogram(mp_db *db, int64_t bins[10]);

typedef struct {
    const char *source; /* slides.mpp_source, "(none)" */
    int64_t slides;
    int has_mpp;        /* some slide of this source has an MPP: min..max */
    double min, max;
} db_mpp_source;

/* Slides per MPP source, most slides first (then by name). */
int db_mpp_sources(mp_db *db, int (*fn)(void *ctx, const db_mpp_source *r), void *ctx);

/* Rows of the slides and patches tables; -1 + mp_err. */
int64_t db_slides_count(mp_db *db);
int64_t db_patches_count(mp_db *db);

/* `db info`'s counts. */
typedef struct {
    int64_t schema;                                /* PRAGMA user_version */
    int64_t slides, done, failed, tiling, pending; /* slides by status */
    int64_t patches, tile_errors, classes;
    int64_t labelled_slides, patch_labels, split_rows;
} db_summary;
int db_summary_get(mp_db *db, db_summary *out);

typedef struct {
    double mag;
    int64_t images;
    int max_width, max_height;
    const char *codecs;       /* "jpeg,png" */
    double kib_total, kib_mean; /* of the stored blobs */
    const char *levels;       /* the slide levels read for it, "0,1" */
    double scale_min, scale_max;
} db_mag_storage;

/* Images per magnification, high to low. */
int db_mag_storage_each(mp_db *db, int (*fn)(void *ctx, const db_mag_storage *r), void *ctx);

/* The classes in id order. */
int db_classes_each(mp_db *db, int (*fn)(void *ctx, int64_t id, const char *name), void *ctx);

/* Magnifications stored: how many distinct (-1 + mp_err); one of them (1 + *mag, 0 when there
 * are no images, -1); the images at mag (within 1e-3; -1 + mp_err). */
int64_t db_mags_count(mp_db *db);
int db_mag_any(mp_db *db, double *mag);
int64_t db_mag_images(mp_db *db, double mag);

/* Slides and patches per split, in split name order (patients and labelled are 0). */
typedef struct {
    const char *split;
    int64_t slides, patches;
} db_split_patches;
int db_split_patches_each(mp_db *db, int (*fn)(void *ctx, const db_split_patches *r), void *ctx);

/* The patch QC scores: "tissue", "blur", "pen", "brightness" (another name is an error). */
/* Patches with a value of the score; -1 + mp_err. */
int64_t db_qc_scored(mp_db *db, const char *score);
/* The score's value at rank `offset` (0 = the lowest): 1 + *v, 0 when there is none, -1. */
int db_qc_at(mp_db *db, const char *score, int64_t offset, double *v);

/* Patches per class (region label, else slide label, else "(unlabelled)"), in class name order. */
int db_class_patches_each(mp_db *db, int (*fn)(void *ctx, const char *class_name, int64_t patches), void *ctx);

#endif
