/* tests/db/test_db.c — opening, creating and refusing datasets. */
#include "tests/test.h"

#include <sqlite3.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"

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

int main(void)
{
    if (t_tmpdir("dbtest")) TEST_SKIP("cannot make a temp dir");
    RUN(create_and_reopen);
    RUN(refuses_bad_files);
    t_rmdir();
    return test_done();
}
