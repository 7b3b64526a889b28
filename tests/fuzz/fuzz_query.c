/* tests/fuzz/fuzz_query.c — libFuzzer target: `magpie db query`'s filter language
 * (db_query_parse) on arbitrary text, then what the command does with a parsed expression:
 * the split check, the prepared statement at no magnification and at 10x (with and without
 * --count), every row stepped, against a small in-memory dataset with predictions. The values
 * are bound parameters, so no input may change the dataset: its contents are checked after. */
#include <sqlite3.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"
#include "db/query.h"
#include "tests/fuzz/fuzz.h"

static mp_db *db;

static void build(void)
{
    db = db_open(":memory:", DB_OPEN_CREATE);
    if (!db || db_exec(db, "INSERT INTO slides(id, path, name, patient, fingerprint, status, label) VALUES "
                           "(1, '/x/alpha.svs', 'alpha', 'P1', 'f1', 'done', 'Tumor'), "
                           "(2, '/x/beta.svs', 'beta', 'P2', 'f2', 'done', 'Normal'), "
                           "(3, '/x/g''m a.svs', 'g''m a', NULL, 'f3', 'done', NULL);"
                           "INSERT INTO patches VALUES (1, 1, 0, 0, 0, 0, 64, 0.9, 12.5, 0, 200), "
                           "(2, 1, 1, 0, 64, 0, 64, 0.4, 30, 0.1, 180), (3, 2, 0, 0, 0, 0, 64, 0.7, 5, 0, 220), "
                           "(4, 3, 0, 0, 0, 0, 64, 0.6, NULL, NULL, NULL);"
                           "INSERT INTO images VALUES (1, 10, 2, 2, 0, 1, 'png', x'00'), (1, 1.25, 2, 2, 0, 1, 'png', x'00'), "
                           "(3, 1.25, 2, 2, 0, 1, 'png', x'00'), (4, 10, 2, 2, 0, 1, 'png', x'00');"
                           "INSERT INTO classes VALUES (0, 'Tumor'), (1, 'Normal'), (2, 'Stroma');"
                           "INSERT INTO patch_labels VALUES (1, 0, 1, 't'), (2, 2, 0.8, 't');"
                           "INSERT INTO splits VALUES (1, 'train'), (2, 'val');"
                           "INSERT INTO predictions(slide_id, slide_path, slide_fingerprint, model_fingerprint, mag, gx, gy,"
                           " x0, y0, size0, class_id, class_name, confidence, probs) VALUES (1, '/x/alpha.svs', 'f1', 'm',"
                           " 10, 0, 0, 10, 10, 40, 1, 'Normal', 0.8, '[0.2,0.8]')")) {
        fprintf(stderr, "fuzz: %s\n", mp_err());
        abort();
    }
}

static int64_t state(void)
{
    return db_query_int(db, "SELECT (SELECT count(*) FROM slides) + 10 * (SELECT count(*) FROM patches) + "
                            "100 * (SELECT count(*) FROM images) + 1000 * (SELECT count(*) FROM patch_labels) + "
                            "10000 * (SELECT count(*) FROM splits) + 100000 * (SELECT count(*) FROM predictions) + "
                            "1000000 * (SELECT count(*) FROM classes)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db) build();
    if (size > 4096) return 0; /* a command-line argument; the parser's cost is linear anyway */
    char *expr = malloc(size + 1);
    memcpy(expr, data, size);
    expr[size] = 0; /* an embedded NUL ends the text, as in argv */
    int64_t before = state();
    db_query *q = db_query_parse(expr);
    if (!q) {
        if (strncmp(mp_err(), "column ", 7)) {
            fprintf(stderr, "parse error without a column: %s\n", mp_err());
            abort();
        }
    } else {
        const char *w = db_query_where(q);
        if (!w || !*w) abort();
        if (db_query_check(db, q) == 0) {
            static const double mags[] = {0, 10};
            for (int k = 0; k < 4; k++) {
                sqlite3_stmt *st = db_query_prepare(db, q, mags[k & 1], k >> 1, k == 3 ? 2 : 0);
                if (!st) { /* the split check passed: only a bad compiled condition fails here */
                    fprintf(stderr, "a parsed expression does not prepare: %s\nSQL: %s\n", mp_err(), w);
                    abort();
                }
                int rc, rows = 0;
                while ((rc = sqlite3_step(st)) == SQLITE_ROW) rows++;
                if (rc != SQLITE_DONE) {
                    fprintf(stderr, "query failed while stepping: %s\nSQL: %s\n", sqlite3_errmsg(db_sqlite(db)), w);
                    abort();
                }
                if (rows > (k >> 1 ? 1 : 4)) abort();
                sqlite3_finalize(st);
            }
        } else {
            fuzz_check_err(-1);
        }
        db_query_free(q);
    }
    if (state() != before) {
        fprintf(stderr, "a query changed the dataset\n");
        abort();
    }
    free(expr);
    return 0;
}
