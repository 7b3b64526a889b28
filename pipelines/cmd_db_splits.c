/* pipelines/cmd_db_splits.c — `magpie db DB splits`: the split table (slides, patients, patches
 * per split and class; folds) and its leakage check. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "db/db.h"
#include "db/split.h"
#include "pipelines/cmds.h"

static const char usage[] =
    "usage: magpie db DB splits\n\n"
    "Slides, patients and patches per split, patients per split and class, the folds of\n"
    "`db split --folds`, then the leakage check: no patient in two of train/val/test, none of a\n"
    "val/test patient's slides unlabeled, every patient in one fold. Exit 2 on a leak (`db check`\n"
    "runs the same check).\n";

static int rows(mp_db *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) printf("%s\n", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(db, "splits");
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
    int rc = db_exec(db, "BEGIN DEFERRED"); /* one snapshot for the table and the check */
    if (rc == 0 && db_query_int(db, "SELECT count(*) FROM splits") == 0) {
        printf("no split yet (magpie db DB split --help)\n");
        db_exec(db, "COMMIT");
        db_close(db);
        return MP_EXIT_OK;
    }
    if (rc == 0) {
        printf("split       slides  patients   patches  labelled patches\n");
        rc = rows(db, "SELECT printf('%-10s %7d %9d %9d %17d', t.split, count(DISTINCT s.id), "
                      "count(DISTINCT coalesce(s.patient, s.name)), "
                      "(SELECT count(*) FROM patches p JOIN splits u ON u.slide_id = p.slide_id WHERE u.split = t.split), "
                      "(SELECT count(*) FROM patches p JOIN splits u ON u.slide_id = p.slide_id JOIN slides v ON v.id = "
                      "p.slide_id WHERE u.split = t.split AND (v.label IS NOT NULL OR p.id IN (SELECT patch_id FROM "
                      "patch_labels)))) FROM splits t JOIN slides s ON s.id = t.slide_id GROUP BY t.split "
                      "ORDER BY CASE t.split WHEN 'train' THEN 0 WHEN 'val' THEN 1 WHEN 'test' THEN 2 ELSE 3 END");
    }
    if (rc == 0) {
        printf("\npatients per split and class (slide label):\n");
        rc = rows(db, "SELECT printf('  %-10s %s', split, group_concat(label || ' ' || n, ', ')) FROM "
                      "(SELECT t.split, coalesce(s.label, '(none)') AS label, count(DISTINCT coalesce(s.patient, s.name)) AS n "
                      "FROM splits t JOIN slides s ON s.id = t.slide_id GROUP BY t.split, label ORDER BY label) "
                      "GROUP BY split ORDER BY CASE split WHEN 'train' THEN 0 WHEN 'val' THEN 1 WHEN 'test' THEN 2 ELSE 3 END");
    }
    if (rc == 0 && db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'folds'") == 1 &&
        db_query_int(db, "SELECT count(*) FROM folds") > 0) {
        printf("\nfold  patients  slides  classes (patients)\n");
        rc = rows(db, "SELECT printf('%4d %9d %7d  %s%s', fold, np, ns, cls, CASE WHEN isval THEN '  (val now)' ELSE '' END) "
                      "FROM (SELECT f.fold, count(DISTINCT coalesce(s.patient, s.name)) AS np, count(*) AS ns, "
                      "max(t.split = 'val') AS isval, "
                      "(SELECT group_concat(l || ' ' || c, ', ') FROM (SELECT coalesce(s2.label, '(none)') AS l, "
                      "count(DISTINCT coalesce(s2.patient, s2.name)) AS c FROM folds f2 JOIN slides s2 ON s2.id = f2.slide_id "
                      "WHERE f2.fold = f.fold GROUP BY l ORDER BY l)) AS cls "
                      "FROM folds f JOIN slides s ON s.id = f.slide_id LEFT JOIN splits t ON t.slide_id = f.slide_id "
                      "GROUP BY f.fold) ORDER BY fold");
    }
    int leaks = 0;
    if (rc == 0) {
        printf("\nleakage check:\n");
        leaks = db_split_leaks(db, print_leak, NULL);
        if (leaks < 0) rc = -1;
        else if (leaks == 0) printf("  ok: no patient in two splits%s\n",
                                    db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'folds'") == 1 &&
                                            db_query_int(db, "SELECT count(*) FROM folds") > 0
                                        ? ", folds disjoint"
                                        : "");
    }
    db_exec(db, "COMMIT");
    if (rc == 0 && leaks > 0) rc = mp_err_set("%s: %d patient leak%s between splits or folds", db_path, leaks, leaks == 1 ? "" : "s");
    if (rc) mp_error("%s", mp_err());
    db_close(db);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}
