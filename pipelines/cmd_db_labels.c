/* pipelines/cmd_db_labels.c — `magpie db DB labels list|remove`: what was imported (slide
 * labels from CSV files, region annotations from GeoJSON files) and taking it back out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/labels.h"
#include "db/slides.h"
#include "pipelines/cmds.h"

static const char list_usage[] =
    "usage: magpie db DB labels list [--slide SLIDE] [--regions]\n\n"
    "The label imports (id, kind, slide, rows, source file, when), the slide labels with the import\n"
    "that set them, and with --regions every stored region annotation (id, slide, class, name,\n"
    "geometry type, vertices). SLIDE is a path, an id, or a name no other slide has.\n";

static const char remove_usage[] =
    "usage: magpie db DB labels remove (--slide SLIDE | --annotation ID | --import ID | --source FILE) [-q]\n\n"
    "  --slide SLIDE      the slide's label, its region annotations and patch labels (its patient stays)\n"
    "  --annotation ID    one region annotation (ids: magpie db DB labels list --regions)\n"
    "  --import ID        everything one import brought (ids: magpie db DB labels list)\n"
    "  --source FILE      everything imported from FILE (a CSV's slide labels, a GeoJSON's regions)\n"
    "What is left is applied again to the slides concerned, in the same transaction.\n";

static int parse_id(const char *s, int64_t *out)
{
    long v;
    if (mp_parse_long(s, &v) || v < 1) return -1;
    *out = v;
    return 0;
}

/* The listings print a head line before their first row; ctx counts the rows. */
typedef struct {
    const char *head;
    int n;
} listing;

static void row_head(listing *l)
{
    if (l->n++ == 0) printf("%s\n", l->head);
}

static int print_import(void *ctx, const db_label_import *r)
{
    row_head(ctx);
    char slide[600] = "-";
    if (r->slide_id) snprintf(slide, sizeof slide, "%s (%lld)", r->slide, (long long)r->slide_id);
    printf("%6lld  %-7s  %-24s %6lld  %s  %s\n", (long long)r->id, r->kind, slide, (long long)r->rows, r->imported_at,
           r->source);
    return 0;
}

static int print_slide_label(void *ctx, const db_slide_label *r)
{
    row_head(ctx);
    char from[64] = "set before version 3";
    if (r->import_id) snprintf(from, sizeof from, "import %lld", (long long)r->import_id);
    printf("%6lld  %-28s %-16s %-16s %s\n", (long long)r->slide_id, r->name, r->label, r->patient ? r->patient : "-",
           from);
    return 0;
}

static int print_slide_regions(void *ctx, const db_slide_regions *r)
{
    row_head(ctx);
    printf("%-28s %6lld region annotations (%s), %6lld patches labelled from them\n", r->slide, (long long)r->regions,
           r->classes, (long long)r->patches_labelled);
    return 0;
}

static int print_region(void *ctx, const db_region *r)
{
    row_head(ctx);
    printf("%6lld  %6lld  %-24s %-16s %-20s %-12s %8lld\n", (long long)r->id, (long long)r->import_id, r->slide,
           r->class_name, r->name ? r->name : "-", r->geometry, (long long)r->vertices);
    return 0;
}

int cmd_db_labels_list(const char *db_path, int argc, char **argv)
{
    const char *slide = NULL;
    int regions = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(list_usage, stdout);
            return MP_EXIT_OK;
        } else if (!strcmp(a, "--regions")) regions = 1;
        else if (!strcmp(a, "--slide") && i + 1 < argc) slide = argv[++i];
        else {
            mp_error("db labels list: %s '%s' (see magpie db DB labels list --help)",
                     a[0] == '-' ? "unknown or incomplete option" : "unexpected argument", a);
            return MP_EXIT_USAGE;
        }
    }
    mp_db *db = db_open(db_path, DB_OPEN_READONLY);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    int64_t sid = 0;
    int rc = 0;
    if (slide) {
        int m = db_slide_match(db, slide, 1, &sid);
        if (m == 0) rc = mp_err_set("%s: no slide '%s' (by path, id or name)", db_path, slide);
        else if (m < 0) rc = -1;
    }
    int have = rc == 0 ? db_labels_have_imports(db) : 0;
    if (have < 0) rc = -1;
    else if (rc == 0 && !have)
        rc = mp_err_set("%s: schema version %lld keeps no label imports (open it once read-write to migrate)", db_path,
                        (long long)db_schema_version(db));
    listing imports = {"import  kind     slide                      rows  imported              source", 0};
    listing labels = {"\n slide  name                         label            patient          from", 0};
    listing per_slide = {"\nregions per slide:", 0};
    listing each = {"\n    id  import  slide                    class            name                 geometry     vertices", 0};
    if (rc == 0) rc = db_label_imports(db, sid, print_import, &imports);
    if (rc == 0) rc = db_slide_labels(db, sid, print_slide_label, &labels);
    if (rc == 0) rc = db_slides_regions(db, sid, print_slide_regions, &per_slide);
    if (rc == 0 && regions) rc = db_regions(db, sid, print_region, &each);
    int n = imports.n + labels.n + per_slide.n;
    if (rc == 0 && n == 0) printf("no labels%s\n", slide ? " for this slide" : "");
    if (rc) mp_error("%s", mp_err());
    db_close(db);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}

int cmd_db_labels_remove(const char *db_path, int argc, char **argv)
{
    db_labels_sel sel = {0};
    const char *slide = NULL;
    int nsel = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(remove_usage, stdout);
            return MP_EXIT_OK;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            mp_log_set_quiet(1);
            continue;
        }
        int bad = !v;
        if (!strcmp(a, "--slide")) slide = v;
        else if (!strcmp(a, "--annotation")) bad = bad || parse_id(v, &sel.annotation_id);
        else if (!strcmp(a, "--import")) bad = bad || parse_id(v, &sel.import_id);
        else if (!strcmp(a, "--source")) sel.source = v;
        else {
            mp_error("db labels remove: %s '%s' (see magpie db DB labels remove --help)",
                     a[0] == '-' ? "unknown option" : "unexpected argument", a);
            return MP_EXIT_USAGE;
        }
        if (bad) {
            mp_error("db labels remove: %s wants %s, got '%s'", a, strcmp(a, "--source") ? "a positive id" : "a file",
                     v ? v : "(missing)");
            return MP_EXIT_USAGE;
        }
        nsel++;
        i++;
    }
    if (nsel != 1) {
        mp_error("db labels remove: give exactly one of --slide, --annotation, --import, --source "
                 "(see magpie db DB labels remove --help)");
        return MP_EXIT_USAGE;
    }
    mp_db *db = db_open(db_path, 0);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    int rc = 0;
    if (slide) {
        int m = db_slide_match(db, slide, 1, &sel.slide_id);
        if (m == 0) rc = mp_err_set("%s: no slide '%s' (by path, id or name)", db_path, slide);
        else if (m < 0) rc = -1;
    }
    db_labels_removed r;
    if (rc == 0) rc = db_labels_remove(db, &sel, &r);
    if (rc == 0)
        mp_info("%s: removed %lld region annotation%s, %lld slide label%s, %lld import%s; patch labels of the slides "
                "concerned: %lld -> %lld",
                db_path, (long long)r.regions, r.regions == 1 ? "" : "s", (long long)r.slide_labels,
                r.slide_labels == 1 ? "" : "s", (long long)r.imports, r.imports == 1 ? "" : "s",
                (long long)r.patch_labels_before, (long long)r.patch_labels_after);
    else mp_error("%s", mp_err());
    db_close(db);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}
