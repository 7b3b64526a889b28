/* pipelines/cmd_db_curate.c — `magpie db DB labels import FILE...` and `magpie db DB split ...`:
 * label import (slide CSV, QuPath GeoJSON regions) and patient-grouped stratified splits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/log.h"
#include "common/opt.h"
#include "common/util.h"
#include "db/db.h"
#include "db/labels.h"
#include "db/split.h"
#include "pipelines/cmds.h"

static void labels_usage(FILE *f)
{
    fprintf(f, "usage: magpie db DB labels import FILE... [--slide NAME] [--min-coverage F] [-q]\n\n"
               "  FILE.csv       slide-level labels: header with columns slide, patient, label (quoted fields ok)\n"
               "  FILE.geojson   region annotations as QuPath exports them (level-0 pixel coordinates);\n"
               "                 the slide is the file name without extension unless --slide NAME;\n"
               "                 a patch gets the class covering most of it if that covers >= --min-coverage\n"
               "                 (default 0.5) of its area\n"
               "  -q, --quiet    only warnings and errors\n");
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

int cmd_db_labels(const char *db_path, int argc, char **argv)
{
    for (int i = 1; i < argc && !(argc >= 2 && (!strcmp(argv[1], "list") || !strcmp(argv[1], "remove"))); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            labels_usage(stdout);
            return MP_EXIT_OK;
        }
    if (argc >= 2 && !strcmp(argv[1], "list")) return cmd_db_labels_list(db_path, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "remove")) return cmd_db_labels_remove(db_path, argc - 1, argv + 1);
    if (argc < 3 || strcmp(argv[1], "import")) {
        labels_usage(stderr);
        return MP_EXIT_USAGE;
    }
    const char *slide = NULL;
    double min_cov = 0.5;
    const char **files = mp_xcalloc(argc, sizeof(char *));
    int nf = 0;
    enum { O_SLIDE = 256, O_COV };
    static const struct option lo[] = {{"slide", required_argument, 0, O_SLIDE}, {"min-coverage", required_argument, 0, O_COV},
                                       {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    optind = 1; /* argv[1] is "import": parse from argv[2] on */
    int ch;
    while ((ch = mp_getopt_long(argc - 1, argv + 1, "qh", lo, NULL)) != -1) {
        if (ch == 'q') mp_log_set_quiet(1);
        else if (ch == 'h') {
            labels_usage(stdout);
            free(files);
            return MP_EXIT_OK;
        } else if (ch == O_SLIDE) slide = optarg;
        else if (ch == O_COV && !(mp_parse_double(optarg, &min_cov) < 0 || min_cov < 0 || min_cov > 1)) ;
        else {
            free(files);
            if (ch == O_COV)
                return mp_usage_error("db labels", "db DB labels import", "--min-coverage wants a number in [0, 1], got '%s'",
                                      optarg);
            return mp_usage_error("db labels", "db DB labels import", "%s", mp_err());
        }
    }
    for (int i = optind + 1; i < argc; i++) files[nf++] = argv[i];
    if (!nf) {
        labels_usage(stderr);
        free(files);
        return MP_EXIT_USAGE;
    }
    mp_db *db = db_open(db_path, 0);
    if (!db) {
        mp_error("%s", mp_err());
        free(files);
        return MP_EXIT_FAIL;
    }
    int failed = 0, partial = 0;
    for (int i = 0; i < nf; i++) {
        db_label_report rep;
        int geo = ends_with(files[i], ".geojson") || ends_with(files[i], ".json");
        int rc = geo ? db_labels_import_geojson(db, files[i], slide, min_cov, &rep) : db_labels_import_csv(db, files[i], &rep);
        if (rc < 0) {
            mp_error("%s", mp_err());
            failed++;
            continue;
        }
        for (int u = 0; u < rep.n_unknown; u++) mp_warn("%s: unknown slide '%s' (not in %s)", files[i], rep.unknown[u], db_path);
        if (rep.n_unknown) partial = 1;
        /* the summary closes the warnings above: shown with them even under -q */
        void (*say)(const char *, ...) = rep.n_unknown ? mp_warn : mp_info;
        if (geo)
            say("%s: %d features: %d applied (%d patches labelled), %d not applied (%s), %d new classes", files[i],
                rep.rows, rep.applied, rep.updated, rep.not_applied,
                rep.n_unknown ? "unknown slide" : "no area, or covering no patch", rep.new_classes);
        else
            say("%s: %d rows: %d applied (%d slides updated), %d not applied (unknown slide), %d new classes", files[i],
                rep.rows, rep.applied, rep.updated, rep.not_applied, rep.new_classes);
        db_label_report_free(&rep);
    }
    /* a CSV can move a slide to another patient: say so when that makes the split leak */
    if (failed < nf && db_split_check(db) < 0)
        mp_warn("%s; run `magpie db DB split` again", mp_err());
    db_close(db);
    free(files);
    return failed == nf ? MP_EXIT_FAIL : failed || partial ? MP_EXIT_PARTIAL : MP_EXIT_OK;
}

