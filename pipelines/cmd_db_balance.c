/* pipelines/cmd_db_balance.c — `magpie db DB balance --by patch|slide|patient --out FILE`: a
 * class-balanced sampling list (db/sampling.h) for `magpie train --sampling FILE`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/dataset.h"
#include "db/db.h"
#include "db/sampling.h"
#include "pipelines/cmds.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie db DB balance --by patch|slide|patient --out FILE [--split train] [-q]\n\n"
            "Writes a class-balanced sampling list of the split's labelled patches for\n"
            "`magpie train --sampling FILE`: a CSV patch_id,class,group,weight whose weights sum to 1,\n"
            "each class present getting the same total; inside a class the weight is shared equally\n"
            "by patch, by slide, or by patient (then equally over that group's patches). The trainer\n"
            "draws as many patches per epoch as the split has, with replacement, with these weights.\n");
}

int cmd_db_balance(const char *db_path, int argc, char **argv)
{
    int by = -1;
    const char *out = NULL, *split = "train";
    for (int i = 1; i < argc; i++) {
        char nm[64];
        const char *iv = mp_opt_split(argv[i], nm, sizeof nm);
        const char *a = iv ? nm : argv[i], *v = iv ? iv : i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return MP_EXIT_OK;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            mp_log_set_quiet(1);
            continue;
        }
        if (strcmp(a, "--by") && strcmp(a, "--out") && strcmp(a, "--split")) {
            mp_error("db balance: %s '%s' (see magpie db DB balance --help)", a[0] == '-' ? "unknown option" : "unexpected argument", a);
            return MP_EXIT_USAGE;
        }
        if (!v) {
            mp_error("db balance: %s needs a value", a);
            return MP_EXIT_USAGE;
        }
        if (!strcmp(a, "--by")) {
            by = !strcmp(v, "patch") ? DB_BALANCE_PATCH : !strcmp(v, "slide") ? DB_BALANCE_SLIDE
               : !strcmp(v, "patient") ? DB_BALANCE_PATIENT : -2;
            if (by == -2) {
                mp_error("db balance: bad value for --by: '%s' (patch, slide or patient)", v);
                return MP_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--out")) out = v;
        else {
            if (strcmp(v, "train") && strcmp(v, "val") && strcmp(v, "test") && strcmp(v, "unlabeled")) {
                mp_error("db balance: unknown split '%s' (known: train, val, test, unlabeled)", v);
                return MP_EXIT_USAGE;
            }
            split = v;
        }
        if (!iv) i++;
    }
    if (by < 0 || !out) {
        usage(stderr);
        mp_error("db balance: --by and --out are required");
        return MP_EXIT_USAGE;
    }
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    db_sampling s;
    char **names = NULL;
    int nnames = 0;
    int rc = db_sampling_make(db, split, by, &s);
    if (!rc) rc = db_classes_load(db, &names, &nnames);
    db_close(db);
    if (!rc) rc = db_sampling_write(&s, out);
    if (rc) {
        mp_error("%s", mp_err());
        for (int i = 0; i < nnames; i++) free(names[i]);
        free(names);
        db_sampling_free(&s);
        return MP_EXIT_FAIL;
    }
    static const char *byname[] = {"patch", "slide", "patient"};
    mp_info("%s: %d %s patches, %d classes, balanced by %s", out, s.n, split, s.nclasses, byname[by]);
    if (!mp_log_quiet()) {
        printf("%-20s %8s %8s %8s %14s\n", "class", "patches", byname[by], "weight", "draws/epoch");
        for (int a = 0; a < s.n;) {
            int b = a, groups = 0;
            double w = 0;
            for (; b < s.n && s.cls[b] == s.cls[a]; b++) {
                w += s.weight[b];
                if (b == a || strcmp(s.group[b], s.group[b - 1])) groups++;
            }
            char esc[128];
            const char *nm = s.cls[a] < nnames && names[s.cls[a]] ? names[s.cls[a]] : "?";
            printf("%-20s %8d %8d %8.4f %14.1f\n", mp_escape_ctrl(nm, esc, sizeof esc), b - a,
                   by == DB_BALANCE_PATCH ? b - a : groups, w, w * s.n);
            a = b;
        }
    }
    for (int i = 0; i < nnames; i++) free(names[i]);
    free(names);
    db_sampling_free(&s);
    return MP_EXIT_OK;
}
