/* pipelines/cmd_db_vacuum.c — `magpie db DB vacuum`: give the space of removed slides and
 * replaced rows back to the file system (SQLite's VACUUM: a copy, then an atomic swap, so a
 * kill leaves the dataset as it was). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/tiling.h"
#include "pipelines/cmds.h"

static const char usage[] =
    "usage: magpie db DB vacuum [-q]\n\n"
    "Rewrites the dataset without its free pages (after `db slides remove`, re-tiling, label\n"
    "removal) and checkpoints the WAL. Needs free disk space about the dataset's size. Waits for\n"
    "no tiler: refused while one is writing to the dataset.\n";

int cmd_db_vacuum(const char *db_path, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return MP_EXIT_OK;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) mp_log_set_quiet(1);
        else {
            mp_error("db vacuum: %s '%s' (see magpie db DB vacuum --help)",
                     a[0] == '-' ? "unknown option" : "unexpected argument", a);
            return MP_EXIT_USAGE;
        }
    }
    mp_db *db = db_open(db_path, 0);
    if (!db) {
        mp_error("%s", mp_err());
        return MP_EXIT_FAIL;
    }
    int lock = db_tile_lock(db_path, 1.0);
    int64_t before = mp_file_size(db_path);
    int rc = lock < 0 ? -1 : db_vacuum(db);
    if (rc == 0) {
        char a[32], b[32];
        mp_info("%s: %s -> %s", db_path, mp_fmt_bytes(a, sizeof a, (double)before),
                mp_fmt_bytes(b, sizeof b, (double)mp_file_size(db_path)));
    } else mp_error("%s", mp_err());
    db_tile_unlock(lock);
    db_close(db);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}
