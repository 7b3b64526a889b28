/* pipelines/cmd_db.c — `magpie db DB info|slides|stats|check|mask|labels|split`: inspect a
 * dataset; curation subcommands are dispatched to cmd_db_curate.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "common/vipserr.h"
#include "db/check.h"
#include "db/db.h"
#include "db/slides.h"
#include "db/stats.h"
#include "pipelines/cmds.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: magpie db DB COMMAND [ARGS]\n\n"
            "commands:\n"
            "  info                   summary: slides by status, patches, images per magnification, labels, splits\n"
            "  slides [--json]        one line per slide: status, kind, vendor, size, MPP and its source, patches per mag\n"
            "  stats                  storage per magnification and QC score distributions (tissue, blur, pen, brightness)\n"
            "  check [--no-decode]    integrity: every patch has its images, blobs decode, no orphans (exit 2 on problems)\n"
            "  mask SLIDE OUT.png     export the stored tissue mask of a slide (by path, id or name; ambiguous is an error)\n"
            "  labels import FILE     import slide labels (CSV slide,patient,label) or region annotations (GeoJSON)\n"
            "  split --by patient ... patient-grouped, stratified train/val/test split, or --folds K\n"
            "  query [WHERE]          patches a filter selects (label = tumor and tissue > 0.5 ...): table, --json, --count\n"
            "  export --format F --out DIR [--where EXPR] [--mag M]   imagefolder (split/class PNGs), csv or npy\n"
            "  import-patches DIR --mpp X   a labelled patch set in class folders (Kather, NCT-CRC-HE-100K) into the dataset\n"
            "  splits                 the split table and its leakage check\n"
            "  labels list|remove     what was imported (slide labels, region annotations), and taking it out\n"
            "  slides remove SLIDE... a slide with its patches, images, labels, split, predictions (one transaction)\n"
            "  vacuum                 give freed space back to the file system\n"
            "  balance --by patch|slide|patient --out FILE   class-balanced sampling list for train --sampling\n"
            "  merge SHARD...         copy shard datasets into DB (also: magpie db merge OUT SHARD...; see --help)\n"
            "`magpie db DB COMMAND --help` for each.\n");
}

static int print_mag_images(void *ctx, const db_mag_storage *r)
{
    (void)ctx;
    printf("  %6gx  %8lld images  %4dx%-4d px  %s\n", r->mag, (long long)r->images, r->max_width, r->max_height,
           r->codecs);
    return 0;
}

static int print_class_name(void *ctx, int64_t id, const char *name)
{
    (void)id;
    printf("%s%s", (*(int *)ctx)++ ? ", " : " (", name);
    return 0;
}

static int print_split(void *ctx, const db_split_patches *r)
{
    (void)ctx;
    printf("  %-10s %4lld slides %8lld patches\n", r->split, (long long)r->slides, (long long)r->patches);
    return 0;
}

static int do_info(mp_db *db)
{
    char b[32];
    int64_t size = mp_file_size(db_path(db));
    db_summary n;
    db_summary_get(db, &n); /* a count that failed shows as -1, as the others print */
    printf("dataset   %s (%s, schema %lld)\n", db_path(db), mp_fmt_bytes(b, sizeof b, (double)size), (long long)n.schema);
    printf("slides    %lld total: %lld done, %lld failed, %lld tiling (interrupted), %lld pending\n", (long long)n.slides,
           (long long)n.done, (long long)n.failed, (long long)n.tiling, (long long)n.pending);
    printf("patches   %lld (unreadable tiles skipped: %lld)\n", (long long)n.patches, (long long)n.tile_errors);
    printf("images per magnification:\n");
    if (db_mag_storage_each(db, print_mag_images, NULL)) return -1;
    printf("classes   %lld", (long long)n.classes);
    if (n.classes > 0) {
        int k = 0;
        db_classes_each(db, print_class_name, &k);
        if (k) printf(")");
    }
    printf("\nlabels    %lld slides labelled, %lld patches with region labels\n", (long long)n.labelled_slides,
           (long long)n.patch_labels);
    if (n.split_rows > 0) {
        printf("splits:\n");
        if (db_split_patches_each(db, print_split, NULL)) return -1;
    }
    return 0;
}

static int print_slide(void *ctx, const db_slide_row *r)
{
    if (*(int *)ctx) {
        printf("%s\n", r->json);
        return 0;
    }
    char size[32], mpp[32] = "-";
    snprintf(size, sizeof size, "%dx%d", r->width, r->height);
    if (r->has_mpp) snprintf(mpp, sizeof mpp, "%.4f", r->mpp);
    printf("%4lld  %-28.28s %-7s %-12s %-10.10s %13s %9s %-17.17s %8lld  %s\n", (long long)r->id, r->name, r->status,
           r->kind ? r->kind : "-", r->vendor, size, mpp, r->mpp_source ? r->mpp_source : "-", (long long)r->patches,
           *r->error ? r->error : r->images);
    return 0;
}

