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

#endif
