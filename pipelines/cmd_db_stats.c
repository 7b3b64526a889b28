/* pipelines/cmd_db_stats.c — the curation part of `magpie db DB stats`: patches per class x split
 * x magnification, the tissue-fraction histogram, and where the slides' MPP came from. Called by
 * cmd_db.c's stats after its storage and QC tables. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "db/db.h"
#include "pipelines/cmds.h"

#define MAX_SPLITS 16

int cmd_db_stats_curation(mp_db *db)
{
    /* the split columns: magpie's four in their order, then any other the dataset holds */
    char splits[MAX_SPLITS][64] = {"train", "val", "test", "unlabeled"};
    int ns = 4;
    sqlite3_stmt *st = db_prepare(db, "SELECT DISTINCT split FROM splits WHERE split NOT IN ('train', 'val', 'test', "
                                      "'unlabeled') ORDER BY split");
    if (!st) return -1;
    while (sqlite3_step(st) == SQLITE_ROW && ns < MAX_SPLITS - 1)
        snprintf(splits[ns++], 64, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    snprintf(splits[ns++], 64, "(none)");
    /* label rule as everywhere: the patch's region label, else its slide's */
    st = db_prepare(db, "SELECT i.mag, coalesce(c.name, s.label, '(unlabelled)') AS cls, coalesce(sp.split, '(none)'), "
                        "count(*) FROM images i JOIN patches p ON p.id = i.patch_id JOIN slides s ON s.id = p.slide_id "
                        "LEFT JOIN splits sp ON sp.slide_id = p.slide_id LEFT JOIN patch_labels pl ON pl.patch_id = p.id "
                        "LEFT JOIN classes c ON c.id = pl.class_id GROUP BY 1, 2, 3 ORDER BY 1 DESC, 2");
    if (!st) return -1;
    printf("patches per class x split x magnification:\n");
    double cur_mag = -1;
    char cur_cls[256] = "";
    int64_t row[MAX_SPLITS] = {0};
    int have = 0, rc;
    for (;;) {
        rc = sqlite3_step(st);
        int end = rc != SQLITE_ROW;
        double mag = end ? -2 : sqlite3_column_double(st, 0);
        const char *cls = end ? "" : (const char *)sqlite3_column_text(st, 1);
        if (have && (end || mag != cur_mag || strcmp(cls, cur_cls))) {
            int64_t tot = 0;
            char esc[256];
            printf("  %-18.18s", mp_escape_ctrl(cur_cls, esc, sizeof esc));
            for (int k = 0; k < ns; k++) printf(" %9lld", (long long)row[k]), tot += row[k];
            printf(" %9lld\n", (long long)tot);
            memset(row, 0, sizeof row);
            have = 0;
        }
        if (end) break;
        if (mag != cur_mag) {
            printf("  %gx%*s", mag, 18 - snprintf(NULL, 0, "%gx", mag), "");
            for (int k = 0; k < ns; k++) printf(" %9.9s", splits[k]);
            printf(" %9s\n", "total");
            cur_mag = mag;
        }
        snprintf(cur_cls, sizeof cur_cls, "%s", cls);
        const char *sp = (const char *)sqlite3_column_text(st, 2);
        int k = ns - 1;
        for (int j = 0; j < ns; j++)
            if (!strcmp(sp, splits[j])) k = j;
        row[k] += sqlite3_column_int64(st, 3);
        have = 1;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "stats");
    if (cur_mag < 0) printf("  (no images)\n");

    printf("tissue fraction histogram (patches per 0.1 bin, 0.0-0.1 ... 0.9-1.0):\n ");
    st = db_prepare(db, "SELECT min(CAST(tissue * 10 AS INTEGER), 9), count(*) FROM patches GROUP BY 1 ORDER BY 1");
    if (!st) return -1;
    int64_t bins[10] = {0};
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int b = sqlite3_column_int(st, 0);
        if (b >= 0 && b < 10) bins[b] += sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "stats");
    for (int b = 0; b < 10; b++) printf(" %lld", (long long)bins[b]);
    printf("\n");

    printf("MPP sources:\n");
    st = db_prepare(db, "SELECT coalesce(mpp_source, '(none)'), count(*), min(mpp_x), max(mpp_x) FROM slides "
                        "GROUP BY 1 ORDER BY 2 DESC, 1");
    if (!st) return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        printf("  %-18s %5lld slides", (const char *)sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1));
        if (sqlite3_column_type(st, 2) != SQLITE_NULL)
            printf("  %.4f..%.4f um/px", sqlite3_column_double(st, 2), sqlite3_column_double(st, 3));
        printf("\n");
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(db, "stats");
}
