/* tests/fuzz/fuzz_geojson.c — libFuzzer target: `magpie db labels` with QuPath GeoJSON region
 * annotations (db_labels_import_geojson) on arbitrary bytes, for slide "s1" of a small
 * in-memory dataset whose 64 patches are measured against every polygon. */
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
    int rc = db_labels_import_geojson(db, path, "s1", 0.5, &rep);
    fuzz_check_err(rc);
    if (rc == 0) {
        if (rep.updated < 0 || rep.updated > 64) abort();
    }
    db_label_report_free(&rep); /* also after a failure: nothing may leak */
    close(fd);
    fuzz_db_reset(db);
    return 0;
}
