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

static int print_query(mp_db *db, const char *sql, int64_t slide, const char *head)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, slide);
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == 0) printf("%s\n", head);
        printf("%s\n", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return db_fail(db, "listing labels");
    return n;
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
    if (rc == 0 && db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'label_imports'") != 1)
        rc = mp_err_set("%s: schema version %lld keeps no label imports (open it once read-write to migrate)", db_path,
                        (long long)db_query_int(db, "PRAGMA user_version"));
    int n = 0;
    if (rc == 0) {
        n = print_query(db,
                        "SELECT printf('%6d  %-7s  %-24s %6d  %s  %s', i.id, i.kind, "
                        "coalesce(s.name || ' (' || s.id || ')', '-'), i.rows, i.imported_at, i.source) "
                        "FROM label_imports i LEFT JOIN slides s ON s.id = i.slide_id "
                        "WHERE ?1 = 0 OR i.slide_id = ?1 OR i.id IN (SELECT import_id FROM slide_labels WHERE slide_id = ?1) "
                        "ORDER BY i.id",
                        sid, "import  kind     slide                      rows  imported              source");
        rc = n < 0 ? -1 : 0;
    }
    if (rc == 0) {
        int k = print_query(db,
                            "SELECT printf('%6d  %-28s %-16s %-16s %s', s.id, s.name, coalesce(s.label, '-'), "
                            "coalesce(s.patient, '-'), coalesce('import ' || l.import_id, 'set before version 3')) "
                            "FROM slides s LEFT JOIN slide_labels l ON l.slide_id = s.id "
                            "WHERE s.label IS NOT NULL AND (?1 = 0 OR s.id = ?1) ORDER BY s.id",
                            sid, "\n slide  name                         label            patient          from");
        rc = k < 0 ? -1 : 0;
        n += k > 0 ? k : 0;
    }
    if (rc == 0) {
        int k = print_query(db,
                            "SELECT printf('%-28s %6d region annotations (%s), %6d patches labelled from them', s.name, "
                            "count(DISTINCT r.id), (SELECT group_concat(c, ', ') FROM (SELECT DISTINCT c.name AS c FROM "
                            "region_annotations r2 JOIN classes c ON c.id = r2.class_id WHERE r2.slide_id = s.id "
                            "ORDER BY c.name)), (SELECT count(*) FROM patch_labels pl JOIN patches p ON p.id = pl.patch_id "
                            "WHERE p.slide_id = s.id)) "
                            "FROM region_annotations r JOIN slides s ON s.id = r.slide_id WHERE ?1 = 0 OR s.id = ?1 "
                            "GROUP BY s.id ORDER BY s.id",
                            sid, "\nregions per slide:");
        rc = k < 0 ? -1 : 0;
        n += k > 0 ? k : 0;
    }
    if (rc == 0 && regions) {
        int k = print_query(db,
                            "SELECT printf('%6d  %6d  %-24s %-16s %-20s %-12s %8d', r.id, r.import_id, s.name, c.name, "
                            "coalesce(r.name, '-'), json_extract(r.geometry, '$.type'), "
                            "(SELECT count(*) FROM json_tree(r.geometry, '$.coordinates') t WHERE t.type = 'array' AND "
                            "json_array_length(t.value) >= 2 AND json_type(t.value, '$[0]') IN ('integer', 'real'))) "
                            "FROM region_annotations r JOIN slides s ON s.id = r.slide_id JOIN classes c ON c.id = r.class_id "
                            "WHERE ?1 = 0 OR r.slide_id = ?1 ORDER BY r.id",
                            sid, "\n    id  import  slide                    class            name                 geometry     vertices");
        rc = k < 0 ? -1 : 0;
    }
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
