/* db/sampling.h — class-balanced sampling lists (`magpie db DB balance`, `magpie train
 * --sampling FILE`). The file is a CSV with the header
 *     patch_id,class,group,weight
 * one row per labelled patch of a split; weights are >= 0 and sum to 1, every class present gets
 * the same total (1/K), and inside a class the weight is shared equally by patch, by slide or by
 * patient (then equally over that group's patches of the class). The trainer draws each epoch
 * as many patches as it has, with replacement, with these probabilities (PyTorch's
 * WeightedRandomSampler); patches the file does not list are not drawn. */
#ifndef MP_DB_SAMPLING_H
#define MP_DB_SAMPLING_H

#include <stdint.h>

#include "db/db.h"

enum { DB_BALANCE_PATCH, DB_BALANCE_SLIDE, DB_BALANCE_PATIENT };

typedef struct {
    int n;
    int64_t *patch_id;
    int *cls;       /* class id */
    char **group;   /* slide name or patient ("" by patch) */
    double *weight;
    int nclasses;   /* classes present */
} db_sampling;

/* Balanced weights over the labelled patches of `split` (label rule: region label, else the
 * slide's; patient = slides.patient, else the slide's name). -1 + mp_err (no labelled patches). */
int db_sampling_make(mp_db *db, const char *split, int by, db_sampling *out);
/* Write atomically as CSV (libcsv quoting). */
int db_sampling_write(const db_sampling *s, const char *path);
/* Read and check a file: the header, a whole-number patch id (no duplicates) and a finite weight
 * >= 0 on every row, a positive total; "FILE:LINE: reason". cls and group are read as given. */
int db_sampling_read(const char *path, db_sampling *out);
void db_sampling_free(db_sampling *s);

#endif
