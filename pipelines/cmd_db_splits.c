/* pipelines/cmd_db_splits.c — `magpie db DB splits`: the split table (slides, patients, patches
 * per split and class; folds) and its leakage check. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "db/db.h"
#include "db/split.h"
#include "db/splits.h"
#include "pipelines/cmds.h"

static const char usage[] =
    "usage: magpie db DB splits\n\n"
    "Slides, patients and patches per split, patients per split and class, the folds of\n"
    "`db split --folds`, then the leakage check: no patient in two of train/val/test, none of a\n"
    "val/test patient's slides unlabeled, every patient in one fold. Exit 2 on a leak (`db check`\n"
    "runs the same check).\n";

static int print_size(void *ctx, const db_split_size *r)
{
    (void)ctx;
    printf("%-10s %7lld %9lld %9lld %17lld\n", r->split, (long long)r->slides, (long long)r->patients,
           (long long)r->patches, (long long)r->labelled);
    return 0;
}

/* "  SPLIT      LABEL N, LABEL N": one line per split, its classes gathered from the rows */
typedef struct {
    char split[256];
    int n;
} class_line;

static int print_class(void *ctx, const db_split_class *r)
{
    class_line *l = ctx;
    if (l->n && strcmp(l->split, r->split)) printf("\n"), l->n = 0;
    if (l->n++ == 0) {
        snprintf(l->split, sizeof l->split, "%s", r->split);
        printf("  %-10s %s %lld", r->split, r->label, (long long)r->patients);
    } else printf(", %s %lld", r->label, (long long)r->patients);
    return 0;
}

static int print_fold(void *ctx, const db_fold_size *r)
{
    (void)ctx;
    printf("%4d %9lld %7lld  %s%s\n", r->fold, (long long)r->patients, (long long)r->slides, r->classes,
           r->is_val ? "  (val now)" : "");
    return 0;
}

static void print_leak(void *ctx, const char *msg)
{
    (void)ctx;
    printf("  LEAK: %s\n", msg);
}

int cmd_db_splits(const char *db_path, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return MP_EXIT_OK;
        }
        mp_error("db splits: %s '%s' (see magpie db DB splits --help)",
                 argv[i][0] == '-' ? "unknown option" : "unexpected argument", argv[i]);
        return MP_EXIT_USAGE;
    }
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    int rc = db_read_begin(db); /* one snapshot for the table and the check */
    if (rc == 0 && db_splits_slides(db) == 0) {
        printf("no split yet (magpie db DB split --help)\n");
        db_read_end(db);
        db_close(db);
        return MP_EXIT_OK;
    }
    if (rc == 0) {
        printf("split       slides  patients   patches  labelled patches\n");
        rc = db_split_sizes(db, print_size, NULL);
    }
    if (rc == 0) {
        printf("\npatients per split and class (slide label):\n");
        class_line l = {"", 0};
        rc = db_split_classes(db, print_class, &l);
        if (rc == 0 && l.n) printf("\n");
    }
    if (rc == 0 && db_splits_folds(db) > 0) {
        printf("\nfold  patients  slides  classes (patients)\n");
        rc = db_fold_sizes(db, print_fold, NULL);
    }
    int leaks = 0;
    if (rc == 0) {
        printf("\nleakage check:\n");
        leaks = db_split_leaks(db, print_leak, NULL);
        if (leaks < 0) rc = -1;
        else if (leaks == 0) printf("  ok: no patient in two splits%s\n",
                                    db_splits_folds(db) > 0 ? ", folds disjoint" : "");
    }
    db_read_end(db);
    if (rc == 0 && leaks > 0) rc = mp_err_set("%s: %d patient leak%s between splits or folds", db_path, leaks, leaks == 1 ? "" : "s");
    if (rc) mp_error("%s", mp_err());
    db_close(db);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}
