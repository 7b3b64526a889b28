/* tests/db/test_curate_db.c — curation in db/ (issue 12): slides named by path or unique name,
 * labels stored apart from patches and re-applied after a re-tile, labels removal, slide
 * removal, splits that never leave an asked-for split empty (counts, folds), leak detection,
 * and the version-2 -> 3 migration keeping old patch labels. */
#include "tests/test.h"

#include <unistd.h>

#include "common/error.h"
#include "db/labels.h"
#include "db/slides.h"
#include "db/split.h"
#include "db/tiling.h"
#include "db/sql.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* slides (id, path, name, patient, label); each gets a 2x2 grid of 100-px patches */
static mp_db *make_db(const char *name, const char *slides_sql)
{
    unlink(tmp(name));
    mp_db *db = db_open(tmp(name), DB_OPEN_CREATE);
    if (!db) return NULL;
    db_exec(db, "BEGIN");
    db_exec(db, slides_sql);
    db_exec(db, "INSERT INTO patches(slide_id, gx, gy, x0, y0, size0, tissue) SELECT s.id, g.x, g.y, g.x * 100, g.y * 100, "
                "100, 1 FROM slides s, (SELECT 0 AS x, 0 AS y UNION ALL SELECT 1, 0 UNION ALL SELECT 0, 1 UNION ALL "
                "SELECT 1, 1) g");
    db_exec(db, "COMMIT");
    return db;
}

static int64_t q(mp_db *db, const char *sql) { return db_query_int(db, sql); }

TEST(slide_match)
{
    mp_db *db = make_db("match.db", "INSERT INTO slides(id, path, name, fingerprint) VALUES "
                                     "(1, '/a/X.svs', 'X', 'f1'), (2, '/b/X.tiff', 'X', 'f2'), (3, '/c/Y.svs', 'Y', 'f3'), "
                                     "(4, '/d/3.svs', '3', 'f4')");
    CHECK(db != NULL);
    if (!db) return;
    int64_t id = 0;
    CHECK_INT(db_slide_match(db, "/b/X.tiff", 0, &id), 1);
    CHECK_INT(id, 2);
    CHECK_INT(db_slide_match(db, "Y", 0, &id), 1);
    CHECK_INT(id, 3);
    CHECK_INT(db_slide_match(db, "nope", 1, &id), 0);
    CHECK_INT(db_slide_match(db, "X", 0, &id), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: 'X' names 2 slides: slide 1 (/a/X.svs), slide 2 (/b/X.tiff); name one by its path",
             tmp("match.db"));
    CHECK_STR(mp_err(), want);
    /* '3' is slide 4's name and slide 3's id: a name when ids are not allowed, ambiguous when they are */
    CHECK_INT(db_slide_match(db, "3", 0, &id), 1);
    CHECK_INT(id, 4);
    CHECK_INT(db_slide_match(db, "3", 1, &id), -1);
    CHECK_INT(db_slide_match(db, "2", 1, &id), 1);
    CHECK_INT(id, 2);
    db_close(db);
}

TEST(csv_names_and_paths)
{
    mp_db *db = make_db("csv.db", "INSERT INTO slides(id, path, name, fingerprint) VALUES "
                                   "(1, '/a/X.svs', 'X', 'f1'), (2, '/b/X.tiff', 'X', 'f2'), (3, '/c/Y.svs', 'Y', 'f3')");
    if (!db) return;
    db_label_report rep;
    const char *p = tmp("amb.csv");
    write_text(p, "slide,label\nY,Normal\nX,Tumor\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    char want[512];
    snprintf(want, sizeof want, "%s:3: 'X' names 2 slides: slide 1 (/a/X.svs), slide 2 (/b/X.tiff); give the slide's path", p);
    CHECK_STR(mp_err(), want);
    CHECK_INT(q(db, "SELECT count(*) FROM slides WHERE label IS NOT NULL"), 0); /* nothing applied */
    CHECK_INT(q(db, "SELECT count(*) FROM label_imports"), 0);
    write_text(p, "slide,label\nY,Normal\n/b/X.tiff,Tumor\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), 0);
    CHECK_INT(rep.updated, 2);
    db_label_report_free(&rep);
    CHECK_INT(q(db, "SELECT id FROM slides WHERE label = 'Tumor'"), 2);
    CHECK_INT(q(db, "SELECT count(*) FROM slide_labels WHERE import_id = (SELECT id FROM label_imports WHERE kind = 'csv')"), 2);
    /* importing it again leaves one import, not an orphan */
    CHECK_INT(db_labels_import_csv(db, p, &rep), 0);
    db_label_report_free(&rep);
    CHECK_INT(q(db, "SELECT count(*) FROM label_imports"), 1);
    db_close(db);
}

static const char *square_geojson =
    "{\"type\":\"FeatureCollection\",\"features\":["
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[150,0],[150,200],[0,200],[0,0]]]},"
    "\"properties\":{\"name\":\"left\",\"classification\":{\"name\":\"tumor\"}}},"
    "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[150,0],[200,0],[200,200],[150,200],[150,0]]]},"
    "\"properties\":{\"classification\":{\"name\":\"stroma\"}}}]}";

