/* db/split.h — patient-grouped, label-stratified train/val/test splits of a magpie dataset.
 * Splits are by slide; all slides of one patient land in one split, so no patient is ever in
 * two of train/val/test. Slides without a label go to 'unlabeled'. */
#ifndef DB_SPLIT_H
#define DB_SPLIT_H

#include <stdint.h>

#include "db/db.h"

typedef struct {
    double ratios[3];        /* train, val, test: fractions summing to 1, or (counts) patients per class */
    int counts;              /* 1: ratios are whole patient counts per class (per stratum); the patients
                              * beyond them go to train */
    int folds;               /* > 1: patient-grouped, stratified k-fold instead of train/val/test */
    int fold;                /* with folds: the fold that becomes val (0-based); the others are train */
    int stratify;            /* 1: by slide label (the patient's majority label) */
    uint64_t seed;
    double unlabeled_ratio;  /* share of labelled patients held out as 'unlabeled' (0..1) */
    const char **unlabeled;  /* slide names whose patients are held out as 'unlabeled' */
    int n_unlabeled;
} db_split_opts;

typedef struct {
    int slides[4], patients[4]; /* train, val, test, unlabeled */
    int fold_patients[64];      /* with folds: patients per fold */
} db_split_report;

/* The split names the splits table holds, and whether `name` is one of them (1/0). */
#define DB_SPLIT_NAMES "train, val, test, unlabeled"
int db_split_known(const char *name);

/* Replace the splits table (and the folds table: emptied, or filled with --folds). Never leaves
 * a split that was asked for (ratio > 0) empty: when the patients cannot fill every split
 * (stratified: every split with every class), -1 + mp_err saying how many patients each class
 * has, and nothing is written. -1 + mp_err also on bad options or an unknown slide in
 * `unlabeled`. One transaction. */
int db_split_make(mp_db *db, const db_split_opts *o, db_split_report *rep);

/* Verify the splits table: -1 + mp_err "DB: patient P is in two splits (train and test)" when
 * a patient's slides are in two of train/val/test, or in two folds. Unlabeled slides of a
 * patient in train are allowed (both are training data). */
int db_split_check(mp_db *db);

/* Every leak (a patient in two of train/val/test, in unlabeled and val/test, in two folds, or
 * folds of different K), one line each to fn. Returns how many, or -1 + mp_err. Works on any
 * schema version (no folds table: no fold checks). */
int db_split_leaks(mp_db *db, void (*fn)(void *ctx, const char *msg), void *ctx);

/* The split of the slide at path (as stored): set to split, or cleared when split is NULL or "".
 * A path no slide has changes nothing. Runs inside the caller's transaction (magpie run's
 * manifest). 0, or -1 + mp_err. */
int db_split_set(mp_db *db, const char *path, const char *split);

#endif
