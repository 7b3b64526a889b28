/* pipelines/cmd_db_curate.c — `magpie db DB labels|split` (placeholder until curation lands). */
#include "common/error.h"
#include "common/log.h"
#include "pipelines/cmds.h"

int cmd_db_labels(const char *db_path, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("%s: db labels: not available in this build yet", db_path);
    return MP_EXIT_FAIL;
}

int cmd_db_split(const char *db_path, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("%s: db split: not available in this build yet", db_path);
    return MP_EXIT_FAIL;
}
