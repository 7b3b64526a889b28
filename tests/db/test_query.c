/* tests/db/test_query.c — the `db query` filter language: what each form selects on a small
 * hand-made dataset, exact parse errors with columns, and injection attempts (quotes,
 * semicolons, comments, fields outside the whitelist) that must select nothing extra and change
 * nothing. */
#include "tests/test.h"

#include <sqlite3.h>
#include <unistd.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "db/query.h"

static mp_db *D;

/* Patches (id: slide, label, split, tissue, blur, mags):
 *   1: alpha P1, region Tumor,  train, 0.9, 12.5, 10 + 1.25
 *   2: alpha P1, region Stroma, train, 0.4, 30,   10
 *   3: beta  P2, slide Normal,  val,   0.7, 5,    1.25
 *   4: gamma -,  none,          -,     0.6, NULL, 10        */
static void build(void)
{
    D = db_open(tmp("q.db"), DB_OPEN_CREATE);
    if (!D) TEST_FATAL("%s", mp_err());
    if (db_exec(D, "INSERT INTO slides(id, path, name, patient, fingerprint, status, label) VALUES "
                   "(1, '/x/alpha.svs', 'alpha', 'P1', 'f1', 'done', 'Tumor'), (2, '/x/beta.svs', 'beta', 'P2', 'f2', 'done', 'Normal'),"
                   "(3, '/x/gamma.svs', 'gamma', NULL, 'f3', 'done', NULL);"
                   "INSERT INTO patches VALUES (1, 1, 0, 0, 0, 0, 64, 0.9, 12.5, 0, 200), (2, 1, 1, 0, 64, 0, 64, 0.4, 30, 0.1, 180),"
                   "(3, 2, 0, 0, 0, 0, 64, 0.7, 5, 0, 220), (4, 3, 0, 0, 0, 0, 64, 0.6, NULL, NULL, NULL);"
                   "INSERT INTO images VALUES (1, 10, 2, 2, 0, 1, 'png', x'00'), (1, 1.25, 2, 2, 0, 1, 'png', x'00'),"
                   "(2, 10, 2, 2, 0, 1, 'png', x'00'), (3, 1.25, 2, 2, 0, 1, 'png', x'00'), (4, 10, 2, 2, 0, 1, 'png', x'00');"
                   "INSERT INTO classes VALUES (0, 'Tumor'), (1, 'Normal'), (2, 'Stroma');"
                   "INSERT INTO patch_labels VALUES (1, 0, 1, 't'), (2, 2, 0.8, 't');"
                   "INSERT INTO splits VALUES (1, 'train'), (2, 'val');"
                   /* one prediction square holding patch 1's centre (32, 32); another for slide 2 far away */
                   "INSERT INTO predictions(slide_id, slide_path, slide_fingerprint, model_fingerprint, mag, gx, gy, x0, y0,"
                   " size0, class_id, class_name, confidence, probs) VALUES (1, '/x/alpha.svs', 'f1', 'm', 10, 0, 0, 10, 10, 40,"
                   " 1, 'Normal', 0.8, '[0.2,0.8]'), (2, '/x/beta.svs', 'f2', 'm', 10, 5, 5, 500, 500, 64, 0, 'Tumor', 0.9, '[]')"))
        TEST_FATAL("%s", mp_err());
}

/* The matching patch ids as "1,2,3" ("" for none, "ERR: message" on failure). */
static const char *ids(const char *expr)
{
    static char out[512];
    db_query *q = db_query_parse(expr);
    if (!q) {
        snprintf(out, sizeof out, "ERR: %s", mp_err());
        return out;
    }
    sqlite3_stmt *st = db_query_prepare(D, q, 0, 0, 0);
    if (!st) {
        snprintf(out, sizeof out, "ERR: %s", mp_err());
        db_query_free(q);
        return out;
    }
    out[0] = 0;
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%lld", n ? "," : "", (long long)sqlite3_column_int64(st, DBQ_ID));
    sqlite3_finalize(st);
    db_query_free(q);
    return out;
}

static const char *parse_err(const char *expr)
{
    db_query *q = db_query_parse(expr);
    if (q) {
        db_query_free(q);
        return "(parsed)";
    }
    return mp_err();
}

