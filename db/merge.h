/* db/merge.h — combine datasets (the shards of a `magpie run --shard I/N` job array) into one:
 * every table's rows are copied, slide, patch and prediction ids shifted past the target's,
 * classes matched by name. Refused before anything is written: a slide (same content
 * fingerprint, or same path) in two of the inputs, shards tiled with different parameters, a
 * half-tiled slide, a table merge does not know. All of it is one transaction in the target;
 * a new target is built beside it and renamed into place, so whenever the process dies the
 * target is as it was before or as it is after. */
#ifndef MP_DB_MERGE_H
#define MP_DB_MERGE_H

#include <stdint.h>

/* Parameters a slide may carry on its own (manifest columns mpp and min_tissue): they may
 * differ between slides and between shards. Every other key of slides.params must agree. */
#define DB_MERGE_PER_SLIDE_PARAMS "mpp", "min_tissue"

typedef struct {
    int64_t slides, patches, images, tile_errors, patch_labels, splits, predictions, classes_new;
} db_merge_counts;

/* Per-shard progress: called after each shard is copied (shard index, its counts). */
typedef void (*db_merge_progress_fn)(void *ctx, int shard, const char *path, const db_merge_counts *c);

/* Merge shards[0..n) into out_path (created when absent). Takes the target's tile lock for the
 * duration. total (may be NULL) receives the sums. 0, or -1 + mp_err (one line naming the
 * file(s) and the reason); on failure the target is unchanged. */
int db_merge(const char *out_path, char *const *shards, int n, db_merge_progress_fn progress, void *ctx,
             db_merge_counts *total);

/* The tables merge knows how to combine (NULL-terminated), for a test that keeps the list in
 * step with the schema. */
extern const char *const db_merge_tables[];

#endif
