/* pipelines/cmd_db_slides.c — `magpie db DB slides remove ID|NAME|PATH...`: take slides out of
 * a dataset (a failed or unwanted file) with everything that hangs off them, in one transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "db/db.h"
#include "db/slides.h"
#include "db/tiling.h"
#include "pipelines/cmds.h"

static const char remove_usage[] =
    "usage: magpie db DB slides remove SLIDE... [--dry-run] [-q]\n\n"
    "Removes each SLIDE (its path, its id, or a name no other slide has; an ambiguous name is an\n"
    "error listing the candidates) with its patches, images, tile errors, tissue mask, slide label,\n"
    "region annotations, patch labels, split, fold and predictions, all in one transaction: either\n"
    "every named slide goes or none does. The file on disk is not touched. The space is reused by\n"
    "later writes; `magpie db DB vacuum` gives it back to the file system.\n"
    "  --dry-run   print what would be removed\n";

static int print_removal(void *ctx, const db_slide_row *r)
{
    mp_info("%s slide %lld %s (%s, %s, %lld patches)", *(const int *)ctx ? "would remove" : "removing", (long long)r->id,
            r->name, r->path, r->status, (long long)r->patches);
    return 0;
}

int cmd_db_slides_remove(const char *db_path, int argc, char **argv)
{
    int dry = 0, n = 0;
    const char **names = mp_xcalloc((size_t)argc, sizeof *names);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(remove_usage, stdout);
            free(names);
            return MP_EXIT_OK;
        }
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dry-run")) dry = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) mp_log_set_quiet(1);
        else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            mp_error("db slides remove: unknown option '%s' (see magpie db DB slides remove --help)", a);
            free(names);
            return MP_EXIT_USAGE;
        } else names[n++] = a;
    }
    if (n == 0) {
        mp_error("db slides remove: name at least one slide (see magpie db DB slides remove --help)");
        free(names);
        return MP_EXIT_USAGE;
    }
    mp_db *db = db_open(db_path, 0);
    if (!db) {
        mp_error("%s", mp_err());
        free(names);
        return MP_EXIT_FAIL;
    }
    int64_t *ids = mp_xcalloc((size_t)n, sizeof *ids);
    int rc = 0;
    /* a tiler writing into the dataset could be writing these slides: wait for it, briefly */
    int lock = dry ? -1 : db_tile_lock(db_path, 1.0);
    if (!dry && lock < 0) rc = -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        int m = db_slide_match(db, names[i], 1, &ids[i]);
        if (m == 0) rc = mp_err_set("%s: no slide '%s' (by path, id or name); nothing removed", db_path, names[i]);
        else if (m < 0) rc = mp_err_set("%s; nothing removed", mp_err());
        for (int k = 0; rc == 0 && k < i; k++)
            if (ids[k] == ids[i]) ids[i] = 0; /* named twice */
    }
    int nid = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        if (ids[i]) ids[nid++] = ids[i];
    for (int i = 0; rc == 0 && i < nid; i++) rc = db_slides_each(db, ids[i], NULL, print_removal, &dry);
    int64_t patches = 0;
    if (rc == 0 && !dry) {
        rc = db_slides_remove(db, ids, nid, &patches);
        if (rc == 0)
            mp_info("%s: removed %d slide%s and %lld patch%s", db_path, nid, nid == 1 ? "" : "s", (long long)patches,
                    patches == 1 ? "" : "es");
    }
    if (rc) mp_error("%s", mp_err());
    db_tile_unlock(lock);
    db_close(db);
    free(ids);
    free(names);
    return rc ? MP_EXIT_FAIL : MP_EXIT_OK;
}