TEST(selects)
{
    CHECK_STR(ids(""), "1,2,3,4");
    CHECK_STR(ids("label = tumor and tissue > 0.5 and split in (train, val)"), "1");
    CHECK_STR(ids("label = Normal"), "3");                 /* the slide's label when no region label */
    CHECK_STR(ids("label != tumor"), "2,3,4");             /* unlabelled counts as different */
    CHECK_STR(ids("not label = tumor"), "2,3,4");
    CHECK_STR(ids("label is null"), "4");
    CHECK_STR(ids("label not in (tumor, stroma)"), "3,4");
    CHECK_STR(ids("split is null or split = val"), "3,4");
    CHECK_STR(ids("blur >= 12.5"), "1,2");
    CHECK_STR(ids("blur < 12.5"), "3");                    /* NULL blur is not below anything */
    CHECK_STR(ids("not blur < 12.5"), "1,2,4");
    CHECK_STR(ids("mag = 1.25"), "1,3");
    CHECK_STR(ids("mag != 1.25"), "2,4");
    CHECK_STR(ids("mag in (10) and not mag = 1.25"), "2,4");
    CHECK_STR(ids("mag > 5"), "1,2,4");
    CHECK_STR(ids("slide like 'a%' or patient = p2"), "1,2,3");
    CHECK_STR(ids("patient is not null and (tissue < 0.5 or tissue > 0.8)"), "1,2");
    CHECK_STR(ids("TISSUE > 0.65 AND Slide = \"ALPHA\""), "1");
    CHECK_STR(ids("prediction = normal"), "1");            /* square (10..50) holds patch 1's centre */
    CHECK_STR(ids("prediction is null"), "2,3,4");         /* patch 2's centre (96, 32) is outside */
    CHECK_STR(ids("confidence > 0.5"), "1");
    CHECK_STR(ids("confidence > 0.85"), "");           /* slide 2's 0.9 holds no patch centre */
}

TEST(count_and_mag)
{
    db_query *q = db_query_parse("split = train");
    CHECK(q != NULL);
    if (!q) return;
    sqlite3_stmt *st = db_query_prepare(D, q, 0, 1, 0);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2);
    sqlite3_finalize(st);
    st = db_query_prepare(D, q, 1.25, 0, 0); /* only patches with a 1.25x image, with its columns */
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, DBQ_ID) == 1 &&
          !strcmp((const char *)sqlite3_column_text(st, DBQ_CODEC), "png") && sqlite3_column_int(st, DBQ_WIDTH) == 2);
    CHECK(st && sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    st = db_query_prepare(D, q, 0, 0, 1); /* limit */
    int n = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) n++;
    CHECK_INT(n, 1);
    sqlite3_finalize(st);
    db_query_free(q);
}

TEST(parse_errors)
{
    CHECK_STR(parse_err("foo = 1"), "column 1: unknown field 'foo' (fields: tissue, blur, pen, brightness, mag, label, "
                                    "split, slide, patient, prediction, confidence)");
    CHECK_STR(parse_err("tissue > abc"), "column 10: tissue wants a number, got 'abc'");
    CHECK_STR(parse_err("tissue > nan"), "column 10: tissue wants a number, got 'nan'");
    CHECK_STR(parse_err("label < b"), "column 7: '<' compares numbers; label is text (use =, !=, in, like)");
    CHECK_STR(parse_err("tissue like 5"), "column 8: 'like' matches text; tissue is a number");
    CHECK_STR(parse_err("label ="), "column 8: expected a value, found the end");
    CHECK_STR(parse_err("label = and"), "column 9: expected a value, found 'and'");
    CHECK_STR(parse_err("(label = a"), "column 11: expected ')' or 'and'/'or', found the end");
    CHECK_STR(parse_err("label = a b"), "column 11: expected 'and', 'or' or the end, found 'b'");
    CHECK_STR(parse_err("label in (a, b"), "column 15: expected ',' or ')', found the end");
    CHECK_STR(parse_err("label in a"), "column 10: expected '(' after 'in', found 'a'");
    CHECK_STR(parse_err("label is 3"), "column 10: expected 'null', found '3'");
    CHECK_STR(parse_err("label not = a"), "column 11: expected 'in' or 'like' after 'not', found '='");
    CHECK_STR(parse_err("label ! a"), "column 7: '!' must be followed by '=' (use 'not' to negate)");
    CHECK_STR(parse_err("label = 'abc"), "column 9: unterminated single-quoted text");
    CHECK_STR(parse_err("and"), "column 1: expected a field name, 'not' or '(', found 'and'");
    CHECK_STR(parse_err("label tumor"), "column 7: expected an operator (= != < <= > >= in like is) after the field, found 'tumor'");
    char deep[300] = "";
    for (int i = 0; i < 70; i++) strcat(deep, "(");
    CHECK_STR(parse_err(deep), "column 65: nested deeper than 64");
}

