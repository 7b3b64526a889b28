/* pipelines/cmd_db.c — `magpie db` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_db(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("db: not available in this build yet");
    return MP_EXIT_FAIL;
}