static void split_usage(FILE *f)
{
    fprintf(f, "usage: magpie db DB split [--by patient] [--ratios 0.6,0.2,0.2 | --folds K [--fold I]]\n"
               "                          [--stratify label|none] [--seed S] [--unlabeled-ratio F] [--unlabeled SLIDE,...] [-q]\n\n"
               "Assigns every slide to train, val, test or unlabeled. All slides of a patient share one split;\n"
               "slides without a label go to 'unlabeled' (or stay with a val/test patient).\n"
               "  --ratios T,V,E     fractions of each class's patients summing to 1 (0.6,0.2,0.2), or whole\n"
               "                     patient counts per class (3,1,1: one val and one test patient per class, the\n"
               "                     rest, at least 3, train). A split asked for is never left empty: when the\n"
               "                     patients cannot fill it the command fails and says how many each class has\n"
               "  --folds K          patient-grouped, stratified K-fold (table folds); fold I (--fold, default 0)\n"
               "                     becomes val and the others train. Rerun with another --fold and the same seed\n"
               "                     for the next fold\n"
               "  --stratify label   every split gets every class (default); none: patients are cut as one pool\n"
               "  --unlabeled-ratio  holds out that share of labelled patients (per label) as unlabeled\n"
               "  --unlabeled        names slides whose patients are held out\n"
               "`magpie db DB splits` prints the result with its leakage check.\n");
}