/* the labelled patches as "gx,gy:class;..." */
static void labelled(mp_db *db, char *out, size_t cap)
{
    out[0] = 0;
    sqlite3_stmt *st = db_prepare(db, "SELECT p.gx, p.gy, l.class_id FROM patch_labels l JOIN patches p ON p.id = "
                                      "l.patch_id ORDER BY p.gy, p.gx");
    while (st && sqlite3_step(st) == SQLITE_ROW)
        snprintf(out + strlen(out), cap - strlen(out), "%d,%d:%d;", sqlite3_column_int(st, 0), sqlite3_column_int(st, 1),
                 sqlite3_column_int(st, 2));
    sqlite3_finalize(st);
}

TEST(regions_survive_retile)
{
    mp_db *db = make_db("retile.db", "INSERT INTO slides(id, path, name, fingerprint, params_hash, status) VALUES "
                                      "(1, '/a/S.svs', 'S', 'f1', 'h1', 'done')");
    if (!db) return;
    const char *p = tmp("S.geojson");
    write_text(p, square_geojson);
    db_label_report rep;
    CHECK_INT(db_labels_import_geojson(db, p, NULL, 0.5, &rep), 0);
    CHECK_INT(rep.rows, 2);
    /* left column all tumor; right column half tumor, half stroma: the tie goes to the lower
     * class id (tumor), at 0.5 coverage */
    CHECK_INT(rep.updated, 4);
    db_label_report_free(&rep);
    char before[256];
    labelled(db, before, sizeof before);
    CHECK_STR(before, "0,0:0;1,0:0;0,1:0;1,1:0;");
    CHECK_INT(q(db, "SELECT count(*) FROM region_annotations"), 2);
    /* re-tile: new parameters delete the patches; a grid of 50-px patches is written; the
     * finish re-applies the stored regions */
    int64_t id;
    CHECK_INT(db_tiling_prepare(db, "/a/S.svs", "S", "f1", "{}", "h2", &id), 0);
    CHECK_INT(q(db, "SELECT count(*) FROM patches"), 0);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels"), 0);
    db_tile_writer *w = db_tile_writer_new(db, id);
    db_patch_rec recs[16];
    unsigned char px = 0;
    db_image_rec img = {10, 1, 1, 0, 1, "png", &px, 1};
    for (int i = 0; i < 16; i++)
        recs[i] = (db_patch_rec){i % 4, i / 4, (i % 4) * 50, (i / 4) * 50, 50, 1, 0, 0, 0, NULL, 1, &img};
    CHECK_INT(db_tile_writer_batch(w, recs, 16), 0);
    db_tile_writer_free(w);
    CHECK_INT(db_tiling_finish(db, id), 0);
    /* 50-px columns 0-2 lie in the tumor region (x < 150), column 3 in stroma */
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels l JOIN classes c ON c.id = l.class_id WHERE c.name = 'tumor'"), 12);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels l JOIN classes c ON c.id = l.class_id WHERE c.name = 'stroma'"), 4);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels WHERE source NOT LIKE 'import:%'"), 0);
    /* removing the stroma region re-applies the rest: 12 left */
    db_labels_sel sel = {.annotation_id = q(db, "SELECT id FROM region_annotations WHERE feature = 1")};
    db_labels_removed r;
    CHECK_INT(db_labels_remove(db, &sel, &r), 0);
    CHECK_INT(r.regions, 1);
    CHECK_INT(r.patch_labels_before, 16);
    CHECK_INT(r.patch_labels_after, 12);
    /* by source: everything from the file, and the import goes */
    db_labels_sel by_src = {.source = p};
    CHECK_INT(db_labels_remove(db, &by_src, &r), 0);
    CHECK_INT(r.patch_labels_after, 0);
    CHECK_INT(q(db, "SELECT count(*) FROM label_imports"), 0);
    CHECK_INT(db_labels_remove(db, &by_src, &r), -1);
    CHECK_CONTAINS(mp_err(), "no labels imported from file");
    db_close(db);
}

