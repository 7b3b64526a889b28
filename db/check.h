/* db/check.h — integrity check of a dataset: every patch has all its images, every blob
 * decodes to its recorded size, no orphans, slide bookkeeping agrees with the rows. */
#ifndef MP_DB_CHECK_H
#define MP_DB_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "db/db.h"

/* Decodes a blob and reports its size; 0 on success, -1 + mp_err otherwise. Supplied by the
 * caller (db/ does not link image codecs). */
typedef int (*db_decode_fn)(const void *data, size_t len, const char *codec, int *w, int *h);

/* Called once per problem found, with a one-line description. */
typedef void (*db_problem_fn)(void *ctx, const char *msg);

typedef struct {
    int64_t slides, patches, images, blobs_decoded;
    int64_t problems;
    int64_t in_progress; /* slides a running tiler is working on (reported, not problems) */
} db_check_result;

/* Runs every check in one read transaction, so the counts and every rule see the same state
 * even while a tiler writes; decode may be NULL to skip blob decoding. A slide left 'tiling'
 * is a problem (an interrupted run) unless a tiler holds the dataset's lock now: then it is
 * reported as in progress ("in progress: ...") and counted in res->in_progress. Returns 0 when
 * the check could run (problems are counted in res->problems), -1 + mp_err when the database
 * can't be read. */
int db_check(mp_db *db, db_decode_fn decode, db_problem_fn report, void *ctx, db_check_result *res);

#endif
