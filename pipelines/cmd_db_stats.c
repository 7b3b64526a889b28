/* pipelines/cmd_db_stats.c — the curation part of `magpie db DB stats`: patches per class x split
 * x magnification, the tissue-fraction histogram, and where the slides' MPP came from. Called by
 * cmd_db.c's stats after its storage and QC tables. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "db/db.h"
#include "db/stats.h"
#include "pipelines/cmds.h"

#define MAX_SPLITS 16

/* The table under construction: one row per class, a header per magnification. */
typedef struct {
    char splits[MAX_SPLITS][64]; /* the split columns; the last is "(none)" and takes any other */
    int ns;
    double cur_mag;
    char cur_cls[256];
    int64_t row[MAX_SPLITS];
    int have;
} table;

static int add_split(void *ctx, const char *split)
{
    table *t = ctx;
    if (t->ns < MAX_SPLITS - 1) snprintf(t->splits[t->ns++], 64, "%s", split);
    return 0;
}

static void flush_row(table *t)
{
    if (!t->have) return;
    int64_t tot = 0;
    char esc[256];
    printf("  %-18.18s", mp_escape_ctrl(t->cur_cls, esc, sizeof esc));
    for (int k = 0; k < t->ns; k++) printf(" %9lld", (long long)t->row[k]), tot += t->row[k];
    printf(" %9lld\n", (long long)tot);
    memset(t->row, 0, sizeof t->row);
    t->have = 0;
}

static int add_cell(void *ctx, const db_class_split_mag *r)
{
    table *t = ctx;
    if (r->mag != t->cur_mag || strcmp(r->class_name, t->cur_cls)) flush_row(t);
    if (r->mag != t->cur_mag) {
        printf("  %gx%*s", r->mag, 18 - snprintf(NULL, 0, "%gx", r->mag), "");
        for (int k = 0; k < t->ns; k++) printf(" %9.9s", t->splits[k]);
        printf(" %9s\n", "total");
        t->cur_mag = r->mag;
    }
    snprintf(t->cur_cls, sizeof t->cur_cls, "%s", r->class_name);
    int k = t->ns - 1;
    for (int j = 0; j < t->ns; j++)
        if (!strcmp(r->split, t->splits[j])) k = j;
    t->row[k] += r->patches;
    t->have = 1;
    return 0;
}

static int print_source(void *ctx, const db_mpp_source *r)
{
    (void)ctx;
    printf("  %-18s %5lld slides", r->source, (long long)r->slides);
    if (r->has_mpp) printf("  %.4f..%.4f um/px", r->min, r->max);
    printf("\n");
    return 0;
}

int cmd_db_stats_curation(mp_db *db)
{
    /* the split columns: magpie's four in their order, then any other the dataset holds */
    table t = {.ns = 0};
    const char *mine[] = {"train", "val", "test", "unlabeled"};
    for (int k = 0; k < 4; k++) snprintf(t.splits[t.ns++], 64, "%s", mine[k]);
    if (db_other_splits(db, add_split, &t)) return -1;
    snprintf(t.splits[t.ns++], 64, "(none)");
    t.cur_mag = -1;
    printf("patches per class x split x magnification:\n");
    if (db_class_split_mags(db, add_cell, &t)) return -1;
    flush_row(&t);
    if (t.cur_mag < 0) printf("  (no images)\n");

    printf("tissue fraction histogram (patches per 0.1 bin, 0.0-0.1 ... 0.9-1.0):\n ");
    int64_t bins[10];
    if (db_tissue_histogram(db, bins)) return -1;
    for (int b = 0; b < 10; b++) printf(" %lld", (long long)bins[b]);
    printf("\n");

    printf("MPP sources:\n");
    return db_mpp_sources(db, print_source, NULL);
}