TEST(split_names)
{
    db_query *q = db_query_parse("split in (train, testing)");
    CHECK(q != NULL);
    if (!q) return;
    CHECK_INT(db_query_check(D, q), -1);
    CHECK_STR(mp_err(), "column 18: unknown split 'testing' (known: train, val, test, unlabeled)");
    CHECK(db_query_prepare(D, q, 0, 0, 0) == NULL);
    db_query_free(q);
    CHECK_STR(ids("split = test"), ""); /* known to magpie, empty here */
}

/* Hostile text: never SQL, only values or errors. The dataset is unchanged after all of them. */
TEST(injection)
{
    CHECK_STR(ids("label = 'x'' OR 1=1 --'"), "");
    CHECK_STR(ids("label = \"tumor\"\" OR \"\"1\"\"=\"\"1\""), "");
    CHECK_STR(ids("slide = 'alpha''; DROP TABLE slides; --'"), "");
    CHECK_STR(ids("label in ('tumor'') OR (1=1', 'x')"), "");
    CHECK_STR(ids("label like '%'' OR ''1''=''1'"), "");
    CHECK_STR(parse_err("label = tumor; DROP TABLE slides"), "column 14: unexpected character ';'");
    CHECK_STR(parse_err("label = tumor -- comment"), "column 15: expected 'and', 'or' or the end, found '--'");
    CHECK_STR(parse_err("label = tumor /* c */"), "column 15: expected 'and', 'or' or the end, found '/*'");
    CHECK_STR(parse_err("s.name = alpha"), "column 1: unknown field 's.name' (fields: tissue, blur, pen, brightness, "
                                           "mag, label, split, slide, patient, prediction, confidence)");
    CHECK_STR(parse_err("id = 1"), "column 1: unknown field 'id' (fields: tissue, blur, pen, brightness, mag, label, "
                                   "split, slide, patient, prediction, confidence)");
    CHECK_STR(parse_err("1 = 1"), "column 1: unknown field '1' (fields: tissue, blur, pen, brightness, mag, label, "
                                  "split, slide, patient, prediction, confidence)");
    CHECK_STR(parse_err("tissue > 0 or sqlite_version() = 1"), "column 15: unknown field 'sqlite_version' (fields: "
                                                                "tissue, blur, pen, brightness, mag, label, split, slide, "
                                                                "patient, prediction, confidence)");
    CHECK_STR(parse_err("label = `x`"), "column 9: unexpected character '`'");
    CHECK_STR(parse_err("label = x\x01"), "column 10: unexpected character '\\x01'");
    CHECK_STR(parse_err("tissue > 0.5 union select 1"), "column 14: expected 'and', 'or' or the end, found 'union'");
    /* a value is never SQL: the compiled text holds only ?N where the values were */
    db_query *q = db_query_parse("label = 'x'' OR 1=1 --' and slide = \"; DROP TABLE slides\"");
    CHECK(q && !strstr(db_query_where(q), "DROP") && !strstr(db_query_where(q), "OR 1=1") && strstr(db_query_where(q), "?2"));
    db_query_free(q);
    CHECK_INT(db_query_int(D, "SELECT count(*) FROM slides"), 3);
    CHECK_INT(db_query_int(D, "SELECT count(*) FROM patches"), 4);
}

int main(void)
{
    if (t_tmpdir("query")) TEST_FATAL("cannot make a temp dir");
    build();
    RUN(selects);
    RUN(count_and_mag);
    RUN(parse_errors);
    RUN(split_names);
    RUN(injection);
    db_close(D);
    t_rmdir();
    return test_done();
}
