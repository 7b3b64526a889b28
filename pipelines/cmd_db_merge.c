/* pipelines/cmd_db_merge.c — `magpie db merge OUT SHARD...` (also `magpie db OUT merge SHARD...`):
 * the shard datasets of a job array into one (db/merge.h does the work and the refusing). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "db/db.h"
#include "db/merge.h"
#include "db/stats.h"
#include "pipelines/cmds.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: magpie db merge OUT SHARD... [-q]\n\n"
               "Copies every slide of the SHARD datasets (e.g. the dataset.db of each `magpie run --shard I/N`)\n"
               "into OUT, created when absent: patches, images, tissue masks, QC, labels, patients, splits,\n"
               "classes (matched by name), tile errors and predictions. Slide, patch and prediction ids are\n"
               "shifted past OUT's. Refused, with nothing written: a slide (same content fingerprint, or same\n"
               "path) in two of the datasets, shards tiled with different parameters (per-slide mpp and\n"
               "min_tissue excepted), a slide left half-tiled, a shard being written now. One transaction:\n"
               "interrupted at any point, OUT is as before or as after.\n\n"
               "  -q, --quiet    only warnings and errors\n");
}

static void on_shard(void *ctx, int shard, const char *path, const db_merge_counts *c)
{
    (void)ctx;
    (void)shard;
    mp_info("merged %s: %lld slides, %lld patches, %lld images, %lld predictions", path, (long long)c->slides,
            (long long)c->patches, (long long)c->images, (long long)c->predictions);
}

int cmd_db_merge(const char *out, int argc, char **argv)
{
    if (out && (!strcmp(out, "--help") || !strcmp(out, "-h"))) {
        usage(stdout);
        return MP_EXIT_OK;
    }
    static const struct option lo[] = {{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    int ch;
    while ((ch = mp_getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return MP_EXIT_OK;
        }
        if (ch == 'q') mp_log_set_quiet(1);
        else return mp_usage_error("db merge", "db merge", "%s", mp_err());
    }
    if (!out || optind >= argc) return mp_usage_error("db merge", "db merge", "wants OUT and at least one SHARD");
    char **shards = argv + optind;
    int n = argc - optind;
    double t0 = mp_now();
    db_merge_counts c;
    int rc = db_merge(out, shards, n, on_shard, NULL, &c);
    if (rc) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    mp_db *db = db_open(out, DB_OPEN_READONLY);
    if (db) {
        mp_info("%s: %lld slides, %lld patches after merging %d dataset%s (%.1f s)", out,
                (long long)db_slides_count(db),
                (long long)db_patches_count(db), n, n == 1 ? "" : "s", mp_now() - t0);
        db_close(db);
    }
    return MP_EXIT_OK;
}
