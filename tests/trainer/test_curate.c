/* tests/trainer/test_curate.c — label import (CSV, QuPath GeoJSON) and patient-grouped splits,
 * with the anomaly cases: malformed CSV, unknown columns, GeoJSON without classification,
 * one patient in two splits. */
#include "tests/test.h"

#include <unistd.h>

#include "common/error.h"
#include "db/dataset.h"
#include "db/labels.h"
#include "db/split.h"
#include "db/sql.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* A dataset with `n` slides s00..s(n-1), each with a 2×2 grid of 100-px patches. */
static mp_db *make_db(const char *name, int n)
{
    unlink(tmp(name));
    mp_db *db = db_open(tmp(name), DB_OPEN_CREATE);
    if (!db) return NULL;
    db_exec(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        char sql[512];
        snprintf(sql, sizeof sql, "INSERT INTO slides(id, path, name, fingerprint) VALUES (%d, '/x/s%02d.tif', 's%02d', 'f')",
                 i + 1, i, i);
        db_exec(db, sql);
        for (int g = 0; g < 4; g++) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO patches(slide_id, gx, gy, x0, y0, size0, tissue) VALUES (%d, %d, %d, %d, %d, 100, 1)",
                     i + 1, g % 2, g / 2, (g % 2) * 100, (g / 2) * 100);
            db_exec(db, sql);
        }
    }
    db_exec(db, "COMMIT");
    return db;
}

static char *query_text(mp_db *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    char *r = NULL;
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        r = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return r;
}

TEST(csv_import)
{
    mp_db *db = make_db("csv.db", 3);
    const char *csv = tmp("labels.csv");
    write_text(csv, "Slide,Patient,Label\r\ns00,P1,tumor\r\n\"s01\",\"P 1, b\",\"lymph\"\r\nghost,P9,tumor\r\ns02,P3,\r\n");
    db_label_report rep;
    CHECK_INT(db_labels_import_csv(db, csv, &rep), 0);
    CHECK_INT(rep.rows, 4);
    CHECK_INT(rep.updated, 3);
    CHECK_INT(rep.n_unknown, 1);
    if (rep.n_unknown) CHECK_STR(rep.unknown[0], "ghost");
    CHECK_INT(rep.new_classes, 2);
    db_label_report_free(&rep);
    char *v = query_text(db, "SELECT patient FROM slides WHERE name = 's01'");
    CHECK_STR(v, "P 1, b");
    free(v);
    v = query_text(db, "SELECT label FROM slides WHERE name = 's01'");
    CHECK_STR(v, "lymph");
    free(v);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE label IS NULL"), 1);
    CHECK_INT(db_class_id(db, "tumor", 0), 0);
    CHECK_INT(db_class_id(db, "lymph", 0), 1);
    db_close(db);
}

TEST(csv_anomalies)
{
    mp_db *db = make_db("csvbad.db", 2);
    db_label_report rep;
    char want[512];
    const char *p = tmp("bad1.csv");
    write_text(p, "slide,patient,label\ns00,P1,tumor\ns01,\"P\"2,lymph\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:3: malformed CSV", p);
    CHECK_CONTAINS(mp_err(), want);
    /* Nothing of a bad file is applied. */
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE label IS NOT NULL"), 0);

    p = tmp("bad2.csv");
    write_text(p, "slide,patient,diagnosis\ns00,P1,tumor\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:1: unknown column 'diagnosis' (expected slide, patient, label)", p);
    CHECK_STR(mp_err(), want);

    p = tmp("bad3.csv");
    write_text(p, "slide,label\ns00,tumor\n\ns01\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:4: 1 fields, the header has 2", p);
    CHECK_STR(mp_err(), want);

    p = tmp("bad4.csv");
    write_text(p, "slide,label\ns00,\"tumor\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:2: malformed CSV", p);
    CHECK_CONTAINS(mp_err(), want);

    p = tmp("bad5.csv");
    write_text(p, "patient,label\nP1,tumor\n");
    CHECK_INT(db_labels_import_csv(db, p, &rep), -1);
    snprintf(want, sizeof want, "%s:1: no 'slide' column in the header", p);
    CHECK_STR(mp_err(), want);
    db_close(db);
}