static int do_slides(mp_db *db, int json)
{
    if (!json) printf("%4s  %-28s %-7s %-12s %-10s %13s %9s %-17s %8s  %s\n", "id", "name", "status", "kind", "vendor",
                      "size", "mpp", "mpp source", "patches", "images / error");
    return db_slides_each(db, 0, NULL, print_slide, &json);
}

/* Quantiles of one QC score over its n scored patches. */
static void qc_line(mp_db *db, const char *col, int64_t n)
{
    printf("  %-11s", col);
    if (n == 0) {
        printf(" -\n");
        return;
    }
    const double qs[] = {0.0, 0.05, 0.5, 0.95, 1.0};
    for (int i = 0; i < 5; i++) {
        double v = 0;
        if (db_qc_at(db, col, (int64_t)(qs[i] * (double)(n - 1) + 0.5), &v) == 1) printf(" %10.3f", v);
        else printf(" %10s", "-");
    }
    printf("\n");
}

static int print_storage(void *ctx, const db_mag_storage *r)
{
    (void)ctx;
    printf("  %6gx  %8lld images  %10.1f KiB total  %7.1f KiB/image  level(s) %s  scale %.4f..%.4f\n", r->mag,
           (long long)r->images, r->kib_total, r->kib_mean, r->levels, r->scale_min, r->scale_max);
    return 0;
}

static int print_class_patches(void *ctx, const char *class_name, int64_t patches)
{
    (void)ctx;
    printf("  %-16s %8lld\n", class_name, (long long)patches);
    return 0;
}

static int do_stats(mp_db *db)
{
    printf("storage per magnification:\n");
    if (db_mag_storage_each(db, print_storage, NULL)) return -1;
    db_summary n;
    db_summary_get(db, &n);
    printf("patch QC (%lld patches)   %10s %10s %10s %10s %10s\n", (long long)n.patches, "min", "p5", "median", "p95",
           "max");
    qc_line(db, "tissue", n.patches);
    qc_line(db, "blur", db_qc_scored(db, "blur"));
    qc_line(db, "pen", db_qc_scored(db, "pen"));
    qc_line(db, "brightness", db_qc_scored(db, "brightness"));
    if (n.classes > 0) {
        printf("patches per class (region label, else slide label):\n");
        if (db_class_patches_each(db, print_class_patches, NULL)) return -1;
    }
    return cmd_db_stats_curation(db);
}

