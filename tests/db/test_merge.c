/* tests/db/test_merge.c — db/merge.c's contract with the schema: it knows every table a fresh
 * dataset has (a table added to schema.sql without teaching merge fails here, instead of being
 * refused at merge time or, worse, lost), and merging empty datasets gives an empty one. */
#include "tests/test.h"

#include <sqlite3.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "db/merge.h"

TEST(knows_every_table)
{
    mp_db *db = db_open(tmp("fresh.db"), DB_OPEN_CREATE);
    if (!db) FAIL_CASE("%s", mp_err());
    sqlite3_stmt *st = db_prepare(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
    int n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int known = 0;
        for (int i = 0; db_merge_tables[i]; i++) known |= !strcmp(db_merge_tables[i], name);
        if (!known) fprintf(stderr, "table %s is not in db_merge_tables\n", name);
        CHECK(known);
        n++;
    }
    sqlite3_finalize(st);
    CHECK(n >= 9);
    db_close(db);
}

TEST(empty_shards)
{
    mp_db *a = db_open(tmp("e1.db"), DB_OPEN_CREATE), *b = db_open(tmp("e2.db"), DB_OPEN_CREATE);
    CHECK(a && b);
    db_close(a);
    db_close(b);
    char p1[256], p2[256];
    snprintf(p1, sizeof p1, "%s", tmp("e1.db"));
    snprintf(p2, sizeof p2, "%s", tmp("e2.db"));
    char *shards[] = {p1, p2};
    db_merge_counts c;
    CHECK_INT(db_merge(tmp("out.db"), shards, 2, NULL, NULL, &c), 0);
    CHECK_INT(c.slides, 0);
    mp_db *o = db_open(tmp("out.db"), DB_OPEN_READONLY);
    CHECK(o != NULL);
    if (o) CHECK_INT(db_query_int(o, "SELECT count(*) FROM slides"), 0);
    db_close(o);
    CHECK_INT(db_merge(tmp("out2.db"), shards, 0, NULL, NULL, &c), -1);
}

int main(void)
{
    if (t_tmpdir("merge")) TEST_FATAL("no temp dir");
    RUN(knows_every_table);
    RUN(empty_shards);
    t_rmdir();
    return test_done();
}