TEST(geojson_regions)
{
    mp_db *db = make_db("geo.db", 1);
    const char *p = tmp("s00.geojson");
    /* Tumour covers x < 150 over the whole height (patch (0,0): 100%, (1,0): 50%); a lymph square
     * with a hole covers patch (1,1) = [100,200)² except a 50×50 hole → 75%. */
    write_text(p, "{\"type\":\"FeatureCollection\",\"features\":["
                  "{\"type\":\"Feature\",\"id\":\"a\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
                  "[[[0,0],[150,0],[150,100],[0,100],[0,0]]]},"
                  "\"properties\":{\"objectType\":\"annotation\",\"classification\":{\"name\":\"tumor\",\"color\":[200,0,0]}}},"
                  "{\"type\":\"Feature\",\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":"
                  "[[[[100,100],[200,100],[200,200],[100,200],[100,100]],[[100,100],[150,100],[150,150],[100,150],[100,100]]]]},"
                  "\"properties\":{\"objectType\":\"annotation\",\"classification\":{\"name\":\"lymph\"}}}]}");
    db_label_report rep;
    CHECK_INT(db_labels_import_geojson(db, p, NULL, 0.5, &rep), 0);
    CHECK_INT(rep.rows, 2);
    CHECK_INT(rep.updated, 3);
    CHECK_INT(rep.n_unknown, 0);
    db_label_report_free(&rep);
    CHECK_INT(db_query_int(db, "SELECT pl.class_id FROM patch_labels pl JOIN patches p ON p.id = pl.patch_id WHERE gx=0 AND gy=0"), 0);
    sqlite3_stmt *st = db_prepare(db, "SELECT pl.coverage, pl.class_id FROM patch_labels pl JOIN patches p ON p.id = "
                                      "pl.patch_id WHERE gx=1 AND gy=1");
    CHECK(st && sqlite3_step(st) == SQLITE_ROW);
    CHECK_NEAR(sqlite3_column_double(st, 0), 0.75, 1e-9);
    CHECK_INT(sqlite3_column_int(st, 1), 1);
    sqlite3_finalize(st);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM patch_labels pl JOIN patches p ON p.id = pl.patch_id WHERE gx=0 AND gy=1"), 0);

    /* Patch labels win over the slide label in the loader's view. */
    db_exec(db, "UPDATE slides SET label = 'lymph'");
    db_exec(db, "INSERT INTO splits VALUES (1, 'train')");
    db_itemset is;
    CHECK_INT(db_items_load(db, "train", 0, &is), 0);
    CHECK_INT(is.n, 4);
    CHECK_INT(is.nclasses, 2);
    if (is.n == 4) {
        CHECK_INT(is.items[0].label, 0); /* (0,0): tumor region */
        CHECK_INT(is.items[2].label, 1); /* (0,1): no region → slide label */
    }
    db_itemset_free(&is);

    const char *q = tmp("s00b.geojson");
    write_text(q, "[{\"type\":\"Feature\",\"id\":\"x1\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]},"
                  "\"properties\":{\"objectType\":\"annotation\"}}]");
    CHECK_INT(db_labels_import_geojson(db, q, "s00", 0.5, &rep), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: feature 0 (x1) has no classification (QuPath writes properties.classification.name)", q);
    CHECK_STR(mp_err(), want);
    write_text(q, "{\"type\":\"Point\"}");
    CHECK_INT(db_labels_import_geojson(db, q, "s00", 0.5, &rep), -1);
    CHECK_CONTAINS(mp_err(), "not GeoJSON");
    write_text(q, "{\"type\":");
    CHECK_INT(db_labels_import_geojson(db, q, "s00", 0.5, &rep), -1);
    CHECK_CONTAINS(mp_err(), "not valid JSON");
    db_close(db);
}

/* 30 slides: patients P00..P14 with two slides each; labels a/b/c by patient; patient 14 unlabelled. */
static mp_db *split_db(void)
{
    mp_db *db = make_db("split.db", 30);
    char sql[256];
    for (int i = 0; i < 30; i++) {
        int pat = i / 2;
        if (pat == 14) snprintf(sql, sizeof sql, "UPDATE slides SET patient = 'P%02d' WHERE id = %d", pat, i + 1);
        else snprintf(sql, sizeof sql, "UPDATE slides SET patient = 'P%02d', label = '%c' WHERE id = %d", pat, 'a' + pat % 3, i + 1);
        db_exec(db, sql);
    }
    db_exec(db, "INSERT INTO classes VALUES (0,'a'),(1,'b'),(2,'c')");
    return db;
}

TEST(split_by_patient)
{
    mp_db *db = split_db();
    db_split_opts o = {.ratios = {0.6, 0.2, 0.2}, .stratify = 1, .seed = 3};
    db_split_report rep;
    CHECK_INT(db_split_make(db, &o, &rep), 0);
    /* 14 labelled patients, ~5 per label: 3 train, 1 val, 1 test (rounded per stratum). */
    CHECK_INT(rep.slides[0] + rep.slides[1] + rep.slides[2] + rep.slides[3], 30);
    CHECK_INT(rep.slides[3], 2);
    CHECK(rep.patients[0] >= 7 && rep.patients[1] >= 2 && rep.patients[2] >= 2);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM (SELECT patient FROM slides s JOIN splits sp ON sp.slide_id = s.id "
                               "GROUP BY patient HAVING count(DISTINCT split) > 1)"), 0);
    /* every label is in every split */
    CHECK_INT(db_query_int(db, "SELECT count(DISTINCT s.label || sp.split) FROM slides s JOIN splits sp ON sp.slide_id = s.id "
                               "WHERE sp.split != 'unlabeled'"), 9);
    char *before = NULL;
    {
        sqlite3_stmt *st = db_prepare(db, "SELECT group_concat(split) FROM (SELECT split FROM splits ORDER BY slide_id)");
        sqlite3_step(st);
        before = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    CHECK_INT(db_split_make(db, &o, &rep), 0); /* same seed, same split */
    char *after = query_text(db, "SELECT group_concat(split) FROM (SELECT split FROM splits ORDER BY slide_id)");
    CHECK_STR(before, after);
    free(before);
    free(after);

    /* Held-out unlabeled patients: one per label by ratio, plus an explicit slide's patient. */
    const char *names[1] = {"s01"};
    db_split_opts u = {.ratios = {0.6, 0.2, 0.2}, .stratify = 1, .seed = 3, .unlabeled_ratio = 0.2, .unlabeled = names,
                       .n_unlabeled = 1};
    CHECK_INT(db_split_make(db, &u, &rep), 0);
    CHECK_INT(rep.patients[3], 1 + 1 + 3);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM splits sp JOIN slides s ON s.id = sp.slide_id WHERE s.patient = 'P00' "
                               "AND sp.split = 'unlabeled'"), 2);
    const char *ghost[1] = {"nope"};
    u.unlabeled = ghost;
    CHECK_INT(db_split_make(db, &u, &rep), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: --unlabeled: no slide named 'nope'", tmp("split.db"));
    CHECK_STR(mp_err(), want);
    db_close(db);
}

TEST(patient_in_two_splits)
{
    mp_db *db = split_db();
    db_exec(db, "DELETE FROM splits");
    db_exec(db, "INSERT INTO splits SELECT id, 'train' FROM slides");
    db_exec(db, "UPDATE splits SET split = 'test' WHERE slide_id = 4"); /* P01's second slide */
    CHECK_INT(db_split_check(db), -1);
    char want[512];
    snprintf(want, sizeof want, "%s: patient P01 is in two splits (test and train)", tmp("split.db"));
    CHECK_STR(mp_err(), want);
    db_close(db);
}

int main(void)
{
    if (t_tmpdir("curate")) return 1;
    RUN(csv_import);
    RUN(csv_anomalies);
    RUN(geojson_regions);
    RUN(split_by_patient);
    RUN(patient_in_two_splits);
    if (t_rmdir()) return 1;
    return test_done();
}
