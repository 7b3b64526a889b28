/* tests/db/test_db.c — opening, creating and refusing datasets. */
#include "tests/test.h"

#include <sqlite3.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "db/predictions.h"

TEST(create_and_reopen)
{
    char path[256];
    snprintf(path, sizeof path, "%s", tmp("a.db"));
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_query_int(db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    CHECK_INT(db_meta_set(db, "k", "v1"), 0);
    CHECK_INT(db_meta_set(db, "k", "v2"), 0);
    char *v = db_meta_get(db, "k");
    CHECK_STR(v, "v2");
    free(v);
    CHECK(db_meta_get(db, "absent") == NULL);
    db_close(db);
    db = db_open(path, DB_OPEN_READONLY);
    CHECK(db != NULL);
    if (db) CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides"), 0);
    db_close(db);
}

TEST(refuses_bad_files)
{
    CHECK(db_open(tmp("missing.db"), 0) == NULL);
    char want[300];
    snprintf(want, sizeof want, "%s: no such dataset", tmp("missing.db"));
    CHECK_STR(mp_err(), want);

    FILE *f = fopen(tmp("text.db"), "w");
    fputs("this is not a database, just some text that is long enough to be a header\n", f);
    fclose(f);
    CHECK(db_open(tmp("text.db"), DB_OPEN_CREATE) == NULL);
    snprintf(want, sizeof want, "%s: not a SQLite database", tmp("text.db"));
    CHECK_CONTAINS(mp_err(), want);

    sqlite3 *h;
    sqlite3_open(tmp("foreign.db"), &h);
    sqlite3_exec(h, "CREATE TABLE t(x)", NULL, NULL, NULL);
    sqlite3_close(h);
    CHECK(db_open(tmp("foreign.db"), DB_OPEN_CREATE) == NULL);
    snprintf(want, sizeof want, "%s: SQLite file is not a magpie dataset", tmp("foreign.db"));
    CHECK_STR(mp_err(), want);

    sqlite3_open(tmp("future.db"), &h);
    sqlite3_exec(h, "CREATE TABLE slides(x); PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(h);
    CHECK(db_open(tmp("future.db"), DB_OPEN_CREATE) == NULL);
    snprintf(want, sizeof want, "%s: dataset schema version 99 is newer than this magpie supports (%d)", tmp("future.db"),
             DB_SCHEMA_VERSION);
    CHECK_STR(mp_err(), want);
}

/* a version-1 dataset (before predictions) is migrated in place: rows kept, table added */
TEST(migrate_v1_predictions)
{
    const char *path = tmp("v1.db");
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_exec(db, "DROP TABLE predictions; PRAGMA user_version = 1; "
                          "INSERT INTO slides(id, path, name, fingerprint) VALUES (7, '/s/a.svs', 'a', 'fpA')"), 0);
    db_close(db);
    db = db_open(path, DB_OPEN_READONLY); /* an older version still reads */
    CHECK(db != NULL);
    if (db) CHECK_INT(db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'predictions'"), 0);
    db_close(db);
    db = db_open(path, 0);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_query_int(db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'predictions'"), 1);
    CHECK_INT(db_query_int(db, "SELECT id FROM slides WHERE fingerprint = 'fpA'"), 7);

    /* rows: linked to the dataset's slide by fingerprint, replaced per slide x model */
    char *names[2] = {"Normal", "Tumor"};
    float p[3][2] = {{0.9f, 0.1f}, {0.2f, 0.8f}, {0.45f, 0.55f}};
    db_pred_cell cells[3] = {{0, 0, 100, 200, p[0]}, {1, 0, 324, 200, p[1]}, {2, 5, 548, 1320, p[2]}};
    db_pred_run run = {.slide_path = "/s/a.svs", .slide_fingerprint = "fpA", .model_path = "m.mpk",
                       .model_fingerprint = "mk1", .mag = 1.25, .size0 = 224, .nclasses = 2, .class_names = names};
    CHECK_INT(db_predictions_put(db, &run, cells, 3), 0);
    CHECK_INT(db_predictions_count(db, "fpA", "mk1"), 3);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM predictions WHERE slide_id = 7"), 3);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM predictions WHERE class_name = 'Tumor' AND confidence > 0.5"), 2);
    CHECK_INT(db_query_int(db, "SELECT gy FROM predictions WHERE x0 = 548 AND y0 = 1320 AND class_id = 1"), 5);
    CHECK_INT(db_query_int(db, "SELECT round(json_extract(probs, '$[1]') * 100) FROM predictions WHERE gx = 1"), 80);
    CHECK_INT(db_predictions_put(db, &run, cells, 2), 0); /* rerun: replaced, not added */
    CHECK_INT(db_predictions_count(db, "fpA", "mk1"), 2);
    run.model_fingerprint = "mk2";
    run.slide_fingerprint = "fpB"; /* a slide the dataset does not have: no link */
    CHECK_INT(db_predictions_put(db, &run, cells, 1), 0);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM predictions"), 3);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM predictions WHERE slide_id IS NULL"), 1);
    db_close(db);
}

/* a version-2 dataset (before slides.kind) gets the column in place: rows kept, NULL until
 * the slide is tiled again, and the column refuses values other than the two kinds */
TEST(migrate_v2_kind)
{
    const char *path = tmp("v2.db");
    mp_db *db = db_open(path, DB_OPEN_CREATE);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_exec(db, "ALTER TABLE slides DROP COLUMN kind; PRAGMA user_version = 2; "
                          "INSERT INTO slides(id, path, name, fingerprint, status) VALUES (3, '/s/b.svs', 'b', 'fpB', 'done')"),
              0);
    db_close(db);
    db = db_open(path, 0);
    CHECK(db != NULL);
    if (!db) return;
    CHECK_INT(db_query_int(db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE id = 3 AND status = 'done' AND kind IS NULL"), 1);
    CHECK_INT(db_exec(db, "UPDATE slides SET kind = 'fluorescence' WHERE id = 3"), 0);
    CHECK(db_exec(db, "UPDATE slides SET kind = 'ihc' WHERE id = 3") != 0);
    CHECK_INT(db_query_int(db, "SELECT count(*) FROM slides WHERE kind = 'fluorescence'"), 1);
    db_close(db);
    /* a v1 dataset that already has the column (written from a newer schema file) migrates too */
    db = db_open(path, 0);
    CHECK_INT(db_exec(db, "PRAGMA user_version = 1"), 0);
    db_close(db);
    db = db_open(path, 0);
    CHECK(db != NULL);
    if (db) CHECK_INT(db_query_int(db, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    db_close(db);
}

int main(void)
{
    if (t_tmpdir("dbtest")) TEST_FATAL("cannot make a temp dir");
    RUN(create_and_reopen);
    RUN(refuses_bad_files);
    RUN(migrate_v1_predictions);
    RUN(migrate_v2_kind);
    t_rmdir();
    return test_done();
}
