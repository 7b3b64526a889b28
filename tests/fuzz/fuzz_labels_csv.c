/* tests/fuzz/fuzz_labels_csv.c — libFuzzer target: `magpie db labels` with a slide-level CSV
 * (db_labels_import_csv) on arbitrary bytes, against a small in-memory dataset. */
#include <unistd.h>

#include "db/labels.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/labels_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp_db *db = fuzz_db();
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    db_label_report rep;
    int rc = db_labels_import_csv(db, path, &rep);
    fuzz_check_err(rc);
    if (rc == 0) {
        if (rep.updated < 0 || rep.n_unknown < 0 || rep.updated + rep.n_unknown > rep.rows) abort();
    }
    db_label_report_free(&rep); /* also after a failure: nothing may leak */
    close(fd);
    fuzz_db_reset(db);
    return 0;
}
