/* pipelines/shard.h — `magpie run --shard I/N`: the I-th of N slices of a slide list, for a SLURM
 * job array (each task runs one slice into its own folder; `magpie db merge` and `magpie report`
 * put them back together). A slide belongs to shard 1 + XXH3-64(name) mod N, where name is the
 * slide's output name (its file stem, made unique over the whole list): the same slide lands in
 * the same shard whatever the manifest's order, whichever folder spelling led to it, and adding
 * slides to a manifest moves none of the others. Slices are balanced only statistically
 * (a shard of k slides varies by about sqrt(k)). */
#ifndef MP_SHARD_H
#define MP_SHARD_H

#include "pipelines/manifest.h"

typedef struct {
    int i, n;          /* 1 <= i <= n; n == 0: no sharding */
    char from[160];    /* where it came from: "--shard" or the SLURM variables, for messages */
} run_shard;

/* "I/N" with 1 <= I <= N <= 100000. 0, or -1 + mp_err quoting the argument. */
int shard_parse(const char *arg, run_shard *s);
/* From a SLURM job array: I = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1,
 * N = SLURM_ARRAY_TASK_COUNT. 0 with s->n = 0 when SLURM_ARRAY_TASK_ID is not set; -1 + mp_err
 * when the variables are inconsistent (an array with gaps, like --array=1,5,9). */
int shard_from_env(run_shard *s);
/* The shard (1..n) a slide of that output name belongs to. */
int shard_of(const char *name, int n);
/* The items of shard s, in their order, as a view of `all`: part->items is a new array of copies
 * of all's items (their strings stay owned by `all`); free it with shard_view_free. */
void shard_view(const mf_list *all, const run_shard *s, mf_list *part);
void shard_view_free(mf_list *part);
/* A run folder remembers its shard (dataset meta key "shard", "I/N"), so a task resubmitted
 * with another array size cannot quietly put other slides into it. 0 when the dataset at
 * db_path is absent or holds the same shard (it is recorded then), -1 + mp_err otherwise. */
int shard_check_folder(const char *db_path, const run_shard *s);

#endif
