/* pipelines/cmd_demo.c — `magpie demo [DIR]`: the built-in default job. Synthesizes a few
 * slides, tiles them at 10x and 1.25x into one SQLite dataset, checks it, prints the summary.
 * It drives the same entry points as the user-facing subcommands. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "pipelines/cmds.h"

static int is_slide(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".tif") || !strcmp(dot, ".tiff"));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cmd_demo(int argc, char **argv)
{
    const char *dir = "magpie-demo";
    const char *nslides = "6", *width = "8192", *height = "6144";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: magpie demo [DIR] [--slides N] [--width W --height H]\n\n"
                   "Synthesizes N H&E-like slides (40x, 0.25 µm/px) into DIR/slides, tiles them at 10x and 1.25x\n"
                   "into DIR/dataset.db, imports their ground truth (slide labels, region annotations), splits\n"
                   "them by patient, checks the dataset and prints its summary. Default DIR: magpie-demo.\n"
                   "Running it again resumes: finished slides are skipped.\n");
            return MP_EXIT_OK;
        }
        char nm[64];
        const char *iv = mp_opt_split(argv[i], nm, sizeof nm); /* --name=VALUE is --name VALUE */
        const char *a = iv ? nm : argv[i];
        const char **dst = !strcmp(a, "--slides") ? &nslides : !strcmp(a, "--width") ? &width : !strcmp(a, "--height") ? &height : NULL;
        if (dst) {
            const char *v = iv ? iv : i + 1 < argc ? argv[++i] : NULL;
            long lv;
            if (!v || mp_parse_long(v, &lv) < 0 || lv < 1) {
                mp_error("demo: %s wants a positive integer, got '%s'", a, v ? v : "(missing)");
                return MP_EXIT_USAGE;
            }
            *dst = v;
        } else if (a[0] == '-') {
            mp_error("demo: unknown option '%s'", argv[i]);
            return MP_EXIT_USAGE;
        } else dir = argv[i];
    }
    char slides_dir[4096], db[4096];
    snprintf(slides_dir, sizeof slides_dir, "%s/slides", dir);
    snprintf(db, sizeof db, "%s/dataset.db", dir);
    if (mp_mkdir_p(slides_dir)) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }

    mp_info("== 1/4 synthesize %s slides into %s", nslides, slides_dir);
    /* ~1.5 slides per patient, so the patient-grouped split has patients to share out */
    long ns = atol(nslides);
    char npat[32];
    snprintf(npat, sizeof npat, "%ld", ns > 2 ? (2 * ns + 2) / 3 : ns);
    char *synth_argv[] = {"synth", slides_dir, "--slides", (char *)nslides, "--patients", npat, "--width", (char *)width,
                          "--height", (char *)height, "--seed", "1", NULL};
    int rc = cmd_synth(12, synth_argv);
    fflush(stdout);
    if (rc != MP_EXIT_OK) return rc;

    /* tile every slide synth wrote (sorted, so the dataset's slide ids are stable) */
    DIR *d = opendir(slides_dir);
    if (!d) {
        mp_error("%s: cannot list directory", slides_dir);
        return MP_EXIT_FAIL;
    }
    char **paths = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_slide(e->d_name)) continue;
        paths = mp_xrealloc(paths, (size_t)(n + 1) * sizeof *paths);
        size_t len = strlen(slides_dir) + strlen(e->d_name) + 2;
        paths[n] = mp_xmalloc(len);
        snprintf(paths[n++], len, "%s/%s", slides_dir, e->d_name);
    }
    closedir(d);
    if (n == 0) {
        mp_error("%s: synth wrote no slides", slides_dir);
        free(paths);
        return MP_EXIT_FAIL;
    }
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    /* the ground truth synth wrote beside each slide: NAME.tiff -> NAME.geojson */
    char **labels_argv = mp_xcalloc((size_t)n + 4, sizeof *labels_argv);
    char **geo = mp_xcalloc((size_t)n, sizeof *geo);
    char csv[4200];
    snprintf(csv, sizeof csv, "%s/slides.csv", slides_dir);
    int nl = 0;
    labels_argv[nl++] = "labels";
    labels_argv[nl++] = "import";
    labels_argv[nl++] = csv;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(paths[i]) + 16;
        geo[i] = mp_xmalloc(len);
        snprintf(geo[i], len, "%.*s.geojson", (int)(strrchr(paths[i], '.') - paths[i]), paths[i]);
        if (mp_file_exists(geo[i])) labels_argv[nl++] = geo[i];
    }

    mp_info("== 2/4 tile %d slides at 10x and 1.25x into %s", n, db);
    char **tile_argv = mp_xcalloc((size_t)n + 6, sizeof *tile_argv);
    int k = 0;
    tile_argv[k++] = "tile";
    tile_argv[k++] = db;
    for (int i = 0; i < n; i++) tile_argv[k++] = paths[i];
    tile_argv[k++] = "--mags";
    tile_argv[k++] = "10,1.25";
    rc = cmd_tile(k, tile_argv);
    fflush(stdout);
    if (rc == MP_EXIT_OK) {
        mp_info("== 3/4 import the ground truth (slide labels, region annotations) and split by patient");
        rc = cmd_db_labels(db, nl, labels_argv);
        /* a test split needs a third patient: with two, train and val only (split refuses to
         * leave a split it was asked for empty) */
        char *split_argv[] = {"split", "--by", "patient", "--ratios", atol(npat) >= 3 ? "0.5,0.25,0.25" : "0.5,0.5,0",
                              "--stratify", "none", "--seed", "1", NULL};
        if (rc == MP_EXIT_OK) rc = cmd_db_split(db, 9, split_argv);
        fflush(stdout);
    }
    for (int i = 0; i < n; i++) {
        free(paths[i]);
        free(geo[i]);
    }
    free(paths);
    free(geo);
    free(labels_argv);
    free(tile_argv);
    if (rc != MP_EXIT_OK) return rc;

    mp_info("== 4/4 dataset summary");
    char *info_argv[] = {"db", db, "info", NULL};
    rc = cmd_db(3, info_argv);
    fflush(stdout);
    if (rc != MP_EXIT_OK) return rc;
    char *check_argv[] = {"db", db, "check", NULL};
    rc = cmd_db(3, check_argv);
    fflush(stdout);
    if (rc == MP_EXIT_OK)
        mp_info("\nNext: magpie db %s slides | magpie db %s stats | sqlite3 %s 'SELECT count(*) FROM patches'", db, db, db);
    return rc;
}
