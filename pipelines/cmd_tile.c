/* pipelines/cmd_tile.c — `magpie tile` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_tile(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("tile: not available in this build yet");
    return MP_EXIT_FAIL;
}