static int decode_blob(const void *data, size_t len, const char *codec, int *w, int *h)
{
    VipsImage *im = vips_image_new_from_buffer(data, len, "", "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                               VIPS_FAIL_ON_TRUNCATED, NULL);
    if (!im) {
        char why[400];
        return mp_err_set("%s decode failed: %s", codec, mp_vips_err_take_into(why, sizeof why, NULL));
    }
    /* Force a full decode: a truncated JPEG has a valid header. */
    double avg;
    int rc = vips_avg(im, &avg, NULL);
    *w = vips_image_get_width(im);
    *h = vips_image_get_height(im);
    g_object_unref(im);
    if (rc) {
        char why[400];
        return mp_err_set("%s decode failed: %s", codec, mp_vips_err_take_into(why, sizeof why, NULL));
    }
    return 0;
}

static void print_problem(void *ctx, const char *msg)
{
    int *shown = ctx;
    if ((*shown)++ < 50) printf("  %s\n", msg);
}

static int do_check(mp_db *db, int decode)
{
    char why[400];
    if (decode && VIPS_INIT("magpie")) return mp_err_set("libvips: %s", mp_vips_err_take_into(why, sizeof why, NULL));
    int shown = 0;
    db_check_result r;
    if (db_check(db, decode ? decode_blob : NULL, print_problem, &shown, &r)) return -1;
    if (shown > 50) printf("  ... and %d more\n", shown - 50);
    printf("%s: %lld slides, %lld patches, %lld images", db_path(db), (long long)r.slides, (long long)r.patches,
           (long long)r.images);
    if (decode) printf(", %lld blobs decoded", (long long)r.blobs_decoded);
    if (r.in_progress) printf(", %lld slide%s being tiled now", (long long)r.in_progress, r.in_progress == 1 ? "" : "s");
    printf(": %s\n", r.problems ? "PROBLEMS FOUND" : "ok");
    if (r.problems) return mp_err_set("%s: integrity check found %lld problem(s)", db_path(db), (long long)r.problems);
    return 0;
}

static int slide_name(void *ctx, const db_slide_row *r)
{
    snprintf(ctx, 512, "%s", r->name);
    return 0;
}

static int do_mask(mp_db *db, const char *slide, const char *out)
{
    int64_t id;
    if (db_find_slide(db, slide, &id)) return -1; /* ambiguous names and ids are refused */
    void *png;
    size_t len;
    char name[512] = "";
    int rc = db_slide_mask(db, id, NULL, &png, &len);
    if (rc < 0) return -1;
    if (rc == 0) rc = mp_err_set("%s: no slide '%s'", db_path(db), slide);
    else if (!png) rc = mp_err_set("%s: slide '%s' has no tissue mask (not tiled yet?)", db_path(db), slide);
    else {
        rc = mp_write_file_atomic(out, png, len);
        if (rc == 0 && db_slides_each(db, id, NULL, slide_name, name) == 0)
            mp_info("wrote %s (tissue mask of %s)", out, name);
    }
    free(png);
    return rc;
}

/* The inspection commands' own usage, for `magpie db DB CMD --help`. */
static const struct {
    const char *name, *usage, *flag; /* flag: the one option it takes, if any */
    int nargs;                       /* positional arguments after the command */
} inspect[] = {
    {"info", "usage: magpie db DB info\n\nSlides by status, patches, images per magnification, classes, labels, splits.\n",
     NULL, 0},
    {"slides", "usage: magpie db DB slides [--json]\n\nOne line (or JSON object) per slide: id, name, status, kind (brightfield or fluorescence), vendor, "
               "size, MPP and its source,\npatches, images per magnification or the error. `magpie db DB slides remove "
               "--help` for removal.\n",
     "--json", 0},
    {"stats", "usage: magpie db DB stats\n\nStorage per magnification, QC score distributions, patches per class.\n", NULL,
     0},
    {"check", "usage: magpie db DB check [--no-decode]\n\nIntegrity: every patch has its images, blobs decode, no "
              "orphans, no patient in two\nsplits, folds disjoint. Exit 2 when problems are found.\n",
     "--no-decode", 0},
    {"mask", "usage: magpie db DB mask SLIDE OUT.png\n\nWrite the stored tissue mask of SLIDE (its path, id, or name "
             "when unique) to OUT.png.\n",
     NULL, 2},
};

int cmd_db(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return MP_EXIT_OK;
    }
    if (argc >= 2 && !strcmp(argv[1], "merge")) return cmd_db_merge(argc >= 3 ? argv[2] : NULL, argc - 2, argv + 2);
    if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        usage(stdout);
        return MP_EXIT_OK;
    }
    if (argc < 3) {
        usage(stderr);
        return MP_EXIT_USAGE;
    }
    const char *path = argv[1], *sub = argv[2];
    int sargc = argc - 2;
    char **sargv = argv + 2;
    if (!strcmp(sub, "labels")) return cmd_db_labels(path, sargc, sargv);
    if (!strcmp(sub, "split")) return cmd_db_split(path, sargc, sargv);
    if (!strcmp(sub, "query")) return cmd_db_query(path, sargc, sargv);
    if (!strcmp(sub, "export")) return cmd_db_export(path, sargc, sargv);
    if (!strcmp(sub, "import-patches")) return cmd_db_import(path, sargc, sargv);
    if (!strcmp(sub, "splits")) return cmd_db_splits(path, sargc, sargv);
    if (!strcmp(sub, "vacuum")) return cmd_db_vacuum(path, sargc, sargv);
    if (!strcmp(sub, "slides") && sargc >= 2 && !strcmp(sargv[1], "remove")) return cmd_db_slides_remove(path, sargc, sargv);
    if (!strcmp(sub, "balance")) return cmd_db_balance(path, sargc, sargv);
    if (!strcmp(sub, "merge")) return cmd_db_merge(path, sargc, sargv);

    int k = 0, nk = (int)(sizeof inspect / sizeof inspect[0]);
    while (k < nk && strcmp(sub, inspect[k].name)) k++;
    if (k == nk) {
        mp_error("db: unknown command '%s' (see magpie db --help)", sub);
        return MP_EXIT_USAGE;
    }
    /* every argument is checked before the dataset is opened: a usage error does no work */
    int json = 0, decode = 1, npos = 0;
    const char *pos[2] = {NULL, NULL};
    for (int i = 1; i < sargc; i++) {
        const char *a = sargv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(inspect[k].usage, stdout);
            return MP_EXIT_OK;
        } else if (inspect[k].flag && !strcmp(a, inspect[k].flag)) {
            json |= !strcmp(a, "--json");
            decode &= strcmp(a, "--no-decode") != 0;
        } else if (a[0] == '-' && a[1]) {
            mp_error("db %s: unknown option '%s' (see magpie db DB %s --help)", sub, a, sub);
            return MP_EXIT_USAGE;
        } else if (npos < inspect[k].nargs) pos[npos++] = a;
        else {
            mp_error("db %s: unexpected argument '%s' (see magpie db DB %s --help)", sub, a, sub);
            return MP_EXIT_USAGE;
        }
    }
    if (npos != inspect[k].nargs) {
        mp_error("db %s: expected SLIDE OUT.png (see magpie db DB %s --help)", sub, sub);
        return MP_EXIT_USAGE;
    }
    mp_db *db = db_open(path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    int rc;
    if (!strcmp(sub, "info")) rc = do_info(db);
    else if (!strcmp(sub, "slides")) rc = do_slides(db, json);
    else if (!strcmp(sub, "stats")) rc = do_stats(db);
    else if (!strcmp(sub, "check")) rc = do_check(db, decode);
    else rc = do_mask(db, pos[0], pos[1]);
    if (rc) mp_error("%s", mp_err());
    db_close(db);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}
