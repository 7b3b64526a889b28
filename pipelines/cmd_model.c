/* pipelines/cmd_model.c — `magpie model` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_model(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("model: not available in this build yet");
    return MP_EXIT_FAIL;
}
