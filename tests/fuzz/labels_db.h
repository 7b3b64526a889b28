/* tests/fuzz/labels_db.h — the in-memory dataset the labels fuzz targets import into: three
 * slides (one with a space in its name), an 8×8 grid of 256-pixel patches on "s1". Each input
 * starts from the same state: stored imports, labels, patch labels and classes are cleared after
 * every import. */
#ifndef MP_FUZZ_LABELS_DB_H
#define MP_FUZZ_LABELS_DB_H

#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "db/db.h"
#include "db/sql.h"

static mp_db *fuzz_db(void)
{
    static mp_db *db;
    if (db) return db;
    db = db_open(":memory:", DB_OPEN_CREATE);
    if (!db) {
        fprintf(stderr, "fuzz: %s\n", mp_err());
        abort();
    }
    if (db_exec(db, "INSERT INTO slides(id, path, name, fingerprint) VALUES (1, '/d/s1.svs', 's1', 'f1'), "
                    "(2, '/d/s2.tiff', 's2', 'f2'), (3, '/d/a b.svs', 'a b', 'f3')") != 0) {
        fprintf(stderr, "fuzz: %s\n", mp_err());
        abort();
    }
    char sql[160];
    for (int gy = 0; gy < 8; gy++)
        for (int gx = 0; gx < 8; gx++) {
            snprintf(sql, sizeof sql, "INSERT INTO patches(slide_id, gx, gy, x0, y0, size0, tissue) "
                                      "VALUES (1, %d, %d, %d, %d, 256, 1)", gx, gy, 256 * gx, 256 * gy);
            if (db_exec(db, sql) != 0) abort();
        }
    return db;
}

/* An import must end its transaction whatever happened, then the state is reset. */
static void fuzz_db_reset(mp_db *db)
{
    if (!sqlite3_get_autocommit(db_sqlite(db))) {
        fprintf(stderr, "import left a transaction open\n");
        abort();
    }
    /* stored imports refer to classes: they go first */
    if (db_exec(db, "DELETE FROM region_annotations; DELETE FROM slide_labels; DELETE FROM label_imports; "
                    "DELETE FROM patch_labels; DELETE FROM classes; UPDATE slides SET label = NULL, patient = NULL") != 0) {
        fprintf(stderr, "fuzz: %s\n", mp_err());
        abort();
    }
}

#endif