int cmd_db_split(const char *db_path, int argc, char **argv)
{
    db_split_opts o = {.ratios = {0.6, 0.2, 0.2}, .stratify = 1, .seed = 0};
    int have_ratios = 0, have_fold = 0, quiet = 0;
    char *list = NULL;
    const char *names[4096];
    enum { O_BY = 256, O_RATIOS, O_FOLDS, O_FOLD, O_STRAT, O_SEED, O_URATIO, O_UNL };
    static const struct option lo[] = {
        {"by", required_argument, 0, O_BY},           {"ratios", required_argument, 0, O_RATIOS},
        {"folds", required_argument, 0, O_FOLDS},     {"fold", required_argument, 0, O_FOLD},
        {"stratify", required_argument, 0, O_STRAT},  {"seed", required_argument, 0, O_SEED},
        {"unlabeled-ratio", required_argument, 0, O_URATIO}, {"unlabeled", required_argument, 0, O_UNL},
        {"quiet", no_argument, 0, 'q'},               {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    optind = 1;
    int ch, li;
    while ((ch = mp_getopt_long(argc, argv, "qh", lo, &li)) != -1) {
        const char *v = optarg;
        int bad = 0;
        switch (ch) {
        case 'h':
            split_usage(stdout);
            free(list);
            return MP_EXIT_OK;
        case 'q': quiet = 1; break;
        case O_BY: bad = strcmp(v, "patient") != 0; break;
        case O_RATIOS: {
            double r[4];
            int n = mp_parse_double_list(v, r, 4);
            bad = n != 3 || !(r[0] >= 0 && r[1] >= 0 && r[2] >= 0);
            if (!bad) {
                /* whole numbers (unless they sum to 1, as 1,0,0 does): patient counts per class;
                 * else fractions summing to 1 */
                int whole = 1;
                for (int k = 0; k < 3; k++) whole &= r[k] == floor(r[k]) && r[k] < 1e6;
                o.counts = whole && r[0] + r[1] + r[2] != 1;
                if (!o.counts && fabs(r[0] + r[1] + r[2] - 1) > 1e-6) {
                    free(list);
                    return mp_usage_error("db split", "db DB split",
                                          "--ratios '%s': fractions must sum to 1 (0.6,0.2,0.2); whole numbers are "
                                          "patient counts per class (3,1,1)", v);
                }
                memcpy(o.ratios, r, sizeof o.ratios);
                have_ratios = 1;
            }
            break;
        }
        case O_FOLDS: {
            long k;
            bad = mp_parse_long(v, &k) < 0 || k < 2 || k > 64;
            o.folds = (int)k;
            break;
        }
        case O_FOLD: {
            long k;
            bad = mp_parse_long(v, &k) < 0 || k < 0 || k > 63;
            o.fold = (int)k;
            have_fold = 1;
            break;
        }
        case O_STRAT:
            bad = strcmp(v, "label") && strcmp(v, "none");
            o.stratify = !strcmp(v, "label");
            break;
        case O_SEED: {
            long sd;
            bad = mp_parse_long(v, &sd) < 0 || sd < 0;
            o.seed = (uint64_t)sd;
            break;
        }
        case O_URATIO: bad = mp_parse_double(v, &o.unlabeled_ratio) < 0; break;
        case O_UNL:
            free(list);
            list = mp_xstrdup(v);
            o.n_unlabeled = 0;
            for (char *save, *t = strtok_r(list, ",", &save); t && o.n_unlabeled < 4096; t = strtok_r(NULL, ",", &save))
                names[o.n_unlabeled++] = t;
            o.unlabeled = names;
            break;
        default:
            free(list);
            return mp_usage_error("db split", "db DB split", "%s", mp_err());
        }
        if (bad) {
            free(list);
            return mp_usage_error("db split", "db DB split", "bad value for --%s: '%s'", lo[li].name, v);
        }
    }
    if (optind < argc) {
        free(list);
        return mp_usage_error("db split", "db DB split", "unexpected argument '%s'", argv[optind]);
    }
    const char *conflict = o.folds && have_ratios ? "--folds and --ratios exclude each other"
                         : have_fold && !o.folds ? "--fold needs --folds K"
                         : o.folds && o.fold >= o.folds ? "--fold wants 0..K-1"
                                                        : NULL;
    if (conflict) {
        free(list);
        return mp_usage_error("db split", "db DB split", "%s", conflict);
    }
    mp_db *db = db_open(db_path, 0);
    if (!db) {
        mp_error("%s", mp_err());
        free(list);
        return MP_EXIT_FAIL;
    }
    db_split_report rep;
    int rc = db_split_make(db, &o, &rep);
    db_close(db);
    free(list);
    if (rc < 0) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    if (quiet) return MP_EXIT_OK;
    printf("split      slides  patients\n");
    static const char *nm[4] = {"train", "val", "test", "unlabeled"};
    for (int s = 0; s < 4; s++) printf("%-10s %6d  %8d\n", nm[s], rep.slides[s], rep.patients[s]);
    if (o.folds > 1) {
        printf("fold  patients%s\n", "");
        for (int k = 0; k < o.folds; k++) printf("%4d  %8d%s\n", k, rep.fold_patients[k], k == o.fold ? "  (val)" : "");
    }
    return MP_EXIT_OK;
}
