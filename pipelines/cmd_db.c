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

static int print_rows(mp_db *db, const char *sql, const char *fmt_head)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    if (fmt_head) printf("%s\n", fmt_head);
    int rc, nc = sqlite3_column_count(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < nc; c++) {
            const char *t = (const char *)sqlite3_column_text(st, c);
            printf("%s%s", c ? "  " : "  ", t ? t : "-");
        }
        printf("\n");
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(db, "query");
}

static int do_info(mp_db *db)
{
    char b[32];
    int64_t size = mp_file_size(db_path(db));
    printf("dataset   %s (%s, schema %lld)\n", db_path(db), mp_fmt_bytes(b, sizeof b, (double)size),
           (long long)db_query_int(db, "PRAGMA user_version"));
    printf("slides    %lld total: %lld done, %lld failed, %lld tiling (interrupted), %lld pending\n",
           (long long)db_query_int(db, "SELECT count(*) FROM slides"),
           (long long)db_query_int(db, "SELECT count(*) FROM slides WHERE status='done'"),
           (long long)db_query_int(db, "SELECT count(*) FROM slides WHERE status='failed'"),
           (long long)db_query_int(db, "SELECT count(*) FROM slides WHERE status='tiling'"),
           (long long)db_query_int(db, "SELECT count(*) FROM slides WHERE status='pending'"));
    printf("patches   %lld (unreadable tiles skipped: %lld)\n", (long long)db_query_int(db, "SELECT count(*) FROM patches"),
           (long long)db_query_int(db, "SELECT count(*) FROM tile_errors"));
    printf("images per magnification:\n");
    if (print_rows(db,
                   "SELECT printf('%6gx  %8d images  %4dx%-4d px  %s', mag, count(*), max(width), max(height), "
                   "group_concat(DISTINCT codec)) FROM images GROUP BY mag ORDER BY mag DESC",
                   NULL))
        return -1;
    int64_t nclasses = db_query_int(db, "SELECT count(*) FROM classes");
    printf("classes   %lld", (long long)nclasses);
    if (nclasses > 0) {
        sqlite3_stmt *st = db_prepare(db, "SELECT group_concat(name, ', ') FROM (SELECT name FROM classes ORDER BY id)");
        if (st && sqlite3_step(st) == SQLITE_ROW) printf(" (%s)", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    printf("\nlabels    %lld slides labelled, %lld patches with region labels\n",
           (long long)db_query_int(db, "SELECT count(*) FROM slides WHERE label IS NOT NULL"),
           (long long)db_query_int(db, "SELECT count(*) FROM patch_labels"));
    if (db_query_int(db, "SELECT count(*) FROM splits") > 0) {
        printf("splits:\n");
        if (print_rows(db,
                       "SELECT printf('%-10s %4d slides %8d patches', t.split, count(DISTINCT t.slide_id), count(p.id)) "
                       "FROM splits t LEFT JOIN patches p ON p.slide_id = t.slide_id GROUP BY t.split ORDER BY t.split",
                       NULL))
            return -1;
    }
    return 0;
}

static int do_slides(mp_db *db, int json)
{
    const char *sql =
        "SELECT s.id, s.name, s.status, coalesce(s.vendor,'-'), coalesce(s.width,0), coalesce(s.height,0), s.mpp_x, "
        "coalesce(s.mpp_source,'-'), s.n_patches, coalesce(s.error,''), coalesce(s.label,''), coalesce(s.patient,''), "
        "coalesce((SELECT group_concat(printf('%gx:%d', mag, n), ' ') FROM (SELECT i.mag, count(*) n FROM images i "
        "JOIN patches p ON p.id = i.patch_id WHERE p.slide_id = s.id GROUP BY i.mag ORDER BY i.mag DESC)), ''), s.path, "
        "s.kind FROM slides s ORDER BY s.id";
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    if (!json) printf("%4s  %-28s %-7s %-12s %-10s %13s %9s %-17s %8s  %s\n", "id", "name", "status", "kind", "vendor",
                      "size", "mpp", "mpp source", "patches", "images / error");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char size[32];
        snprintf(size, sizeof size, "%dx%d", sqlite3_column_int(st, 4), sqlite3_column_int(st, 5));
        int has_mpp = sqlite3_column_type(st, 6) != SQLITE_NULL;
        const char *err = (const char *)sqlite3_column_text(st, 9);
        const char *imgs = (const char *)sqlite3_column_text(st, 12);
        if (json) {
            /* names and errors may hold quotes: print through SQLite's json_quote */
            sqlite3_stmt *q = db_prepare(db, "SELECT json_object('id', ?1, 'name', ?2, 'status', ?3, 'vendor', ?4, "
                                             "'width', ?5, 'height', ?6, 'mpp', ?7, 'mpp_source', ?8, 'patches', ?9, "
                                             "'error', nullif(?10, ''), 'label', nullif(?11, ''), 'patient', nullif(?12, ''), "
                                             "'images', ?13, 'path', ?14, 'kind', ?15)");
            if (!q) break;
            for (int c = 0; c < 15; c++) sqlite3_bind_value(q, c + 1, sqlite3_column_value(st, c));
            if (sqlite3_step(q) == SQLITE_ROW) printf("%s\n", sqlite3_column_text(q, 0));
            sqlite3_finalize(q);
        } else {
            char mpp[32] = "-";
            if (has_mpp) snprintf(mpp, sizeof mpp, "%.4f", sqlite3_column_double(st, 6));
            const char *kind = (const char *)sqlite3_column_text(st, 14); /* NULL until the slide was read */
            printf("%4d  %-28.28s %-7s %-12s %-10.10s %13s %9s %-17.17s %8d  %s\n", sqlite3_column_int(st, 0),
                   (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
                   kind ? kind : "-", (const char *)sqlite3_column_text(st, 3), size, mpp, (const char *)sqlite3_column_text(st, 7),
                   sqlite3_column_int(st, 8), err && *err ? err : imgs);
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_fail(db, "slides");
}

/* Quantiles of one QC column via ORDER BY + OFFSET (exact, and the tables are indexed enough). */
static void qc_line(mp_db *db, const char *col, int64_t n)
{
    printf("  %-11s", col);
    if (n == 0) {
        printf(" -\n");
        return;
    }
    const double qs[] = {0.0, 0.05, 0.5, 0.95, 1.0};
    for (int i = 0; i < 5; i++) {
        char sql[256];
        int64_t off = (int64_t)(qs[i] * (double)(n - 1) + 0.5);
        snprintf(sql, sizeof sql, "SELECT %s FROM patches WHERE %s IS NOT NULL ORDER BY %s LIMIT 1 OFFSET %lld", col, col, col,
                 (long long)off);
        sqlite3_stmt *st = db_prepare(db, sql);
        double v = 0;
        int have = st && sqlite3_step(st) == SQLITE_ROW;
        if (have) v = sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
        if (have) printf(" %10.3f", v);
        else printf(" %10s", "-");
    }
    printf("\n");
}

static int do_stats(mp_db *db)
{
    printf("storage per magnification:\n");
    if (print_rows(db,
                   "SELECT printf('%6gx  %8d images  %10.1f KiB total  %7.1f KiB/image  level(s) %s  scale %.4f..%.4f', "
                   "mag, count(*), sum(length(data)) / 1024.0, avg(length(data)) / 1024.0, group_concat(DISTINCT level), "
                   "min(scale), max(scale)) FROM images GROUP BY mag ORDER BY mag DESC",
                   NULL))
        return -1;
    int64_t n = db_query_int(db, "SELECT count(*) FROM patches");
    printf("patch QC (%lld patches)   %10s %10s %10s %10s %10s\n", (long long)n, "min", "p5", "median", "p95", "max");
    qc_line(db, "tissue", n);
    qc_line(db, "blur", db_query_int(db, "SELECT count(*) FROM patches WHERE blur IS NOT NULL"));
    qc_line(db, "pen", db_query_int(db, "SELECT count(*) FROM patches WHERE pen IS NOT NULL"));
    qc_line(db, "brightness", db_query_int(db, "SELECT count(*) FROM patches WHERE brightness IS NOT NULL"));
    if (db_query_int(db, "SELECT count(*) FROM classes") > 0) {
        printf("patches per class (region label, else slide label):\n");
        if (print_rows(db,
                       "SELECT printf('%-16s %8d', cls, n) FROM (SELECT coalesce(c.name, s.label, '(unlabelled)') AS cls, "
                       "count(*) AS n FROM patches p JOIN slides s ON s.id = p.slide_id "
                       "LEFT JOIN patch_labels l ON l.patch_id = p.id LEFT JOIN classes c ON c.id = l.class_id "
                       "GROUP BY cls) ORDER BY cls",
                       NULL))
            return -1;
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

static int do_mask(mp_db *db, const char *slide, const char *out)
{
    int64_t id;
    if (db_find_slide(db, slide, &id)) return -1; /* ambiguous names and ids are refused */
    sqlite3_stmt *st = db_prepare(db, "SELECT mask, name FROM slides WHERE id = ?1");
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = -1;
    if (sqlite3_step(st) != SQLITE_ROW) {
        mp_err_set("%s: no slide '%s'", db_path(db), slide);
    } else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
        mp_err_set("%s: slide '%s' has no tissue mask (not tiled yet?)", db_path(db), slide);
    } else {
        rc = mp_write_file_atomic(out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
        if (rc == 0) mp_info("wrote %s (tissue mask of %s)", out, (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
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