TEST(slides_remove)
{
    mp_db *db = make_db("rm.db", "INSERT INTO slides(id, path, name, fingerprint, patient, label) VALUES "
                                  "(1, '/a/A.svs', 'A', 'f1', 'p1', 'T'), (2, '/a/B.svs', 'B', 'f2', 'p2', 'N')");
    if (!db) return;
    db_exec(db, "INSERT INTO classes VALUES (0, 'T'); INSERT INTO patch_labels SELECT id, 0, 1, 'x' FROM patches; "
                "INSERT INTO images SELECT id, 10, 1, 1, 0, 1, 'png', x'00' FROM patches; "
                "INSERT INTO splits VALUES (1, 'train'), (2, 'val'); "
                "INSERT INTO predictions(slide_id, slide_path, slide_fingerprint, model_fingerprint, mag, gx, gy, x0, y0, "
                "size0, class_id, class_name, confidence, probs) VALUES (1, '/a/A.svs', 'f1', 'm', 10, 0, 0, 0, 0, 1, 0, 'T', 1, '[1]')");
    int64_t ids[1] = {1}, np = 0;
    CHECK_INT(db_slides_remove(db, ids, 1, &np), 0);
    CHECK_INT(np, 4);
    CHECK_INT(q(db, "SELECT count(*) FROM slides"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM patches"), 4);
    CHECK_INT(q(db, "SELECT count(*) FROM images"), 4);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels"), 4);
    CHECK_INT(q(db, "SELECT count(*) FROM splits"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM predictions"), 0);
    db_close(db);
}

/* the README's case: 8 slides of 4 patients, Tumor 2, Stroma 1, Lymphocyte 1 */
static const char *readme_slides =
    "INSERT INTO slides(id, path, name, fingerprint, patient, label) VALUES "
    "(1, '/s0', 's0', 'f', 'p0', 'Tumor'), (2, '/s1', 's1', 'f', 'p1', 'Stroma'), (3, '/s2', 's2', 'f', 'p2', 'Lymphocyte'), "
    "(4, '/s3', 's3', 'f', 'p3', 'Tumor'), (5, '/s4', 's4', 'f', 'p0', 'Tumor'), (6, '/s5', 's5', 'f', 'p1', 'Stroma'), "
    "(7, '/s6', 's6', 'f', 'p2', 'Lymphocyte'), (8, '/s7', 's7', 'f', 'p3', 'Tumor')";

TEST(split_never_empty)
{
    mp_db *db = make_db("split.db", readme_slides);
    if (!db) return;
    db_split_opts o = {.ratios = {0.6, 0.2, 0.2}, .stratify = 1, .seed = 1};
    db_split_report rep;
    CHECK_INT(db_split_make(db, &o, &rep), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: cannot fill train, val and test with every class: patients per class (labelled): "
                                "Tumor 2, Stroma 1, Lymphocyte 1; each class needs at least 3. Label more patients, ask "
                                "for fewer splits, or --stratify none", tmp("split.db"));
    CHECK_STR(mp_err(), want);
    CHECK_INT(q(db, "SELECT count(*) FROM splits"), 0);
    o.stratify = 0;
    CHECK_INT(db_split_make(db, &o, &rep), 0);
    CHECK_INT(rep.patients[0], 2);
    CHECK_INT(rep.patients[1], 1);
    CHECK_INT(rep.patients[2], 1);
    /* every seed: no split asked for is empty */
    for (int seed = 0; seed < 20; seed++) {
        o.seed = (uint64_t)seed;
        CHECK_INT(db_split_make(db, &o, &rep), 0);
        CHECK(rep.patients[0] > 0 && rep.patients[1] > 0 && rep.patients[2] > 0);
    }
    /* stratified 0.5,0,0.5: Stroma and Lymphocyte have one patient each, two splits need two */
    o.stratify = 1;
    o.ratios[0] = 0.5, o.ratios[1] = 0, o.ratios[2] = 0.5;
    CHECK_INT(db_split_make(db, &o, &rep), -1);
    CHECK_CONTAINS(mp_err(), "cannot fill train and test with every class");
    /* counts: 1 train per class over Tumor's 2 (the rest to train) */
    o.counts = 1;
    o.ratios[0] = 1, o.ratios[1] = 0, o.ratios[2] = 0;
    CHECK_INT(db_split_make(db, &o, &rep), 0);
    CHECK_INT(rep.patients[0], 4);
    o.ratios[2] = 1;
    CHECK_INT(db_split_make(db, &o, &rep), -1);
    CHECK_CONTAINS(mp_err(), "each class needs at least 2");
    db_close(db);
}

TEST(folds_and_leaks)
{
    /* 6 patients, 2 per class, 2 slides each */
    mp_db *db = make_db("folds.db", "INSERT INTO slides(id, path, name, fingerprint, patient, label) SELECT v, '/s' || v, "
                                     "'s' || v, 'f', 'p' || (v % 6), CASE v % 3 WHEN 0 THEN 'A' WHEN 1 THEN 'B' ELSE 'C' END "
                                     "FROM (WITH RECURSIVE c(v) AS (SELECT 0 UNION ALL SELECT v + 1 FROM c WHERE v < 11) "
                                     "SELECT v FROM c)");
    if (!db) return;
    db_split_opts o = {.stratify = 1, .seed = 3, .folds = 2, .fold = 1};
    db_split_report rep;
    CHECK_INT(db_split_make(db, &o, &rep), 0);
    CHECK_INT(rep.fold_patients[0], 3);
    CHECK_INT(rep.fold_patients[1], 3);
    CHECK_INT(q(db, "SELECT count(*) FROM folds"), 12);
    /* every class in every fold, every patient in one fold, fold 1 is val */
    CHECK_INT(q(db, "SELECT count(*) FROM (SELECT fold FROM folds f JOIN slides s ON s.id = f.slide_id GROUP BY fold "
                    "HAVING count(DISTINCT label) = 3)"), 2);
    CHECK_INT(q(db, "SELECT count(*) FROM (SELECT patient FROM folds f JOIN slides s ON s.id = f.slide_id GROUP BY patient "
                    "HAVING count(DISTINCT fold) > 1)"), 0);
    CHECK_INT(q(db, "SELECT count(*) FROM folds f JOIN splits t ON t.slide_id = f.slide_id WHERE (fold = 1) != (split = 'val')"), 0);
    CHECK_INT(db_split_leaks(db, NULL, NULL), 0);
    o.folds = 3;
    o.fold = 0;
    CHECK_INT(db_split_make(db, &o, &rep), -1);
    CHECK_CONTAINS(mp_err(), "cannot fill 3 folds with every class: patients per class (labelled): A 2, B 2, C 2");
    /* leaks put in by hand are found */
    db_exec(db, "UPDATE folds SET fold = 1 - fold WHERE slide_id = 0");
    CHECK_INT(db_split_leaks(db, NULL, NULL), 1);
    CHECK_INT(db_split_check(db), -1);
    CHECK_CONTAINS(mp_err(), "patient p0 is in two folds (0 and 1)");
    db_close(db);
}

/* a version-2 dataset: its region labels (source 'geojson:...') stay until a re-tile */
TEST(migrate_v2_keeps_labels)
{
    mp_db *db = make_db("v2.db", "INSERT INTO slides(id, path, name, fingerprint) VALUES (1, '/a/S.svs', 'S', 'f')");
    if (!db) return;
    CHECK_INT(db_exec(db, "DROP TABLE region_annotations; DROP TABLE slide_labels; DROP TABLE label_imports; "
                          "DROP TABLE folds; PRAGMA user_version = 2; INSERT INTO classes VALUES (0, 'old'); "
                          "INSERT INTO patch_labels SELECT id, 0, 1, 'geojson:/x.geojson' FROM patches"), 0);
    db_close(db);
    db = db_open(tmp("v2.db"), 0);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(q(db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('label_imports', 'region_annotations', "
                    "'slide_labels', 'folds')"), 4);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels"), 4);
    /* a new import over half the slide replaces those patches' labels and keeps the others */
    const char *p = tmp("S.geojson");
    write_text(p, "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[100,0],[100,200],"
                  "[0,200],[0,0]]]},\"properties\":{\"classification\":{\"name\":\"new\"}}}");
    db_label_report rep;
    CHECK_INT(db_labels_import_geojson(db, p, NULL, 0.5, &rep), 0);
    CHECK_INT(rep.updated, 2);
    db_label_report_free(&rep);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels WHERE source LIKE 'geojson:%'"), 2);
    CHECK_INT(q(db, "SELECT count(*) FROM patch_labels WHERE source LIKE 'import:%'"), 2);
    db_close(db);
}

int main(void)
{
    RUN(slide_match);
    RUN(csv_names_and_paths);
    RUN(regions_survive_retile);
    RUN(slides_remove);
    RUN(split_never_empty);
    RUN(folds_and_leaks);
    RUN(migrate_v2_keeps_labels);
    return test_done();
}
